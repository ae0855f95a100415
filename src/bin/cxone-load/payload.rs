//! Request bodies the driver sends: the mix of kinds, unique correlation ids, padding to a size, and the HMAC signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a request is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A valid `interaction.completed` event with a fresh correlation id: must be published once.
    Valid,
    /// Schema-invalid (`channel` not in the enum, `duration_seconds` not a number): must be dead-lettered.
    Invalid,
    /// Signed but not JSON (a truncated body): dead-lettered by the service, 400 from the seed.
    Malformed,
    /// A wrong signature: must be 401 with nothing stored.
    BadSignature,
    /// An earlier valid request's exact body and signature sent again (a sender retry): published once in total.
    Repeat,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::Valid, Kind::Invalid, Kind::Malformed, Kind::BadSignature, Kind::Repeat];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Invalid => "invalid",
            Kind::Malformed => "malformed",
            Kind::BadSignature => "badsig",
            Kind::Repeat => "repeat",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of each kind, from `--mix valid=90,invalid=5,repeat=5`.
#[derive(Debug, Clone)]
pub struct Mix {
    weights: [u32; 5],
    total: u32,
}

impl Mix {
    pub fn parse(spec: &str) -> anyhow::Result<Mix> {
        let mut weights = [0u32; 5];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--mix entry '{part}' is not NAME=WEIGHT"))?;
            let kind = Kind::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
                anyhow::anyhow!("--mix: unknown kind '{name}' (valid, invalid, malformed, badsig, repeat)")
            })?;
            weights[kind.index()] = weight
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--mix: weight of '{name}' is not a whole number"))?;
        }
        let total = weights.iter().sum();
        if total == 0 {
            anyhow::bail!("--mix: all weights are zero");
        }
        Ok(Mix { weights, total })
    }

    /// The kind of request number `n`: a deterministic pseudo-random draw, so a run is reproducible.
    pub fn pick(&self, n: u64, seed: u64) -> Kind {
        let mut r = (splitmix64(n ^ seed) % u64::from(self.total)) as u32;
        for kind in Kind::ALL {
            let w = self.weights[kind.index()];
            if r < w {
                return kind;
            }
            r -= w;
        }
        Kind::Valid
    }

    pub fn describe(&self) -> String {
        Kind::ALL
            .into_iter()
            .filter(|k| self.weights[k.index()] > 0)
            .map(|k| format!("{}={}", k.name(), self.weights[k.index()]))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parses a size like `300`, `4k`, `64KiB`, `1m` into bytes.
pub fn parse_size(text: &str) -> anyhow::Result<usize> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) =
        t.strip_suffix("kib").or_else(|| t.strip_suffix("kb")).or_else(|| t.strip_suffix('k'))
    {
        (n, 1024)
    } else if let Some(n) =
        t.strip_suffix("mib").or_else(|| t.strip_suffix("mb")).or_else(|| t.strip_suffix('m'))
    {
        (n, 1024 * 1024)
    } else {
        (t.strip_suffix('b').unwrap_or(&t), 1)
    };
    let value: f64 = num.trim().parse().map_err(|_| anyhow::anyhow!("not a size: {text}"))?;
    Ok((value * f64::from(mult)) as usize)
}

/// Builds the bodies of one run. Correlation ids are `<run id>-<sequence>`, unique per request.
#[derive(Debug, Clone)]
pub struct PayloadFactory {
    /// Prefix of every correlation id of this run (lets the data check tell our records from others').
    pub run_id: String,
    /// Wanted total body size in bytes; bodies smaller than this get a `metadata.padding` string.
    pub target_size: usize,
    /// HMAC keyed with the webhook secret, cloned per request (saves the key schedule).
    mac: Hmac<Sha256>,
    /// HMAC keyed with a wrong secret, for `BadSignature` requests.
    wrong_mac: Hmac<Sha256>,
}

/// Length of the sequence part of a correlation id; fixed so every body of a kind has the same size.
const SEQ_DIGITS: usize = 10;

impl PayloadFactory {
    pub fn new(run_id: String, target_size: usize, secret: &[u8]) -> anyhow::Result<PayloadFactory> {
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|e| anyhow::anyhow!("webhook secret: {e}"))?;
        let wrong_mac = Hmac::<Sha256>::new_from_slice(b"not-the-webhook-secret")
            .map_err(|e| anyhow::anyhow!("wrong secret: {e}"))?;
        Ok(PayloadFactory { run_id, target_size, mac, wrong_mac })
    }

    #[cfg(test)]
    pub fn correlation_id(&self, seq: u64) -> String {
        let mut id = Vec::with_capacity(self.run_id.len() + 1 + SEQ_DIGITS);
        self.push_correlation_id(seq, &mut id);
        String::from_utf8_lossy(&id).into_owned()
    }

    /// Appends `<run id>-<seq, zero-padded to SEQ_DIGITS>`.
    fn push_correlation_id(&self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.run_id.as_bytes());
        out.push(b'-');
        push_decimal(out, seq, SEQ_DIGITS);
    }

    /// The sequence number of one of our correlation ids, or `None` for someone else's key.
    pub fn parse_correlation_id(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(&self.run_id)?.strip_prefix('-')?;
        rest.parse().ok()
    }

    /// The body of a request of `kind` (a `Repeat` is built by the caller from an earlier body). Written
    /// piece by piece into `out` (no formatting machinery, no allocation once `out` is large enough).
    pub fn body(&self, kind: Kind, seq: u64, out: &mut Vec<u8>) {
        let (channel, duration) = match kind {
            Kind::Invalid => ("fax", "two minutes"),
            _ => ("voice", "120"),
        };
        const PAD_OPEN: &str = r#","padding":""#;
        const TAIL: &str = "}}}";
        out.clear();
        out.extend_from_slice(
            br#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":""#,
        );
        self.push_correlation_id(seq, out);
        out.extend_from_slice(br#"","data":{"channel":""#);
        out.extend_from_slice(channel.as_bytes());
        out.extend_from_slice(br#"","duration_seconds":""#);
        out.extend_from_slice(duration.as_bytes());
        out.extend_from_slice(
            br#"","agent_id":"a-7","customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5""#,
        );
        let bare = out.len() + TAIL.len();
        let padded_overhead = bare + PAD_OPEN.len() + 1;
        if self.target_size > padded_overhead {
            out.extend_from_slice(PAD_OPEN.as_bytes());
            out.resize(out.len() + (self.target_size - padded_overhead), b'x');
            out.push(b'"');
        }
        out.extend_from_slice(TAIL.as_bytes());
        if kind == Kind::Malformed {
            // Cut the JSON in the middle of the data object: signed correctly, never parses.
            let cut = (out.len() / 2).max(1);
            out.truncate(cut);
        }
    }

    /// `X-CXone-Signature` value: lowercase hex HMAC-SHA256(secret, body). `BadSignature` requests sign
    /// with another key.
    pub fn signature(&self, kind: Kind, body: &[u8]) -> [u8; 64] {
        let mut mac = if kind == Kind::BadSignature { self.wrong_mac.clone() } else { self.mac.clone() };
        mac.update(body);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(mac.finalize().into_bytes()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        hex
    }
}

/// Appends `n` in decimal, left-padded with zeros to at least `min_width` digits (at most 20).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64, min_width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(min_width));
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_wanted_size_and_parse() {
        let f = PayloadFactory::new("t".into(), 4096, b"s").unwrap();
        let mut body = Vec::new();
        for kind in [Kind::Valid, Kind::Invalid] {
            f.body(kind, 7, &mut body);
            assert_eq!(body.len(), 4096);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["correlation_id"], "t-0000000007");
        }
        f.body(Kind::Malformed, 7, &mut body);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        let small = PayloadFactory::new("t".into(), 0, b"s").unwrap();
        small.body(Kind::Valid, 1, &mut body);
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["data"]["metadata"]["padding"]
                .is_null()
        );
    }

    #[test]
    fn mix_follows_weights_and_ids_round_trip() {
        let mix = Mix::parse("valid=3,badsig=1").unwrap();
        let picks: Vec<Kind> = (0..4000).map(|n| mix.pick(n, 1)).collect();
        let valid = picks.iter().filter(|k| **k == Kind::Valid).count();
        assert!((2800..3200).contains(&valid), "{valid}");
        assert!(picks.iter().all(|k| matches!(k, Kind::Valid | Kind::BadSignature)));
        let f = PayloadFactory::new("run1".into(), 0, b"s").unwrap();
        assert_eq!(f.parse_correlation_id(&f.correlation_id(42)), Some(42));
        assert_eq!(f.parse_correlation_id("other-42"), None);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("0.3k").unwrap(), 307);
    }

    #[test]
    fn sizes_parse_with_units_and_reject_words() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("300").unwrap(), 300);
        assert_eq!(parse_size("300b").unwrap(), 300);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1m").unwrap(), 1048576);
        assert!(parse_size("big").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn mixes_reject_unknown_kinds_bad_weights_and_all_zero() {
        assert_eq!(Mix::parse(" valid = 9 , invalid=1 ").unwrap().describe(), "valid=9,invalid=1");
        for bad in ["valid", "valid=x", "valid=-1", "fax=1", "valid=0", ""] {
            assert!(Mix::parse(bad).is_err(), "{bad:?} was accepted");
        }
        // Same seed, same kinds; another seed, another sequence.
        let mix = Mix::parse("valid=1,invalid=1").unwrap();
        let a: Vec<Kind> = (0..64).map(|n| mix.pick(n, 1)).collect();
        assert_eq!(a, (0..64).map(|n| mix.pick(n, 1)).collect::<Vec<_>>());
        assert_ne!(a, (0..64).map(|n| mix.pick(n, 2)).collect::<Vec<_>>());
    }

    #[test]
    fn signatures_are_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let f = PayloadFactory::new("t".into(), 0, b"Jefe").unwrap();
        assert_eq!(
            &f.signature(Kind::Valid, b"what do ya want for nothing?"),
            b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Invalid and malformed bodies are signed correctly too; only badsig uses another key.
        assert_eq!(f.signature(Kind::Invalid, b"x"), f.signature(Kind::Malformed, b"x"));
        assert_ne!(f.signature(Kind::BadSignature, b"x"), f.signature(Kind::Valid, b"x"));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"not-the-webhook-secret").unwrap();
        mac.update(b"x");
        assert_eq!(
            f.signature(Kind::BadSignature, b"x").to_vec(),
            hex::encode(mac.finalize().into_bytes()).into_bytes()
        );
    }

    #[test]
    fn bodies_are_the_documented_event_byte_for_byte() {
        let f = PayloadFactory::new("load-0000abcd".into(), 0, b"s").unwrap();
        let mut body = Vec::new();
        for (kind, channel, duration) in
            [(Kind::Valid, "voice", "120"), (Kind::Invalid, "fax", "two minutes")]
        {
            f.body(kind, 12_345_678_901, &mut body);
            let expected = format!(
                concat!(
                    r#"{{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"{}","#,
                    r#""data":{{"channel":"{}","duration_seconds":"{}","agent_id":"a-7","#,
                    r#""customer_email":"Jane.Doe@Example.com","metadata":{{"priority":"high","score":"4.5"}}}}}}"#
                ),
                "load-0000abcd-12345678901", channel, duration
            );
            assert_eq!(String::from_utf8(body.clone()).unwrap(), expected);
        }
    }

    #[test]
    fn decimals_are_zero_padded_to_a_minimum_width() {
        let mut out = Vec::new();
        for (n, width, expected) in [
            (0, 0, "0"),
            (7, 0, "7"),
            (7, 10, "0000000007"),
            (12_345, 3, "12345"),
            (u64::MAX, 25, "18446744073709551615"),
        ] {
            out.clear();
            push_decimal(&mut out, n, width);
            assert_eq!(out, expected.as_bytes(), "{n} {width}");
        }
    }

    #[test]
    fn invalid_bodies_break_the_schema_and_bare_bodies_are_the_bare_event() {
        // A default run id is `load-` and 8 hex digits.
        let f = PayloadFactory::new("load-0000abcd".into(), 0, b"s").unwrap();
        let mut body = Vec::new();
        f.body(Kind::Invalid, 3, &mut body);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["data"]["channel"].as_str(), v["data"]["duration_seconds"].as_str()),
            (Some("fax"), Some("two minutes"))
        );
        f.body(Kind::Valid, 3, &mut body);
        assert_eq!(body.len(), 266);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["correlation_id"], "load-0000abcd-0000000003");
        assert_eq!(v["event"], "interaction.completed");
    }
}
