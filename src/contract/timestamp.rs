//! [`Timestamp`]: the Rust type of `{"type": "string", "format": "date-time"}` in the generated
//! types. It is chrono's `DateTime<Utc>`, read and written exactly as chrono's serde impls do,
//! with the common RFC 3339 shapes done by hand instead of through chrono's general format
//! machinery (which costs more than the rest of the typed decode together).
//!
//! Reading: `YYYY-MM-DDTHH:MM:SS[.1-9 digits](Z|+HH:MM|-HH:MM)` is parsed here; every other text
//! (lower-case `t`/`z`, a space, leap seconds, `UTC`, ten fraction digits, out-of-range fields, ...)
//! goes to chrono's own parser, so what is accepted, its value and the error are chrono's.
//! Writing: years 0-9999 without a leap second are formatted here, the rest by chrono; the text
//! is chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` either way.
//! `timestamp_agrees_with_chrono` (below) and the `contract_check` fuzz target hold both to that.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An instant from a `date-time` field, in UTC (the payload's offset is applied, as chrono does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl std::ops::Deref for Timestamp {
    type Target = DateTime<Utc>;

    fn deref(&self) -> &DateTime<Utc> {
        &self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(instant: DateTime<Utc>) -> Self {
        Timestamp(instant)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(timestamp: Timestamp) -> Self {
        timestamp.0
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;

    /// What chrono's `DateTime<Utc>` deserializer accepts (RFC 3339, relaxed), as that instant.
    fn from_str(text: &str) -> Result<Self, chrono::ParseError> {
        if let Some(instant) = parse_plain(text.as_bytes()) {
            return Ok(Timestamp(instant));
        }
        text.parse::<DateTime<FixedOffset>>().map(|instant| Timestamp(instant.with_timezone(&Utc)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; MAX_PLAIN_LEN];
        match format_plain(&self.0, &mut buffer) {
            Some(text) => f.write_str(text),
            None => f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; MAX_PLAIN_LEN];
        match format_plain(&self.0, &mut buffer) {
            Some(text) => serializer.serialize_str(text),
            None => self.0.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl de::Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // chrono's words, so that a typed-decode error reads the same.
        formatter.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
        text.parse().map_err(E::custom)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: the longest text `format_plain` writes.
const MAX_PLAIN_LEN: usize = 30;

/// The common shape, strictly; `None` for anything else (chrono then decides).
fn parse_plain(text: &[u8]) -> Option<DateTime<Utc>> {
    let digits = |at: usize, len: usize| -> Option<u32> {
        let field = text.get(at..at + len)?;
        field.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if text.len() < 20 || punctuation.iter().any(|&(at, byte)| text[at] != byte) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0, 4)? as i32, digits(5, 2)?, digits(8, 2)?)?;
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if second > 59 {
        return None; // a leap second: chrono's rules
    }
    let mut at = 19;
    let mut nanos = 0;
    if text[at] == b'.' {
        let count = text[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&count) {
            return None;
        }
        nanos = digits(at + 1, count)? * 10u32.pow(9 - count as u32);
        at += 1 + count;
    }
    let offset_seconds = match text.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let (hours, minutes) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let local = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    if offset_seconds == 0 {
        return Some(local.and_utc());
    }
    Some(local.checked_sub_signed(TimeDelta::seconds(offset_seconds))?.and_utc())
}

/// chrono's AutoSi RFC 3339 text with `Z`, for years 0-9999 without a leap second; `None` else.
fn format_plain<'b>(instant: &DateTime<Utc>, buffer: &'b mut [u8; MAX_PLAIN_LEN]) -> Option<&'b str> {
    // The fields of the UTC wall time; `DateTime`'s own accessors add the (zero) offset each time.
    let instant = instant.naive_utc();
    let year = instant.year();
    let nanos = instant.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    // The shortest of 3, 6 or 9 fraction digits that is exact, none for whole seconds.
    let fraction = if nanos == 0 {
        None
    } else if nanos % 1_000_000 == 0 {
        Some((nanos / 1_000_000, 3))
    } else if nanos % 1_000 == 0 {
        Some((nanos / 1_000, 6))
    } else {
        Some((nanos, 9))
    };
    let mut len = 0;
    let mut put = |lead: Option<u8>, value: u32, width: usize| {
        if let Some(lead) = lead {
            buffer[len] = lead;
            len += 1;
        }
        let mut rest = value;
        for digit in buffer[len..len + width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        len += width;
    };
    put(None, year as u32, 4);
    put(Some(b'-'), instant.month(), 2);
    put(Some(b'-'), instant.day(), 2);
    put(Some(b'T'), instant.hour(), 2);
    put(Some(b':'), instant.minute(), 2);
    put(Some(b':'), instant.second(), 2);
    if let Some((value, width)) = fraction {
        put(Some(b'.'), value, width);
    }
    buffer[len] = b'Z';
    std::str::from_utf8(&buffer[..=len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// chrono's own reading of a text, as `DateTime<Utc>`'s deserializer does it.
    fn chrono_reads(text: &str) -> Option<DateTime<Utc>> {
        text.parse::<DateTime<FixedOffset>>().ok().map(|instant| instant.with_timezone(&Utc))
    }

    fn chrono_writes(instant: &DateTime<Utc>) -> String {
        serde_json::to_string(instant).expect("chrono serializes")
    }

    /// Over a grid of shapes and edge values, `Timestamp` accepts exactly what chrono accepts, as
    /// the same instant, and writes exactly chrono's text.
    #[test]
    fn timestamp_agrees_with_chrono() {
        let dates = [
            "2026-11-28",
            "0000-01-01",
            "9999-12-31",
            "2024-02-29",
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "1970-01-01",
        ];
        let times = ["10:00:00", "00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:60:00", "07:08:09"];
        let fractions = [
            "",
            ".5",
            ".123",
            ".120",
            ".000",
            ".123456",
            ".1234567",
            ".123456789",
            ".1234567891",
            ".",
            ".000000001",
            ".999999999",
        ];
        let offsets = [
            "Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59", "+24:00", "-12:60", "+0530", "UTC",
            " Z", "",
        ];
        let separators = ["T", "t", " "];
        let mut checked = 0;
        for date in dates {
            for separator in separators {
                for time in times {
                    for fraction in fractions {
                        for offset in offsets {
                            let text = format!("{date}{separator}{time}{fraction}{offset}");
                            let ours = text.parse::<Timestamp>().ok().map(|timestamp| timestamp.0);
                            assert_eq!(ours, chrono_reads(&text), "reading {text:?}");
                            if let Some(instant) = ours {
                                let written = serde_json::to_string(&Timestamp(instant)).expect("serializes");
                                assert_eq!(written, chrono_writes(&instant), "writing {text:?}");
                                assert_eq!(
                                    format!("\"{}\"", Timestamp(instant)),
                                    written,
                                    "display of {text:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "only {checked} texts were valid");
    }

    /// Years chrono writes with a sign, and leap seconds, are written by chrono.
    #[test]
    fn out_of_range_years_and_leap_seconds_are_written_by_chrono() {
        for text in ["0000-01-01T00:00:00+01:00", "2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5Z"] {
            let instant = chrono_reads(text).expect("chrono reads it");
            let ours: Timestamp = serde_json::from_str(&format!("\"{text}\"")).expect("reads");
            assert_eq!(ours.0, instant);
            assert_eq!(serde_json::to_string(&ours).expect("writes"), chrono_writes(&instant));
        }
    }

    /// A text neither reads is refused with chrono's message.
    #[test]
    fn refusals_carry_chronos_message() {
        let ours = serde_json::from_str::<Timestamp>("\"2026-02-30T00:00:00Z\"").expect_err("refused");
        let theirs = serde_json::from_str::<DateTime<Utc>>("\"2026-02-30T00:00:00Z\"").expect_err("refused");
        assert_eq!(ours.to_string(), theirs.to_string());
    }
}
