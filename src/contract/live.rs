//! The schema sets in force while serving: one per schema folder in use (or the built-in set),
//! each held in an `ArcSwap` and replaced whole by a reload, so a request that took a snapshot
//! ([`SchemaSet::contract`]) is judged by it from start to finish.
//!
//! A reload reads every `*.json` of the folder, hashes each file (sha256), and compiles them only
//! when some file's bytes differ from the set in force (`unchanged` otherwise). A folder that does
//! not load leaves the set in force as it is: the failure is logged (error level: folder, file,
//! why), counted (`cxone_ingest_schema_reloads_total{outcome="failed"}`) and shown by
//! `cxone_ingest_schema_reload_failing` and `GET /schemas` until a later attempt succeeds.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::types::BUILTIN_SCHEMAS;
use super::{Contract, ContractError, read_folder};
use crate::config::Config;
use crate::metrics as m;

/// What `/schemas` calls the set compiled into the binary.
pub const BUILTIN_NAME: &str = "built-in";

/// One folder's schemas as compiled, and what they were compiled from.
struct Loaded {
    contract: Arc<Contract>,
    loaded_at: DateTime<Utc>,
    /// sha256 of each file's bytes, by the path the contract names the file by.
    files: BTreeMap<String, [u8; 32]>,
}

/// What one reload attempt of a folder came to: the `outcome` label of
/// `cxone_ingest_schema_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Some file changed and the folder compiled: the new set is in force.
    Applied,
    /// Every file has the bytes of the set in force: nothing swapped.
    Unchanged,
    /// The folder does not load: the set in force stays.
    Failed,
}

impl ReloadOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Failed => "failed",
        }
    }
}

/// The latest reload attempt of a folder, when it failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// When it was tried (RFC 3339, UTC).
    pub at: String,
    /// The file at fault (or the folder, when it cannot be read or holds no event schema).
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The schemas of one folder (or the built-in set) in force, and the sources judged by them.
pub struct SchemaSet {
    /// `None`: the set compiled into the binary (never reloaded).
    folder: Option<PathBuf>,
    /// The sources judged by this set, by name.
    sources: Vec<String>,
    /// The set in force; replaced whole.
    current: ArcSwap<Loaded>,
    /// Set while the latest attempt failed: the folder on disk is not what runs.
    failure: Mutex<Option<Failure>>,
    /// One reload of this folder at a time.
    reloading: Mutex<()>,
}

impl SchemaSet {
    fn builtin(sources: Vec<String>) -> SchemaSet {
        let files = BUILTIN_SCHEMAS
            .iter()
            .map(|schema| (schema.file_name.to_owned(), Sha256::digest(schema.text.as_bytes()).into()))
            .collect();
        let loaded = Loaded { contract: Contract::shared_builtin(), loaded_at: Utc::now(), files };
        SchemaSet::new(None, sources, loaded)
    }

    fn new(folder: Option<PathBuf>, sources: Vec<String>, loaded: Loaded) -> SchemaSet {
        SchemaSet {
            folder,
            sources,
            current: ArcSwap::from_pointee(loaded),
            failure: Mutex::new(None),
            reloading: Mutex::new(()),
        }
    }

    /// Loads a folder at start: any problem is an error naming the file.
    fn load(folder: &Path, sources: Vec<String>) -> Result<SchemaSet, ContractError> {
        let loaded = compile(folder, read_folder(folder)?)?;
        Ok(SchemaSet::new(Some(folder.to_owned()), sources, loaded))
    }

    /// The contract in force: a snapshot that stays whole whatever a reload does meanwhile (one
    /// atomic load and one reference count).
    pub fn contract(&self) -> Arc<Contract> {
        Arc::clone(&self.current.load().contract)
    }

    /// The folder, `None` for the built-in set.
    pub fn folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }

    /// The folder as shown in logs and `/schemas`: its path, or `built-in`.
    pub fn name(&self) -> String {
        self.folder.as_deref().map_or_else(|| BUILTIN_NAME.to_owned(), |dir| dir.display().to_string())
    }

    /// Whether the latest reload attempt failed (the folder on disk is not what runs).
    pub fn failing(&self) -> bool {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Reads the folder again and puts it in force when some file's bytes changed and it loads;
    /// otherwise the set in force stays. Blocking (file reads): call it off the request threads.
    pub fn reload(&self) -> ReloadOutcome {
        let Some(folder) = &self.folder else { return ReloadOutcome::Unchanged };
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let attempt = read_folder(folder).and_then(|files| {
            let same = {
                let current = self.current.load();
                files.len() == current.files.len()
                    && files.iter().all(|(path, bytes)| {
                        current.files.get(path) == Some(&<[u8; 32]>::from(Sha256::digest(bytes)))
                    })
            };
            if same { Ok(None) } else { compile(folder, files).map(Some) }
        });
        let outcome = match attempt {
            Ok(None) => ReloadOutcome::Unchanged,
            Ok(Some(loaded)) => {
                let versions: Vec<String> = loaded
                    .contract
                    .schemas()
                    .map(|info| format!("{}@{}", info.schema.id, info.schema.version))
                    .collect();
                self.current.store(Arc::new(loaded));
                tracing::info!(folder = %folder.display(), schemas = %versions.join(", "), "schema folder reloaded: the new schemas are in force");
                ReloadOutcome::Applied
            }
            Err(err) => {
                tracing::error!(folder = %folder.display(), file = %err.path, problem = %err.message,
                    "schema folder cannot be loaded: the schemas in force stay");
                let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Failure { at, file: err.path, problem: err.message });
                return ReloadOutcome::Failed;
            }
        };
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        outcome
    }

    /// This set as `/schemas` lists it.
    fn describe(&self) -> serde_json::Value {
        let current = self.current.load();
        let schemas: Vec<serde_json::Value> = current
            .contract
            .schemas()
            .map(|info| {
                let sha256 = current.files.get(&info.file_name).map(hex::encode);
                let file = Path::new(&info.file_name)
                    .file_name()
                    .map_or_else(|| info.file_name.clone(), |name| name.to_string_lossy().into_owned());
                serde_json::json!({
                    "events": info.events,
                    "id": info.schema.id,
                    "version": info.schema.version,
                    "file": file,
                    "sha256": sha256,
                    "typed": info.typed,
                })
            })
            .collect();
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
        serde_json::json!({
            "folder": self.name(),
            "sources": self.sources,
            "loaded_at": current.loaded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "reload_failing": failure.is_some(),
            "last_failure": failure,
            "schemas": schemas,
        })
    }
}

/// Compiles files read from `folder`; "no event schema" names the folder.
fn compile(folder: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Loaded, ContractError> {
    let contract = Contract::from_files(&files).map_err(|err| {
        if files.iter().any(|(path, _)| *path == err.path) {
            err
        } else {
            ContractError { path: folder.display().to_string(), message: err.message }
        }
    })?;
    let files = files.into_iter().map(|(path, bytes)| (path, Sha256::digest(&bytes).into())).collect();
    Ok(Loaded { contract: Arc::new(contract), loaded_at: Utc::now(), files })
}

/// Every schema set in use, and which one judges each source's payloads.
pub struct Schemas {
    /// One per distinct folder (or the built-in set); the first is `contract.schemas_dir`'s.
    sets: Vec<Arc<SchemaSet>>,
    /// Source name -> index into `sets` (sources not named here use the first).
    by_source: HashMap<String, usize>,
}

impl Schemas {
    /// Only the built-in set, for every source.
    pub fn builtin() -> Schemas {
        Schemas { sets: vec![Arc::new(SchemaSet::builtin(Vec::new()))], by_source: HashMap::new() }
    }

    /// Loads every folder the configuration uses once (a folder shared by several sources is one
    /// set): `contract.schemas_dir` (unset: the built-in set), then each source's own
    /// `schemas_dir`. A folder that does not load is an error naming the key, the file and the
    /// problem.
    pub fn load(config: &Config) -> Result<Schemas, String> {
        let specs = crate::sources::specs(config);
        // (folder, key naming it, sources)
        let mut wanted: Vec<(Option<PathBuf>, String, Vec<String>)> =
            vec![(config.contract.schemas_dir.clone(), "contract.schemas_dir".to_owned(), Vec::new())];
        let mut by_source = HashMap::new();
        for (key, spec) in &specs {
            let folder = spec.schemas_dir.clone().or_else(|| config.contract.schemas_dir.clone());
            let index = match wanted.iter().position(|(dir, _, _)| *dir == folder) {
                Some(index) => index,
                None => {
                    wanted.push((folder, format!("{key}schemas_dir"), Vec::new()));
                    wanted.len() - 1
                }
            };
            wanted[index].2.push(spec.name.clone());
            by_source.insert(spec.name.clone(), index);
        }
        let mut sets = Vec::with_capacity(wanted.len());
        for (folder, key, sources) in wanted {
            let set = match folder {
                None => SchemaSet::builtin(sources),
                Some(folder) => SchemaSet::load(&folder, sources).map_err(|err| {
                    format!(
                        "{key} = {:?} does not load: {}: {} (fix the file, or point {key} elsewhere)",
                        folder.display().to_string(),
                        err.path,
                        err.message
                    )
                })?,
            };
            sets.push(Arc::new(set));
        }
        Ok(Schemas { sets, by_source })
    }

    /// The set judging `source`'s payloads (unknown names: `contract.schemas_dir`'s).
    pub fn set_of(&self, source: &str) -> &Arc<SchemaSet> {
        &self.sets[self.by_source.get(source).copied().unwrap_or(0)]
    }

    /// Every set, `contract.schemas_dir`'s first.
    pub fn sets(&self) -> &[Arc<SchemaSet>] {
        &self.sets
    }

    /// Whether any set comes from a folder (something to watch and reload).
    pub fn has_folders(&self) -> bool {
        self.sets.iter().any(|set| set.folder.is_some())
    }

    /// Reloads the sets at `indices` (every folder when `None`), counts each attempt and sets
    /// `cxone_ingest_schema_reload_failing`. Blocking.
    pub fn reload(&self, indices: Option<&[usize]>) -> Vec<ReloadOutcome> {
        let outcomes: Vec<ReloadOutcome> = self
            .sets
            .iter()
            .enumerate()
            .filter(|(index, set)| {
                set.folder.is_some() && indices.is_none_or(|chosen| chosen.contains(index))
            })
            .map(|(_, set)| {
                let outcome = set.reload();
                m::count(m::SCHEMA_RELOADS, &[("outcome", outcome.as_str())], 1);
                outcome
            })
            .collect();
        self.publish_failing();
        outcomes
    }

    /// Sets `cxone_ingest_schema_reload_failing` from the sets' state, and makes every outcome of
    /// `cxone_ingest_schema_reloads_total` exist (at 0) so rules and dashboards see the series.
    pub fn publish_failing(&self) {
        for outcome in [ReloadOutcome::Applied, ReloadOutcome::Unchanged, ReloadOutcome::Failed] {
            m::count(m::SCHEMA_RELOADS, &[("outcome", outcome.as_str())], 0);
        }
        let failing = self.sets.iter().any(|set| set.failing());
        metrics::gauge!(m::SCHEMA_RELOAD_FAILING).set(if failing { 1.0 } else { 0.0 });
    }

    /// `GET /schemas`: every set in force, with its folder, sources, load time and schemas.
    pub fn describe(&self) -> serde_json::Value {
        let sets: Vec<serde_json::Value> = self.sets.iter().map(|set| set.describe()).collect();
        serde_json::json!({ "schema_sets": sets })
    }
}

/// A contract, borrowed or shared: what [`ContractLookup`] hands out.
pub enum Snapshot<'a> {
    /// A contract that outlives the lookup (the built-in one, or one a test built).
    Borrowed(&'a Contract),
    /// A live set's snapshot.
    Shared(Arc<Contract>),
}

impl Deref for Snapshot<'_> {
    type Target = Contract;

    fn deref(&self) -> &Contract {
        match self {
            Snapshot::Borrowed(contract) => contract,
            Snapshot::Shared(contract) => contract,
        }
    }
}

/// Which contract judges a payload of a given source (replay judges each dead letter by the
/// schemas its source is judged by now).
pub trait ContractLookup: Sync {
    /// The contract for `source` (`None`: a record from before sources existed).
    fn for_source(&self, source: Option<&str>) -> Snapshot<'_>;
}

impl ContractLookup for Contract {
    fn for_source(&self, _source: Option<&str>) -> Snapshot<'_> {
        Snapshot::Borrowed(self)
    }
}

impl ContractLookup for Schemas {
    fn for_source(&self, source: Option<&str>) -> Snapshot<'_> {
        let set = match source {
            Some(source) => self.set_of(source),
            None => &self.sets[0],
        };
        Snapshot::Shared(set.contract())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with_repo_schemas() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for schema in BUILTIN_SCHEMAS {
            std::fs::write(dir.path().join(schema.file_name), schema.text).unwrap();
        }
        dir
    }

    fn bumped(version: &str) -> String {
        let text = BUILTIN_SCHEMAS.iter().find(|s| s.file_name == "interaction-completed.json").unwrap().text;
        let mut schema: serde_json::Value = serde_json::from_str(text).unwrap();
        schema[super::super::VERSION_ANNOTATION] = version.into();
        schema.to_string()
    }

    fn version_of(contract: &Contract) -> String {
        contract.schema_for_event("interaction.completed").unwrap().version.clone()
    }

    /// Unchanged bytes are not swapped; changed ones are; a broken folder keeps the set in force
    /// and says why until a good attempt; a snapshot taken before a swap stays whole.
    #[test]
    fn a_reload_swaps_only_changed_folders_that_load() {
        let dir = folder_with_repo_schemas();
        let set = SchemaSet::load(dir.path(), vec!["default".into()]).unwrap();
        let before = set.contract();
        assert_eq!(set.reload(), ReloadOutcome::Unchanged);
        assert!(Arc::ptr_eq(&before, &set.contract()), "unchanged: the same set stays");

        std::fs::write(dir.path().join("interaction-completed.json"), bumped("1.1.0")).unwrap();
        assert_eq!(set.reload(), ReloadOutcome::Applied);
        assert_eq!(version_of(&set.contract()), "1.1.0");
        assert_eq!(version_of(&before), "1.0.0", "a snapshot is never changed under its holder");

        std::fs::write(dir.path().join("survey-completed.json"), "{ nope").unwrap();
        assert_eq!(set.reload(), ReloadOutcome::Failed);
        assert!(set.failing());
        assert_eq!(version_of(&set.contract()), "1.1.0", "a broken folder keeps the set in force");
        let described = set.describe();
        assert!(described["last_failure"]["file"].as_str().unwrap().ends_with("survey-completed.json"));

        std::fs::remove_file(dir.path().join("survey-completed.json")).unwrap();
        assert_eq!(set.reload(), ReloadOutcome::Applied, "one file fewer is a change");
        assert!(!set.failing());
    }

    /// A folder without any event schema names the folder, not a file.
    #[test]
    fn an_empty_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = SchemaSet::load(dir.path(), Vec::new()).err().unwrap();
        assert_eq!(err.path, dir.path().display().to_string());
        assert!(err.message.contains("no event schema"), "{}", err.message);
    }
}
