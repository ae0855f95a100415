//! W3C trace context (`traceparent`, `tracestate`): read from the request, continued by this
//! service as one hop, and carried into the Kafka record's headers, the dead-letter record and
//! every log line of the request, so one delivery can be followed from the load balancer to the topic.
//!
//! A valid `traceparent` keeps its trace id and flags; this service's hop gets a fresh span id,
//! which becomes the parent id written downstream. A missing or malformed one starts a new trace
//! (and its `tracestate`, which belongs to it, is dropped). See docs/operations.md, "Tracing".

use std::fmt;

/// Longest `tracestate` kept (the W3C limit is 32 members; 512 characters is the recommended
/// minimum to propagate). Longer values are dropped rather than cut, as the spec allows.
const MAX_TRACESTATE_LEN: usize = 512;

/// One request's place in a distributed trace.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace this delivery belongs to (the sender's, or a new one).
    pub trace_id: [u8; 16],
    /// This service's span: the parent id of whatever it writes downstream.
    pub span_id: [u8; 8],
    /// The sender's span (its `traceparent` parent id), when it sent one.
    pub parent_id: Option<[u8; 8]>,
    /// Trace flags (bit 0: sampled), passed on unchanged.
    pub flags: u8,
    /// The sender's `tracestate`, passed on unchanged when it was sent with a valid `traceparent`.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Continues the sender's trace (`traceparent`, `tracestate` header values), or starts a new
    /// one when `traceparent` is missing or malformed.
    pub fn continue_or_start(traceparent: Option<&[u8]>, tracestate: Option<&[u8]>) -> TraceContext {
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent_id, flags)) => TraceContext {
                trace_id,
                span_id: random_nonzero(),
                parent_id: Some(parent_id),
                flags,
                tracestate: tracestate.and_then(valid_tracestate),
            },
            None => TraceContext::start(),
        }
    }

    /// A new trace with this service's span as its root (sampled flag off: the sender decides).
    pub fn start() -> TraceContext {
        TraceContext {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            parent_id: None,
            flags: 0,
            tracestate: None,
        }
    }

    /// The trace id as 32 lower-case hex digits (what log lines carry).
    pub fn trace_id_hex(&self) -> TraceIdHex {
        TraceIdHex(self.trace_id)
    }

    /// The `traceparent` to send downstream: this trace, this service's span as the parent.
    pub fn traceparent(&self) -> String {
        // The ids as big-endian integers: one formatted string, no intermediate hex strings.
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            u128::from_be_bytes(self.trace_id),
            u64::from_be_bytes(self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .field("tracestate", &self.tracestate)
            .finish()
    }
}

/// `version-traceid-parentid-flags`: version 00 exactly as specified; a higher version is read by
/// its first four fields (forward compatibility); `ff`, all-zero ids, upper-case hex are invalid.
fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" || !lower_hex(trace, 32) || !lower_hex(parent, 16) {
        return None;
    }
    if !lower_hex(flags, 2) || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    let mut flag = [0u8; 1];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(parent, &mut parent_id).ok()?;
    hex::decode_to_slice(flags, &mut flag).ok()?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id, flag[0]))
}

/// A `tracestate` worth passing on: printable ASCII, at most [`MAX_TRACESTATE_LEN`] characters.
fn valid_tracestate(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let printable = text.bytes().all(|b| (b' '..=b'~').contains(&b));
    (!text.is_empty() && text.len() <= MAX_TRACESTATE_LEN && printable).then(|| text.to_owned())
}

/// Random bytes, never all zero (an all-zero id is invalid).
fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

/// A trace id shown as 32 lowercase hex digits (W3C), formatted only when it is shown: a log
/// field costs nothing at a level that is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIdHex([u8; 16]);

impl std::fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", u128::from_be_bytes(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let trace = TraceContext::continue_or_start(Some(SENT.as_bytes()), Some(b"congo=t61rcWkgMzE"));
        assert_eq!(trace.trace_id_hex().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_id, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert_eq!(trace.flags, 1);
        assert_eq!(trace.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        let downstream = trace.traceparent();
        assert!(downstream.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{downstream}");
        assert!(downstream.ends_with("-01"));
        assert_ne!(downstream, SENT, "this hop's span id replaces the sender's");
        // A higher version is read by its first four fields.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(TraceContext::continue_or_start(Some(future.as_bytes()), None).trace_id, trace.trace_id);
    }

    #[test]
    fn anything_malformed_starts_a_new_trace_and_drops_tracestate() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            let trace = TraceContext::continue_or_start(Some(bad.as_bytes()), Some(b"a=b"));
            assert_eq!(trace.parent_id, None, "{bad:?}");
            assert_eq!(trace.tracestate, None, "{bad:?}");
            assert_ne!(trace.trace_id, [0; 16]);
        }
        let fresh = TraceContext::continue_or_start(None, None);
        assert_eq!(fresh.traceparent().len(), 55);
        assert_ne!(fresh.trace_id, TraceContext::start().trace_id, "new traces get new ids");
    }

    #[test]
    fn oversized_or_binary_tracestate_is_dropped() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE_LEN);
        assert_eq!(
            TraceContext::continue_or_start(Some(SENT.as_bytes()), Some(long.as_bytes())).tracestate,
            None
        );
        assert_eq!(TraceContext::continue_or_start(Some(SENT.as_bytes()), Some(b"a=\x01")).tracestate, None);
    }
}
