//! The committer's writes to the shared dedupe store: where each record of a batch landed (before
//! its commit: one compare-and-set script call for the batch) and the committed state (after it,
//! once the waiters were answered: one pipeline of plain writes for the batch).

use std::sync::Arc;
use std::time::Duration;

use super::pending::Pending;
use super::producer::{self, Landed};
use crate::dedupe::redis::{RedisStore, Swap};
use crate::dedupe::store::{Offsets, StoreError, now_ms};
use crate::dedupe::ticket::Ticket;
use crate::sinks::Committed;

/// A batch's swaps of its shared claims, with where each belongs in the batch.
struct ClaimSwaps {
    /// The store every claim of this process lives in.
    store: Arc<RedisStore>,
    /// Index in the batch of each swap.
    indexes: Vec<usize>,
    swaps: Vec<Swap>,
}

impl ClaimSwaps {
    /// Collects `(index in the batch, ticket, its swap)`; `None` when nothing has a shared claim.
    fn collect<'a>(pairs: impl Iterator<Item = (usize, &'a Ticket, Swap)>) -> Option<ClaimSwaps> {
        let mut claims: Option<ClaimSwaps> = None;
        for (index, ticket, swap) in pairs {
            let claims = match &mut claims {
                Some(claims) => claims,
                None => claims.insert(ClaimSwaps {
                    store: Arc::clone(ticket.store()?),
                    indexes: Vec::new(),
                    swaps: Vec::new(),
                }),
            };
            claims.indexes.push(index);
            claims.swaps.push(swap);
        }
        claims
    }

    /// Sends every swap in one script call on the store's own runtime: the index and swap of
    /// each, with whether it was applied (or the call's error).
    async fn send(self, op: &'static str) -> (Vec<usize>, Vec<Swap>, Result<Vec<bool>, StoreError>) {
        let ClaimSwaps { store, indexes, swaps } = self;
        // Shared with the task rather than copied: a batch's swaps are hundreds of JSON values.
        let swaps = Arc::new(swaps);
        let (task_store, task_swaps) = (Arc::clone(&store), Arc::clone(&swaps));
        let replaced = store
            .on_home_runtime(
                async move { task_store.compare_and_set_keeping_ttl_many(op, &task_swaps).await },
            )
            .await;
        let swaps = Arc::try_unwrap(swaps).unwrap_or_else(|shared| shared.as_ref().clone());
        (indexes, swaps, replaced)
    }
}

/// The pre-commit step: writes where each record landed into its pending shared claim (one
/// script call for the batch). A failure (store down, a claim no longer ours) vetoes the commit:
/// an event is never committed without its claim saying where it is. `written` gets each swap
/// that was applied (`true`), or, when the call failed, each swap that may have been (`false`: the
/// store may have run it although its answer was lost), so that the aborted batch's claims are
/// released whichever value they hold.
pub async fn write_offsets(
    batch: &[Pending],
    landed: Vec<Option<Landed>>,
    written: &mut Vec<(usize, Swap, bool)>,
) -> Result<(), String> {
    let written_at = now_ms();
    let pairs = batch.iter().zip(landed).enumerate().filter_map(|(index, (p, at))| {
        let (at, ticket) = (at?, p.completion.ticket.as_ref()?);
        let offsets = Offsets {
            topic: p.topic.to_string(),
            partition: at.partition,
            offset: at.offset,
            written_at: Some(written_at),
        };
        Some((index, ticket, ticket.offsets_swap(&p.record.request_id, offsets)?))
    });
    let Some(claims) = ClaimSwaps::collect(pairs) else { return Ok(()) };
    let (indexes, swaps, replaced) = claims.send("offsets").await;
    let replaced = match replaced {
        Ok(replaced) => replaced,
        Err(e) => {
            *written = indexes.into_iter().zip(swaps).map(|(i, swap)| (i, swap, false)).collect();
            return Err(format!("recording offsets in the dedupe store: {e}"));
        }
    };
    let lost = replaced.iter().filter(|ok| !**ok).count();
    *written = indexes
        .into_iter()
        .zip(swaps)
        .zip(replaced)
        .filter(|(_, ok)| *ok)
        .map(|((i, swap), _)| (i, swap, true))
        .collect();
    if lost > 0 {
        return Err(format!("{lost} dedupe claim(s) of this batch are no longer this replica's"));
    }
    Ok(())
}

/// The committed states of a committed batch's shared claims, written after its waiters were
/// answered ([`CommittedStates::write_in_background`]).
pub struct CommittedStates {
    /// The store every claim of this process lives in.
    store: Arc<RedisStore>,
    /// A claim's TTL (the dedupe window), from the commit on.
    ttl: Duration,
    /// Each claim's key and its committed state.
    entries: Vec<(String, String)>,
}

/// After a commit returned: takes over writing the committed state of every committed event's
/// shared claim (its ticket no longer writes or releases it), so that the waiters can be answered
/// at once. `None` when nothing has a shared claim.
pub fn committed_states(
    live: &mut [Pending],
    results: &[Result<Committed, producer::Refusal>],
) -> Option<CommittedStates> {
    let mut states: Option<CommittedStates> = None;
    for (p, result) in live.iter_mut().zip(results) {
        let (Ok(committed), Some(ticket)) = (result, p.completion.ticket.as_mut()) else { continue };
        let (Some(store), Some(entry)) =
            (ticket.store(), ticket.committed_state(&p.record.request_id, committed))
        else {
            continue;
        };
        let states = match &mut states {
            Some(states) => states,
            None => states.insert(CommittedStates {
                store: Arc::clone(store),
                ttl: ticket.ttl(),
                entries: Vec::new(),
            }),
        };
        states.entries.push(entry);
        ticket.keep_pending();
    }
    states
}

impl CommittedStates {
    /// Writes every committed state in one pipeline on the store's runtime, retried (the whole
    /// pipeline: plain writes of true values, safe to repeat) for as long as the claims live.
    /// Until it lands the claims stay pending with their offsets: a repeat on another replica
    /// waits for it (the owner is alive), a repeat on this one is answered from the in-process
    /// table.
    pub fn write_in_background(self) {
        let store = Arc::clone(&self.store);
        store.spawn_detached(async move {
            let give_up = std::time::Instant::now() + self.ttl;
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.store.write_committed_many("commit", &self.entries, self.ttl).await {
                    Ok(()) => return,
                    Err(e) if std::time::Instant::now() + backoff < give_up => {
                        tracing::warn!(
                            error = %e,
                            claims = self.entries.len(),
                            "recording commits in the dedupe store failed; retrying"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            claims = self.entries.len(),
                            "could not record committed deliveries in the dedupe store within the dedupe \
                             window: their claims expired pending"
                        );
                        return;
                    }
                }
            }
        });
    }
}
