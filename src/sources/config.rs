//! `[[sources]]`: one table per webhook source (who may post, where, and where its records go), as
//! documented data with named defaults, and the checks that refuse a source the server cannot run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::http::config::{Secret, SignatureConfig};

/// Shortest bearer token accepted, in bytes (as long as an HMAC-SHA256 key: not guessable).
pub const MIN_TOKEN_LEN: usize = 32;
/// Shortest Basic password accepted, in bytes.
pub const MIN_PASSWORD_LEN: usize = 16;
/// Shortest HS256 JWT key accepted, in bytes (RFC 7518 3.2: at least the hash output).
pub const MIN_JWT_KEY_LEN: usize = 32;

/// One `[[sources]]` table: a sender (a business unit, a kind of CXone sender) with its own path,
/// credentials, topic and dead-letter prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `[a-z0-9-]{1,32}`: the `source` label of metrics, the `source` Kafka header and dead-letter
    /// field, and the logs' `source` field.
    pub name: String,
    /// The path this source posts to (unique among sources; not `/healthz`, `/readyz`, `/metrics`).
    pub path: String,
    /// Topic for this source's valid events (all its event types); default `kafka.topic`
    /// (with `kafka.topics` routing by event type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Key prefix for this source's dead letters; default `dead_letter.prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_prefix: Option<String>,
    /// Header carrying the sender's delivery id, kept in the Kafka headers and dead letters;
    /// `""` ignores it.
    #[serde(default = "default_delivery_id_header")]
    pub delivery_id_header: String,
    /// Header carrying the event type the sender declares; a valid payload whose `event` differs
    /// is dead-lettered (`event_type_mismatch`). `""` ignores it.
    #[serde(default = "default_event_type_header")]
    pub event_type_header: String,
    /// Folder of event schemas this source's payloads are judged by (loaded once however many
    /// sources name it, reloaded like `contract.schemas_dir`); default `contract.schemas_dir`, and
    /// without that the built-in schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas_dir: Option<PathBuf>,
    /// HMAC signature over the raw body: today's `[signature]` keys, plus `preset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureConfig>,
    /// Static bearer tokens (`Authorization: Bearer <token>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerConfig>,
    /// Basic credentials (`Authorization: Basic base64(user:password)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicConfig>,
    /// A JWT in `Authorization: Bearer <jwt>`, checked with a shared or public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
}

/// NICE's delivery-id header.
pub fn default_delivery_id_header() -> String {
    "X-Nexus-Delivery-Id".to_owned()
}

/// NICE's event-type header.
pub fn default_event_type_header() -> String {
    "X-Nexus-Event-Type".to_owned()
}

/// `[sources.bearer]`: any one of the tokens passes (rotation: add the new one, switch the sender,
/// remove the old one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BearerConfig {
    /// Files holding one token each (surrounding whitespace ignored), e.g. mounted Kubernetes
    /// secrets; re-read when they change.
    pub bearer_token_files: Vec<PathBuf>,
    /// Inline tokens, for local use only.
    pub bearer_tokens: Vec<Secret>,
}

/// `[sources.basic]`: any one of the `user:password` pairs passes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicConfig {
    /// Files holding one `user:password` pair each; re-read when they change.
    pub credential_files: Vec<PathBuf>,
    /// Inline `user:password` pairs, for local use only.
    pub credentials: Vec<Secret>,
}

/// The JWT signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared key.
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256, checked with a PEM public key.
    RS256,
    /// ECDSA P-256 SHA-256, checked with a PEM public key.
    ES256,
}

/// `[sources.jwt]`: the token in `Authorization: Bearer` must be signed by one of the keys with
/// `algorithm`, carry `exp` (and pass `nbf` when present), and match `issuer`/`audience` when set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The one algorithm accepted (the token's `alg` header must say it).
    pub algorithm: JwtAlgorithm,
    /// Key files: the shared key (HS256, surrounding whitespace ignored) or a PEM public key
    /// (RS256/ES256); several for rotation; re-read when they change.
    #[serde(default)]
    pub key_files: Vec<PathBuf>,
    /// Inline HS256 keys, for local use only.
    #[serde(default)]
    pub keys: Vec<Secret>,
    /// Required `iss`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_jwt_leeway_secs")]
    pub leeway_secs: u64,
}

/// 30 s: clocks of a sender and a pod drift by seconds, not minutes.
pub fn default_jwt_leeway_secs() -> u64 {
    30
}

/// Whether `name` is a usable source name: `[a-z0-9-]{1,32}`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl SourceConfig {
    /// The single source of a configuration without `[[sources]]`: `default`, at `server.path`,
    /// with `[signature]` (its file secrets split back out so they are re-read when they change).
    pub fn legacy(path: &str, signature: &SignatureConfig) -> SourceConfig {
        let mut signature = signature.clone();
        let inline = signature.secrets.len().saturating_sub(signature.secret_files.len());
        signature.secrets.truncate(inline);
        SourceConfig {
            name: "default".to_owned(),
            path: path.to_owned(),
            topic: None,
            dead_letter_prefix: None,
            delivery_id_header: default_delivery_id_header(),
            event_type_header: default_event_type_header(),
            schemas_dir: None,
            signature: Some(signature),
            bearer: None,
            basic: None,
            jwt: None,
        }
    }

    /// Appends a message for every problem of this source's own settings (`key` names it,
    /// e.g. `sources[1]`); credentials are checked when they are read.
    pub fn check(&self, key: &str, problems: &mut Vec<String>) {
        if !valid_name(&self.name) {
            problems.push(format!(
                "{key}.name = {:?} is not a source name: use 1 to 32 of a-z, 0-9 and '-'",
                self.name
            ));
        }
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            problems.push(format!("{key}.path = {:?} must start with '/' and contain no spaces", self.path));
        } else if matches!(self.path.as_str(), "/" | "/healthz" | "/readyz" | "/metrics") {
            problems.push(format!(
                "{key}.path = {:?} clashes with a built-in endpoint: pick another path",
                self.path
            ));
        }
        if self.topic.as_deref().is_some_and(|topic| topic.trim().is_empty()) {
            problems.push(format!("{key}.topic is empty: remove it (kafka.topic is used) or name a topic"));
        }
        if self.schemas_dir.as_deref().is_some_and(|dir| dir.as_os_str().is_empty()) {
            problems.push(format!(
                "{key}.schemas_dir is empty: remove it (contract.schemas_dir is used) or name a folder"
            ));
        }
        if self.dead_letter_prefix.as_deref().is_some_and(|prefix| prefix.trim_matches('/').trim().is_empty())
        {
            problems.push(format!(
                "{key}.dead_letter_prefix is empty: remove it (dead_letter.prefix is used) or name a prefix"
            ));
        }
        for (header_key, header) in
            [("delivery_id_header", &self.delivery_id_header), ("event_type_header", &self.event_type_header)]
        {
            if !header.is_empty() && warp::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                problems.push(format!("{key}.{header_key} = {header:?} is not a valid HTTP header name"));
            }
        }
        let checks =
            [self.signature.is_some(), self.bearer.is_some(), self.basic.is_some(), self.jwt.is_some()];
        if !checks.contains(&true) {
            problems.push(format!(
                "{key} ({}) has no authentication: configure at least one of [{key}.signature], \
                 [{key}.bearer], [{key}.basic], [{key}.jwt]",
                self.name
            ));
        }
        let authorization = [self.bearer.is_some(), self.basic.is_some(), self.jwt.is_some()];
        if authorization.iter().filter(|set| **set).count() > 1 {
            problems.push(format!(
                "{key} ({}) configures more than one of bearer, basic and jwt: they all read the one \
                 Authorization header, so keep one",
                self.name
            ));
        }
    }
}
