//! Keeping the cluster bounded: retention, compaction and garbage collection.
//!
//! Every [`maintenance_interval_ms`](crate::AgentConfig::maintenance_interval_ms) a leader
//! walks the partitions it holds. **Retention** drops whole index rows older than the topic's
//! `retention_ms`, or beyond its `retention_bytes`, and advances the log start. **Compaction**
//! copies a partition's chunks out of the shared flush objects (one object per flush, holding
//! every partition that flush touched) into one segment object per partition of about
//! [`segment_bytes`](crate::AgentConfig::segment_bytes), batches byte for byte, and swaps the
//! index rows in one transaction fenced by its lease epoch. Both only ever remove index rows.
//!
//! **Garbage collection** runs on one agent of the cluster at a time (the live one with the
//! smallest id). An object that no index row points to is first marked, then deleted once it
//! has been unreferenced for the grace period, which covers reads that began with the old
//! index. Objects the store has no row for at all (a fenced or crashed agent's flush) are
//! deleted once their name says they are older than the grace; a flush commit is refused
//! after half of it, so such an object can no longer become referenced.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use streamhouse_proto::batch;
use streamhouse_proto::time::now_ms;
use tokio::sync::watch;

use crate::Shared;
use crate::error::{AgentError, Result};
use crate::metadata::maintenance::{ObjectRecord, SegmentSwap};
use crate::metadata::{MetadataError, SegmentRow, TopicRow};
use crate::object_store::ObjectMeta;
use crate::partitions::{PartitionState, RETENTION_EMPTY, SegmentEntry};

/// Where flushes write their objects.
pub const FLUSH_PREFIX: &str = "data/";
/// Where compaction writes its per-partition segments.
pub const SEGMENT_PREFIX: &str = "segments/";
/// A segment gets one index row per this many bytes, so a read fetches about this much.
pub const INDEX_INTERVAL_BYTES: u64 = 1024 * 1024;
/// Uncompacted index rows looked at per partition and pass; more wait for the next pass.
const ROWS_PER_PASS: i64 = 4096;
/// Oldest index rows retention looks at per partition and pass.
const RETENTION_ROWS: i64 = 256;
/// Chunks read concurrently while compacting.
const READS_IN_FLIGHT: usize = 8;
/// Objects garbage collection deletes concurrently.
const DELETES_IN_FLIGHT: usize = 16;

mod compaction;
mod gc;
mod retention;

pub use compaction::*;
pub use gc::*;
pub use retention::*;

/// The time an object's name records (`PREFIX/{ms:013}-...`), if it is one of ours.
pub fn object_time_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    let (ms, _) = name.split_once('-')?;
    if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse().ok()
}

/// What one partition's maintenance did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionReport {
    /// Index rows dropped by retention, and the log start it set.
    pub rows_expired: u64,
    pub new_log_start: Option<i64>,
    /// Segments written by compaction, the rows they replaced, and their bytes.
    pub segments_written: u64,
    pub rows_compacted: u64,
    pub bytes_compacted: u64,
    /// Of the segments written, those that merged small segments into a larger one.
    pub tier_merges: u64,
}

/// Waits one `period`; false once `stop` turns true (at once, not at the period's end).
async fn next_round(period: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => {}
        _ = stop.changed() => return false,
    }
    !*stop.borrow()
}

/// Runs retention and compaction on every partition this agent leads, until `stop`.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.maintenance_interval_ms);
    while next_round(period, &mut stop).await {
        let started = std::time::Instant::now();
        let result = pass(&shared).await;
        shared
            .metrics
            .maintenance_seconds
            .observe(started.elapsed());
        match result {
            Ok(r) if r != PartitionReport::default() => tracing::debug!(
                rows_expired = r.rows_expired,
                segments = r.segments_written,
                tier_merges = r.tier_merges,
                rows_compacted = r.rows_compacted,
                bytes = r.bytes_compacted,
                "maintenance pass"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "maintenance pass failed; retrying next interval");
            }
        }
    }
}

/// One pass over the led partitions.
pub async fn pass(shared: &Shared) -> Result<PartitionReport> {
    let topics: HashMap<String, TopicRow> = shared
        .meta
        .list_topics()
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut total = PartitionReport::default();
    for topic in shared.topics.all() {
        let Some(row) = topics.get(&*topic.name) else {
            continue;
        };
        if row.created_at_ms != topic.created_at_ms {
            continue;
        }
        for state in &topic.partitions {
            if shared.shutting_down.load(Ordering::Acquire) {
                return Ok(total);
            }
            if state.append_epoch().is_none() {
                continue;
            }
            match maintain_partition(shared, row, state).await {
                Ok(r) => {
                    total.rows_expired += r.rows_expired;
                    total.segments_written += r.segments_written;
                    total.rows_compacted += r.rows_compacted;
                    total.bytes_compacted += r.bytes_compacted;
                    total.tier_merges += r.tier_merges;
                }
                Err(e) if is_fenced(&e) => {
                    // The lease moved mid-pass: the new leader maintains it now.
                    tracing::debug!(topic = %state.topic, partition = state.partition,
                        "maintenance fenced: the lease moved");
                }
                Err(e) => {
                    shared.metrics.maintenance_errors.inc();
                    tracing::warn!(topic = %state.topic, partition = state.partition,
                        error = %e, "partition maintenance failed");
                }
            }
        }
    }
    Ok(total)
}

/// Retention, then compaction, of one partition this agent leads.
pub async fn maintain_partition(
    shared: &Shared,
    topic: &TopicRow,
    state: &PartitionState,
) -> Result<PartitionReport> {
    let Some(epoch) = state.append_epoch() else {
        return Ok(PartitionReport::default());
    };
    let mut report = PartitionReport::default();
    let m = &shared.metrics;
    let now = now_ms();
    let hints = state.hints();
    let retention_waits = match hints.retention_due {
        Some((RETENTION_EMPTY, _)) => true,
        Some((due, ms)) => topic.retention_bytes <= 0 && ms == topic.retention_ms && now < due,
        None => false,
    };
    if (topic.retention_ms > 0 || topic.retention_bytes > 0) && !retention_waits {
        let total_bytes = if topic.retention_bytes > 0 {
            shared
                .meta
                .partition_usage(&topic.name, state.partition)
                .await?
                .bytes
        } else {
            0
        };
        let oldest = shared
            .meta
            .segments(
                &topic.name,
                state.partition,
                state.log_start(),
                RETENTION_ROWS,
            )
            .await?;
        let cut = retention_cut(
            &oldest,
            total_bytes,
            now,
            topic.retention_ms,
            topic.retention_bytes,
        );
        if let Some(new_start) = cut.filter(|c| *c > state.log_start()) {
            let dropped = shared
                .meta
                .advance_log_start(&shared.id, &topic.name, state.partition, epoch, new_start)
                .await?;
            state.advance_log_start(new_start);
            m.retention_rows_dropped.inc_by(dropped);
            report.rows_expired = dropped;
            report.new_log_start = Some(new_start);
            tracing::debug!(topic = %topic.name, partition = state.partition, log_start = new_start,
                rows = dropped, "retention advanced the log start");
        }
        // Time retention drops a prefix: nothing goes before the first row kept expires.
        let first_kept = oldest
            .iter()
            .find(|r| cut.is_none_or(|c| r.base_offset >= c));
        if oldest.is_empty() {
            // Nothing stored: nothing to look at until a commit adds a row.
            state.set_retention_empty(hints.commits);
        } else {
            let due = first_kept.filter(|_| topic.retention_ms > 0).map(|r| {
                (
                    r.max_timestamp.saturating_add(topic.retention_ms),
                    topic.retention_ms,
                )
            });
            state.set_retention_due(due);
        }
    }

    let target = shared.config.segment_bytes;
    let max_age = shared.config.compaction_age_ms as i64;
    let hints = state.hints();
    let compaction_waits = hints.known
        && hints.uncompacted_bytes < target
        && hints
            .oldest_uncompacted_ms
            .is_none_or(|t| now.saturating_sub(t) < max_age);
    if !compaction_waits {
        let rows = shared
            .meta
            .uncompacted_segments(&topic.name, state.partition, SEGMENT_PREFIX, ROWS_PER_PASS)
            .await?;
        let runs = plan_compaction(&rows, wall_ms_store_basis(&rows), target, max_age);
        let mut merged = vec![false; rows.len()];
        for run in runs {
            merge(shared, state, epoch, &rows[run.clone()], &mut report).await?;
            merged[run].iter_mut().for_each(|x| *x = true);
        }
        // What stays uncompacted, unless the page was full (then more rows wait beyond it).
        if (rows.len() as i64) < ROWS_PER_PASS {
            let left = rows
                .iter()
                .zip(&merged)
                .filter(|(_, m)| !**m)
                .map(|(r, _)| r);
            let (bytes, oldest) = left.fold((0u64, None::<i64>), |(b, o), r| {
                (
                    b + r.byte_len,
                    Some(o.map_or(r.created_at_ms, |o| o.min(r.created_at_ms))),
                )
            });
            state.set_uncompacted(hints.commits, bytes, oldest);
        }
    }

    // Tiered merging of small segments: only a compaction makes new ones, so look when this
    // pass wrote one, or when this agent has not looked since taking the lease.
    if report.segments_written > 0 || !hints.tiers_known {
        for _ in 0..8 {
            let rows = shared
                .meta
                .small_segments(
                    &topic.name,
                    state.partition,
                    SEGMENT_PREFIX,
                    target / 2,
                    ROWS_PER_PASS,
                )
                .await?;
            let runs = plan_tiers(&rows);
            if runs.is_empty() {
                break;
            }
            for run in runs {
                merge(shared, state, epoch, &rows[run], &mut report).await?;
                report.tier_merges += 1;
            }
        }
        state.set_tiers_known();
    }
    Ok(report)
}

/// Whether `e` is the fencing of a maintenance step (expected after losing a lease).
fn is_fenced(e: &AgentError) -> bool {
    matches!(e, AgentError::Metadata(MetadataError::Fenced(_)))
}

#[cfg(test)]
mod tests;
