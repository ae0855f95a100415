//! The token manager: one cached client-credentials token, refreshed before expiry by exactly one caller at a time.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::CxoneError;
use super::config::{ClientSecret, CxoneConfig};
use crate::metrics as m;

/// How long a token lives when CXone's answer has no `expires_in` (the seed's assumption).
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// How much of CXone's response text an error keeps.
const MAX_ERROR_BODY_CHARS: usize = 512;

/// A bearer token from CXone. Debug shows everything but the token itself.
#[derive(Clone)]
pub struct AccessToken {
    /// The bearer token; only [`AccessToken::secret`] hands it out.
    secret: String,
    /// `token_type` from CXone, normally `Bearer`.
    token_type: String,
    /// The scopes CXone granted, when it says.
    scope: Option<String>,
    /// Wall-clock expiry, for people (`cxone token` prints it).
    expires_at: DateTime<Utc>,
    /// Monotonic expiry, for decisions (immune to clock steps).
    expires_at_instant: Instant,
}

impl AccessToken {
    /// The token itself, for an `Authorization` header. Do not log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `token_type` as CXone sent it (normally `Bearer`).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The scopes CXone granted, if its answer listed them.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When CXone says the token expires (measured from when the request was sent, so slightly early).
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// How much longer the token is valid (zero once expired), on the monotonic clock.
    pub fn valid_for(&self) -> Duration {
        self.expires_at_instant.saturating_duration_since(Instant::now())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Fetches CXone tokens with the client-credentials grant and caches one. Share it (`Arc<TokenManager>`):
/// concurrent [`TokenManager::token`] calls that find no fresh token wait for a single request and all get its
/// result, success or error.
pub struct TokenManager {
    /// reqwest client carrying the per-request timeout.
    http: reqwest::Client,
    /// Where to POST the form.
    token_url: String,
    /// `client_id` form field.
    client_id: String,
    /// `client_secret` form field; also scrubbed from any text an error carries.
    client_secret: ClientSecret,
    /// `scope` form field.
    scope: String,
    /// Timeout, safety buffer, retry budget and backoff.
    config: CxoneConfig,
    /// The cache and the last failure; held across a refresh, which is what makes the refresh single-flight.
    state: Mutex<State>,
}

/// What the manager remembers between calls.
#[derive(Default)]
struct State {
    /// The last token fetched.
    current: Option<Cached>,
    /// The last refresh that failed, so that callers who waited on it share its error instead of retrying in turn.
    last_failure: Option<Failure>,
}

/// A token and when to stop handing it out.
struct Cached {
    /// The token.
    token: AccessToken,
    /// From here on, callers trigger a refresh: expiry minus the safety buffer (at least half the lifetime).
    refresh_at: Instant,
    /// When the refresh that produced it finished.
    fetched_at: Instant,
}

/// A failed refresh.
struct Failure {
    /// When it finished.
    at: Instant,
    /// Why.
    error: CxoneError,
}

/// CXone's token response (RFC 6749 §5.1); unknown fields such as `id_token` are ignored.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
}

impl TokenManager {
    /// Checks the config (URL, client id, secret from field or file) and builds the HTTP client. No request yet.
    pub fn new(config: &CxoneConfig) -> Result<Self, CxoneError> {
        config.validate()?;
        let timeout = config.timeout();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("cxone-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                CxoneError::Config(format!("cannot build the HTTP client: {}", error_chain(&err)))
            })?;
        Ok(TokenManager {
            http,
            token_url: config.resolved_token_url()?,
            client_id: config.client_id.trim().to_owned(),
            client_secret: config.resolved_client_secret()?,
            scope: config.scope.clone(),
            config: config.clone(),
            state: Mutex::new(State::default()),
        })
    }

    /// The token endpoint this manager asks.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// A token valid for at least the safety buffer (or half its lifetime): the cached one, or a fresh one.
    /// Callers arriving while a refresh runs wait for it and share its result; none starts a second request.
    pub async fn token(&self) -> Result<AccessToken, CxoneError> {
        let asked_at = Instant::now();
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(cached) = &state.current {
            let fresh = now < cached.refresh_at;
            // A refresh that finished while we waited for the lock is ours too, even if the token is short-lived.
            let refreshed_for_us = cached.fetched_at >= asked_at && now < cached.token.expires_at_instant;
            if fresh || refreshed_for_us {
                return Ok(cached.token.clone());
            }
        }
        if let Some(failure) = &state.last_failure
            && failure.at >= asked_at
        {
            return Err(failure.error.clone());
        }
        match self.fetch_with_retries().await {
            Ok((token, refresh_at)) => {
                let fetched_at = Instant::now();
                state.current = Some(Cached { token: token.clone(), refresh_at, fetched_at });
                state.last_failure = None;
                Ok(token)
            }
            Err(error) => {
                state.last_failure = Some(Failure { at: Instant::now(), error: error.clone() });
                Err(error)
            }
        }
    }

    /// One refresh: the first attempt plus up to `max_retries` retries of retryable failures, with backoff.
    async fn fetch_with_retries(&self) -> Result<(AccessToken, Instant), CxoneError> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let started = Instant::now();
            let result = self.fetch_once().await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(error) => error.outcome(),
            };
            metrics::counter!(m::CXONE_TOKEN_REQUESTS, "outcome" => outcome).increment(1);
            metrics::histogram!(m::CXONE_TOKEN_REQUEST_DURATION, "outcome" => outcome)
                .record(started.elapsed());
            match result {
                Ok((token, refresh_at)) => {
                    tracing::info!(
                        token_url = %self.token_url,
                        attempts,
                        valid_for_secs = token.valid_for().as_secs(),
                        "fetched a CXone access token"
                    );
                    return Ok((token, refresh_at));
                }
                Err(error) if error.is_retryable() && attempts <= self.config.max_retries => {
                    let wait = self.config.retry_backoff(attempts);
                    tracing::warn!(%error, attempts, retry_in_ms = wait.as_millis() as u64, "CXone token request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(error) if error.is_retryable() && attempts > 1 => {
                    return Err(CxoneError::GaveUp { attempts, last: Box::new(error) });
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One form POST to the token endpoint, classified; a token comes with the instant to refresh it.
    async fn fetch_once(&self) -> Result<(AccessToken, Instant), CxoneError> {
        let sent_at = Instant::now();
        let sent_at_utc = Utc::now();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        let body = response.text().await.map_err(|err| self.transport_error(&err))?;
        let url = self.token_url.clone();
        if status.is_server_error() {
            return Err(CxoneError::ServerError { url, status: status.as_u16(), body: self.excerpt(&body) });
        }
        if !status.is_success() {
            return Err(CxoneError::Rejected { url, status: status.as_u16(), body: self.excerpt(&body) });
        }
        let invalid = |reason: String| CxoneError::InvalidResponse {
            url: url.clone(),
            status: status.as_u16(),
            reason,
        };
        let parsed: TokenResponse = serde_json::from_str(&body)
            .map_err(|err| invalid(format!("{err}; body: {}", self.excerpt(&body))))?;
        if parsed.access_token.is_empty() {
            return Err(invalid("access_token is empty".to_owned()));
        }
        let lifetime = match &parsed.expires_in {
            None | Some(serde_json::Value::Null) => DEFAULT_EXPIRES_IN,
            Some(value) => parse_expires_in(value)
                .ok_or_else(|| invalid(format!("expires_in is not a number of seconds: {value}")))?,
        };
        let expires_at = chrono::Duration::from_std(lifetime)
            .ok()
            .and_then(|lifetime| sent_at_utc.checked_add_signed(lifetime))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let expires_at_instant = sent_at.checked_add(lifetime).unwrap_or(sent_at + DEFAULT_EXPIRES_IN);
        let refresh_at = sent_at
            .checked_add(refresh_after(lifetime, self.config.refresh_before_expiry()))
            .unwrap_or(expires_at_instant)
            .min(expires_at_instant);
        let token = AccessToken {
            secret: parsed.access_token,
            token_type: parsed.token_type.unwrap_or_else(|| "Bearer".to_owned()),
            scope: parsed.scope,
            expires_at,
            expires_at_instant,
        };
        Ok((token, refresh_at))
    }

    /// A reqwest failure as `Timeout` or `Network`.
    fn transport_error(&self, err: &reqwest::Error) -> CxoneError {
        let url = self.token_url.clone();
        if err.is_timeout() {
            CxoneError::Timeout { url, after: self.config.timeout() }
        } else {
            CxoneError::Network { url, reason: scrub(&error_chain(err), &self.client_secret) }
        }
    }

    /// Response text fit for an error: secret scrubbed, truncated.
    fn excerpt(&self, body: &str) -> String {
        truncate(&scrub(body.trim(), &self.client_secret), MAX_ERROR_BODY_CHARS)
    }
}

/// How long after fetching to refresh: the lifetime minus the buffer, but never less than half the lifetime
/// (so a token that lives shorter than the buffer is still used, and refreshed well before it expires).
pub fn refresh_after(lifetime: Duration, buffer: Duration) -> Duration {
    lifetime.saturating_sub(buffer).max(lifetime / 2)
}

/// `expires_in` as seconds: a non-negative number, or a string holding one (some gateways quote it).
fn parse_expires_in(value: &serde_json::Value) -> Option<Duration> {
    let seconds = match value {
        serde_json::Value::Number(number) => number.as_f64()?,
        serde_json::Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` with the secret, raw or form-encoded (a server might echo the request), replaced by `[redacted]`.
fn scrub(text: &str, secret: &ClientSecret) -> String {
    let secret = secret.expose();
    if secret.is_empty() {
        return text.to_owned();
    }
    let mut scrubbed = text.replace(secret, "[redacted]");
    let encoded = form_urlencode(secret);
    if encoded != secret {
        scrubbed = scrubbed.replace(&encoded, "[redacted]");
    }
    scrubbed
}

/// `application/x-www-form-urlencoded` encoding of one value, as the request body carries it.
fn form_urlencode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => encoded.push(byte as char),
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// At most `max` characters of `text`, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_after_subtracts_the_buffer_but_keeps_half_the_lifetime() {
        let secs = Duration::from_secs;
        assert_eq!(refresh_after(secs(7200), secs(300)), secs(6900));
        assert_eq!(refresh_after(secs(400), secs(300)), secs(200));
        assert_eq!(refresh_after(secs(2), secs(300)), secs(1));
        assert_eq!(refresh_after(secs(0), secs(300)), secs(0));
    }

    #[test]
    fn scrub_removes_raw_and_form_encoded_secret() {
        let secret = ClientSecret::new("p@ss word/+");
        let text = "bad secret p@ss word/+ or p%40ss+word%2F%2B";
        let scrubbed = scrub(text, &secret);
        assert_eq!(scrubbed, "bad secret [redacted] or [redacted]");
    }

    #[test]
    fn truncate_cuts_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 2), "hi");
    }

    #[test]
    fn expires_in_accepts_numbers_and_numeric_strings() {
        assert_eq!(parse_expires_in(&serde_json::json!(7200)), Some(Duration::from_secs(7200)));
        assert_eq!(parse_expires_in(&serde_json::json!("60")), Some(Duration::from_secs(60)));
        assert_eq!(parse_expires_in(&serde_json::json!(-1)), None);
        assert_eq!(parse_expires_in(&serde_json::json!("soon")), None);
    }

    #[test]
    fn access_token_debug_redacts_the_token() {
        let token = AccessToken {
            secret: "eyJhbGciOi.secret".to_owned(),
            token_type: "Bearer".to_owned(),
            scope: None,
            expires_at: Utc::now(),
            expires_at_instant: Instant::now(),
        };
        let debug = format!("{token:?}");
        assert!(!debug.contains("eyJhbGciOi"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }
}
