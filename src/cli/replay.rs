//! `cxone-ingest replay`: the command line around [`crate::replay`] (config, replay lock, Kafka
//! sink, progress bar, JSON summary on stdout).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDate;
use sha2::Digest as _;

use crate::config::{Config, ConfigArgs};
use crate::contract::Schemas;
use crate::dedupe::DedupeStore;
use crate::dedupe::lock::ReplayLock;
use crate::dedupe::redis::RedisStore;
use crate::replay::{DeadLetterStore, Progress, ReplayOptions, parse_day, replay};
use crate::sinks::EventSink;
use crate::sinks::dead_letter::writer::{SdkRetries, build_client};
use crate::sinks::kafka::KafkaSink;

/// Arguments of `cxone-ingest replay`. S3 and Kafka settings come from the same config file,
/// environment and flags as `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// First day (UTC, `YYYY-MM-DD`, inclusive) of dead letters to replay, by their `dt=` partition.
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub since: Option<NaiveDate>,
    /// Last day (UTC, `YYYY-MM-DD`, inclusive); default: no upper bound (today with `--since`).
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<NaiveDate>,
    /// Judge every dead letter against the current schemas and report; publish and mark nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Dead letters handled at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// How long one event may wait for its Kafka commit before it counts as failed (ms).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub publish_timeout_ms: u64,
}

/// Runs `cxone-ingest replay`: exit 0 when every dead letter was handled (published, skipped or
/// still invalid), 1 when some failed (see `failures` in the summary), 2 on a usage or setup error.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = Config::load_without_signatures(&args.config)?;
    // `--schemas DIR` names the set this run judges by (e.g. the one `schemas what-if` tried):
    // every dead letter is judged by it, whatever folder its source names in the config.
    if args.config.schemas_dir.is_some() {
        for source in &mut config.sources {
            source.schemas_dir = None;
        }
    }
    // A publish that waits longer than the transaction timeout outlives the bound after which
    // another replica takes its claim over: the same event could then be published twice.
    anyhow::ensure!(
        args.publish_timeout_ms <= config.kafka.transaction_timeout_ms,
        "--publish-timeout-ms {} is longer than kafka.transaction_timeout_ms ({}): use at most that",
        args.publish_timeout_ms,
        config.kafka.transaction_timeout_ms
    );
    // Each dead letter is judged by the schemas its source is judged by (`[[sources]]`'
    // `schemas_dir`, `contract.schemas_dir`, or the built-in set; `--schemas` for all), loaded
    // once for the run.
    let schemas = Schemas::load(&config).map_err(anyhow::Error::msg)?;
    let client = build_client(&config.dead_letter, SdkRetries::Standard).await?;
    let store = DeadLetterStore {
        client,
        bucket: config.dead_letter.bucket.clone(),
        prefix: config.dead_letter.normalized_prefix().to_owned(),
    };
    let options = ReplayOptions {
        since: args.since,
        until: args.until,
        dry_run: args.dry_run,
        concurrency: usize::from(args.concurrency),
        publish_timeout: Duration::from_millis(args.publish_timeout_ms),
    };
    // With a shared dedupe store, one replay at a time per dead-letter location: a second run
    // refuses to start, naming the holder.
    let lock = match (&config.dedupe.store, args.dry_run) {
        (DedupeStore::Redis(url), false) => {
            let redis = RedisStore::connect_with_ca(
                url,
                config.dedupe.store.redacted(),
                config.dedupe.ca_file.as_deref(),
            )?;
            let key = ReplayLock::key(&store.bucket, &store.prefix);
            Some(ReplayLock::acquire(redis, key, lock_holder()).await?)
        }
        _ => None,
    };
    let sink: Option<Arc<KafkaSink>> = if args.dry_run {
        None
    } else {
        let mut kafka = config.kafka.clone();
        // Its own transactional.id: sharing the server's would fence the server's producer, and
        // sharing another replay's (of another dead-letter location, on the same host) would
        // fence that one. One per location: a restarted replay of it fences its own zombie.
        kafka.instance_id =
            Some(replay_instance_id(&kafka.resolved_instance_id(), &store.bucket, &store.prefix));
        Some(Arc::new(KafkaSink::start(&kafka, &config.dedupe).context("starting the Kafka sink")?))
    };

    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner().with_message("listing dead letters")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let on_progress = |progress: Progress| match progress {
        Progress::Found(total) => {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} dead letters ({eta} left)")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_length(total);
        }
        Progress::Handled => bar.inc(1),
    };
    let run =
        replay(&store, &schemas, sink.as_deref().map(|sink| sink as &dyn EventSink), &options, &on_progress);
    // A replay that lost its lock stops: another run may have taken over these dead letters.
    let result = match &lock {
        Some(lock) => tokio::select! {
            result = run => result,
            () = lock.lost() => Err(anyhow::anyhow!(
                "stopped: the replay lock was lost (the dedupe store was unreachable longer than the \
                 lock's {} s TTL, or another run took it); run replay again to finish",
                crate::dedupe::lock::LOCK_TTL.as_secs()
            )),
        },
        None => run.await,
    };
    bar.finish_and_clear();
    if let Some(sink) = &sink {
        sink.close().await;
    }
    if let Some(lock) = lock {
        lock.release().await;
    }
    let summary = result?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The instance part of a replay's `transactional.id`: `replay-<instance>-<8 hex digits of the
/// dead-letter location>`, so replays of different locations on one host never fence each other,
/// and a restarted replay of one location fences its own zombie.
fn replay_instance_id(instance: &str, bucket: &str, prefix: &str) -> String {
    let location = sha2::Sha256::digest(format!("{bucket}/{prefix}").as_bytes());
    format!("replay-{instance}-{}", hex::encode(&location[..4]))
}

/// Who holds the replay lock, as a second run is told: host, pid, start time, run id.
fn lock_holder() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!(
        "replay on {host} pid {} started {} run {}",
        std::process::id(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: two replays on one host shared `replay-<host>` and fenced each other.
    #[test]
    fn replays_of_different_locations_have_their_own_transactional_ids() {
        let a = replay_instance_id("pod-1", "bucket", "bu-east/errors");
        assert_eq!(a, replay_instance_id("pod-1", "bucket", "bu-east/errors"), "stable per location");
        assert_ne!(a, replay_instance_id("pod-1", "bucket", "bu-west/errors"));
        assert_ne!(a, replay_instance_id("pod-1", "other-bucket", "bu-east/errors"));
        assert!(a.starts_with("replay-pod-1-") && a.len() == "replay-pod-1-".len() + 8, "{a}");
    }
}
