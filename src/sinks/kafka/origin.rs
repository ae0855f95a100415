//! The Kafka headers naming an event's webhook source and the sender's delivery metadata.

use crate::sinks::Origin;

/// Per-header overhead counted by [`origin_headers_size`] (length varints, as `producer::record_size`).
const PER_HEADER: usize = 10;

/// `source` (when known), `delivery_id` and `sender_event_type` (when the sender sent them), in
/// this order: appended to an event's other headers by `producer::headers`.
pub fn origin_headers(origin: &Origin) -> impl Iterator<Item = (&'static str, &str)> {
    let source = Some(&*origin.source).filter(|name| !name.is_empty());
    [
        ("source", source),
        ("delivery_id", origin.delivery_id.as_deref()),
        ("sender_event_type", origin.sender_event_type.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
}

/// What [`origin_headers`] add to a record's size as Kafka measures it (for `producer::record_size`).
pub fn origin_headers_size(origin: &Origin) -> usize {
    origin_headers(origin).map(|(name, value)| name.len() + value.len() + PER_HEADER).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_known_becomes_a_header() {
        assert_eq!(origin_headers(&Origin::default()).count(), 0);
        assert_eq!(origin_headers_size(&Origin::default()), 0);
        let origin = Origin {
            source: "bu-east".into(),
            delivery_id: Some("d-1".to_owned()),
            sender_event_type: Some("interaction.completed".to_owned()),
            ..Origin::default()
        };
        let headers: Vec<_> = origin_headers(&origin).collect();
        assert_eq!(
            headers,
            [("source", "bu-east"), ("delivery_id", "d-1"), ("sender_event_type", "interaction.completed")]
        );
        assert_eq!(
            origin_headers_size(&origin),
            "source".len() + 7 + "delivery_id".len() + 3 + "sender_event_type".len() + 21 + 3 * PER_HEADER
        );
    }
}
