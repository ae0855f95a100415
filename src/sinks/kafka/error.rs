//! Kafka errors sorted into what the committer does about them: the one place that decides.
//!
//! | class       | examples                                                   | the committer                                   |
//! |-------------|------------------------------------------------------------|-------------------------------------------------|
//! | `Retriable` | `_TIMED_OUT` of a commit, coordinator moving, transport    | calls again while the call budget lasts, then `Fatal` |
//! | `Abortable` | a failed delivery, `txn_requires_abort`                    | `abort_transaction`; every waiter of the batch gets 503 |
//! | `TopicRefused` | the topic refuses writes (`TopicAuthorizationFailed`, unknown topic) | abort; every waiter gets 503; not ready for a while, then tries again |
//! | `Fatal`     | fenced (`ProducerFenced`, `InvalidProducerEpoch`), `TransactionalIdAuthorizationFailed`, `UnknownProducerId`/`TransactionalIdNotFound` after a broker restart, an exhausted budget | drops the producer, not ready until a new one has run `init_transactions` |

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why `KafkaSink::start` refused to start (only configuration problems: a broker that is down
/// is reported through readiness instead).
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// A setting that cannot work; the message names it.
    #[error("kafka config: {0}")]
    Config(String),
    /// librdkafka refused the resulting client configuration.
    #[error("kafka client: {0}")]
    Client(String),
    /// The committer thread could not be started.
    #[error("kafka committer thread: {0}")]
    Thread(String),
}

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same call again (within the call budget).
    Retriable,
    /// Abort the transaction; the producer stays usable.
    Abortable,
    /// Abort the transaction: the topic refuses writes (permissions, deleted). Not ready until a
    /// later attempt succeeds; the producer stays usable.
    TopicRefused,
    /// The producer is unusable: build a new one.
    Fatal,
}

/// Kafka's TRANSACTIONAL_ID_NOT_FOUND (105), which rdkafka has no named variant for.
const TRANSACTIONAL_ID_NOT_FOUND: i32 = 105;

/// Codes that mean this producer instance is finished, whatever librdkafka's flags say.
fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::InvalidTransactionalState
            | RDKafkaErrorCode::Fatal
    ) || code as i32 == TRANSACTIONAL_ID_NOT_FOUND
}

/// Classifies an error from a transactional call or a delivery report.
pub fn classify(err: &KafkaError) -> ErrorClass {
    match err {
        KafkaError::Transaction(e) => {
            if e.is_fatal() || is_fatal_code(e.code()) {
                ErrorClass::Fatal
            } else if e.txn_requires_abort() {
                ErrorClass::Abortable
            } else if e.is_retriable() {
                ErrorClass::Retriable
            } else {
                // Neither retriable nor abortable: librdkafka leaves the transaction in a state
                // we cannot reason about; a new producer is the one safe way out.
                ErrorClass::Fatal
            }
        }
        // A message of the transaction failed: the transaction cannot commit, abort it.
        KafkaError::MessageProduction(code) | KafkaError::Flush(code) => {
            if is_fatal_code(*code) {
                ErrorClass::Fatal
            } else if is_topic_refusal(*code) {
                ErrorClass::TopicRefused
            } else {
                ErrorClass::Abortable
            }
        }
        // Client creation, metadata, anything else from a transactional path: start afresh.
        _ => ErrorClass::Fatal,
    }
}

/// Codes that say the topic itself refuses writes, whatever the record.
fn is_topic_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidTopic
    )
}

/// Why librdkafka refused to take one record into its queue (`send_result` failed for it alone):
/// the record will never be accepted as it is. Any other local failure is not about the record.
pub fn record_refusal(err: &KafkaError) -> Option<&'static str> {
    match err {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => Some("too_large"),
        KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize,
        ) => Some("invalid_record"),
        _ => None,
    }
}

/// A short description for readiness messages and logs (librdkafka's messages never carry payloads).
pub fn describe(err: &KafkaError) -> String {
    match err {
        KafkaError::Transaction(e) => format!("{} ({})", e.string(), e.name()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_deliveries_abort_and_fencing_rebuilds() {
        assert_eq!(
            classify(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)),
            ErrorClass::Abortable
        );
        assert_eq!(
            classify(&KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&KafkaError::MessageProduction(RDKafkaErrorCode::UnknownProducerId)),
            ErrorClass::Fatal
        );
        assert_eq!(classify(&KafkaError::ClientCreation("x".into())), ErrorClass::Fatal);
    }

    #[test]
    fn topic_refusals_and_record_refusals_are_told_apart() {
        for code in [RDKafkaErrorCode::TopicAuthorizationFailed, RDKafkaErrorCode::UnknownTopicOrPartition] {
            assert_eq!(classify(&KafkaError::MessageProduction(code)), ErrorClass::TopicRefused, "{code:?}");
            assert_eq!(record_refusal(&KafkaError::MessageProduction(code)), None);
        }
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(record_refusal(&too_large), Some("too_large"));
        assert_eq!(record_refusal(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)), None);
    }
}
