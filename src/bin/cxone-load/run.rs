//! One run from start to end: check the arguments, start the workers (and the pacer), watch the processes, read Kafka back, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::args::{self, Args};
use crate::client::Target;
use crate::pacer::Pacer;
use crate::payload::{self, Kind, Mix, PayloadFactory};
use crate::proc_stats::Watched;
use crate::report::{self, RunFacts};
use crate::verify;
use crate::worker::{self, Shared};

/// How often the RSS of the watched processes is sampled.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// At most this many distinct failure messages go into the report.
const FAILURE_EXAMPLES: usize = 5;

/// Runs the load and the data check, prints the report; `Ok(false)` means the run failed its checks.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    let (report, passed) = measure(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::render_table(&report));
    }
    Ok(passed)
}

/// The run itself: its report, and whether it passed (some request got an answer, and the data check,
/// if asked for, passed).
async fn measure(args: &Args) -> anyhow::Result<(serde_json::Value, bool)> {
    let bounds = args.check()?;
    let target = Target::parse(&args.url).await?;
    if !target.addr.ip().is_loopback() && !args.allow_non_loopback {
        anyhow::bail!("{} is not a loopback address; pass --allow-non-loopback if you mean it", target.addr);
    }
    let mix = Mix::parse(&args.mix)?;
    let target_size = payload::parse_size(&args.payload_size)?;
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("load-{:08x}", rand::random::<u32>()));
    args::check_run_id(&run_id)?;
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
        deadline: bounds.duration_s.map(|d| start + Duration::from_secs_f64(d)),
        max_requests: bounds.max_requests,
        pacer: args.rate.map(|rate| Arc::new(Pacer::new(rate))),
        timeout: Duration::from_secs_f64(args.timeout),
        hash_bodies: check.is_some(),
    });
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampling.clone();
        let mut watched = watched.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(RSS_SAMPLE_EVERY).await;
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
    let workers: Vec<_> =
        (0..args.concurrency).map(|_| tokio::spawn(worker::worker(shared.clone()))).collect();
    let mut samples = Vec::new();
    let mut failure_examples: Vec<String> = Vec::new();
    for w in workers {
        let result = w.await??;
        samples.extend(result.samples);
        for e in result.failure_examples {
            if failure_examples.len() < FAILURE_EXAMPLES && !failure_examples.contains(&e) {
                failure_examples.push(e);
            }
        }
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
            let answers = report::answers_by_correlation(&samples, &run_id);
            let (topic, records) = check.read(Duration::from_secs_f64(args.verify_timeout)).await?;
            Some(verify::judge(topic, &records, &answers, |key| shared.factory.parse_correlation_id(key)))
        }
        None => None,
    };

    let facts = RunFacts {
        args,
        run_id: &run_id,
        mix: shared.mix.describe(),
        elapsed,
        valid_body_bytes,
        watched: &watched,
        failure_examples: &failure_examples,
        verdict: verdict.as_ref(),
    };
    let report = report::build_report(&facts, &samples);
    let answered = samples.iter().any(|s| s.status != 0);
    if !answered {
        eprintln!("cxone-load: no request got an HTTP answer");
    }
    Ok((report, answered && verdict.is_none_or(|v| v.passed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

    /// Answers like the service: 401 on a wrong signature, "dead_lettered" for the invalid payload,
    /// "published" otherwise; keep-alive; every 50th connection's first answer says `Connection: close`.
    async fn stub_server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0u32;
            while let Ok((socket, _)) = listener.accept().await {
                n += 1;
                tokio::spawn(serve(socket, n % 50 == 0));
            }
        });
        addr
    }

    async fn serve(mut socket: TcpStream, close_first: bool) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
            };
            let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 8192];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(&body);
            let signed = header("x-cxone-signature") == Some(hex::encode(mac.finalize().into_bytes()));
            let request_id = header("x-request-id").unwrap_or_default();
            let (status, answer) = if !signed {
                ("401 Unauthorized", r#"{"error":"bad signature"}"#.to_string())
            } else if body.windows(5).any(|w| w == b"\"fax\"") {
                ("200 OK", format!(r#"{{"status":"dead_lettered","request_id":"{request_id}"}}"#))
            } else {
                ("200 OK", format!(r#"{{"status":"published","request_id":"{request_id}"}}"#))
            };
            let close = close_first;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
                answer.len(),
                if close { "connection: close\r\n" } else { "" }
            );
            if socket.write_all(response.as_bytes()).await.is_err() || close {
                return;
            }
        }
    }

    fn args(addr: std::net::SocketAddr, extra: &[&str]) -> Args {
        let url = format!("http://{addr}/webhooks/cxone-data-actions");
        let mut argv = vec!["cxone-load", "--secret", SECRET, "--url", &url, "--run-id", "t1"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_loop_run_sends_every_kind_and_counts_the_answers() {
        let addr = stub_server().await;
        let a = args(
            addr,
            &["-c", "60", "-n", "600", "--mix", "valid=5,invalid=1,malformed=1,badsig=1,repeat=2"],
        );
        let (r, passed) = measure(&a).await.unwrap();
        assert!(passed);
        assert_eq!(r["requests"], 600, "{r:#}");
        assert_eq!(r["failures"], serde_json::json!({"connect": 0, "io": 0, "timeout": 0}), "{r:#}");
        let kinds = &r["by_kind"];
        // The stub publishes valid, repeated and malformed bodies alike; the driver's classes are what matter.
        for (kind, answer) in
            [("valid", "published"), ("repeat", "published"), ("invalid", "dead_lettered"), ("badsig", "401")]
        {
            let k = &kinds[kind];
            assert!(k["count"].as_u64().unwrap() > 20, "{kind}: {r:#}");
            assert_eq!(k["answers"][answer], k["count"], "{kind}: {r:#}");
        }
        let published = r["by_outcome"]["published"].as_u64().unwrap();
        let dead = r["by_outcome"]["dead_lettered"].as_u64().unwrap();
        assert_eq!(published + dead + r["by_status"]["401"].as_u64().unwrap(), 600, "{r:#}");
        assert!(r["dead_lettered_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(r["processes"][0]["label"], "driver");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_open_loop_run_keeps_to_its_schedule_and_bounds() {
        let addr = stub_server().await;
        let a = args(addr, &["-c", "4", "--rate", "2000", "-d", "0.25"]);
        let (r, passed) = measure(&a).await.unwrap();
        assert!(passed);
        // Requests 0..=499 are due strictly before 250 ms at 2000 req/s.
        assert_eq!(r["requests"], 500, "{r:#}");
        assert_eq!(r["mode"], "open");
        assert_eq!(r["by_outcome"]["published"], 500, "{r:#}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_target_that_refuses_connections_is_counted_not_fatal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (r, passed) = measure(&args(addr, &["-c", "2", "-n", "10"])).await.unwrap();
        assert!(!passed, "no answer at all fails the run");
        assert_eq!(r["failures"]["connect"], 10, "{r:#}");
        assert!(r["failure_examples"][0].as_str().unwrap().starts_with("connect: "), "{r:#}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn non_loopback_targets_need_the_flag() {
        let a = args("192.0.2.1:80".parse().unwrap(), &["-n", "1"]);
        let e = measure(&a).await.unwrap_err();
        assert!(e.to_string().contains("--allow-non-loopback"), "{e}");
    }
}
