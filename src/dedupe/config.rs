//! `[dedupe]`: where the memory of deliveries lives (this process, or a shared Redis/Valkey), how
//! long a delivery is remembered, and how many a replica caches.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[dedupe]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    /// Where claims live: `"memory"` (this process only: one replica) or a `redis://` /
    /// `rediss://` URL (`redis://[:password@]host:port[/db]`) shared by every replica. Env
    /// `CXONE_INGEST_DEDUPE_STORE`, flag `--dedupe-store`. The URL's password is never printed.
    pub store: DedupeStore,
    /// PEM file of the CA(s) that signed a `rediss://` store's server certificate (a private CA,
    /// e.g. a cluster's own); then only these are trusted. Unset: the public web PKI roots. Only
    /// for a `rediss://` store.
    pub ca_file: Option<PathBuf>,
    /// How long a committed delivery is remembered to recognise the sender's retry of it, in
    /// seconds. Covers CXone's own retries and an operator's re-send.
    pub window_secs: u64,
    /// Most committed deliveries the in-process table remembers (oldest forgotten first); about
    /// 400 bytes each. With a shared store this is the local cache in front of it.
    pub max_entries: usize,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            store: DedupeStore::Memory,
            ca_file: None,
            window_secs: default_window_secs(),
            max_entries: default_max_entries(),
        }
    }
}

/// Ten minutes: covers CXone's retries of a failed delivery (two retries, up to 90 s each).
pub fn default_window_secs() -> u64 {
    600
}

/// 100k deliveries, about 40 MB per replica.
pub fn default_max_entries() -> usize {
    100_000
}

impl DedupeConfig {
    /// `window_secs` as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// Appends a message for every unusable value, naming the key.
    pub fn check(&self, problems: &mut Vec<String>) {
        if !(1..=7 * 86_400).contains(&self.window_secs) {
            problems.push(format!(
                "dedupe.window_secs = {} is out of range: use 1 to 604800 (default 600)",
                self.window_secs
            ));
        }
        if !(1..=10_000_000).contains(&self.max_entries) {
            problems.push(format!(
                "dedupe.max_entries = {} is out of range: use 1 to 10000000 (default 100000)",
                self.max_entries
            ));
        }
        if let Some(path) = &self.ca_file {
            match &self.store {
                DedupeStore::Redis(url) if url.starts_with("rediss://") => {
                    if let Err(why) = read_ca_file(path) {
                        problems.push(why);
                    }
                }
                _ => problems.push(format!(
                    "dedupe.ca_file = {:?} is set but dedupe.store is {}: a CA file is only used by a \
                     rediss:// (TLS) store",
                    path.display(),
                    self.store.redacted()
                )),
            }
        }
    }
}

/// The PEM text of `dedupe.ca_file`, or why it cannot be used (naming the key and the file).
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("dedupe.ca_file = {:?} cannot be read: {e}", path.display()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "dedupe.ca_file = {:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(pem)
}

/// Where the dedupe claims live.
#[derive(Clone, PartialEq, Eq)]
pub enum DedupeStore {
    /// In this process: a repeat reaching another replica, or arriving after a restart, is not
    /// recognised (docs/reliability.md has the guarantee table).
    Memory,
    /// A Redis or Valkey server shared by every replica: the URL as given (`redis://` or `rediss://`).
    Redis(String),
}

impl DedupeStore {
    /// Parses `memory` or a `redis://` / `rediss://` URL; the error names the accepted forms.
    pub fn parse(text: &str) -> Result<DedupeStore, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("memory") {
            return Ok(DedupeStore::Memory);
        }
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            return Ok(DedupeStore::Redis(text.to_owned()));
        }
        Err(format!(
            "dedupe.store = {:?} is not \"memory\" or a redis:// / rediss:// URL \
             (e.g. redis://127.0.0.1:6379/0)",
            redact_url(text)
        ))
    }

    /// The store as printable text: `memory`, or the URL with any password replaced.
    pub fn redacted(&self) -> String {
        match self {
            DedupeStore::Memory => "memory".to_owned(),
            DedupeStore::Redis(url) => redact_url(url),
        }
    }
}

/// `scheme://user:password@host` -> `scheme://user:<redacted>@host` (also `scheme://:password@host`).
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:{}@{host}{path}", crate::telemetry::REDACTED)
        }
        None => url.to_owned(),
    }
}

impl fmt::Debug for DedupeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DedupeStore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DedupeStore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DedupeStore::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_parse_and_passwords_never_print() {
        assert_eq!(DedupeStore::parse("memory"), Ok(DedupeStore::Memory));
        let store = DedupeStore::parse("rediss://cxone:hunter2@cache.example:6380/2").unwrap();
        assert_eq!(store, DedupeStore::Redis("rediss://cxone:hunter2@cache.example:6380/2".into()));
        for printed in [format!("{store:?}"), serde_json::to_string(&store).unwrap(), store.redacted()] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("cache.example:6380/2"), "{printed}");
        }
        assert_eq!(DedupeStore::parse("redis://:pw@h:1").unwrap().redacted(), "redis://:<redacted>@h:1");
        let err = DedupeStore::parse("postgres://u:secretpw@h/db").unwrap_err();
        assert!(err.contains("redis://") && !err.contains("secretpw"), "{err}");
    }

    #[test]
    fn a_ca_file_must_be_readable_pem_and_for_a_tls_store() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let tls = DedupeStore::parse("rediss://u:pw@cache:6380").unwrap();
        let problems_of = |store: &DedupeStore, file: &std::path::Path| {
            let mut problems = Vec::new();
            DedupeConfig { store: store.clone(), ca_file: Some(file.to_owned()), ..DedupeConfig::default() }
                .check(&mut problems);
            problems.join("\n")
        };
        assert_eq!(problems_of(&tls, &pem), "");
        let missing = problems_of(&tls, &dir.path().join("absent.pem"));
        assert!(missing.contains("dedupe.ca_file") && missing.contains("cannot be read"), "{missing}");
        let garbage = problems_of(&tls, &not_pem);
        assert!(garbage.contains("holds no PEM certificate"), "{garbage}");
        let plain = problems_of(&DedupeStore::parse("redis://:pw@cache:6379").unwrap(), &pem);
        assert!(plain.contains("only used by a rediss://") && !plain.contains("pw@"), "{plain}");
    }

    #[test]
    fn bounds_are_checked() {
        let mut problems = Vec::new();
        DedupeConfig { window_secs: 0, max_entries: 0, ..DedupeConfig::default() }.check(&mut problems);
        let all = problems.join("\n");
        assert!(all.contains("dedupe.window_secs = 0") && all.contains("dedupe.max_entries = 0"), "{all}");
    }
}
