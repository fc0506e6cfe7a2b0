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
use streamhouse_proto::time::Backoff;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, parse_bootstrap};
use crate::error::{ClientError, Result};
use crate::group::{self, AssignorKind, Group, GroupConfig};

mod builder;
mod fetcher;
mod membership;

pub use builder::ConsumerBuilder;
use fetcher::*;
pub use membership::RebalanceListener;

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
        // One metadata refresh per topic, not per partition: a topic of thousands of
        // partitions is described in one answer.
        let mut topics = HashMap::new();
        for tp in partitions {
            if next.contains_key(&tp) {
                continue;
            }
            if !topics.contains_key(&tp.topic) {
                let meta = self.cluster.refresh(&tp.topic).await?;
                topics.insert(tp.topic.clone(), meta);
            }
            let (log_start, hwm) = topics[&tp.topic]
                .partitions
                .get(tp.partition as usize)
                .map(|p| (p.log_start_offset, p.high_watermark))
                .ok_or_else(|| ClientError::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })?;
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
        let keep = &self.partitions;
        self.buffered.retain(|(tp, _)| keep.contains_key(tp));
        self.errors.retain(|(tp, _)| keep.contains_key(tp));
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
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for a in self.partitions.values() {
            a.task.abort();
        }
    }
}
