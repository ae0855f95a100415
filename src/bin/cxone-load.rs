//! `cxone-load`: sends signed CXone webhook payloads at a fixed concurrency or rate, reports throughput and latency, and checks Kafka afterwards.
//!
//! Closed loop (`--concurrency N`): N keep-alive connections, each sends its next request as soon as the
//! previous one is answered. Open loop (`--rate R`): request k is due at `start + k/R` whatever happened
//! before, and its latency is measured from that due time, so a stalled server is not hidden by the
//! driver waiting politely (no coordinated omission). Both stop by themselves after `--duration` or
//! `--requests`. `--verify-kafka` then reads the topic with `read_committed` and fails the run (exit 1)
//! unless every request answered "published" is in the topic exactly once and nothing else is.
//! See docs/performance.md.

#[path = "cxone-load/client.rs"]
mod client;
#[path = "cxone-load/payload.rs"]
mod payload;
#[path = "cxone-load/proc_stats.rs"]
mod proc_stats;
#[path = "cxone-load/verify.rs"]
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sha2::{Digest, Sha256};

use client::{Connection, Target};
use payload::{Kind, Mix, PayloadFactory, splitmix64};
use proc_stats::Watched;

/// Load driver for `cxone-ingest serve` (and the seed reference): signed payloads, latency, and a Kafka data check.
#[derive(Parser, Debug)]
#[command(name = "cxone-load", version)]
struct Args {
    /// Webhook URL (plain http; loopback unless --allow-non-loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/cxone-data-actions")]
    url: String,
    /// HMAC secret shared with the server.
    #[arg(long, env = "CXONE_INGEST_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Number of keep-alive connections (closed loop: also the number of requests in flight).
    #[arg(short, long, default_value_t = 16)]
    concurrency: usize,
    /// Open loop: requests per second, spread over the connections; latency counts from each request's due time.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop issuing requests after this many seconds (default 10 unless --requests is given).
    #[arg(short, long)]
    duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Kinds of request and their weights: valid, invalid, malformed, badsig, repeat (a repeat resends an earlier valid request's exact body and signature).
    #[arg(long, default_value = "valid=1")]
    mix: String,
    /// Body size of valid and invalid payloads (e.g. 300, 4k, 64k); padded through `data.metadata.padding`. 0 = the bare event (~260 B).
    #[arg(long, default_value = "0")]
    payload_size: String,
    /// Give up on a request after this many seconds (counted as a timeout; the connection is replaced).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Tokio worker threads of the driver (1 = a single-threaded runtime, the cheapest).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the request-kind draw (same seed, same sequence of kinds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of this run's correlation ids (default: random).
    #[arg(long)]
    run_id: Option<String>,
    /// Name of the run in the report (e.g. "cxone-ingest" or "seed").
    #[arg(long, default_value = "run")]
    label: String,
    /// Report CPU time per request and peak RSS of another process: LABEL=PID (repeatable), e.g. server=1234.
    #[arg(long = "cpu-pid")]
    cpu_pids: Vec<String>,
    /// After the run, read this Kafka cluster (bootstrap servers) and check acknowledged = published.
    #[arg(long)]
    verify_kafka: Option<String>,
    /// Topic the server publishes to (with --verify-kafka).
    #[arg(long, default_value = "cxone.validated.events")]
    topic: String,
    /// Create the topic with this many partitions before the run if it does not exist.
    #[arg(long)]
    create_topic: Option<i32>,
    /// Deadline for reading the topic back, seconds.
    #[arg(long, default_value_t = 60.0)]
    verify_timeout: f64,
    /// Print the report as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_non_loopback: bool,
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx with status "published" (the seed says "kafka_published").
    Published,
    /// 2xx with status "dead_lettered" (the seed says "rejected").
    DeadLettered,
    /// Any other HTTP answer (401, 400, 503, …).
    OtherAnswer,
    /// No HTTP answer: see `Failure`.
    NoAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Io,
    Timeout,
}

/// One request as the driver saw it.
#[derive(Debug)]
struct Sample {
    kind: Kind,
    /// Sequence number of the correlation id sent (a repeat carries its original's).
    seq: u64,
    /// Request number, unique per HTTP request; our `X-Request-Id` is `<run id>-r<number>`.
    request_no: u64,
    /// HTTP status, 0 when there was no answer.
    status: u16,
    outcome: Outcome,
    failure: Option<Failure>,
    /// From due time (open loop) or send time (closed loop) to the end of the response.
    latency_us: u32,
    /// How late the request left after its due time (open loop only): connections were all busy.
    start_lag_us: u32,
    /// The request id the server answered with, when it is not the one we sent.
    answered_request_id: Option<Box<str>>,
    /// SHA-256 of the body of a valid request (kept only for the data check).
    body_sha256: Option<[u8; 32]>,
}

/// Settings and counters shared by the workers.
struct Shared {
    target: Target,
    factory: PayloadFactory,
    mix: Mix,
    seed: u64,
    /// Next request number to issue.
    next: AtomicU64,
    start: Instant,
    deadline: Option<Instant>,
    max_requests: Option<u64>,
    /// Open loop only: releases requests on schedule.
    pacer: Option<Arc<Pacer>>,
    timeout: Duration,
    /// Keep body hashes for the data check.
    hash_bodies: bool,
}

/// The open-loop clock: a plain thread (sub-millisecond sleeps, unlike tokio's 1 ms timer wheel) that
/// hands out one semaphore permit per request as it falls due. Request `k` is due at `start + k/rate`;
/// its latency is measured from then, however long it waited for a free connection.
struct Pacer {
    rate: f64,
    /// One permit per request that is due.
    released: tokio::sync::Semaphore,
    /// Number of requests of the run, set when the pacer stops; workers stop at this request number.
    limit: AtomicU64,
}

/// How long the pacer thread sleeps between releases (its resolution).
const PACER_TICK: Duration = Duration::from_micros(200);

impl Pacer {
    fn run(&self, start: Instant, deadline: Option<Instant>, max_requests: Option<u64>, workers: usize) {
        let mut released = 0u64;
        loop {
            let now = Instant::now();
            let past_deadline = deadline.filter(|d| now >= *d);
            // Request k is due at start + k/rate: by `now`, requests 0..=floor(t*rate) are due; the run
            // itself holds the requests due strictly before the deadline.
            let mut due = match past_deadline {
                Some(d) => ((d - start).as_secs_f64() * self.rate).ceil() as u64,
                None => ((now - start).as_secs_f64() * self.rate).floor() as u64 + 1,
            };
            if let Some(max) = max_requests {
                due = due.min(max);
            }
            if due > released {
                self.released.add_permits((due - released) as usize);
                released = due;
            }
            let finished = past_deadline.is_some() || max_requests.is_some_and(|m| released >= m);
            if finished {
                self.limit.store(released, Ordering::SeqCst);
                // Wake every worker so that each sees the limit and stops.
                self.released.add_permits(workers);
                return;
            }
            std::thread::sleep(PACER_TICK);
        }
    }
}

/// A valid request kept so that a later `repeat` can resend it byte for byte.
struct Sent {
    seq: u64,
    body: Vec<u8>,
    signature: String,
}

/// How many recent valid requests each connection keeps for repeats.
const REPEAT_WINDOW: usize = 64;
/// A connection idle this long is checked for a server-side close before it is reused.
const IDLE_CHECK: Duration = Duration::from_secs(1);

#[derive(serde::Deserialize)]
struct Answer {
    status: Option<String>,
    request_id: Option<String>,
}

async fn send_once(
    conn: &mut Option<(Connection, Instant)>,
    target: &Target,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<client::Response, Failure> {
    if conn.as_ref().is_some_and(|(c, last_used)| last_used.elapsed() > IDLE_CHECK && c.closed_by_peer()) {
        *conn = None;
    }
    let (c, _) = match conn {
        Some(c) => c,
        None => conn
            .insert((Connection::connect(target.addr).await.map_err(|_| Failure::Connect)?, Instant::now())),
    };
    c.post(target, headers, body).await.map_err(|_| Failure::Io)
}

async fn worker(shared: Arc<Shared>) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut conn: Option<(Connection, Instant)> = None;
    let mut recent: Vec<Sent> = Vec::with_capacity(REPEAT_WINDOW);
    let mut body = Vec::with_capacity(shared.factory.target_size + 512);
    loop {
        let due = match &shared.pacer {
            Some(pacer) => {
                // Open loop: wait until the pacer says one more request is due.
                match pacer.released.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                None
            }
            None => Some(Instant::now()),
        };
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        if shared.max_requests.is_some_and(|max| n >= max) {
            break;
        }
        let due = match (due, &shared.pacer) {
            (Some(now), _) => {
                if shared.deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
            (None, Some(pacer)) => {
                if n >= pacer.limit.load(Ordering::SeqCst) {
                    break;
                }
                shared.start + Duration::from_secs_f64(n as f64 / pacer.rate)
            }
            (None, None) => break,
        };
        let mut kind = shared.mix.pick(n, shared.seed);
        if kind == Kind::Repeat && recent.is_empty() {
            kind = Kind::Valid;
        }
        let (seq, signature) = if kind == Kind::Repeat {
            let earlier = &recent[(splitmix64(n) % recent.len() as u64) as usize];
            body.clear();
            body.extend_from_slice(&earlier.body);
            (earlier.seq, earlier.signature.clone())
        } else {
            shared.factory.body(kind, n, &mut body);
            (n, shared.factory.sign(kind, &body))
        };
        let request_id = format!("{}-r{n}", shared.factory.run_id);
        let headers = [("X-CXone-Signature", signature.as_str()), ("X-Request-Id", request_id.as_str())];
        let sent_at = Instant::now();
        let result =
            tokio::time::timeout(shared.timeout, send_once(&mut conn, &shared.target, &headers, &body)).await;
        let done = Instant::now();
        let mut sample = Sample {
            kind,
            seq,
            request_no: n,
            status: 0,
            outcome: Outcome::NoAnswer,
            failure: None,
            latency_us: micros(done - due),
            start_lag_us: micros(sent_at.saturating_duration_since(due)),
            answered_request_id: None,
            body_sha256: None,
        };
        match result {
            Ok(Ok(response)) => {
                sample.status = response.status;
                sample.outcome = Outcome::OtherAnswer;
                if let Ok(answer) = serde_json::from_slice::<Answer>(&response.body) {
                    if (200..300).contains(&response.status) {
                        sample.outcome = match answer.status.as_deref() {
                            Some("published" | "kafka_published") => Outcome::Published,
                            Some("dead_lettered" | "rejected") => Outcome::DeadLettered,
                            _ => Outcome::OtherAnswer,
                        };
                    }
                    if let Some(rid) = answer.request_id.filter(|rid| *rid != request_id) {
                        sample.answered_request_id = Some(rid.into_boxed_str());
                    }
                }
                match (&mut conn, response.close) {
                    (Some((_, last_used)), false) => *last_used = done,
                    _ => conn = None,
                }
            }
            Ok(Err(failure)) => {
                sample.failure = Some(failure);
                conn = None;
            }
            Err(_elapsed) => {
                sample.failure = Some(Failure::Timeout);
                conn = None;
            }
        }
        if kind == Kind::Valid {
            if shared.hash_bodies {
                sample.body_sha256 = Some(Sha256::digest(&body).into());
            }
            let sent = Sent { seq, body: body.clone(), signature };
            if recent.len() < REPEAT_WINDOW {
                recent.push(sent);
            } else {
                recent[(n % REPEAT_WINDOW as u64) as usize] = sent;
            }
        }
        samples.push(sample);
    }
    samples
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Value at quantile `q` of sorted latencies, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn latency_json(mut latencies: Vec<u32>) -> serde_json::Value {
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

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cxone-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cxone-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load and the data check, prints the report; `Ok(false)` means the run failed its checks.
async fn run(args: Args) -> anyhow::Result<bool> {
    let target = Target::parse(&args.url).await?;
    if !target.addr.ip().is_loopback() && !args.allow_non_loopback {
        anyhow::bail!("{} is not a loopback address; pass --allow-non-loopback if you mean it", target.addr);
    }
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        anyhow::bail!("--rate must be a positive number");
    }
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, None) => Some(10.0),
        (None, Some(_)) => None,
    };
    if duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    let mix = Mix::parse(&args.mix)?;
    let target_size = payload::parse_size(&args.payload_size)?;
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("load-{:08x}", rand::random::<u32>()));
    let factory = PayloadFactory::new(run_id.clone(), target_size, args.secret.as_bytes())?;
    let mut sample_body = Vec::new();
    factory.body(Kind::Valid, 0, &mut sample_body);
    let valid_body_bytes = sample_body.len();
    let mut watched: Vec<Watched> =
        args.cpu_pids.iter().map(|s| Watched::parse(s)).collect::<anyhow::Result<_>>()?;
    watched.insert(0, Watched::own());

    let check = match &args.verify_kafka {
        Some(brokers) => Some(verify::KafkaCheck::prepare(brokers, &args.topic, args.create_topic).await?),
        None => None,
    };

    for w in &mut watched {
        w.start();
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target,
        factory,
        mix,
        seed: args.seed,
        next: AtomicU64::new(0),
        start,
        deadline: duration.map(|d| start + Duration::from_secs_f64(d)),
        max_requests: args.requests,
        pacer: args.rate.map(|rate| {
            Arc::new(Pacer {
                rate,
                released: tokio::sync::Semaphore::new(0),
                limit: AtomicU64::new(u64::MAX),
            })
        }),
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        hash_bodies: check.is_some(),
    });
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampling.clone();
        let mut watched = watched.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                for w in &mut watched {
                    w.sample();
                }
            }
            watched.into_iter().map(|w| w.peak_rss).collect::<Vec<_>>()
        })
    };
    let pacer_thread = shared.pacer.clone().map(|pacer| {
        let (deadline, max, workers) = (shared.deadline, shared.max_requests, args.concurrency);
        std::thread::spawn(move || pacer.run(start, deadline, max, workers))
    });
    let workers: Vec<_> = (0..args.concurrency).map(|_| tokio::spawn(worker(shared.clone()))).collect();
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.await?);
    }
    let elapsed = start.elapsed();
    if let Some(t) = pacer_thread {
        t.join().map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    }
    for w in &mut watched {
        w.stop();
    }
    stop_sampling.store(true, Ordering::Relaxed);
    let peaks = sampler.await?;
    for (w, peak) in watched.iter_mut().zip(peaks) {
        w.peak_rss = w.peak_rss.max(peak);
    }

    let verdict = match check {
        Some(check) => {
            let answers = answers_by_correlation(&samples, &run_id);
            let (topic, records) = check.read(Duration::from_secs_f64(args.verify_timeout)).await?;
            Some(verify::judge(topic, &records, &answers, |key| shared.factory.parse_correlation_id(key)))
        }
        None => None,
    };

    let report =
        build_report(&args, &shared, &samples, elapsed, valid_body_bytes, &watched, verdict.as_ref());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    let answered = samples.iter().any(|s| s.status != 0);
    if !answered {
        eprintln!("cxone-load: no request got an HTTP answer");
    }
    Ok(answered && verdict.is_none_or(|v| v.passed))
}

/// Groups the answers per correlation id for the data check.
fn answers_by_correlation(samples: &[Sample], run_id: &str) -> HashMap<u64, verify::Answers> {
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

fn build_report(
    args: &Args,
    shared: &Shared,
    samples: &[Sample],
    elapsed: Duration,
    valid_body_bytes: usize,
    watched: &[Watched],
    verdict: Option<&verify::Verdict>,
) -> serde_json::Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let total = samples.len() as u64;
    let count = |o: Outcome| samples.iter().filter(|s| s.outcome == o).count() as u64;
    let published = count(Outcome::Published);
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
    let processes: Vec<serde_json::Value> = watched
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
        "run_id": shared.factory.run_id,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "concurrency": args.concurrency,
        "target_rate": args.rate,
        "driver_threads": args.threads,
        "mix": shared.mix.describe(),
        "valid_body_bytes": valid_body_bytes,
        "requests": total,
        "elapsed_s": round3(secs),
        "requests_per_s": (total as f64 / secs * 10.0).round() / 10.0,
        "published_per_s": (published as f64 / secs * 10.0).round() / 10.0,
        "latency_ms": latency_json(samples.iter().map(|s| s.latency_us).collect()),
        "late_starts_over_10ms": late,
        "by_status": by_status,
        "by_outcome": {
            "published": published,
            "dead_lettered": count(Outcome::DeadLettered),
            "other_answer": count(Outcome::OtherAnswer),
            "no_answer": count(Outcome::NoAnswer),
        },
        "failures": { "connect": failures(Failure::Connect), "io": failures(Failure::Io), "timeout": failures(Failure::Timeout) },
        "by_kind": by_kind,
        "processes": processes,
        "data_check": verdict,
    })
}

fn render_table(r: &serde_json::Value) -> String {
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
        "  throughput    {} requests in {} s = {} req/s   (published {} /s)",
        r["requests"], r["elapsed_s"], r["requests_per_s"], r["published_per_s"]
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
    if let Some(procs) = r["processes"].as_array() {
        for p in procs {
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
        if let Some(examples) = v["examples"].as_array().filter(|e| !e.is_empty()) {
            for e in examples {
                let _ = writeln!(out, "                {}", str_of(e));
            }
        }
    }
    out
}

fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}
