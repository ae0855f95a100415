//! Kafka sink configuration: documented data with named defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::error::KafkaSinkError;

/// `[kafka]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`; env `CXONE_INGEST_KAFKA_BROKERS`.
    pub brokers: String,
    /// Default topic for every event type; env `CXONE_INGEST_KAFKA_TOPIC`.
    pub topic: String,
    /// Per-event-type routing (`event_type = "topic"`); event types not listed go to `topic`.
    pub topics: BTreeMap<String, String>,
    /// Create missing topics (with `auto_create_partitions` partitions and the broker's default
    /// replication) instead of reporting not-ready until someone creates them.
    pub auto_create_topics: bool,
    /// Partition count of topics created by `auto_create_topics`.
    pub auto_create_partitions: i32,
    /// First part of `transactional.id`; the instance id follows it. Two processes must never
    /// share a `transactional.id` (they fence each other), and a restarted process must reuse its
    /// own (so it fences its zombie): hence prefix + a stable per-replica id.
    pub transactional_id_prefix: String,
    /// Group committers, each with its own transactional producer: while one commits, the next
    /// gathers and sends its batch. Committer 0 uses `transactional_id_prefix` + instance id,
    /// committer *i* ≥ 1 the same followed by `#i`, so each is fenced on its own when the replica
    /// restarts. Lowering it leaves the dropped ids' open transactions (if any) to the broker's
    /// `transaction.timeout.ms`.
    pub committers: usize,
    /// Stable id of this replica (the pod name). Unset: env `POD_NAME`, then `HOSTNAME`, then the
    /// kernel's host name.
    pub instance_id: Option<String>,
    /// librdkafka `transaction.timeout.ms`: the broker aborts a transaction left open this long
    /// (a crashed replica's). Must not exceed the broker's `transaction.max.timeout.ms`.
    pub transaction_timeout_ms: u64,
    /// Upper bound on every blocking transactional call (init, begin, commit, abort) and on waiting
    /// for a batch's delivery reports. A commit not answered by then is not a failure: the
    /// committer calls it again (not ready meanwhile) until the broker answers or
    /// `transaction_timeout_ms` has passed, while the batch's requests get 503 and their retries
    /// wait for the outcome (docs/reliability.md).
    pub call_timeout_ms: u64,
    /// Most events in one transaction.
    pub batch_max_events: usize,
    /// Most payload bytes (key + value + headers) in one transaction.
    pub batch_max_bytes: usize,
    /// How long the first event of a batch waits for company before the transaction starts.
    /// Never past the earliest request deadline in the batch.
    pub linger_ms: u64,
    /// Events waiting for the committer; when full, `publish` answers overloaded (503) at once
    /// instead of growing memory.
    pub queue_capacity: usize,
    /// Extra librdkafka properties, passed through as-is (`security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `sasl.password`, `ssl.ca.location`, ...). Values of secret properties are
    /// redacted whenever the config is printed. The exactly-once properties (`transactional.id`,
    /// `enable.idempotence`, `acks`, `bootstrap.servers`, `transaction.timeout.ms`) are refused here.
    pub client: ClientProperties,
    /// The topics of the webhook sources (`[[sources]] topic`), filled in at load: checked (and
    /// created) with the others. Not a key of `[kafka]`.
    #[serde(skip)]
    pub source_topics: Vec<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            topic: default_topic(),
            topics: BTreeMap::new(),
            auto_create_topics: false,
            auto_create_partitions: default_auto_create_partitions(),
            transactional_id_prefix: default_transactional_id_prefix(),
            committers: default_committers(),
            instance_id: None,
            transaction_timeout_ms: default_transaction_timeout_ms(),
            call_timeout_ms: default_call_timeout_ms(),
            batch_max_events: default_batch_max_events(),
            batch_max_bytes: default_batch_max_bytes(),
            linger_ms: default_linger_ms(),
            queue_capacity: default_queue_capacity(),
            client: ClientProperties::default(),
            source_topics: Vec::new(),
        }
    }
}

/// The local stack's broker (`scripts/start-stack`).
pub fn default_brokers() -> String {
    "127.0.0.1:19092".to_owned()
}

/// The seed's topic name.
pub fn default_topic() -> String {
    "cxone.validated.events".to_owned()
}

/// Enough partitions for a few consumers; only used by `auto_create_topics`.
pub fn default_auto_create_partitions() -> i32 {
    3
}

/// `transactional.id` = this + instance id.
pub fn default_transactional_id_prefix() -> String {
    "cxone-ingest-".to_owned()
}

/// One: measured on the local broker (docs/performance.md), a second committer gained nothing at 64
/// connections and cost 19 % at 256, because the broker's time per record, not the round trips,
/// bounds a transaction there. More committers pay off where round trips dominate (a remote
/// cluster): raise it when `cxone_ingest_kafka_transaction_stage_seconds` shows the time in
/// `deliver`/`commit` while the broker is idle.
pub fn default_committers() -> usize {
    1
}

/// Most committers a replica may run (each is an OS thread and a broker connection set).
pub const MAX_COMMITTERS: usize = 16;

/// One minute: long enough for any batch, short enough that a crashed replica's open
/// transaction does not block `read_committed` readers for long.
pub fn default_transaction_timeout_ms() -> u64 {
    60_000
}

/// Five seconds: half the default request deadline.
pub fn default_call_timeout_ms() -> u64 {
    5_000
}

/// Measured: 1,000 events per transaction is where throughput flattens (docs/kafka.md).
pub fn default_batch_max_events() -> usize {
    1_000
}

/// 1 MiB of records per transaction. (This bounds a whole batch; one record is bounded by the
/// producer's `message.max.bytes`, librdkafka's default 1,000,000 bytes: see docs/kafka.md,
/// "Record size".)
pub fn default_batch_max_bytes() -> usize {
    1 << 20
}

/// 2 ms: a small price per request for batches under load.
pub fn default_linger_ms() -> u64 {
    2
}

/// Ten full batches.
pub fn default_queue_capacity() -> usize {
    10_000
}

/// Properties the sink sets itself because exactly-once depends on them.
const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transaction.timeout.ms",
];

impl KafkaConfig {
    /// Refuses what cannot work, with a message saying which setting to fix.
    pub fn validate(&self) -> Result<(), KafkaSinkError> {
        let fail = |msg: String| Err(KafkaSinkError::Config(msg));
        if self.brokers.trim().is_empty() {
            return fail("kafka.brokers is empty: set it to host:port[,host:port] of the cluster".into());
        }
        if self.topic.trim().is_empty() {
            return fail("kafka.topic is empty".into());
        }
        if let Some((event, _)) = self.topics.iter().find(|(_, t)| t.trim().is_empty()) {
            return fail(format!("kafka.topics.\"{event}\" is empty"));
        }
        for (key, value, high, default) in [
            ("batch_max_events", self.batch_max_events as u64, 100_000, "1000"),
            ("batch_max_bytes", self.batch_max_bytes as u64, 64 << 20, "1048576"),
            ("queue_capacity", self.queue_capacity as u64, 1_000_000, "10000"),
            ("linger_ms", self.linger_ms.max(1), 1_000, "2"),
            ("call_timeout_ms", self.call_timeout_ms, 300_000, "5000"),
            ("transaction_timeout_ms", self.transaction_timeout_ms, 900_000, "60000"),
        ] {
            if !(1..=high).contains(&value) {
                return fail(format!(
                    "kafka.{key} = {value} is out of range: use {} to {high} (default {default})",
                    if key == "linger_ms" { 0 } else { 1 }
                ));
            }
        }
        if self.committers == 0 || self.committers > MAX_COMMITTERS {
            return fail(format!(
                "kafka.committers = {} is out of range: use 1 to {MAX_COMMITTERS}",
                self.committers
            ));
        }
        if self.transaction_timeout_ms < self.call_timeout_ms {
            return fail(format!(
                "kafka.transaction_timeout_ms ({}) must be at least kafka.call_timeout_ms ({})",
                self.transaction_timeout_ms, self.call_timeout_ms
            ));
        }
        if self.auto_create_topics && !(1..=10_000).contains(&self.auto_create_partitions) {
            return fail(format!(
                "kafka.auto_create_partitions = {} is out of range: use 1 to 10000 (default 3)",
                self.auto_create_partitions
            ));
        }
        if let Some(key) = self.client.0.keys().find(|k| RESERVED_PROPERTIES.contains(&k.as_str())) {
            return fail(format!(
                "kafka.client.\"{key}\" is set by the sink itself (exactly-once depends on it); remove it"
            ));
        }
        if self.transactional_id().is_empty() {
            return fail("kafka.transactional_id_prefix and kafka.instance_id are both empty".into());
        }
        Ok(())
    }

    /// The topic an event type is published to.
    pub fn topic_for(&self, event_type: &str) -> &str {
        self.topics.get(event_type).map_or(self.topic.as_str(), String::as_str)
    }

    /// Every topic events can go to (checked when the broker becomes reachable).
    pub fn all_topics(&self) -> Vec<String> {
        let mut all: Vec<String> = self.topics.values().cloned().collect();
        all.push(self.topic.clone());
        all.extend(self.source_topics.iter().cloned());
        all.sort();
        all.dedup();
        all
    }

    /// `transactional.id`: prefix + the stable instance id.
    pub fn transactional_id(&self) -> String {
        format!("{}{}", self.transactional_id_prefix, self.resolved_instance_id())
    }

    /// The `transactional.id` of each committer: [`Self::transactional_id`] for the first,
    /// followed by `#1`, `#2`, ... for the others (`#` cannot appear in a pod name, so no other
    /// replica's id can collide with them).
    pub fn transactional_ids(&self) -> Vec<String> {
        let base = self.transactional_id();
        (0..self.committers.max(1))
            .map(|i| if i == 0 { base.clone() } else { format!("{base}#{i}") })
            .collect()
    }

    /// `instance_id`, else the pod name (`POD_NAME`, `HOSTNAME`), else the kernel's host name.
    pub fn resolved_instance_id(&self) -> String {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        self.instance_id
            .clone()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| from_env("POD_NAME"))
            .or_else(|| from_env("HOSTNAME"))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "localhost".to_owned())
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// `transaction_timeout_ms` as a duration.
    pub fn transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.transaction_timeout_ms)
    }

    pub(crate) fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

/// Pass-through librdkafka properties whose secret values never reach logs or printed config.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ClientProperties(pub BTreeMap<String, String>);

impl ClientProperties {
    /// Whether a property's value is a credential (`sasl.password`, `ssl.key.password`,
    /// `sasl.oauthbearer.client.secret`, `ssl.key.pem`, ...).
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        key.contains("password")
            || key.contains("secret")
            || key == "ssl.key.pem"
            || key == "sasl.oauthbearer.config"
            || key == "sasl.jaas.config"
    }

    /// The properties with secret values replaced by `<redacted>`.
    pub fn redacted(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| (k.as_str(), if Self::is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect()
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for ClientProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_serialize() {
        let cfg: KafkaConfig = toml::from_str(
            r#"
            [client]
            "security.protocol" = "SASL_SSL"
            "sasl.username" = "svc"
            "sasl.password" = "hunter2"
            "#,
        )
        .unwrap();
        let debug = format!("{cfg:?}");
        let json = serde_json::to_string(&cfg).unwrap();
        for printed in [&debug, &json] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
            assert!(printed.contains("SASL_SSL"), "{printed}");
        }
        assert_eq!(cfg.client.0["sasl.password"], "hunter2");
        cfg.validate().unwrap();
    }

    #[test]
    fn exactly_once_properties_cannot_be_overridden() {
        let mut cfg = KafkaConfig::default();
        cfg.client.0.insert("enable.idempotence".into(), "false".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("enable.idempotence"), "{err}");
    }

    #[test]
    fn routing_falls_back_to_the_default_topic() {
        let mut cfg = KafkaConfig::default();
        cfg.topics.insert("survey.scored".into(), "surveys".into());
        assert_eq!(cfg.topic_for("survey.scored"), "surveys");
        assert_eq!(cfg.topic_for("interaction.completed"), cfg.topic);
        assert_eq!(cfg.all_topics(), vec!["cxone.validated.events".to_owned(), "surveys".to_owned()]);
    }

    #[test]
    fn transactional_id_is_prefix_plus_instance() {
        let cfg = KafkaConfig { instance_id: Some("pod-7".into()), ..KafkaConfig::default() };
        assert_eq!(cfg.transactional_id(), "cxone-ingest-pod-7");
        let unnamed = KafkaConfig::default();
        assert!(unnamed.transactional_id().len() > "cxone-ingest-".len());
        let three = KafkaConfig { committers: 3, ..cfg };
        assert_eq!(
            three.transactional_ids(),
            vec!["cxone-ingest-pod-7", "cxone-ingest-pod-7#1", "cxone-ingest-pod-7#2"]
        );
    }

    #[test]
    fn committers_must_be_in_range() {
        for committers in [0, MAX_COMMITTERS + 1] {
            let err =
                KafkaConfig { committers, ..KafkaConfig::default() }.validate().unwrap_err().to_string();
            assert!(err.contains("kafka.committers"), "{err}");
        }
        KafkaConfig { committers: 1, ..KafkaConfig::default() }.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<KafkaConfig>("transactional_timeout_ms = 5").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
