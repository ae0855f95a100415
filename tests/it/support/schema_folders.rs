//! Schema folders for the reload tests: a copy of the repository's `schemas/` a test edits (each
//! write atomic, as an editor's save: a temporary name, then a rename), a Kubernetes-ConfigMap-like
//! folder whose files are symlinks through a `..data` link that is swapped, and `GET /schemas`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::e2e::{Service, e2e_client};

/// The event schema the tests change: `interaction.completed`.
pub const INTERACTION_FILE: &str = "interaction-completed.json";

/// The repository's `schemas/` folder.
pub fn repo_schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// `interaction-completed.json` with its `x-cxone-schema-version` set to `version` and, with
/// `source_system`, one more optional top-level property `source_system` (a string): a payload
/// carrying it is refused by the original schema (no additional properties) and accepted by this one.
pub fn interaction_schema(version: &str, source_system: bool) -> String {
    let text = std::fs::read_to_string(repo_schemas().join(INTERACTION_FILE)).expect("read the schema");
    let mut schema: Value = serde_json::from_str(&text).expect("schema JSON");
    schema["x-cxone-schema-version"] = Value::String(version.to_owned());
    if source_system {
        schema["properties"]["source_system"] = serde_json::json!({"type": "string"});
    }
    serde_json::to_string_pretty(&schema).expect("schema text")
}

/// A valid `interaction.completed` payload that also carries `source_system` (valid only under a
/// schema made by [`interaction_schema`] with `source_system`).
pub fn body_with_source_system(correlation_id: &str) -> String {
    let mut body: Value = serde_json::from_str(&super::e2e::e2e_valid_body(correlation_id)).expect("body");
    body["source_system"] = Value::String("studio".to_owned());
    body.to_string()
}

/// A folder holding a copy of the repository's schemas (byte for byte: typed, version 1.0.0).
pub struct SchemaFolder {
    dir: tempfile::TempDir,
}

impl SchemaFolder {
    /// A fresh copy of `schemas/`.
    pub fn copy_of_repo() -> SchemaFolder {
        let dir = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(repo_schemas()).expect("schemas/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|ext| ext == "json") {
                std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
            }
        }
        SchemaFolder { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `name` with `text` atomically (written under another name, then renamed).
    pub fn write(&self, name: &str, text: &str) {
        write_atomically(self.dir.path(), name, text);
    }
}

/// Writes `dir/name` through a temporary file and a rename, so no reader sees half a file.
pub fn write_atomically(dir: &Path, name: &str, text: &str) {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text).expect("write the temporary file");
    std::fs::rename(&temporary, dir.join(name)).expect("rename into place");
}

/// A folder laid out as the kubelet mounts a ConfigMap: the data in `..<version>/`, a `..data`
/// symlink to it, and every file a symlink `name -> ..data/name`. An update writes a new
/// `..<version>/`, points a temporary link at it and renames the link over `..data`.
pub struct ConfigMapFolder {
    dir: tempfile::TempDir,
}

impl ConfigMapFolder {
    /// The files of `files` (name, text) as version `version`.
    pub fn new(version: &str, files: &[(String, String)]) -> ConfigMapFolder {
        let folder = ConfigMapFolder { dir: tempfile::tempdir().expect("tempdir") };
        folder.write_version(version, files);
        std::os::unix::fs::symlink(format!("..{version}"), folder.path().join("..data")).expect("..data");
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), folder.path().join(name))
                .expect("file link");
        }
        folder
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_version(&self, version: &str, files: &[(String, String)]) {
        let data = self.path().join(format!("..{version}"));
        std::fs::create_dir(&data).expect("version folder");
        for (name, text) in files {
            std::fs::write(data.join(name), text).expect("write a file");
        }
    }

    /// The kubelet's update: the same file names with new contents, swapped in by one rename.
    pub fn swap_to(&self, version: &str, files: &[(String, String)]) {
        self.write_version(version, files);
        let temporary = self.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &temporary).expect("..data_tmp");
        std::fs::rename(&temporary, self.path().join("..data")).expect("swap ..data");
    }
}

/// The repository's schema files (name, text).
pub fn repo_schema_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo_schemas())
        .expect("schemas/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

/// `GET /schemas` on the service's admin listener.
pub async fn schemas_of(service: &Service) -> Value {
    let response = e2e_client().get(service.admin_url("/schemas")).send().await.expect("GET /schemas");
    assert_eq!(response.status(), 200, "/schemas");
    response.json().await.expect("/schemas JSON")
}

/// In a `/schemas` answer: the set loaded from `folder`.
pub fn schema_set<'a>(schemas: &'a Value, folder: &Path) -> Option<&'a Value> {
    let folder = folder.display().to_string();
    schemas["schema_sets"].as_array()?.iter().find(|set| set["folder"] == folder.as_str())
}

/// In a `/schemas` answer: (version, sha256) of the schema serving `event` in the set of `folder`.
pub fn schema_of_event(schemas: &Value, folder: &Path, event: &str) -> Option<(String, String)> {
    let set = schema_set(schemas, folder)?;
    let schema = set["schemas"]
        .as_array()?
        .iter()
        .find(|schema| schema["events"].as_array().is_some_and(|events| events.iter().any(|e| e == event)))?;
    Some((schema["version"].as_str()?.to_owned(), schema["sha256"].as_str()?.to_owned()))
}
