//! The build's identity: the crate version and the git commit build.rs stamped (and whether the
//! compiled sources differed from it), one source for `--version`, the admin listener's
//! `/version` and the `cxone_ingest_build_info` gauge.

use std::sync::OnceLock;

/// The crate version (Cargo.toml; the chart's `appVersion` and the image tag follow it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (full hex id), or `unknown` (built without git and
/// without `CXONE_INGEST_BUILD_COMMIT`).
pub const COMMIT: &str = env!("CXONE_INGEST_BUILD_COMMIT");
/// `true` when the sources compiled (src/, schemas/, build.rs, Cargo.toml, Cargo.lock) differed
/// from [`COMMIT`], `false` when they did not, `unknown` when that could not be told.
pub const DIRTY: &str = env!("CXONE_INGEST_BUILD_DIRTY");

/// [`DIRTY`] as a JSON value: a boolean, or `null` when unknown.
pub fn dirty() -> Option<bool> {
    match DIRTY {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// What `cxone-ingest --version` prints after the program name, e.g.
/// `0.2.0 (commit 0123…cdef, clean tree)`.
pub fn version_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        let tree = match dirty() {
            Some(true) => "dirty tree",
            Some(false) => "clean tree",
            None => "tree unknown",
        };
        format!("{VERSION} (commit {COMMIT}, {tree})")
    })
}

/// The admin listener's `/version` answer:
/// `{"name":"cxone-ingest","version":…,"commit":…,"dirty":true|false|null}`.
pub fn json() -> serde_json::Value {
    serde_json::json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": VERSION,
        "commit": COMMIT,
        "dirty": dirty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_well_formed() {
        assert!(
            COMMIT == "unknown" || (COMMIT.len() >= 7 && COMMIT.bytes().all(|b| b.is_ascii_hexdigit())),
            "{COMMIT}"
        );
        assert!(matches!(DIRTY, "true" | "false" | "unknown"), "{DIRTY}");
        assert!(version_line().starts_with(&format!("{VERSION} (commit {COMMIT}, ")), "{}", version_line());
        assert_eq!(json()["version"], VERSION);
    }
}
