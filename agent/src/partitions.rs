//! What an agent knows about each partition: whether it holds the lease and at which epoch,
//! the log's bounds (the high watermark is a `watch` so long-polling fetches wake on commit),
//! a cache of the partition's segment index, and, while it leads, what the partition
//! remembers of its idempotent producers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::metadata::{SegmentRow, TopicRow};
use crate::sequence::ProducerEntry;

/// Where a run of a partition's offsets is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    pub base_offset: i64,
    pub last_offset: i64,
    pub object_key: Arc<str>,
    pub byte_start: u64,
    pub byte_len: u64,
}

impl From<&SegmentRow> for SegmentEntry {
    fn from(r: &SegmentRow) -> Self {
        SegmentEntry {
            base_offset: r.base_offset,
            last_offset: r.last_offset,
            object_key: Arc::from(r.object_key.as_str()),
            byte_start: r.byte_start,
            byte_len: r.byte_len,
        }
    }
}

/// What a leader's maintenance knows about a partition without asking the store, so a pass
/// over a partition with nothing to do costs no query.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceHints {
    /// Whether the uncompacted figures were read from the store since this agent took the
    /// lease, with no commit in between (later commits add to them).
    pub known: bool,
    /// Commits into this partition, counted by [`PartitionState::committed`].
    pub commits: u64,
    /// Bytes in shared flush objects not yet compacted, and when the oldest was committed
    /// (ms, the store's clock as the index recorded it, else this agent's).
    pub uncompacted_bytes: u64,
    pub oldest_uncompacted_ms: Option<i64>,
    /// Retention cannot drop anything before this time, for this `retention_ms`;
    /// [`RETENTION_EMPTY`] while the partition holds no row (until its next commit).
    pub retention_due: Option<(i64, i64)>,
    /// Whether tiered merging has looked at the small segments since the lease was taken.
    pub tiers_known: bool,
}

/// The retention due time of a partition with no index row: nothing to drop until a commit
/// (which resets it) adds one.
pub const RETENTION_EMPTY: i64 = i64::MAX;

/// Index entries kept per partition before the oldest are dropped (they reload on demand).
const INDEX_ENTRIES_KEPT: usize = 8192;

/// The epoch value meaning "this agent does not hold the lease".
const NOT_HELD: i64 = -1;

#[derive(Debug)]
pub struct PartitionState {
    pub topic: Arc<str>,
    pub partition: u32,
    epoch: AtomicI64,
    /// Set while the lease is being handed back: new batches are refused while the buffered
    /// ones are flushed.
    closing: AtomicBool,
    log_start: AtomicI64,
    high_watermark: watch::Sender<i64>,
    index: Mutex<BTreeMap<i64, SegmentEntry>>,
    /// Idempotent producers by id, as of the last commit. Only the flusher changes it.
    producers: Mutex<HashMap<i64, ProducerEntry>>,
    hints: Mutex<MaintenanceHints>,
}

impl PartitionState {
    fn new(topic: Arc<str>, partition: u32) -> Self {
        PartitionState {
            topic,
            partition,
            epoch: AtomicI64::new(NOT_HELD),
            closing: AtomicBool::new(false),
            log_start: AtomicI64::new(0),
            high_watermark: watch::Sender::new(0),
            index: Mutex::new(BTreeMap::new()),
            producers: Mutex::new(HashMap::new()),
            hints: Mutex::new(MaintenanceHints::default()),
        }
    }

    pub fn hints(&self) -> MaintenanceHints {
        *self.hints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what compaction learnt from the store, trusted only if no commit happened
    /// since it read (`commits_seen`); otherwise the next pass asks again.
    pub fn set_uncompacted(&self, commits_seen: u64, bytes: u64, oldest_ms: Option<i64>) {
        let mut h = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        h.uncompacted_bytes = bytes;
        h.oldest_uncompacted_ms = oldest_ms;
        h.known = h.commits == commits_seen;
    }

    pub fn set_tiers_known(&self) {
        self.hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tiers_known = true;
    }

    /// Records when retention may next drop something (commits only add rows after the
    /// first one kept, so they do not change it, except to a partition with none:
    /// [`RETENTION_EMPTY`]).
    pub fn set_retention_due(&self, due: Option<(i64, i64)>) {
        self.hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retention_due = due;
    }

    /// Records that the partition held no index row when `commits_seen` commits had been
    /// counted: retention waits for the next commit. A commit since then keeps it looking.
    pub fn set_retention_empty(&self, commits_seen: u64) {
        let mut h = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        if h.commits == commits_seen {
            h.retention_due = Some((RETENTION_EMPTY, 0));
        }
    }

    /// The lease epoch this agent holds, if it holds the lease.
    pub fn lease_epoch(&self) -> Option<i64> {
        let e = self.epoch.load(Ordering::Acquire);
        (e != NOT_HELD).then_some(e)
    }

    /// The epoch to append under: the lease's, unless it is being handed back.
    pub fn append_epoch(&self) -> Option<i64> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        self.lease_epoch()
    }

    /// Takes the lease at `epoch` with the log bounds and producer state the store recorded.
    /// They are set before the epoch is published, so whoever sees the epoch sees them too.
    pub fn adopt_lease(
        &self,
        epoch: i64,
        log_start: i64,
        high_watermark: i64,
        producers: Vec<(i64, ProducerEntry)>,
    ) {
        self.set_bounds(log_start, high_watermark);
        *self.producers.lock().unwrap_or_else(|p| p.into_inner()) = producers.into_iter().collect();
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        *hints = MaintenanceHints {
            commits: hints.commits,
            ..MaintenanceHints::default()
        };
        drop(hints);
        self.closing.store(false, Ordering::Release);
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Refuses new batches (true) or takes them again (false) while the lease is kept.
    pub fn set_closing(&self, closing: bool) {
        self.closing.store(closing, Ordering::Release);
    }

    /// The producer table, for the flusher's checks and updates. Held only briefly, never
    /// across I/O.
    pub fn producers(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ProducerEntry>> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the lease, but only if it is still the one at `epoch` (when given).
    pub fn drop_lease(&self, epoch: Option<i64>) {
        match epoch {
            Some(e) => {
                let _ =
                    self.epoch
                        .compare_exchange(e, NOT_HELD, Ordering::AcqRel, Ordering::Acquire);
            }
            None => self.epoch.store(NOT_HELD, Ordering::Release),
        }
    }

    pub fn log_start(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Records bounds read from the store (for partitions another agent writes).
    /// Moves the bounds to what the store says, forward only: a row read before a commit
    /// this agent has seen (a follower's poll racing a lease adoption, say) must not take
    /// readers back. Both bounds only ever grow in the store.
    pub fn set_bounds(&self, log_start: i64, high_watermark: i64) {
        self.log_start.fetch_max(log_start, Ordering::AcqRel);
        self.high_watermark.send_if_modified(|h| {
            let changed = high_watermark > *h;
            if changed {
                *h = high_watermark;
            }
            changed
        });
    }

    /// After a commit: index the new chunk and move the high watermark, waking long-polls.
    pub fn committed(&self, entry: SegmentEntry) {
        let next = entry.last_offset + 1;
        {
            let mut h = self.hints.lock().unwrap_or_else(|p| p.into_inner());
            h.commits += 1;
            if h.retention_due
                .is_some_and(|(due, _)| due == RETENTION_EMPTY)
            {
                // The first row: retention has something to look at again.
                h.retention_due = None;
            }
            h.uncompacted_bytes += entry.byte_len;
            h.oldest_uncompacted_ms
                .get_or_insert_with(streamhouse_proto::time::now_ms);
        }
        self.insert_segments(std::iter::once(entry));
        self.high_watermark.send_replace(next);
    }

    pub fn insert_segments(&self, entries: impl IntoIterator<Item = SegmentEntry>) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        for e in entries {
            // Entries a compaction replaced (seen stale by an agent that did not do it)
            // overlap the new one: they go.
            let stale: Vec<i64> = if e.last_offset > e.base_offset {
                index
                    .range(e.base_offset + 1..=e.last_offset)
                    .map(|(b, _)| *b)
                    .collect()
            } else {
                Vec::new()
            };
            for b in stale {
                index.remove(&b);
            }
            index.insert(e.base_offset, e);
        }
        while index.len() > INDEX_ENTRIES_KEPT {
            index.pop_first();
        }
    }

    /// Retention moved the log start: forget the index below it.
    pub fn advance_log_start(&self, log_start: i64) {
        self.log_start.fetch_max(log_start, Ordering::AcqRel);
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.retain(|_, e| e.last_offset >= log_start);
    }

    /// Compaction replaced the entries within `[first, last]` by `entries`.
    pub fn replace_segments(
        &self,
        first: i64,
        last: i64,
        entries: impl IntoIterator<Item = SegmentEntry>,
    ) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.retain(|base, e| *base < first || e.last_offset > last);
        for e in entries {
            index.insert(e.base_offset, e);
        }
    }

    /// An object went missing (garbage collected after a swap this agent did not see):
    /// forget every cached entry pointing at it, so the next look-up asks the store.
    pub fn forget_object(&self, key: &str) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.retain(|_, e| &*e.object_key != key);
    }

    /// The cached index entry holding `offset`, if any.
    pub fn segment_for(&self, offset: i64) -> Option<SegmentEntry> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index
            .range(..=offset)
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| e.last_offset >= offset)
            .cloned()
    }
}

#[derive(Debug)]
pub struct TopicState {
    pub name: Arc<str>,
    pub created_at_ms: i64,
    pub partitions: Vec<Arc<PartitionState>>,
}

impl TopicState {
    fn from_row(row: &TopicRow) -> Self {
        let name: Arc<str> = Arc::from(row.name.as_str());
        TopicState {
            partitions: (0..row.partition_count)
                .map(|p| Arc::new(PartitionState::new(name.clone(), p)))
                .collect(),
            name,
            created_at_ms: row.created_at_ms,
        }
    }
}

/// The topics this agent has seen, by name.
#[derive(Debug, Default)]
pub struct Topics {
    map: RwLock<HashMap<String, Arc<TopicState>>>,
}

impl Topics {
    pub fn get(&self, name: &str) -> Option<Arc<TopicState>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The state for `row`, created if new. A row with a different creation time is a new
    /// topic under an old name: its state starts afresh.
    pub fn upsert(&self, row: &TopicRow) -> Arc<TopicState> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&row.name) {
            Some(t) if t.created_at_ms == row.created_at_ms => t.clone(),
            _ => {
                let t = Arc::new(TopicState::from_row(row));
                map.insert(row.name.clone(), t.clone());
                t
            }
        }
    }

    pub fn remove(&self, name: &str) -> Option<Arc<TopicState>> {
        let removed = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(t) = &removed {
            for p in &t.partitions {
                p.drop_lease(None);
            }
        }
        removed
    }

    pub fn all(&self) -> Vec<Arc<TopicState>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: i64, last: i64) -> SegmentEntry {
        SegmentEntry {
            base_offset: base,
            last_offset: last,
            object_key: Arc::from("k"),
            byte_start: 0,
            byte_len: 1,
        }
    }

    #[test]
    fn index_finds_the_segment_holding_an_offset() {
        let p = PartitionState::new(Arc::from("t"), 0);
        p.committed(entry(0, 9));
        p.committed(entry(10, 19));
        assert_eq!(p.high_watermark(), 20);
        assert_eq!(p.segment_for(0).unwrap().base_offset, 0);
        assert_eq!(p.segment_for(9).unwrap().base_offset, 0);
        assert_eq!(p.segment_for(10).unwrap().base_offset, 10);
        assert!(p.segment_for(20).is_none());
        assert!(p.segment_for(-1).is_none());
    }

    #[test]
    fn bounds_read_from_the_store_never_move_backwards() {
        let p = PartitionState::new(Arc::from("t"), 0);
        let mut seen = p.subscribe_high_watermark();
        p.committed(entry(0, 9));
        assert_eq!(p.high_watermark(), 10);
        seen.mark_unchanged();
        // A follower's poll that read the row before that commit, or an adoption racing it.
        p.set_bounds(0, 4);
        assert_eq!(p.high_watermark(), 10);
        assert!(!seen.has_changed().unwrap(), "no wake-up for a stale row");
        p.adopt_lease(3, 0, 7, Vec::new());
        assert_eq!(p.high_watermark(), 10);
        p.set_bounds(5, 12);
        assert_eq!((p.log_start(), p.high_watermark()), (5, 12));
        p.set_bounds(2, 12);
        assert_eq!(p.log_start(), 5, "the log start only grows too");
    }

    #[test]
    fn a_merged_entry_replaces_the_stale_ones_it_covers() {
        let p = PartitionState::new(Arc::from("t"), 0);
        p.committed(entry(0, 0)); // a single record: its own range is one offset
        p.committed(entry(1, 9));
        p.committed(entry(10, 19));
        p.insert_segments([SegmentEntry {
            object_key: Arc::from("merged"),
            ..entry(1, 19)
        }]);
        assert_eq!(&*p.segment_for(15).unwrap().object_key, "merged");
        assert_eq!(p.segment_for(15).unwrap().base_offset, 1);
        assert_eq!(&*p.segment_for(0).unwrap().object_key, "k");
        p.advance_log_start(10);
        assert!(p.segment_for(0).is_none());
        assert_eq!(p.log_start(), 10);
    }

    #[test]
    fn maintenance_hints_follow_commits_and_leases() {
        let p = PartitionState::new(Arc::from("t"), 0);
        p.adopt_lease(1, 0, 0, Vec::new());
        assert!(!p.hints().known, "a new lease knows nothing yet");
        p.set_uncompacted(p.hints().commits, 0, None);
        assert!(p.hints().known);
        p.committed(entry(0, 9));
        let h = p.hints();
        assert!(h.known && h.uncompacted_bytes == 1 && h.oldest_uncompacted_ms.is_some());
        // A pass that read before a commit landed is not trusted.
        let seen = p.hints().commits;
        p.committed(entry(10, 19));
        p.set_uncompacted(seen, 0, None);
        assert!(!p.hints().known);
        p.set_retention_due(Some((5, 7)));
        p.adopt_lease(2, 0, 20, Vec::new());
        assert_eq!(
            p.hints().retention_due,
            None,
            "a new lease forgets what it was told"
        );
    }

    #[test]
    fn an_empty_partition_waits_for_its_next_commit_only() {
        let p = PartitionState::new(Arc::from("t"), 0);
        p.adopt_lease(1, 0, 0, Vec::new());
        let seen = p.hints().commits;
        p.set_retention_empty(seen);
        assert_eq!(p.hints().retention_due.map(|d| d.0), Some(RETENTION_EMPTY));
        p.committed(entry(0, 0));
        assert_eq!(
            p.hints().retention_due,
            None,
            "a commit adds a row to look at"
        );
        // A pass that saw no row before a commit landed does not mark it empty.
        p.set_retention_empty(seen);
        assert_eq!(p.hints().retention_due, None);
        // A due time of a partition with rows is not cleared by commits.
        p.set_retention_due(Some((5, 7)));
        p.committed(entry(1, 1));
        assert_eq!(p.hints().retention_due, Some((5, 7)));
    }

    #[test]
    fn dropping_a_lease_only_drops_the_epoch_it_names() {
        let p = PartitionState::new(Arc::from("t"), 0);
        p.adopt_lease(3, 0, 0, Vec::new());
        p.drop_lease(Some(2));
        assert_eq!(p.lease_epoch(), Some(3));
        p.drop_lease(Some(3));
        assert_eq!(p.lease_epoch(), None);
    }
}
