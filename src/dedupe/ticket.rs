//! The committer's side of a claim: the ticket a published request carries into its batch, which
//! writes the record's offsets before the commit and the committed state after it, or releases
//! the claim when the transaction definitely did not commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::claim::release_values;
use super::memory::DedupeClaim;
use super::redis::{RedisStore, Swap};
use super::store::{ClaimState, Offsets};
use crate::sinks::Committed;

/// The right (and duty) to publish one delivery, held by the committer until its transaction ended.
pub struct Ticket {
    /// The in-process claim (taken by `finish`).
    local: Option<DedupeClaim>,
    /// The shared claim, when a store is configured.
    shared: Option<SharedClaim>,
}

/// This request's claim in the shared store.
struct SharedClaim {
    store: Arc<RedisStore>,
    key: String,
    /// The value the key holds now (ours): compared by every change.
    value: String,
    /// `owner` and `claimed_at` of our pending value, carried into the one with offsets.
    owner: String,
    claimed_at: u64,
    /// A value of ours the key may hold instead: written by a call whose answer was lost (the
    /// store went away mid-call). Released too, or the claim would outlive its aborted record.
    unsure: Option<String>,
    /// TTL of every write.
    window: Duration,
    /// The committed state is written (or the claim deliberately left pending): nothing to release.
    settled: bool,
}

impl Ticket {
    /// A delivery claimed in this process only (the `memory` store).
    pub(super) fn local_only(local: DedupeClaim) -> Ticket {
        Ticket { local: Some(local), shared: None }
    }

    /// A delivery claimed in this process and, with our pending `value` (by `owner`, at
    /// `claimed_at`), in the shared store; every write of it lives `window`.
    pub(super) fn shared(
        local: DedupeClaim,
        store: &Arc<RedisStore>,
        key: String,
        value: String,
        owner: String,
        claimed_at: u64,
        window: Duration,
    ) -> Ticket {
        let shared = SharedClaim {
            store: Arc::clone(store),
            key,
            value,
            owner,
            claimed_at,
            unsure: None,
            window,
            settled: false,
        };
        Ticket { local: Some(local), shared: Some(shared) }
    }

    /// The TTL of this ticket's shared writes (the dedupe window; zero without a shared claim).
    pub fn ttl(&self) -> Duration {
        self.shared.as_ref().map_or(Duration::ZERO, |s| s.window)
    }

    /// The shared store of this ticket, if any.
    pub fn store(&self) -> Option<&Arc<RedisStore>> {
        self.shared.as_ref().map(|s| &s.store)
    }

    /// The change of this pending claim to carry the record's offsets (written before the commit).
    pub fn offsets_swap(&self, request_id: &str, offsets: Offsets) -> Option<Swap> {
        let shared = self.shared.as_ref()?;
        let new = ClaimState::Pending {
            owner: shared.owner.clone(),
            request_id: request_id.to_owned(),
            claimed_at: shared.claimed_at,
            offsets: Some(offsets),
        }
        .to_json();
        Some(Swap { key: shared.key.clone(), old: shared.value.clone(), new })
    }

    /// This claim's key and its *committed* state.
    pub fn committed_state(&self, request_id: &str, committed: &Committed) -> Option<(String, String)> {
        let shared = self.shared.as_ref()?;
        Some((shared.key.clone(), committed_json(request_id, committed)))
    }

    /// Records that `swap` (its offsets, written before the commit) was written: the key now
    /// holds its new value.
    pub fn swapped(&mut self, swap: &Swap) {
        if let Some(shared) = &mut self.shared {
            shared.value = swap.new.clone();
            shared.unsure = None;
        }
    }

    /// Records that `swap` (one of this ticket's) was sent but its answer lost: the key holds its
    /// old value or its new one, and a release deletes either.
    pub fn maybe_swapped(&mut self, swap: &Swap) {
        if let Some(shared) = &mut self.shared {
            shared.unsure = Some(swap.new.clone());
        }
    }

    /// Leaves the shared claim as it is (pending, with offsets): the outcome is unknown, and
    /// releasing it would let a retry publish an event that may have committed.
    pub fn keep_pending(&mut self) {
        if let Some(shared) = &mut self.shared {
            shared.settled = true;
        }
    }

    /// Records the outcome: `Some((committed, request id))` when its transaction committed.
    /// Not committed: the shared claim (if still ours) is released in the background.
    pub fn finish(mut self, outcome: Option<(&Committed, &str)>) {
        if let Some(local) = self.local.take() {
            local.resolve(outcome);
        }
        if let Some(shared) = self.shared.take() {
            match outcome {
                None => shared.release(),
                Some((committed, request_id)) if !shared.settled => {
                    // Committed, but the committed state is not written yet (the store failed):
                    // keep trying in the background; meanwhile the claim stays pending with offsets.
                    shared.write_committed_later(request_id, committed);
                }
                Some(_) => {}
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Dropped unfinished (the request was never handed to a committer): not committed.
        if let Some(shared) = self.shared.take() {
            shared.release();
        }
    }
}

impl SharedClaim {
    /// Deletes the claim if it still holds our value (fire and forget: a claim left behind
    /// is taken over by the next claimant of this replica, or after the transaction timeout).
    fn release(self) {
        if self.settled {
            return;
        }
        release_values(
            &self.store,
            &self.key,
            [Some(self.value.as_str()), self.unsure.as_deref()].into_iter().flatten(),
        );
    }

    /// Writes the committed state in the background, retrying for as long as the claim lives (the
    /// dedupe window): meanwhile it stays pending with its offsets, and a repeat waits. A key that
    /// vanished (a store restarted without its data, an eviction) is written again.
    fn write_committed_later(self, request_id: &str, committed: &Committed) {
        let entries = [(self.key.clone(), committed_json(request_id, committed))];
        let store = Arc::clone(&self.store);
        let window = self.window;
        let task_store = Arc::clone(&store);
        store.spawn_detached(async move {
            let give_up = Instant::now() + window;
            let mut backoff = Duration::from_millis(200);
            while Instant::now() < give_up {
                if task_store.write_committed_many("commit", &entries, window).await.is_ok() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            tracing::error!(
                "could not record a committed delivery in the dedupe store within the dedupe window: \
                 its claim expired pending"
            );
        });
    }
}

/// The stored *committed* state of `request_id`'s record.
fn committed_json(request_id: &str, committed: &Committed) -> String {
    ClaimState::Committed {
        request_id: request_id.to_owned(),
        topic: committed.topic.clone(),
        partition: committed.partition,
        offset: committed.offset,
    }
    .to_json()
}
