//! Recognising a sender's repeated delivery (same correlation id, same raw-body SHA-256) so that it
//! is answered with the original commit instead of being published twice.
//!
//! - [`config`]: `[dedupe]`: the store, the window, the local cache size.
//! - [`memory`]: the in-process table (the whole memory with `store = "memory"`).

pub mod config;
pub mod memory;

pub use config::{DedupeConfig, DedupeStore};
