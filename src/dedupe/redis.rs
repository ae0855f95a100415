//! The shared store's client: the few atomic Redis/Valkey operations claims and the replay lock
//! need (set-if-absent, compare-and-set, compare-and-delete, compare-and-expire), timed and
//! counted per operation, with the store's readiness kept fresh by a write probe every second.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`, reconnecting by itself) lives on the
//! server's runtime; the Kafka committers run on runtimes of their own without an IO driver, so
//! their calls are handed to that runtime ([`RedisStore::on_home_runtime`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, ErrorKind, RedisError, ServerErrorKind, TlsCertificates};

use super::burst::ClaimBurst;
use super::scripts::{self, ScriptCall};
use super::store::{ClaimState, StoreError};
use crate::metrics as m;
use crate::sinks::Readiness;

/// Per call: an answer slower than this counts as the store being unavailable (503, retry).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a release is retried while the store cannot be reached (a restart, a failover).
pub const RELEASE_RETRY_FOR: Duration = Duration::from_secs(120);
/// How often readiness is re-checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The readiness probe's key: written (`SET NX PX GET`, the claims' own form) every second, so
/// that a store that cannot take writes (a read-only replica after a failover, out of memory
/// under `noeviction`, too old for `SET NX GET`) is not ready.
const READINESS_KEY: &str = "cxone-ingest:readiness";

/// What an attempt to create a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetIfAbsent {
    /// The key was absent and now holds our value.
    Created,
    /// The key exists: its value (unchanged).
    Exists(String),
}

/// A compare-and-set of one key, for [`RedisStore::compare_and_set_many`].
#[derive(Debug, Clone)]
pub struct Swap {
    pub key: String,
    /// The value the key must still hold.
    pub old: String,
    /// Its new value.
    pub new: String,
}

/// A client of one Redis/Valkey server. Cheap to share behind an `Arc`.
pub struct RedisStore {
    /// The connection; clones share it.
    connection: ConnectionManager,
    /// The runtime the connection's tasks run on (the server's).
    home: tokio::runtime::Handle,
    /// The URL without its password, for messages.
    redacted_url: String,
    /// The last known state: set by every call and by the ping task.
    readiness: Mutex<Readiness>,
    /// The server refused `EVALSHA`/`SCRIPT LOAD` (renamed or denied): scripts are sent whole (`EVAL`).
    eval_only: AtomicBool,
    /// The requests' claims, sent a burst per call.
    claims: ClaimBurst,
    /// Claim calls sent ([`claim_many`](Self::claim_many)): how well claims are grouped.
    claim_calls: AtomicU64,
}

impl RedisStore {
    /// A client of `url` (`redis://[user:password@]host:port[/db]` or `rediss://…`). Connects in
    /// the background: until the first PING answers, `readiness()` says why not. Must be called
    /// on the server's tokio runtime (the connection and the ping task live there).
    pub fn connect(url: &str, redacted_url: String) -> Result<Arc<RedisStore>, StoreError> {
        RedisStore::connect_with_ca(url, redacted_url, None)
    }

    /// [`connect`](Self::connect), trusting only the CA(s) in `ca_file` (`dedupe.ca_file`) for a
    /// `rediss://` store when given.
    pub fn connect_with_ca(
        url: &str,
        redacted_url: String,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Arc<RedisStore>, StoreError> {
        let client = match ca_file {
            None => Client::open(url),
            Some(path) => {
                let pem = super::config::read_ca_file(path).map_err(StoreError::Unavailable)?;
                Client::build_with_tls(url, TlsCertificates { client_tls: None, root_cert: Some(pem) })
            }
        }
        .map_err(|e| StoreError::Unavailable(format!("dedupe.store = {redacted_url}: {}", describe(&e))))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let home = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Unavailable("the dedupe store needs a tokio runtime".to_owned()))?;
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        let (claims, queued) = ClaimBurst::new();
        let store = Arc::new(RedisStore {
            connection,
            home,
            readiness: Mutex::new(Readiness::NotReady(format!("connecting to {redacted_url}"))),
            redacted_url,
            eval_only: AtomicBool::new(false),
            claims,
            claim_calls: AtomicU64::new(0),
        });
        store.home.spawn(ClaimBurst::run(Arc::downgrade(&store), queued));
        m::set_ready("dedupe_store", false);
        let weak = Arc::downgrade(&store);
        store.home.spawn(async move {
            loop {
                let Some(store) = weak.upgrade() else { return };
                let _ = store.ping().await;
                drop(store);
                tokio::time::sleep(PING_EVERY).await;
            }
        });
        Ok(store)
    }

    /// Whether the store answered its last call.
    pub fn readiness(&self) -> Readiness {
        self.readiness.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The URL without its password.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    fn set_readiness(&self, readiness: Readiness) {
        let mut current = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        if *current != readiness {
            match &readiness {
                Readiness::Ready => tracing::info!(store = %self.redacted_url, "dedupe store ready"),
                Readiness::NotReady(why) => {
                    tracing::warn!(store = %self.redacted_url, reason = %why, "dedupe store not ready")
                }
            }
            m::set_ready("dedupe_store", readiness == Readiness::Ready);
            *current = readiness;
        }
    }

    /// Runs `work` on the runtime the connection lives on (for callers on other runtimes, such
    /// as the Kafka committers' threads).
    pub async fn on_home_runtime<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        match self.home.spawn(work).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Unavailable(format!("dedupe store task failed: {e}"))),
        }
    }

    /// Starts `work` on the home runtime without waiting for it (releases, late writes).
    pub fn spawn_detached(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        drop(self.home.spawn(work));
    }

    /// Deletes each `(key, value)` whose key still holds `value`, in the background, retried with
    /// a backoff for up to [`RELEASE_RETRY_FOR`] while the store cannot be reached: a claim left
    /// behind by a request that gave up makes every retry of its delivery wait (until the
    /// transaction timeout, or for a read-back when the claim carries offsets).
    pub fn release_later(self: &Arc<Self>, op: &'static str, entries: Vec<(String, String)>) {
        if entries.is_empty() {
            return;
        }
        let store = Arc::clone(self);
        self.spawn_detached(async move {
            let give_up = Instant::now() + RELEASE_RETRY_FOR;
            let mut backoff = Duration::from_millis(100);
            loop {
                match store.compare_and_delete_many(op, &entries).await {
                    Ok(_) => return,
                    Err(e) if Instant::now() + backoff < give_up => {
                        tracing::debug!(
                            error = %e,
                            claims = entries.len(),
                            "releasing dedupe claims failed; retrying"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            claims = entries.len(),
                            "could not release dedupe claims: their deliveries wait for the takeover rules"
                        );
                        return;
                    }
                }
            }
        });
    }

    /// Runs one command (or pipeline), timing it as `op` and recording failures.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        packed: Packed<'_>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut connection = self.connection.clone();
        let result: Result<T, RedisError> = match packed {
            Packed::One(cmd) => cmd.query_async(&mut connection).await,
            Packed::Pipeline(pipe) => pipe.query_async(&mut connection).await,
            Packed::Script(call) => self.invoke(&mut connection, &call).await,
        };
        m::observe(m::DEDUPE_STORE_DURATION, &[("op", op)], started.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                self.set_readiness(Readiness::Ready);
                Ok(value)
            }
            Err(e) => {
                metrics::counter!(m::DEDUPE_STORE_ERRORS, "op" => op).increment(1);
                let why = format!("{} at {}: {}", op, self.redacted_url, describe(&e));
                // Unreachable, or answering with an error (READONLY, OOM, a command it does not
                // know): either way claims cannot be written. The readiness probe turns it green
                // again once a write goes through.
                self.set_readiness(Readiness::NotReady(format!("dedupe store {why}")));
                Err(StoreError::Unavailable(why))
            }
        }
    }

    /// Calls a script by its SHA1 (loading it on `NOSCRIPT`), or whole with `EVAL` where the server
    /// refuses `EVALSHA` or `SCRIPT LOAD` (from then on, for this store).
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
        call: &ScriptCall<'_>,
    ) -> Result<T, RedisError> {
        if !self.eval_only.load(Ordering::Relaxed) {
            let by_hash = call.cmd(false);
            let result = match by_hash.query_async(connection).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    match call.lua.script.load_async(connection).await {
                        Ok(_) => by_hash.query_async(connection).await,
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            match result {
                Err(e) if refused(&e) => {
                    tracing::warn!(
                        store = %self.redacted_url,
                        error = %describe(&e),
                        "the dedupe store refuses EVALSHA or SCRIPT LOAD: sending scripts whole (EVAL)"
                    );
                    self.eval_only.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        call.cmd(true).query_async(connection).await
    }

    /// The readiness probe: a write in the claims' own form (`SET NX PX GET`), so that readiness
    /// is green only while claims can be written.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(READINESS_KEY).arg(super::store::now_ms()).arg("NX").arg("PX").arg(1_000).arg("GET");
        self.run::<Option<String>>("ping", Packed::One(cmd)).await.map(|_| ())
    }

    /// `SET key value NX PX ttl GET`: creates the key, or tells what it holds (one round trip).
    pub async fn set_if_absent(
        &self,
        op: &'static str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<SetIfAbsent, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(ttl_ms(ttl)).arg("GET");
        let old: Option<String> = self.run(op, Packed::One(cmd)).await?;
        Ok(match old {
            None => SetIfAbsent::Created,
            Some(value) => SetIfAbsent::Exists(value),
        })
    }

    /// Claims `key` with `value` (`SET NX PX GET` semantics), sent together with the other claims
    /// of its burst ([`super::burst`]): created, or what the key holds.
    pub async fn claim(&self, key: &str, value: &str, ttl: Duration) -> Result<SetIfAbsent, StoreError> {
        self.claims.claim(key, value, ttl).await
    }

    /// Claims every `(key, value, ttl)` in one round trip: a pipeline of `SET key value NX PX ttl
    /// GET`, run by the store in order (two claims of one key: the first creates it, the second
    /// finds the first's value). Per key, created or what it held. Plain commands, not a script:
    /// the store runs them for about half the CPU a script's loop takes, and a store that refuses
    /// scripts still takes claims.
    pub async fn claim_many(
        &self,
        claims: &[(&str, &str, Duration)],
    ) -> Result<Vec<SetIfAbsent>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        self.claim_calls.fetch_add(1, Ordering::Relaxed);
        let mut pipe = redis::pipe();
        for (key, value, ttl) in claims {
            pipe.cmd("SET").arg(*key).arg(*value).arg("NX").arg("PX").arg(ttl_ms(*ttl)).arg("GET");
        }
        let found: Vec<Option<String>> = self.run("claim", Packed::Pipeline(pipe)).await?;
        if found.len() != claims.len() {
            return Err(StoreError::Unavailable(format!(
                "claim: the store answered {} results for {} keys",
                found.len(),
                claims.len()
            )));
        }
        Ok(found.into_iter().map(|old| old.map_or(SetIfAbsent::Created, SetIfAbsent::Exists)).collect())
    }

    /// How many claim calls ([`claim_many`](Self::claim_many)) were sent: for tests and diagnostics.
    pub fn claim_calls(&self) -> u64 {
        self.claim_calls.load(Ordering::Relaxed)
    }

    /// `GET key`.
    pub async fn get(&self, op: &'static str, key: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.run(op, Packed::One(cmd)).await
    }

    /// Replaces `old` by `new` (TTL `ttl`) if the key still holds `old`; true when it did.
    pub async fn compare_and_set(
        &self,
        op: &'static str,
        swap: &Swap,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let replaced = self.compare_and_set_many(op, std::slice::from_ref(swap), ttl).await?;
        Ok(replaced.first().copied().unwrap_or(false))
    }

    /// [`compare_and_set`](Self::compare_and_set) for many keys in one round trip (one script call
    /// carrying KEYS = the keys, ARGV = old/new pairs + TTL).
    pub async fn compare_and_set_many(
        &self,
        op: &'static str,
        swaps: &[Swap],
        ttl: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        self.swap_many(op, &scripts::COMPARE_AND_SET, swaps, Some(ttl)).await
    }

    /// [`compare_and_set_many`](Self::compare_and_set_many) leaving each key's TTL as it is: the
    /// committer's offsets write before a commit (the claim keeps the window it was created with;
    /// the committed state after the commit sets it afresh). Cheaper for the store than the
    /// form that renews the TTL: one command per key where the compare holds, not two.
    pub async fn compare_and_set_keeping_ttl_many(
        &self,
        op: &'static str,
        swaps: &[Swap],
    ) -> Result<Vec<bool>, StoreError> {
        self.swap_many(op, &scripts::COMPARE_AND_SET_KEEPING_TTL, swaps, None).await
    }

    /// One call of a compare-and-set `lua` over every swap (ARGV = old/new pairs, then the TTL
    /// when given): whether each was applied.
    async fn swap_many(
        &self,
        op: &'static str,
        lua: &'static scripts::Lua,
        swaps: &[Swap],
        ttl: Option<Duration>,
    ) -> Result<Vec<bool>, StoreError> {
        if swaps.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = ttl.map(|ttl| ttl_ms(ttl).to_string());
        let call = ScriptCall {
            lua,
            keys: swaps.iter().map(|s| s.key.as_str()).collect(),
            args: swaps.iter().flat_map(|s| [s.old.as_str(), s.new.as_str()]).chain(ttl.as_deref()).collect(),
        };
        let replaced: Vec<i64> = self.run(op, Packed::Script(call)).await?;
        per_key(op, replaced, swaps.len())
    }

    /// `SET key value PX ttl` for every `(key, value)`, in one round trip (a pipeline), whatever
    /// each key holds: for committed states, which are true whoever held the key before (a key
    /// that vanished is written again; a claim taken over in the meantime is replaced by the
    /// truth, and its new owner's compare-and-set of offsets then fails, so it publishes nothing).
    pub async fn write_committed_many(
        &self,
        op: &'static str,
        entries: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = ttl_ms(ttl);
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(ttl).ignore();
        }
        self.run(op, Packed::Pipeline(pipe)).await
    }

    /// Deletes each `(key, value)` whose key still holds `value`, in one call; true where it did.
    pub async fn compare_and_delete_many(
        &self,
        op: &'static str,
        entries: &[(String, String)],
    ) -> Result<Vec<bool>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let call = ScriptCall {
            lua: &scripts::COMPARE_AND_DELETE,
            keys: entries.iter().map(|(key, _)| key.as_str()).collect(),
            args: entries.iter().map(|(_, value)| value.as_str()).collect(),
        };
        let deleted: Vec<i64> = self.run(op, Packed::Script(call)).await?;
        per_key(op, deleted, entries.len())
    }

    /// Sets the key's TTL to `ttl` if it still holds `value`; true when it did.
    pub async fn compare_and_expire(
        &self,
        op: &'static str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = ttl_ms(ttl).to_string();
        let call = ScriptCall {
            lua: &scripts::COMPARE_AND_EXPIRE,
            keys: vec![key],
            args: vec![value, ttl.as_str()],
        };
        let renewed: i64 = self.run(op, Packed::Script(call)).await?;
        Ok(renewed == 1)
    }

    /// The key's remaining TTL in ms (`PTTL`: -2 absent, -1 no TTL). For tests and diagnostics.
    pub async fn ttl_ms(&self, key: &str) -> Result<i64, StoreError> {
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key);
        self.run("get", Packed::One(cmd)).await
    }

    /// The claim stored under `key`, with its raw value (for a compare-and-set of it).
    pub async fn claim_state(
        &self,
        op: &'static str,
        key: &str,
    ) -> Result<Option<(String, ClaimState)>, StoreError> {
        match self.get(op, key).await? {
            None => Ok(None),
            Some(raw) => match ClaimState::parse(&raw) {
                Some(state) => Ok(Some((raw, state))),
                None => Err(StoreError::Corrupt(key.to_owned())),
            },
        }
    }
}

/// One command, a pipeline of commands, or a script call.
enum Packed<'a> {
    One(Cmd),
    Pipeline(redis::Pipeline),
    Script(ScriptCall<'a>),
}

/// A script's per-key answers, checked to be one per key.
fn per_key(op: &'static str, answers: Vec<i64>, keys: usize) -> Result<Vec<bool>, StoreError> {
    if answers.len() != keys {
        return Err(StoreError::Unavailable(format!(
            "{op}: the store answered {} results for {keys} keys",
            answers.len()
        )));
    }
    Ok(answers.into_iter().map(|n| n == 1).collect())
}

/// The server refuses the command itself (renamed away, unknown, or denied by its ACL), as
/// opposed to failing it: worth trying plain `EVAL`.
fn refused(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => true,
        ErrorKind::Server(ServerErrorKind::ResponseError) => {
            e.detail().is_some_and(|d| d.to_ascii_lowercase().contains("unknown command"))
        }
        _ => false,
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A redis error in words, without the URL (which may hold a password).
fn describe(e: &RedisError) -> String {
    // A pipeline that failed (e.g. every claim of a burst refused with OOM): the first failed
    // command's error, and how many failed.
    if e.detail().is_none()
        && let Some(failed) = e.clone().into_server_errors()
        && let Some((_, first)) = failed.first()
    {
        return match failed.len() {
            1 => first.to_string(),
            n => format!("{first} ({n} commands of the call failed)"),
        };
    }
    let mut text = format!("{:?}", e.kind());
    if let Some(code) = e.code() {
        text.push(' ');
        text.push_str(code);
    }
    if let Some(detail) = e.detail() {
        text.push_str(": ");
        text.push_str(detail);
    } else if e.is_timeout() {
        text.push_str(": timed out");
    } else if e.is_io_error() {
        // The I/O error's own words, and whether it is the TLS handshake (rustls: "invalid peer
        // certificate: UnknownIssuer", "received fatal alert: …").
        match std::error::Error::source(e).map(ToString::to_string) {
            Some(io) => {
                let lower = io.to_ascii_lowercase();
                let tls = ["certificate", "tls", "handshake", "alert"].iter().any(|w| lower.contains(w));
                text.push_str(if tls { ": TLS handshake failed: " } else { ": connection failed: " });
                text.push_str(&io);
            }
            None => text.push_str(": connection failed"),
        }
    }
    text
}
