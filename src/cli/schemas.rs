//! `cxone-ingest schemas`: work on schema folders offline; `check` is the compatibility gate.
//!
//! `schemas check OLD_DIR NEW_DIR` exits 0 when no family breaks senders (or each that does comes
//! with a new major version), 1 when one breaks senders without a new major version, 2 on a usage
//! error or a folder that does not load.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::contract::compat::{self, Family, Report, Side};

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
    }
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
