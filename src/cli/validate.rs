//! `cxone-ingest validate`: check payloads against the schemas, offline.
//!
//! Exit code 0 when every payload is valid, 1 when any is invalid (malformed JSON and invalid UTF-8
//! included), 2 on a usage or I/O error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::contract::{Checked, Contract, report};

/// Arguments of `cxone-ingest validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The payload file; `-` (the default) reads standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: String,
    /// Treat the input as JSON lines: one payload per non-empty line, one verdict per line.
    #[arg(long)]
    pub lines: bool,
    /// Print one JSON object per payload (the stable machine contract) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Judge against the schemas in this folder instead of the ones built into the binary.
    #[arg(long, value_name = "DIR")]
    pub schemas: Option<PathBuf>,
}

/// Runs `cxone-ingest validate`.
pub fn run(args: Args) -> ExitCode {
    let contract_from_dir;
    let contract = match &args.schemas {
        None => Contract::builtin(),
        Some(dir) => match Contract::from_dir(dir) {
            Ok(contract) => {
                contract_from_dir = contract;
                &contract_from_dir
            }
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let input = match read_input(&args.input) {
        Ok(input) => input,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", display_name(&args.input));
            return ExitCode::from(2);
        }
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut any_invalid = false;
    let mut checked_count = 0usize;
    let result = if args.lines {
        input.split(|&byte| byte == b'\n').enumerate().try_for_each(|(index, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let checked = contract.check(line);
            any_invalid |= matches!(checked, Checked::Invalid(_));
            checked_count += 1;
            emit(&mut out, &checked, args.json, Some(index + 1))
        })
    } else {
        let checked = contract.check(&input);
        any_invalid = matches!(checked, Checked::Invalid(_));
        checked_count = 1;
        emit(&mut out, &checked, args.json, None)
    };
    if let Err(err) = result.and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::from(if any_invalid { 1 } else { 0 });
        }
        eprintln!("error: cannot write the result: {err}");
        return ExitCode::from(2);
    }
    if args.lines && checked_count == 0 && !args.json {
        eprintln!("note: no payloads in {}", display_name(&args.input));
    }
    ExitCode::from(if any_invalid { 1 } else { 0 })
}

fn display_name(input: &str) -> &str {
    if input == "-" { "standard input" } else { input }
}

fn read_input(input: &str) -> std::io::Result<Vec<u8>> {
    if input == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(input)
    }
}

/// Writes one verdict: a JSON object on one line, or text (prefixed by the line number with `--lines`).
fn emit(out: &mut impl Write, checked: &Checked, json: bool, line: Option<usize>) -> std::io::Result<()> {
    if json {
        let mut object = report::to_json(checked);
        if let (Some(line), Some(map)) = (line, object.as_object_mut()) {
            map.insert("line".to_owned(), line.into());
        }
        serde_json::to_writer(&mut *out, &object)?;
        writeln!(out)
    } else {
        if let Some(line) = line {
            write!(out, "line {line}: ")?;
        }
        write!(out, "{}", report::to_text(checked))
    }
}
