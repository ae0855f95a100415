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
