//! `cxone-ingest replay`.

use std::process::ExitCode;

/// Arguments of `cxone-ingest replay`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `cxone-ingest replay`.
pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
