//! An event waiting for its transaction, and the promise to answer its request: the one type the
//! sink (which queues it), the committers (which batch it) and the claim writes share.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::dedupe::ticket::Ticket;
use crate::metrics as m;
use crate::sinks::{Committed, EventRecord, SinkError};

const SINK: &str = "kafka";

/// An event waiting for its transaction.
pub(crate) struct Pending {
    /// Where it goes (resolved from its event type by the sink).
    pub topic: Arc<str>,
    pub record: EventRecord,
    /// Its `coercions` header ([`super::producer::coercions_header`]), serialized once: it is
    /// measured for `size` and written into the headers, maybe more than once (a retried batch).
    pub coercions: Cow<'static, str>,
    /// Its share of `batch_max_bytes`.
    pub size: usize,
    /// The request's deadline: the batch does not linger past it, and it is left out of a
    /// batch that starts after it (its request has been answered 503 by then).
    pub deadline: Instant,
    /// When it was queued: lingering counts from the oldest event of a batch.
    pub enqueued_at: Instant,
    pub completion: Completion,
}

impl Pending {
    /// Answers the request and settles its claim with `result`.
    pub fn complete(self, result: Result<Committed, SinkError>) {
        let Pending { record, completion, .. } = self;
        completion.complete(&record.request_id, result);
    }

    /// Answers the request "unavailable" (503): nothing of it committed.
    pub fn unavailable(self, why: &str) {
        self.complete(Err(SinkError::Unavailable { sink: SINK, detail: why.to_owned() }));
    }

    /// Answers the request "unavailable" now but keeps its claim (the outcome is not known yet:
    /// the committer settles it later with [`Completion::complete`]).
    pub fn answer_unavailable_now(&mut self, why: &str) {
        self.completion.answer(Err(SinkError::Unavailable { sink: SINK, detail: why.to_owned() }));
    }
}

/// Answers one waiter, and records the outcome for sender-retry dedupe even when the waiter has
/// gone (timed out). Dropped unanswered, the waiter sees "unavailable" and dedupe "not committed".
pub(crate) struct Completion {
    reply: Option<oneshot::Sender<Result<Committed, SinkError>>>,
    /// The delivery's dedupe claim (local, and shared when configured), settled with the outcome.
    pub(super) ticket: Option<Ticket>,
    /// Counts the event in `cxone_ingest_kafka_in_flight_events` until it is answered or dropped.
    _in_flight: m::GaugeGuard,
}

impl Completion {
    /// Counts the event as in flight until it is answered.
    pub fn new(reply: oneshot::Sender<Result<Committed, SinkError>>, ticket: Ticket) -> Completion {
        Completion {
            reply: Some(reply),
            ticket: Some(ticket),
            _in_flight: m::GaugeGuard::enter(m::KAFKA_IN_FLIGHT_EVENTS),
        }
    }

    /// Answers the waiter (if it still waits) without settling the claim.
    fn answer(&mut self, result: Result<Committed, SinkError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }

    /// Settles the claim with the outcome (committed when `Ok`) and answers the waiter.
    pub fn complete(mut self, request_id: &str, result: Result<Committed, SinkError>) {
        if let Some(ticket) = self.ticket.take() {
            ticket.finish(result.as_ref().ok().map(|c| (c, request_id)));
        }
        self.answer(result);
    }

    /// The outcome stays unknown: the shared claim is left pending with its offsets (whoever
    /// claims the delivery next reads it back once the transaction has surely ended); the local
    /// claim is released; the waiter, if any, gets `why` as a 503.
    pub fn leave_unknown(mut self, why: &str) {
        if let Some(mut ticket) = self.ticket.take() {
            ticket.keep_pending();
            ticket.finish(None);
        }
        self.answer(Err(SinkError::Unavailable { sink: SINK, detail: why.to_owned() }));
    }
}
