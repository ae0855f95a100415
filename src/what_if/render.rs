//! The what-if report as text for people: what was read, a table of families, each family's most
//! frequent errors, the replay command, totals and time taken (Markdown tables, readable in a
//! terminal and in a pull request).

use std::fmt::Write as _;

use chrono::SecondsFormat;

use super::report::Report;
use super::tally::ErrorPaths;
use super::tally::TOP_ERRORS;

/// The report as text.
pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    let time = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let _ = writeln!(
        out,
        "What-if: schemas `{}` over {} .. {}{}\n",
        report.schemas,
        time(report.window.since),
        time(report.window.until),
        report.limit.map(|limit| format!(", at most {limit} per topic and per prefix")).unwrap_or_default()
    );
    for topic in &report.topics {
        let _ = writeln!(
            out,
            "- topic `{}` ({} partitions): {} records{}{}{}",
            topic.topic,
            topic.partitions,
            topic.records,
            if topic.limited { " (limit reached)" } else { "" },
            skipped(topic.probe_records_skipped, "start-up probe"),
            skipped(topic.before_window_skipped, "stamped before the window"),
        );
    }
    for prefix in &report.dead_letter_prefixes {
        let _ = writeln!(
            out,
            "- dead letters `{}`: {} read{}, {} already replayed{}",
            prefix.prefix,
            prefix.letters,
            if prefix.limited { " (limit reached)" } else { "" },
            prefix.already_replayed,
            if prefix.unreadable > 0 { format!(", {} unreadable", prefix.unreadable) } else { String::new() }
        );
    }
    out.push_str(
        "\n| family | NEW schema | topic records | still valid | newly invalid | dead letters | still rejected | NEW would accept |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in &report.families {
        let tally = &row.tally;
        let schema = tally
            .schema
            .as_ref()
            .map_or("-".to_owned(), |schema| format!("{} {}", schema.id, schema.version));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&row.family),
            cell(&schema),
            tally.topic.records,
            tally.topic.still_valid,
            flag(tally.topic.newly_invalid),
            tally.dead_letters.letters,
            tally.dead_letters.still_rejected,
            flag(tally.dead_letters.would_accept),
        );
    }
    let totals = &report.totals;
    let _ = writeln!(
        out,
        "| **total** | | {} | {} | {} | {} | {} | {} |",
        totals.topic_records,
        totals.still_valid,
        flag(totals.newly_invalid),
        totals.dead_letters,
        totals.still_rejected,
        flag(totals.would_accept)
    );
    for row in &report.families {
        write_errors(&mut out, &row.family, "topic records NEW refuses", "records", &row.tally.topic.errors);
        write_errors(
            &mut out,
            &row.family,
            "dead letters NEW still rejects",
            "letters",
            &row.tally.dead_letters.errors,
        );
    }
    if report.replay.candidates == 0 {
        out.push_str("\nNo dead letter in the window would be accepted by NEW: nothing to replay.\n");
    } else {
        let _ = writeln!(
            out,
            "\n{} dead letter{} would be accepted by NEW. Publish {} with (add `--dry-run` to look first):\n",
            report.replay.candidates,
            if report.replay.candidates == 1 { "" } else { "s" },
            if report.replay.candidates == 1 { "it" } else { "them" }
        );
        for command in &report.replay.commands {
            let _ = writeln!(out, "    {}", command.command);
        }
    }
    let _ = writeln!(out, "\nTook {:.1} s.", report.elapsed_seconds);
    out
}

/// The top errors of one family and side, when there are any.
fn write_errors(out: &mut String, family: &str, what: &str, unit: &str, errors: &ErrorPaths) {
    let top = errors.top(TOP_ERRORS);
    if top.is_empty() {
        return;
    }
    let _ =
        writeln!(out, "\n{family}: {what}, top error paths:\n\n| path | keyword | {unit} |\n|---|---|---:|");
    for error in top {
        let path = if error.instance_path.is_empty() { "(root)" } else { &error.instance_path };
        let _ = writeln!(out, "| `{}` | {} | {} |", cell(path), cell(&error.keyword), error.count);
    }
}

/// `, N skipped (why)` when N > 0.
fn skipped(count: u64, why: &str) -> String {
    if count == 0 { String::new() } else { format!(", {count} skipped ({why})") }
}

/// A count that calls for attention is bold when not zero.
fn flag(count: u64) -> String {
    if count == 0 { "0".to_owned() } else { format!("**{count}**") }
}

/// A Markdown table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
