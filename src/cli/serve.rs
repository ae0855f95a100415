//! `cxone-ingest serve`: config -> sinks -> pipeline -> public and admin listeners, until SIGTERM/ctrl-c.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, ConfigArgs};
use crate::contract::{Contract, Schemas};
use crate::http::{self, AppState};
use crate::pipeline::{Pipeline, StoreReadiness};
use crate::shutdown::{self, Drained, Stop};
use crate::sinks::dead_letter::S3DeadLetterSink;
use crate::sinks::kafka::KafkaSink;
use crate::sinks::{DeadLetterSink, EventSink, Readiness};

/// Arguments of `cxone-ingest serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// How long sinks get to flush after the HTTP drain.
const SINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `cxone-ingest serve`: exit 0 after a graceful stop, 2 on a configuration or start-up error.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config, |name| std::env::var(name).ok())?;
    // The schema folders first: one that does not load stops the start before any sink is built.
    let schemas = Arc::new(Schemas::load(&config).map_err(anyhow::Error::msg)?);
    let prometheus = crate::metrics::install();
    let upkeep = crate::metrics::spawn_upkeep(prometheus.clone(), Duration::from_secs(5));

    let (events, dead_letters, dedupe_store) = start_sinks(&config).await?;
    let mut pipeline =
        Pipeline::new(Contract::shared_builtin(), events, dead_letters, config.server.limits());
    if let Some(readiness) = dedupe_store {
        pipeline = pipeline.with_dedupe_store(readiness);
    }
    let state = Arc::new(
        AppState::with_schemas(&config, pipeline, Some(prometheus), schemas).map_err(anyhow::Error::msg)?,
    );
    // Reloads the schema folders on SIGHUP and when they change, for as long as the server runs.
    let reloader = crate::contract::watch::spawn(Arc::clone(state.schemas()), &config.contract);
    let server = http::server::start(Arc::clone(&state), &config.server).await?;
    tracing::info!(
        listen = %server.local_addr(),
        admin_listen = %server.admin_addr(),
        path = %config.server.path,
        version = crate::build_info::VERSION,
        commit = crate::build_info::COMMIT,
        dirty = crate::build_info::DIRTY,
        schemas = %state.schemas().sets().iter().map(|set| set.name()).collect::<Vec<_>>().join(", "),
        "cxone-ingest serving"
    );

    let stop = shutdown::signal().await;
    state.start_draining();
    let pre_stop = config.server.pre_stop_delay();
    if stop == Stop::Terminate && !pre_stop.is_zero() {
        // Load balancers see /readyz 503 and stop routing here; what they still send is served.
        tracing::info!(pre_stop_delay_ms = pre_stop.as_millis() as u64, "readyz now 503; still serving");
        tokio::select! {
            () = tokio::time::sleep(pre_stop) => {}
            _ = shutdown::signal() => tracing::info!("second signal: skipping the rest of the pre-stop delay"),
        }
    }
    let drain = config.server.drain_timeout();
    tracing::info!(drain_timeout_ms = drain.as_millis() as u64, "draining in-flight requests");
    match server.shutdown(drain).await {
        Drained::Complete => tracing::info!("every in-flight request answered"),
        Drained::TimedOut => tracing::warn!("drain timeout reached; dropping the remaining connections"),
    }
    if shutdown::drain(state.pipeline().close(), SINK_CLOSE_TIMEOUT).await == Drained::TimedOut {
        tracing::warn!("sinks did not close in time");
    }
    drop(reloader);
    upkeep.abort();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The started sinks, and the shared dedupe store's readiness when one is configured.
type Sinks = (Arc<dyn EventSink>, Arc<dyn DeadLetterSink>, Option<StoreReadiness>);

/// Starts the Kafka and dead-letter sinks (and the Kafka sink's shared dedupe store). None waits
/// for its backend: an unreachable broker, bucket or store shows in `/readyz` and as 503s, not
/// as a failed start.
async fn start_sinks(config: &Config) -> anyhow::Result<Sinks> {
    let events =
        Arc::new(KafkaSink::start(&config.kafka, &config.dedupe).context("cannot start the Kafka sink")?);
    let dedupe_store = events.dedupe_store_readiness().map(|_| {
        let sink = Arc::clone(&events);
        Arc::new(move || sink.dedupe_store_readiness().unwrap_or(Readiness::Ready)) as StoreReadiness
    });
    let dead_letters =
        S3DeadLetterSink::new(&config.dead_letter).await.context("cannot start the dead-letter sink")?;
    Ok((events, Arc::new(dead_letters), dedupe_store))
}
