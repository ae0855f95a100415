//! Webhook signature verification over the raw body, before anything is parsed.
//!
//! The scheme is configuration ([`SignatureConfig`]): header name, hex or base64, optional
//! prefix (`sha256=`), what is signed (`body` or `{timestamp}.{body}` with a tolerance window)
//! and several active secrets (rotation). The MAC is HMAC-SHA256, compared in constant time
//! (`Mac::verify_slice`). Keyed HMAC states are computed once and cloned per request, and the
//! header is decoded into a stack buffer: verification allocates nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use warp::http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{SignatureConfig, SignatureEncoding, SignedPayload};

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 tag is 32 bytes.
const TAG_LEN: usize = 32;
/// Longest header value worth decoding: hex of 32 bytes is 64 characters, base64 44; allow a prefix.
const MAX_SIGNATURE_LEN: usize = 128;

/// Why a request's signature was refused. Each maps to a metric label; the sender only sees 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header missing")]
    Missing,
    #[error("signature header sent more than once")]
    Repeated,
    #[error("signature header malformed")]
    Malformed,
    #[error("signature does not match any active secret")]
    Mismatch,
    #[error("timestamp header missing")]
    TimestampMissing,
    #[error("timestamp header sent more than once")]
    TimestampRepeated,
    #[error("timestamp header malformed")]
    TimestampMalformed,
    #[error("timestamp older than the tolerance window")]
    TimestampStale,
    #[error("timestamp ahead of the tolerance window")]
    TimestampFuture,
}

impl SignatureError {
    /// The metric label for this failure.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Repeated => "repeated",
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
            SignatureError::TimestampMissing => "timestamp_missing",
            SignatureError::TimestampRepeated => "timestamp_repeated",
            SignatureError::TimestampMalformed => "timestamp_malformed",
            SignatureError::TimestampStale => "timestamp_stale",
            SignatureError::TimestampFuture => "timestamp_future",
        }
    }
}

/// A passed check: which secret (by its position in the configured list) signed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub key_index: usize,
}

/// The replay window, when the scheme signs a timestamp.
#[derive(Debug, Clone)]
struct TimestampRule {
    /// Header carrying Unix seconds.
    header: HeaderName,
    /// Allowed distance from the server clock, either way.
    tolerance_secs: i64,
}

/// The configured scheme with its keys ready: build once, share, call [`Verifier::verify`] per request.
#[derive(Clone)]
pub struct Verifier {
    /// Header carrying the signature.
    header: HeaderName,
    /// How the tag is written.
    encoding: SignatureEncoding,
    /// Required text before the encoded tag (empty: none).
    prefix: Box<str>,
    /// Set when `{timestamp}.{body}` is signed.
    timestamp: Option<TimestampRule>,
    /// One keyed HMAC state per active secret, in configuration order.
    keys: Box<[HmacSha256]>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("timestamp", &self.timestamp)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    /// Prepares the scheme. Fails on what [`SignatureConfig::check`] also reports.
    pub fn new(config: &SignatureConfig) -> Result<Verifier, String> {
        let header = HeaderName::from_bytes(config.header.as_bytes())
            .map_err(|_| format!("signature.header = {:?} is not a valid HTTP header name", config.header))?;
        let timestamp = match config.signed {
            SignedPayload::Body => None,
            SignedPayload::TimestampDotBody => Some(TimestampRule {
                header: HeaderName::from_bytes(config.timestamp_header.as_bytes()).map_err(|_| {
                    format!(
                        "signature.timestamp_header = {:?} is not a valid HTTP header name",
                        config.timestamp_header
                    )
                })?,
                tolerance_secs: i64::try_from(config.timestamp_tolerance_secs).unwrap_or(i64::MAX),
            }),
        };
        if config.secrets.is_empty() {
            return Err("signature.secrets is empty".to_owned());
        }
        let keys = config
            .secrets
            .iter()
            .map(|secret| {
                HmacSha256::new_from_slice(secret.expose())
                    .map_err(|_| "a signature secret cannot key HMAC".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Verifier {
            header,
            encoding: config.encoding,
            prefix: config.prefix.clone().into_boxed_str(),
            timestamp,
            keys: keys.into_boxed_slice(),
        })
    }

    /// The header carrying the signature (never kept with dead letters).
    pub fn signature_header(&self) -> &HeaderName {
        &self.header
    }

    /// The header carrying the signed timestamp, when the scheme has one.
    pub fn timestamp_header(&self) -> Option<&HeaderName> {
        self.timestamp.as_ref().map(|rule| &rule.header)
    }

    /// Checks the request's signature over `body`; `now_unix` is the server clock in Unix seconds.
    ///
    /// A request carrying the signature header (or, when the scheme signs a timestamp, the
    /// timestamp header) more than once is refused before any of them is looked at: which copy
    /// a proxy or a later reader would pick is ambiguous, so none is trusted.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, SignatureError> {
        let signature = single(headers, &self.header, SignatureError::Missing, SignatureError::Repeated)?;
        let timestamp = match &self.timestamp {
            None => None,
            Some(rule) => Some((
                rule,
                single(
                    headers,
                    &rule.header,
                    SignatureError::TimestampMissing,
                    SignatureError::TimestampRepeated,
                )?,
            )),
        };
        let mut tag = [0u8; TAG_LEN + 16];
        let tag = self.decode(signature.as_bytes(), &mut tag)?;
        let timestamp = match timestamp {
            None => None,
            Some((rule, value)) => {
                let value = value.as_bytes();
                let sent = parse_unix_seconds(value).ok_or(SignatureError::TimestampMalformed)?;
                if now_unix.saturating_sub(sent) > rule.tolerance_secs {
                    return Err(SignatureError::TimestampStale);
                }
                if sent.saturating_sub(now_unix) > rule.tolerance_secs {
                    return Err(SignatureError::TimestampFuture);
                }
                Some(value)
            }
        };
        for (key_index, key) in self.keys.iter().enumerate() {
            let mut mac = key.clone();
            if let Some(timestamp) = timestamp {
                mac.update(timestamp);
                mac.update(b".");
            }
            mac.update(body);
            if mac.verify_slice(tag).is_ok() {
                return Ok(Verified { key_index });
            }
        }
        Err(SignatureError::Mismatch)
    }

    /// Strips the prefix and decodes the tag into `out`; anything but exactly 32 bytes is malformed.
    fn decode<'a>(&self, value: &[u8], out: &'a mut [u8; TAG_LEN + 16]) -> Result<&'a [u8], SignatureError> {
        let value = value.trim_ascii();
        let encoded = value.strip_prefix(self.prefix.as_bytes()).ok_or(SignatureError::Malformed)?;
        if encoded.is_empty() || encoded.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError::Malformed);
        }
        let len = match self.encoding {
            SignatureEncoding::Hex => {
                if encoded.len() != TAG_LEN * 2 {
                    return Err(SignatureError::Malformed);
                }
                hex::decode_to_slice(encoded, &mut out[..TAG_LEN]).map_err(|_| SignatureError::Malformed)?;
                TAG_LEN
            }
            SignatureEncoding::Base64 => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode_slice(encoded, &mut out[..])
                    .map_err(|_| SignatureError::Malformed)?
            }
        };
        if len != TAG_LEN {
            return Err(SignatureError::Malformed);
        }
        Ok(&out[..TAG_LEN])
    }
}

/// The one value of header `name`: `missing` when absent, `repeated` when sent more than once.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    missing: SignatureError,
    repeated: SignatureError,
) -> Result<&'a HeaderValue, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(missing)?;
    if values.next().is_some() {
        return Err(repeated);
    }
    Ok(first)
}

/// Parses a header value of ASCII digits (optionally with a leading '-') as Unix seconds.
fn parse_unix_seconds(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value.trim_ascii()).ok()?;
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.parse::<i64>().ok()
}

/// Seconds since the Unix epoch by the server clock.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Signs `body` the way a sender configured like `config` would, using the secret at `key_index`:
/// for tests, load generators and operators checking a setup. Returns the header value.
pub fn sign(
    config: &SignatureConfig,
    key_index: usize,
    body: &[u8],
    timestamp: Option<i64>,
) -> Option<String> {
    let secret = config.secrets.get(key_index)?;
    let mut mac = HmacSha256::new_from_slice(secret.expose()).ok()?;
    if config.signed == SignedPayload::TimestampDotBody {
        mac.update(timestamp?.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let encoded = match config.encoding {
        SignatureEncoding::Hex => hex::encode(tag),
        SignatureEncoding::Base64 => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(tag)
        }
    };
    Some(format!("{}{encoded}", config.prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::config::Secret;

    const BODY: &[u8] = br#"{"event":"interaction.completed"}"#;
    const NOW: i64 = 1_800_000_000;

    fn config(secrets: &[&str]) -> SignatureConfig {
        SignatureConfig {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            ..SignatureConfig::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn seed_scheme_accepts_its_own_signature_in_either_case() {
        let cfg = config(&["secret"]);
        let verifier = Verifier::new(&cfg).unwrap();
        let sig = sign(&cfg, 0, BODY, None).unwrap();
        assert_eq!(sig.len(), 64);
        let ok = verifier.verify(&headers(&[("x-cxone-signature", &sig)]), BODY, NOW);
        assert_eq!(ok, Ok(Verified { key_index: 0 }));
        let upper = sig.to_ascii_uppercase();
        assert!(verifier.verify(&headers(&[("X-CXone-Signature", &upper)]), BODY, NOW).is_ok());
    }

    #[test]
    fn malformed_forms_are_malformed_not_mismatch() {
        let cfg = config(&["secret"]);
        let verifier = Verifier::new(&cfg).unwrap();
        let sig = sign(&cfg, 0, BODY, None).unwrap();
        let cases = [
            "".to_owned(),
            "zz".repeat(32),
            sig[..63].to_owned(),
            format!("{sig}00"),
            format!("sha256={sig}"),
            "x".repeat(500),
        ];
        for value in cases {
            let result = verifier.verify(&headers(&[("x-cxone-signature", &value)]), BODY, NOW);
            assert_eq!(result, Err(SignatureError::Malformed), "{value:?}");
        }
        assert_eq!(verifier.verify(&HeaderMap::new(), BODY, NOW), Err(SignatureError::Missing));
    }

    #[test]
    fn repeated_signature_or_timestamp_headers_are_refused_whatever_their_order() {
        let cfg = config(&["secret"]);
        let verifier = Verifier::new(&cfg).unwrap();
        let good = sign(&cfg, 0, BODY, None).unwrap();
        let forged = "0".repeat(64);
        for (first, second) in [(&good, &forged), (&forged, &good), (&good, &good)] {
            let mut map = headers(&[("x-cxone-signature", first)]);
            map.append("x-cxone-signature", second.parse().unwrap());
            assert_eq!(verifier.verify(&map, BODY, NOW), Err(SignatureError::Repeated));
        }

        let cfg = SignatureConfig { signed: SignedPayload::TimestampDotBody, ..config(&["secret"]) };
        let verifier = Verifier::new(&cfg).unwrap();
        let sig = sign(&cfg, 0, BODY, Some(NOW)).unwrap();
        let mut map = headers(&[("x-cxone-signature", &sig), ("x-cxone-timestamp", &NOW.to_string())]);
        assert!(verifier.verify(&map, BODY, NOW).is_ok());
        map.append("x-cxone-timestamp", (NOW - 1).to_string().parse().unwrap());
        assert_eq!(verifier.verify(&map, BODY, NOW), Err(SignatureError::TimestampRepeated));

        // Without a signed timestamp the timestamp header is not read, repeated or not.
        let cfg = config(&["secret"]);
        let verifier = Verifier::new(&cfg).unwrap();
        let sig = sign(&cfg, 0, BODY, None).unwrap();
        let mut map = headers(&[("x-cxone-signature", &sig), ("x-cxone-timestamp", "1")]);
        map.append("x-cxone-timestamp", "2".parse().unwrap());
        assert!(verifier.verify(&map, BODY, NOW).is_ok());
    }

    #[test]
    fn wrong_secret_or_changed_body_is_a_mismatch() {
        let cfg = config(&["secret"]);
        let verifier = Verifier::new(&cfg).unwrap();
        let forged = sign(&config(&["other"]), 0, BODY, None).unwrap();
        let result = verifier.verify(&headers(&[("x-cxone-signature", &forged)]), BODY, NOW);
        assert_eq!(result, Err(SignatureError::Mismatch));
        let sig = sign(&cfg, 0, BODY, None).unwrap();
        let result = verifier.verify(&headers(&[("x-cxone-signature", &sig)]), b"{}", NOW);
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn rotation_reports_the_matching_key() {
        let cfg = config(&["old", "new"]);
        let verifier = Verifier::new(&cfg).unwrap();
        let sig = sign(&cfg, 1, BODY, None).unwrap();
        let result = verifier.verify(&headers(&[("x-cxone-signature", &sig)]), BODY, NOW);
        assert_eq!(result, Ok(Verified { key_index: 1 }));
    }

    #[test]
    fn base64_with_prefix_and_timestamp_window() {
        let cfg = SignatureConfig {
            header: "X-Signature".into(),
            encoding: SignatureEncoding::Base64,
            prefix: "sha256=".into(),
            signed: SignedPayload::TimestampDotBody,
            ..config(&["secret"])
        };
        let verifier = Verifier::new(&cfg).unwrap();
        let at = |ts: i64| {
            let sig = sign(&cfg, 0, BODY, Some(ts)).unwrap();
            verifier.verify(
                &headers(&[("x-signature", &sig), ("x-cxone-timestamp", &ts.to_string())]),
                BODY,
                NOW,
            )
        };
        assert!(at(NOW).is_ok());
        assert!(at(NOW - 300).is_ok());
        assert_eq!(at(NOW - 301), Err(SignatureError::TimestampStale));
        assert_eq!(at(NOW + 301), Err(SignatureError::TimestampFuture));

        // The timestamp is part of what is signed: moving it breaks the signature.
        let sig = sign(&cfg, 0, BODY, Some(NOW)).unwrap();
        let moved = headers(&[("x-signature", &sig), ("x-cxone-timestamp", &(NOW + 1).to_string())]);
        assert_eq!(verifier.verify(&moved, BODY, NOW), Err(SignatureError::Mismatch));
        let missing = headers(&[("x-signature", &sig)]);
        assert_eq!(verifier.verify(&missing, BODY, NOW), Err(SignatureError::TimestampMissing));
        let garbled = headers(&[("x-signature", &sig), ("x-cxone-timestamp", "yesterday")]);
        assert_eq!(verifier.verify(&garbled, BODY, NOW), Err(SignatureError::TimestampMalformed));
        let unprefixed =
            headers(&[("x-signature", sig.trim_start_matches("sha256=")), ("x-cxone-timestamp", "1")]);
        assert_eq!(verifier.verify(&unprefixed, BODY, NOW), Err(SignatureError::Malformed));
    }
}
