//! `[contract]`: where the event schemas come from (the set built into the binary, or a folder
//! loaded at start) and how a folder is reloaded while the service runs.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[contract]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// Folder of event schemas (every `*.json` with an `x-cxone-events` annotation) that payloads
    /// are judged by; unset: the schemas built into the binary. Loaded at start (a folder that
    /// does not load stops the start, naming the file) and reloaded on SIGHUP and, with `watch`,
    /// when it changes. A `[[sources]]` entry may name its own `schemas_dir`. Env
    /// `CXONE_INGEST_SCHEMAS_DIR`, flag `--schemas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas_dir: Option<PathBuf>,
    /// Reload a schema folder when something in it changes on disk (inotify; a Kubernetes
    /// ConfigMap update included). `false`: only SIGHUP reloads.
    pub watch: bool,
    /// Quiet time after the last change in a folder before it is reloaded, in milliseconds: an
    /// editor's or a ConfigMap's burst of changes is loaded once, whole.
    pub reload_debounce_ms: u64,
}

impl Default for ContractConfig {
    fn default() -> Self {
        ContractConfig {
            schemas_dir: None,
            watch: default_watch(),
            reload_debounce_ms: default_reload_debounce_ms(),
        }
    }
}

/// Watching is on: a changed folder is in force within about a second, without a signal.
pub fn default_watch() -> bool {
    true
}

/// 500 ms: longer than the gap between the writes of one ConfigMap update or one editor save.
pub fn default_reload_debounce_ms() -> u64 {
    500
}

impl ContractConfig {
    /// `reload_debounce_ms` as a duration.
    pub fn reload_debounce(&self) -> Duration {
        Duration::from_millis(self.reload_debounce_ms)
    }

    /// Appends a message for every unusable value, naming the key (the folders themselves are
    /// loaded by [`super::Schemas::load`], which names the file at fault).
    pub fn check(&self, problems: &mut Vec<String>) {
        if !(10..=60_000).contains(&self.reload_debounce_ms) {
            problems.push(format!(
                "contract.reload_debounce_ms = {} is out of range: use 10 to 60000 (default 500)",
                self.reload_debounce_ms
            ));
        }
        if self.schemas_dir.as_deref().is_some_and(|dir| dir.as_os_str().is_empty()) {
            problems.push(
                "contract.schemas_dir is empty: remove it (the built-in schemas are used) or name a folder"
                    .to_owned(),
            );
        }
    }
}
