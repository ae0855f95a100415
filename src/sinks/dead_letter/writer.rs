//! S3 I/O for dead letters: the client, PutObject with our retry policy (exponential backoff, full
//! jitter, inside the earliest request deadline of the batch), and the one place S3 errors are
//! classified.

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use rand::Rng as _;

use super::config::{DeadLetterConfig, DeadLetterConfigError, ServerSideEncryption};
use crate::metrics as m;

/// Who retries failed S3 calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkRetries {
    /// The SDK makes one attempt per call: the caller's policy is the only one in force (the sink).
    Off,
    /// The SDK's standard policy (3 attempts): for tools without a deadline of their own (replay).
    Standard,
}

/// Builds an S3 client from the config: endpoint, region, path style, credentials (config, else the
/// default AWS chain), per-attempt and connect timeouts. Fails only on configuration errors.
pub async fn build_client(
    config: &DeadLetterConfig,
    retries: SdkRetries,
) -> Result<Client, DeadLetterConfigError> {
    config.validate()?;
    let retry_config = match retries {
        SdkRetries::Off => RetryConfig::disabled(),
        SdkRetries::Standard => RetryConfig::standard(),
    };
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(retry_config).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout())
                .operation_attempt_timeout(config.attempt_timeout())
                .build(),
        );
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "cxone-ingest-config"));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(DeadLetterConfigError {
            field: "region",
            message: "no S3 region: set dead_letter.region or AWS_REGION".to_owned(),
        });
    }
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.path_style())
        // Checksums only where S3 requires them: our integrity check is the record's SHA-256 in
        // metadata, and several S3-compatible stores reject the SDK's streaming checksum trailers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    Ok(Client::from_conf(s3_config))
}

/// Why an S3 call failed, decided in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt (throttling, 5xx, timeouts, connection failures).
    Retryable { cause: RetryCause, detail: String },
    /// Will fail again until someone changes something (bucket missing, access denied, bad key...).
    Permanent { detail: String },
}

/// The kinds of retryable failure, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// 429, 503 SlowDown and the other "slow down" codes.
    Throttled,
    /// Any other 5xx.
    ServerError,
    /// An attempt exceeded its timeout.
    Timeout,
    /// The request never got an answer (connection refused or reset, DNS, malformed response).
    Dispatch,
}

impl RetryCause {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Throttled => "throttled",
            RetryCause::ServerError => "server_error",
            RetryCause::Timeout => "timeout",
            RetryCause::Dispatch => "dispatch",
        }
    }
}

/// Error codes that mean "slow down" whatever the status.
const THROTTLING_CODES: [&str; 6] = [
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestThrottled",
];
/// 4xx codes that are transient.
const TRANSIENT_4XX_CODES: [&str; 3] = ["RequestTimeout", "OperationAborted", "RequestTimeoutException"];

/// Classifies a failed S3 call. HEAD responses carry no body, so the status alone must speak for them.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = || DisplayErrorContext(err).to_string();
    match err {
        SdkError::TimeoutError(_) => Failure::Retryable { cause: RetryCause::Timeout, detail: detail() },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            Failure::Retryable { cause: RetryCause::Timeout, detail: detail() }
        }
        SdkError::DispatchFailure(failure) if failure.is_user() => Failure::Permanent { detail: detail() },
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Retryable { cause: RetryCause::Dispatch, detail: detail() }
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().map(str::to_owned).unwrap_or_else(|| default_code(status).to_owned());
            let message = err.message().unwrap_or("");
            let detail =
                format!("{code} (HTTP {status}){}{message}", if message.is_empty() { "" } else { ": " });
            if status == 429 || THROTTLING_CODES.contains(&code.as_str()) {
                Failure::Retryable { cause: RetryCause::Throttled, detail }
            } else if status >= 500 || TRANSIENT_4XX_CODES.contains(&code.as_str()) {
                Failure::Retryable { cause: RetryCause::ServerError, detail }
            } else {
                Failure::Permanent { detail }
            }
        }
        // A request we could not even build (bad config): retrying cannot help.
        _ => Failure::Permanent { detail: detail() },
    }
}

/// Names a bodiless error response (HEAD) the way S3 would have.
fn default_code(status: u16) -> &'static str {
    match status {
        301 => "PermanentRedirect (wrong region or endpoint)",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NoSuchBucket",
        429 => "TooManyRequests",
        503 => "SlowDown",
        s if s >= 500 => "InternalError",
        _ => "UnknownError",
    }
}

/// Exponential backoff with full jitter: before retry `n` (1-based) wait a uniform random time in
/// `[0, min(max, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Ceiling of the first wait.
    pub base: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random wait before retry `retry`.
    pub fn wait(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }
}

/// How a write ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutError {
    /// A permanent failure: `detail` names the cause.
    Permanent { detail: String },
    /// The deadline passed; `last` is the last retryable failure seen, if any.
    Deadline { last: Option<String>, attempts: u32 },
}

/// A successful write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReport {
    /// PutObject attempts made (1 = no retry).
    pub attempts: u32,
}

/// Writes objects to one bucket with the retry policy (one caller: the batcher, one put at a time).
pub struct S3Writer {
    /// SDK client with SDK retries off: [`S3Writer::put`] is the retry policy.
    client: Client,
    /// Target bucket.
    bucket: String,
    /// Server-side encryption to request, if any.
    sse: Option<ServerSideEncryption>,
    /// KMS key for `aws:kms`.
    sse_kms_key_id: Option<String>,
    /// Upper bound of one attempt (shortened to what is left of the deadline).
    attempt_timeout: Duration,
    /// Waits between attempts.
    backoff: Backoff,
}

impl S3Writer {
    /// A writer for `config.bucket`, using `client` (see [`build_client`] with [`SdkRetries::Off`]).
    pub fn new(client: Client, config: &DeadLetterConfig) -> S3Writer {
        S3Writer {
            client,
            bucket: config.bucket.clone(),
            sse: config.server_side_encryption,
            sse_kms_key_id: config.sse_kms_key_id.clone(),
            attempt_timeout: config.attempt_timeout(),
            backoff: Backoff {
                base: Duration::from_millis(config.backoff_base_ms),
                max: Duration::from_millis(config.backoff_max_ms),
            },
        }
    }

    /// The bucket written to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Largest backoff ceiling (also the readiness re-probe interval after a failure).
    pub fn backoff_max(&self) -> Duration {
        self.backoff.max
    }

    /// Puts one object (`content_type`, the body's hex SHA-256 as `sha256` metadata), retrying
    /// retryable failures until `deadline`.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        sha256_hex: &str,
        content_type: &str,
        deadline: Instant,
    ) -> Result<PutReport, PutError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut attempts = 0u32;
        let mut last = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(PutError::Deadline { last, attempts });
            }
            attempts += 1;
            let attempt_timeout = self.attempt_timeout.min(deadline - now);
            let started = Instant::now();
            let once = self.put_once(key, body.clone(), sha256_hex, content_type);
            let outcome = tokio::time::timeout(attempt_timeout, once).await;
            let elapsed = started.elapsed().as_secs_f64();
            let failure = match outcome {
                Ok(Ok(())) => {
                    metrics::histogram!(m::DEAD_LETTER_PUT_DURATION, "outcome" => "ok").record(elapsed);
                    return Ok(PutReport { attempts });
                }
                Ok(Err(err)) => classify(&err),
                Err(_) => Failure::Retryable {
                    cause: RetryCause::Timeout,
                    detail: format!("attempt timed out after {} ms", attempt_timeout.as_millis()),
                },
            };
            metrics::histogram!(m::DEAD_LETTER_PUT_DURATION, "outcome" => "error").record(elapsed);
            match failure {
                Failure::Permanent { detail } => return Err(PutError::Permanent { detail }),
                Failure::Retryable { cause, detail } => {
                    let wait = self.backoff.wait(attempts);
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(PutError::Deadline { last: Some(detail), attempts });
                    }
                    metrics::counter!(m::DEAD_LETTER_RETRIES, "cause" => cause.as_str()).increment(1);
                    tracing::debug!(bucket = %self.bucket, key, attempts, cause = cause.as_str(), %detail,
                        wait_ms = wait.as_millis() as u64, "dead-letter put failed; retrying");
                    last = Some(detail);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn put_once(
        &self,
        key: &str,
        body: Bytes,
        sha256_hex: &str,
        content_type: &str,
    ) -> Result<(), SdkError<aws_sdk_s3::operation::put_object::PutObjectError, HttpResponse>> {
        let sse = self.sse.map(|sse| match sse {
            ServerSideEncryption::Aes256 => aws_sdk_s3::types::ServerSideEncryption::Aes256,
            ServerSideEncryption::AwsKms => aws_sdk_s3::types::ServerSideEncryption::AwsKms,
        });
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .metadata("sha256", sha256_hex)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
    }

    /// One HeadBucket: can we reach the bucket with these credentials?
    pub async fn probe(&self) -> Result<(), Failure> {
        let call = self.client.head_bucket().bucket(&self.bucket).send();
        match tokio::time::timeout(self.attempt_timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(classify(&err)),
            Err(_) => Err(Failure::Retryable {
                cause: RetryCause::Timeout,
                detail: format!("HeadBucket timed out after {} ms", self.attempt_timeout.as_millis()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::put_object::PutObjectError;

    #[test]
    fn backoff_ceiling_doubles_up_to_max_and_jitter_stays_below() {
        let backoff = Backoff { base: Duration::from_millis(50), max: Duration::from_millis(2_000) };
        let ceilings: Vec<u64> = (1..=8).map(|n| backoff.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.ceiling(200), Duration::from_millis(2_000));
        for retry in 1..10 {
            assert!(backoff.wait(retry) <= backoff.ceiling(retry));
        }
        // Full jitter: waits spread over the whole range, not clustered at the ceiling.
        let waits: Vec<Duration> = (0..200).map(|_| backoff.wait(6)).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_millis(400)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(1_200)));
    }

    fn service_error(status: u16, code: Option<&str>) -> SdkError<PutObjectError, HttpResponse> {
        let mut meta = aws_sdk_s3::error::ErrorMetadata::builder().message("because");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().unwrap(), aws_sdk_s3::primitives::SdkBody::empty());
        SdkError::service_error(PutObjectError::generic(meta.build()), raw)
    }

    #[test]
    fn errors_are_classified_in_one_place() {
        let retry = |status, code| match classify(&service_error(status, code)) {
            Failure::Retryable { cause, .. } => Some(cause),
            Failure::Permanent { .. } => None,
        };
        assert_eq!(retry(503, Some("SlowDown")), Some(RetryCause::Throttled));
        assert_eq!(retry(429, None), Some(RetryCause::Throttled));
        assert_eq!(retry(500, Some("InternalError")), Some(RetryCause::ServerError));
        assert_eq!(retry(502, None), Some(RetryCause::ServerError));
        assert_eq!(retry(400, Some("RequestTimeout")), Some(RetryCause::ServerError));
        for (status, code) in [
            (404, Some("NoSuchBucket")),
            (403, Some("AccessDenied")),
            (403, Some("InvalidAccessKeyId")),
            (403, Some("SignatureDoesNotMatch")),
            (404, None),
        ] {
            assert_eq!(retry(status, code), None, "{status} {code:?} is permanent");
        }
        match classify(&service_error(404, None)) {
            Failure::Permanent { detail } => {
                assert!(detail.starts_with("NoSuchBucket (HTTP 404)"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        let timeout: SdkError<PutObjectError, HttpResponse> = SdkError::timeout_error("slow");
        assert!(matches!(classify(&timeout), Failure::Retryable { cause: RetryCause::Timeout, .. }));
    }

    #[tokio::test]
    async fn client_builds_without_network_and_region_is_required() {
        let config = DeadLetterConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("garage".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        };
        assert!(build_client(&config, SdkRetries::Off).await.is_ok());
        let bad = DeadLetterConfig { bucket: " ".into(), ..config };
        assert_eq!(build_client(&bad, SdkRetries::Off).await.unwrap_err().field, "bucket");
    }
}
