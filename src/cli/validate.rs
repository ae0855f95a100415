//! `cxone-ingest validate`: check payloads against the schemas, offline.

use std::process::ExitCode;

/// Arguments of `cxone-ingest validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `cxone-ingest validate`.
pub fn run(_args: Args) -> ExitCode {
    ExitCode::from(2)
}
