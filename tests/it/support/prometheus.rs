//! A private Prometheus server (Debian's `prometheus` package, which scripts/install-stack
//! installs) scraping one service's admin listener, loaded with the project's alert rules in
//! time-compressed form, and its HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::e2e::free_loopback_port;
use super::{poll_until, stack_port_open};

/// The job name the rules and the dashboard select (`job="cxone-ingest"`), as the chart's
/// PodMonitor names it.
pub const SCRAPE_JOB: &str = "cxone-ingest";

/// How much faster the test's copy of the alert rules runs than the shipped file: every
/// duration in a range selector, `offset` and `for:` is divided by this (5m -> 10s).
pub const RULE_TIME_COMPRESSION: u64 = 30;

/// The alert rules shipped with the project (the chart's file; deploy/prometheus links to it).
pub fn shipped_rules_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/cxone-ingest.rules.yml")
}

/// The Prometheus server binary (`CXONE_STACK_PROMETHEUS_BIN`, else Debian's path).
pub fn prometheus_bin() -> PathBuf {
    std::env::var_os("CXONE_STACK_PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// `rules` with every duration of a range selector (`[5m]`), an `offset 1h` and a `for: 5m`
/// divided by `factor` (never below 1 s), so that alerts meant for minutes go pending, fire
/// and resolve within a test. Nothing else of the rules changes.
pub fn compress_rule_durations(rules: &str, factor: u64) -> String {
    let duration = regex::Regex::new(r"(\[|offset\s+|for:\s*)(\d+)(ms|s|m|h|d|w)\b").expect("regex");
    duration
        .replace_all(rules, |caps: &regex::Captures| {
            let value: u64 = caps[2].parse().expect("digits");
            let ms = value
                * match &caps[3] {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => 7 * 86_400_000,
                };
            format!("{}{}s", &caps[1], (ms / factor / 1_000).max(1))
        })
        .into_owned()
}

/// A Prometheus server on a free loopback port with its own data directory, scraping `target`
/// (host:port of an admin listener) every second and evaluating rules every second; killed on
/// drop.
pub struct PrivatePrometheus {
    child: Child,
    pub port: u16,
    log_path: PathBuf,
    /// Holds the config, the rules and the TSDB.
    _dir: tempfile::TempDir,
}

impl PrivatePrometheus {
    /// Starts the server with `rules` as its one rule file and waits until it is ready.
    pub async fn start(target: &str, rules: &str) -> PrivatePrometheus {
        let bin = prometheus_bin();
        assert!(
            bin.exists(),
            "this test needs the Prometheus server at {}: scripts/install-stack installs Debian's \
             prometheus package",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let rules_path = dir.path().join("rules.yml");
        std::fs::write(&rules_path, rules).expect("write rules");
        let config_path = dir.path().join("prometheus.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: {SCRAPE_JOB}\n    static_configs:\n      - targets: ['{target}']\n",
            rules_path.display()
        );
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_loopback_port();
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let server = PrivatePrometheus { child, port, log_path, _dir: dir };
        let client = super::e2e_client();
        let ready = poll_until(Duration::from_secs(30), || {
            let (client, url) = (client.clone(), server.url("/-/ready"));
            async move {
                if !stack_port_open(&format!("127.0.0.1:{port}")) {
                    return None;
                }
                let status = client.get(url).send().await.ok()?.status();
                status.is_success().then_some(())
            }
        })
        .await;
        assert!(ready.is_some(), "prometheus did not get ready:\n{}", server.log());
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `data` of an API answer; panics (with the server's error) when the call failed.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut url = reqwest::Url::parse(&self.url(path)).expect("url");
        url.query_pairs_mut().extend_pairs(query);
        let response =
            super::e2e_client().get(url).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(body["status"], "success", "GET {path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The instant vector of `query` now: each sample's labels and value.
    pub async fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let data = self.api("/api/v1/query", &[("query", query)]).await;
        assert_eq!(data["resultType"], "vector", "{query}: {data}");
        data["result"]
            .as_array()
            .map(|samples| {
                samples
                    .iter()
                    .map(|s| {
                        let value = s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                        (s["metric"].clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The sum of `query`'s samples now (`None` when it returned none).
    pub async fn query_sum(&self, query: &str) -> Option<f64> {
        let samples = self.query(query).await;
        (!samples.is_empty()).then(|| samples.iter().map(|(_, v)| v).sum())
    }

    /// The state of alert `name` now: `pending`, `firing`, or `None` when inactive.
    pub async fn alert_state(&self, name: &str) -> Option<String> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"].as_array().and_then(|alerts| {
            alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == name)
                .and_then(|a| a["state"].as_str().map(str::to_owned))
        })
    }

    /// The health of the scrape target (`up`, `down`, `unknown`).
    pub async fn target_health(&self) -> Option<String> {
        let data = self.api("/api/v1/targets", &[]).await;
        data["activeTargets"][0]["health"].as_str().map(str::to_owned)
    }

    /// Every rule that failed to evaluate (name and error); empty when all evaluate.
    pub async fn rule_errors(&self) -> Vec<String> {
        let data = self.api("/api/v1/rules", &[]).await;
        let mut errors = Vec::new();
        for group in data["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                if rule["health"] != "ok" && rule["health"] != "unknown" {
                    errors.push(format!("{}: {}", rule["name"], rule["lastError"]));
                }
            }
        }
        errors
    }
}

impl Drop for PrivatePrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
