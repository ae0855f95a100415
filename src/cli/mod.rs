//! The command line: one subcommand per job, each in its own file with its `Args` and `run`.

pub mod config;
pub mod cxone;
pub mod replay;
pub mod schemas;
pub mod serve;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

/// `cxone-ingest`: CXone Data Action webhooks -> Kafka (exactly once) and S3 dead letters.
#[derive(Debug, Parser)]
#[command(name = "cxone-ingest", version = crate::build_info::version_line(), about, propagate_version = true)]
pub struct Cli {
    /// Log format: `pretty` for terminals, `json` for log collectors.
    #[arg(long, global = true, env = "CXONE_INGEST_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax (e.g. `info,cxone_ingest=debug`).
    #[arg(long, global = true, env = "CXONE_INGEST_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate payloads against the schemas, offline (exit 0 valid, 1 invalid, 2 usage or I/O error).
    Validate(validate::Args),
    /// Run the webhook server.
    Serve(Box<serve::Args>),
    /// Inspect the configuration.
    Config(config::Args),
    /// Re-drive dead letters through the current schemas into Kafka, exactly once.
    Replay(Box<replay::Args>),
    /// Talk to the CXone API (check OAuth credentials).
    Cxone(cxone::Args),
    /// Work on schema folders: `check` compares two for compatibility (exit 0 compatible or a new
    /// major version, 1 senders break without one, 2 usage or load error); `what-if` runs recent
    /// topic records and dead letters through a new folder.
    Schemas(schemas::Args),
}

/// Runs the chosen subcommand and turns its result into the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        // `validate` is an offline filter: its stdout is the product, so it logs nothing.
        Command::Validate(args) => validate::run(args),
        // So is `schemas`: its stdout is the verdict (`what-if` runs its own async runtime).
        Command::Schemas(args) => schemas::run(args),
        command => {
            let log_writer = match telemetry::init(cli.log_format, &cli.log) {
                Ok(guard) => guard,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: cannot start the async runtime: {err}");
                    return ExitCode::from(2);
                }
            };
            let result = runtime.block_on(async move {
                match command {
                    Command::Serve(args) => serve::run(*args).await,
                    Command::Config(args) => config::run(args).await,
                    Command::Replay(args) => replay::run(*args).await,
                    Command::Cxone(args) => cxone::run(args).await,
                    Command::Validate(_) | Command::Schemas(_) => unreachable!("handled above"),
                }
            });
            // Every queued log line is out before the last word (and before the process ends).
            drop(runtime);
            drop(log_writer);
            match result {
                Ok(code) => code,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
