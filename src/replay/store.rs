//! The dead-letter bucket as replay reads and marks it: listing letters and markers by date,
//! fetching records (batch and single-record objects), writing a replay marker.

use std::collections::HashSet;

use anyhow::Context as _;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::ReplayOptions;
use crate::sinks::dead_letter::DeadLetterRecord;
use crate::sinks::dead_letter::key;

/// Where the dead letters are.
pub struct DeadLetterStore {
    /// Client with the SDK's standard retries (replay has no request deadline of its own).
    pub client: Client,
    /// The dead-letter bucket.
    pub bucket: String,
    /// The sink's key prefix.
    pub prefix: String,
}

/// The marker object written after a successful publish: an audit trail of the replay.
#[derive(Debug, Serialize)]
pub(super) struct ReplayMarker<'a> {
    pub(super) dead_letter_key: &'a str,
    pub(super) request_id: &'a str,
    pub(super) replayed_at: String,
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) duplicate_of: Option<&'a str>,
}

impl DeadLetterStore {
    /// Dead-letter object keys (batch and single-record) in the date range, oldest partition first.
    pub async fn list_dead_letters(&self, options: &ReplayOptions) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        for listing in self.listing_prefixes(options, false)? {
            for candidate in self.list(&listing).await? {
                let in_range = key::day_of_key(&self.prefix, &candidate).is_some_and(|day| {
                    options.since.is_none_or(|since| day >= since)
                        && options.until.is_none_or(|until| day <= until)
                });
                if in_range {
                    keys.push(candidate);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Marker keys in the date range.
    pub async fn list_markers(&self, options: &ReplayOptions) -> anyhow::Result<HashSet<String>> {
        let mut markers = HashSet::new();
        for listing in self.listing_prefixes(options, true)? {
            markers.extend(self.list(&listing).await?);
        }
        Ok(markers)
    }

    /// One listing per `dt=` day when `since` is given (partition pruning), else the whole layout.
    fn listing_prefixes(&self, options: &ReplayOptions, markers: bool) -> anyhow::Result<Vec<String>> {
        let for_day = |day: NaiveDate| {
            if markers {
                key::marker_day_prefix(&self.prefix, day)
            } else {
                key::partition_prefix(&self.prefix, day, None)
            }
        };
        let Some(since) = options.since else {
            let base = key::with_slash(&self.prefix);
            return Ok(vec![if markers {
                format!("{base}{}/dt=", key::REPLAYED_DIR)
            } else {
                format!("{base}dt=")
            }]);
        };
        let until = options.until.unwrap_or_else(|| Utc::now().date_naive());
        anyhow::ensure!(since <= until, "--since {since} is after --until {until}");
        let days = (until - since).num_days();
        anyhow::ensure!(
            days <= 3_660,
            "--since/--until span {days} days; replay at most ten years at a time"
        );
        Ok(since.iter_days().take_while(|day| *day <= until).map(for_day).collect())
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| {
                anyhow::anyhow!(
                    "listing s3://{}/{prefix}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                )
            })?;
            keys.extend(page.contents().iter().filter_map(|object| object.key().map(str::to_owned)));
        }
        Ok(keys)
    }

    /// The dead letters held by one object, each with its letter id ([`key::letter_id`]): one for
    /// a single-record `.json` object, one per non-empty line of a `.jsonl` batch object. A record
    /// that does not parse is an `Err` for that letter alone.
    pub async fn letters(
        &self,
        key: &str,
    ) -> anyhow::Result<Vec<(String, anyhow::Result<DeadLetterRecord>)>> {
        if !key::is_batch(key) {
            let record = self.fetch(key).await;
            return Ok(vec![(key.to_owned(), record)]);
        }
        let body = self.get(key).await?;
        let letters = body
            .split(|byte| *byte == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(index, line)| {
                let id = key::letter_id(key, Some(index as u64 + 1));
                let record = serde_json::from_slice(line)
                    .with_context(|| format!("s3://{}/{id} is not a dead-letter record", self.bucket));
                (id, record)
            })
            .collect();
        Ok(letters)
    }

    /// Reads and parses one single-record dead-letter object (the layout before batching).
    pub async fn fetch(&self, key: &str) -> anyhow::Result<DeadLetterRecord> {
        let body = self.get(key).await?;
        serde_json::from_slice(&body)
            .with_context(|| format!("s3://{}/{key} is not a dead-letter record", self.bucket))
    }

    /// One object's bytes.
    async fn get(&self, key: &str) -> anyhow::Result<bytes::Bytes> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|err| {
            anyhow::anyhow!(
                "get s3://{}/{key}: {}",
                self.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&err)
            )
        })?;
        let body =
            object.body.collect().await.with_context(|| format!("reading s3://{}/{key}", self.bucket))?;
        Ok(body.into_bytes())
    }

    pub(super) async fn mark(&self, key: &str, marker: &ReplayMarker<'_>) -> anyhow::Result<()> {
        let marker_key = key::marker_key(&self.prefix, key);
        let body = serde_json::to_vec(marker)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&marker_key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "published, but marking s3://{}/{marker_key} failed (a re-run may publish it again): {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                )
            })?;
        Ok(())
    }
}
