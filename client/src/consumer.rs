//! The consumer: manual assignment of partitions, background prefetch, and `poll`.
//!
//! Each assigned partition has a fetch task that long-polls the partition's leader from the
//! consumer's position, decodes the batches it gets (off the `poll` path), and queues the
//! records. `poll` only takes from that queue. A `seek` restarts the partition's fetch task
//! and discards whatever the old one had fetched.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhouse_proto::batch::{Batch, BatchHeader, Header};
use streamhouse_proto::pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, parse_bootstrap};
use crate::error::{ClientError, Result};
use crate::group::{self, AssignorKind, Group, GroupConfig};

/// A topic and one of its partitions.
///
/// ```
/// let tp = streamhouse_client::TopicPartition::new("events", 3);
/// assert_eq!(tp.to_string(), "events-3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: u32,
}

impl TopicPartition {
    /// `TopicPartition::new("events", 3)`.
    ///
    /// ```
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// assert_eq!((tp.topic.as_str(), tp.partition), ("events", 0));
    /// ```
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One record as a consumer sees it.
///
/// ```no_run
/// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
/// for r in consumer.poll(std::time::Duration::from_millis(100)).await? {
///     let value = r.value.as_deref().unwrap_or_default();
///     println!("{}-{}@{}: {} bytes", r.topic, r.partition, r.offset, value.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp, ms since the epoch.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Record headers.
    pub headers: Vec<Header>,
}

/// Where to start when there is no position, or the position fell out of the log.
///
/// ```
/// let b = streamhouse_client::Consumer::builder().auto_offset_reset(streamhouse_client::OffsetReset::Earliest);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The oldest record still stored.
    Earliest,
    /// Only records produced from now on (Kafka's default).
    #[default]
    Latest,
    /// Fail `poll` with [`ClientError::OffsetOutOfRange`].
    None,
}

/// Builds a [`Consumer`].
///
/// ```no_run
/// # async fn demo() -> Result<(), streamhouse_client::ClientError> {
/// use streamhouse_client::{Consumer, OffsetReset};
/// let consumer = Consumer::builder()
///     .bootstrap("127.0.0.1:9660")
///     .auto_offset_reset(OffsetReset::Earliest)
///     .max_poll_records(500)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    bootstrap: String,
    auto_offset_reset: OffsetReset,
    max_poll_records: usize,
    fetch_max_wait: Duration,
    max_partition_fetch_bytes: usize,
    request_timeout: Duration,
    prefetch_batches: usize,
    group_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    enable_auto_commit: bool,
    auto_commit_interval: Duration,
    max_poll_interval: Duration,
    assignors: Vec<AssignorKind>,
    security: crate::Security,
}

impl Default for ConsumerBuilder {
    fn default() -> Self {
        ConsumerBuilder {
            bootstrap: String::new(),
            auto_offset_reset: OffsetReset::Latest,
            max_poll_records: 500,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            request_timeout: Duration::from_millis(30_000),
            prefetch_batches: 4,
            group_id: None,
            client_id: "streamhouse-consumer".into(),
            session_timeout: Duration::from_millis(10_000),
            heartbeat_interval: Duration::from_millis(1_000),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5_000),
            max_poll_interval: Duration::from_millis(300_000),
            assignors: vec![AssignorKind::RoundRobin],
            security: crate::Security::default(),
        }
    }
}

impl ConsumerBuilder {
    /// TLS and token settings (default: plain TCP, no token).
    ///
    /// ```
    /// use streamhouse_client::{Consumer, Security};
    /// let b = Consumer::builder().security(Security::new().token("s3cr3t"));
    /// ```
    pub fn security(mut self, security: crate::Security) -> Self {
        self.security = security;
        self
    }

    /// Comma-separated `HOST:PORT` of one or more agents. Required.
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().bootstrap("10.0.0.1:9660,10.0.0.2:9660");
    /// ```
    pub fn bootstrap(mut self, addrs: impl Into<String>) -> Self {
        self.bootstrap = addrs.into();
        self
    }

    /// Where to start without a position (default [`OffsetReset::Latest`]).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().auto_offset_reset(streamhouse_client::OffsetReset::None);
    /// ```
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Most records one `poll` returns (default 500).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().max_poll_records(10_000);
    /// ```
    pub fn max_poll_records(mut self, n: usize) -> Self {
        self.max_poll_records = n;
        self
    }

    /// How long an agent holds a fetch at the end of the log (default 500 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().fetch_max_wait_ms(100);
    /// ```
    pub fn fetch_max_wait_ms(mut self, ms: u64) -> Self {
        self.fetch_max_wait = Duration::from_millis(ms);
        self
    }

    /// About how many bytes one fetch of one partition returns (default 1 MiB).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().max_partition_fetch_bytes(4 * 1024 * 1024);
    /// ```
    pub fn max_partition_fetch_bytes(mut self, bytes: usize) -> Self {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    /// How long one request may take (default 30,000 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().request_timeout_ms(10_000);
    /// ```
    pub fn request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout = Duration::from_millis(ms);
        self
    }

    /// Fetched responses queued per partition ahead of `poll` (default 4).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().prefetch_batches(16);
    /// ```
    pub fn prefetch_batches(mut self, n: usize) -> Self {
        self.prefetch_batches = n;
        self
    }

    /// The consumer group to join on [`Consumer::subscribe`]; members of one group share
    /// its topics' partitions and its committed offsets.
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().group_id("analytics");
    /// ```
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// A name for this consumer in the group's description (default `streamhouse-consumer`).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().client_id("billing-7");
    /// ```
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// How long the group waits for a silent member before giving its partitions to others
    /// (default 10,000 ms; agents bound it, 1,000 to 300,000 ms by default).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().session_timeout_ms(30_000);
    /// ```
    pub fn session_timeout_ms(mut self, ms: u64) -> Self {
        self.session_timeout = Duration::from_millis(ms);
        self
    }

    /// How often the member heartbeats (default 1,000 ms; below the session timeout).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().heartbeat_interval_ms(500);
    /// ```
    pub fn heartbeat_interval_ms(mut self, ms: u64) -> Self {
        self.heartbeat_interval = Duration::from_millis(ms);
        self
    }

    /// Commit the positions `poll` has reached every `auto_commit_interval_ms`, before
    /// giving partitions up, and on `close` (default true).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().enable_auto_commit(false);
    /// ```
    pub fn enable_auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self
    }

    /// How often auto-commit commits (default 5,000 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().auto_commit_interval_ms(1_000);
    /// ```
    pub fn auto_commit_interval_ms(mut self, ms: u64) -> Self {
        self.auto_commit_interval = Duration::from_millis(ms);
        self
    }

    /// Longest time between two `poll` calls before the consumer leaves its group (its
    /// partitions go to others) until it polls again (default 300,000 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Consumer::builder().max_poll_interval_ms(60_000);
    /// ```
    pub fn max_poll_interval_ms(mut self, ms: u64) -> Self {
        self.max_poll_interval = Duration::from_millis(ms);
        self
    }

    /// The assignors this consumer supports, preferred first (default round-robin). The
    /// group uses the first of its first member's that every member supports.
    ///
    /// ```
    /// use streamhouse_client::AssignorKind;
    /// let b = streamhouse_client::Consumer::builder()
    ///     .assignors(vec![AssignorKind::Sticky, AssignorKind::RoundRobin]);
    /// ```
    pub fn assignors(mut self, kinds: Vec<AssignorKind>) -> Self {
        self.assignors = kinds;
        self
    }

    /// Checks the settings and creates the consumer, assigned to nothing.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// let consumer = streamhouse_client::Consumer::builder().bootstrap("127.0.0.1:9660").build().await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<Consumer> {
        let bootstrap = parse_bootstrap(&self.bootstrap)?;
        let bad = |m: String| Err(ClientError::InvalidConfig(m));
        if !(1..=1_000_000).contains(&self.max_poll_records) {
            return bad("max_poll_records must be 1..=1000000".into());
        }
        if self.fetch_max_wait > Duration::from_secs(30) {
            return bad("fetch_max_wait_ms must be at most 30000".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_partition_fetch_bytes) {
            return bad("max_partition_fetch_bytes must be 1 KiB..=64 MiB".into());
        }
        if self.request_timeout <= self.fetch_max_wait {
            return bad("request_timeout_ms must exceed fetch_max_wait_ms".into());
        }
        if !(1..=1024).contains(&self.prefetch_batches) {
            return bad("prefetch_batches must be 1..=1024".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return bad(
                "heartbeat_interval_ms must be positive and below session_timeout_ms".into(),
            );
        }
        if self.auto_commit_interval.is_zero() {
            return bad("auto_commit_interval_ms must be positive".into());
        }
        if self.max_poll_interval.is_zero() {
            return bad("max_poll_interval_ms must be positive".into());
        }
        if self.assignors.is_empty() {
            return bad("name at least one assignor".into());
        }
        if self.group_id.as_deref() == Some("") {
            return bad("group_id must not be empty".into());
        }
        self.security.validate()?;
        let cluster = Arc::new(Cluster::new(
            bootstrap,
            64,
            self.request_timeout,
            self.security.clone(),
        ));
        Ok(Consumer {
            cluster,
            config: self,
            partitions: HashMap::new(),
            buffered: VecDeque::new(),
            errors: VecDeque::new(),
            group: None,
            listener: None,
            last_auto_commit: Instant::now(),
        })
    }
}

/// What a fetch task hands to `poll`.
#[derive(Debug)]
enum Fetched {
    Records(Vec<ConsumerRecord>),
    Error(ClientError),
}

#[derive(Debug)]
struct Assigned {
    /// The offset of the next record `poll` returns.
    position: i64,
    rx: mpsc::Receiver<Fetched>,
    task: JoinHandle<()>,
}

/// Reads records from StreamHouse.
///
/// ```no_run
/// # async fn demo() -> Result<(), streamhouse_client::ClientError> {
/// use std::time::Duration;
/// use streamhouse_client::{Consumer, OffsetReset, TopicPartition};
/// let mut consumer = Consumer::builder()
///     .bootstrap("127.0.0.1:9660")
///     .auto_offset_reset(OffsetReset::Earliest)
///     .build()
///     .await?;
/// consumer.assign(vec![TopicPartition::new("events", 0)]).await?;
/// loop {
///     for record in consumer.poll(Duration::from_millis(100)).await? {
///         println!("{} {:?}", record.offset, record.value);
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerBuilder,
    partitions: HashMap<TopicPartition, Assigned>,
    buffered: VecDeque<(TopicPartition, VecDeque<ConsumerRecord>)>,
    /// A partition's fetch error waits here until that partition's records fetched before it
    /// have been returned, so `poll` reports it in offset order (a `seek` of the partition
    /// drops it).
    errors: VecDeque<(TopicPartition, ClientError)>,
    group: Option<Group>,
    listener: Option<Box<dyn RebalanceListener>>,
    last_auto_commit: Instant,
}

/// Told of partitions moving in and out of a subscribed consumer, from inside `poll`.
///
/// ```
/// use streamhouse_client::{RebalanceListener, TopicPartition};
///
/// /// Commits what the application has processed, not what poll returned.
/// struct CommitProcessed(std::collections::HashMap<TopicPartition, i64>);
///
/// impl RebalanceListener for CommitProcessed {
///     fn on_partitions_revoked(&mut self, revoked: &[(TopicPartition, i64)]) -> Vec<(TopicPartition, i64)> {
///         revoked
///             .iter()
///             .filter_map(|(tp, _)| self.0.get(tp).map(|next| (tp.clone(), *next)))
///             .collect()
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync {
    /// Before these partitions are given up, with the position `poll` reached in each.
    /// Returns offsets to commit for them (each the next offset to process); they are
    /// committed, after auto-commit's positions and in their place, before another member
    /// may have the partitions.
    fn on_partitions_revoked(
        &mut self,
        revoked: &[(TopicPartition, i64)],
    ) -> Vec<(TopicPartition, i64)> {
        let _ = revoked;
        Vec::new()
    }

    /// After these partitions were assigned, with their positions set.
    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition]) {
        let _ = assigned;
    }

    /// The consumer's session ran out: these partitions may already be another member's,
    /// and nothing can be committed for them.
    fn on_partitions_lost(&mut self, lost: &[TopicPartition]) {
        let _ = lost;
    }
}

impl fmt::Debug for dyn RebalanceListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RebalanceListener")
    }
}

impl Consumer {
    /// A builder with the default settings.
    ///
    /// ```
    /// let builder = streamhouse_client::Consumer::builder().bootstrap("127.0.0.1:9660");
    /// ```
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// Reads exactly these partitions from now on, replacing any earlier assignment. Each
    /// starts at the position `auto_offset_reset` gives, unless it was already assigned.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// use streamhouse_client::TopicPartition;
    /// consumer.assign(vec![TopicPartition::new("events", 0), TopicPartition::new("events", 1)]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        if self.group.is_some() {
            return Err(ClientError::InvalidConfig(
                "this consumer is subscribed; its group assigns its partitions".into(),
            ));
        }
        let mut next = HashMap::new();
        for tp in partitions {
            if next.contains_key(&tp) {
                continue;
            }
            let (log_start, hwm) = self.bounds(&tp).await?;
            let position = match self.partitions.remove(&tp) {
                Some(a) => {
                    a.task.abort();
                    a.position
                }
                None => match self.config.auto_offset_reset {
                    OffsetReset::Earliest => log_start,
                    OffsetReset::Latest | OffsetReset::None => hwm,
                },
            };
            next.insert(tp.clone(), self.start(&tp, position));
        }
        for (_, a) in self.partitions.drain() {
            a.task.abort();
        }
        self.partitions = next;
        let keep: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        self.buffered.retain(|(tp, _)| keep.contains(tp));
        self.errors.retain(|(tp, _)| keep.contains(tp));
        Ok(())
    }

    /// The partitions assigned now.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// consumer.assign(vec![streamhouse_client::TopicPartition::new("events", 1)]).await?;
    /// assert_eq!(consumer.assignment().len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self.partitions.keys().cloned().collect();
        v.sort();
        v
    }

    /// The offset of the next record `poll` will return for `tp`.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// consumer.assign(vec![tp.clone()]).await?;
    /// consumer.seek(&tp, 42).await?;
    /// assert_eq!(consumer.position(&tp), Some(42));
    /// # Ok(()) }
    /// ```
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).map(|a| a.position)
    }

    /// Makes the next `poll` of `tp` start at `offset`.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// consumer.seek(&tp, 42).await?; // the next poll starts at offset 42
    /// # Ok(()) }
    /// ```
    pub async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let Some(old) = self.partitions.remove(tp) else {
            return Err(ClientError::InvalidConfig(format!("{tp} is not assigned")));
        };
        old.task.abort();
        self.buffered.retain(|(t, _)| t != tp);
        self.errors.retain(|(t, _)| t != tp);
        let fresh = self.start(tp, offset);
        self.partitions.insert(tp.clone(), fresh);
        Ok(())
    }

    /// Seeks each partition to the oldest record still stored.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let all = consumer.assignment();
    /// consumer.seek_to_beginning(&all).await?;
    /// # Ok(()) }
    /// ```
    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<()> {
        for tp in tps {
            let (start, _) = self.bounds(tp).await?;
            self.seek(tp, start).await?;
        }
        Ok(())
    }

    /// Seeks each partition to its end, so only new records are read.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let all = consumer.assignment();
    /// consumer.seek_to_end(&all).await?;
    /// # Ok(()) }
    /// ```
    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<()> {
        for tp in tps {
            let (_, end) = self.bounds(tp).await?;
            self.seek(tp, end).await?;
        }
        Ok(())
    }

    /// The partition's (log start offset, high watermark), asked of an agent now.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let (start, end) = consumer.bounds(&streamhouse_client::TopicPartition::new("events", 0)).await?;
    /// println!("{} records stored", end - start);
    /// # Ok(()) }
    /// ```
    pub async fn bounds(&self, tp: &TopicPartition) -> Result<(i64, i64)> {
        let meta = self.cluster.refresh(&tp.topic).await?;
        let p = meta.partitions.get(tp.partition as usize).ok_or_else(|| {
            ClientError::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
            }
        })?;
        Ok((p.log_start_offset, p.high_watermark))
    }

    fn start(&self, tp: &TopicPartition, position: i64) -> Assigned {
        let (tx, rx) = mpsc::channel(self.config.prefetch_batches);
        let task = tokio::spawn(fetch_loop(
            self.cluster.clone(),
            self.config.clone(),
            tp.clone(),
            position,
            tx,
        ));
        Assigned { position, rx, task }
    }

    /// Returns up to `max_poll_records` records, waiting up to `timeout` for the first.
    /// Records of one partition come in offset order.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let records = consumer.poll(std::time::Duration::from_millis(100)).await?;
    /// println!("{} records", records.len());
    /// # Ok(()) }
    /// ```
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(g) = &self.group {
            let stalled = {
                let mut s = g.lock();
                let was = s.last_poll.elapsed() > g.config.max_poll_interval;
                s.last_poll = Instant::now();
                was
            };
            if stalled {
                // It left the group while the application was away: join again now.
                g.wake.notify_one();
            }
        }
        loop {
            self.reconcile().await?;
            self.auto_commit().await;
            self.drain_ready();
            // A partition's error comes once the records fetched before it are returned.
            let due = self
                .errors
                .iter()
                .position(|(tp, _)| !self.buffered.iter().any(|(t, _)| t == tp));
            if let Some((_, e)) = due.and_then(|i| self.errors.remove(i)) {
                return Err(e);
            }
            if !self.buffered.is_empty() {
                return Ok(self.take_buffered());
            }
            let changed = self.group.as_ref().map(|g| g.changed.clone());
            let rebalance = async {
                match &changed {
                    Some(n) => n.notified().await,
                    None => futures::future::pending().await,
                }
            };
            if self.partitions.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                    _ = rebalance => continue,
                }
            }
            // Wait for whichever partition answers first.
            let first = {
                let waits = self
                    .partitions
                    .iter_mut()
                    .map(|(tp, a)| Box::pin(async move { (tp.clone(), a.rx.recv().await) }));
                tokio::select! {
                    r = tokio::time::timeout_at(deadline, futures::future::select_all(waits)) => match r {
                        Err(_) => Some(None),
                        Ok((first, _, rest)) => {
                            drop(rest);
                            Some(Some(first))
                        }
                    },
                    _ = rebalance => None,
                }
            };
            let first = match first {
                // A rebalance arrived: apply it before waiting again.
                None => continue,
                Some(f) => f,
            };
            match first {
                None => return Ok(Vec::new()),
                Some((tp, Some(fetched))) => self.accept(tp, fetched),
                Some((tp, None)) => {
                    // The fetch task ended without saying why; restart it where we are.
                    let pos = self.position(&tp).unwrap_or(0);
                    self.seek(&tp, pos).await?;
                }
            }
        }
    }

    fn drain_ready(&mut self) {
        let mut ready = Vec::new();
        for (tp, a) in self.partitions.iter_mut() {
            while let Ok(f) = a.rx.try_recv() {
                ready.push((tp.clone(), f));
            }
        }
        for (tp, f) in ready {
            self.accept(tp, f);
        }
    }

    fn accept(&mut self, tp: TopicPartition, fetched: Fetched) {
        match fetched {
            Fetched::Error(e) => self.errors.push_back((tp, e)),
            Fetched::Records(records) if records.is_empty() => {}
            Fetched::Records(records) => self.buffered.push_back((tp, records.into())),
        }
    }

    fn take_buffered(&mut self) -> Vec<ConsumerRecord> {
        let max = self.config.max_poll_records;
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            let Some((tp, records)) = self.buffered.front_mut() else {
                break;
            };
            let take = (max - out.len()).min(records.len());
            out.extend(records.drain(..take));
            if let (Some(last), Some(a)) = (out.last(), self.partitions.get_mut(tp)) {
                a.position = last.offset + 1;
            }
            if records.is_empty() {
                self.buffered.pop_front();
            }
        }
        out
    }

    /// Stops every fetch task.
    ///
    /// ```no_run
    /// # async fn example(consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// consumer.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(mut self) -> Result<()> {
        let mut result = Ok(());
        if let Some(mut g) = self.group.take() {
            g.stop().await;
            let (member, generation, lost) = {
                let s = g.lock();
                (s.member_id.clone(), s.generation, s.lost)
            };
            if !member.is_empty() && !lost {
                if self.config.enable_auto_commit {
                    let positions = self.positions();
                    if !positions.is_empty() {
                        result = group::commit(
                            &self.cluster,
                            &g.config.group_id,
                            &member,
                            generation,
                            &positions,
                        )
                        .await;
                    }
                }
                // Leave even if the commit failed: the partitions move at once.
                let left = group::leave(&self.cluster, &g.config.group_id, &member).await;
                result = result.and(left);
            }
        }
        for (_, a) in self.partitions.drain() {
            a.task.abort();
        }
        result
    }

    /// Joins the builder's group for `topics`: the group assigns this consumer a share of
    /// their partitions and moves them as members come and go. Positions start after the
    /// group's committed offsets (or at `auto_offset_reset` where nothing is committed).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// let mut consumer = streamhouse_client::Consumer::builder()
    ///     .bootstrap("127.0.0.1:9660")
    ///     .group_id("analytics")
    ///     .build()
    ///     .await?;
    /// consumer.subscribe(vec!["events".into()]).await?;
    /// let records = consumer.poll(std::time::Duration::from_millis(500)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        let Some(group_id) = self.config.group_id.clone() else {
            return Err(ClientError::InvalidConfig(
                "subscribe needs a group_id; use assign for partitions of your own".into(),
            ));
        };
        if topics.is_empty() {
            return Err(ClientError::InvalidConfig(
                "subscribe to at least one topic".into(),
            ));
        }
        if let Some(mut old) = self.group.take() {
            old.stop().await;
        }
        for (_, a) in self.partitions.drain() {
            a.task.abort();
        }
        self.buffered.clear();
        self.group = Some(Group::start(
            self.cluster.clone(),
            GroupConfig {
                group_id,
                client_id: self.config.client_id.clone(),
                topics,
                assignors: self.config.assignors.clone(),
                session_timeout: self.config.session_timeout,
                heartbeat_interval: self.config.heartbeat_interval,
                max_poll_interval: self.config.max_poll_interval,
            },
        ));
        self.last_auto_commit = Instant::now();
        Ok(())
    }

    /// As [`Consumer::subscribe`], telling `listener` of partitions revoked, assigned and
    /// lost.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// struct Log;
    /// impl streamhouse_client::RebalanceListener for Log {
    ///     fn on_partitions_assigned(&mut self, assigned: &[streamhouse_client::TopicPartition]) {
    ///         println!("now reading {assigned:?}");
    ///     }
    /// }
    /// consumer.subscribe_with_listener(vec!["events".into()], Log).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_with_listener(
        &mut self,
        topics: Vec<String>,
        listener: impl RebalanceListener + 'static,
    ) -> Result<()> {
        self.listener = Some(Box::new(listener));
        self.subscribe(topics).await
    }

    /// The group's member id and generation, once the group has answered.
    ///
    /// ```no_run
    /// # async fn example(consumer: streamhouse_client::Consumer) {
    /// if let Some((member, generation)) = consumer.membership() {
    ///     println!("{member} at generation {generation}");
    /// }
    /// # }
    /// ```
    pub fn membership(&self) -> Option<(String, i64)> {
        let g = self.group.as_ref()?;
        let s = g.lock();
        (!s.member_id.is_empty()).then(|| (s.member_id.clone(), s.generation))
    }

    /// Where `poll` has got to in every owned partition: the offsets a commit would store.
    fn positions(&self) -> Vec<(TopicPartition, i64)> {
        let mut v: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .map(|(tp, a)| (tp.clone(), a.position))
            .collect();
        v.sort();
        v
    }

    /// Commits the positions `poll` has reached in every owned partition, at the member's
    /// generation; a commit from a member that has since lost a partition is refused.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// for record in consumer.poll(std::time::Duration::from_millis(500)).await? {
    ///     // process the record...
    /// }
    /// consumer.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(&mut self) -> Result<()> {
        let positions = self.positions();
        self.commit_offsets(&positions).await
    }

    /// Commits these offsets (each the next offset to process) for the group.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// consumer.commit_offsets(&[(tp, 42)]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group_id = self
            .config
            .group_id
            .clone()
            .ok_or_else(|| ClientError::InvalidConfig("committing needs a group_id".into()))?;
        if offsets.is_empty() {
            return Ok(());
        }
        let current = |group: &Option<Group>| match group {
            Some(g) => {
                let s = g.lock();
                (s.member_id.clone(), s.generation)
            }
            // Not subscribed: a commit for a group without live members.
            None => (String::new(), -1),
        };
        let (member, generation) = current(&self.group);
        let first = group::commit(&self.cluster, &group_id, &member, generation, offsets).await;
        // A heartbeat answered with a new generation while the commit was on its way: try
        // once more at that generation (refused if the partitions moved meanwhile).
        match first {
            Err(ClientError::Agent {
                code: streamhouse_proto::pb::ErrorCode::StaleGeneration,
                ..
            }) if current(&self.group) != (member.clone(), generation) => {
                let (member, generation) = current(&self.group);
                group::commit(&self.cluster, &group_id, &member, generation, offsets).await
            }
            other => other,
        }
    }

    /// The group's committed offsets for `tps` (`None`: nothing committed).
    ///
    /// ```no_run
    /// # async fn example(consumer: streamhouse_client::Consumer) -> Result<(), streamhouse_client::ClientError> {
    /// let tp = streamhouse_client::TopicPartition::new("events", 0);
    /// let committed = consumer.committed(&[tp]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        let group_id = self.config.group_id.clone().ok_or_else(|| {
            ClientError::InvalidConfig("committed offsets belong to a group_id".into())
        })?;
        let topics: Vec<String> = tps
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let all: HashMap<TopicPartition, i64> =
            group::fetch_committed(&self.cluster, &group_id, &topics)
                .await?
                .into_iter()
                .collect();
        Ok(tps
            .iter()
            .map(|tp| (tp.clone(), all.get(tp).copied()))
            .collect())
    }

    async fn auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.group.is_none()
            || self.last_auto_commit.elapsed() < self.config.auto_commit_interval
        {
            return;
        }
        self.last_auto_commit = Instant::now();
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto-commit failed; it is tried again");
        }
    }

    /// Applies the group's latest answer: gives up what is no longer assigned (committing
    /// first), takes on what is newly assigned (from the committed offsets), and lets the
    /// heartbeat task report the change.
    async fn reconcile(&mut self) -> Result<()> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        let (target, lost, fatal, member, generation) = {
            let s = g.lock();
            (
                s.target.clone(),
                s.lost,
                s.fatal.clone(),
                s.member_id.clone(),
                s.generation,
            )
        };
        if let Some(e) = fatal {
            return Err(e);
        }
        let owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let Some(target) = target else {
            return Ok(());
        };
        if target == owned && !lost {
            return Ok(());
        }
        let group_id = g.config.group_id.clone();
        // Lost: everything goes, uncommitted; what is still assigned comes back below from
        // the committed offsets.
        let revoked: Vec<TopicPartition> = if lost {
            owned.iter().cloned().collect()
        } else {
            owned.difference(&target).cloned().collect()
        };
        if !revoked.is_empty() {
            if lost {
                if let Some(l) = self.listener.as_mut() {
                    l.on_partitions_lost(&revoked);
                }
            } else {
                let positions: Vec<(TopicPartition, i64)> = revoked
                    .iter()
                    .map(|tp| (tp.clone(), self.partitions[tp].position))
                    .collect();
                let mut commits: HashMap<TopicPartition, i64> = if self.config.enable_auto_commit {
                    positions.iter().cloned().collect()
                } else {
                    HashMap::new()
                };
                if let Some(l) = self.listener.as_mut() {
                    commits.extend(l.on_partitions_revoked(&positions));
                }
                if !commits.is_empty() {
                    let mut list: Vec<(TopicPartition, i64)> = commits.into_iter().collect();
                    list.sort();
                    if let Err(e) =
                        group::commit(&self.cluster, &group_id, &member, generation, &list).await
                    {
                        tracing::warn!(error = %e, "commit before giving partitions up failed");
                    }
                }
            }
            for tp in &revoked {
                if let Some(a) = self.partitions.remove(tp) {
                    a.task.abort();
                }
            }
            self.buffered.retain(|(tp, _)| !revoked.contains(tp));
            self.errors.retain(|(tp, _)| !revoked.contains(tp));
        }
        let g = self.group.as_ref().expect("checked above");
        {
            let mut s = g.lock();
            for tp in &revoked {
                s.owned.remove(tp);
            }
            if lost {
                s.lost = false;
            }
        }
        g.wake.notify_one();

        let now_owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let added: Vec<TopicPartition> = target.difference(&now_owned).cloned().collect();
        if added.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = added
            .iter()
            .map(|tp| tp.topic.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let committed: HashMap<TopicPartition, i64> =
            group::fetch_committed(&self.cluster, &group_id, &topics)
                .await?
                .into_iter()
                .collect();
        for tp in &added {
            let position = match committed.get(tp) {
                Some(o) => *o,
                None => {
                    let (start, end) = self.bounds(tp).await?;
                    match self.config.auto_offset_reset {
                        OffsetReset::Earliest => start,
                        OffsetReset::Latest => end,
                        OffsetReset::None => {
                            return Err(ClientError::InvalidConfig(format!(
                                "{tp} has no committed offset and auto_offset_reset is none"
                            )));
                        }
                    }
                }
            };
            let a = self.start(tp, position);
            self.partitions.insert(tp.clone(), a);
        }
        // A newer answer may have taken some of them back while the offsets were read:
        // those are dropped before poll returns a record of theirs.
        let mut kept = Vec::with_capacity(added.len());
        if let Some(g) = &self.group {
            let mut s = g.lock();
            let current = s.target.clone().unwrap_or_default();
            for tp in added {
                if current.contains(&tp) && !s.lost {
                    s.owned.insert(tp.clone());
                    kept.push(tp);
                } else if let Some(a) = self.partitions.remove(&tp) {
                    a.task.abort();
                }
            }
        }
        if let Some(l) = self.listener.as_mut() {
            l.on_partitions_assigned(&kept);
        }
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for a in self.partitions.values() {
            a.task.abort();
        }
    }
}

async fn fetch_loop(
    cluster: Arc<Cluster>,
    config: ConsumerBuilder,
    tp: TopicPartition,
    mut offset: i64,
    tx: mpsc::Sender<Fetched>,
) {
    let topic: Arc<str> = Arc::from(tp.topic.as_str());
    let mut backoff = Duration::from_millis(50);
    loop {
        match fetch_once(&cluster, &config, &tp, &topic, offset).await {
            Ok((records, next)) => {
                backoff = Duration::from_millis(50);
                offset = next;
                if !records.is_empty() && tx.send(Fetched::Records(records)).await.is_err() {
                    return;
                }
            }
            // An answer whose bounds hold the offset (an agent with a stale view of the
            // partition) is no reason to move: ask again.
            Err(ClientError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) if (log_start_offset..=high_watermark).contains(&offset) => {
                tracing::debug!(%tp, offset, log_start_offset, high_watermark,
                    "offset reported out of range yet inside the reported bounds; retrying");
                cluster.forget(&tp.topic);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(ClientError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) => match config.auto_offset_reset {
                OffsetReset::Earliest => offset = log_start_offset,
                OffsetReset::Latest => offset = high_watermark,
                OffsetReset::None => {
                    let e = ClientError::OffsetOutOfRange {
                        offset,
                        log_start_offset,
                        high_watermark,
                    };
                    let _ = tx.send(Fetched::Error(e)).await;
                    return;
                }
            },
            Err(e) if e.is_retriable() => {
                tracing::debug!(%tp, error = %e, "fetch failed; retrying");
                cluster.forget(&tp.topic);
                tokio::time::sleep(backoff).await;
                // At most half a second: after a failover the new leader is there as soon as
                // the lease has moved.
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) => {
                let _ = tx.send(Fetched::Error(e)).await;
                return;
            }
        }
    }
}

async fn fetch_once(
    cluster: &Cluster,
    config: &ConsumerBuilder,
    tp: &TopicPartition,
    topic: &Arc<str>,
    offset: i64,
) -> Result<(Vec<ConsumerRecord>, i64)> {
    // The leader has the freshest high watermark; any agent can serve reads.
    let conn = cluster.leader(&tp.topic, tp.partition).await?;
    let mut client = conn.client.clone();
    let req = pb::FetchRequest {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        max_bytes: config.max_partition_fetch_bytes as u32,
        max_wait_ms: config.fetch_max_wait.as_millis() as u32,
        min_bytes: 1,
    };
    let resp = match tokio::time::timeout(config.request_timeout, client.fetch(req)).await {
        Err(_) => return Err(ClientError::Unreachable("fetch timed out".into())),
        Ok(Err(status)) => return Err(ClientError::from_status(&status)),
        Ok(Ok(r)) => r.into_inner(),
    };
    if let Some(e) = resp.error.as_ref().filter(|e| {
        e.code == pb::ErrorCode::CorruptBatch as i32 && e.next_offset > e.damaged_offset
    }) {
        // Stored data the agent could not even frame: skip it as a whole.
        return Err(ClientError::DamagedBatch {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: e.damaged_offset,
            next_offset: e.next_offset,
            reason: e.message.clone(),
        });
    }
    if let Some(mut e) = ClientError::from_pb(resp.error.as_ref()) {
        if let ClientError::OffsetOutOfRange { offset: o, .. } = &mut e {
            *o = offset;
        }
        return Err(e);
    }
    if resp.base_offsets.len() != resp.batches.len() {
        return Err(ClientError::CorruptBatch(
            "fetch response has a base offset count unlike its batch count".into(),
        ));
    }
    let mut records = Vec::new();
    let mut next = offset;
    for (bytes, base) in resp.batches.into_iter().zip(resp.base_offsets) {
        let decoded = Batch::parse(bytes.clone()).and_then(|b| b.records(base));
        let batch_records = match decoded {
            Ok(r) => r,
            // What came before the damaged batch is delivered; the next fetch starts at it
            // and reports it.
            Err(_) if !records.is_empty() => return Ok((records, base)),
            Err(e) => {
                let count = BatchHeader::peek(&bytes).map_or(1, |h| i64::from(h.record_count));
                return Err(ClientError::DamagedBatch {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: base,
                    next_offset: base.saturating_add(count).max(offset + 1),
                    reason: e.to_string(),
                });
            }
        };
        for r in batch_records {
            if r.offset < offset {
                continue;
            }
            next = r.offset + 1;
            records.push(ConsumerRecord {
                topic: topic.clone(),
                partition: tp.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
    }
    Ok((records, next))
}
