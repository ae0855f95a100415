//! The one fake sink (both sink traits: counts, keeps what it got, answers per [`Mode`]) and the
//! in-process app state that `http::routes` tests drive without a socket. Fakes stand in for the
//! sinks only where a test is about the HTTP layer or the policy; Kafka and S3 behaviour is tested
//! against the real servers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxone_ingest::config::Config;
use cxone_ingest::contract::Contract;
use cxone_ingest::http::AppState;
use cxone_ingest::http::config::Secret;
use cxone_ingest::pipeline::Pipeline;
use cxone_ingest::sinks::{
    Committed, DeadLetter, DeadLetterSink, EventRecord, EventSink, Readiness, SinkError, Stored,
};
use tokio::sync::Semaphore;

/// How a [`FakeSink`] answers.
#[derive(Clone)]
pub enum Mode {
    /// Confirms at once.
    Ok,
    /// Reports the sink unavailable.
    Fail,
    /// Reports the sink's bounded queue full.
    Full,
    /// Ignores the deadline and takes this long.
    Slow(Duration),
    /// Waits for a permit on the gate (tests release it), then confirms.
    Gated(Arc<Semaphore>),
    /// Refuses the record for good (as Kafka refuses one larger than `message.max.bytes`).
    Refuse,
}

/// A double for both sink traits: counts calls, keeps what it was given, answers per [`Mode`].
pub struct FakeSink {
    mode: Mode,
    /// While set, every call is answered "unavailable", whatever the mode.
    failing: AtomicBool,
    ready: Readiness,
    published: AtomicUsize,
    stored: AtomicUsize,
    /// Records confirmed as published, in order (offsets are their positions).
    records: Mutex<Vec<EventRecord>>,
    /// The last dead letter received.
    last_letter: Mutex<Option<DeadLetter>>,
}

impl FakeSink {
    pub fn new(mode: Mode) -> Arc<FakeSink> {
        Arc::new(FakeSink {
            mode,
            failing: AtomicBool::new(false),
            ready: Readiness::Ready,
            published: AtomicUsize::new(0),
            stored: AtomicUsize::new(0),
            records: Mutex::new(Vec::new()),
            last_letter: Mutex::new(None),
        })
    }

    /// Confirms everything at once.
    pub fn ok() -> Arc<FakeSink> {
        FakeSink::new(Mode::Ok)
    }

    /// Confirms everything, but says it is not ready (for `/readyz`).
    pub fn not_ready(why: &str) -> Arc<FakeSink> {
        let mut sink = Arc::into_inner(FakeSink::ok()).expect("fresh sink");
        sink.ready = Readiness::NotReady(why.to_owned());
        Arc::new(sink)
    }

    /// Every call from now on fails (`true`) or follows the mode again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Calls of both kinds so far.
    pub fn calls(&self) -> usize {
        let (published, stored) = self.counts();
        published + stored
    }

    /// (publish calls, store calls)
    pub fn counts(&self) -> (usize, usize) {
        (self.published.load(Ordering::SeqCst), self.stored.load(Ordering::SeqCst))
    }

    /// The records confirmed as published.
    pub fn published_records(&self) -> Vec<EventRecord> {
        self.records.lock().expect("records").clone()
    }

    /// The last dead letter received.
    pub fn last_letter(&self) -> Option<DeadLetter> {
        self.last_letter.lock().expect("last letter").clone()
    }

    /// The last dead letter's headers (empty when none).
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.last_letter().map(|letter| letter.headers).unwrap_or_default()
    }

    async fn answer<T>(&self, ok: T) -> Result<T, SinkError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::Unavailable { sink: "fake", detail: "down for the test".into() });
        }
        match &self.mode {
            Mode::Ok => Ok(ok),
            Mode::Fail => Err(SinkError::Unavailable { sink: "fake", detail: "down for the test".into() }),
            Mode::Full => Err(SinkError::Overloaded { sink: "fake" }),
            Mode::Refuse => Err(SinkError::Refused {
                sink: "fake",
                reason: "too_large",
                detail: "refused for the test".into(),
            }),
            Mode::Slow(delay) => {
                tokio::time::sleep(*delay).await;
                Ok(ok)
            }
            Mode::Gated(gate) => {
                let permit = gate.acquire().await.expect("gate closed");
                permit.forget();
                Ok(ok)
            }
        }
    }
}

#[async_trait::async_trait]
impl EventSink for FakeSink {
    async fn publish(&self, record: EventRecord, _deadline: Instant) -> Result<Committed, SinkError> {
        self.published.fetch_add(1, Ordering::SeqCst);
        assert!(!record.request_id.is_empty());
        let offset = self.records.lock().expect("records").len() as i64;
        let committed = Committed { topic: "fake-topic".into(), partition: 0, offset, duplicate_of: None };
        let answer = self.answer(committed).await;
        if answer.is_ok() {
            self.records.lock().expect("records").push(record);
        }
        answer
    }

    fn readiness(&self) -> Readiness {
        self.ready.clone()
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for FakeSink {
    async fn store(&self, letter: DeadLetter, _deadline: Instant) -> Result<Stored, SinkError> {
        self.stored.fetch_add(1, Ordering::SeqCst);
        let stored = Stored {
            bucket: "fake-bucket".into(),
            key: format!("errors/{}.jsonl", letter.request_id),
            line: 1,
        };
        *self.last_letter.lock().expect("last letter") = Some(letter);
        self.answer(stored).await
    }

    fn readiness(&self) -> Readiness {
        self.ready.clone()
    }
}

/// The defaults with `secret`, both listeners on free loopback ports (for in-process servers).
pub fn test_config(secret: &str) -> Config {
    let mut config = Config::default();
    config.signature.secrets = vec![Secret::new(secret)];
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.server.admin_listen = "127.0.0.1:0".parse().expect("addr");
    config
}

/// The app state `http::routes` and `http::server::start` run on: the real contract and policy,
/// `config`'s limits, the given sinks, metrics on.
pub fn app_state(
    config: &Config,
    events: Arc<dyn EventSink>,
    dead_letters: Arc<dyn DeadLetterSink>,
) -> Arc<AppState> {
    let pipeline = Pipeline::new(Contract::shared_builtin(), events, dead_letters, config.server.limits());
    Arc::new(AppState::new(config, pipeline, Some(cxone_ingest::metrics::install())).expect("app state"))
}
