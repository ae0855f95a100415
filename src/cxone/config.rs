//! `[cxone]` configuration: where and how to get a CXone OAuth token, as documented data with named defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::CxoneError;

/// The environment variables `CxoneConfig::overlay_env` reads, one per field it can set.
pub const ENV_ORG: &str = "CXONE_INGEST_CXONE_ORG";
/// See [`ENV_ORG`].
pub const ENV_TOKEN_URL: &str = "CXONE_INGEST_CXONE_TOKEN_URL";
/// See [`ENV_ORG`].
pub const ENV_CLIENT_ID: &str = "CXONE_INGEST_CXONE_CLIENT_ID";
/// See [`ENV_ORG`].
pub const ENV_CLIENT_SECRET: &str = "CXONE_INGEST_CXONE_CLIENT_SECRET";
/// See [`ENV_ORG`].
pub const ENV_CLIENT_SECRET_FILE: &str = "CXONE_INGEST_CXONE_CLIENT_SECRET_FILE";
/// See [`ENV_ORG`].
pub const ENV_SCOPE: &str = "CXONE_INGEST_CXONE_SCOPE";

/// `[cxone]` in the config file: the OAuth client-credentials grant against CXone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CxoneConfig {
    /// The CXone organisation (tenant) id; fills `{org}` in the default token URL. Env `CXONE_INGEST_CXONE_ORG`.
    pub org: String,
    /// Full token endpoint URL, overriding the `{org}` template (other regions, tests). Env `CXONE_INGEST_CXONE_TOKEN_URL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The OAuth client id of the confidential client. Env `CXONE_INGEST_CXONE_CLIENT_ID`.
    pub client_id: String,
    /// The OAuth client secret; prefer env `CXONE_INGEST_CXONE_CLIENT_SECRET` or `client_secret_file` over
    /// writing it into the file. Never printed: Debug and Serialize show `[redacted]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ClientSecret>,
    /// A file holding the client secret (e.g. a mounted Kubernetes secret); used when `client_secret` is unset.
    /// Trailing whitespace is ignored. Env `CXONE_INGEST_CXONE_CLIENT_SECRET_FILE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes requested; CXone rejects mismatched scopes. Env `CXONE_INGEST_CXONE_SCOPE`.
    pub scope: String,
    /// Time limit of one token request (connect + response), in seconds.
    pub timeout_secs: u64,
    /// Refresh a token this many seconds before CXone says it expires, so callers never hold an expired one.
    /// A token is always used for at least half its lifetime, so short-lived tokens are not refetched per call.
    pub refresh_before_expiry_secs: u64,
    /// How many times a failed token request is retried (5xx, timeout, network error; never 4xx).
    pub max_retries: u32,
    /// Wait before the first retry, in milliseconds; doubles per retry, capped at `MAX_RETRY_BACKOFF`.
    pub retry_backoff_ms: u64,
}

/// The longest wait between two retries, whatever `retry_backoff_ms` and the attempt number say.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(10);

impl Default for CxoneConfig {
    fn default() -> Self {
        CxoneConfig {
            org: default_org(),
            token_url: None,
            client_id: default_client_id(),
            client_secret: None,
            client_secret_file: None,
            scope: default_scope(),
            timeout_secs: default_timeout_secs(),
            refresh_before_expiry_secs: default_refresh_before_expiry_secs(),
            max_retries: default_max_retries(),
            retry_backoff_ms: default_retry_backoff_ms(),
        }
    }
}

/// No organisation: it must be configured before a token can be requested.
pub fn default_org() -> String {
    String::new()
}

/// No client: it must be configured before a token can be requested.
pub fn default_client_id() -> String {
    String::new()
}

/// The seed's scopes (Data Actions read/write, event streaming read).
pub fn default_scope() -> String {
    "data-actions:read data-actions:write event-streaming:read".to_owned()
}

/// The seed's 10 s request timeout.
pub fn default_timeout_secs() -> u64 {
    10
}

/// The seed's 5-minute safety buffer.
pub fn default_refresh_before_expiry_secs() -> u64 {
    300
}

/// Three retries: four attempts in all.
pub fn default_max_retries() -> u32 {
    3
}

/// 200 ms, 400 ms, 800 ms between the four attempts.
pub fn default_retry_backoff_ms() -> u64 {
    200
}

impl CxoneConfig {
    /// The token endpoint: `token_url` if set, else the seed's template filled with `org`.
    pub fn resolved_token_url(&self) -> Result<String, CxoneError> {
        if let Some(url) = self.token_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
            return Ok(url.to_owned());
        }
        let org = self.org.trim();
        if org.is_empty() {
            return Err(CxoneError::Config(format!(
                "cxone.org is empty: set {ENV_ORG} (or --org), or the full endpoint in cxone.token_url / {ENV_TOKEN_URL}"
            )));
        }
        Ok(format!("https://{org}.api.nice.incontact.com/oauth2/token"))
    }

    /// The client secret: `client_secret` if set, else the contents of `client_secret_file`.
    pub fn resolved_client_secret(&self) -> Result<ClientSecret, CxoneError> {
        if let Some(secret) = self.client_secret.as_ref().filter(|secret| !secret.expose().is_empty()) {
            return Ok(secret.clone());
        }
        let Some(path) = &self.client_secret_file else {
            return Err(CxoneError::Config(format!(
                "cxone.client_secret is not set: set {ENV_CLIENT_SECRET} or cxone.client_secret_file"
            )));
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            CxoneError::Config(format!("cannot read cxone.client_secret_file {}: {err}", path.display()))
        })?;
        let secret = text.trim_end();
        if secret.is_empty() {
            return Err(CxoneError::Config(format!("cxone.client_secret_file {} is empty", path.display())));
        }
        Ok(ClientSecret::new(secret))
    }

    /// Checks everything a token request needs, with a message that says which setting to fix.
    pub fn validate(&self) -> Result<(), CxoneError> {
        self.resolved_token_url()?;
        if self.client_id.trim().is_empty() {
            return Err(CxoneError::Config(format!(
                "cxone.client_id is empty: set {ENV_CLIENT_ID} or --client-id"
            )));
        }
        self.resolved_client_secret()?;
        if self.timeout_secs == 0 {
            return Err(CxoneError::Config("cxone.timeout_secs must be at least 1".to_owned()));
        }
        Ok(())
    }

    /// Overrides fields from the `CXONE_INGEST_CXONE_*` environment variables that are set and not empty.
    pub fn overlay_env(&mut self) {
        self.overlay(|name| std::env::var(name).ok());
    }

    /// [`Self::overlay_env`] with the variables looked up through `var` (testable without touching the process).
    pub fn overlay(&mut self, var: impl Fn(&str) -> Option<String>) {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        if let Some(org) = var(ENV_ORG) {
            self.org = org;
        }
        if let Some(url) = var(ENV_TOKEN_URL) {
            self.token_url = Some(url);
        }
        if let Some(id) = var(ENV_CLIENT_ID) {
            self.client_id = id;
        }
        if let Some(secret) = var(ENV_CLIENT_SECRET) {
            self.client_secret = Some(ClientSecret::new(secret));
        }
        if let Some(path) = var(ENV_CLIENT_SECRET_FILE) {
            self.client_secret_file = Some(PathBuf::from(path));
        }
        if let Some(scope) = var(ENV_SCOPE) {
            self.scope = scope;
        }
    }

    /// `timeout_secs` as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// `refresh_before_expiry_secs` as a `Duration`.
    pub fn refresh_before_expiry(&self) -> Duration {
        Duration::from_secs(self.refresh_before_expiry_secs)
    }

    /// The wait before retry number `retry` (1-based): `retry_backoff_ms * 2^(retry-1)`, capped.
    pub fn retry_backoff(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.saturating_sub(1)).unwrap_or(u64::MAX);
        Duration::from_millis(self.retry_backoff_ms.saturating_mul(factor)).min(MAX_RETRY_BACKOFF)
    }
}

/// The OAuth client secret. Its Debug and Serialize forms are `[redacted]`; only the token request sees it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret value.
    pub fn new(secret: impl Into<String>) -> Self {
        ClientSecret(secret.into())
    }

    /// The secret itself, for the token request body and for scrubbing it out of error text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for ClientSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_appears_in_debug_or_serialized_config() {
        let config = CxoneConfig {
            client_secret: Some(ClientSecret::new("hunter2-very-secret")),
            ..CxoneConfig::default()
        };
        let debug = format!("{config:?}");
        let toml = toml::to_string(&config).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        for text in [&debug, &toml, &json] {
            assert!(!text.contains("hunter2"), "secret leaked: {text}");
            assert!(text.contains("[redacted]"), "secret field missing: {text}");
        }
    }

    #[test]
    fn parses_documented_toml_and_rejects_unknown_fields() {
        let config: CxoneConfig = toml::from_str(
            "org = \"acme\"\nclient_id = \"id\"\nclient_secret = \"s3cret\"\ntimeout_secs = 5\n",
        )
        .unwrap();
        assert_eq!(config.org, "acme");
        assert_eq!(config.client_secret.as_ref().map(ClientSecret::expose), Some("s3cret"));
        assert_eq!(config.timeout_secs, 5);
        assert_eq!(config.scope, default_scope());
        assert_eq!(config.refresh_before_expiry_secs, 300);
        let unknown = toml::from_str::<CxoneConfig>("org = \"acme\"\nclinet_id = \"typo\"\n");
        assert!(unknown.unwrap_err().to_string().contains("clinet_id"));
    }

    #[test]
    fn token_url_defaults_to_the_org_template_and_can_be_overridden() {
        let mut config = CxoneConfig { org: "acme".to_owned(), ..CxoneConfig::default() };
        assert_eq!(config.resolved_token_url().unwrap(), "https://acme.api.nice.incontact.com/oauth2/token");
        config.token_url = Some("http://127.0.0.1:9/token".to_owned());
        assert_eq!(config.resolved_token_url().unwrap(), "http://127.0.0.1:9/token");
        let missing = CxoneConfig::default().resolved_token_url().unwrap_err().to_string();
        assert!(missing.contains(ENV_ORG), "{missing}");
    }

    #[test]
    fn client_secret_comes_from_the_field_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let mut config = CxoneConfig { client_secret_file: Some(path), ..CxoneConfig::default() };
        assert_eq!(config.resolved_client_secret().unwrap().expose(), "from-file");
        config.client_secret = Some(ClientSecret::new("from-field"));
        assert_eq!(config.resolved_client_secret().unwrap().expose(), "from-field");
        let missing = CxoneConfig::default().resolved_client_secret().unwrap_err().to_string();
        assert!(missing.contains(ENV_CLIENT_SECRET), "{missing}");
    }

    #[test]
    fn env_overlay_sets_only_present_non_empty_variables() {
        let mut config = CxoneConfig { org: "file-org".to_owned(), ..CxoneConfig::default() };
        config.overlay(|name| match name {
            ENV_CLIENT_ID => Some("env-id".to_owned()),
            ENV_CLIENT_SECRET => Some("env-secret".to_owned()),
            ENV_ORG => Some(String::new()),
            _ => None,
        });
        assert_eq!(config.org, "file-org");
        assert_eq!(config.client_id, "env-id");
        assert_eq!(config.client_secret.as_ref().map(ClientSecret::expose), Some("env-secret"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = CxoneConfig { retry_backoff_ms: 100, ..CxoneConfig::default() };
        assert_eq!(config.retry_backoff(1), Duration::from_millis(100));
        assert_eq!(config.retry_backoff(2), Duration::from_millis(200));
        assert_eq!(config.retry_backoff(3), Duration::from_millis(400));
        assert_eq!(config.retry_backoff(200), MAX_RETRY_BACKOFF);
    }
}
