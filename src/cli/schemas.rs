//! `cxone-ingest schemas`: work on schema folders; `check` is the compatibility gate, `what-if`
//! runs recent real traffic through a new folder.
//!
//! `schemas check OLD_DIR NEW_DIR` exits 0 when no family breaks senders (or each that does comes
//! with a new major version), 1 when one breaks senders without a new major version, 2 on a usage
//! error or a folder that does not load.
//!
//! `schemas what-if --schemas NEW_DIR` exits 0 when it ran (whatever it found; 1 with
//! `--fail-on-newly-invalid` when a topic record would be refused), 2 on a usage error, a folder
//! that does not load, or Kafka or S3 that cannot be read.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, ConfigArgs, LocationArgs};
use crate::contract::Contract;
use crate::contract::compat::{self, Family, Report, Side};
use crate::what_if::{self, Window, parse_span, report::ReplayInvocation};

/// Arguments of `cxone-ingest schemas`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SchemasCommand,
}

/// The `schemas` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SchemasCommand {
    /// Compare two schema folders family by family: which changes break senders (payloads valid
    /// before are refused) and which break readers (payloads refused before are accepted).
    Check(CheckArgs),
    /// Run recent real traffic through a new schema folder, read-only: which committed topic
    /// records it would refuse, which dead letters it would accept (and the replay command).
    WhatIf(Box<WhatIfArgs>),
}

/// Arguments of `cxone-ingest schemas what-if`. Brokers, topics, bucket and prefixes come from the
/// same config file and environment as `serve` (every `[[sources]]`' topic and prefix), and from
/// `serve`'s location flags. (Not the whole `ConfigArgs`: its `--listen`, `--dedupe-store` mean
/// nothing here, and `--schemas` is NEW here.)
#[derive(Debug, clap::Args)]
pub struct WhatIfArgs {
    /// The config file, and where the topic and the dead letters are.
    #[command(flatten)]
    pub location: LocationArgs,
    /// The new schema folder to judge the traffic with.
    #[arg(long, value_name = "NEW_DIR")]
    pub schemas: PathBuf,
    /// How far back to look: a whole number and `s`, `m`, `h` or `d`.
    #[arg(long, default_value = "24h", value_parser = parse_span, value_name = "SPAN")]
    pub since: Duration,
    /// Most records read per topic, and most dead letters judged per prefix (oldest first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print the report as one JSON object instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when a committed topic record would be refused by the new schemas.
    #[arg(long)]
    pub fail_on_newly_invalid: bool,
}

/// Arguments of `cxone-ingest schemas check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The schema folder as it was (e.g. the previous commit's `schemas/`).
    #[arg(value_name = "OLD_DIR")]
    pub old: PathBuf,
    /// The schema folder as it is now.
    #[arg(value_name = "NEW_DIR")]
    pub new: PathBuf,
    /// Print the verdict as one JSON object instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cxone-ingest schemas`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        SchemasCommand::Check(args) => check(args),
        SchemasCommand::WhatIf(args) => what_if(*args),
    }
}

fn what_if(args: WhatIfArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let contract = match Contract::from_dir(&args.schemas) {
        Ok(contract) => contract,
        Err(err) => return fail(format!("the new schemas do not load: {err}")),
    };
    let flags = ConfigArgs { location: args.location.clone(), ..ConfigArgs::default() };
    let config = match Config::load_without_signatures(&flags) {
        Ok(config) => config,
        Err(err) => return fail(err.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(format!("cannot start the async runtime: {err}")),
    };
    let location = &args.location;
    let passed_on = [
        ("--config", location.config.as_ref().map(|path| path.display().to_string())),
        ("--s3-endpoint", location.s3_endpoint.clone()),
        ("--s3-bucket", location.s3_bucket.clone()),
        ("--kafka-brokers", location.kafka_brokers.clone()),
        ("--kafka-topic", location.kafka_topic.clone()),
    ];
    let invocation = ReplayInvocation {
        schemas: args.schemas.display().to_string(),
        passed_on: passed_on
            .into_iter()
            .filter_map(|(flag, value)| Some((flag.to_owned(), value?)))
            .collect(),
    };
    let bar = if args.json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {human_pos} records and dead letters judged ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let on_progress = || bar.inc(1);
    let window = Window::last(args.since);
    let result = what_if::run(&runtime, &config, &contract, &invocation, window, args.limit, &on_progress);
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(err) => return fail(format!("{err:#}")),
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(err) => return fail(format!("cannot write the report: {err}")),
        }
    } else {
        what_if::render::to_text(&report)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            return fail(format!("cannot write the report: {err}"));
        }
        _ => {}
    }
    drop(runtime);
    ExitCode::from(if args.fail_on_newly_invalid && report.totals.newly_invalid > 0 { 1 } else { 0 })
}

fn check(args: CheckArgs) -> ExitCode {
    let report = match compat::check_dirs(&args.old, &args.new) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("error: cannot write the verdict: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        to_markdown(&report, &args)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the verdict: {err}");
            return ExitCode::from(2);
        }
        _ => {}
    }
    for family in report.families.iter().filter(|family| family.fails_gate()) {
        for change in family.changes.iter().filter(|change| change.breaks.contains(&Side::Senders)) {
            eprintln!(
                "error: {} breaks senders without a new major version ({}): {}: {}",
                family.events.join(", "),
                needed_major(family),
                if change.path.is_empty() { "(root)" } else { &change.path },
                change.change
            );
        }
    }
    ExitCode::from(if report.fails_gate() { 1 } else { 0 })
}

/// What a new major version of a family would look like.
fn needed_major(family: &Family) -> String {
    let next = family
        .old
        .as_ref()
        .and_then(|old| old.version.split('.').next()?.parse::<u64>().ok())
        .map_or(1, |major| major + 1);
    match &family.new {
        Some(_) => format!("`$id` …/v{next}.json and `x-cxone-schema-version` {next}.0.0"),
        None => "a removed family has none".into(),
    }
}

/// The verdict as Markdown tables: readable in a terminal and in a pull request.
fn to_markdown(report: &Report, args: &CheckArgs) -> String {
    let mut out = String::new();
    let yes_no = |flag: bool| if flag { "**yes**" } else { "no" };
    let version = |schema: &Option<crate::contract::SchemaRef>| {
        schema.as_ref().map_or("-".to_owned(), |s| s.version.clone())
    };
    out.push_str(&format!("Schema compatibility: `{}` -> `{}`\n\n", args.old.display(), args.new.display()));
    out.push_str(
        "| family | old | new | breaks senders | breaks readers | gate |\n|---|---|---|---|---|---|\n",
    );
    for family in &report.families {
        let gate = if family.fails_gate() {
            format!("**FAIL**: needs {}", needed_major(family))
        } else if family.breaks_senders {
            "ok: new major version".to_owned()
        } else {
            "ok".to_owned()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&family.events.join(", ")),
            version(&family.old),
            version(&family.new),
            yes_no(family.breaks_senders),
            yes_no(family.breaks_readers),
            cell(&gate)
        ));
    }
    for family in report.families.iter().filter(|family| !family.changes.is_empty()) {
        out.push_str(&format!(
            "\n{} ({} -> {}):\n\n| path | change | breaks |\n|---|---|---|\n",
            family.events.join(", "),
            version(&family.old),
            version(&family.new)
        ));
        for change in &family.changes {
            let breaks: Vec<&str> = change
                .breaks
                .iter()
                .map(|side| match side {
                    Side::Senders => "senders",
                    Side::Readers => "readers",
                })
                .collect();
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                cell(if change.path.is_empty() { "(root)" } else { &change.path }),
                cell(&change.change),
                if breaks.is_empty() { "nobody".to_owned() } else { breaks.join(", ") }
            ));
        }
    }
    out.push_str(if report.fails_gate() {
        "\nVerdict: FAIL (a family breaks senders without a new major version)\n"
    } else {
        "\nVerdict: ok\n"
    });
    out
}

/// A Markdown table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
