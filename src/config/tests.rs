//! Tests of `config` (kept apart so the module itself stays short).

use super::*;
use std::time::Duration;

use crate::http::config::{MIN_SECRET_LEN, REDACTED};

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
}

/// Secrets of the minimum length (32 bytes) and longer.
const SECRET: &str = "unit-test-webhook-secret-32-bytes";
const FILE_SECRET: &str = "secret-from-a-file-0123456789abcdef";

#[test]
fn defaults_plus_secret_env_is_valid() {
    let config = Config::load(&ConfigArgs::default(), env_of(&[(ENV_WEBHOOK_SECRET, SECRET)])).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.server.admin_listen, "127.0.0.1:9464".parse().unwrap());
    assert_eq!(config.server.header_read_timeout(), Duration::from_secs(10));
    assert_eq!(config.server.keep_alive_timeout(), Duration::from_secs(75));
    assert_eq!(config.server.max_connections, 10_000);
    assert_eq!(config.server.path, "/webhooks/cxone-data-actions");
    assert_eq!(config.server.body_limit_bytes, 1024 * 1024);
    assert_eq!(config.kafka.topic, "cxone.validated.events");
    assert_eq!(config.dead_letter.prefix, "data-actions/errors");
    assert_eq!(config.dead_letter.endpoint, None);
    assert_eq!(config.signature.secrets, vec![Secret::new(SECRET)]);
}

#[test]
fn missing_secret_says_what_to_set() {
    let err = Config::load(&ConfigArgs::default(), env_of(&[])).unwrap_err().to_string();
    assert!(
        err.contains("signature.secrets is empty: set CXONE_INGEST_WEBHOOK_SECRET or signature.secret_files"),
        "{err}"
    );
}

#[test]
fn env_beats_file_and_flags_beat_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:1000\"\n[kafka]\nbrokers = \"file:9092\"\ntopic = \"file-topic\"\n\
         [signature]\nsecrets = [\"old-secret-0123456789abcdef0123456789\", \
         \"new-secret-0123456789abcdef0123456789\"]\n",
    )
    .unwrap();
    let mut args = ConfigArgs {
        listen: Some("0.0.0.0:3000".into()),
        admin_listen: Some("127.0.0.1:3001".into()),
        ..ConfigArgs::with_file(file)
    };
    args.location.kafka_topic = Some("flag-topic".into());
    let config = Config::load(
        &args,
        env_of(&[
            (ENV_LISTEN, "127.0.0.1:2000"),
            (ENV_ADMIN_LISTEN, "127.0.0.1:2001"),
            (ENV_KAFKA_BROKERS, "env:9092"),
            (ENV_KAFKA_TOPIC, "env-topic"),
            (ENV_S3_ENDPOINT, "http://127.0.0.1:13900"),
            (ENV_S3_BUCKET, "env-bucket"),
            (ENV_S3_PREFIX, "env/prefix"),
            (ENV_KAFKA_SASL_PASSWORD, "from-a-secret"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:3000".parse().unwrap());
    assert_eq!(config.server.admin_listen, "127.0.0.1:3001".parse().unwrap());
    assert_eq!(config.kafka.brokers, "env:9092");
    assert_eq!(config.kafka.topic, "flag-topic");
    assert_eq!(config.dead_letter.endpoint.as_deref(), Some("http://127.0.0.1:13900"));
    assert_eq!(config.dead_letter.bucket, "env-bucket");
    assert_eq!(config.dead_letter.prefix, "env/prefix");
    assert_eq!(config.kafka.client.0["sasl.password"], "from-a-secret");
    assert!(!format!("{config:?} {}", config.to_redacted_toml()).contains("from-a-secret"));
    assert_eq!(config.signature.secrets.len(), 2, "the file's rotation list stays without the env secret");
}

#[test]
fn secret_files_are_read_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{FILE_SECRET}\n")).unwrap();
    let config_file = dir.path().join("c.toml");
    std::fs::write(&config_file, format!("[signature]\nsecret_files = [{:?}]\n", file.display().to_string()))
        .unwrap();
    let args = ConfigArgs::with_file(config_file);
    let config = Config::load(&args, env_of(&[(ENV_WEBHOOK_SECRET, SECRET)])).unwrap();
    assert_eq!(config.signature.secrets, vec![Secret::new(SECRET), Secret::new(FILE_SECRET)]);
    let printed = format!("{} {:?}", config.to_redacted_toml(), config);
    assert!(!printed.contains(SECRET) && !printed.contains(FILE_SECRET), "{printed}");
    assert!(printed.contains(REDACTED));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[server]\npath = \"nope\"\nbody_limit_bytes = 0\nrequest_deadline_ms = 60000\n\
                [signature]\nheader = \"bad header\"\nsecret_files = [\"/nonexistent/secret\"]\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let args = ConfigArgs { listen: Some("localhost".into()), ..ConfigArgs::with_file(file) };
    let ConfigError::Invalid { problems } = Config::load(&args, env_of(&[])).unwrap_err() else {
        panic!("expected Invalid")
    };
    let all = problems.join("\n");
    for needle in [
        "--listen",
        "server.path",
        "server.body_limit_bytes",
        "server.request_deadline_ms",
        "signature.header",
        "signature.secret_files[0]",
        "signature.secrets is empty",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn the_example_config_parses_and_is_valid_with_a_secret() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let args = ConfigArgs::with_file(path);
    let config = Config::load(&args, env_of(&[(ENV_WEBHOOK_SECRET, SECRET)])).unwrap();
    let defaults = ServerConfig::default();
    assert_eq!(config.server.listen, defaults.listen);
    assert_eq!(config.server.admin_listen, defaults.admin_listen);
    assert_eq!(config.server.header_read_timeout_ms, defaults.header_read_timeout_ms);
    assert_eq!(config.server.keep_alive_timeout_ms, defaults.keep_alive_timeout_ms);
    assert_eq!(config.server.max_connections, defaults.max_connections);
    assert_eq!(config.server.body_limit_bytes, defaults.body_limit_bytes);
    assert_eq!(config.server.request_deadline_ms, defaults.request_deadline_ms);
    assert_eq!(config.server.drain_timeout_ms, defaults.drain_timeout_ms);
    assert_eq!(config.server.pre_stop_delay_ms, defaults.pre_stop_delay_ms);
    assert_eq!(config.server.body_read_timeout_ms, defaults.body_read_timeout_ms);
    assert_eq!(config.server.max_unverified_bodies, defaults.max_unverified_bodies);
    assert_eq!(config.server.max_reported_errors, defaults.max_reported_errors);
    assert_eq!(config.dedupe.window_secs, crate::dedupe::config::default_window_secs());
}

#[test]
fn short_secrets_are_refused_naming_where_they_came_from() {
    // 31 bytes from the environment: refused, and the message names the variable, not a value.
    let short = "0123456789abcdef0123456789abcde";
    assert_eq!(short.len(), MIN_SECRET_LEN - 1);
    let env = move |key: &str| (key == ENV_WEBHOOK_SECRET).then(|| short.to_owned());
    let err = Config::load(&ConfigArgs::default(), env).unwrap_err().to_string();
    assert!(
        err.contains("CXONE_INGEST_WEBHOOK_SECRET is 31 bytes long") && err.contains("at least 32 bytes"),
        "{err}"
    );
    assert!(err.contains("openssl rand -hex 32"), "the message says how to make one: {err}");
    assert!(!err.contains(short), "the secret itself is never printed: {err}");

    // Exactly the minimum passes.
    let exact = "0123456789abcdef0123456789abcdef";
    let env = move |key: &str| (key == ENV_WEBHOOK_SECRET).then(|| exact.to_owned());
    assert!(Config::load(&ConfigArgs::default(), env).is_ok());

    // From the file's list and from a secret file: each named by its key.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "too-short\n").unwrap();
    let config_file = dir.path().join("c.toml");
    std::fs::write(
        &config_file,
        format!(
            "[signature]\nsecrets = [{SECRET:?}, \"short\"]\nsecret_files = [{:?}]\n",
            secret_file.display().to_string()
        ),
    )
    .unwrap();
    let args = ConfigArgs::with_file(config_file);
    let ConfigError::Invalid { problems } = Config::load(&args, env_of(&[])).unwrap_err() else {
        panic!("expected Invalid")
    };
    let all = problems.join("\n");
    assert_eq!(problems.len(), 2, "{all}");
    assert!(all.contains("signature.secrets[1] is 5 bytes long"), "{all}");
    assert!(all.contains("signature.secret_files[0] is 9 bytes long"), "{all}");
}

#[test]
fn connection_limits_and_the_admin_listener_are_checked() {
    let text = "[server]\nheader_read_timeout_ms = 0\nkeep_alive_timeout_ms = 99\nmax_connections = 0\n\
                listen = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let args = ConfigArgs::with_file(file);
    let ConfigError::Invalid { problems } =
        Config::load(&args, env_of(&[(ENV_WEBHOOK_SECRET, SECRET)])).unwrap_err()
    else {
        panic!("expected Invalid")
    };
    let all = problems.join("\n");
    for needle in [
        "server.header_read_timeout_ms = 0",
        "server.keep_alive_timeout_ms = 99",
        "server.max_connections = 0",
        "server.admin_listen = 127.0.0.1:8080 is the same as server.listen",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    let bad = Config::load(
        &ConfigArgs { admin_listen: Some("localhost:9464".into()), ..ConfigArgs::default() },
        env_of(&[(ENV_WEBHOOK_SECRET, SECRET)]),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("--admin-listen = \"localhost:9464\" is not an address:port"), "{bad}");
}

#[test]
fn unknown_keys_are_refused() {
    let err = Config::from_toml("[server]\nlisten_addr = \"1.2.3.4:5\"\n").unwrap_err();
    assert!(err.contains("listen_addr"), "{err}");
}

/// The bounds another replica's takeover of a claim relies on: a transaction timeout shorter
/// than the request deadline + the call timeout, or a dedupe window not longer than the
/// transaction timeout, is refused with the numbers that break it.
#[test]
fn settings_that_break_the_claim_takeover_bound_are_refused() {
    let load = |toml: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let args = ConfigArgs::with_file(path);
        Config::load(&args, env_of(&[(ENV_WEBHOOK_SECRET, SECRET)])).map(|_| ()).map_err(|e| e.to_string())
    };
    let err = load("[server]\nrequest_deadline_ms = 10000\n[kafka]\ncall_timeout_ms = 5000\ntransaction_timeout_ms = 5000\n")
        .unwrap_err();
    assert!(
        err.contains("kafka.transaction_timeout_ms (5000) must be at least server.request_deadline_ms (10000) + kafka.call_timeout_ms (5000) = 15000"),
        "{err}"
    );
    let err = load("[kafka]\ntransaction_timeout_ms = 60000\n[dedupe]\nwindow_secs = 60\n").unwrap_err();
    assert!(
        err.contains("dedupe.window_secs (60) must be longer than kafka.transaction_timeout_ms (60000 ms)"),
        "{err}"
    );
    load("[server]\nrequest_deadline_ms = 10000\n[kafka]\ncall_timeout_ms = 5000\ntransaction_timeout_ms = 15000\n[dedupe]\nwindow_secs = 16\n")
        .unwrap();
}

/// `contract.schemas_dir`: flag beats environment beats file; an empty environment value means
/// the built-in set; a source's own folder is kept as configured.
#[test]
fn schemas_dir_flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[contract]\nschemas_dir = \"/from/file\"\nwatch = false\n").unwrap();
    let with_file = ConfigArgs::with_file(file.clone());
    let load = |args: &ConfigArgs, env: &[(&'static str, &'static str)]| {
        Config::load(args, env_of(Box::leak(env.to_vec().into_boxed_slice()))).unwrap().contract
    };
    let secret = (ENV_WEBHOOK_SECRET, SECRET);
    assert_eq!(load(&with_file, &[secret]).schemas_dir, Some(PathBuf::from("/from/file")));
    assert!(!load(&with_file, &[secret]).watch);
    assert_eq!(
        load(&with_file, &[secret, (ENV_SCHEMAS_DIR, "/from/env")]).schemas_dir,
        Some(PathBuf::from("/from/env"))
    );
    assert_eq!(load(&with_file, &[secret, (ENV_SCHEMAS_DIR, "")]).schemas_dir, None, "empty: built-in");
    let flagged = ConfigArgs { schemas_dir: Some("/from/flag".into()), ..with_file };
    assert_eq!(
        load(&flagged, &[secret, (ENV_SCHEMAS_DIR, "/from/env")]).schemas_dir,
        Some(PathBuf::from("/from/flag"))
    );
    let defaults = load(&ConfigArgs::default(), &[secret]);
    assert_eq!(defaults, crate::contract::ContractConfig::default());
    assert!(defaults.watch && defaults.reload_debounce_ms == 500 && defaults.schemas_dir.is_none());
    let err = Config::from_toml("[contract]\nschema_dir = \"/x\"\n").unwrap_err();
    assert!(err.contains("unknown field `schema_dir`"), "{err}");
}
