//! What the sink and its committers share: each committer's readiness, the dead ones, and the
//! running totals behind `KafkaSink::stats`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics as m;
use crate::sinks::Readiness;
use crate::sinks::kafka::KafkaSinkStats;

/// What the sink and the committers share: whether a producer is usable, and running totals.
pub(crate) struct Shared {
    /// Each committer's readiness; the sink is ready while any committer is.
    readiness: Mutex<Vec<Readiness>>,
    /// Totals for `KafkaSink::stats` (tests and benchmarks read them without a metrics recorder).
    pub(crate) transactions: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) aborted: AtomicU64,
    pub(crate) rebuilds: AtomicU64,
    /// Committers whose thread died of a panic: the sink can never recover them (`/healthz` fails).
    dead: Mutex<Vec<usize>>,
    /// Set by [`super::KafkaSink::crash_committer_for_tests`]: the next committer to wake panics.
    pub(crate) crash_requested: AtomicBool,
}

impl Shared {
    /// Shared state of `committers` committers, each starting `initial`.
    pub fn new(committers: usize, initial: Readiness) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            readiness: Mutex::new(vec![initial.clone(); committers.max(1)]),
            transactions: AtomicU64::new(0),
            events: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
            dead: Mutex::new(Vec::new()),
            crash_requested: AtomicBool::new(false),
        });
        shared.set(0, initial);
        shared
    }

    pub fn stats(&self) -> KafkaSinkStats {
        KafkaSinkStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            aborted: self.aborted.load(Ordering::Relaxed),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
        }
    }

    /// Records that committer `index`'s thread died.
    pub fn mark_dead(&self, index: usize) {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).push(index);
    }

    /// The committers that died, as task names.
    pub fn dead_committers(&self) -> Vec<String> {
        let dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        dead.iter().map(|index| format!("kafka-committer-{index}")).collect()
    }

    /// Ready while any committer is; otherwise the first committer's reason.
    pub fn readiness(&self) -> Readiness {
        Self::overall(&self.readiness.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn overall(each: &[Readiness]) -> Readiness {
        if each.contains(&Readiness::Ready) {
            return Readiness::Ready;
        }
        each.first().cloned().unwrap_or_else(|| Readiness::NotReady("no kafka committer".to_owned()))
    }

    /// Sets committer `index`'s readiness (logging when the sink's overall readiness changes).
    pub fn set(&self, index: usize, readiness: Readiness) {
        let mut each = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        let before = Self::overall(&each);
        if let Some(slot) = each.get_mut(index) {
            *slot = readiness;
        }
        let after = Self::overall(&each);
        m::set_ready("kafka", after == Readiness::Ready);
        if before != after {
            match &after {
                Readiness::Ready => tracing::info!("kafka sink ready"),
                Readiness::NotReady(why) => tracing::warn!(reason = %why, "kafka sink not ready"),
            }
        }
    }
}
