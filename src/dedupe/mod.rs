//! Recognising a sender's repeated delivery (same correlation id, same raw-body SHA-256) so that it
//! is answered with the original commit instead of being published twice.
//!
//! - [`config`]: `[dedupe]`: the store, the window, the local cache size.
//! - [`memory`]: the in-process table (the whole memory with `store = "memory"`, the cache in
//!   front of the shared store otherwise).
//! - [`store`]: a shared claim: its key, its states as stored, the store's errors.
//! - [`redis`]: the Redis/Valkey client (atomic set-if-absent, compare-and-set/-delete/-expire).
//! - [`scripts`]: the Lua scripts behind the compare-and-… operations, sent by SHA1.
//! - [`burst`]: the requests' concurrent claims sent as one store call per burst.
//! - [`lock`]: the replay lock (one `replay` at a time per dead-letter location).
//! - [`claim`]: the flow: claim, wait for another owner, take over an abandoned claim.
//! - [`ticket`]: the committer's side of a claim: offsets before the commit, the committed state
//!   after it, or the release.

pub mod burst;
pub mod claim;
pub mod config;
pub mod lock;
pub mod memory;
pub mod redis;
pub mod scripts;
pub mod store;
pub mod ticket;

pub use config::{DedupeConfig, DedupeStore};
