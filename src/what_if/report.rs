//! The what-if report: what was read, the per-family tally, totals, and the `replay` command that
//! publishes the dead letters NEW would accept. Its JSON form is what `--json` prints.

use serde::Serialize;

use super::Window;
use super::dead_letters::PrefixRead;
use super::tally::{FamilyTally, Tally};
use super::topic::TopicRead;

/// The whole answer of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The NEW schema folder, as given.
    pub schemas: String,
    /// The time window looked at.
    pub window: Window,
    /// `--limit`: most records read per topic and most dead letters judged per prefix.
    pub limit: Option<u64>,
    /// How long the run took, in seconds.
    pub elapsed_seconds: f64,
    /// Per topic: what was read.
    pub topics: Vec<TopicRead>,
    /// Per dead-letter prefix: what was read.
    pub dead_letter_prefixes: Vec<PrefixRead>,
    /// Per family (sorted by label; `unknown in NEW` and `(not an event)` included when seen).
    pub families: Vec<FamilyRow>,
    /// The dead letters NEW would accept, and how to publish them.
    pub replay: ReplayAdvice,
    /// Sums over the families and places.
    pub totals: Totals,
}

/// One family's counts, with its label.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyRow {
    /// The family's `event` values joined with `, ` (or `unknown in NEW`, `(not an event)`).
    pub family: String,
    #[serde(flatten)]
    pub tally: FamilyTally,
}

/// The replay candidates and the commands to publish them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayAdvice {
    /// Dead letters NEW would accept, over every prefix.
    pub candidates: u64,
    /// One command per prefix holding candidates.
    pub commands: Vec<ReplayCommand>,
}

/// `cxone-ingest replay` for one prefix.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayCommand {
    /// The dead-letter prefix.
    pub prefix: String,
    /// Candidates under it.
    pub candidates: u64,
    /// The command line, shell-quoted.
    pub command: String,
}

/// Sums over every family and place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Topic records judged.
    pub topic_records: u64,
    /// Of those, accepted by NEW.
    pub still_valid: u64,
    /// Of those, refused by NEW.
    pub newly_invalid: u64,
    /// Dead letters judged.
    pub dead_letters: u64,
    /// Of those, refused by NEW too.
    pub still_rejected: u64,
    /// Of those, accepted by NEW: replay candidates.
    pub would_accept: u64,
    /// Dead letters in the window with a replay marker (not judged).
    pub already_replayed: u64,
    /// Dead-letter objects or lines that could not be read.
    pub unreadable_dead_letters: u64,
    /// Start-up probe records skipped.
    pub probe_records_skipped: u64,
}

/// How the replay command is built: the NEW folder and the flags to pass on as given (config
/// file, S3 and Kafka locations; never a secret).
#[derive(Debug, Clone)]
pub struct ReplayInvocation {
    /// The NEW schema folder, as given.
    pub schemas: String,
    /// `(flag, value)` pairs passed on before the selection flags (e.g. `--config`, `FILE`).
    pub passed_on: Vec<(String, String)>,
}

impl Report {
    /// Assembles the report.
    pub fn new(
        invocation: &ReplayInvocation,
        window: Window,
        limit: Option<u64>,
        elapsed_seconds: f64,
        topics: Vec<TopicRead>,
        dead_letter_prefixes: Vec<PrefixRead>,
        tally: Tally,
    ) -> Report {
        let families: Vec<FamilyRow> =
            tally.families.into_iter().map(|(family, tally)| FamilyRow { family, tally }).collect();
        let mut totals = Totals::default();
        for row in &families {
            totals.topic_records += row.tally.topic.records;
            totals.still_valid += row.tally.topic.still_valid;
            totals.newly_invalid += row.tally.topic.newly_invalid;
            totals.dead_letters += row.tally.dead_letters.letters;
            totals.still_rejected += row.tally.dead_letters.still_rejected;
            totals.would_accept += row.tally.dead_letters.would_accept;
        }
        for prefix in &dead_letter_prefixes {
            totals.already_replayed += prefix.already_replayed;
            totals.unreadable_dead_letters += prefix.unreadable;
        }
        totals.probe_records_skipped = topics.iter().map(|topic| topic.probe_records_skipped).sum();
        let commands = dead_letter_prefixes
            .iter()
            .filter(|prefix| prefix.would_accept > 0)
            .map(|prefix| ReplayCommand {
                prefix: prefix.prefix.clone(),
                candidates: prefix.would_accept,
                command: replay_command(
                    invocation,
                    &prefix.prefix,
                    prefix.first_candidate_day.unwrap_or(window.since.date_naive()),
                ),
            })
            .collect();
        let replay = ReplayAdvice { candidates: totals.would_accept, commands };
        Report {
            schemas: invocation.schemas.clone(),
            window,
            limit,
            elapsed_seconds,
            topics,
            dead_letter_prefixes,
            families,
            replay,
            totals,
        }
    }
}

/// `cxone-ingest replay --schemas NEW [passed-on flags] --s3-prefix PREFIX --since DAY`.
fn replay_command(invocation: &ReplayInvocation, prefix: &str, since: chrono::NaiveDate) -> String {
    let mut words: Vec<String> =
        vec!["cxone-ingest".into(), "replay".into(), "--schemas".into(), invocation.schemas.clone()];
    for (flag, value) in &invocation.passed_on {
        words.push(flag.clone());
        words.push(value.clone());
    }
    words.extend([
        "--s3-prefix".into(),
        prefix.to_owned(),
        "--since".into(),
        since.format("%Y-%m-%d").to_string(),
    ]);
    words.iter().map(|word| shell_quote(word)).collect::<Vec<_>>().join(" ")
}

/// A word as a POSIX shell reads it back: as is when it is plain, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_command_selects_the_prefix_and_day_and_quotes_what_needs_it() {
        let invocation = ReplayInvocation {
            schemas: "/tmp/new schemas".into(),
            passed_on: vec![("--config".into(), "cxone.toml".into())],
        };
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        assert_eq!(
            replay_command(&invocation, "bu-east/errors", day),
            "cxone-ingest replay --schemas '/tmp/new schemas' --config cxone.toml --s3-prefix bu-east/errors --since 2026-12-05"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
