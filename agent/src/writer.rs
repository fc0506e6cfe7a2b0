//! The write path: one flush buffer per agent for every partition it leads, flushed as ONE
//! object and committed in ONE metadata transaction; producers are acknowledged only after
//! that commit.
//!
//! `append` only copies a reference to the batch's bytes into the buffer under a short lock.
//! A single flusher task swaps the buffer out, assigns offsets (a partition's next offset is
//! its committed high watermark, since flushes are sequential), writes the object, commits,
//! and only then moves the high watermarks and answers. No lock is held across I/O. A flush
//! that fails moves nothing, so offsets stay dense.
//!
//! Batches from idempotent producers are checked against the partition's producer table as
//! the flush is built (flushes are sequential, so it reflects every earlier commit): a batch
//! already stored is answered with its original offset and not written again, and the table's
//! new state is stored by the same transaction as the data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use streamhouse_proto::batch::BatchHeader;
use streamhouse_proto::time::now_ms;
use tokio::sync::{Notify, oneshot, watch};

use crate::error::{AgentError, Result};
use crate::metadata::{ChunkCommit, FlushCommit, MetadataError, MetadataStore, ProducerCommit};
use crate::object_store::{ObjectStore, StorageError};
use crate::partitions::{PartitionState, SegmentEntry};
use crate::reader::ChunkCache;
use crate::sequence::{self, ProducerEntry, Verdict, Written};

/// What a producer is told once its batch is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub append_time_ms: i64,
    pub log_start_offset: i64,
}

#[derive(Debug)]
struct Pending {
    bytes: Bytes,
    record_count: i64,
    max_timestamp: i64,
    /// (producer id, epoch, first sequence) of an idempotent producer's batch.
    stamp: Option<(i64, i16, i32)>,
    /// The lease epoch the batch was accepted under: it is written under that one or not at
    /// all (a lease lost and taken again in between must not carry it over).
    lease_epoch: i64,
    ack: oneshot::Sender<Result<Appended>>,
}

#[derive(Debug)]
struct PartitionBuffer {
    state: Arc<PartitionState>,
    batches: Vec<Pending>,
}

#[derive(Debug, Default)]
struct Buffer {
    /// Keyed by the address of the partition's state, which the entry keeps alive.
    partitions: HashMap<usize, PartitionBuffer>,
    bytes: usize,
    oldest: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    agent_id: String,
    /// `{agent id}-{process nonce}`: object keys carry it, so two processes (even two
    /// started with one id by mistake, or one whose clock stepped back) never pick one key.
    object_tag: String,
    flush_interval: Duration,
    flush_bytes: usize,
    commit_deadline: Duration,
    max_buffered: usize,
    buffer: Mutex<Buffer>,
    /// Bytes of the flush under way (taken from the buffer, not yet answered).
    in_flight: AtomicUsize,
    /// Since when every flush commit has failed at the metadata store (`None` after a
    /// success): the lease task stops renewing when this lasts.
    failing_since: Mutex<Option<Instant>>,
    wake: Notify,
    closed: AtomicBool,
    done: Notify,
    finished: AtomicBool,
    meta: MetadataStore,
    store: Arc<dyn ObjectStore>,
    cache: Arc<ChunkCache>,
    /// Wakes the lease task when a commit finds this agent fenced.
    lease_kick: Arc<Notify>,
    object_seq: AtomicU64,
    /// Flush cycles begun, and (below) finished, for [`Writer::sync`].
    started: AtomicU64,
    completed: watch::Sender<u64>,
    sync_requested: AtomicBool,
    flushes: AtomicU64,
    flushed_bytes: AtomicU64,
    metrics: Arc<crate::metrics::Metrics>,
}

/// When the writer flushes, and how long a flush may take to commit.
#[derive(Debug, Clone, Copy)]
pub struct FlushSettings {
    /// Flush when the oldest buffered batch has waited this long.
    pub interval: Duration,
    /// Flush when this many bytes are buffered.
    pub bytes: usize,
    /// A flush whose commit has not landed this long after its object was named is failed
    /// (and its batches refused): after the garbage-collection grace its object may be gone.
    pub commit_deadline: Duration,
    /// Most bytes held uncommitted (buffered and in the flush under way); past it, appends
    /// are refused with [`AgentError::Throttled`].
    pub max_buffered: usize,
}

/// The agent's flush buffer and its flusher task.
#[derive(Debug, Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

impl Writer {
    /// Creates the writer and spawns its flusher on the current runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        agent_id: String,
        object_tag: String,
        settings: FlushSettings,
        meta: MetadataStore,
        store: Arc<dyn ObjectStore>,
        cache: Arc<ChunkCache>,
        lease_kick: Arc<Notify>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Writer {
        let inner = Arc::new(Inner {
            agent_id,
            object_tag,
            flush_interval: settings.interval,
            flush_bytes: settings.bytes,
            commit_deadline: settings.commit_deadline,
            max_buffered: settings.max_buffered,
            buffer: Mutex::new(Buffer::default()),
            in_flight: AtomicUsize::new(0),
            failing_since: Mutex::new(None),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            done: Notify::new(),
            finished: AtomicBool::new(false),
            meta,
            store,
            cache,
            lease_kick,
            object_seq: AtomicU64::new(0),
            started: AtomicU64::new(0),
            completed: watch::Sender::new(0),
            sync_requested: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            flushed_bytes: AtomicU64::new(0),
            metrics,
        });
        tokio::spawn(flusher(inner.clone()));
        Writer { inner }
    }

    /// Adds validated batches of one partition to the buffer, together, so their offsets
    /// follow one another. Each receiver answers once its batch is committed (or has failed);
    /// batches added together are in the same flush and share its fate.
    pub fn append(
        &self,
        state: &Arc<PartitionState>,
        lease_epoch: i64,
        batches: Vec<(Bytes, BatchHeader)>,
    ) -> Result<Vec<oneshot::Receiver<Result<Appended>>>> {
        let mut receivers = Vec::with_capacity(batches.len());
        let mut pending = Vec::with_capacity(batches.len());
        let mut len = 0;
        for (bytes, header) in batches {
            let (tx, rx) = oneshot::channel();
            len += bytes.len();
            pending.push(Pending {
                bytes,
                record_count: i64::from(header.record_count),
                max_timestamp: header.max_timestamp,
                stamp: (header.producer_id >= 0).then_some((
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                )),
                lease_epoch,
                ack: tx,
            });
            receivers.push(rx);
        }
        let (first, full) = {
            let mut buf = self.inner.buffer.lock().unwrap_or_else(|p| p.into_inner());
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(AgentError::ShuttingDown);
            }
            let held = buf.bytes + self.inner.in_flight.load(Ordering::Acquire);
            if held > 0 && held + len > self.inner.max_buffered {
                self.inner
                    .metrics
                    .produce_throttled
                    .fetch_add(1, Ordering::Relaxed);
                return Err(AgentError::Throttled {
                    buffered: held,
                    max: self.inner.max_buffered,
                });
            }
            buf.partitions
                .entry(Arc::as_ptr(state) as usize)
                .or_insert_with(|| PartitionBuffer {
                    state: state.clone(),
                    batches: Vec::new(),
                })
                .batches
                .extend(pending);
            buf.bytes += len;
            let first = buf.oldest.is_none();
            if first {
                buf.oldest = Some(Instant::now());
            }
            (first, buf.bytes >= self.inner.flush_bytes)
        };
        if first || full {
            self.inner.wake.notify_one();
        }
        Ok(receivers)
    }

    /// (batches, bytes) waiting in the buffer now.
    pub fn buffered(&self) -> (u64, u64) {
        let buf = self.inner.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let batches = buf
            .partitions
            .values()
            .map(|p| p.batches.len())
            .sum::<usize>();
        (batches as u64, buf.bytes as u64)
    }

    /// Bytes held uncommitted: buffered, and in the flush under way.
    pub fn held_bytes(&self) -> usize {
        let buffered = self
            .inner
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes;
        buffered + self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Since when every flush has failed to commit at the metadata store, if the last one
    /// did.
    pub fn failing_since(&self) -> Option<Instant> {
        *self
            .inner
            .failing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets a run of failed commits (the lease task does, once it has sat out its leases,
    /// to try again).
    pub fn clear_failing(&self) {
        *self
            .inner
            .failing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// (objects committed, their bytes) since the start.
    pub fn flushed(&self) -> (u64, u64) {
        (
            self.inner.flushes.load(Ordering::Relaxed),
            self.inner.flushed_bytes.load(Ordering::Relaxed),
        )
    }

    /// Flushes now and returns once every batch appended before the call has been answered.
    pub async fn sync(&self) {
        let mut completed = self.inner.completed.subscribe();
        // What was appended before now is in the flush under way (begun as cycle `started`)
        // or in the buffer, which the next cycle takes.
        let target = self.inner.started.load(Ordering::Acquire) + 1;
        self.inner.sync_requested.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        let _ = completed.wait_for(|c| *c >= target).await;
    }

    /// Stops taking batches, flushes what is buffered, and returns once every batch taken
    /// has been answered.
    pub async fn close(&self) {
        {
            let _guard = self.inner.buffer.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.closed.store(true, Ordering::Release);
        }
        self.inner.wake.notify_one();
        loop {
            let done = self.inner.done.notified();
            if self.inner.finished.load(Ordering::Acquire) {
                return;
            }
            done.await;
        }
    }
}

async fn flusher(inner: Arc<Inner>) {
    loop {
        let (oldest, bytes) = {
            let buf = inner.buffer.lock().unwrap_or_else(|p| p.into_inner());
            (buf.oldest, buf.bytes)
        };
        let closed = inner.closed.load(Ordering::Acquire);
        let sync = inner.sync_requested.load(Ordering::Acquire);
        match oldest {
            None if closed => break,
            // Nothing buffered: an empty cycle tells the caller of `sync` so.
            None if sync => {}
            None => {
                inner.wake.notified().await;
                continue;
            }
            Some(oldest) => {
                let due = oldest + inner.flush_interval;
                if !closed && !sync && bytes < inner.flush_bytes && Instant::now() < due {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        _ = inner.wake.notified() => {}
                    }
                    continue;
                }
            }
        }
        inner.sync_requested.store(false, Ordering::Release);
        let taken = {
            let mut buf = inner.buffer.lock().unwrap_or_else(|p| p.into_inner());
            inner.started.fetch_add(1, Ordering::AcqRel);
            inner.in_flight.store(buf.bytes, Ordering::Release);
            std::mem::take(&mut *buf)
        };
        flush(&inner, taken).await;
        inner.in_flight.store(0, Ordering::Release);
        inner.completed.send_modify(|c| *c += 1);
    }
    inner.finished.store(true, Ordering::Release);
    inner.completed.send_replace(u64::MAX);
    inner.done.notify_waiters();
}

/// What one partition contributes to an object.
struct Chunk {
    state: Arc<PartitionState>,
    commit: ChunkCommit,
    /// Each batch in the chunk with its base offset, and each retry of a batch this chunk or
    /// an earlier flush stored, with the original offset; in the order they were appended.
    entries: Vec<(i64, Pending)>,
    /// The producer table after this chunk, installed if the commit succeeds.
    producers: HashMap<i64, ProducerEntry>,
}

const FOOTER_MAGIC: &[u8; 4] = b"SHO1";

async fn flush(inner: &Inner, taken: Buffer) {
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
fn assemble(taken: Buffer, append_time_ms: i64) -> (BytesMut, Vec<Chunk>) {
    let mut object = BytesMut::with_capacity(taken.bytes + 64 * taken.partitions.len() + 8);
    let mut chunks: Vec<Chunk> = Vec::with_capacity(taken.partitions.len());
    for (_, part) in taken.partitions {
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
fn add_partition(
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
async fn put_object(inner: &Inner, key: &str, object: &Bytes) -> Result<()> {
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
        m.object_put_errors.fetch_add(1, Ordering::Relaxed);
        AgentError::Storage(e)
    })
}

/// Commits the flush's chunks in one metadata transaction, and notes whether the store is
/// failing: an error that is not the store's verdict (fenced, too late) starts the clock the
/// lease task watches.
async fn commit(
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
        m.metadata_commit_errors.fetch_add(1, Ordering::Relaxed);
    }
    committed
}

/// After the commit: the chunks go into the read cache, the partitions' high watermarks and
/// producer tables move, and every batch is answered with its offset.
fn acknowledge(inner: &Inner, key: &str, object: &Bytes, chunks: Vec<Chunk>, append_time_ms: i64) {
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
async fn refuse(inner: &Inner, key: &str, chunks: Vec<Chunk>, err: AgentError) {
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

/// Puts batches back at the front of their partition's buffer, ahead of anything appended
/// since, so they keep their order, and wakes the flusher.
fn requeue(inner: &Inner, state: Arc<PartitionState>, entries: Vec<(i64, Pending)>) {
    let batches: Vec<Pending> = entries.into_iter().map(|(_, p)| p).collect();
    let bytes: usize = batches.iter().map(|p| p.bytes.len()).sum();
    {
        let mut buf = inner.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let part = buf
            .partitions
            .entry(Arc::as_ptr(&state) as usize)
            .or_insert_with(|| PartitionBuffer {
                state: state.clone(),
                batches: Vec::new(),
            });
        let newer = std::mem::replace(&mut part.batches, batches);
        part.batches.extend(newer);
        buf.bytes += bytes;
        buf.oldest.get_or_insert_with(Instant::now);
    }
    inner.wake.notify_one();
}

/// The object's footer: where each chunk is and what it holds, so an object can be read or
/// audited without the metadata store. Layout: per chunk `topic_len u16 | topic | partition
/// u32 | base_offset i64 | last_offset i64 | byte_start u64 | byte_len u64`, then
/// `chunk_count u32 | footer_len u32 | "SHO1"`.
fn write_footer(object: &mut BytesMut, chunks: &[Chunk]) {
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
