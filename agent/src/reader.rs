//! The read path: find the index entries covering an offset, read those chunks (from an LRU
//! of chunk bytes, else a ranged read of the object), and return whole batches exactly as
//! they were stored, each with the offset of its first record. At the high watermark a fetch
//! waits for the next commit, up to the caller's `max_wait`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lru::LruCache;
use streamhouse_proto::batch;
use tokio::sync::watch;

use crate::error::{AgentError, Result};
use crate::metadata::MetadataStore;
use crate::metrics::Metrics;
use crate::object_store::{ObjectStore, StorageError};
use crate::partitions::{PartitionState, SegmentEntry};

/// How often a long-poll on a partition another agent writes looks for its commits.
const FOLLOWER_POLL: Duration = Duration::from_millis(100);

/// Index rows loaded from the store at a time when the cached index misses.
const INDEX_LOAD: i64 = 256;

/// Whether a chunk's batch frames walk to its end and their record counts add up to its
/// index row's. Headers only: the client checks each batch's CRC and records.
fn check_chunk(chunk: &[u8], seg: &SegmentEntry) -> std::result::Result<(), String> {
    let mut records = 0i64;
    for item in batch::split(chunk) {
        let (header, _) = item.map_err(|e| e.to_string())?;
        records += i64::from(header.record_count);
    }
    let indexed = seg.last_offset - seg.base_offset + 1;
    if records != indexed {
        return Err(format!(
            "its batches hold {records} records but its index row {indexed}"
        ));
    }
    Ok(())
}

/// What a cache entry costs beyond its bytes: the LRU node, the key and the `Bytes` header.
pub const ENTRY_OVERHEAD: usize = 128;

/// An LRU of chunk bytes keyed by (object, byte offset). Objects are immutable, so entries
/// never go stale.
#[derive(Debug)]
pub struct ChunkCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug)]
struct CacheInner {
    lru: LruCache<(Arc<str>, u64), Bytes>,
    bytes: usize,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            capacity,
            inner: Mutex::new(CacheInner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    pub fn get(&self, key: &Arc<str>, start: u64) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.lru.get(&(key.clone(), start)).cloned()
    }

    /// Keeps a copy of `data`: a slice of a larger buffer (a whole flush object, a whole
    /// ranged read) would keep all of that buffer alive while counting only the slice. An
    /// entry counts its bytes plus [`ENTRY_OVERHEAD`].
    pub fn insert(&self, key: Arc<str>, start: u64, data: &[u8]) {
        let len = data.len() + ENTRY_OVERHEAD;
        if len > self.capacity {
            return;
        }
        let data = Bytes::copy_from_slice(data);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.lru.put((key, start), data) {
            inner.bytes -= old.len() + ENTRY_OVERHEAD;
        }
        inner.bytes += len;
        while inner.bytes > self.capacity {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

/// Batches returned by one fetch.
#[derive(Debug, Default)]
pub struct Fetched {
    /// (offset of the batch's first record, the batch's bytes).
    pub batches: Vec<(i64, Bytes)>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct Reader {
    meta: MetadataStore,
    store: Arc<dyn ObjectStore>,
    cache: Arc<ChunkCache>,
    metrics: Arc<Metrics>,
    followers: Arc<Followers>,
}

/// Long-polls waiting on partitions another agent writes. One task looks for their commits
/// on behalf of all of them, every [`FOLLOWER_POLL`], with one query per topic however many
/// fetches wait; it runs only while some do.
#[derive(Debug, Default)]
struct Followers {
    /// The waited-on partitions, and whether the polling task runs.
    waiting: Mutex<FollowerMap>,
}

/// A partition, by topic and number.
type PartitionKey = (Arc<str>, u32);

/// How many fetches wait on a partition, and the (log start, high watermark) last read.
type Followed = (usize, watch::Sender<(i64, i64)>);

#[derive(Debug, Default)]
struct FollowerMap {
    partitions: HashMap<PartitionKey, Followed>,
    /// Whether the polling task runs.
    polling: bool,
}

/// One fetch's place among the [`Followers`]: it leaves when dropped.
struct FollowerWait<'a> {
    followers: &'a Followers,
    key: PartitionKey,
}

impl Drop for FollowerWait<'_> {
    fn drop(&mut self) {
        let mut w = self
            .followers
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = w.partitions.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                w.partitions.remove(&self.key);
            }
        }
    }
}

impl Followers {
    /// Joins the fetches waiting on `state`'s partition; the receiver sees the bounds each
    /// poll reads. Starts the polling task if it is not running.
    fn wait_on<'a>(
        self: &'a Arc<Self>,
        meta: &MetadataStore,
        state: &PartitionState,
    ) -> (FollowerWait<'a>, watch::Receiver<(i64, i64)>) {
        let key = (state.topic.clone(), state.partition);
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let (n, tx) = w.partitions.entry(key.clone()).or_insert_with(|| {
            (
                0,
                watch::channel((state.log_start(), state.high_watermark())).0,
            )
        });
        *n += 1;
        let rx = tx.subscribe();
        if !w.polling {
            w.polling = true;
            tokio::spawn(self.clone().poll(meta.clone()));
        }
        (
            FollowerWait {
                followers: self,
                key,
            },
            rx,
        )
    }

    /// Reads the bounds of every waited-on partition every [`FOLLOWER_POLL`] until none is.
    async fn poll(self: Arc<Self>, meta: MetadataStore) {
        loop {
            tokio::time::sleep(FOLLOWER_POLL).await;
            let mut by_topic: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
            {
                let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                if w.partitions.is_empty() {
                    w.polling = false;
                    return;
                }
                for (topic, partition) in w.partitions.keys() {
                    by_topic.entry(topic.clone()).or_default().push(*partition);
                }
            }
            for (topic, partitions) in by_topic {
                match meta.partition_bounds(&topic, &partitions).await {
                    Ok(bounds) => {
                        let w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                        for (partition, log_start, high_watermark) in bounds {
                            if let Some((_, tx)) = w.partitions.get(&(topic.clone(), partition)) {
                                tx.send_if_modified(|b| {
                                    let new = (log_start, high_watermark);
                                    let changed = *b != new;
                                    *b = new;
                                    changed
                                });
                            }
                        }
                    }
                    // The waits end at their deadlines with what they have; the next poll
                    // tries again.
                    Err(e) => tracing::debug!(%topic, error = %e,
                        "reading the bounds of followed partitions failed"),
                }
            }
        }
    }
}

impl Reader {
    pub fn new(
        meta: MetadataStore,
        store: Arc<dyn ObjectStore>,
        cache: Arc<ChunkCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reader {
            meta,
            store,
            cache,
            metrics,
            followers: Arc::default(),
        }
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// Reads batches of `state`'s partition from `offset`, about `max_bytes` of them (always at
    /// least one whole batch when there is data), waiting up to `max_wait` at the high
    /// watermark.
    pub async fn fetch(
        &self,
        state: &PartitionState,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Fetched> {
        if state.lease_epoch().is_none() {
            self.refresh_bounds(state).await?;
        }
        let log_start = state.log_start();
        let mut hwm = state.high_watermark();
        if offset < log_start || offset > hwm {
            return Err(AgentError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hwm,
            });
        }
        if offset == hwm && !max_wait.is_zero() {
            hwm = self.wait_for_data(state, offset, max_wait).await?;
        }
        let mut out = Fetched {
            batches: Vec::new(),
            high_watermark: hwm,
            log_start_offset: log_start,
        };
        let mut pos = offset;
        let mut bytes = 0usize;
        while pos < hwm && bytes < max_bytes {
            let Some(seg) = self.segment_for(state, pos).await? else {
                // Retention may have dropped the rows since the bounds were read.
                self.refresh_bounds(state).await?;
                if out.batches.is_empty() && pos < state.log_start() {
                    return Err(AgentError::OffsetOutOfRange {
                        offset: pos,
                        log_start: state.log_start(),
                        high_watermark: hwm,
                    });
                }
                tracing::warn!(topic = %state.topic, partition = state.partition, offset = pos,
                    "no index entry below the high watermark");
                break;
            };
            let (seg, chunk) = match self.chunk(&seg).await {
                Ok(chunk) => (seg, chunk),
                Err(AgentError::Storage(StorageError::NotFound(_))) => {
                    // Garbage collected after a compaction or retention this agent's cached
                    // index predates: ask the store where the offsets are now.
                    state.forget_object(&seg.object_key);
                    match self.segment_for(state, pos).await? {
                        Some(fresh) if fresh.object_key != seg.object_key => {
                            let chunk = self.chunk(&fresh).await?;
                            (fresh, chunk)
                        }
                        _ if out.batches.is_empty() => {
                            self.refresh_bounds(state).await?;
                            if pos < state.log_start() {
                                // Retention dropped it meanwhile: the offset is out of range.
                                return Err(AgentError::OffsetOutOfRange {
                                    offset: pos,
                                    log_start: state.log_start(),
                                    high_watermark: hwm,
                                });
                            }
                            // Still indexed, yet gone from the object store: never a reason
                            // to move a reader, so say what is missing.
                            self.metrics.objects_missing.inc();
                            tracing::error!(topic = %state.topic, partition = state.partition,
                                object = %seg.object_key, offset = pos,
                                "an indexed object is missing from the object store");
                            return Err(AgentError::StorageUnavailable(format!(
                                "object {} holding offsets {}..={} of {}-{} is missing from \
                                 the object store",
                                seg.object_key,
                                seg.base_offset,
                                seg.last_offset,
                                state.topic,
                                state.partition
                            )));
                        }
                        _ => break,
                    }
                }
                Err(e) => return Err(e),
            };
            // The chunk's frames and record counts must agree with its index row before any
            // of it is returned: offsets are derived from them.
            if let Err(reason) = check_chunk(&chunk, &seg) {
                if !out.batches.is_empty() {
                    // What came before is served; the next fetch starts here and reports it.
                    break;
                }
                return Err(AgentError::DamagedData {
                    topic: state.topic.to_string(),
                    partition: state.partition,
                    offset: seg.base_offset,
                    next_offset: seg.last_offset + 1,
                    reason: format!(
                        "object {} chunk at byte {}: {reason}",
                        seg.object_key, seg.byte_start
                    ),
                });
            }
            let mut base = seg.base_offset;
            let mut full = false;
            for (header, range) in batch::split(&chunk).flatten() {
                let count = i64::from(header.record_count);
                if base + count > pos {
                    bytes += range.len();
                    out.batches.push((base, chunk.slice(range)));
                    pos = base + count;
                }
                base += count;
                if bytes >= max_bytes {
                    full = true;
                    break;
                }
            }
            if full {
                break;
            }
            pos = pos.max(seg.last_offset + 1);
        }
        Ok(out)
    }

    /// Another agent writes this partition: take its bounds from the store.
    async fn refresh_bounds(&self, state: &PartitionState) -> Result<()> {
        if let Some(row) = self
            .meta
            .get_partition(&state.topic, state.partition)
            .await?
        {
            state.set_bounds(row.log_start_offset, row.high_watermark);
        }
        Ok(())
    }

    /// Waits up to `max_wait` for the high watermark to pass `offset` and returns it. A
    /// commit of this agent's wakes the wait at once; one of another agent's is seen by the
    /// [`Followers`] poll, within [`FOLLOWER_POLL`].
    async fn wait_for_data(
        &self,
        state: &PartitionState,
        offset: i64,
        max_wait: Duration,
    ) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut rx = state.subscribe_high_watermark();
        if state.lease_epoch().is_some() {
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|h| *h > offset)).await;
            return Ok(state.high_watermark());
        }
        let (_joined, mut bounds) = self.followers.wait_on(&self.meta, state);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(state.high_watermark()),
                // The lease came here, and this agent committed. (`state` holds the sender,
                // so the wait cannot fail while it is borrowed.)
                _ = rx.wait_for(|h| *h > offset) => return Ok(state.high_watermark()),
                // The poll read new bounds. (The sender stays while this fetch is joined.)
                _ = bounds.changed() => {
                    let (log_start, high_watermark) = *bounds.borrow_and_update();
                    state.set_bounds(log_start, high_watermark);
                    if state.high_watermark() > offset {
                        return Ok(state.high_watermark());
                    }
                }
            }
        }
    }

    async fn segment_for(
        &self,
        state: &PartitionState,
        offset: i64,
    ) -> Result<Option<SegmentEntry>> {
        if let Some(seg) = state.segment_for(offset) {
            return Ok(Some(seg));
        }
        let rows = self
            .meta
            .segments(&state.topic, state.partition, offset, INDEX_LOAD)
            .await?;
        state.insert_segments(rows.iter().map(SegmentEntry::from));
        Ok(state.segment_for(offset))
    }

    /// A chunk's bytes, from the cache or the object store.
    pub(crate) async fn chunk(&self, seg: &SegmentEntry) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&seg.object_key, seg.byte_start) {
            self.metrics.cache_hits.inc();
            return Ok(b);
        }
        self.metrics.cache_misses.inc();
        let started = std::time::Instant::now();
        let got = self
            .store
            .get_range(
                &seg.object_key,
                seg.byte_start..seg.byte_start + seg.byte_len,
            )
            .await;
        self.metrics.object_get_seconds.observe(started.elapsed());
        if got.is_err() {
            self.metrics.object_get_errors.inc();
        }
        let data = got?;
        self.cache
            .insert(seg.object_key.clone(), seg.byte_start, &data);
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_least_recently_used_beyond_capacity() {
        let entry = 40 + ENTRY_OVERHEAD;
        let c = ChunkCache::new(2 * entry + 10);
        let k: Arc<str> = Arc::from("o");
        c.insert(k.clone(), 0, &[0; 40]);
        c.insert(k.clone(), 40, &[0; 40]);
        assert!(c.get(&k, 0).is_some()); // 0 is now the most recent
        c.insert(k.clone(), 80, &[0; 40]);
        assert!(c.get(&k, 40).is_none());
        assert!(c.get(&k, 0).is_some());
        assert_eq!(c.size(), 2 * entry);
        c.insert(k.clone(), 200, &vec![0; 2 * entry]); // larger than the cache: skipped
        assert_eq!(c.size(), 2 * entry);
    }

    #[test]
    fn cache_entries_do_not_pin_the_buffer_they_were_cut_from() {
        let c = ChunkCache::new(1 << 20);
        let k: Arc<str> = Arc::from("o");
        let object = Bytes::from(vec![7u8; 64 * 1024]);
        c.insert(k.clone(), 100, &object[100..200]);
        let cached = c.get(&k, 100).unwrap();
        assert_eq!(&cached[..], &object[100..200]);
        let whole = object.as_ptr_range();
        assert!(
            !whole.contains(&cached.as_ptr()),
            "a copy, not a view of the object"
        );
        assert_eq!(c.size(), 100 + ENTRY_OVERHEAD);
    }
}
