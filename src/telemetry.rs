//! Logging: `tracing` subscriber set-up (pretty or JSON) and redaction of customer data.

use std::borrow::Cow;
use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber, writing to stderr through a thread of its own: a log line
/// costs a request a copy into a queue, not a `write(2)` under stderr's lock (one line per
/// request at `info`: ~30 µs of CPU per request when written in place, docs/performance.md).
/// That thread writes whatever has queued up at once and flushes when the queue is empty, so a
/// busy service makes one `write(2)` per batch of lines, not per line. Nothing is dropped: a full
/// queue (128k lines) makes the logging thread wait. Lines still queued are written when the
/// returned guard is dropped; keep it until the process ends. Colours only on a terminal.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    let stderr = std::io::stderr();
    let ansi = stderr.is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(64 << 10, stderr));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    match format {
        LogFormat::Pretty => builder.try_init(),
        // A span (none per request) once as `span`, not again as a one-element `spans` list.
        LogFormat::Json => builder.json().with_span_list(false).try_init(),
    }
    .map_err(|err| anyhow::anyhow!("cannot install the log subscriber: {err}"))?;
    Ok(guard)
}

/// What a secret (password, token, key) looks like wherever it is printed: logs, config dumps,
/// `Debug` output. The one definition every config section uses.
pub const REDACTED: &str = "<redacted>";

/// What an e-mail address becomes in logs.
pub const REDACTED_EMAIL: &str = "<email>";

/// Replaces every e-mail address in `text` with [`REDACTED_EMAIL`]; borrows when there is none.
///
/// An address is a non-empty local part of `[A-Za-z0-9._%+-]`, `@`, and a domain of
/// `[A-Za-z0-9.-]` holding at least one dot. Deliberately greedy: a false positive costs a
/// log detail, a false negative leaks a customer's address.
pub fn redact_emails(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::new();
    // `copied` = how much of `text` is already in `out`; `scan` = where to look for the next '@'.
    let mut copied = 0;
    let mut scan = 0;
    while let Some(offset) = text[scan..].find('@') {
        let at = scan + offset;
        let mut start = at;
        while start > copied && is_local_char(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_char(bytes[end]) {
            end += 1;
        }
        // A sentence's full stop or a dash after the address is not part of the domain.
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        if start < at && domain.contains('.') && !domain.starts_with('.') {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED_EMAIL);
            copied = end;
            scan = end;
        } else {
            scan = at + 1;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn is_local_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_address_and_keeps_the_rest() {
        assert_eq!(
            redact_emails("\"Jane.Doe@Example.com\" is not a valid email; cc a+b@x.co.uk."),
            "\"<email>\" is not a valid email; cc <email>."
        );
        assert_eq!(redact_emails("to jane@example.com"), "to <email>");
    }

    #[test]
    fn borrows_when_there_is_nothing_to_redact() {
        for text in ["no address here", "user@localhost", "@example.com", "a@ b.com", "x@.com"] {
            assert!(matches!(redact_emails(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn handles_at_signs_next_to_each_other() {
        assert_eq!(redact_emails("a@@b.com x@y.io"), "a@@b.com <email>");
        assert_eq!(redact_emails("é@ü.de jane@ex.de"), "é@ü.de <email>");
    }
}
