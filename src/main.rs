//! The `cxone-ingest` binary: parse the command line and hand over to the subcommand.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cxone_ingest::cli::Cli::parse();
    cxone_ingest::cli::run(cli)
}
