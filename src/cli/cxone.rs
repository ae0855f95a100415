//! `cxone-ingest cxone`: talk to the CXone API; `cxone token` checks the OAuth credentials.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cxone::{CxoneConfig, CxoneError, TokenManager};

/// Arguments of `cxone-ingest cxone`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CxoneCommand,
}

/// What to do against CXone.
#[derive(Debug, clap::Subcommand)]
pub enum CxoneCommand {
    /// Fetch an OAuth token with the configured client credentials and print its expiry (never the token).
    /// Exit 0 when CXone issued a token, 1 when it refused or could not be reached, 2 on a configuration error.
    Token(TokenArgs),
}

/// Where the `[cxone]` settings come from: config file, then `CXONE_INGEST_CXONE_*` env, then these flags.
/// The client secret is never a flag: use `CXONE_INGEST_CXONE_CLIENT_SECRET` or a secret file.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Config file whose `[cxone]` section is used (the rest is parsed, not validated).
    #[arg(long, env = "CXONE_INGEST_CONFIG")]
    pub config: Option<PathBuf>,
    /// CXone organisation id, for `https://{org}.api.nice.incontact.com/oauth2/token` (env `CXONE_INGEST_CXONE_ORG`).
    #[arg(long)]
    pub org: Option<String>,
    /// Full token endpoint URL, overriding the org template (env `CXONE_INGEST_CXONE_TOKEN_URL`).
    #[arg(long)]
    pub token_url: Option<String>,
    /// OAuth client id (env `CXONE_INGEST_CXONE_CLIENT_ID`).
    #[arg(long)]
    pub client_id: Option<String>,
    /// File holding the client secret (env `CXONE_INGEST_CXONE_CLIENT_SECRET_FILE`).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes to request (env `CXONE_INGEST_CXONE_SCOPE`).
    #[arg(long)]
    pub scope: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Retries of 5xx/network failures.
    #[arg(long)]
    pub max_retries: Option<u32>,
}

/// Runs `cxone-ingest cxone`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CxoneCommand::Token(args) => token(args).await,
    }
}

/// `cxone token`: one token request through the real token manager; prints expiry, scope and type.
async fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let config = effective_config(&args)?;
    let manager = match TokenManager::new(&config) {
        Ok(manager) => manager,
        Err(CxoneError::Config(message)) => anyhow::bail!("{message}"),
        Err(other) => return Err(other.into()),
    };
    match manager.token().await {
        Ok(token) => {
            let valid_for = token.valid_for().as_secs();
            println!("CXone issued a {} token at {}", token.token_type(), manager.token_url());
            println!("expires_at: {}", token.expires_at().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            println!("valid_for_secs: {valid_for}");
            println!("scope: {}", token.scope().unwrap_or("(not stated)"));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Defaults < `[cxone]` in the config file < environment < flags.
fn effective_config(args: &TokenArgs) -> anyhow::Result<CxoneConfig> {
    let mut config = match &args.config {
        Some(path) => cxone_section(path)?,
        None => CxoneConfig::default(),
    };
    config.overlay_env();
    if let Some(org) = &args.org {
        config.org = org.clone();
    }
    if let Some(url) = &args.token_url {
        config.token_url = Some(url.clone());
    }
    if let Some(id) = &args.client_id {
        config.client_id = id.clone();
    }
    if let Some(path) = &args.client_secret_file {
        config.client_secret = None;
        config.client_secret_file = Some(path.clone());
    }
    if let Some(scope) = &args.scope {
        config.scope = scope.clone();
    }
    if let Some(timeout) = args.timeout_secs {
        config.timeout_secs = timeout;
    }
    if let Some(retries) = args.max_retries {
        config.max_retries = retries;
    }
    Ok(config)
}

/// The `[cxone]` section of a config file, parsed with the service's own config types (so a typo anywhere in the
/// file is reported) but without the service's validation: `cxone token` needs no webhook secret or Kafka.
fn cxone_section(path: &std::path::Path) -> anyhow::Result<CxoneConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config = crate::config::Config::from_toml(&text)
        .map_err(|message| anyhow::anyhow!("config file {} is not valid: {message}", path.display()))?;
    Ok(config.cxone)
}
