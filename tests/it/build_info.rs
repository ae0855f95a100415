//! The build under test names itself: `cxone-ingest --version`, the admin listener's `/version`
//! and the `cxone_ingest_build_info` gauge on `/metrics` all carry the crate version and the git
//! commit (and whether the compiled sources differed from it) of this checkout, as git sees it now.
//! (A build given `CXONE_INGEST_BUILD_COMMIT` inside a git checkout says something else: these
//! tests are for builds that take the commit from git, as CI's do.)

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The files build.rs looks at for "dirty" (its `BUILD_INPUTS`): what the binary is compiled from.
const BUILD_INPUTS: &[&str] = &["src", "schemas", "build.rs", "Cargo.toml", "Cargo.lock"];

/// What the build must say, found independently of the binary: Cargo.toml's version, and git's
/// view of this checkout (HEAD; whether a build input differs from it), or `unknown` without git.
/// (Not the `CXONE_INGEST_BUILD_*` environment: `cargo test` hands the build script's own values
/// to the tests through it, so it would only repeat what the binary says.)
struct Expected {
    version: &'static str,
    commit: String,
    dirty: String,
}

fn expected() -> Expected {
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(root).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let (commit, dirty) = match git(&["rev-parse", "HEAD"]) {
        Some(head) => {
            assert!(head.len() == 40 && head.bytes().all(|b| b.is_ascii_hexdigit()), "HEAD is {head:?}");
            let mut status = vec!["status", "--porcelain", "--"];
            status.extend(BUILD_INPUTS);
            let changes = git(&status).expect("git status");
            (head, (!changes.is_empty()).to_string())
        }
        None => ("unknown".into(), "unknown".into()),
    };
    Expected { version: env!("CARGO_PKG_VERSION"), commit, dirty }
}

#[test]
fn version_flag_names_the_version_and_commit_of_this_build() {
    let want = expected();
    let out =
        Command::new(env!("CARGO_BIN_EXE_cxone-ingest")).arg("--version").output().expect("run --version");
    assert!(out.status.success(), "--version exited with {:?}", out.status);
    let tree = match want.dirty.as_str() {
        "true" => "dirty tree",
        "false" => "clean tree",
        _ => "tree unknown",
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("cxone-ingest {} (commit {}, {tree})\n", want.version, want.commit)
    );
    // Subcommands print the same.
    let sub =
        Command::new(env!("CARGO_BIN_EXE_cxone-ingest")).args(["serve", "--version"]).output().expect("run");
    assert!(String::from_utf8_lossy(&sub.stdout).contains(&want.commit), "serve --version: {sub:?}");
}

/// The `cxone_ingest_build_info` sample on a `/metrics` page: its labels and value.
fn build_info(page: &str) -> Option<(Vec<(String, String)>, String)> {
    let line = page.lines().find(|l| l.starts_with("cxone_ingest_build_info{"))?;
    let (labels, value) = line.strip_prefix("cxone_ingest_build_info{")?.split_once("} ")?;
    let labels = labels
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    Some((labels, value.trim().to_owned()))
}

#[tokio::test]
async fn admin_listener_reports_the_build_in_version_and_metrics() {
    let want = expected();
    // No stack needed: the sinks point at closed loopback ports; the admin listener serves anyway.
    let closed = format!("127.0.0.1:{}", free_loopback_port());
    let mut options = ServiceOptions::new("build-info", &closed);
    options.s3_endpoint = Some(format!("http://{closed}"));
    let service = Service::start(options);
    let client = e2e_client();

    let page = poll_until(Duration::from_secs(30), || async {
        let response = client.get(service.admin_url("/metrics")).send().await.ok()?;
        let page = response.text().await.ok()?;
        build_info(&page).map(|_| page)
    })
    .await
    .unwrap_or_else(|| {
        panic!("no cxone_ingest_build_info on /metrics\n--- log ---\n{}", service.log_tail(4_000))
    });
    let (labels, value) = build_info(&page).expect("build_info");
    let label = |name: &str| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(value, "1", "{labels:?}");
    assert_eq!(label("version"), Some(want.version), "{labels:?}");
    assert_eq!(label("commit"), Some(want.commit.as_str()), "{labels:?}");
    assert_eq!(label("dirty"), Some(want.dirty.as_str()), "{labels:?}");
    assert_eq!(page.lines().filter(|l| l.starts_with("cxone_ingest_build_info{")).count(), 1, "one build");

    let response = client.get(service.admin_url("/version")).send().await.expect("GET /version");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let dirty = match want.dirty.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::Null,
    };
    assert_eq!(
        body,
        serde_json::json!({"name": "cxone-ingest", "version": want.version, "commit": want.commit, "dirty": dirty})
    );
    // Not on the public listener (the load balancer's side): the commit is for operators.
    let public = client.get(service.url("/version")).send().await.expect("GET public /version");
    assert_eq!(public.status(), 404);
}
