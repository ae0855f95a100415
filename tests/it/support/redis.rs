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
}

impl PrivateRedis {
    /// Starts it on a free loopback port and waits until it answers.
    pub fn start() -> PrivateRedis {
        let port = super::e2e::free_loopback_port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
