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

    pub fn correlation_id(&self, seq: u64) -> String {
        format!("{}-{seq:0width$}", self.run_id, width = SEQ_DIGITS)
    }

    /// The sequence number of one of our correlation ids, or `None` for someone else's key.
    pub fn parse_correlation_id(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(&self.run_id)?.strip_prefix('-')?;
        rest.parse().ok()
    }

    /// The body of a request of `kind` (a `Repeat` is built by the caller from an earlier body).
    pub fn body(&self, kind: Kind, seq: u64, out: &mut Vec<u8>) {
        let (channel, duration) = match kind {
            Kind::Invalid => ("fax", "two minutes"),
            _ => ("voice", "120"),
        };
        let head = format!(
            concat!(
                r#"{{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"{}","#,
                r#""data":{{"channel":"{}","duration_seconds":"{}","agent_id":"a-7","#,
                r#""customer_email":"Jane.Doe@Example.com","metadata":{{"priority":"high","score":"4.5""#
            ),
            self.correlation_id(seq),
            channel,
            duration
        );
        const PAD_OPEN: &str = r#","padding":""#;
        const TAIL: &str = "}}}";
        out.clear();
        out.extend_from_slice(head.as_bytes());
        let bare = head.len() + TAIL.len();
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

    /// `X-CXone-Signature` value: hex HMAC-SHA256(secret, body). `BadSignature` requests sign with another key.
    pub fn sign(&self, kind: Kind, body: &[u8]) -> String {
        let mut mac = if kind == Kind::BadSignature { self.wrong_mac.clone() } else { self.mac.clone() };
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }
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
}
