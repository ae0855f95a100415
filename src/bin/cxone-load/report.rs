//! What a run adds up to: rates, latency quantiles, counts by status, answer and kind, process costs, as JSON and as a table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::args::Args;
use crate::payload::Kind;
use crate::proc_stats::Watched;
use crate::verify;
use crate::worker::{Failure, Outcome, Sample};

/// Everything the report is made of, besides the samples.
pub struct RunFacts<'a> {
    pub args: &'a Args,
    pub run_id: &'a str,
    pub mix: String,
    pub elapsed: Duration,
    pub valid_body_bytes: usize,
    pub watched: &'a [Watched],
    pub failure_examples: &'a [String],
    pub verdict: Option<&'a verify::Verdict>,
}

/// Value at quantile `q` of sorted latencies, in milliseconds.
pub fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

pub fn latency_json(mut latencies: Vec<u32>) -> serde_json::Value {
    latencies.sort_unstable();
    let mean = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().map(|&l| f64::from(l)).sum::<f64>() / latencies.len() as f64 / 1000.0
    };
    json!({
        "p50": round3(quantile_ms(&latencies, 0.50)),
        "p90": round3(quantile_ms(&latencies, 0.90)),
        "p99": round3(quantile_ms(&latencies, 0.99)),
        "p999": round3(quantile_ms(&latencies, 0.999)),
        "max": round3(quantile_ms(&latencies, 1.0)),
        "mean": round3(mean),
    })
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn per_s(count: u64, secs: f64) -> f64 {
    (count as f64 / secs * 10.0).round() / 10.0
}

/// Groups the answers per correlation id for the data check.
pub fn answers_by_correlation(samples: &[Sample], run_id: &str) -> HashMap<u64, verify::Answers> {
    let mut answers: HashMap<u64, verify::Answers> = HashMap::new();
    for s in samples {
        if s.kind == Kind::BadSignature {
            // Never accepted, and its correlation id is not reused: a record under it is a lie.
            answers.entry(s.seq).or_default().refused = true;
            continue;
        }
        let a = answers.entry(s.seq).or_default();
        match s.outcome {
            Outcome::Published => a.published_request_ids.push(match &s.answered_request_id {
                Some(rid) => rid.to_string(),
                None => format!("{run_id}-r{}", s.request_no),
            }),
            Outcome::DeadLettered | Outcome::OtherAnswer => a.refused = true,
            Outcome::NoAnswer => a.unknown = true,
        }
        if let Some(hash) = s.body_sha256 {
            a.body_sha256 = Some(hex::encode(hash));
        }
    }
    answers
}

pub fn build_report(facts: &RunFacts<'_>, samples: &[Sample]) -> serde_json::Value {
    let args = facts.args;
    let secs = facts.elapsed.as_secs_f64().max(1e-9);
    let total = samples.len() as u64;
    let count = |o: Outcome| samples.iter().filter(|s| s.outcome == o).count() as u64;
    let published = count(Outcome::Published);
    let dead_lettered = count(Outcome::DeadLettered);
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples {
        let key = if s.status == 0 { "none".to_string() } else { s.status.to_string() };
        *by_status.entry(key).or_default() += 1;
    }
    let failures = |f: Failure| samples.iter().filter(|s| s.failure == Some(f)).count() as u64;
    let mut by_kind = serde_json::Map::new();
    for kind in Kind::ALL {
        let of_kind: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        for s in &of_kind {
            let key = match s.outcome {
                Outcome::Published => "published".to_string(),
                Outcome::DeadLettered => "dead_lettered".to_string(),
                Outcome::OtherAnswer => s.status.to_string(),
                Outcome::NoAnswer => "none".to_string(),
            };
            *statuses.entry(key).or_default() += 1;
        }
        by_kind.insert(
            kind.name().to_string(),
            json!({
                "count": of_kind.len(),
                "answers": statuses,
                "latency_ms": latency_json(of_kind.iter().map(|s| s.latency_us).collect()),
            }),
        );
    }
    let processes: Vec<serde_json::Value> = facts
        .watched
        .iter()
        .map(|w| {
            let cpu = w.cpu_used().map(|d| d.as_secs_f64());
            json!({
                "label": w.label,
                "pid": w.pid,
                "cpu_seconds": cpu.map(round3),
                "cores": cpu.map(|c| round3(c / secs)),
                "cpu_us_per_request": cpu.filter(|_| total > 0).map(|c| (c * 1e7 / total as f64).round() / 10.0),
                "peak_rss_mib": round3(w.peak_rss as f64 / 1048576.0),
                "end_rss_mib": round3(w.end_rss as f64 / 1048576.0),
            })
        })
        .collect();
    let late = samples.iter().filter(|s| s.start_lag_us > 10_000).count();
    json!({
        "label": args.label,
        "url": args.url,
        "run_id": facts.run_id,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "concurrency": args.concurrency,
        "target_rate": args.rate,
        "driver_threads": args.threads,
        "mix": facts.mix,
        "valid_body_bytes": facts.valid_body_bytes,
        "requests": total,
        "elapsed_s": round3(secs),
        "requests_per_s": per_s(total, secs),
        "published_per_s": per_s(published, secs),
        "dead_lettered_per_s": per_s(dead_lettered, secs),
        "latency_ms": latency_json(samples.iter().map(|s| s.latency_us).collect()),
        "late_starts_over_10ms": late,
        "by_status": by_status,
        "by_outcome": {
            "published": published,
            "dead_lettered": dead_lettered,
            "other_answer": count(Outcome::OtherAnswer),
            "no_answer": count(Outcome::NoAnswer),
        },
        "failures": { "connect": failures(Failure::Connect), "io": failures(Failure::Io), "timeout": failures(Failure::Timeout) },
        "failure_examples": facts.failure_examples,
        "by_kind": by_kind,
        "processes": processes,
        "data_check": facts.verdict,
    })
}

pub fn render_table(r: &serde_json::Value) -> String {
    let mut out = String::new();
    let lat = |v: &serde_json::Value| {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
            v["p50"], v["p90"], v["p99"], v["p999"], v["max"], v["mean"]
        )
    };
    let _ = writeln!(
        out,
        "cxone-load [{}] run {} -> {}",
        str_of(&r["label"]),
        str_of(&r["run_id"]),
        str_of(&r["url"])
    );
    let mode = match r["target_rate"].as_f64() {
        Some(rate) => format!("open loop at {rate} req/s over {} connections", r["concurrency"]),
        None => format!("closed loop, {} connections", r["concurrency"]),
    };
    let _ = writeln!(out, "  mode          {mode}, driver threads {}", r["driver_threads"]);
    let _ = writeln!(out, "  mix           {}   valid body {} B", str_of(&r["mix"]), r["valid_body_bytes"]);
    let _ = writeln!(
        out,
        "  throughput    {} requests in {} s = {} req/s   (published {} /s, dead-lettered {} /s)",
        r["requests"], r["elapsed_s"], r["requests_per_s"], r["published_per_s"], r["dead_lettered_per_s"]
    );
    let _ = writeln!(out, "  latency ms    {}", lat(&r["latency_ms"]));
    if r["mode"] == "open" {
        let _ = writeln!(
            out,
            "  late starts   {} requests left >10 ms after their due time",
            r["late_starts_over_10ms"]
        );
    }
    let join = |m: &serde_json::Value| {
        m.as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("  "))
            .unwrap_or_default()
    };
    let _ = writeln!(out, "  by status     {}", join(&r["by_status"]));
    let _ = writeln!(out, "  by outcome    {}", join(&r["by_outcome"]));
    let _ = writeln!(out, "  failures      {}", join(&r["failures"]));
    for e in r["failure_examples"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "                first {}", str_of(e));
    }
    let _ = writeln!(
        out,
        "  by kind       {:<10} {:>9}  {:>9} {:>9}  answers",
        "kind", "count", "p50 ms", "p99 ms"
    );
    if let Some(kinds) = r["by_kind"].as_object() {
        for (name, k) in kinds {
            let _ = writeln!(
                out,
                "                {:<10} {:>9}  {:>9} {:>9}  {}",
                name,
                k["count"].to_string(),
                k["latency_ms"]["p50"].to_string(),
                k["latency_ms"]["p99"].to_string(),
                join(&k["answers"])
            );
        }
    }
    for p in r["processes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  cpu {:<9} {} cores, {} us/request, peak RSS {} MiB (end {} MiB)",
            str_of(&p["label"]),
            p["cores"],
            p["cpu_us_per_request"],
            p["peak_rss_mib"],
            p["end_rss_mib"]
        );
    }
    let v = &r["data_check"];
    if !v.is_null() {
        let _ = writeln!(
            out,
            "  data check    topic {}: {} records, acknowledged {}, found once {}, missing {}, duplicated ids {}, \
             refused-but-published {}, unanswered-but-published {}, foreign {}, request_id mismatch {} (of {} with the header), \
             body hash mismatch {} (of {} compared), value mismatch {} -> {}",
            str_of(&v["topic"]),
            v["records_read"],
            v["acknowledged"],
            v["found_once"],
            v["missing"],
            v["duplicated_ids"],
            v["published_but_refused"],
            v["published_unanswered"],
            v["foreign"],
            v["request_id_mismatch"],
            v["with_request_id_header"],
            v["body_hash_mismatch"],
            v["body_hash_checked"],
            v["value_mismatch"],
            if v["passed"] == true { "PASSED" } else { "FAILED" }
        );
        for e in v["examples"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "                {}", str_of(e));
        }
    }
    out
}

fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn sample(
        kind: Kind,
        seq: u64,
        request_no: u64,
        status: u16,
        outcome: Outcome,
        latency_us: u32,
    ) -> Sample {
        Sample {
            kind,
            seq,
            request_no,
            status,
            outcome,
            failure: (status == 0).then_some(Failure::Timeout),
            latency_us,
            start_lag_us: 0,
            answered_request_id: None,
            body_sha256: None,
        }
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let sorted: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&sorted, 0.5), 500.0);
        assert_eq!(quantile_ms(&sorted, 0.99), 990.0);
        assert_eq!(quantile_ms(&sorted, 0.999), 999.0);
        assert_eq!(quantile_ms(&sorted, 1.0), 1000.0);
        assert_eq!(quantile_ms(&sorted[..1], 0.5), 1.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
        let l = latency_json(vec![3000, 1000, 2000]);
        assert_eq!(
            (l["p50"].as_f64(), l["max"].as_f64(), l["mean"].as_f64()),
            (Some(2.0), Some(3.0), Some(2.0))
        );
    }

    #[test]
    fn answers_group_by_correlation_id() {
        let mut repeat = sample(Kind::Repeat, 1, 5, 200, Outcome::Published, 1);
        repeat.answered_request_id = Some("run-r1".into());
        let samples = [
            sample(Kind::Valid, 1, 1, 200, Outcome::Published, 1),
            repeat,
            sample(Kind::Invalid, 2, 2, 200, Outcome::DeadLettered, 1),
            sample(Kind::BadSignature, 3, 3, 401, Outcome::OtherAnswer, 1),
            sample(Kind::Valid, 4, 4, 0, Outcome::NoAnswer, 1),
        ];
        let a = answers_by_correlation(&samples, "run");
        assert_eq!(a[&1].published_request_ids, ["run-r1", "run-r1"]);
        assert!(a[&2].refused && a[&3].refused && a[&4].unknown);
        assert!(!a[&1].refused && !a[&1].unknown);
    }

    #[test]
    fn the_report_counts_rates_outcomes_and_kinds() {
        let args = crate::args::Args::parse_from(["cxone-load", "--secret", "s", "--label", "t"]);
        let mut samples = Vec::new();
        for i in 0..8 {
            samples.push(sample(Kind::Valid, i, i, 200, Outcome::Published, 2000));
        }
        samples.push(sample(Kind::Invalid, 8, 8, 200, Outcome::DeadLettered, 4000));
        samples.push(sample(Kind::BadSignature, 9, 9, 401, Outcome::OtherAnswer, 1000));
        samples.push(sample(Kind::Valid, 10, 10, 0, Outcome::NoAnswer, 30_000_000));
        let examples = ["timeout: no answer within 30s".to_string()];
        let facts = RunFacts {
            args: &args,
            run_id: "run",
            mix: "valid=8,invalid=1,badsig=1".into(),
            elapsed: Duration::from_secs(2),
            valid_body_bytes: 266,
            watched: &[],
            failure_examples: &examples,
            verdict: None,
        };
        let r = build_report(&facts, &samples);
        assert_eq!(r["requests"], 11);
        assert_eq!(r["requests_per_s"], 5.5);
        assert_eq!(r["published_per_s"], 4.0);
        assert_eq!(r["dead_lettered_per_s"], 0.5);
        assert_eq!(
            r["by_outcome"],
            json!({"published": 8, "dead_lettered": 1, "other_answer": 1, "no_answer": 1})
        );
        assert_eq!(r["by_status"], json!({"200": 9, "401": 1, "none": 1}));
        assert_eq!(r["failures"], json!({"connect": 0, "io": 0, "timeout": 1}));
        assert_eq!(r["by_kind"]["valid"]["answers"], json!({"published": 8, "none": 1}));
        assert_eq!(r["by_kind"]["badsig"]["answers"], json!({"401": 1}));
        assert_eq!(r["by_kind"]["invalid"]["latency_ms"]["p50"], 4.0);
        let table = render_table(&r);
        assert!(table.contains("= 5.5 req/s   (published 4.0 /s, dead-lettered 0.5 /s)"), "{table}");
        assert!(table.contains("first timeout: no answer within 30s"), "{table}");
        assert!(table.contains("badsig"), "{table}");
    }
}
