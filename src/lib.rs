//! cxone-ingest: NICE CXone Data Action webhooks in, typed events out.
//!
//! A request's path through the crate, top to bottom:
//!
//! ```text
//! http::routes            POST /webhooks/cxone-data-actions, capped raw body, request id
//!   -> http::signature    HMAC over the raw bytes; 401 before anything is parsed
//!   -> pipeline::ingest   the one place policy lives: what the sender is told
//!        -> contract::Contract::check   parse -> pick schema by `event` -> coerce -> validate -> typed -> canonical JSON
//!        -> sinks::kafka               valid: group-committed Kafka transaction (exactly once)
//!        -> sinks::dead_letter         invalid: JSON dead-letter record put to S3
//!   <- 200 published | 200 dead_lettered | 503 + Retry-After (nothing acknowledged)
//! ```
//!
//! Modules:
//! - [`contract`]: schemas/ as the single source of truth: registry, schema-driven coercion,
//!   all-errors validation (jsonschema), build.rs-generated types, canonical JSON (serde_json).
//! - [`http`]: warp routes, body cap, signature verification, rejections -> JSON.
//! - [`pipeline`]: raw request -> `Outcome` (published, dead-lettered, retry).
//! - [`sinks`]: the narrow traits the pipeline writes through, and their Kafka and S3 implementations.
//! - [`replay`]: dead letters -> current schemas -> Kafka, exactly once.
//! - [`cxone`]: CXone OAuth client-credentials token manager.
//! - [`config`]: typed configuration from file, environment and flags.
//! - [`metrics`], [`telemetry`], [`shutdown`]: Prometheus metrics, logging with redaction, graceful stop.
//! - [`cli`]: the `cxone-ingest` subcommands.
//!
//! The binaries' allocator is the `mimalloc` crate's (`#[global_allocator]` in `main.rs`).

pub mod cli;
pub mod config;
pub mod contract;
pub mod cxone;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod shutdown;
pub mod sinks;
pub mod telemetry;
