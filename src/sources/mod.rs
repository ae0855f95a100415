//! Webhook sources: who may post on which path, with which credentials, and where the records of
//! each go (topic, dead-letter prefix), each with its own share of the server's bounds.
//!
//! - [`config`]: `[[sources]]` settings; without any, one source `default` is made from
//!   `server.path` and `[signature]` (exactly the single-sender service).
//! - [`auth`]: each source's credentials and the checks a request must pass.
//!
//! Credential files are polled every `server.credential_reload_ms`: a source whose files changed
//! gets new credentials once they all read cleanly (and share nothing with another source); until
//! then the old ones stay, and `cxone_ingest_credential_reload_failures_total` counts the attempt.

pub mod auth;
pub mod config;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use warp::http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use warp::http::{HeaderMap, HeaderName};

use crate::config::Config;
use crate::contract::{Contract, SchemaSet, Schemas};
use crate::http::REQUEST_ID_HEADER;
use crate::metrics as m;
use crate::sinks::Origin;
pub use auth::{Credentials, Failure};
pub use config::SourceConfig;

/// Longest delivery-metadata header value kept (longer ones are cut, on a character boundary).
const MAX_METADATA_LEN: usize = 256;

/// One webhook source, ready to serve.
pub struct Source {
    /// The `source` label and field (interned: a closed set fixed at start).
    name: &'static str,
    /// Where it posts.
    path: Box<str>,
    /// How its keys are named in messages (`sources[0].`; empty for the single default source).
    key: String,
    /// Its settings, to rebuild the credentials when a file changes.
    config: SourceConfig,
    /// The credentials in force; replaced whole by a reload.
    credentials: RwLock<Arc<Credentials>>,
    /// The files as last read (`None`: unreadable), to notice a change.
    last_read: Mutex<Vec<(PathBuf, Option<[u8; 32]>)>>,
    /// What each of its records carries (name, topic, prefix); the delivery's metadata is added.
    origin: Origin,
    /// The schemas its payloads are judged by: its own `schemas_dir`'s, else `contract.schemas_dir`'s,
    /// else the built-in set (shared with every source using the same folder; swapped by a reload).
    schemas: Arc<SchemaSet>,
    /// Its share of `server.max_unverified_bodies`.
    unverified: Semaphore,
    /// Its share of `server.max_in_flight`.
    in_flight: Semaphore,
    /// Request headers kept with its dead letters (never a signature or credential).
    kept_headers: Box<[HeaderName]>,
    delivery_id_header: Option<HeaderName>,
    event_type_header: Option<HeaderName>,
}

impl Source {
    /// The source's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The credentials in force now.
    pub fn credentials(&self) -> Arc<Credentials> {
        Arc::clone(&self.credentials.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A snapshot of the contract this source's payloads are judged by now: a request takes one
    /// when it starts and is judged by it to the end, whatever a reload does meanwhile.
    pub fn contract(&self) -> Arc<Contract> {
        self.schemas.contract()
    }

    /// One of this source's unverified-body slots, if free.
    pub fn try_unverified(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.unverified.try_acquire().ok()
    }

    /// One of this source's in-flight slots, if free.
    pub fn try_in_flight(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.in_flight.try_acquire().ok()
    }

    /// The headers kept with dead letters.
    pub fn kept_headers(&self) -> &[HeaderName] {
        &self.kept_headers
    }

    /// The origin of a delivery: this source, plus what the sender said in its metadata headers.
    pub fn origin(&self, headers: &HeaderMap) -> Origin {
        let read = |name: &Option<HeaderName>| {
            let value = headers.get(name.as_ref()?)?.to_str().ok()?.trim();
            (!value.is_empty()).then(|| shorten(value, MAX_METADATA_LEN))
        };
        Origin {
            delivery_id: read(&self.delivery_id_header),
            sender_event_type: read(&self.event_type_header),
            ..self.origin.clone()
        }
    }
}

/// `text` cut to at most `max` characters.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// Every source of the process, found by path.
pub struct Sources {
    list: Arc<[Source]>,
    by_path: HashMap<Box<str>, usize>,
    /// Polls the credential files; aborted on drop.
    reloader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Sources {
    fn drop(&mut self) {
        if let Some(task) = self.reloader.take() {
            task.abort();
        }
    }
}

/// Each source's settings with the prefix its keys are named by: `[[sources]]`, or the one
/// `default` source of a configuration without them.
pub fn specs(config: &Config) -> Vec<(String, SourceConfig)> {
    if config.sources.is_empty() {
        vec![(String::new(), SourceConfig::legacy(&config.server.path, &config.signature))]
    } else {
        config
            .sources
            .iter()
            .enumerate()
            .map(|(i, source)| (format!("sources[{i}]."), source.clone()))
            .collect()
    }
}

/// Appends a message for every problem of `[[sources]]`: names, paths, credentials (read from
/// their files), and credentials shared by two sources. (Without `[[sources]]`, `[signature]` and
/// `server.path` are checked where they live.)
pub fn check(config: &Config, problems: &mut Vec<String>) {
    if config.sources.is_empty() {
        return;
    }
    let mut names = HashSet::new();
    let mut paths = HashMap::new();
    let mut owners: HashMap<[u8; 32], String> = HashMap::new();
    for (index, source) in config.sources.iter().enumerate() {
        let key = format!("sources[{index}]");
        source.check(&key, problems);
        if !names.insert(source.name.as_str()) {
            problems.push(format!(
                "{key}.name = {:?} is used by another source: names must be unique",
                source.name
            ));
        }
        if let Some(other) = paths.insert(source.path.as_str(), source.name.as_str()) {
            problems.push(format!(
                "{key}.path = {:?} is also the path of source {other:?}: paths must be unique",
                source.path
            ));
        }
        if source.signature.is_none()
            && source.bearer.is_none()
            && source.basic.is_none()
            && source.jwt.is_none()
        {
            continue;
        }
        match Credentials::load(source, &format!("{key}.")) {
            Ok(credentials) => {
                for fingerprint in &credentials.fingerprints {
                    if let Some(other) = owners.get(fingerprint).filter(|other| **other != source.name) {
                        problems.push(format!(
                            "{key} ({}) and source {other:?} share a credential: give every source its own \
                             secrets, tokens and keys",
                            source.name
                        ));
                    }
                    owners.insert(*fingerprint, source.name.clone());
                }
            }
            Err(found) => problems.extend(found),
        }
    }
}

impl Sources {
    /// Builds every source from a validated config (reading their credential files), and starts
    /// polling those files when there are any and a runtime is running.
    pub fn new(config: &Config, schemas: &Schemas) -> Result<Sources, String> {
        let specs = specs(config);
        let count = specs.len().max(1);
        let server = &config.server;
        let mut list = Vec::with_capacity(specs.len());
        for (key, spec) in specs {
            let credentials = Credentials::load(&spec, &key).map_err(|problems| problems.join("; "))?;
            let header = |name: &str| {
                (!name.is_empty()).then(|| HeaderName::from_bytes(name.as_bytes()).ok()).flatten()
            };
            let delivery_id_header = header(&spec.delivery_id_header);
            let event_type_header = header(&spec.event_type_header);
            let mut kept = vec![
                CONTENT_TYPE,
                USER_AGENT,
                CONTENT_LENGTH,
                HeaderName::from_static(REQUEST_ID_HEADER),
                HeaderName::from_static("traceparent"),
                HeaderName::from_static("tracestate"),
            ];
            if let Some(verifier) = credentials.signature() {
                if let Some(timestamp) = verifier.timestamp_header() {
                    kept.push(timestamp.clone());
                }
                kept.retain(|name| name != verifier.signature_header());
            }
            let last_read =
                credentials.files.iter().map(|(path, digest)| (path.clone(), Some(*digest))).collect();
            let name = intern(&spec.name);
            let source_schemas = Arc::clone(schemas.set_of(&spec.name));
            list.push(Source {
                name,
                path: spec.path.clone().into_boxed_str(),
                key,
                origin: Origin {
                    source: Arc::from(name),
                    topic: spec.topic.as_deref().map(Arc::from),
                    dead_letter_prefix: spec
                        .dead_letter_prefix
                        .as_deref()
                        .map(|prefix| Arc::from(prefix.trim_matches('/'))),
                    delivery_id: None,
                    sender_event_type: None,
                },
                config: spec,
                credentials: RwLock::new(Arc::new(credentials)),
                last_read: Mutex::new(last_read),
                schemas: source_schemas,
                unverified: Semaphore::new(
                    (server.max_unverified_bodies / count).clamp(1, Semaphore::MAX_PERMITS),
                ),
                in_flight: Semaphore::new((server.max_in_flight / count).clamp(1, Semaphore::MAX_PERMITS)),
                kept_headers: kept.into_boxed_slice(),
                delivery_id_header,
                event_type_header,
            });
        }
        let list: Arc<[Source]> = list.into();
        let by_path = list.iter().enumerate().map(|(i, source)| (source.path.clone(), i)).collect();
        let watching = list.iter().any(|source| !source.credentials().files.is_empty());
        let reloader = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if watching => {
                Some(runtime.spawn(reload_loop(Arc::downgrade(&list), server.credential_reload())))
            }
            _ => None,
        };
        Ok(Sources { list, by_path, reloader })
    }

    /// The source posting to `path`, if any.
    pub fn find(&self, path: &str) -> Option<&Source> {
        self.by_path.get(path).map(|index| &self.list[*index])
    }

    /// Every source.
    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.list.iter()
    }
}

/// Every `interval`, re-reads the credential files of every source; ends with the sources.
async fn reload_loop(list: Weak<[Source]>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(list) = list.upgrade() else { return };
        let list = Arc::clone(&list);
        // File reads are small but blocking: off the request threads.
        if tokio::task::spawn_blocking(move || reload(&list)).await.is_err() {
            return;
        }
    }
}

/// Rebuilds the credentials of every source whose files changed since they were last read.
pub fn reload(list: &[Source]) {
    for (index, source) in list.iter().enumerate() {
        let now: Vec<(PathBuf, Option<[u8; 32]>)> = {
            let last = source.last_read.lock().unwrap_or_else(|p| p.into_inner());
            last.iter()
                .map(|(path, _)| (path.clone(), std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())))
                .collect()
        };
        {
            let mut last = source.last_read.lock().unwrap_or_else(|p| p.into_inner());
            if *last == now {
                continue;
            }
            *last = now;
        }
        let outcome = Credentials::load(&source.config, &source.key)
            .map_err(|problems| problems.join("; "))
            .and_then(|credentials| match shared_with(list, index, &credentials) {
                Some(other) => Err(format!("a credential is also one of source {other:?}'s")),
                None => Ok(credentials),
            });
        match outcome {
            Ok(credentials) => {
                *source.credentials.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(credentials);
                m::count(m::CREDENTIAL_RELOADS, &[("source", source.name)], 1);
                tracing::info!(source = source.name, "credentials reloaded");
            }
            Err(problem) => {
                m::count(m::CREDENTIAL_RELOAD_FAILURES, &[("source", source.name)], 1);
                tracing::warn!(source = source.name, problem = %problem, "credential files changed but cannot be used: the previous credentials stay");
            }
        }
    }
}

/// The name of another source holding one of `credentials`' values.
fn shared_with(list: &[Source], index: usize, credentials: &Credentials) -> Option<&'static str> {
    list.iter().enumerate().filter(|(other, _)| *other != index).find_map(|(_, other)| {
        let theirs = other.credentials();
        credentials.fingerprints.iter().any(|mine| theirs.fingerprints.contains(mine)).then_some(other.name)
    })
}

/// The one `&'static` copy of a source name (a metric label): sources are built a handful of
/// times per process, so the set stays small.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}
