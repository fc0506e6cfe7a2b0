//! The producer: batches records per partition, sends them to the partitions' leaders,
//! retries transient failures within the delivery timeout, and resolves each record's
//! [`DeliveryFuture`] with its offset.
//!
//! [`Producer::send`] encodes the record straight into its partition's open batch under a
//! short lock and returns; it waits only when the buffer is full. Batches are sealed when they
//! reach `batch_size` records or `batch_bytes`, or after `linger`. One sender task then puts
//! every partition with sealed batches into one request per leader, as Kafka's producer does,
//! with at most `max_in_flight` requests in flight to an agent. A partition whose request is
//! in flight waits for its answer before sending again, and a retried batch goes back in front
//! of its queue, so records stay in order within a partition.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use streamhouse_proto::batch::{self, BatchBuilder, Compression, Header, ProducerStamp};
use streamhouse_proto::limits;
use streamhouse_proto::partitioner::partition_for_key;
use streamhouse_proto::pb::{self, ErrorCode};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::cluster::{AgentConn, Cluster, parse_bootstrap};
use crate::error::{ClientError, Result};

/// Where and when a record was stored.
///
/// ```no_run
/// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
/// let meta = producer.send_and_wait("events", Some(b"k"), b"v").await?;
/// println!("{}-{}@{} at {}", meta.topic, meta.partition, meta.offset, meta.timestamp);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition the record went to.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp (its create time), ms since the epoch.
    pub timestamp: i64,
}

/// Builds a [`Producer`]. Every setting is checked by [`ProducerBuilder::build`].
///
/// ```no_run
/// # async fn demo() -> Result<(), streamhouse_client::ClientError> {
/// use streamhouse_client::{Compression, Producer};
/// let producer = Producer::builder()
///     .bootstrap("127.0.0.1:9660")
///     .batch_size(1000)
///     .linger_ms(5)
///     .compression(Compression::Lz4)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    bootstrap: String,
    batch_size: usize,
    batch_bytes: usize,
    linger: Duration,
    max_in_flight: usize,
    request_timeout: Duration,
    delivery_timeout: Duration,
    retry_backoff: Duration,
    retry_backoff_max: Duration,
    max_retries: Option<u32>,
    compression: Compression,
    buffer_bytes: usize,
    idempotence: bool,
    security: crate::Security,
}

impl Default for ProducerBuilder {
    fn default() -> Self {
        ProducerBuilder {
            bootstrap: String::new(),
            batch_size: 1000,
            batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            request_timeout: Duration::from_millis(30_000),
            delivery_timeout: Duration::from_millis(120_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            max_retries: None,
            compression: Compression::Lz4,
            buffer_bytes: 32 * 1024 * 1024,
            security: crate::Security::default(),
            idempotence: true,
        }
    }
}

impl ProducerBuilder {
    /// Comma-separated `HOST:PORT` of one or more agents. Required.
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().bootstrap("10.0.0.1:9660,10.0.0.2:9660");
    /// ```
    pub fn bootstrap(mut self, addrs: impl Into<String>) -> Self {
        self.bootstrap = addrs.into();
        self
    }

    /// Most records in one partition batch (default 1,000).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().batch_size(5_000);
    /// ```
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records;
        self
    }

    /// Most bytes of records in one partition batch, before compression (default 1 MiB).
    /// Batches are also sealed so their encoded size stays within the largest batch the
    /// agents accept (`max_record_bytes`, which they announce). A single record too large for
    /// either is refused by `send` with [`ClientError::RecordTooLarge`], at once.
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().batch_bytes(512 * 1024);
    /// ```
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// How long a batch waits for more records before it is sent (default 5 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().linger_ms(20);
    /// ```
    pub fn linger_ms(mut self, ms: u64) -> Self {
        self.linger = Duration::from_millis(ms);
        self
    }

    /// Most produce requests in flight to one agent (default 5).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().max_in_flight(1);
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// How long one request may take before it is retried (default 30,000 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().request_timeout_ms(10_000);
    /// ```
    pub fn request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout = Duration::from_millis(ms);
        self
    }

    /// How long a record may take from `send` to acknowledgement, retries included (default
    /// 120,000 ms). A failover shorter than this never surfaces as an error.
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().delivery_timeout_ms(300_000);
    /// ```
    pub fn delivery_timeout_ms(mut self, ms: u64) -> Self {
        self.delivery_timeout = Duration::from_millis(ms);
        self
    }

    /// First pause between retries (default 100 ms); it doubles up to 1,000 ms.
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().retry_backoff_ms(50);
    /// ```
    pub fn retry_backoff_ms(mut self, ms: u64) -> Self {
        self.retry_backoff = Duration::from_millis(ms);
        self
    }

    /// Ceiling of the retry pause (default 1,000 ms).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().retry_backoff_max_ms(5_000);
    /// ```
    pub fn retry_backoff_max_ms(mut self, ms: u64) -> Self {
        self.retry_backoff_max = Duration::from_millis(ms);
        self
    }

    /// Most retries of one batch (default: unlimited within the delivery timeout).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().max_retries(3);
    /// ```
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Batch compression (default LZ4).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().compression(streamhouse_client::Compression::None);
    /// ```
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Bytes of records buffered before `send` waits (default 32 MiB).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().buffer_bytes(256 * 1024 * 1024);
    /// ```
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// TLS and token settings (default: plain TCP, no token).
    ///
    /// ```
    /// use streamhouse_client::{Producer, Security};
    /// let b = Producer::builder().security(Security::new().token("s3cr3t"));
    /// ```
    pub fn security(mut self, security: crate::Security) -> Self {
        self.security = security;
        self
    }

    /// Idempotent delivery (default on): the producer gets an id from the cluster and numbers
    /// its batches per partition, so a batch retried after a lost answer or a failover is
    /// stored once and acknowledged with its original offsets. Off, a retry may store a batch
    /// twice (at-least-once).
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().enable_idempotence(false);
    /// ```
    pub fn enable_idempotence(mut self, on: bool) -> Self {
        self.idempotence = on;
        self
    }

    /// Checks the settings and creates the producer. Connections are made on first use.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// let producer = streamhouse_client::Producer::builder().bootstrap("127.0.0.1:9660").build().await?;
    /// let refused = streamhouse_client::Producer::builder().batch_size(0).build().await;
    /// assert!(matches!(refused, Err(streamhouse_client::ClientError::InvalidConfig(_))));
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<Producer> {
        let bootstrap = parse_bootstrap(&self.bootstrap)?;
        let bad = |m: String| Err(ClientError::InvalidConfig(m));
        if !(1..=1_000_000).contains(&self.batch_size) {
            return bad(format!(
                "batch_size {} must be 1..=1000000",
                self.batch_size
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.batch_bytes) {
            return bad(format!(
                "batch_bytes {} must be 1 KiB..=64 MiB",
                self.batch_bytes
            ));
        }
        if self.linger > Duration::from_secs(60) {
            return bad("linger_ms must be at most 60000".into());
        }
        if !(1..=1000).contains(&self.max_in_flight) {
            return bad(format!(
                "max_in_flight {} must be 1..=1000",
                self.max_in_flight
            ));
        }
        if self.request_timeout.is_zero() || self.delivery_timeout < self.request_timeout {
            return bad(
                "request_timeout_ms must be positive and at most delivery_timeout_ms".into(),
            );
        }
        if self.retry_backoff.is_zero() || self.retry_backoff_max < self.retry_backoff {
            return bad(
                "retry_backoff_ms must be positive and at most retry_backoff_max_ms".into(),
            );
        }
        if self.buffer_bytes < self.batch_bytes {
            return bad(format!(
                "buffer_bytes {} must be at least batch_bytes {}",
                self.buffer_bytes, self.batch_bytes
            ));
        }
        self.security.validate()?;
        let cluster = Arc::new(Cluster::new(
            bootstrap,
            self.max_in_flight,
            self.request_timeout,
            self.security.clone(),
        ));
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            cluster,
            buffer: Arc::new(Semaphore::new(self.buffer_bytes)),
            config: self,
            accum: Mutex::new(HashMap::new()),
            wake: wake.clone(),
            refreshing: Mutex::new(HashSet::new()),
            closed: AtomicBool::new(false),
            identity: Mutex::new(Identity {
                current: None,
                renew: true,
                renewing: false,
            }),
        });
        tokio::spawn(sender(Arc::downgrade(&inner), wake));
        Ok(Producer { inner })
    }
}

/// A batch's outcome, shared by the futures of all its records.
#[derive(Debug, Default)]
struct BatchOutcome {
    result: OnceLock<Result<i64>>,
    done: Notify,
}

impl BatchOutcome {
    fn set(&self, r: Result<i64>) {
        let _ = self.result.set(r);
        self.done.notify_waiters();
    }

    async fn wait(&self) -> &Result<i64> {
        loop {
            let notified = self.done.notified();
            if let Some(r) = self.result.get() {
                return r;
            }
            notified.await;
        }
    }
}

/// Resolves to a record's [`RecordMetadata`] once its batch is acknowledged, or to the error
/// that stopped it. Dropping it does not cancel the record.
///
/// ```no_run
/// # async fn demo(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
/// let delivery = producer.send("events", Some(b"user-1"), b"clicked").await?;
/// let meta = delivery.await?;
/// println!("stored at {}-{} offset {}", meta.topic, meta.partition, meta.offset);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DeliveryFuture {
    outcome: Arc<BatchOutcome>,
    topic: Arc<str>,
    partition: u32,
    index: i64,
    timestamp: i64,
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.outcome.wait().await {
                Ok(base) => Ok(RecordMetadata {
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    offset: base + self.index,
                    timestamp: self.timestamp,
                }),
                Err(e) => Err(e.clone()),
            }
        })
    }
}

#[derive(Debug)]
struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    outcome: Arc<BatchOutcome>,
    permits: Option<OwnedSemaphorePermit>,
}

/// A batch's records, encoded (and compressed) once, on its first send.
#[derive(Debug)]
enum Payload {
    Records(BatchBuilder),
    Encoded(Bytes),
}

/// A batch that has left its partition's open slot.
#[derive(Debug)]
struct SealedBatch {
    payload: Payload,
    record_count: i64,
    created: Instant,
    attempts: u32,
    last_error: Option<ClientError>,
    outcome: Arc<BatchOutcome>,
    /// Producer id, epoch and first sequence, given on the batch's first send and kept for
    /// every retry, so the agent recognises a retry.
    stamp: Option<ProducerStamp>,
    /// Buffer space held until the batch's outcome is known.
    _permits: Option<OwnedSemaphorePermit>,
}

impl SealedBatch {
    fn encode(&mut self) -> Bytes {
        let bytes = match std::mem::replace(&mut self.payload, Payload::Encoded(Bytes::new())) {
            Payload::Records(b) => b
                .finish(self.stamp.unwrap_or(ProducerStamp::NONE))
                .unwrap_or_default(),
            Payload::Encoded(b) => b,
        };
        self.payload = Payload::Encoded(bytes.clone());
        bytes
    }

    /// Encoded bytes: exact once encoded, the bound before.
    fn size(&self) -> usize {
        match &self.payload {
            Payload::Records(b) => batch::encoded_len_bound(b.payload_len()),
            Payload::Encoded(b) => b.len(),
        }
    }

    fn fail(self, e: ClientError) {
        self.outcome.set(Err(e));
    }
}

/// One partition's records on their way out.
#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    sealed: VecDeque<SealedBatch>,
    /// Outcomes of the batches in the request now in flight. A partition with a request in
    /// flight sends nothing else until it is answered, which keeps its records in order
    /// across retries.
    in_flight: Vec<Arc<BatchOutcome>>,
    /// Backing off after a failure: nothing is sent before this, unless the partition gets
    /// a leader other than `failed_leader`, the agent the failed request went to.
    retry_at: Option<Instant>,
    failed_leader: Option<String>,
    /// The producer id and epoch `next_sequence` counts under; a new epoch, or a new id (after
    /// the cluster forgot the old one), starts again at 0.
    sequence_identity: Option<(i64, i16)>,
    next_sequence: i32,
}

#[derive(Debug)]
struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    /// Where keyless records go until that partition's batch is sealed.
    sticky: u32,
}

impl TopicQueues {
    fn new(topic: &str, count: u32) -> Self {
        TopicQueues {
            name: Arc::from(topic),
            partitions: (0..count).map(|_| PartitionQueue::default()).collect(),
            sticky: rand::random::<u32>() % count.max(1),
        }
    }
}

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
}

/// Who this producer is to the cluster's de-duplication.
#[derive(Debug, Default)]
struct Identity {
    /// (producer id, epoch) once the cluster has given them.
    current: Option<(i64, i16)>,
    /// A batch with a sequence failed for good, leaving a gap the agents would refuse: new
    /// batches wait for the next epoch, which starts every partition's sequences afresh.
    renew: bool,
    renewing: bool,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
                    outcomes.extend(q.in_flight.iter().cloned());
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

/// Moves the partition's open batch to its queue. True if there was one.
fn seal(q: &mut PartitionQueue) -> bool {
    let Some(open) = q.open.take() else {
        return false;
    };
    q.sealed.push_back(SealedBatch {
        record_count: open.builder.record_count() as i64,
        payload: Payload::Records(open.builder),
        created: open.created,
        attempts: 0,
        last_error: None,
        outcome: open.outcome,
        stamp: None,
        _permits: open.permits,
    });
    true
}

/// Partitions are added to a produce request while it carries fewer bytes than this (unless
/// the agents decode less); the last one added may take it past, up to the agents' limit.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Room left in a request for its protobuf framing: topic names and field tags.
const REQUEST_FRAMING: usize = 512 * 1024;

/// The sender: seals batches that lingered long enough, fails those past the delivery
/// timeout, and sends the rest. It holds the producer only weakly, so dropping every
/// `Producer` ends it.
async fn sender(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let next = strong.dispatch();
        drop(strong);
        let idle = Instant::now() + Duration::from_secs(1);
        let until = next.map_or(idle, |n| n.min(idle));
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

/// One request being built: the partitions going to one agent.
type RequestParts = Vec<(Arc<str>, u32, Vec<SealedBatch>)>;

impl Inner {
    /// Most bytes of records one batch may hold: the producer's `batch_bytes`, and what keeps
    /// the encoded batch within the agents' limit.
    fn payload_limit(&self) -> usize {
        let agent = self.cluster.limits().max_batch_bytes;
        self.config
            .batch_bytes
            .min(agent.saturating_sub(batch::encoded_len_bound(0)))
    }

    /// Does everything due now; returns when something will next be due.
    fn dispatch(self: &Arc<Inner>) -> Option<Instant> {
        let cfg = &self.config;
        let now = Instant::now();
        let closing = self.closed.load(Ordering::Acquire);
        let mut next: Option<Instant> = None;
        let mut soonest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let mut unknown: Vec<String> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        let stamp_with = if cfg.idempotence {
            self.identity_for_new_batches()
        } else {
            None
        };
        let mut failed_stamped = false;
        let mut accum = self.accum.lock().unwrap_or_else(|p| p.into_inner());

        // Partitions ready to send, by leader address.
        let mut ready: HashMap<String, Vec<(String, u32)>> = HashMap::new();
        for (name, topic) in accum.iter_mut() {
            for (p, q) in topic.partitions.iter_mut().enumerate() {
                if let Some(open) = &q.open {
                    let due = open.created + cfg.linger;
                    if due <= now || closing {
                        seal(q);
                    } else {
                        soonest(due);
                    }
                }
                while q
                    .sealed
                    .front()
                    .is_some_and(|b| b.created + cfg.delivery_timeout <= now)
                {
                    if let Some(b) = q.sealed.pop_front() {
                        failed_stamped |= b.stamp.is_some();
                        let last_error = b
                            .last_error
                            .as_ref()
                            .map_or_else(|| "never sent".to_string(), |e| e.to_string());
                        let elapsed_ms = b.created.elapsed().as_millis() as u64;
                        b.fail(ClientError::DeliveryTimeout {
                            elapsed_ms,
                            last_error,
                        });
                    }
                }
                let Some(front) = q.sealed.front() else {
                    continue;
                };
                soonest(front.created + cfg.delivery_timeout);
                if !q.in_flight.is_empty() {
                    continue;
                }
                if cfg.idempotence && front.stamp.is_none() && stamp_with.is_none() {
                    // Waiting for the producer's (next) epoch.
                    continue;
                }
                if let Some(t) = q.retry_at.filter(|t| *t > now) {
                    // A new leader ends the wait at once. While the failed one is still
                    // named (its lease has not run out yet), look again every base backoff,
                    // so a failover costs the lease TTL and not the grown backoff as well.
                    let cached = self.cluster.cached_leader(name, p as u32);
                    let moved = matches!((&cached, &q.failed_leader),
                        (Some(Some(now_leader)), Some(failed)) if now_leader != failed);
                    if !moved {
                        if q.failed_leader.is_some()
                            && self
                                .cluster
                                .cached_age(name)
                                .is_some_and(|age| age >= cfg.retry_backoff)
                        {
                            stale.push(name.clone());
                        }
                        soonest(t.min(now + cfg.retry_backoff));
                        continue;
                    }
                    q.retry_at = None;
                }
                match self.cluster.cached_leader(name, p as u32) {
                    Some(Some(addr)) => ready
                        .entry(addr)
                        .or_default()
                        .push((name.clone(), p as u32)),
                    _ => {
                        unknown.push(name.clone());
                        q.retry_at = Some(now + cfg.retry_backoff);
                        soonest(now + cfg.retry_backoff);
                    }
                }
            }
        }

        // Partitions join a request while it is under the soft budget, each with its whole
        // window of batches unless that would pass what the agents decode (the hard limit).
        // The soft budget leaves room for one more batch, so even the first batch of the last
        // partition added fits.
        let agent_limits = self.cluster.limits();
        let hard_limit = agent_limits
            .max_request_bytes
            .saturating_sub(REQUEST_FRAMING)
            .max(1);
        let request_budget = MAX_REQUEST_BYTES
            .min(hard_limit.saturating_sub(agent_limits.max_batch_bytes))
            .max(1);
        for (addr, parts) in ready {
            let conn = match self.cluster.conn(&addr) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot reach the leader's address");
                    continue;
                }
            };
            let mut parts = parts.into_iter().peekable();
            while parts.peek().is_some() {
                // Without a free request slot the partitions wait for a request to finish,
                // which wakes the sender.
                let Ok(slot) = conn.in_flight.clone().try_acquire_owned() else {
                    break;
                };
                let mut request: RequestParts = Vec::new();
                let mut bytes = 0;
                while bytes < request_budget && request.len() < limits::MAX_PRODUCE_PARTITIONS {
                    let Some((name, p)) = parts.next() else { break };
                    let Some(topic) = accum.get_mut(&name) else {
                        continue;
                    };
                    let q = &mut topic.partitions[p as usize];
                    let room = hard_limit.saturating_sub(bytes);
                    let batches = take_batches(q, cfg.idempotence, stamp_with, room);
                    if batches.is_empty() {
                        continue;
                    }
                    bytes += batches.iter().map(SealedBatch::size).sum::<usize>();
                    q.in_flight = batches.iter().map(|b| b.outcome.clone()).collect();
                    request.push((topic.name.clone(), p, batches));
                }
                tokio::spawn(send_request(
                    self.clone(),
                    addr.clone(),
                    conn.clone(),
                    slot,
                    request,
                ));
            }
        }
        drop(accum);

        stale.sort_unstable();
        stale.dedup();
        for topic in unknown.into_iter().chain(stale) {
            self.refresh_later(topic);
        }
        if failed_stamped {
            self.renew_identity_later();
        }
        self.start_identity_renewal();
        next
    }

    /// The (id, epoch) to number new batches with, or `None` while there is none yet or a
    /// new epoch is on its way.
    fn identity_for_new_batches(&self) -> Option<(i64, i16)> {
        let id = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        if id.renew || id.renewing {
            None
        } else {
            id.current
        }
    }

    /// A numbered batch failed for good: its partition's sequence has a hole.
    fn renew_identity_later(&self) {
        if self.config.idempotence {
            self.identity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .renew = true;
        }
    }

    /// Asks the cluster for a producer id, or for the next epoch of ours, in the background.
    fn start_identity_renewal(self: &Arc<Inner>) {
        let current = {
            let mut id = self.identity.lock().unwrap_or_else(|p| p.into_inner());
            if !self.config.idempotence || !id.renew || id.renewing {
                return;
            }
            id.renewing = true;
            id.current
        };
        // Held weakly, so that dropping the producer ends the attempts.
        let weak = Arc::downgrade(self);
        let mut backoff = self.config.retry_backoff;
        tokio::spawn(async move {
            let (inner, got) = loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let cluster = inner.cluster.clone();
                let attempt = match init_producer_id(&cluster, current).await {
                    // Our epoch was bumped elsewhere or forgotten: start as a new producer.
                    Err(e) if e.code() == Some(pb::ErrorCode::ProducerFenced) => {
                        init_producer_id(&cluster, None).await
                    }
                    other => other,
                };
                match attempt {
                    Ok(got) => break (inner, got),
                    Err(e) => tracing::debug!(error = %e, "producer id request failed"),
                }
                let max = inner.config.retry_backoff_max;
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            };
            {
                let mut id = inner.identity.lock().unwrap_or_else(|p| p.into_inner());
                id.current = Some(got);
                id.renew = false;
                id.renewing = false;
            }
            tracing::debug!(producer_id = got.0, epoch = got.1, "producer identity");
            inner.wake.notify_one();
        });
    }

    /// Fetches a topic's metadata in the background, once at a time per topic. A topic that
    /// no longer exists fails its queued records at once.
    fn refresh_later(self: &Arc<Inner>, topic: String) {
        if !self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.clone())
        {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let result = inner.cluster.refresh(&topic).await;
            inner
                .refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&topic);
            if let Err(e) = result
                && !e.is_retriable()
            {
                let mut accum = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = accum.get_mut(&topic) {
                    for q in &mut t.partitions {
                        for b in q.sealed.drain(..) {
                            b.fail(e.clone());
                        }
                    }
                }
            }
            inner.wake.notify_one();
        });
    }

    /// Settles one partition's part of a finished request: acknowledge, queue again for a
    /// retry (in front, so order holds), or fail.
    fn settle(
        &self,
        q: &mut PartitionQueue,
        topic: &str,
        addr: &str,
        batches: Vec<SealedBatch>,
        result: Result<Vec<i64>>,
    ) {
        let cfg = &self.config;
        q.in_flight.clear();
        match result {
            Ok(offsets) => {
                q.retry_at = None;
                q.failed_leader = None;
                for (b, base) in batches.into_iter().zip(offsets) {
                    b.outcome.set(Ok(base));
                }
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(topic, error = %e, "produce failed; retrying");
                self.cluster.forget(topic);
                let mut attempts = 0;
                for mut b in batches.into_iter().rev() {
                    b.attempts += 1;
                    attempts = attempts.max(b.attempts);
                    if cfg.max_retries.is_some_and(|m| b.attempts > m) {
                        if b.stamp.is_some() {
                            self.renew_identity_later();
                        }
                        b.fail(e.clone());
                    } else {
                        b.last_error = Some(last_cause(b.last_error.take(), &e));
                        q.sealed.push_front(b);
                    }
                }
                let backoff = cfg
                    .retry_backoff
                    .saturating_mul(1 << attempts.saturating_sub(1).min(16))
                    .min(cfg.retry_backoff_max);
                q.retry_at = Some(Instant::now() + backoff);
                q.failed_leader = Some(addr.to_string());
            }
            Err(e) => {
                for b in batches {
                    if b.stamp.is_some() {
                        self.renew_identity_later();
                    }
                    b.fail(e.clone());
                }
            }
        }
    }
}

/// What a batch reports if its delivery times out: the newest error, except that a routing
/// error (a leader moved, an agent stopping or unreachable) does not hide the last real cause
/// seen before it (a store unavailable, the agent throttling).
fn last_cause(previous: Option<ClientError>, new: &ClientError) -> ClientError {
    let is_cause = |e: &ClientError| {
        matches!(
            e.code(),
            Some(
                ErrorCode::StorageUnavailable
                    | ErrorCode::MetadataUnavailable
                    | ErrorCode::Throttled
            )
        )
    };
    match previous {
        Some(p) if is_cause(&p) && !is_cause(new) => p,
        _ => new.clone(),
    }
}

/// Takes the batches of a partition's next request: at most the agents' per-partition limit
/// (the de-duplication window) and, after the first, no more than `budget` bytes. With
/// idempotence each is numbered on its first send (retries keep theirs); batches not yet
/// numbered wait while there is no identity to number them with.
fn take_batches(
    q: &mut PartitionQueue,
    idempotence: bool,
    stamp_with: Option<(i64, i16)>,
    budget: usize,
) -> Vec<SealedBatch> {
    let mut taken = 0;
    let mut out = Vec::new();
    while out.len() < limits::MAX_BATCHES_PER_PARTITION {
        let Some(front) = q.sealed.front_mut() else {
            break;
        };
        if !out.is_empty() && taken + front.size() > budget {
            break;
        }
        if !idempotence {
            taken += front.size();
            if let Some(b) = q.sealed.pop_front() {
                out.push(b);
            }
            continue;
        }
        if front.stamp.is_none() {
            let Some((producer_id, producer_epoch)) = stamp_with else {
                break;
            };
            if q.sequence_identity != Some((producer_id, producer_epoch)) {
                q.sequence_identity = Some((producer_id, producer_epoch));
                q.next_sequence = 0;
            }
            front.stamp = Some(ProducerStamp {
                producer_id,
                producer_epoch,
                base_sequence: q.next_sequence,
            });
            q.next_sequence = batch::next_sequence(q.next_sequence, front.record_count as i32);
        }
        taken += front.size();
        if let Some(b) = q.sealed.pop_front() {
            out.push(b);
        }
    }
    out
}

async fn init_producer_id(cluster: &Cluster, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
    let (producer_id, producer_epoch) = current.map_or((-1, -1), |(i, e)| (i, i32::from(e)));
    let resp = cluster
        .any_agent(|mut client| async move {
            client
                .init_producer_id(pb::InitProducerIdRequest {
                    producer_id,
                    producer_epoch,
                })
                .await
        })
        .await?;
    if let Some(e) = ClientError::from_pb(resp.error.as_ref()) {
        return Err(e);
    }
    let epoch = i16::try_from(resp.producer_epoch).map_err(|_| ClientError::Agent {
        code: pb::ErrorCode::Unknown,
        message: format!("producer epoch {} out of range", resp.producer_epoch),
    })?;
    Ok((resp.producer_id, epoch))
}

/// Sends one request and settles each of its partitions.
async fn send_request(
    inner: Arc<Inner>,
    addr: String,
    conn: AgentConn,
    slot: OwnedSemaphorePermit,
    mut parts: RequestParts,
) {
    let req = pb::ProduceRequest {
        partitions: parts
            .iter_mut()
            .map(|(topic, partition, batches)| pb::PartitionBatches {
                topic: topic.to_string(),
                partition: *partition,
                batches: batches.iter_mut().map(SealedBatch::encode).collect(),
            })
            .collect(),
    };
    let mut client = conn.client.clone();
    let sent = tokio::time::timeout(inner.cluster.request_timeout(), client.produce(req)).await;
    drop(slot);
    let whole: std::result::Result<pb::ProduceResponse, ClientError> = match sent {
        Err(_) => Err(ClientError::Unreachable("produce request timed out".into())),
        Ok(Err(status)) => Err(ClientError::from_status(&status)),
        Ok(Ok(r)) => {
            let r = r.into_inner();
            match ClientError::from_pb(r.error.as_ref()) {
                Some(e) => Err(e),
                None => Ok(r),
            }
        }
    };
    let mut accum = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
    for (i, (topic, partition, batches)) in parts.into_iter().enumerate() {
        let result = match &whole {
            Err(e) => Err(e.clone()),
            Ok(resp) => match resp.results.get(i) {
                Some(r) if r.topic == *topic && r.partition == partition => {
                    match ClientError::from_pb(r.error.as_ref()) {
                        Some(e) => Err(e),
                        None if r.base_offsets.len() == batches.len() => Ok(r.base_offsets.clone()),
                        // An agent that does not list each batch's offset: they are adjacent.
                        None => Ok(batches
                            .iter()
                            .scan(r.base_offset, |next, b| {
                                let base = *next;
                                *next += b.record_count;
                                Some(base)
                            })
                            .collect()),
                    }
                }
                _ => Err(ClientError::Agent {
                    code: pb::ErrorCode::Unknown,
                    message: format!("the agent's answer has no result for {topic}-{partition}"),
                }),
            },
        };
        if let Some(t) = accum.get_mut(&*topic) {
            inner.settle(
                &mut t.partitions[partition as usize],
                &topic,
                &addr,
                batches,
                result,
            );
        }
    }
    drop(accum);
    inner.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(bytes: usize, records: i64) -> SealedBatch {
        SealedBatch {
            payload: Payload::Encoded(Bytes::from(vec![0u8; bytes])),
            record_count: records,
            created: Instant::now(),
            attempts: 0,
            last_error: None,
            outcome: Arc::new(BatchOutcome::default()),
            stamp: None,
            _permits: None,
        }
    }

    #[test]
    fn a_routing_error_does_not_hide_the_last_real_cause() {
        let agent = |code, message: &str| ClientError::Agent {
            code,
            message: message.into(),
        };
        let storage = agent(ErrorCode::StorageUnavailable, "bucket missing");
        let moved = agent(ErrorCode::NotLeader, "this agent does not lead t-0");
        let stopped = ClientError::Unreachable("connection refused".into());
        // The cause survives the routing errors after it...
        let kept = last_cause(Some(storage.clone()), &moved);
        let kept = last_cause(Some(kept), &stopped);
        assert_eq!(kept.to_string(), storage.to_string());
        // ...a newer cause replaces it, and with no cause the newest error is reported.
        let throttled = agent(ErrorCode::Throttled, "buffer full");
        assert_eq!(
            last_cause(Some(kept), &throttled).to_string(),
            throttled.to_string()
        );
        assert_eq!(last_cause(None, &moved).to_string(), moved.to_string());
        assert_eq!(
            last_cause(Some(moved.clone()), &stopped).to_string(),
            stopped.to_string()
        );
    }

    fn queue(batches: usize, bytes: usize) -> PartitionQueue {
        let mut q = PartitionQueue::default();
        q.sealed.extend((0..batches).map(|_| sealed(bytes, 10)));
        q
    }

    #[test]
    fn a_request_takes_batches_within_its_budget_and_the_window() {
        // Budget for two and a half: two go; the first always goes, however large.
        let mut q = queue(5, 1000);
        assert_eq!(take_batches(&mut q, false, None, 2500).len(), 2);
        assert_eq!(take_batches(&mut q, false, None, 10).len(), 1);
        // Never more than the agents take for one partition in one request.
        let mut q = queue(40, 10);
        let taken = take_batches(&mut q, true, Some((7, 0)), usize::MAX);
        assert_eq!(taken.len(), limits::MAX_BATCHES_PER_PARTITION);
        let mut q = queue(40, 10);
        assert_eq!(
            take_batches(&mut q, false, None, usize::MAX).len(),
            limits::MAX_BATCHES_PER_PARTITION
        );
    }

    #[test]
    fn sequences_restart_for_a_new_epoch_or_a_new_id() {
        let mut q = queue(6, 10);
        let seqs = |b: &[SealedBatch]| -> Vec<(i64, i16, i32)> {
            b.iter()
                .map(|b| {
                    b.stamp
                        .map(|s| (s.producer_id, s.producer_epoch, s.base_sequence))
                })
                .collect::<Option<_>>()
                .unwrap_or_default()
        };
        let first = take_batches(&mut q, true, Some((7, 0)), 20);
        assert_eq!(seqs(&first), [(7, 0, 0), (7, 0, 10)]);
        // The cluster forgot id 7; a new id starts at epoch 0 again, and at sequence 0.
        let second = take_batches(&mut q, true, Some((8, 0)), 20);
        assert_eq!(seqs(&second), [(8, 0, 0), (8, 0, 10)]);
        let third = take_batches(&mut q, true, Some((8, 1)), 10);
        assert_eq!(seqs(&third), [(8, 1, 0)]);
        // Without an identity, unnumbered batches wait.
        assert!(take_batches(&mut q, true, None, 100).is_empty());
    }
}
