//! One flush, in named steps: [`assemble`] the partitions' batches into one object,
//! [`put_object`], [`commit`] its chunks in one metadata transaction, then [`acknowledge`]
//! every batch, or [`refuse`] them when the put or the commit failed.

use super::*;

/// What one partition contributes to an object.
pub(super) struct Chunk {
    pub(super) state: Arc<PartitionState>,
    pub(super) commit: ChunkCommit,
    /// Each batch in the chunk with its base offset, and each retry of a batch this chunk or
    /// an earlier flush stored, with the original offset; in the order they were appended.
    pub(super) entries: Vec<(i64, Pending)>,
    /// The producer table after this chunk, installed if the commit succeeds.
    pub(super) producers: HashMap<i64, ProducerEntry>,
}

pub(super) const FOOTER_MAGIC: &[u8; 4] = b"SHO1";

pub(super) async fn flush(inner: &Inner, taken: Buffer) {
    let append_time_ms = now_ms();
    // The object is named with this time; garbage collection takes an uncommitted object
    // for an orphan a grace after it, and the commit must land by half of that.
    let deadline_ms = append_time_ms + inner.commit_deadline.as_millis() as i64;
    let (object, chunks) = assemble(taken, append_time_ms);
    if chunks.is_empty() {
        return;
    }
    let object = object.freeze();
    let seq = inner.object_seq.fetch_add(1, Ordering::Relaxed);
    let key = format!(
        "data/{append_time_ms:013}-{}-{seq:08}.obj",
        inner.object_tag
    );
    let started = Instant::now();
    let result = match put_object(inner, &key, &object).await {
        Err(e) => Err(e),
        Ok(()) => commit(inner, &key, object.len() as u64, &chunks, deadline_ms).await,
    };
    inner.metrics.flush_seconds.observe(started.elapsed());
    match result {
        Ok(()) => acknowledge(inner, &key, &object, chunks, append_time_ms),
        Err(err) => refuse(inner, &key, chunks, err).await,
    }
}

/// Lays every partition's accepted batches end to end into one object, with the footer
/// that indexes them; batches that cannot go in are answered at once.
pub(super) fn assemble(taken: Buffer, append_time_ms: i64) -> (BytesMut, Vec<Chunk>) {
    let mut object = BytesMut::with_capacity(taken.bytes + 64 * taken.partitions.len() + 8);
    let mut chunks: Vec<Chunk> = Vec::with_capacity(taken.partitions.len());
    // In key order: the commit updates the partitions' rows in this order, as lease rounds
    // do, so the two never deadlock on PostgreSQL.
    let mut parts: Vec<PartitionBuffer> = taken.partitions.into_values().collect();
    parts.sort_unstable_by(|a, b| {
        (&*a.state.topic, a.state.partition).cmp(&(&*b.state.topic, b.state.partition))
    });
    for part in parts {
        if let Some(chunk) = add_partition(&mut object, part, append_time_ms) {
            chunks.push(chunk);
        }
    }
    if !chunks.is_empty() {
        write_footer(&mut object, &chunks);
    }
    (object, chunks)
}

/// Appends one partition's batches to `object` at offsets from its high watermark: those
/// written under an older lease epoch are refused, and idempotent producers' batches are
/// judged against the partition's producer table (a duplicate is answered with its original
/// offset, not written again). `None` when nothing new is written; duplicates are then
/// answered here.
pub(super) fn add_partition(
    object: &mut BytesMut,
    part: PartitionBuffer,
    append_time_ms: i64,
) -> Option<Chunk> {
    let state = part.state;
    let not_leader = || AgentError::NotLeader {
        topic: state.topic.to_string(),
        partition: state.partition,
        leader_hint: None,
    };
    let Some(epoch) = state.lease_epoch() else {
        for p in part.batches {
            let _ = p.ack.send(Err(not_leader()));
        }
        return None;
    };
    let base = state.high_watermark();
    let start = object.len() as u64;
    let mut next = base;
    let mut max_ts = i64::MIN;
    let mut entries = Vec::with_capacity(part.batches.len());
    let mut changed: HashMap<i64, ProducerEntry> = HashMap::new();
    {
        let table = state.producers();
        for p in part.batches {
            if p.lease_epoch != epoch {
                let _ = p.ack.send(Err(not_leader()));
                continue;
            }
            if let Some((id, producer_epoch, first)) = p.stamp {
                let count = p.record_count as i32;
                let current = changed.get(&id).or_else(|| table.get(&id));
                match sequence::check(current, producer_epoch, first, count) {
                    Verdict::Append => {
                        let written = Written {
                            first_sequence: first,
                            last_sequence: sequence::next_sequence(first, count - 1),
                            base_offset: next,
                        };
                        let entry = match current {
                            Some(e) => {
                                let mut e = e.clone();
                                e.record(producer_epoch, written);
                                e
                            }
                            None => ProducerEntry::new(producer_epoch, written),
                        };
                        changed.insert(id, entry);
                    }
                    Verdict::Duplicate { base_offset } => {
                        entries.push((base_offset, p));
                        continue;
                    }
                    Verdict::OutOfOrder { expected } => {
                        let _ = p.ack.send(Err(AgentError::OutOfOrderSequence {
                            topic: state.topic.to_string(),
                            partition: state.partition,
                            producer_id: id,
                            expected,
                            got: first,
                        }));
                        continue;
                    }
                    Verdict::Fenced { current_epoch } => {
                        let _ = p.ack.send(Err(AgentError::ProducerFenced {
                            producer_id: id,
                            epoch: producer_epoch,
                            current_epoch,
                        }));
                        continue;
                    }
                }
            }
            object.extend_from_slice(&p.bytes);
            next += p.record_count;
            max_ts = max_ts.max(p.max_timestamp);
            entries.push((next - p.record_count, p));
        }
    }
    if next == base {
        // Only retries of batches stored by earlier flushes: answer them now.
        let log_start_offset = state.log_start();
        for (base_offset, p) in entries {
            let _ = p.ack.send(Ok(Appended {
                base_offset,
                append_time_ms,
                log_start_offset,
            }));
        }
        return None;
    }
    let producers = changed
        .iter()
        .map(|(id, e)| {
            let last = e.last();
            ProducerCommit {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: last.last_sequence,
                last_offset: last.base_offset,
                recent: e.encode_recent(),
            }
        })
        .collect();
    Some(Chunk {
        commit: ChunkCommit {
            topic: state.topic.clone(),
            partition: state.partition,
            lease_epoch: epoch,
            base_offset: base,
            last_offset: next - 1,
            byte_start: start,
            byte_len: object.len() as u64 - start,
            record_count: next - base,
            max_timestamp: max_ts,
            producers,
        },
        state,
        entries,
        producers: changed,
    })
}

/// Writes the object. A put retried after its first attempt landed finds its own object:
/// fine if the bytes are ours, a collision (and refused) if not.
pub(super) async fn put_object(inner: &Inner, key: &str, object: &Bytes) -> Result<()> {
    let m = &inner.metrics;
    let started = Instant::now();
    let put = match inner.store.put(key, object.clone()).await {
        Err(StorageError::AlreadyExists(k)) => match inner.store.get(key).await {
            Ok(stored) if stored == *object => Ok(()),
            _ => Err(StorageError::AlreadyExists(k)),
        },
        other => other,
    };
    m.object_put_seconds.observe(started.elapsed());
    put.map_err(|e| {
        m.object_put_errors.inc();
        AgentError::Storage(e)
    })
}

/// Commits the flush's chunks in one metadata transaction, and notes whether the store is
/// failing: an error that is not the store's verdict (fenced, too late) starts the clock the
/// lease task watches.
pub(super) async fn commit(
    inner: &Inner,
    key: &str,
    object_size: u64,
    chunks: &[Chunk],
    deadline_ms: i64,
) -> Result<()> {
    let m = &inner.metrics;
    let commits: Vec<ChunkCommit> = chunks.iter().map(|c| c.commit.clone()).collect();
    let started = Instant::now();
    let committed = inner
        .meta
        .commit_flush(&FlushCommit {
            agent_id: &inner.agent_id,
            object_key: key,
            object_size,
            chunks: &commits,
            deadline_ms: Some(deadline_ms),
        })
        .await
        .map_err(AgentError::Metadata);
    m.metadata_commit_seconds.observe(started.elapsed());
    {
        let mut failing = inner
            .failing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &committed {
            Ok(()) => *failing = None,
            // Fenced or too late: the store answered; that is no sign of a fault.
            Err(AgentError::Metadata(
                MetadataError::Fenced(_) | MetadataError::CommitTooLate(_),
            )) => {}
            Err(_) => {
                failing.get_or_insert_with(Instant::now);
            }
        }
    }
    if committed.is_err() {
        m.metadata_commit_errors.inc();
    }
    committed
}

/// After the commit: the chunks go into the read cache, the partitions' high watermarks and
/// producer tables move, and every batch is answered with its offset.
pub(super) fn acknowledge(
    inner: &Inner,
    key: &str,
    object: &Bytes,
    chunks: Vec<Chunk>,
    append_time_ms: i64,
) {
    inner.flushes.fetch_add(1, Ordering::Relaxed);
    inner
        .flushed_bytes
        .fetch_add(object.len() as u64, Ordering::Relaxed);
    let key: Arc<str> = Arc::from(key);
    for c in chunks {
        let cm = &c.commit;
        let range = cm.byte_start as usize..(cm.byte_start + cm.byte_len) as usize;
        inner
            .cache
            .insert(key.clone(), cm.byte_start, &object[range]);
        c.state.producers().extend(c.producers);
        c.state.committed(SegmentEntry {
            base_offset: cm.base_offset,
            last_offset: cm.last_offset,
            object_key: key.clone(),
            byte_start: cm.byte_start,
            byte_len: cm.byte_len,
        });
        let log_start_offset = c.state.log_start();
        for (base_offset, p) in c.entries {
            let _ = p.ack.send(Ok(Appended {
                base_offset,
                append_time_ms,
                log_start_offset,
            }));
        }
    }
}

/// After a failed put or commit nothing moves: fenced partitions' batches are refused with
/// NOT_LEADER (and the new leader, if known); after an uncertain commit every partition stops
/// writing until the lease task re-reads it; bystanders of another partition's fencing go
/// into the next flush.
pub(super) async fn refuse(inner: &Inner, key: &str, chunks: Vec<Chunk>, err: AgentError) {
    tracing::warn!(object = %key, error = %err, "flush failed; its batches are refused");
    let fenced: Vec<(Arc<str>, u32)> = match &err {
        AgentError::Metadata(MetadataError::Fenced(list)) => list.clone(),
        _ => Vec::new(),
    };
    let uncertain = matches!(err, AgentError::Metadata(_)) && fenced.is_empty();
    for c in chunks {
        let is_fenced = fenced
            .iter()
            .any(|(t, p)| *t == c.state.topic && *p == c.state.partition);
        // A fenced partition is no longer ours. After an uncertain commit (the store may or
        // may not have applied it) our high watermark may be stale: stop writing until the
        // lease task re-reads the partition from the store. The other partitions of a fenced
        // flush keep their leases: nothing of theirs changed.
        if is_fenced || uncertain {
            c.state.drop_lease(Some(c.commit.lease_epoch));
        }
        if !is_fenced && !fenced.is_empty() {
            // Innocent bystander of another partition's fencing: nothing of it was committed
            // and its lease stands, so its batches go into the next flush.
            requeue(inner, c.state, c.entries);
            continue;
        }
        let hint = if is_fenced {
            match inner
                .meta
                .get_partition(&c.state.topic, c.state.partition)
                .await
            {
                Ok(Some(row)) => row.leader_address,
                _ => None,
            }
        } else {
            None
        };
        for (_, p) in c.entries {
            let e = match &err {
                _ if is_fenced => AgentError::NotLeader {
                    topic: c.state.topic.to_string(),
                    partition: c.state.partition,
                    leader_hint: hint.clone(),
                },
                AgentError::Storage(e) => AgentError::StorageUnavailable(e.to_string()),
                other => AgentError::MetadataUnavailable(other.to_string()),
            };
            let _ = p.ack.send(Err(e));
        }
    }
    if !fenced.is_empty() || uncertain {
        inner.lease_kick.notify_one();
    }
}

/// The object's footer: where each chunk is and what it holds, so an object can be read or
/// audited without the metadata store. Layout: per chunk `topic_len u16 | topic | partition
/// u32 | base_offset i64 | last_offset i64 | byte_start u64 | byte_len u64`, then
/// `chunk_count u32 | footer_len u32 | "SHO1"`.
pub(super) fn write_footer(object: &mut BytesMut, chunks: &[Chunk]) {
    let start = object.len();
    for c in chunks {
        let cm = &c.commit;
        object.put_u16(cm.topic.len() as u16);
        object.put_slice(cm.topic.as_bytes());
        object.put_u32(cm.partition);
        object.put_i64(cm.base_offset);
        object.put_i64(cm.last_offset);
        object.put_u64(cm.byte_start);
        object.put_u64(cm.byte_len);
    }
    object.put_u32(chunks.len() as u32);
    let footer_len = (object.len() - start) as u32;
    object.put_u32(footer_len);
    object.put_slice(FOOTER_MAGIC);
}
