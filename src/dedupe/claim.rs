//! The claim flow: who may publish a delivery, and what a repeat is answered with.
//!
//! The in-process table ([`super::memory`]) is always in front: committed deliveries it remembers
//! are answered without a network call, and concurrent repeats inside one process wait there.
//! With a shared store, the one request of this process that owns a delivery locally then claims
//! it in the store (`SET NX` semantics, sent with the other claims of its burst in one round trip:
//! [`super::burst`]): a delivery is never published without that claim.
//!
//! - The store holds *committed* → the repeat is answered `duplicate_of` at once.
//! - It holds *pending* → another request (here or on another replica) is publishing it: poll
//!   every [`POLL_EVERY`] until it is committed (duplicate) or released (claim it), or the
//!   request's deadline passes (503: the sender retries).
//! - A *pending* claim that is older than the transaction timeout (its owner died: its transaction
//!   has ended one way or the other), or that this replica itself left behind (no request of it
//!   holds the delivery), is taken over with a compare-and-set. Without offsets it was never
//!   committed (offsets are written before every commit). With offsets its record is read back
//!   (committed → answered `duplicate_of`; aborted → taken over); where the broker makes reading
//!   back unsound it is published again, which may duplicate it, never lose it.
//! - The store is unreachable → 503 (`dedupe_store` unavailable); nothing is published.
//!
//! The committer then ([`Ticket`], [`super::ticket`]): writes the offsets into the pending claims
//! of a batch before committing (one compare-and-set call), the committed states after (one
//! pipeline), and releases the claims of events that definitely did not commit
//! (compare-and-delete, only its own value).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::memory::{Claim, Dedupe, DedupeClaim};
use super::redis::{RedisStore, SetIfAbsent, Swap};
use super::store::{ClaimState, Offsets, StoreError, claim_key, now_ms};
use super::ticket::Ticket;
use crate::metrics as m;
use crate::sinks::{Committed, Readiness, SinkError};

/// How often a repeat finding a *pending* claim looks again.
pub const POLL_EVERY: Duration = Duration::from_millis(50);
/// Added to every takeover bound: clock skew between replicas, the broker's own abort.
const STALE_MARGIN: Duration = Duration::from_secs(5);
/// The longest request deadline the service accepts (`server.request_deadline_ms`): a claim
/// written by 0.1 has no `written_at`, and its offsets were written at most this long after it
/// was claimed.
const LONGEST_REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// The sink name in errors caused by the store (`/readyz` and the 503's detail name it).
pub const STORE: &str = "dedupe_store";

/// What reading a claim's record back found ([`CommitReader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBackAnswer {
    /// The record is at its offset with the claim's request id: committed.
    Committed,
    /// Not visible below the last stable offset: aborted.
    Aborted,
    /// Not decided yet (transaction still open, broker slow or down, not probed yet): try later.
    Undecided(String),
    /// Read-back is off: the broker shows aborted records to `read_committed` readers.
    Off,
}

/// Reads back where a claim says its record is: the Kafka sink's `read_committed` reader.
#[async_trait::async_trait]
pub trait CommitReader: Send + Sync {
    async fn read_back(&self, offsets: &Offsets, request_id: &str, deadline: Instant) -> ReadBackAnswer;
}

/// How long claims take to settle: the bounds after which an owner is surely gone.
#[derive(Debug, Clone, Copy)]
pub struct ClaimTimings {
    /// The dedupe window: every claim's TTL.
    pub window: Duration,
    /// `kafka.transaction_timeout_ms`: the broker ends a transaction left open this long.
    pub transaction_timeout: Duration,
    /// `kafka.call_timeout_ms`: the longest a commit call waits before it is called again.
    pub call_timeout: Duration,
}

impl ClaimTimings {
    /// When a pending claim's transaction has surely ended, one way or the other: its offsets'
    /// write time + the call timeout + the transaction timeout (+ margin).
    fn ended_by(&self, claimed_at: u64, offsets: &Offsets) -> u64 {
        let written_at = offsets.written_at.unwrap_or(claimed_at + millis(LONGEST_REQUEST_DEADLINE));
        written_at + millis(self.call_timeout + self.transaction_timeout + STALE_MARGIN)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Decides, per delivery, whether this request publishes it or is a repeat.
pub struct Deduper {
    /// This process's table: the whole memory with `memory`, the cache in front of the store otherwise.
    local: Arc<Dedupe>,
    /// The shared store, when configured.
    shared: Option<Arc<RedisStore>>,
    /// This replica's name in claims (its base transactional id: unique per replica).
    owner: String,
    timings: ClaimTimings,
    /// Reads an abandoned claim's record back before anyone publishes it again.
    reader: Arc<dyn CommitReader>,
}

/// What a request does with its delivery.
pub enum Admission {
    /// A repeat of a committed delivery: answer this (`duplicate_of` set); publish nothing.
    Duplicate(Committed),
    /// New: publish it; the committer settles the ticket.
    Publish(Ticket),
}

/// What is known about another owner's pending claim.
enum PendingClaim {
    /// Its owner may still be publishing it: wait.
    Live,
    /// Its owner is gone and it has no offsets: it never committed; take it over.
    NeverCommitted,
    /// Its owner is gone and its transaction has surely ended: read the record back.
    Ended(Offsets),
}

impl Deduper {
    pub fn new(
        local: Arc<Dedupe>,
        shared: Option<Arc<RedisStore>>,
        owner: String,
        timings: ClaimTimings,
        reader: Arc<dyn CommitReader>,
    ) -> Deduper {
        Deduper { local, shared, owner, timings, reader }
    }

    /// The shared store's readiness (`None` with `memory`).
    pub fn store_readiness(&self) -> Option<Readiness> {
        self.shared.as_ref().map(|store| store.readiness())
    }

    /// The shared store, when configured.
    pub fn store(&self) -> Option<&Arc<RedisStore>> {
        self.shared.as_ref()
    }

    /// Claims the delivery (`correlation_id`, `body_sha256`) for `request_id`, or finds it
    /// committed, within `deadline`.
    pub async fn admit(
        &self,
        correlation_id: &str,
        body_sha256: [u8; 32],
        request_id: &str,
        deadline: Instant,
    ) -> Result<Admission, SinkError> {
        loop {
            match self.local.claim(correlation_id, body_sha256) {
                Claim::Duplicate(committed) => return Ok(Admission::Duplicate(committed)),
                // The same delivery is in flight in this process: learn its outcome, then look
                // again (committed -> duplicate; failed -> this one goes on).
                Claim::Wait(first_done) => {
                    if tokio::time::timeout_at(deadline.into(), first_done).await.is_err() {
                        return Err(SinkError::DeadlineExceeded { sink: STORE });
                    }
                }
                Claim::Owner(local) => {
                    let Some(store) = &self.shared else {
                        return Ok(Admission::Publish(Ticket::local_only(local)));
                    };
                    let key = claim_key(correlation_id, &body_sha256);
                    return self.claim_shared(store, local, key, request_id, deadline).await;
                }
            }
        }
    }

    /// Claims `key` in the store, waiting out another owner's pending claim within `deadline`.
    async fn claim_shared(
        &self,
        store: &Arc<RedisStore>,
        local: DedupeClaim,
        key: String,
        request_id: &str,
        deadline: Instant,
    ) -> Result<Admission, SinkError> {
        let pending = |claimed_at| {
            ClaimState::Pending {
                owner: self.owner.clone(),
                request_id: request_id.to_owned(),
                claimed_at,
                offsets: None,
            }
            .to_json()
        };
        let mut claimed_at = now_ms();
        let mut value = pending(claimed_at);
        let mut retried = false;
        loop {
            // Should the request be cancelled while the claim is on its way, the claim must not
            // stay behind (other replicas would wait for it until the transaction timeout). The
            // claim goes out with the other claims of its burst ([`super::burst`]), which also
            // releases it when its answer finds the request gone.
            let in_flight = ReleaseIfCancelled::new(store, &key, &value);
            let found = within(deadline, store.claim(&key, &value, self.timings.window)).await;
            in_flight.disarm();
            let found = match found {
                Ok(found) => found,
                // A connection the store dropped (a restart, a failover) fails its next call once;
                // the client reconnects for the call after it. One more try before a 503.
                Err(SinkError::Unavailable { .. }) if !retried => {
                    retried = true;
                    continue;
                }
                Err(e) => {
                    release_value(store, &key, &value);
                    return Err(e);
                }
            };
            let raw = match found {
                SetIfAbsent::Created => return Ok(self.ticket(store, local, key, value, claimed_at)),
                // Our own value: the failed try landed although its answer was lost.
                SetIfAbsent::Exists(raw) if raw == value => {
                    return Ok(self.ticket(store, local, key, value, claimed_at));
                }
                SetIfAbsent::Exists(raw) => raw,
            };
            let (first_request, state) = match ClaimState::parse(&raw) {
                None => return Err(unavailable(StoreError::Corrupt(key))),
                Some(state @ ClaimState::Committed { .. }) => {
                    metrics::counter!(m::DEDUPE_HITS).increment(1);
                    let committed = state.as_duplicate().unwrap_or_else(|| unreachable_committed(&state));
                    // Cache it: the next repeat reaching this replica needs no round trip.
                    let first = committed.duplicate_of.clone().unwrap_or_default();
                    local.resolve(Some((&committed, &first)));
                    return Ok(Admission::Duplicate(committed));
                }
                Some(ClaimState::Pending { owner, claimed_at, offsets, request_id: first }) => {
                    (first, self.pending_claim(&owner, claimed_at, offsets))
                }
            };
            let outcome = match state {
                PendingClaim::Live => {
                    if Instant::now() + POLL_EVERY >= deadline {
                        return Err(SinkError::DeadlineExceeded { sink: STORE });
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                    continue;
                }
                PendingClaim::NeverCommitted => "aborted",
                PendingClaim::Ended(offsets) => {
                    match self.reader.read_back(&offsets, &first_request, deadline).await {
                        ReadBackAnswer::Committed => {
                            let committed = ClaimState::Committed {
                                request_id: first_request.clone(),
                                topic: offsets.topic.clone(),
                                partition: offsets.partition,
                                offset: offsets.offset,
                            };
                            let swap = Swap { key: key.clone(), old: raw, new: committed.to_json() };
                            if !within(deadline, store.compare_and_set("claim", &swap, self.timings.window))
                                .await?
                            {
                                continue;
                            }
                            metrics::counter!(m::DEDUPE_RESOLUTIONS, "outcome" => "committed").increment(1);
                            metrics::counter!(m::DEDUPE_HITS).increment(1);
                            tracing::info!(
                                request_id,
                                duplicate_of = %first_request,
                                "an abandoned claim's record was read back committed: answering duplicate_of"
                            );
                            let answer =
                                committed.as_duplicate().unwrap_or_else(|| unreachable_committed(&committed));
                            local.resolve(Some((&answer, &first_request)));
                            return Ok(Admission::Duplicate(answer));
                        }
                        ReadBackAnswer::Aborted => "aborted",
                        ReadBackAnswer::Off => "unknown",
                        ReadBackAnswer::Undecided(why) => {
                            metrics::counter!(m::DEDUPE_RESOLUTIONS, "outcome" => "open").increment(1);
                            return Err(SinkError::Unavailable {
                                sink: STORE,
                                detail: format!("the outcome of an earlier attempt is not known yet: {why}"),
                            });
                        }
                    }
                }
            };
            // The owner is gone and its record did not commit (or cannot be read back): take over.
            claimed_at = now_ms();
            value = pending(claimed_at);
            let swap = Swap { key: key.clone(), old: raw, new: value.clone() };
            let in_flight = ReleaseIfCancelled::new(store, &key, &value);
            let taken = within(deadline, store.compare_and_set("claim", &swap, self.timings.window)).await;
            in_flight.disarm();
            let taken = taken.inspect_err(|_| release_value(store, &key, &value))?;
            if !taken {
                continue;
            }
            metrics::counter!(m::DEDUPE_RESOLUTIONS, "outcome" => outcome).increment(1);
            if outcome == "unknown" {
                tracing::warn!(
                    request_id,
                    previous = %first_request,
                    "took over an abandoned dedupe claim whose commit outcome is unknown (read-back is off \
                     on this broker): publishing it again (a duplicate if that commit went through)"
                );
            } else {
                tracing::info!(request_id, previous = %first_request, "took over an abandoned dedupe claim");
            }
            return Ok(self.ticket(store, local, key, value, claimed_at));
        }
    }

    /// Whether a pending claim's owner may still be publishing it. Without offsets: gone when it
    /// is this replica's own (no request of this process holds the delivery, or the local claim
    /// would have made us wait), or older than the transaction timeout (+ margin); taking such a
    /// claim over is always safe, since its owner can only commit after a compare-and-set of it.
    /// With offsets: its transaction has surely ended when it is this replica's own (its committer
    /// has let go of it after a new producer's `init_transactions`, or the process restarted:
    /// then read-back says "undecided" until that transaction ended), or past
    /// [`ClaimTimings::ended_by`].
    fn pending_claim(&self, owner: &str, claimed_at: u64, offsets: Option<Offsets>) -> PendingClaim {
        let own = owner == self.owner;
        match offsets {
            None => {
                let age = Duration::from_millis(now_ms().saturating_sub(claimed_at));
                if own || age > self.timings.transaction_timeout + STALE_MARGIN {
                    PendingClaim::NeverCommitted
                } else {
                    PendingClaim::Live
                }
            }
            Some(offsets) => {
                if own || now_ms() > self.timings.ended_by(claimed_at, &offsets) {
                    PendingClaim::Ended(offsets)
                } else {
                    PendingClaim::Live
                }
            }
        }
    }

    fn ticket(
        &self,
        store: &Arc<RedisStore>,
        local: DedupeClaim,
        key: String,
        value: String,
        claimed_at: u64,
    ) -> Admission {
        Admission::Publish(Ticket::shared(
            local,
            store,
            key,
            value,
            self.owner.clone(),
            claimed_at,
            self.timings.window,
        ))
    }
}

/// Releases a claim whose write was sent but whose request was cancelled before the answer came
/// (the client went away): armed until [`disarm`](Self::disarm)ed after the answer.
struct ReleaseIfCancelled<'a> {
    store: &'a Arc<RedisStore>,
    key: &'a str,
    value: &'a str,
    armed: bool,
}

impl<'a> ReleaseIfCancelled<'a> {
    fn new(store: &'a Arc<RedisStore>, key: &'a str, value: &'a str) -> Self {
        ReleaseIfCancelled { store, key, value, armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ReleaseIfCancelled<'_> {
    fn drop(&mut self) {
        if self.armed {
            release_value(self.store, self.key, self.value);
        }
    }
}

fn unreachable_committed(state: &ClaimState) -> Committed {
    // `as_duplicate` is `Some` for every committed state; keep a harmless answer regardless.
    tracing::error!(?state, "committed claim without an answer");
    Committed { topic: String::new(), partition: -1, offset: -1, duplicate_of: None }
}

/// Runs a store call within the request's deadline.
async fn within<T>(
    deadline: Instant,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, SinkError> {
    match tokio::time::timeout_at(deadline.into(), call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(SinkError::DeadlineExceeded { sink: STORE }),
    }
}

/// Deletes `key` if it still holds `value` (in the background, retried). Used when a claim's own
/// write may have reached the store although its answer did not arrive in time (the deadline cut
/// the wait short, or the connection broke): without it the delivery would stay claimed by a
/// request that is gone, and a retry on another replica would wait for the transaction timeout.
fn release_value(store: &Arc<RedisStore>, key: &str, value: &str) {
    release_values(store, key, [value]);
}

/// Deletes `key` if it holds any of `values` (in the background, retried while the store cannot
/// be reached: [`RedisStore::release_later`]).
pub(super) fn release_values<'a>(
    store: &Arc<RedisStore>,
    key: &str,
    values: impl IntoIterator<Item = &'a str>,
) {
    let entries: Vec<(String, String)> =
        values.into_iter().map(|value| (key.to_owned(), value.to_owned())).collect();
    store.release_later("release", entries);
}

fn unavailable(e: StoreError) -> SinkError {
    SinkError::Unavailable { sink: STORE, detail: e.to_string() }
}
