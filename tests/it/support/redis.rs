//! The local stack's shared dedupe store (redis-server on 127.0.0.1:16379, or wherever
//! `CXONE_INGEST_DEDUPE_STORE` points), and dedupe configurations that use it.

use std::sync::Arc;
use std::time::Duration;

use cxone_ingest::dedupe::redis::RedisStore;
use cxone_ingest::dedupe::{DedupeConfig, DedupeStore};
use cxone_ingest::sinks::Readiness;

use super::poll_until;
use super::stack::require;

/// The store the tests use: `CXONE_INGEST_DEDUPE_STORE` (`.stack/env` exports it), else the
/// stack's default. Stops the test with a clear message when nothing answers there.
pub fn stack_redis_url() -> String {
    let url = std::env::var("CXONE_INGEST_DEDUPE_STORE")
        .ok()
        .filter(|v| v.starts_with("redis://") || v.starts_with("rediss://"))
        .unwrap_or_else(|| "redis://127.0.0.1:16379".to_owned());
    let authority = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    require("dedupe store (redis-server)", host_port.to_owned());
    url
}

/// `[dedupe]` with the stack's shared store.
pub fn shared_dedupe_config() -> DedupeConfig {
    DedupeConfig { store: DedupeStore::Redis(stack_redis_url()), ..DedupeConfig::default() }
}

/// A client of the stack's store, once it answers.
pub async fn stack_redis_store() -> Arc<RedisStore> {
    let store = RedisStore::connect(&stack_redis_url(), "stack redis".to_owned()).expect("redis client");
    let ready = poll_until(Duration::from_secs(10), || async {
        (store.readiness() == Readiness::Ready).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the stack's redis did not answer: {:?}", store.readiness());
    store
}

/// A redis-server of one test (no persistence) on a port of its own, which the test may stop and
/// start again; killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    /// Extra `redis-server` arguments (e.g. `--rename-command EVALSHA ""`).
    extra: Vec<String>,
}

impl PrivateRedis {
    /// Starts it on a free loopback port and waits until it answers.
    pub fn start() -> PrivateRedis {
        PrivateRedis::start_with(&[])
    }

    /// [`PrivateRedis::start`] with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> PrivateRedis {
        let port = super::e2e::free_loopback_port();
        let extra = extra.iter().map(|a| (*a).to_owned()).collect();
        let mut redis = PrivateRedis { port, child: None, extra };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client of it, once it answers a write (the store's readiness probe).
    pub async fn client(&self) -> Arc<RedisStore> {
        let store = RedisStore::connect(&self.url(), "private redis".to_owned()).expect("redis client");
        let ready = poll_until(Duration::from_secs(10), || async { store.ping().await.ok() }).await;
        assert!(ready.is_some(), "the private redis on {} answers", self.port);
        store
    }

    /// Starts it (again, empty) on its port and waits until the port is open.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin =
            std::env::var("CXONE_STACK_REDIS_BIN").unwrap_or_else(|_| "/usr/bin/redis-server".to_owned());
        let child = std::process::Command::new(&bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (scripts/install-stack installs it): {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !super::stack::stack_port_open(&format!("127.0.0.1:{}", self.port)) {
            assert!(
                std::time::Instant::now() < deadline,
                "private redis on {} did not open its port",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: its port stays open, nothing is answered until [`PrivateRedis::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = std::process::Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills it (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP relay in front of a redis-server that can hold back what clients send (fault injection
/// only: every byte is forwarded unchanged, in order). Once [`HoldingRelay::hold_from`] is armed,
/// the first client write containing the marker, and everything after it on every connection, is
/// held until [`HoldingRelay::release`].
pub struct HoldingRelay {
    pub port: u16,
    /// The marker to hold from (empty: not armed).
    marker: Arc<std::sync::Mutex<Vec<u8>>>,
    /// True while holding.
    holding: tokio::sync::watch::Sender<bool>,
    /// Bytes held back so far.
    held: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl HoldingRelay {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> HoldingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let marker = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (holding, _) = tokio::sync::watch::channel(false);
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, h, n) = (Arc::clone(&marker), holding.clone(), Arc::clone(&held));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let (m, h, n) = (Arc::clone(&m), h.clone(), Arc::clone(&n));
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buffer = vec![0u8; 64 * 1024];
                    // The end of the previous read: a marker split across two reads is still seen.
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let Ok(read) = client_read.read(&mut buffer).await else { return };
                        if read == 0 {
                            return;
                        }
                        let chunk = &buffer[..read];
                        let marker = m.lock().unwrap().clone();
                        if !marker.is_empty() {
                            let mut seen = std::mem::take(&mut tail);
                            seen.extend_from_slice(chunk);
                            if seen.windows(marker.len()).any(|w| w == marker.as_slice()) {
                                h.send_replace(true);
                            }
                            tail = seen[seen.len().saturating_sub(marker.len())..].to_vec();
                        }
                        let mut holding = h.subscribe();
                        if *holding.borrow_and_update() {
                            n.fetch_add(read, std::sync::atomic::Ordering::SeqCst);
                            if holding.wait_for(|held| !*held).await.is_err() {
                                return;
                            }
                        }
                        if server_write.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HoldingRelay { port, marker, holding, held, accept }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds every client write from the first one containing `marker` on.
    pub fn hold_from(&self, marker: &[u8]) {
        *self.marker.lock().unwrap() = marker.to_vec();
    }

    /// Bytes held back so far (0: the marker has not been seen).
    pub fn held_bytes(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forwards what was held, and stops holding.
    pub fn release(&self) {
        self.marker.lock().unwrap().clear();
        self.holding.send_replace(false);
    }
}

impl Drop for HoldingRelay {
    fn drop(&mut self) {
        self.release();
        self.accept.abort();
    }
}
