//! The producer: batches records per partition, sends them to the partitions' leaders,
//! retries transient failures within the delivery timeout, and resolves each record's
//! [`DeliveryFuture`] with its offset.
//!
//! [`Producer::send`] encodes the record straight into its partition's open batch under a
//! short lock and returns; it waits only when the buffer is full. Batches are sealed when they
//! reach `batch_size` records or `batch_bytes`, or after `linger`. One sender task then puts
//! every partition with sealed batches into one request per leader, as Kafka's producer does,
//! with at most `max_in_flight` requests in flight to an agent and, per partition, at most
//! `max_in_flight_per_partition` (5 with idempotence, as Kafka's producer, else 1). The agent
//! appends a producer's batches strictly in sequence order and refuses one sent ahead of a
//! gap, and a retried batch goes back to its place in its queue, so records stay in order
//! within a partition across retries and failovers, with requests pipelined.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhouse_proto::batch::{self, BatchBuilder, Compression, Header, ProducerStamp};
use streamhouse_proto::limits;
use streamhouse_proto::partitioner::partition_for_key;
use streamhouse_proto::pb::{self, ErrorCode};
use streamhouse_proto::time::{Backoff, now_ms};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::cluster::{AgentConn, Cluster, parse_bootstrap};
use crate::error::{ClientError, Result};

mod accumulator;
mod alarm;
mod builder;
mod delivery;
mod idempotence;
mod sender;

use accumulator::*;
use alarm::Alarm;
pub use builder::ProducerBuilder;
use delivery::*;
pub use delivery::{DeliveryFuture, RecordMetadata};
use idempotence::*;
use sender::*;

#[derive(Debug)]
struct Inner {
    config: ProducerBuilder,
    cluster: Arc<Cluster>,
    buffer: Arc<Semaphore>,
    accum: Mutex<HashMap<String, TopicQueues>>,
    /// Wakes the sender: a batch was sealed or opened, or a request finished.
    wake: Arc<Notify>,
    /// Topics whose metadata is being fetched.
    refreshing: Mutex<HashSet<String>>,
    closed: AtomicBool,
    /// The idempotent producer's identity (unused with idempotence off).
    identity: Mutex<Identity>,
    metrics: crate::metrics::ProducerRecorders,
}

/// Sends records to StreamHouse. Cheap to clone; clones share batches and connections.
///
/// One sender task drains the batches: every partition with records ready goes into one
/// `Produce` request per agent, like Kafka's producer, with at most `max_in_flight` requests
/// in flight to an agent.
///
/// ```no_run
/// # async fn demo() -> Result<(), streamhouse_client::ClientError> {
/// use streamhouse_client::Producer;
/// let producer = Producer::builder().bootstrap("127.0.0.1:9660").build().await?;
/// for i in 0..1000 {
///     let key = format!("user-{}", i % 10);
///     producer.send("events", Some(key.as_bytes()), b"{\"action\":\"click\"}").await?;
/// }
/// let last = producer.send_and_wait("events", None, b"done").await?;
/// println!("last offset {}", last.offset);
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// A builder with the default settings.
    ///
    /// ```
    /// let builder = streamhouse_client::Producer::builder().bootstrap("127.0.0.1:9660");
    /// ```
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Enqueues a record and returns without waiting for the agent; await the returned
    /// [`DeliveryFuture`] for its offset. Keyed records go to the partition Kafka's default
    /// partitioner would pick; keyless ones stick to one partition per batch. Waits only when
    /// `buffer_bytes` of records are already waiting.
    ///
    /// ```no_run
    /// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
    /// let delivery = producer.send("events", Some(b"user-1"), b"clicked").await?;
    /// // ... later, or never: dropping it does not cancel the record
    /// let offset = delivery.await?.offset;
    /// # Ok(()) }
    /// ```
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<DeliveryFuture> {
        self.send_record(topic, None, key, Some(value), &[], None)
            .await
    }

    /// Like [`Producer::send`] with every field: an explicit partition (or `None` to let the
    /// partitioner choose), a nullable value (a tombstone), headers and a timestamp (ms since
    /// the epoch; `None` for now). Agents refuse a timestamp more than a week before or an
    /// hour after their clock by default (`INVALID_TIMESTAMP`, in the delivery's result).
    ///
    /// ```no_run
    /// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
    /// let headers = [streamhouse_client::Header { key: "trace".into(), value: Some(bytes::Bytes::from_static(b"abc")) }];
    /// let event_time = std::time::SystemTime::now()
    ///     .duration_since(std::time::UNIX_EPOCH)
    ///     .map_or(0, |d| d.as_millis() as i64 - 60_000); // a minute ago
    /// producer
    ///     .send_record("events", Some(2), Some(b"user-1"), None, &headers, Some(event_time))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_record(
        &self,
        topic: &str,
        partition: Option<u32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        timestamp: Option<i64>,
    ) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let size = batch::record_size(key, value, headers);
        let max = inner.config.batch_bytes;
        if size > max {
            return Err(ClientError::RecordTooLarge { size, max });
        }
        // Learns the topic, and with it the agents' limits, before checking against them.
        let count = self.partition_count(topic).await?;
        let payload_limit = inner.payload_limit();
        if size > payload_limit {
            return Err(ClientError::RecordTooLarge {
                size: batch::encoded_len_bound(size),
                max: inner.cluster.limits().max_batch_bytes,
            });
        }
        if let Some(p) = partition
            && p >= count
        {
            return Err(ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
            });
        }
        let permit = match inner.buffer.clone().try_acquire_many_owned(size as u32) {
            Ok(p) => p,
            Err(_) => inner
                .buffer
                .clone()
                .acquire_many_owned(size as u32)
                .await
                .map_err(|_| ClientError::Closed)?,
        };
        let timestamp = timestamp.unwrap_or_else(now_ms);
        let mut accum = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
        if !accum.contains_key(topic) {
            accum.insert(topic.to_string(), TopicQueues::new(topic, count));
        }
        let Some(slots) = accum.get_mut(topic) else {
            return Err(ClientError::UnknownTopic(topic.to_string()));
        };
        let partition = match (partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, count),
            (None, None) => slots.sticky,
        };
        let cfg = &inner.config;
        let slot = &mut slots.partitions[partition as usize];
        let fits = slot.open.as_ref().is_some_and(|b| {
            b.builder.record_count() < cfg.batch_size
                && b.builder.payload_len() + size <= payload_limit
        });
        let mut sealed = false;
        if !fits {
            sealed = seal(slot);
            slot.open = Some(OpenBatch {
                builder: BatchBuilder::with_capacity(
                    cfg.compression,
                    (size * cfg.batch_size).min(payload_limit).min(64 * 1024),
                ),
                created: Instant::now(),
                outcome: Arc::new(BatchOutcome::default()),
                permits: None,
            });
        }
        let Some(open) = slot.open.as_mut() else {
            return Err(ClientError::Closed);
        };
        open.builder.append(timestamp, key, value, headers);
        match &mut open.permits {
            Some(p) => p.merge(permit),
            None => open.permits = Some(permit),
        }
        let future = DeliveryFuture {
            outcome: open.outcome.clone(),
            topic: slots.name.clone(),
            partition,
            index: open.builder.record_count() as i64 - 1,
            timestamp,
        };
        if open.builder.record_count() >= cfg.batch_size {
            sealed |= seal(slot);
        }
        if sealed || !fits {
            // A batch to send, or a new batch whose linger the sender must time.
            inner.wake.notify_one();
        }
        if sealed && key.is_none() && partition == slots.sticky && count > 1 {
            // Kafka's sticky partitioner: move keyless records on once a batch is sent.
            let step = 1 + rand::random::<u32>() % (count - 1);
            slots.sticky = (slots.sticky + step) % count;
        }
        Ok(future)
    }

    /// Sends one record and waits for its acknowledgement.
    ///
    /// ```no_run
    /// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
    /// let meta = producer.send_and_wait("events", None, b"x").await?;
    /// assert_eq!(meta.topic, "events");
    /// # Ok(()) }
    /// ```
    pub async fn send_and_wait(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<RecordMetadata> {
        self.send(topic, key, value).await?.await
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(slots) = self
            .inner
            .accum
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return Ok(slots.partitions.len() as u32);
        }
        let meta = self.inner.cluster.topic(topic).await?;
        Ok(meta.partitions.len() as u32)
    }

    /// Sends every buffered record now and waits until each one sent before this call is
    /// acknowledged or has failed.
    ///
    /// ```no_run
    /// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
    /// for i in 0..100u32 {
    ///     producer.send("events", None, &i.to_be_bytes()).await?;
    /// }
    /// producer.flush().await?; // all 100 are acknowledged or failed now
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<()> {
        let outcomes: Vec<Arc<BatchOutcome>> = {
            let mut accum = self.inner.accum.lock().unwrap_or_else(|p| p.into_inner());
            let mut outcomes = Vec::new();
            for topic in accum.values_mut() {
                for q in &mut topic.partitions {
                    seal(q);
                    outcomes.extend(q.sealed.iter().map(|b| b.outcome.clone()));
                    outcomes.extend(q.in_flight.iter().flat_map(|r| r.outcomes.iter().cloned()));
                }
            }
            outcomes
        };
        self.inner.wake.notify_one();
        for o in outcomes {
            let _ = o.wait().await;
        }
        Ok(())
    }

    /// Where this producer's batches have spent their time since it started: lingering,
    /// queued for a request slot, and in produce requests. Two snapshots and
    /// [`LatencyHistogram::since`](crate::LatencyHistogram::since) give a window.
    ///
    /// ```no_run
    /// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
    /// let before = producer.metrics();
    /// producer.send_and_wait("events", None, b"timed").await?;
    /// let request = producer.metrics().request.since(&before.request);
    /// println!("{} request(s), p99 {:?}", request.count(), request.quantile(0.99));
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> crate::ProducerMetrics {
        self.inner.metrics.snapshot()
    }

    /// Flushes, then refuses further sends. Records already sent are delivered first.
    ///
    /// ```no_run
    /// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
    /// producer.close().await?;
    /// assert!(producer.send("events", None, b"late").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.inner.closed.store(true, Ordering::Release);
        self.flush().await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Records not yet sent when the last handle goes are not sent: say so to whoever
        // awaits them rather than leave them waiting.
        let accum = self.accum.get_mut().unwrap_or_else(|p| p.into_inner());
        for topic in accum.values_mut() {
            for q in &mut topic.partitions {
                if let Some(open) = q.open.take() {
                    open.outcome.set(Err(ClientError::Closed));
                }
                for b in q.sealed.drain(..) {
                    b.fail(ClientError::Closed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
