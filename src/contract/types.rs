//! The Rust types build.rs generates from `schemas/*.json` (typify), included from `OUT_DIR`:
//! one module per event schema, and [`BUILTIN_SCHEMAS`], the table of the embedded schema texts.
//!
//! Nothing in the included file is written by hand (see `build.rs`). To read it, open the reviewed
//! copy `tests/snapshots/contract_types.rs`, or [`SOURCE`], or
//! `$CARGO_TARGET_DIR/*/build/cxone-ingest-*/out/contract_types.rs`.

#![allow(clippy::all, clippy::pedantic, missing_docs, dead_code, unused_imports)]

include!(concat!(env!("OUT_DIR"), "/contract_types.rs"));

/// The generated code as build.rs wrote it (for the snapshot test).
pub const SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/contract_types.rs"));
