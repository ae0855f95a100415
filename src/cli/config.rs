//! `cxone-ingest config check`: load and validate the configuration, print it with secrets redacted.

use std::process::ExitCode;

use crate::config::{Config, ConfigArgs};

/// Arguments of `cxone-ingest config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// What to do with the configuration.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Load file + environment + flags exactly as `serve` would, validate, and print the effective
    /// config as TOML with every secret redacted. Exit 0 when valid, 1 when not (problems on stderr).
    Check(ConfigArgs),
}

/// Runs `cxone-ingest config`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Check(config_args) => {
            // The schema folders are loaded as `serve` loads them at start: one that does not load
            // is a problem here too, naming the file.
            let loaded = Config::load(&config_args, |name| std::env::var(name).ok())
                .map_err(|err| err.to_string())
                .and_then(|config| crate::contract::Schemas::load(&config).map(|_| config));
            match loaded {
                Ok(config) => {
                    print!("{}", config.to_redacted_toml());
                    eprintln!("configuration is valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
