//! A source's credentials, read and ready ([`Credentials`]), and the checks a request must pass:
//! the `Authorization` header (bearer, Basic or JWT) before the body is read, the HMAC signature
//! over the raw body after. Failures name the check and why ([`Failure`]), never a value.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;
use warp::http::header::AUTHORIZATION;

use super::config::{
    JwtAlgorithm, JwtConfig, MIN_JWT_KEY_LEN, MIN_PASSWORD_LEN, MIN_TOKEN_LEN, SourceConfig,
};
use crate::http::Verifier;
use crate::http::config::{MIN_SECRET_LEN, Secret};

/// Why a request was refused (401): which check and a reason from a closed set (metric labels,
/// log fields). Never carries what the sender sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// `bearer`, `basic`, `jwt` or `signature`.
    pub check: &'static str,
    /// `missing`, `repeated`, `malformed`, `mismatch`, `expired`, `not_yet_valid`, `issuer`,
    /// `audience`, `algorithm` (or the signature's own reasons).
    pub reason: &'static str,
}

/// One source's credentials, ready to check requests. Built from the config and the files it
/// names; rebuilt when a file changes.
pub struct Credentials {
    /// The HMAC scheme with its secrets, when `signature` is configured.
    signature: Option<Verifier>,
    /// The header-borne check, when one of bearer, basic or jwt is configured.
    authorization: Option<Authorization>,
    /// SHA-256 of every secret value (HMAC secrets, tokens, pairs, keys): two sources may not share one.
    pub(super) fingerprints: Vec<[u8; 32]>,
    /// Each file read, with the SHA-256 of its content: a change triggers a rebuild.
    pub(super) files: Vec<(PathBuf, [u8; 32])>,
}

/// The check made on the `Authorization` header.
enum Authorization {
    /// SHA-256 of each accepted token (compared in constant time).
    Bearer(Vec<[u8; 32]>),
    /// SHA-256 of each accepted `user:password` (compared in constant time).
    Basic(Vec<[u8; 32]>),
    /// The keys and the claims rules.
    Jwt { keys: Vec<DecodingKey>, validation: Box<Validation> },
}

impl Credentials {
    /// Reads the source's files and prepares every configured check; `key` prefixes the
    /// keys in messages (`sources[0].`; empty for `[signature]`). Each problem names a file or a list
    /// position, never a value.
    pub fn load(source: &SourceConfig, key: &str) -> Result<Credentials, Vec<String>> {
        let mut problems = Vec::new();
        let mut files = Vec::new();
        let mut fingerprints = Vec::new();
        let mut read = |path: &Path, what: &str, problems: &mut Vec<String>| -> Option<String> {
            match std::fs::read(path) {
                Ok(bytes) => {
                    files.push((path.to_owned(), Sha256::digest(&bytes).into()));
                    match String::from_utf8(bytes) {
                        Ok(text) if !text.trim().is_empty() => Some(text),
                        Ok(_) => {
                            problems.push(format!("{what} {} is empty", path.display()));
                            None
                        }
                        Err(_) => {
                            problems.push(format!("{what} {} is not UTF-8 text", path.display()));
                            None
                        }
                    }
                }
                Err(err) => {
                    problems.push(format!("{what}: cannot read {}: {err}", path.display()));
                    None
                }
            }
        };

        let signature = match &source.signature {
            None => None,
            Some(config) => {
                let mut config = config.clone();
                if let Err(message) = config.apply_preset(&format!("{key}signature")) {
                    problems.push(message);
                }
                for (index, path) in config.secret_files.clone().iter().enumerate() {
                    let what = format!("{key}signature.secret_files[{index}]");
                    if let Some(text) = read(path, &what, &mut problems) {
                        config.secrets.push(Secret::new(text.trim()));
                    }
                }
                let inline = config.secrets.len() - config.secret_files.len().min(config.secrets.len());
                let origin = |index: usize| {
                    if index < inline {
                        format!("{key}signature.secrets[{index}]")
                    } else {
                        format!("{key}signature.secret_files[{}]", index - inline)
                    }
                };
                if config.secrets.is_empty() {
                    problems.push(format!("{key}signature has no secrets: set secret_files (or secrets)"));
                }
                for (index, secret) in config.secrets.iter().enumerate() {
                    if secret.expose().len() < MIN_SECRET_LEN {
                        problems.push(format!(
                            "{} is shorter than {MIN_SECRET_LEN} bytes: generate one with `openssl rand -hex 32`",
                            origin(index)
                        ));
                    }
                    fingerprints.push(Sha256::digest(secret.expose()).into());
                }
                if config.secrets.is_empty() {
                    None
                } else {
                    match Verifier::new(&config) {
                        Ok(verifier) => Some(verifier),
                        Err(message) => {
                            problems.push(format!("{key}{message}"));
                            None
                        }
                    }
                }
            }
        };

        let mut authorization = None;
        if let Some(bearer) = &source.bearer {
            let mut tokens: Vec<(String, Secret)> = bearer
                .bearer_tokens
                .iter()
                .enumerate()
                .map(|(i, token)| (format!("{key}bearer.bearer_tokens[{i}]"), token.clone()))
                .collect();
            for (index, path) in bearer.bearer_token_files.iter().enumerate() {
                let what = format!("{key}bearer.bearer_token_files[{index}]");
                if let Some(text) = read(path, &what, &mut problems) {
                    tokens.push((what, Secret::new(text.trim())));
                }
            }
            if tokens.is_empty() {
                problems
                    .push(format!("{key}bearer has no tokens: set bearer_token_files (or bearer_tokens)"));
            }
            let mut digests = Vec::new();
            for (origin, token) in &tokens {
                let value = token.expose();
                if value.len() < MIN_TOKEN_LEN {
                    problems.push(format!(
                        "{origin} is shorter than {MIN_TOKEN_LEN} bytes: generate one with `openssl rand -hex 32`"
                    ));
                } else if !value.iter().all(|b| b.is_ascii_graphic()) {
                    problems.push(format!(
                        "{origin} holds spaces or control characters: a header cannot carry it"
                    ));
                }
                let digest: [u8; 32] = Sha256::digest(value).into();
                digests.push(digest);
                fingerprints.push(digest);
            }
            authorization = Some(Authorization::Bearer(digests));
        }
        if let Some(basic) = &source.basic {
            let mut pairs: Vec<(String, Secret)> = basic
                .credentials
                .iter()
                .enumerate()
                .map(|(i, pair)| (format!("{key}basic.credentials[{i}]"), pair.clone()))
                .collect();
            for (index, path) in basic.credential_files.iter().enumerate() {
                let what = format!("{key}basic.credential_files[{index}]");
                if let Some(text) = read(path, &what, &mut problems) {
                    pairs.push((what, Secret::new(text.trim())));
                }
            }
            if pairs.is_empty() {
                problems
                    .push(format!("{key}basic has no credentials: set credential_files (or credentials)"));
            }
            let mut digests = Vec::new();
            for (origin, pair) in &pairs {
                let value = pair.expose();
                match value.iter().position(|b| *b == b':') {
                    Some(0) | None => problems.push(format!("{origin} is not `user:password`")),
                    Some(at) if value.len() - at - 1 < MIN_PASSWORD_LEN => problems
                        .push(format!("{origin}: the password is shorter than {MIN_PASSWORD_LEN} bytes")),
                    Some(_) => {}
                }
                let digest: [u8; 32] = Sha256::digest(value).into();
                digests.push(digest);
                fingerprints.push(digest);
            }
            authorization = Some(Authorization::Basic(digests));
        }
        if let Some(jwt) = &source.jwt {
            let mut keys = Vec::new();
            let mut add = |origin: &str, bytes: &[u8], problems: &mut Vec<String>| {
                fingerprints.push(Sha256::digest(bytes).into());
                match decoding_key(jwt, bytes) {
                    Ok(key) => keys.push(key),
                    Err(why) => problems.push(format!("{origin}: {why}")),
                }
            };
            for (index, inline) in jwt.keys.iter().enumerate() {
                let origin = format!("{key}jwt.keys[{index}]");
                if jwt.algorithm != JwtAlgorithm::HS256 {
                    problems.push(format!(
                        "{origin}: inline keys are for HS256; give RS256/ES256 public keys as key_files"
                    ));
                } else {
                    add(&origin, inline.expose(), &mut problems);
                }
            }
            for (index, path) in jwt.key_files.iter().enumerate() {
                let origin = format!("{key}jwt.key_files[{index}]");
                if let Some(text) = read(path, &origin, &mut problems) {
                    let bytes = match jwt.algorithm {
                        JwtAlgorithm::HS256 => text.trim().as_bytes().to_vec(),
                        JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => text.into_bytes(),
                    };
                    add(&origin, &bytes, &mut problems);
                }
            }
            if jwt.keys.is_empty() && jwt.key_files.is_empty() {
                problems.push(format!("{key}jwt has no keys: set key_files"));
            }
            if !(0..=300).contains(&jwt.leeway_secs) {
                problems.push(format!(
                    "{key}jwt.leeway_secs = {} is out of range: use 0 to 300 (default 30)",
                    jwt.leeway_secs
                ));
            }
            authorization = Some(Authorization::Jwt { keys, validation: Box::new(validation(jwt)) });
        }
        if problems.is_empty() {
            Ok(Credentials { signature, authorization, fingerprints, files })
        } else {
            Err(problems)
        }
    }

    /// The HMAC scheme, when the source has one (checked once the body is read).
    pub fn signature(&self) -> Option<&Verifier> {
        self.signature.as_ref()
    }

    /// Checks the `Authorization` header when a header-borne check is configured (`Ok` when none is).
    pub fn check_authorization(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let Some(authorization) = &self.authorization else {
            return Ok(());
        };
        let check = match authorization {
            Authorization::Bearer(_) => "bearer",
            Authorization::Basic(_) => "basic",
            Authorization::Jwt { .. } => "jwt",
        };
        let fail = |reason| Failure { check, reason };
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(fail("missing"))?;
        if values.next().is_some() {
            return Err(fail("repeated"));
        }
        let value = value.as_bytes().trim_ascii();
        let (scheme, credential) = match value.iter().position(|b| *b == b' ') {
            Some(at) => (&value[..at], value[at + 1..].trim_ascii()),
            None => return Err(fail("malformed")),
        };
        match authorization {
            Authorization::Bearer(digests) => {
                if !scheme.eq_ignore_ascii_case(b"bearer") || credential.is_empty() {
                    return Err(fail("malformed"));
                }
                any_matches(digests, credential).then_some(()).ok_or(fail("mismatch"))
            }
            Authorization::Basic(digests) => {
                if !scheme.eq_ignore_ascii_case(b"basic") || credential.is_empty() {
                    return Err(fail("malformed"));
                }
                let pair = base64::engine::general_purpose::STANDARD
                    .decode(credential)
                    .map_err(|_| fail("malformed"))?;
                any_matches(digests, &pair).then_some(()).ok_or(fail("mismatch"))
            }
            Authorization::Jwt { keys, validation } => {
                if !scheme.eq_ignore_ascii_case(b"bearer") || credential.is_empty() {
                    return Err(fail("malformed"));
                }
                let mut last = "mismatch";
                for key in keys {
                    match jsonwebtoken::decode::<serde_json::Value>(credential, key, validation) {
                        Ok(_) => return Ok(()),
                        Err(err) => {
                            last = jwt_reason(err.kind());
                            // A claim problem is the same under every key: stop at the first.
                            if last != "mismatch" {
                                break;
                            }
                        }
                    }
                }
                Err(fail(last))
            }
        }
    }
}

/// Whether the SHA-256 of `presented` equals one of `digests`, in constant time per comparison
/// (hashing first also hides the accepted lengths).
fn any_matches(digests: &[[u8; 32]], presented: &[u8]) -> bool {
    let digest: [u8; 32] = Sha256::digest(presented).into();
    digests.iter().fold(false, |found, accepted| found | bool::from(accepted.ct_eq(&digest)))
}

/// The key of one file or inline value for the configured algorithm.
fn decoding_key(jwt: &JwtConfig, bytes: &[u8]) -> Result<DecodingKey, String> {
    match jwt.algorithm {
        JwtAlgorithm::HS256 if bytes.len() < MIN_JWT_KEY_LEN => {
            Err(format!("HS256 keys must be at least {MIN_JWT_KEY_LEN} bytes"))
        }
        JwtAlgorithm::HS256 => Ok(DecodingKey::from_secret(bytes)),
        JwtAlgorithm::RS256 => {
            DecodingKey::from_rsa_pem(bytes).map_err(|_| "not a PEM RSA public key".to_owned())
        }
        JwtAlgorithm::ES256 => {
            DecodingKey::from_ec_pem(bytes).map_err(|_| "not a PEM EC (P-256) public key".to_owned())
        }
    }
}

/// The claims rules: the one algorithm, `exp` required, `nbf` checked, `iss`/`aud` when set.
fn validation(jwt: &JwtConfig) -> Validation {
    let algorithm = match jwt.algorithm {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    };
    let mut validation = Validation::new(algorithm);
    validation.leeway = jwt.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    match &jwt.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match &jwt.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The metric reason of a JWT refusal.
fn jwt_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm",
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => "claims",
        ErrorKind::InvalidSignature => "mismatch",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::config::{BasicConfig, BearerConfig};

    fn source() -> SourceConfig {
        SourceConfig::legacy("/x", &crate::http::config::SignatureConfig::default())
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, authorization.parse().unwrap());
        map
    }

    #[test]
    fn bearer_accepts_any_listed_token_and_names_each_failure() {
        let (old, new) = ("o".repeat(32), "n".repeat(40));
        let config = SourceConfig {
            signature: None,
            bearer: Some(BearerConfig {
                bearer_tokens: vec![Secret::new(old.clone()), Secret::new(new.clone())],
                ..Default::default()
            }),
            ..source()
        };
        let credentials = Credentials::load(&config, "sources[0].").unwrap();
        assert_eq!(credentials.check_authorization(&headers(&format!("Bearer {old}"))), Ok(()));
        assert_eq!(credentials.check_authorization(&headers(&format!("bearer  {new} "))), Ok(()));
        let reason = |value: &str| credentials.check_authorization(&headers(value)).unwrap_err().reason;
        assert_eq!(reason(&format!("Bearer {}", "x".repeat(32))), "mismatch");
        assert_eq!(reason(&format!("Basic {old}")), "malformed");
        assert_eq!(reason("Bearer"), "malformed");
        assert_eq!(credentials.check_authorization(&HeaderMap::new()).unwrap_err().reason, "missing");
        let mut twice = headers(&format!("Bearer {old}"));
        twice.append(AUTHORIZATION, format!("Bearer {old}").parse().unwrap());
        assert_eq!(credentials.check_authorization(&twice).unwrap_err().reason, "repeated");
    }

    #[test]
    fn short_tokens_and_passwords_are_refused_by_position_not_value() {
        let config = SourceConfig {
            bearer: Some(BearerConfig {
                bearer_tokens: vec![Secret::new("short-token")],
                ..Default::default()
            }),
            ..source()
        };
        let problems = Credentials::load(&config, "sources[2].").err().unwrap().join("\n");
        assert!(
            problems.contains("sources[2].bearer.bearer_tokens[0] is shorter than 32 bytes"),
            "{problems}"
        );
        assert!(!problems.contains("short-token"), "{problems}");
        let config = SourceConfig {
            signature: None,
            basic: Some(BasicConfig { credentials: vec![Secret::new("cxone:tiny")], ..Default::default() }),
            ..source()
        };
        let problems = Credentials::load(&config, "sources[0].").err().unwrap().join("\n");
        assert!(problems.contains("the password is shorter than 16 bytes"), "{problems}");
        assert!(!problems.contains("tiny"), "{problems}");
    }

    #[test]
    fn basic_checks_the_decoded_pair() {
        let pair = "studio:correct-horse-battery-staple";
        let config = SourceConfig {
            signature: None,
            basic: Some(BasicConfig { credentials: vec![Secret::new(pair)], ..Default::default() }),
            ..source()
        };
        let credentials = Credentials::load(&config, "sources[0].").unwrap();
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        assert_eq!(credentials.check_authorization(&headers(&format!("Basic {}", encode(pair)))), Ok(()));
        let wrong = format!("Basic {}", encode("studio:correct-horse-battery-stapl"));
        assert_eq!(credentials.check_authorization(&headers(&wrong)).unwrap_err().reason, "mismatch");
        assert_eq!(credentials.check_authorization(&headers("Basic !!!")).unwrap_err().reason, "malformed");
    }
}
