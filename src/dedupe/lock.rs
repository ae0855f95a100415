//! The replay lock: at most one `cxone-ingest replay` per dead-letter location at a time, among
//! every machine sharing the dedupe store (`SET NX` with a TTL the holder renews).

use std::sync::Arc;
use std::time::Duration;

use super::redis::{RedisStore, SetIfAbsent};
use super::store::StoreError;

/// Prefix of the lock's key; the dead-letter location (`<bucket>/<prefix>`) follows, so replays of
/// different buckets or prefixes do not exclude each other.
pub const REPLAY_LOCK_PREFIX: &str = "cxone-ingest:replay-lock:";
/// The lock expires this long after its holder last renewed it (a crashed replay frees it).
pub const LOCK_TTL: Duration = Duration::from_secs(30);
/// How often the holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it: its holder text (host, pid, start time, run id).
    #[error(
        "another replay is running on these dead letters: {key} is held by {holder}; \
         wait for it to finish (the lock expires {ttl} s after its holder stops renewing it)",
        ttl = LOCK_TTL.as_secs()
    )]
    Held { key: String, holder: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The held lock; renewed in the background until [`ReplayLock::release`].
pub struct ReplayLock {
    store: Arc<RedisStore>,
    key: String,
    /// Our value in the key: only this run renews or deletes it.
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
    /// Set by the renewer when the lock is no longer ours (expired while the store was away, or
    /// taken): the replay must stop, another may be running.
    lost: tokio::sync::watch::Receiver<bool>,
}

impl ReplayLock {
    /// The key of the lock for dead letters in `bucket` under `prefix`.
    pub fn key(bucket: &str, prefix: &str) -> String {
        format!("{REPLAY_LOCK_PREFIX}{bucket}/{prefix}")
    }

    /// Takes the lock `key` for `holder`, or says who holds it.
    pub async fn acquire(
        store: Arc<RedisStore>,
        key: String,
        holder: String,
    ) -> Result<ReplayLock, LockError> {
        match store.set_if_absent("lock", &key, &holder, LOCK_TTL).await? {
            SetIfAbsent::Exists(other) => Err(LockError::Held { key, holder: other }),
            SetIfAbsent::Created => {
                let (task_store, task_key, task_holder) = (Arc::clone(&store), key.clone(), holder.clone());
                let (lost_tx, lost) = tokio::sync::watch::channel(false);
                let renewer = tokio::spawn(async move {
                    // Renewed last at this instant: past it + the TTL the lock may be someone else's.
                    let mut renewed = tokio::time::Instant::now();
                    loop {
                        tokio::time::sleep(RENEW_EVERY).await;
                        match task_store.compare_and_expire("lock", &task_key, &task_holder, LOCK_TTL).await {
                            Ok(true) => renewed = tokio::time::Instant::now(),
                            Ok(false) => {
                                tracing::error!(key = %task_key, "the replay lock was lost (expired or taken)");
                                let _ = lost_tx.send(true);
                                return;
                            }
                            Err(e) if renewed.elapsed() + RENEW_EVERY >= LOCK_TTL => {
                                tracing::error!(error = %e, "the replay lock could not be renewed before it expires");
                                let _ = lost_tx.send(true);
                                return;
                            }
                            Err(e) => tracing::warn!(error = %e, "renewing the replay lock failed; retrying"),
                        }
                    }
                });
                Ok(ReplayLock { store, key, holder, renewer, lost })
            }
        }
    }

    /// Resolves once the lock is lost (never while it is held).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The renewer ended without saying so (aborted by `release`): never resolves.
            std::future::pending::<()>().await;
        }
    }

    /// Stops renewing and deletes the lock if it is still ours.
    pub async fn release(self) {
        self.renewer.abort();
        let entry = [(self.key.clone(), self.holder.clone())];
        if let Err(e) = self.store.compare_and_delete_many("lock", &entry).await {
            tracing::warn!(error = %e, "releasing the replay lock failed; it expires by itself");
        }
    }
}

impl Drop for ReplayLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
