//! `cxone-load`: sends signed CXone webhook payloads at a fixed concurrency or rate, reports throughput and latency, and checks Kafka afterwards.
//!
//! Closed loop (`--concurrency N`): N keep-alive connections, each sends its next request as soon as the
//! previous one is answered. Open loop (`--rate R`): request k is due at `start + k/R` whatever happened
//! before, and its latency is measured from that due time, so a stalled server is not hidden by the
//! driver waiting politely (no coordinated omission). Both stop by themselves after `--duration` or
//! `--requests`. `--verify-kafka` then reads the topic with `read_committed` and fails the run (exit 1)
//! unless every request answered "published" is in the topic exactly once and nothing else is.
//! See docs/performance.md.
//!
//! Modules: `args` (command line), `run` (one run end to end), `worker` (one connection's loop),
//! `pacer` (open-loop clock), `client` (hyper HTTP/1.1 connection), `payload` (bodies and signatures),
//! `report` (JSON and table), `proc_stats` (CPU and RSS from /proc), `verify` (the Kafka data check).

mod args;
mod client;
mod pacer;
mod payload;
mod proc_stats;
mod report;
mod run;
mod verify;
mod worker;

use std::process::ExitCode;

use clap::Parser;

/// The same allocator as the service: the driver shares the cores with it, so it should cost as
/// little CPU per request as it can.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = args::Args::parse();
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
    match runtime.block_on(run::run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cxone-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
