//! Grouping the requests' claims: the `SET NX` claims that arrive while the store is busy with a
//! call go out together as one pipeline, and each request is answered its own key's result.
//!
//! Every claim must wait for the store's write acknowledgement (with `appendfsync always`, its
//! fsync) before its request goes on. Sent one command each, a burst of N claims costs N
//! round trips to build, send, parse and wake up for, on both sides. Here one task per store takes
//! the claims queued since its last call, up to [`MAX_CLAIMS_PER_CALL`], and sends them as one
//! pipeline of `SET NX PX GET` commands ([`RedisStore::claim_many`]); at most
//! [`MAX_CALLS_IN_FLIGHT`] such calls are in flight, and claims arriving meanwhile wait for the
//! next one. Guarantees, per claim as before:
//!
//! - a request goes on only after the store acknowledged its own key's write;
//! - each key has its own outcome (created, or what it holds), also for two claims of one key in
//!   the same call: the first creates it, the second finds the first's value;
//! - a failed call fails every claim in it (`StoreError`: 503, the sender retries);
//! - a claim whose request is gone (cancelled: the client went away, or its deadline passed) is
//!   not sent if it is still queued, and released (compare-and-delete of its own value) if its
//!   call was already on its way.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::redis::{RedisStore, SetIfAbsent};
use super::store::StoreError;
use crate::metrics as m;

/// Most claims in one call: bounds the time the store spends on one call (a few µs per key)
/// and the reply's size.
pub const MAX_CLAIMS_PER_CALL: usize = 512;
/// Calls in flight at once. One: the store acknowledges a call's writes together (one fsync per
/// event-loop iteration under `appendfsync always`), so the claims arriving during a call are
/// best sent together right after it, not one call each.
pub const MAX_CALLS_IN_FLIGHT: usize = 1;

/// One request's claim, waiting for its call.
pub(super) struct QueuedClaim {
    pub key: String,
    pub value: String,
    pub ttl: Duration,
    answer: oneshot::Sender<Result<SetIfAbsent, StoreError>>,
}

/// The queue of a store's claims (the sending side; the task that empties it runs on the
/// store's home runtime until the store is dropped).
pub(super) struct ClaimBurst {
    queue: mpsc::UnboundedSender<QueuedClaim>,
}

impl ClaimBurst {
    /// The queue, and the receiving side for [`ClaimBurst::run`].
    pub fn new() -> (ClaimBurst, mpsc::UnboundedReceiver<QueuedClaim>) {
        let (queue, queued) = mpsc::unbounded_channel();
        (ClaimBurst { queue }, queued)
    }

    /// Queues a claim of `key` with `value` and waits for its own answer.
    pub async fn claim(&self, key: &str, value: &str, ttl: Duration) -> Result<SetIfAbsent, StoreError> {
        let (answer, answered) = oneshot::channel();
        let claim = QueuedClaim { key: key.to_owned(), value: value.to_owned(), ttl, answer };
        if self.queue.send(claim).is_err() {
            return Err(StoreError::Unavailable("the dedupe store's claim queue is closed".to_owned()));
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable("the dedupe store's claim queue stopped".to_owned()))
        })
    }

    /// Empties the queue into calls of `store` until the store is gone.
    pub async fn run(store: Weak<RedisStore>, mut queued: mpsc::UnboundedReceiver<QueuedClaim>) {
        let slots = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
        loop {
            // A slot first, then the claims: everything queued while the calls in flight ran
            // goes into this one.
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
            let Some(first) = queued.recv().await else { return };
            let mut claims = vec![first];
            while claims.len() < MAX_CLAIMS_PER_CALL {
                match queued.try_recv() {
                    Ok(claim) => claims.push(claim),
                    Err(_) => break,
                }
            }
            let Some(store) = store.upgrade() else { return };
            tokio::spawn(async move {
                call(&store, claims).await;
                drop(slot);
            });
        }
    }
}

/// Sends one call for `claims` and answers each; releases the claims whose request is gone.
async fn call(store: &Arc<RedisStore>, claims: Vec<QueuedClaim>) {
    // A request that is gone before its claim was sent: nothing to claim, nothing to release.
    let claims: Vec<QueuedClaim> = claims.into_iter().filter(|c| !c.answer.is_closed()).collect();
    if claims.is_empty() {
        return;
    }
    metrics::histogram!(m::DEDUPE_CLAIMS_PER_CALL).record(claims.len() as f64);
    let result = {
        let batch: Vec<(&str, &str, Duration)> =
            claims.iter().map(|c| (c.key.as_str(), c.value.as_str(), c.ttl)).collect();
        store.claim_many(&batch).await
    };
    let mut orphans = Vec::new();
    match result {
        Ok(found) => {
            for (claim, found) in claims.into_iter().zip(found) {
                let ours = match &found {
                    SetIfAbsent::Created => true,
                    SetIfAbsent::Exists(value) => *value == claim.value,
                };
                if claim.answer.send(Ok(found)).is_err() && ours {
                    orphans.push((claim.key, claim.value));
                }
            }
        }
        Err(e) => {
            for claim in claims {
                // The claim may have landed although the call failed (the answer was lost).
                if claim.answer.send(Err(e.clone())).is_err() {
                    orphans.push((claim.key, claim.value));
                }
            }
        }
    }
    store.release_later("release", orphans);
}
