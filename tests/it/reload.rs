//! Schemas loaded from a folder at run time and reloaded without a restart: the real binary with a
//! schema folder the test edits while signed requests keep coming, SIGHUP, a ConfigMap-style
//! `..data` swap, per-source folders, and a folder that does not load at start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::support::*;

const EVENT: &str = "interaction.completed";
const RELOADS: &str = "cxone_ingest_schema_reloads_total";
const FAILING: &str = "cxone_ingest_schema_reload_failing";

/// A service judging payloads by `folder` (`contract.schemas_dir`), with `more` config lines.
fn options_with_folder(name: &str, brokers: &str, folder: &Path, more: &[&str]) -> ServiceOptions {
    let mut options = ServiceOptions::new(name, brokers);
    options.extra_config.push(("contract", format!("schemas_dir = {:?}", folder.display().to_string())));
    for line in more {
        options.extra_config.push(("contract", (*line).to_owned()));
    }
    options
}

/// Polls `/schemas` until the `interaction.completed` schema of `folder` satisfies `want`.
async fn wait_for_schema(
    service: &Service,
    folder: &Path,
    what: &str,
    want: impl Fn(&str, &str) -> bool,
) -> (String, String) {
    let found = poll_until(Duration::from_secs(20), || async {
        schema_of_event(&schemas_of(service).await, folder, EVENT).filter(|(v, h)| want(v, h))
    })
    .await;
    match found {
        Some(found) => found,
        None => panic!(
            "{what}: /schemas shows {:#}\n--- log ---\n{}",
            schemas_of(service).await,
            service.log_tail(6000)
        ),
    }
}

/// Polls `/metrics` until `check` holds for the reload counters and gauge.
async fn wait_for_metrics(service: &Service, what: &str, check: impl Fn(&str) -> bool) -> String {
    let page = poll_until(Duration::from_secs(20), || async {
        let page = service.metrics().await;
        check(&page).then_some(page)
    })
    .await;
    page.unwrap_or_else(|| panic!("{what}\n--- log ---\n{}", service.log_tail(6000)))
}

/// One request of the load loop.
#[derive(Debug, Clone)]
struct Sent {
    request_id: String,
    started: Instant,
    /// Deliberately invalid (dead-lettered).
    invalid: bool,
    /// HTTP status; 0 when no answer came.
    status: u16,
    /// The answer's `status` field (`published`, `dead_lettered`, ...).
    outcome: String,
}

/// Signed requests from `workers` concurrent senders until `stop`; every seventh one invalid.
fn start_load(
    service: &Service,
    workers: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|worker| {
            let (url, stop, sent) = (service.webhook_url(), Arc::clone(&stop), Arc::clone(&sent));
            tokio::spawn(async move {
                let client = e2e_client();
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let invalid = n % 7 == 0;
                    let correlation_id = unique(&format!("reload-w{worker}"));
                    let body = if invalid {
                        e2e_invalid_body(&correlation_id)
                    } else {
                        e2e_valid_body(&correlation_id)
                    };
                    let request_id = unique("reload-req");
                    let started = Instant::now();
                    let answer =
                        e2e_post(&client, &url, &body, &e2e_sign(body.as_bytes()), Some(&request_id)).await;
                    let (status, outcome) = match answer {
                        Ok(posted) => {
                            (posted.status, posted.body["status"].as_str().unwrap_or("").to_owned())
                        }
                        Err(err) => (0, format!("no answer: {err}")),
                    };
                    sent.lock().await.push(Sent { request_id, started, invalid, status, outcome });
                }
            })
        })
        .collect()
}

/// Waits until at least `more` further requests of the load loop have been answered.
async fn wait_for_requests(sent: &Arc<Mutex<Vec<Sent>>>, more: usize, phase: &str) {
    let base = sent.lock().await.len();
    let reached = poll_until(Duration::from_secs(60), || async {
        (sent.lock().await.len() >= base + more).then_some(())
    })
    .await;
    assert!(reached.is_some(), "{phase}: the load loop did not get {more} more answers in 60 s");
}

/// The contract changes twice under steady signed load (to a new version with one more optional
/// property, then to a broken file) and back: every request is answered 200 (published or
/// dead-lettered), none fails; Kafka's `schema_version` header and the dead letters show the new
/// version for requests sent after the swap was visible, the old one before it was written; the
/// broken folder keeps the new version in force (a payload only it accepts is still published),
/// counts `failed` and raises `reload_failing` until the folder is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_reload_under_load_answers_every_request_and_swaps_versions_whole() {
    let brokers = stack_kafka_brokers();
    let folder = SchemaFolder::copy_of_repo();
    let options = options_with_folder("reload-load", &brokers, folder.path(), &[]);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options.clone()).await;
    let (version, _) = wait_for_schema(&service, folder.path(), "start", |_, _| true).await;
    assert_eq!(version, "1.0.0");
    let schemas = schemas_of(&service).await;
    let set = schema_set(&schemas, folder.path()).expect("the folder's set");
    assert_eq!(set["sources"], serde_json::json!(["default"]), "{set:#}");
    assert!(set["schemas"].as_array().unwrap().iter().all(|s| s["typed"] == true), "byte-identical: typed");
    let page = service.metrics().await;
    assert_eq!(metric_sum(&page, FAILING, &[]), 0.0);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let workers = start_load(&service, 4, Arc::clone(&stop), Arc::clone(&sent));
    wait_for_requests(&sent, 40, "before any change").await;

    // 1. A new version with one more optional property.
    let v11 = interaction_schema("1.1.0", true);
    let written_v11 = Instant::now();
    folder.write(INTERACTION_FILE, &v11);
    let (_, hash_v11) =
        wait_for_schema(&service, folder.path(), "v1.1.0 in force", |v, _| v == "1.1.0").await;
    let seen_v11 = Instant::now();
    wait_for_requests(&sent, 60, "after the swap to 1.1.0").await;

    // 2. A broken file: the folder fails to load, 1.1.0 stays in force.
    folder.write(INTERACTION_FILE, "{ \"$id\": \"broken\", this is not JSON");
    let page = wait_for_metrics(&service, "reload failed and reload_failing = 1", |page| {
        metric_sum(page, RELOADS, &[("outcome", "failed")]) >= 1.0 && metric_sum(page, FAILING, &[]) == 1.0
    })
    .await;
    assert!(metric_sum(&page, RELOADS, &[("outcome", "applied")]) >= 1.0, "{page}");
    let schemas = schemas_of(&service).await;
    let set = schema_set(&schemas, folder.path()).expect("the folder's set");
    assert_eq!(set["reload_failing"], true, "{set:#}");
    let failure = &set["last_failure"];
    assert!(failure["file"].as_str().unwrap_or("").ends_with(INTERACTION_FILE), "{failure:#}");
    assert!(failure["problem"].as_str().unwrap_or("").contains("not valid JSON"), "{failure:#}");
    assert_eq!(schema_of_event(&schemas, folder.path(), EVENT), Some(("1.1.0".to_owned(), hash_v11.clone())));
    assert_published(&service, &body_with_source_system(&unique("reload-v11-only"))).await;
    let log = service.log_tail(20_000);
    assert!(
        log.lines().any(|line| line.contains("\"level\":\"ERROR\"")
            && line.contains("schema folder cannot be loaded")
            && line.contains(INTERACTION_FILE)),
        "an error line names the folder, the file and why:\n{log}"
    );
    wait_for_requests(&sent, 40, "while the folder is broken").await;

    // 3. The folder fixed (the running bytes again): unchanged, and reload_failing back to 0.
    folder.write(INTERACTION_FILE, &v11);
    wait_for_metrics(&service, "reload_failing back to 0", |page| {
        metric_sum(page, FAILING, &[]) == 0.0 && metric_sum(page, RELOADS, &[("outcome", "unchanged")]) >= 1.0
    })
    .await;
    wait_for_requests(&sent, 20, "after the fix").await;
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.expect("load worker");
    }

    // Every request answered 200: published when valid, dead-lettered when not.
    let sent = sent.lock().await.clone();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for request in &sent {
        *by_status.entry(format!("{} {}", request.status, request.outcome)).or_default() += 1;
    }
    for request in &sent {
        let want = if request.invalid { "dead_lettered" } else { "published" };
        assert!(
            request.status == 200 && request.outcome == want,
            "{request:?} (answers: {by_status:?})\n--- log ---\n{}",
            service.log_tail(6000)
        );
    }

    // Kafka: one record per published request; the version judged by is the one in force.
    let records = e2e_committed_records(&brokers, &options.topic).await;
    let by_request = kafka_by_request_id(&records);
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        *versions.entry(record.headers.get("schema_version").cloned().unwrap_or_default()).or_default() += 1;
    }
    let (mut before, mut after) = (0, 0);
    for request in sent.iter().filter(|request| !request.invalid) {
        let found = by_request.get(&request.request_id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "{} has {} records", request.request_id, found.len());
        let version = found[0].headers.get("schema_version").map(String::as_str);
        if request.started < written_v11 {
            assert_eq!(version, Some("1.0.0"), "sent before the change: {}", request.request_id);
            before += 1;
        } else if request.started > seen_v11 {
            assert_eq!(version, Some("1.1.0"), "sent after the swap was visible: {}", request.request_id);
            after += 1;
        }
    }
    assert!(before > 0 && after > 0, "before {before}, after {after}");

    // Dead letters: those sent after the swap name the new version.
    let late_invalid: Vec<&Sent> = sent.iter().filter(|r| r.invalid && r.started > seen_v11).collect();
    assert!(!late_invalid.is_empty());
    let letters = poll_until(Duration::from_secs(30), || async {
        let letters = e2e_dead_letters(&options.s3_prefix).await;
        let all = late_invalid.iter().all(|r| letters.iter().any(|l| l.request_id() == r.request_id));
        all.then_some(letters)
    })
    .await
    .expect("the dead letters of the invalid requests");
    for request in &late_invalid {
        let letter = letters.iter().find(|l| l.request_id() == request.request_id).expect("letter");
        assert_eq!(letter.record["schema"]["version"], "1.1.0", "{}", letter.record);
    }
    eprintln!(
        "reload under load: {} requests sent; answers {by_status:?}; Kafka records by schema_version \
         {versions:?}; {} dead letters; 1.1.0 visible in /schemas {} ms after the write",
        sent.len(),
        letters.len(),
        (seen_v11 - written_v11).as_millis()
    );
}

/// With the watcher off (`contract.watch = false`), a changed file is not noticed until SIGHUP;
/// after SIGHUP `/schemas` shows the new file's sha256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_folder_the_watcher_does_not_watch() {
    let brokers = stack_kafka_brokers();
    let folder = SchemaFolder::copy_of_repo();
    let options = options_with_folder("reload-hup", &brokers, folder.path(), &["watch = false"]);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options).await;
    let (_, hash_before) = wait_for_schema(&service, folder.path(), "start", |_, _| true).await;

    folder.write(INTERACTION_FILE, &interaction_schema("1.0.1", false));
    // Not watched: still the old file after several debounce periods of quiet.
    let unwatched = poll_until(Duration::from_secs(2), || async {
        schema_of_event(&schemas_of(&service).await, folder.path(), EVENT).filter(|(_, h)| *h != hash_before)
    })
    .await;
    assert!(unwatched.is_none(), "the watcher is off, yet the folder was reloaded: {unwatched:?}");

    let status = std::process::Command::new("kill")
        .args(["-HUP", &service.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let (version, hash_after) =
        wait_for_schema(&service, folder.path(), "SIGHUP reload", |_, h| h != hash_before).await;
    assert_eq!(version, "1.0.1");
    let text = interaction_schema("1.0.1", false);
    assert_eq!(hash_after, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())));
    let mut service = service;
    assert!(service.is_running(), "SIGHUP reloads, it does not stop the process");
    let page = service.metrics().await;
    assert!(metric_sum(&page, RELOADS, &[("outcome", "applied")]) >= 1.0, "{page}");
}

/// A Kubernetes ConfigMap update (a new `..<version>` folder, `..data` swapped to it by a rename;
/// the `*.json` entries are symlinks through `..data`) is seen by the watcher and reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_data_symlink_swap_is_reloaded() {
    let brokers = stack_kafka_brokers();
    let files = repo_schema_files();
    let folder = ConfigMapFolder::new("2026_12_06_10_00_00.000000001", &files);
    let options = options_with_folder("reload-cm", &brokers, folder.path(), &["reload_debounce_ms = 200"]);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options).await;
    let (version, _) = wait_for_schema(&service, folder.path(), "start", |_, _| true).await;
    assert_eq!(version, "1.0.0");

    let updated: Vec<(String, String)> = files
        .iter()
        .map(|(name, text)| {
            let text =
                if name == INTERACTION_FILE { interaction_schema("1.2.0", true) } else { text.clone() };
            (name.clone(), text)
        })
        .collect();
    folder.swap_to("2026_12_06_10_05_00.000000002", &updated);
    let (version, _) =
        wait_for_schema(&service, folder.path(), "after the ..data swap", |v, _| v == "1.2.0").await;
    assert_eq!(version, "1.2.0");
    // The reload's own reads of the folder are no change: once applied, no further reload comes
    // (seven debounce periods of quiet).
    let reloads = |page: &str| metric_sum(page, RELOADS, &[]);
    let settled = reloads(&service.metrics().await);
    let more = poll_until(Duration::from_millis(1_400), || async {
        let now = reloads(&service.metrics().await);
        (now != settled).then_some(now)
    })
    .await;
    assert_eq!(more, None, "reloads went on after the swap ({settled} before)");
    let schemas = schemas_of(&service).await;
    let set = schema_set(&schemas, folder.path()).expect("set");
    let typed: Vec<(&str, bool)> = set["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["file"].as_str().unwrap(), s["typed"].as_bool().unwrap()))
        .collect();
    assert!(typed.contains(&(INTERACTION_FILE, false)), "a changed schema has no generated type: {typed:?}");
    assert!(typed.iter().any(|(file, typed)| *file != INTERACTION_FILE && *typed), "{typed:?}");
    // The new schema judges: a payload only 1.2.0 accepts is published.
    assert_published(&service, &body_with_source_system(&unique("reload-cm"))).await;
}

/// Posts `body`, signed, to `service`'s webhook and asserts it was published.
async fn assert_published(service: &Service, body: &str) {
    let answer = e2e_post(&e2e_client(), &service.webhook_url(), body, &e2e_sign(body.as_bytes()), None)
        .await
        .expect("post");
    assert_eq!(
        (answer.status, answer.body["status"].as_str()),
        (200, Some("published")),
        "{:?}",
        answer.body
    );
}

/// Posts `body` to `service`'s `path` with a bearer token: the status and the JSON answer.
async fn post_bearer(service: &Service, path: &str, token: &str, body: String) -> (u16, Value) {
    let response = e2e_client()
        .post(service.url(path))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.unwrap_or(Value::Null))
}

const EAST_TOKEN: &str = "reload-east-bearer-token-0123456789abcdef";
const WEST_TOKEN: &str = "reload-west-bearer-token-0123456789abcdef";

/// Two sources with their own schema folders: the same payload is judged by each source's own
/// (Kafka's `schema_version` header says which), a payload only one folder accepts is published
/// there and dead-lettered on the other, and `/schemas` lists each folder with its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_is_judged_by_its_own_schema_folder() {
    let brokers = stack_kafka_brokers();
    let (east, west) = (SchemaFolder::copy_of_repo(), SchemaFolder::copy_of_repo());
    west.write(INTERACTION_FILE, &interaction_schema("2.0.0", true));
    let mut options = ServiceOptions::new("reload-sources", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    options.extra_toml = format!(
        "[[sources]]\nname = \"east\"\npath = \"/in/east\"\nschemas_dir = {:?}\n[sources.bearer]\nbearer_tokens = [\"{EAST_TOKEN}\"]\n\n\
         [[sources]]\nname = \"west\"\npath = \"/in/west\"\nschemas_dir = {:?}\n[sources.bearer]\nbearer_tokens = [\"{WEST_TOKEN}\"]\n",
        east.path().display().to_string(),
        west.path().display().to_string(),
    );
    let service = Service::start_ready(options.clone()).await;
    let schemas = schemas_of(&service).await;
    assert_eq!(schema_set(&schemas, east.path()).expect("east set")["sources"], serde_json::json!(["east"]));
    assert_eq!(schema_set(&schemas, west.path()).expect("west set")["sources"], serde_json::json!(["west"]));
    assert_eq!(schema_of_event(&schemas, east.path(), EVENT).map(|s| s.0).as_deref(), Some("1.0.0"));
    assert_eq!(schema_of_event(&schemas, west.path(), EVENT).map(|s| s.0).as_deref(), Some("2.0.0"));

    let post =
        |path: &'static str, token: &'static str, body: String| post_bearer(&service, path, token, body);
    let mut published = Vec::new();
    for (path, token) in [("/in/east", EAST_TOKEN), ("/in/west", WEST_TOKEN)] {
        let id = unique("reload-src");
        let (status, answer) = post(path, token, e2e_valid_body(&id)).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("published")), "{path}: {answer}");
        published.push((path, id));
    }
    let (status, answer) = post("/in/east", EAST_TOKEN, body_with_source_system(&unique("east-extra"))).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("dead_lettered")),
        "east refuses it: {answer}"
    );
    assert_eq!(answer["schema"]["version"], "1.0.0", "{answer}");
    let (status, answer) = post("/in/west", WEST_TOKEN, body_with_source_system(&unique("west-extra"))).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("published")), "west takes it: {answer}");

    let records = e2e_committed_records(&brokers, &options.topic).await;
    for (path, correlation_id) in published {
        let record = records
            .iter()
            .find(|record| record.key.as_deref() == Some(correlation_id.as_str()))
            .unwrap_or_else(|| panic!("{path}'s event in Kafka"));
        let want = if path == "/in/east" { "1.0.0" } else { "2.0.0" };
        assert_eq!(record.headers.get("schema_version").map(String::as_str), Some(want), "{path}");
        assert_eq!(record.headers.get("source").map(String::as_str), Some(&path[4..]), "{path}");
    }
}

/// A folder that does not load at start stops the start (exit 2) and `config check` (exit 1), both
/// naming the file and the problem; the flag beats the environment.
#[test]
fn a_schema_folder_that_does_not_load_at_start_is_a_start_up_error() {
    let folder = SchemaFolder::copy_of_repo();
    folder.write("survey-completed.json", "{\"x-cxone-events\": [\"survey.completed\"]}");
    let good = SchemaFolder::copy_of_repo();
    let run = |args: &[&str], env_dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cxone-ingest"))
            .args(args)
            .env_clear()
            .env("CXONE_INGEST_WEBHOOK_SECRET", E2E_SECRET)
            .env("CXONE_INGEST_KAFKA_BROKERS", "127.0.0.1:1")
            .env("CXONE_INGEST_S3_BUCKET", "b")
            .env("CXONE_INGEST_LISTEN", "127.0.0.1:0")
            .env("CXONE_INGEST_ADMIN_LISTEN", "127.0.0.1:0")
            .env("CXONE_INGEST_SCHEMAS_DIR", env_dir)
            .output()
            .expect("run cxone-ingest")
    };
    let broken = folder.path().to_str().unwrap();
    for (args, code) in [(vec!["config", "check"], 1), (vec!["serve"], 2)] {
        let output = run(&args, folder.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains("contract.schemas_dir")
                && stderr.contains("survey-completed.json")
                && stderr.contains("$id"),
            "{args:?} names the key, the file and the problem: {stderr}"
        );
    }
    // The flag beats the environment: a good folder by flag, the broken one by env, passes.
    let flagged = run(&["config", "check", "--schemas", good.path().to_str().unwrap()], Path::new(broken));
    let stdout = String::from_utf8_lossy(&flagged.stdout);
    assert_eq!(flagged.status.code(), Some(0), "{}", String::from_utf8_lossy(&flagged.stderr));
    assert!(stdout.contains(&format!("schemas_dir = {:?}", good.path().display().to_string())), "{stdout}");
}

/// `replay` judges each dead letter by the schemas of the source it came in through: two sources'
/// letters of the same payload (refused by both folders when sent), one source's folder then
/// accepting it: only that source's letter is now valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_judges_each_dead_letter_by_its_sources_schemas() {
    let brokers = stack_kafka_brokers();
    let (east, west) = (SchemaFolder::copy_of_repo(), SchemaFolder::copy_of_repo());
    let sources = format!(
        "[[sources]]\nname = \"east\"\npath = \"/in/east\"\nschemas_dir = {:?}\n[sources.bearer]\nbearer_tokens = [\"{EAST_TOKEN}\"]\n\n\
         [[sources]]\nname = \"west\"\npath = \"/in/west\"\nschemas_dir = {:?}\n[sources.bearer]\nbearer_tokens = [\"{WEST_TOKEN}\"]\n",
        east.path().display().to_string(),
        west.path().display().to_string(),
    );
    let mut options = ServiceOptions::new("reload-replay", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    options.extra_toml = sources.clone();
    let service = Service::start_ready(options.clone()).await;
    for (path, token) in [("/in/east", EAST_TOKEN), ("/in/west", WEST_TOKEN)] {
        let (status, answer) =
            post_bearer(&service, path, token, body_with_source_system(&unique("reload-replay"))).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("dead_lettered")), "{path}: {answer}");
    }
    let letters = poll_until(Duration::from_secs(30), || async {
        let letters = e2e_dead_letters(&options.s3_prefix).await;
        (letters.len() == 2).then_some(letters)
    })
    .await
    .expect("both dead letters");
    drop(service);

    // West's folder now accepts the payload; east's does not.
    west.write(INTERACTION_FILE, &interaction_schema("1.1.0", true));
    let config = cxone_ingest::config::Config::from_toml(&sources).expect("config");
    let schemas = cxone_ingest::contract::Schemas::load(&config).expect("schemas");
    let replay_options = cxone_ingest::replay::ReplayOptions {
        since: None,
        until: None,
        dry_run: true,
        concurrency: 2,
        publish_timeout: Duration::from_secs(5),
    };
    let store = stack_dead_letter_store(&options.s3_prefix);
    let summary =
        cxone_ingest::replay::replay(&store, &schemas, None, &replay_options, &|_| {}).await.expect("replay");
    assert_eq!((summary.scanned, summary.now_valid, summary.still_invalid.len()), (2, 1, 1), "{summary:?}");
    let letter_of = |id: &str| {
        let object = id.split('#').next().unwrap_or(id);
        letters
            .iter()
            .find(|letter| letter.key.ends_with(object) || object.ends_with(&letter.key))
            .expect("letter")
    };
    assert_eq!(letter_of(&summary.replayable[0].key).record["source"], "west", "{summary:?}");
    assert_eq!(letter_of(&summary.still_invalid[0].key).record["source"], "east", "{summary:?}");

    // `replay --schemas DIR` judges every dead letter by DIR, east's included.
    let config_file = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config_file.path(), &sources).expect("write config");
    let (id, secret) = stack_s3_credentials();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cxone-ingest"))
        .args(["replay", "--dry-run", "--config"])
        .arg(config_file.path())
        .arg("--schemas")
        .arg(west.path())
        .args(["--s3-endpoint", &stack_s3_endpoint(), "--s3-bucket", &stack_s3_bucket()])
        .args(["--s3-prefix", &options.s3_prefix, "--kafka-brokers", &brokers])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", stack_s3_region())
        .env_remove("CXONE_INGEST_CONFIG")
        .env_remove("CXONE_INGEST_SCHEMAS_DIR")
        .output()
        .expect("run cxone-ingest replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert_eq!((printed["scanned"].as_u64(), printed["now_valid"].as_u64()), (Some(2), Some(2)), "{printed}");
}
