//! The open-loop clock: releases request `k` at `start + k/rate`, whatever the server did before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The open-loop clock: a plain thread (sub-millisecond sleeps, unlike tokio's 1 ms timer wheel) that
/// hands out one semaphore permit per request as it falls due. Request `k` is due at `start + k/rate`;
/// its latency is measured from then, however long it waited for a free connection.
pub struct Pacer {
    pub rate: f64,
    /// One permit per request that is due.
    pub released: tokio::sync::Semaphore,
    /// Number of requests of the run, set when the pacer stops; workers stop at this request number.
    pub limit: AtomicU64,
}

/// How long the pacer thread sleeps between releases (its resolution).
const PACER_TICK: Duration = Duration::from_micros(200);

/// How many requests are due `elapsed` after the start: by then, requests `0..=floor(elapsed*rate)` are;
/// once the deadline (`past_deadline`, its offset from the start) has passed, exactly the requests due
/// strictly before it. Never more than `max_requests`.
pub fn due_count(
    elapsed: Duration,
    past_deadline: Option<Duration>,
    rate: f64,
    max_requests: Option<u64>,
) -> u64 {
    let due = match past_deadline {
        Some(d) => (d.as_secs_f64() * rate).ceil() as u64,
        None => (elapsed.as_secs_f64() * rate).floor() as u64 + 1,
    };
    match max_requests {
        Some(max) => due.min(max),
        None => due,
    }
}

impl Pacer {
    pub fn new(rate: f64) -> Pacer {
        Pacer { rate, released: tokio::sync::Semaphore::new(0), limit: AtomicU64::new(u64::MAX) }
    }

    /// When request `n` is due.
    pub fn due_at(&self, start: Instant, n: u64) -> Instant {
        start + Duration::from_secs_f64(n as f64 / self.rate)
    }

    /// Runs on its own thread until the run's bounds are reached, then sets `limit` and wakes every worker.
    pub fn run(&self, start: Instant, deadline: Option<Instant>, max_requests: Option<u64>, workers: usize) {
        let mut released = 0u64;
        loop {
            let now = Instant::now();
            let past_deadline = deadline.filter(|d| now >= *d).map(|d| d - start);
            let due = due_count(now - start, past_deadline, self.rate, max_requests);
            if due > released {
                self.released.add_permits(usize::try_from(due - released).unwrap_or(usize::MAX));
                released = due;
            }
            let finished = past_deadline.is_some() || max_requests.is_some_and(|m| released >= m);
            if finished {
                self.limit.store(released, Ordering::SeqCst);
                // Wake every worker so that each sees the limit and stops.
                self.released.add_permits(workers);
                return;
            }
            std::thread::sleep(PACER_TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_due_at_start_plus_k_over_rate() {
        let ms = Duration::from_millis;
        // Request 0 is due at once; at 100 req/s request 1 at 10 ms.
        assert_eq!(due_count(ms(0), None, 100.0, None), 1);
        assert_eq!(due_count(ms(9), None, 100.0, None), 1);
        assert_eq!(due_count(ms(10), None, 100.0, None), 2);
        assert_eq!(due_count(ms(1000), None, 100.0, None), 101);
        // A 1 s run at 100 req/s holds requests 0..=99: those due strictly before the deadline.
        assert_eq!(due_count(ms(1003), Some(ms(1000)), 100.0, None), 100);
        assert_eq!(due_count(ms(5000), None, 100.0, Some(7)), 7);
    }

    #[test]
    fn the_pacer_releases_the_whole_run_and_then_the_workers() {
        let pacer = Pacer::new(10_000.0);
        let start = Instant::now();
        pacer.run(start, None, Some(50), 4);
        assert_eq!(pacer.limit.load(Ordering::SeqCst), 50);
        assert_eq!(pacer.released.available_permits(), 54);
        assert_eq!(pacer.due_at(start, 20_000), start + Duration::from_secs(2));
    }
}
