//! Compaction: which runs of a partition's rows become one segment (full runs at once,
//! partial ones once old enough, small segments merged in tiers), copying their chunks byte
//! for byte, and the epoch-fenced swap of the index rows.

use super::*;

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
/// One compaction, counted.
pub(super) async fn merge(
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
            m.compactions.inc();
            m.compaction_rows_replaced.inc_by(run.len() as u64);
            m.compaction_bytes.inc_by(bytes);
            report.segments_written += 1;
            report.rows_compacted += run.len() as u64;
            report.bytes_compacted += bytes;
            Ok(())
        }
        Err(e) => {
            m.compaction_errors.inc();
            Err(e)
        }
    }
}

/// "Now" for judging index rows' ages: rows carry the metadata store's clock, this agent has
/// its own. Taking the later of the two keeps an agent whose clock runs behind the store's
/// from seeing rows as younger than zero (which would hold their compaction back).
pub(super) fn wall_ms_store_basis(rows: &[SegmentRow]) -> i64 {
    let newest = rows.iter().map(|r| r.created_at_ms).max().unwrap_or(0);
    now_ms().max(newest)
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
    let named_ms = now_ms();
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
        m.object_put_errors.inc();
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
pub(super) fn check_chunk(row: &SegmentRow, data: &[u8]) -> Result<()> {
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
