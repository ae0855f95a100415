//! The `cxone-ingest` binary: parse the command line and hand over to the subcommand.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: cxone_ingest::alloc::Allocator = cxone_ingest::alloc::Allocator;

fn main() -> ExitCode {
    let cli = cxone_ingest::cli::Cli::parse();
    cxone_ingest::cli::run(cli)
}
