//! Commits nobody knows the outcome of: the batch held until a new producer has ended its
//! transaction, then read back; and the start-up probe that says whether reading back is sound.

use super::{GroupCommitter, SINK, committed_at};
use crate::metrics as m;
use crate::sinks::SinkError;
use crate::sinks::kafka::pending::Pending;
use crate::sinks::kafka::producer::{Landed, ProbeFailure, Refusal, TxProducer};
use crate::sinks::kafka::readback::{ReadBack, ReadBackMode, Target};

/// A batch of unknown commit outcome (its requests have been answered 503; their claims are held).
pub(super) struct Unresolved {
    pub(super) live: Vec<Pending>,
    pub(super) landed: Vec<Result<Landed, Refusal>>,
}

impl GroupCommitter {
    /// Settles the batch of unknown outcome, if any, now that a new producer's `init_transactions`
    /// has ended its transaction: each record read back (committed: its claim is written
    /// committed, and a retry is answered `duplicate_of`; aborted: released, and a retry publishes
    /// it). Without read-back (the broker shows aborted records), every claim is released and a
    /// retry publishes the event again: a duplicate if it had committed.
    pub(super) fn resolve_unknown(&mut self) {
        let Some(Unresolved { live, landed }) = self.unresolved.take() else { return };
        if !self.reader.enabled() {
            let why = "kafka commit outcome unknown (read-back is off on this broker)";
            tracing::warn!(events = live.len(), "{why}: releasing the claims; retries publish again");
            metrics::counter!(m::DEDUPE_RESOLUTIONS, "outcome" => "unknown").increment(live.len() as u64);
            live.into_iter().for_each(|p| p.unavailable(why));
            return;
        }
        let targets: Vec<(usize, Target)> = live
            .iter()
            .zip(&landed)
            .enumerate()
            .filter_map(|(index, (p, landed))| {
                let at = landed.as_ref().ok()?;
                let target = Target {
                    topic: p.topic.to_string(),
                    partition: at.partition,
                    offset: at.offset,
                    request_id: p.record.request_id.clone(),
                };
                Some((index, target))
            })
            .collect();
        let (indexes, targets): (Vec<usize>, Vec<Target>) = targets.into_iter().unzip();
        let answers = match self.reader.read(&targets, self.cfg.call_timeout()) {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, "reading back a batch of unknown outcome failed");
                vec![ReadBack::Open; targets.len()]
            }
        };
        let mut found: Vec<Option<ReadBack>> = vec![None; live.len()];
        for (index, answer) in indexes.into_iter().zip(answers) {
            found[index] = Some(answer);
        }
        let mut counts = [0usize; 3];
        for ((p, landed), answer) in live.into_iter().zip(landed).zip(found) {
            match answer {
                Some(ReadBack::Committed) => {
                    counts[0] += 1;
                    let committed = committed_at(&p, landed);
                    p.complete(committed.map_err(|_| SinkError::Unavailable {
                        sink: SINK,
                        detail: "refused record".to_owned(),
                    }));
                }
                // Refused by librdkafka (never in the transaction), or read back as aborted.
                None | Some(ReadBack::Aborted) => {
                    counts[1] += 1;
                    p.unavailable("kafka transaction aborted (read back)");
                }
                Some(ReadBack::Open) => {
                    counts[2] += 1;
                    p.completion.leave_unknown("kafka commit outcome still unknown");
                }
            }
        }
        for (outcome, n) in ["committed", "aborted", "open"].into_iter().zip(counts) {
            if n > 0 {
                metrics::counter!(m::DEDUPE_RESOLUTIONS, "outcome" => outcome).increment(n as u64);
            }
        }
        tracing::info!(
            committed = counts[0],
            aborted = counts[1],
            open = counts[2],
            "read back a batch of unknown commit outcome"
        );
    }

    /// The start-up probe: one record written in a transaction and aborted, then read back. Hidden
    /// from `read_committed` readers: read-back decides unknown outcomes; visible: it stays off.
    /// False when the probe left the producer unusable (the broker did not end its transaction).
    pub(super) async fn probe(&self, p: &TxProducer) -> bool {
        let request_id = format!("probe-{}", uuid::Uuid::now_v7());
        let mode = match p.write_aborted_probe(&self.cfg.topic, &request_id).await {
            Err(ProbeFailure::NotRun(e)) => ReadBackMode::Unsure(format!("the probe could not run: {e}")),
            Err(ProbeFailure::ProducerUnusable(e)) => {
                self.reader.set_mode(ReadBackMode::Off(format!(
                    "the broker did not end the probe's transaction: {e}"
                )));
                return false;
            }
            Ok(at) => {
                let target = Target {
                    topic: self.cfg.topic.clone(),
                    partition: at.partition,
                    offset: at.offset,
                    request_id,
                };
                match self.reader.read(std::slice::from_ref(&target), self.cfg.call_timeout()) {
                    Ok(found) => match found.first() {
                        Some(ReadBack::Aborted) => ReadBackMode::On,
                        Some(ReadBack::Committed) => ReadBackMode::Off(
                            "the broker shows aborted records to read_committed readers".to_owned(),
                        ),
                        _ => {
                            ReadBackMode::Off("the probe's aborted record was not decided in time".to_owned())
                        }
                    },
                    Err(e) => ReadBackMode::Off(format!("reading the probe back failed: {e}")),
                }
            }
        };
        self.reader.set_mode(mode);
        true
    }
}
