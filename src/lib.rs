//! cxone-ingest: NICE CXone Data Action webhooks in, typed events out.
//!
//! A request's path through the crate, top to bottom:
//!
//! ```text
//! http::routes            POST /webhooks/cxone-data-actions: request id, trace context
//!   -> http::webhook      raw body, bounded in size, time and unverified readers
//!   -> http::signature    HMAC over the raw bytes; 401 before anything is parsed
//!   -> pipeline::ingest   under an in-flight slot: the one place policy lives (what the sender is told)
//!        -> contract::Contract::check   parse -> pick schema by `event` -> coerce -> validate -> typed -> canonical JSON
//!        -> sinks::kafka               valid: group-committed Kafka transaction (exactly once; dedupe)
//!        -> sinks::dead_letter         invalid (or refused by Kafka): JSON dead-letter record put to S3
//!   <- 200 published | 200 dead_lettered | 503 + Retry-After (nothing acknowledged)
//! ```
//!
//! Modules:
//! - [`contract`]: schemas/ as the single source of truth: registry, schema-driven coercion,
//!   all-errors validation (jsonschema), build.rs-generated types, canonical JSON (serde_json),
//!   and the compatibility gate between two schema folders (`compat`).
//! - [`http`]: warp routes and listeners, body limits, signature verification, probes, JSON answers.
//! - [`pipeline`]: raw request -> `Outcome` (published, dead-lettered, retry).
//! - [`sinks`]: the narrow traits the pipeline writes through, and their Kafka and S3 implementations.
//! - [`dedupe`]: recognising a sender's repeated delivery, so it is not published twice.
//! - [`trace`]: W3C trace context from the request into Kafka headers, dead letters and logs.
//! - [`replay`]: dead letters -> current schemas -> Kafka, exactly once.
//! - [`what_if`]: recent topic records and dead letters judged by a new schema folder, read-only
//!   (`schemas what-if`).
//! - [`cxone`]: CXone OAuth client-credentials token manager.
//! - [`config`]: the whole configuration merged from file, environment and flags (each section's
//!   settings live with the module they configure).
//! - [`metrics`], [`telemetry`], [`shutdown`]: Prometheus metrics, logging with redaction, graceful stop.
//! - [`build_info`]: the version and git commit this binary was built from.
//! - [`cli`]: the `cxone-ingest` subcommands.
//!
//! The binaries' allocator is the `mimalloc` crate's (`#[global_allocator]` in `main.rs`).

pub mod build_info;
pub mod cli;
pub mod config;
pub mod contract;
pub mod cxone;
pub mod dedupe;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod trace;
pub mod what_if;
