//! The producer's librdkafka client context: keeps the last broker connection error (a TLS
//! handshake that failed certificate verification, a SASL login that was refused) so that a
//! not-ready reason can say why, instead of only that a call timed out.
//!
//! librdkafka reports such errors through its error callback and keeps retrying in the
//! background; the blocking call that was waiting for the broker (`init_transactions`, a metadata
//! request) only ever sees `_TIMED_OUT`. librdkafka's messages name brokers, mechanisms and
//! certificate problems, never credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long a broker error stays relevant to a not-ready reason: a failure older than this has
/// been followed by enough reconnects that it may no longer be why a call fails.
pub const RECENT: Duration = Duration::from_secs(60);

/// A client context that logs like rdkafka's default one and remembers the last broker error.
/// Clones share what they remember (the producer keeps one, librdkafka's callbacks use another).
#[derive(Default, Clone)]
pub struct BrokerErrors {
    last: Arc<Mutex<Option<(Instant, String)>>>,
}

impl BrokerErrors {
    /// The last broker error reported within `within`, in librdkafka's words.
    pub fn recent(&self, within: Duration) -> Option<String> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() <= within).map(|(_, text)| text.clone())
    }

    fn remember(&self, text: String) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), text));
    }
}

/// What a broker error says, or `None` when it adds nothing to a timeout (`_ALL_BROKERS_DOWN`
/// only counts the connections whose own errors were reported before it).
fn worth_keeping(error: &KafkaError, reason: &str) -> Option<String> {
    let code = error.rdkafka_error_code();
    if code == Some(RDKafkaErrorCode::AllBrokersDown) {
        return None;
    }
    // librdkafka reports a failed handshake as _SSL or, on a reconnect, as a transport failure
    // whose words still say SSL; likewise for SASL.
    let what = match code {
        Some(RDKafkaErrorCode::SSL) => "TLS (SSL) error",
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            "SASL authentication error"
        }
        _ if reason.contains("SSL") => "TLS (SSL) error",
        _ if reason.contains("SASL") => "SASL authentication error",
        _ => "broker error",
    };
    // librdkafka starts with the broker's name ("ssl://host:9093/bootstrap: "): the not-ready
    // reason names the brokers already, and readiness details are short.
    let reason = match reason.split_once(": ") {
        Some((broker, rest)) if broker.contains("://") => rest,
        _ => reason,
    };
    Some(format!("{what}: {reason}"))
}

impl ClientContext for BrokerErrors {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        DefaultClientContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(text) = worth_keeping(&error, reason) {
            self.remember(text);
        }
        DefaultClientContext.error(error, reason);
    }
}

/// The last broker error within [`RECENT`] first (the cause: `/readyz` details are cut short),
/// then `detail` (what failed because of it); `detail` alone when there is none.
pub fn with_broker_error(detail: String, errors: &BrokerErrors) -> String {
    match errors.recent(RECENT) {
        Some(last) if !detail.contains(&last) => format!("{last} (then {detail})"),
        _ => detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_sasl_errors_are_kept_and_named() {
        let errors = BrokerErrors::default();
        assert_eq!(errors.recent(RECENT), None);
        let ssl = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        errors.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            &format!("ssl://127.0.0.1:9093/bootstrap: {ssl}"),
        );
        errors.error(KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
        let detail = with_broker_error("Local: Timed out".to_owned(), &errors);
        assert_eq!(detail, format!("TLS (SSL) error: {ssl} (then Local: Timed out)"));
        let short = "ssl://127.0.0.1:9093/bootstrap: error:0A000086:SSL routines::certificate verify failed";
        errors.error(KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure), short);
        let recent = errors.recent(RECENT).unwrap_or_default();
        assert!(recent.starts_with("TLS (SSL) error: error:0A000086"), "{recent}");
        errors.error(KafkaError::Global(RDKafkaErrorCode::Authentication), "SASL SCRAM-SHA-512 failed");
        let recent = errors.recent(RECENT).unwrap_or_default();
        assert!(recent.starts_with("SASL authentication error: "), "{recent}");
        assert_eq!(errors.recent(Duration::ZERO), None, "older than the window");
    }
}
