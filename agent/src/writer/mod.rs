//! The write path: one flush buffer per agent for every partition it leads, flushed as ONE
//! object and committed in ONE metadata transaction; producers are acknowledged only after
//! that commit.
//!
//! `append` only copies a reference to the batch's bytes into the buffer under a short lock.
//! A single flusher task swaps the buffer out, assigns offsets (a partition's next offset is
//! its committed high watermark, since flushes are sequential), writes the object, commits,
//! and only then moves the high watermarks and answers. It is a group commit: a flush begins
//! once the previous one has ended and began at least `flush_interval` ago, so a lone record
//! after a quiet spell is written at once, and under load one flush carries everything that
//! arrived while the previous one ran. No lock is held across I/O. A flush
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

mod flush;

use flush::*;

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
    /// Flushes begin at least this far apart (0: as soon as the previous one ends), so a batch
    /// waits at most this long, or a flush's duration if that is longer.
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
                self.inner.metrics.produce_throttled.inc();
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
    // When the last flush began: the next may begin `flush_interval` after it.
    let mut last_start: Option<Instant> = None;
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
            Some(_) => {
                let due = last_start.map_or_else(Instant::now, |t| t + inner.flush_interval);
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
        let now = Instant::now();
        last_start = Some(now);
        if let Some(oldest) = oldest {
            inner.metrics.flush_wait_seconds.observe(now - oldest);
        }
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
