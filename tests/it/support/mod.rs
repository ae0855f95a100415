//! Helpers shared by the integration tests, by concern:
//! - [`stack`]: where the local stack's servers are, clients for them, `stack-ctl`;
//! - [`kafka`]: reading topics back, sample events, a private broker;
//! - [`e2e`]: the real binary as a child process, posting, metrics and dead-letter reads;
//! - [`redis`]: the shared dedupe store (redis-server) and configs that use it;
//! - [`oracle`]: a topic's raw log, each record classified committed / aborted / open by its marker;
//! - [`accounting`]: the exactly-once judgement of what senders were answered against that log;
//! - [`prometheus`]: a private Prometheus server scraping one service, with the shipped rules;
//! - [`schema_folders`]: schema folders a test edits (plain and ConfigMap-like), `GET /schemas`;
//! - [`secure`]: private servers requiring TLS or a login (test CA, stunnel, SASL tansu, TLS redis);
//! - [`doubles`]: the one fake sink (both sink traits) and in-process app state for `http::routes`;
//! - here: polling with a deadline, raw HTTP answer parsing, unique names, the one signing helper.
#![allow(dead_code)]

pub mod accounting;
pub mod doubles;
pub mod e2e;
pub mod kafka;
pub mod oracle;
pub mod prometheus;
pub mod redis;
pub mod schema_folders;
pub mod secure;
pub mod stack;

pub use accounting::*;
pub use doubles::*;
pub use e2e::*;
pub use kafka::*;
pub use oracle::*;
pub use redis::*;
pub use schema_folders::*;
pub use stack::*;

use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some` or the deadline passes.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the head of the HTTP/1.1 answer in `buffer` ends and how long its body is, once the whole
/// answer (head + `Content-Length` body) is there; `None` while more bytes are needed.
pub fn whole_answer(buffer: &[u8]) -> Option<(usize, usize)> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    (buffer.len() >= end + 4 + length).then_some((end, length))
}

/// The status code of an answer's head (`HTTP/1.1 200 OK` -> 200).
pub fn status_of(head: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(head).split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// True when the server closes `stream` (EOF or reset) within `limit`; bytes read meanwhile are dropped.
pub async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A name unique to this test run, for topics, buckets and prefixes.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The hex HMAC-SHA256 of `body` under `secret`: the seed's `X-CXone-Signature` (the default scheme).
pub fn sign_with(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
