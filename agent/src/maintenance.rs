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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use streamhouse_proto::batch;
use tokio::sync::watch;

use crate::error::{AgentError, Result};
use crate::metadata::maintenance::{ObjectRecord, SegmentSwap};
use crate::metadata::{MetadataError, SegmentRow, TopicRow};
use crate::object_store::ObjectMeta;
use crate::partitions::{PartitionState, SegmentEntry};
use crate::Shared;

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

pub(crate) fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The time an object's name records (`PREFIX/{ms:013}-...`), if it is one of ours.
pub fn object_time_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    let (ms, _) = name.split_once('-')?;
    if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse().ok()
}

// ---- retention ----------------------------------------------------------------------------

/// The log start retention asks for, given the partition's oldest rows in order and its
/// total bytes: the offset after the last row to drop, or `None` to drop nothing. Only a
/// prefix of whole rows is dropped, and a row is dropped by time only when even its newest
/// record is older than `retention_ms`.
pub fn retention_cut(
    rows: &[SegmentRow],
    total_bytes: i64,
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> Option<i64> {
    let mut remaining = total_bytes;
    let mut cut = None;
    for row in rows {
        let too_old = retention_ms > 0 && row.max_timestamp < now_ms - retention_ms;
        let too_big = retention_bytes > 0 && remaining - row.byte_len as i64 >= retention_bytes;
        if !(too_old || too_big) {
            break;
        }
        remaining -= row.byte_len as i64;
        cut = Some(row.last_offset + 1);
    }
    cut
}

// ---- compaction ---------------------------------------------------------------------------

/// Which runs of `rows` (a partition's uncompacted rows, in offset order) to merge into one
/// segment each. Runs are contiguous in offsets and hold at most `target` bytes (a single
/// larger chunk is a run of its own). A full run is merged at once; the last, partial one only
/// once its oldest row is `max_age_ms` old, so a slow partition still leaves the shared flush
/// objects behind without rewriting its segments again and again.
pub fn plan_compaction(
    rows: &[SegmentRow],
    now_ms: i64,
    target: u64,
    max_age_ms: i64,
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0usize;
    let mut bytes = 0u64;
    for (i, row) in rows.iter().enumerate() {
        let contiguous = i == start || rows[i - 1].last_offset + 1 == row.base_offset;
        if i > start && (!contiguous || bytes + row.byte_len > target) {
            if contiguous {
                runs.push(start..i); // full
            } else if now_ms - rows[start].created_at_ms >= max_age_ms {
                runs.push(start..i); // cut short by a gap, old enough
            }
            start = i;
            bytes = 0;
        }
        bytes += row.byte_len;
    }
    if start < rows.len() && (bytes >= target || now_ms - rows[start].created_at_ms >= max_age_ms) {
        runs.push(start..rows.len());
    }
    runs
}

/// Segments merged at a time by tiered merging, and the ratio between tiers.
pub const TIER_FANOUT: usize = 4;

/// Which runs of small segments to merge, given their index rows in offset order (a segment
/// is the consecutive rows naming one object). Segments are tiered by size (a tier spans a
/// factor of [`TIER_FANOUT`]); [`TIER_FANOUT`] contiguous segments of one tier merge into one
/// of the next. Like an LSM tree's size tiers: each byte is rewritten about once per tier (a
/// handful of times between a flush chunk and a full segment), and a partition keeps fewer
/// than [`TIER_FANOUT`] small segments per tier.
pub fn plan_tiers(rows: &[SegmentRow]) -> Vec<Range<usize>> {
    // (rows, bytes) of each segment, in order.
    let mut segments: Vec<(Range<usize>, u64)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match segments.last_mut() {
            Some((range, bytes)) if rows[range.start].object_key == r.object_key => {
                range.end = i + 1;
                *bytes += r.byte_len;
            }
            _ => segments.push((i..i + 1, r.byte_len)),
        }
    }
    let tier = |bytes: u64| bytes.max(1).ilog(TIER_FANOUT as u64);
    let mut runs = Vec::new();
    let mut start = 0usize;
    for i in 0..segments.len() {
        let joins = i > start
            && tier(segments[i].1) == tier(segments[start].1)
            && rows[segments[i - 1].0.end - 1].last_offset + 1
                == rows[segments[i].0.start].base_offset;
        if !joins {
            start = i;
        }
        if i + 1 - start == TIER_FANOUT {
            runs.push(segments[start].0.start..segments[i].0.end);
            start = i + 1;
        }
    }
    runs
}

/// The index rows of a segment made of `rows` (contiguous) laid end to end: one row per
/// about [`INDEX_INTERVAL_BYTES`], cut only between chunks, which are whole batches.
pub fn segment_index(rows: &[SegmentRow], interval: u64) -> Vec<SegmentRow> {
    let mut out: Vec<SegmentRow> = Vec::new();
    let mut pos = 0u64;
    for row in rows {
        match out.last_mut() {
            Some(cur) if cur.byte_len + row.byte_len <= interval => {
                cur.last_offset = row.last_offset;
                cur.byte_len += row.byte_len;
                cur.record_count += row.record_count;
                cur.max_timestamp = cur.max_timestamp.max(row.max_timestamp);
            }
            _ => out.push(SegmentRow {
                base_offset: row.base_offset,
                last_offset: row.last_offset,
                object_key: String::new(),
                byte_start: pos,
                byte_len: row.byte_len,
                record_count: row.record_count,
                max_timestamp: row.max_timestamp,
                created_at_ms: 0,
            }),
        }
        pos += row.byte_len;
    }
    out
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
        match pass(&shared).await {
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
                    shared
                        .metrics
                        .maintenance_errors
                        .fetch_add(1, Ordering::Relaxed);
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
    let now = wall_ms();
    let hints = state.hints();
    let retention_waits = topic.retention_bytes <= 0
        && hints
            .retention_due
            .is_some_and(|(due, ms)| ms == topic.retention_ms && now < due);
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
            m.retention_rows_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            report.rows_expired = dropped;
            report.new_log_start = Some(new_start);
            tracing::debug!(topic = %topic.name, partition = state.partition, log_start = new_start,
                rows = dropped, "retention advanced the log start");
        }
        // Time retention drops a prefix: nothing goes before the first row kept expires.
        let first_kept = oldest
            .iter()
            .find(|r| cut.is_none_or(|c| r.base_offset >= c));
        let due = first_kept.filter(|_| topic.retention_ms > 0).map(|r| {
            (
                r.max_timestamp.saturating_add(topic.retention_ms),
                topic.retention_ms,
            )
        });
        state.set_retention_due(due);
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

/// One compaction, counted.
async fn merge(
    shared: &Shared,
    state: &PartitionState,
    epoch: i64,
    run: &[SegmentRow],
    report: &mut PartitionReport,
) -> Result<()> {
    let m = &shared.metrics;
    let started = std::time::Instant::now();
    match compact(shared, state, epoch, run).await {
        Ok(bytes) => {
            m.compaction_seconds.observe(started.elapsed());
            m.compactions.fetch_add(1, Ordering::Relaxed);
            m.compaction_rows_replaced
                .fetch_add(run.len() as u64, Ordering::Relaxed);
            m.compaction_bytes.fetch_add(bytes, Ordering::Relaxed);
            report.segments_written += 1;
            report.rows_compacted += run.len() as u64;
            report.bytes_compacted += bytes;
            Ok(())
        }
        Err(e) => {
            m.compaction_errors.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// "Now" for judging index rows' ages: rows carry the metadata store's clock, this agent has
/// its own. Taking the later of the two keeps an agent whose clock runs behind the store's
/// from seeing rows as younger than zero (which would hold their compaction back).
fn wall_ms_store_basis(rows: &[SegmentRow]) -> i64 {
    let newest = rows.iter().map(|r| r.created_at_ms).max().unwrap_or(0);
    wall_ms().max(newest)
}

/// Copies `run`'s chunks into one new segment object and swaps the index rows. Returns the
/// segment's size. A fenced agent's swap commits nothing; its object is left for GC.
pub async fn compact(
    shared: &Shared,
    state: &PartitionState,
    epoch: i64,
    run: &[SegmentRow],
) -> Result<u64> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Ok(0);
    };
    let reads: Vec<_> = run
        .iter()
        .map(|row| {
            let reader = shared.reader.clone();
            let row = row.clone();
            async move {
                let data = reader.chunk(&SegmentEntry::from(&row)).await?;
                check_chunk(&row, &data)?;
                Ok::<Bytes, AgentError>(data)
            }
        })
        .collect();
    let chunks: Vec<Bytes> = futures::stream::iter(reads)
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    let size: usize = chunks.iter().map(Bytes::len).sum();
    let mut object = BytesMut::with_capacity(size);
    for c in &chunks {
        object.extend_from_slice(c);
    }
    let object = object.freeze();
    let named_ms = wall_ms();
    let key = format!(
        "{SEGMENT_PREFIX}{named_ms:013}-{}-{:08}.obj",
        shared.object_tag,
        shared.segment_seq.fetch_add(1, Ordering::Relaxed)
    );
    let m = &shared.metrics;
    let put_started = std::time::Instant::now();
    let put = shared.store.put(&key, object.clone()).await;
    m.object_put_seconds.observe(put_started.elapsed());
    if let Err(e) = put {
        m.object_put_errors.fetch_add(1, Ordering::Relaxed);
        return Err(e.into());
    }
    let mut rows = segment_index(run, INDEX_INTERVAL_BYTES);
    for r in &mut rows {
        r.object_key.clone_from(&key);
    }
    shared
        .meta
        .swap_segments(&SegmentSwap {
            agent_id: &shared.id,
            topic: &state.topic,
            partition: state.partition,
            lease_epoch: epoch,
            first_base: first.base_offset,
            last_offset: last.last_offset,
            replaced_rows: run.len() as u64,
            object_key: &key,
            object_size: object.len() as u64,
            rows: &rows,
            deadline_ms: Some(named_ms + shared.config.commit_deadline().as_millis() as i64),
        })
        .await?;
    let key: Arc<str> = Arc::from(key.as_str());
    state.replace_segments(
        first.base_offset,
        last.last_offset,
        rows.iter().map(|r| SegmentEntry {
            object_key: key.clone(),
            ..SegmentEntry::from(r)
        }),
    );
    for r in &rows {
        let range = r.byte_start as usize..(r.byte_start + r.byte_len) as usize;
        shared
            .reader
            .cache()
            .insert(key.clone(), r.byte_start, &object[range]);
    }
    tracing::debug!(topic = %state.topic, partition = state.partition, object = %key,
        rows = run.len(), bytes = object.len(), "compacted");
    Ok(object.len() as u64)
}

/// A chunk must be whole, intact batches (CRC checked) holding exactly the offsets its row
/// says.
fn check_chunk(row: &SegmentRow, data: &[u8]) -> Result<()> {
    let mut records = 0i64;
    let malformed = |e: batch::CodecError| {
        AgentError::StorageUnavailable(format!(
            "object {} at {} holds a malformed batch: {e}",
            row.object_key, row.byte_start
        ))
    };
    for item in batch::split(data) {
        let (header, range) = item.map_err(malformed)?;
        // A segment outlives the chunks it is made of: never copy a damaged batch into one.
        batch::validate(&data[range]).map_err(malformed)?;
        records += i64::from(header.record_count);
    }
    if data.len() as u64 != row.byte_len || records != row.last_offset - row.base_offset + 1 {
        return Err(AgentError::StorageUnavailable(format!(
            "object {} chunk at {} holds {records} records in {} bytes; its index says \
             offsets {}..={} in {} bytes",
            row.object_key,
            row.byte_start,
            data.len(),
            row.base_offset,
            row.last_offset,
            row.byte_len
        )));
    }
    Ok(())
}

// ---- garbage collection -------------------------------------------------------------------

/// What one garbage-collection pass decides, before it touches anything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcPlan {
    /// Known objects found unreferenced for the first time.
    pub mark: Vec<String>,
    /// Known objects unreferenced for at least the grace period.
    pub delete: Vec<String>,
    /// Stored objects the metadata store has no row for, older than the grace period.
    pub orphans: Vec<String>,
}

/// The reference logic. `listed` must be read before `records`, so that an object committed
/// meanwhile is either known or, being younger than half the grace, no orphan. `store_now_ms` is
/// the metadata store's clock (which marked the records); `wall_now_ms` this agent's (which,
/// like the writers', named the objects).
pub fn gc_plan(
    listed: &[ObjectMeta],
    records: &[ObjectRecord],
    referenced: &HashSet<String>,
    store_now_ms: i64,
    wall_now_ms: i64,
    grace_ms: i64,
) -> GcPlan {
    let mut plan = GcPlan::default();
    let known: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    for r in records {
        if referenced.contains(&r.key) {
            continue;
        }
        if r.unreferenced_since_ms < 0 {
            plan.mark.push(r.key.clone());
        } else if store_now_ms - r.unreferenced_since_ms >= grace_ms {
            plan.delete.push(r.key.clone());
        }
    }
    for o in listed {
        if known.contains(o.key.as_str()) || referenced.contains(&o.key) {
            continue;
        }
        if object_time_ms(&o.key).is_some_and(|t| wall_now_ms - t >= grace_ms) {
            plan.orphans.push(o.key.clone());
        }
    }
    plan
}

/// What a garbage-collection pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub marked: u64,
    pub deleted: u64,
    pub orphans_deleted: u64,
    pub bytes_deleted: u64,
    /// Objects marked and waiting out the grace after this pass.
    pub waiting: u64,
}

/// Runs garbage collection every `gc_interval_ms` while this agent is the live agent with
/// the smallest id.
pub async fn run_gc(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.gc_interval_ms);
    while next_round(period, &mut stop).await {
        let ours = match shared
            .meta
            .list_agents(Some(shared.config.lease_ttl_ms as i64))
            .await
        {
            Ok(agents) => agents.iter().map(|a| a.id.as_str()).min() == Some(&*shared.id),
            Err(e) => {
                tracing::warn!(error = %e, "garbage collection: cannot list agents");
                false
            }
        };
        if !ours {
            continue;
        }
        let cfg = &shared.config;
        match shared
            .meta
            .expire_idle(cfg.producer_expiry_ms as i64, cfg.group_expiry_ms as i64)
            .await
        {
            Ok((0, 0, 0)) => {}
            Ok((states, ids, groups)) => {
                tracing::info!(states, ids, groups, "expired idle producers and groups");
            }
            Err(e) => tracing::warn!(error = %e, "expiring idle producers and groups failed"),
        }
        let started = std::time::Instant::now();
        match gc_pass(&shared).await {
            Ok(r) => {
                shared.metrics.gc_seconds.observe(started.elapsed());
                if r.deleted + r.orphans_deleted > 0 {
                    tracing::info!(
                        deleted = r.deleted,
                        orphans = r.orphans_deleted,
                        bytes = r.bytes_deleted,
                        waiting = r.waiting,
                        "garbage collected"
                    );
                }
            }
            Err(e) => {
                shared.metrics.gc_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "garbage collection failed; retrying next interval");
            }
        }
    }
}

/// One garbage-collection pass over the whole store.
pub async fn gc_pass(shared: &Shared) -> Result<GcReport> {
    let grace = shared.config.gc_grace_ms as i64;
    let mut listed = shared.store.list(FLUSH_PREFIX).await?;
    listed.extend(shared.store.list(SEGMENT_PREFIX).await?);
    let records = shared.meta.object_records().await?;
    let unreferenced = shared.meta.unreferenced_objects().await?;
    // Known objects are referenced unless the store just said otherwise; an object committed
    // after `records` was read is not among them, and is too young to be an orphan.
    let referenced: HashSet<String> = records
        .iter()
        .filter(|r| !unreferenced.contains(&r.key))
        .map(|r| r.key.clone())
        .collect();
    let store_now = shared.meta.now_ms().await?;
    let plan = gc_plan(&listed, &records, &referenced, store_now, wall_ms(), grace);
    let sizes: HashMap<&str, u64> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut report = GcReport::default();
    if !plan.mark.is_empty() {
        shared.meta.mark_unreferenced(&plan.mark).await?;
        report.marked = plan.mark.len() as u64;
    }
    let m = &shared.metrics;
    // A row goes before its object: a crash between the two leaves an orphan, which a later
    // pass deletes, never a row without its object.
    let forgotten = shared
        .meta
        .forget_objects(&plan.delete, store_now - grace)
        .await?;
    // Deletes run DELETES_IN_FLIGHT at a time: one at a time, an object store's round trip
    // would cap collection below what a busy cluster writes.
    let deletes: Vec<_> = forgotten
        .iter()
        .chain(&plan.orphans)
        .map(|key| {
            let (store, key) = (shared.store.clone(), key.clone());
            async move {
                let result = store.delete(&key).await;
                (key, result)
            }
        })
        .collect();
    let results: Vec<(String, Result<(), crate::object_store::StorageError>)> =
        futures::stream::iter(deletes)
            .buffer_unordered(DELETES_IN_FLIGHT)
            .collect()
            .await;
    for (key, result) in results {
        match result {
            Ok(()) => {
                let bytes = sizes.get(key.as_str()).copied().unwrap_or(0);
                report.bytes_deleted += bytes;
                m.gc_bytes_deleted.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(e) => {
                m.gc_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(object = %key, error = %e, "could not delete; a later pass retries");
            }
        }
    }
    report.deleted = forgotten.len() as u64;
    report.orphans_deleted = plan.orphans.len() as u64;
    report.waiting = records
        .iter()
        .filter(|r| !referenced.contains(&r.key))
        .count() as u64
        - report.deleted;
    m.gc_objects_deleted
        .fetch_add(report.deleted, Ordering::Relaxed);
    m.gc_orphans_deleted
        .fetch_add(report.orphans_deleted, Ordering::Relaxed);
    m.gc_objects_waiting
        .store(report.waiting, Ordering::Relaxed);
    m.gc_runs.fetch_add(1, Ordering::Relaxed);
    Ok(report)
}

/// Whether `e` is the fencing of a maintenance step (expected after losing a lease).
fn is_fenced(e: &AgentError) -> bool {
    matches!(e, AgentError::Metadata(MetadataError::Fenced(_)))
}

#[cfg(test)]
mod tests;
