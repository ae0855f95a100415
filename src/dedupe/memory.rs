//! The in-process dedupe table: a sender's repeated delivery is answered with the original commit.
//!
//! Per replica, in memory, bounded: a delivery is remembered from its commit for `window`, at most
//! `max_entries` of them (oldest forgotten first). A repeat that reaches another replica, arrives
//! after the window, or after this process restarted, is published again (docs/kafka.md).
//!
//! The outcome of a delivery is recorded by the committer itself ([`DedupeClaim::resolve`]), not by
//! the request that sent it: a request that gave up at its deadline (503) while its event still
//! committed leaves a record, so the sender's retry is answered from it rather than published again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::metrics as m;
use crate::sinks::Committed;

/// One remembered delivery.
enum Slot {
    /// Its transaction has not finished yet; later repeats wait here to learn the outcome.
    InFlight { waiters: Vec<oneshot::Sender<()>> },
    /// Committed: what a repeat is answered with.
    Done { committed: Committed, request_id: String, at: Instant },
}

/// All deliveries remembered under one correlation id (nearly always one).
type Slots = Vec<([u8; 32], Slot)>;

struct State {
    /// correlation id -> deliveries under it.
    by_correlation: HashMap<Arc<str>, Slots>,
    /// Committed deliveries oldest first, for eviction by age and by count.
    order: VecDeque<(Instant, Arc<str>, [u8; 32])>,
}

/// The sender-retry memory of one `KafkaSink`.
pub struct Dedupe {
    state: Mutex<State>,
    /// How long a committed delivery is remembered.
    window: Duration,
    /// Most committed deliveries remembered.
    max_entries: usize,
}

/// What `claim` found.
pub enum Claim {
    /// Already committed: answer with this (`duplicate_of` set); publish nothing.
    Duplicate(Committed),
    /// The same delivery is being published right now: wait for this, then claim again.
    Wait(oneshot::Receiver<()>),
    /// New: the caller publishes and the committer resolves the claim.
    Owner(DedupeClaim),
}

impl Dedupe {
    pub fn new(window: Duration, max_entries: usize) -> Arc<Dedupe> {
        Arc::new(Dedupe {
            state: Mutex::new(State { by_correlation: HashMap::new(), order: VecDeque::new() }),
            window,
            max_entries,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one statement).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks a delivery up, registering it as in flight when it is new.
    pub fn claim(self: &Arc<Self>, correlation_id: &str, body_sha256: [u8; 32]) -> Claim {
        let now = Instant::now();
        let mut state = self.lock();
        self.evict(&mut state, now);
        let slots = state.by_correlation.get_mut(correlation_id);
        let reused = match slots {
            Some(slots) => {
                if let Some((_, slot)) = slots.iter_mut().find(|(h, _)| *h == body_sha256) {
                    return match slot {
                        Slot::Done { committed, request_id, .. } => {
                            metrics::counter!(m::DEDUPE_HITS).increment(1);
                            Claim::Duplicate(Committed {
                                duplicate_of: Some(request_id.clone()),
                                ..committed.clone()
                            })
                        }
                        Slot::InFlight { waiters } => {
                            let (tx, rx) = oneshot::channel();
                            waiters.push(tx);
                            Claim::Wait(rx)
                        }
                    };
                }
                slots.push((body_sha256, Slot::InFlight { waiters: Vec::new() }));
                true
            }
            None => {
                state.by_correlation.insert(
                    Arc::from(correlation_id),
                    vec![(body_sha256, Slot::InFlight { waiters: Vec::new() })],
                );
                false
            }
        };
        if reused {
            metrics::counter!(m::CORRELATION_ID_REUSE).increment(1);
        }
        let key = state.by_correlation.get_key_value(correlation_id).map(|(k, _)| Arc::clone(k));
        Claim::Owner(DedupeClaim {
            dedupe: Arc::clone(self),
            correlation_id: key.unwrap_or_else(|| Arc::from(correlation_id)),
            body_sha256,
            resolved: false,
        })
    }

    /// Forgets committed deliveries older than the window or beyond the count.
    fn evict(&self, state: &mut State, now: Instant) {
        while let Some((at, _, _)) = state.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.window;
            if !expired && state.order.len() <= self.max_entries {
                break;
            }
            let Some((at, cid, hash)) = state.order.pop_front() else { break };
            if let Some(slots) = state.by_correlation.get_mut(&cid) {
                slots.retain(|(h, slot)| {
                    !(*h == hash && matches!(slot, Slot::Done { at: a, .. } if *a == at))
                });
                if slots.is_empty() {
                    state.by_correlation.remove(&cid);
                }
            }
        }
    }

    /// Records how an in-flight delivery ended and wakes the repeats waiting for it.
    fn finish(&self, correlation_id: &Arc<str>, hash: [u8; 32], outcome: Option<(&Committed, &str)>) {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(slots) = state.by_correlation.get_mut(correlation_id) else { return };
        let Some(index) = slots.iter().position(|(h, s)| *h == hash && matches!(s, Slot::InFlight { .. }))
        else {
            return;
        };
        let waiters = match outcome {
            Some((committed, request_id)) => {
                let done = Slot::Done {
                    committed: Committed { duplicate_of: None, ..committed.clone() },
                    request_id: request_id.to_owned(),
                    at: now,
                };
                let old = std::mem::replace(&mut slots[index].1, done);
                state.order.push_back((now, Arc::clone(correlation_id), hash));
                old
            }
            None => {
                let (_, old) = slots.swap_remove(index);
                if slots.is_empty() {
                    state.by_correlation.remove(correlation_id);
                }
                old
            }
        };
        self.evict(&mut state, now);
        drop(state);
        if let Slot::InFlight { waiters } = waiters {
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }

    /// Committed deliveries remembered now.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The right (and duty) to publish one delivery. Resolving it records the outcome; dropping it
/// unresolved counts as "not committed" (the next repeat publishes).
pub struct DedupeClaim {
    dedupe: Arc<Dedupe>,
    correlation_id: Arc<str>,
    body_sha256: [u8; 32],
    resolved: bool,
}

impl DedupeClaim {
    /// Records the delivery's outcome: `Some((committed, request id))` when its transaction committed.
    pub fn resolve(mut self, outcome: Option<(&Committed, &str)>) {
        self.resolved = true;
        self.dedupe.finish(&self.correlation_id, self.body_sha256, outcome);
    }
}

impl Drop for DedupeClaim {
    fn drop(&mut self) {
        if !self.resolved {
            self.dedupe.finish(&self.correlation_id, self.body_sha256, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64) -> Committed {
        Committed { topic: "t".into(), partition: 0, offset, duplicate_of: None }
    }

    fn owner(claim: Claim) -> DedupeClaim {
        match claim {
            Claim::Owner(c) => c,
            _ => panic!("expected owner"),
        }
    }

    #[test]
    fn a_repeat_gets_the_original_commit() {
        let d = Dedupe::new(Duration::from_secs(60), 10);
        owner(d.claim("c1", [1; 32])).resolve(Some((&committed(7), "req-1")));
        match d.claim("c1", [1; 32]) {
            Claim::Duplicate(c) => {
                assert_eq!(c.offset, 7);
                assert_eq!(c.duplicate_of.as_deref(), Some("req-1"));
            }
            _ => panic!("expected duplicate"),
        }
        // Another body under the same correlation id is new.
        owner(d.claim("c1", [2; 32])).resolve(Some((&committed(8), "req-2")));
        assert_eq!(d.len(), 2);
    }

    #[tokio::test]
    async fn a_concurrent_repeat_waits_and_takes_over_after_a_failure() {
        let d = Dedupe::new(Duration::from_secs(60), 10);
        let first = owner(d.claim("c1", [1; 32]));
        let Claim::Wait(rx) = d.claim("c1", [1; 32]) else { panic!("expected wait") };
        drop(first); // failed (or cancelled before reaching the committer)
        rx.await.unwrap();
        let second = owner(d.claim("c1", [1; 32]));
        let Claim::Wait(rx) = d.claim("c1", [1; 32]) else { panic!("expected wait") };
        second.resolve(Some((&committed(3), "req-2")));
        rx.await.unwrap();
        assert!(
            matches!(d.claim("c1", [1; 32]), Claim::Duplicate(c) if c.duplicate_of.as_deref() == Some("req-2"))
        );
    }

    #[test]
    fn memory_is_bounded_by_count_and_window() {
        let d = Dedupe::new(Duration::from_secs(60), 3);
        for i in 0..5u8 {
            owner(d.claim(&format!("c{i}"), [i; 32])).resolve(Some((&committed(i.into()), "r")));
        }
        assert_eq!(d.len(), 3);
        assert!(matches!(d.claim("c0", [0; 32]), Claim::Owner(_)), "oldest was evicted");
        assert!(matches!(d.claim("c4", [4; 32]), Claim::Duplicate(_)));

        let short = Dedupe::new(Duration::ZERO, 10);
        owner(short.claim("c", [0; 32])).resolve(Some((&committed(1), "r")));
        assert!(matches!(short.claim("c", [0; 32]), Claim::Owner(_)), "window passed");
    }
}
