//! The producer: batches records per partition, sends each batch to the partition's leader,
//! retries transient failures within the delivery timeout, and resolves each record's
//! [`DeliveryFuture`] with its offset.
//!
//! [`Producer::send`] encodes the record straight into its partition's open batch under a
//! short lock and returns; it waits only when the buffer is full. Batches leave when they
//! reach `batch_size` records or `batch_bytes`, or after `linger`. Each partition has one
//! lane that sends its batches one after another, so records stay in order within a
//! partition even across retries, while different partitions are sent concurrently (up to
//! `max_in_flight` requests per agent).

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use streamhouse_proto::batch::{self, BatchBuilder, Compression, Header, ProducerStamp};
use streamhouse_proto::partitioner::partition_for_key;
use streamhouse_proto::pb;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::cluster::{Cluster, parse_bootstrap};
use crate::error::{ClientError, Result};

/// Where and when a record was stored.
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
        }
    }
}

impl ProducerBuilder {
    /// Comma-separated `HOST:PORT` of one or more agents. Required.
    pub fn bootstrap(mut self, addrs: impl Into<String>) -> Self {
        self.bootstrap = addrs.into();
        self
    }

    /// Most records in one partition batch (default 1,000).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records;
        self
    }

    /// Most encoded bytes in one partition batch (default 1 MiB). A single record larger than
    /// this is refused with [`ClientError::RecordTooLarge`].
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// How long a batch waits for more records before it is sent (default 5 ms).
    pub fn linger_ms(mut self, ms: u64) -> Self {
        self.linger = Duration::from_millis(ms);
        self
    }

    /// Most produce requests in flight to one agent (default 5).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// How long one request may take before it is retried (default 30,000 ms).
    pub fn request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout = Duration::from_millis(ms);
        self
    }

    /// How long a record may take from `send` to acknowledgement, retries included (default
    /// 120,000 ms). A failover shorter than this never surfaces as an error.
    pub fn delivery_timeout_ms(mut self, ms: u64) -> Self {
        self.delivery_timeout = Duration::from_millis(ms);
        self
    }

    /// First pause between retries (default 100 ms); it doubles up to 1,000 ms.
    pub fn retry_backoff_ms(mut self, ms: u64) -> Self {
        self.retry_backoff = Duration::from_millis(ms);
        self
    }

    /// Ceiling of the retry pause (default 1,000 ms).
    pub fn retry_backoff_max_ms(mut self, ms: u64) -> Self {
        self.retry_backoff_max = Duration::from_millis(ms);
        self
    }

    /// Most retries of one batch (default: unlimited within the delivery timeout).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Batch compression (default LZ4).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Bytes of records buffered before `send` waits (default 32 MiB).
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// Checks the settings and creates the producer. Connections are made on first use.
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
        let cluster = Arc::new(Cluster::new(
            bootstrap,
            self.max_in_flight,
            self.request_timeout,
        ));
        let inner = Arc::new(Inner {
            lanes: Arc::new(LaneCtx {
                config: self.clone(),
                cluster: cluster.clone(),
            }),
            cluster,
            buffer: Arc::new(Semaphore::new(self.buffer_bytes)),
            config: self,
            accum: Mutex::new(HashMap::new()),
            linger_wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(linger_task(Arc::downgrade(&inner)));
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

#[derive(Debug)]
struct SealedBatch {
    builder: BatchBuilder,
    created: Instant,
    outcome: Arc<BatchOutcome>,
    /// Buffer space held until the batch's outcome is known.
    _permits: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
enum LaneMsg {
    Batch(SealedBatch),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug)]
struct PartitionSlot {
    open: Option<OpenBatch>,
    lane: mpsc::UnboundedSender<LaneMsg>,
}

#[derive(Debug)]
struct TopicSlots {
    name: Arc<str>,
    partitions: Vec<PartitionSlot>,
    /// Where keyless records go until that partition's batch is sent.
    sticky: u32,
}

/// What a partition's lane needs; lanes hold no reference to the producer itself, so dropping
/// every `Producer` closes the lanes once they have sent what they were given.
#[derive(Debug)]
struct LaneCtx {
    config: ProducerBuilder,
    cluster: Arc<Cluster>,
}

#[derive(Debug)]
struct Inner {
    config: ProducerBuilder,
    cluster: Arc<Cluster>,
    lanes: Arc<LaneCtx>,
    buffer: Arc<Semaphore>,
    accum: Mutex<HashMap<String, TopicSlots>>,
    linger_wake: Notify,
    closed: AtomicBool,
}

/// Sends records to StreamHouse. Cheap to clone; clones share batches and connections.
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
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Enqueues a record and returns without waiting for the agent; await the returned
    /// [`DeliveryFuture`] for its offset. Keyed records go to the partition Kafka's default
    /// partitioner would pick; keyless ones stick to one partition per batch. Waits only when
    /// `buffer_bytes` of records are already waiting.
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
    /// the epoch; `None` for now).
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
        let permit = match inner.buffer.clone().try_acquire_many_owned(size as u32) {
            Ok(p) => p,
            Err(_) => inner
                .buffer
                .clone()
                .acquire_many_owned(size as u32)
                .await
                .map_err(|_| ClientError::Closed)?,
        };
        let count = self.partition_count(topic).await?;
        if let Some(p) = partition
            && p >= count
        {
            return Err(ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
            });
        }
        let timestamp = timestamp.unwrap_or_else(now_ms);
        let mut accum = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
        if !accum.contains_key(topic) {
            accum.insert(topic.to_string(), self.new_slots(topic, count));
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
                && b.builder.payload_len() + size <= cfg.batch_bytes
        });
        let mut sealed = false;
        if !fits {
            sealed = seal(slot);
            slot.open = Some(OpenBatch {
                builder: BatchBuilder::with_capacity(
                    cfg.compression,
                    (size * cfg.batch_size).min(cfg.batch_bytes).min(64 * 1024),
                ),
                created: Instant::now(),
                outcome: Arc::new(BatchOutcome::default()),
                permits: None,
            });
            inner.linger_wake.notify_one();
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
        if sealed && key.is_none() && partition == slots.sticky && count > 1 {
            // Kafka's sticky partitioner: move keyless records on once a batch is sent.
            let step = 1 + rand::random::<u32>() % (count - 1);
            slots.sticky = (slots.sticky + step) % count;
        }
        Ok(future)
    }

    /// Sends one record and waits for its acknowledgement.
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

    fn new_slots(&self, topic: &str, count: u32) -> TopicSlots {
        let name: Arc<str> = Arc::from(topic);
        TopicSlots {
            partitions: (0..count)
                .map(|p| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(lane(self.inner.lanes.clone(), name.clone(), p, rx));
                    PartitionSlot {
                        open: None,
                        lane: tx,
                    }
                })
                .collect(),
            name,
            sticky: rand::random::<u32>() % count.max(1),
        }
    }

    /// Sends every buffered record now and waits until each one sent before this call is
    /// acknowledged or has failed.
    pub async fn flush(&self) -> Result<()> {
        let waits: Vec<oneshot::Receiver<()>> = {
            let mut accum = self.inner.accum.lock().unwrap_or_else(|p| p.into_inner());
            let mut waits = Vec::new();
            for slots in accum.values_mut() {
                for slot in &mut slots.partitions {
                    seal(slot);
                    let (tx, rx) = oneshot::channel();
                    if slot.lane.send(LaneMsg::Flush(tx)).is_ok() {
                        waits.push(rx);
                    }
                }
            }
            waits
        };
        for w in waits {
            let _ = w.await;
        }
        Ok(())
    }

    /// Flushes, then refuses further sends. Records already sent are delivered first.
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.inner.closed.store(true, Ordering::Release);
        self.flush().await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Records still in open batches when the last handle goes are not sent: say so to
        // whoever awaits them rather than leave them waiting.
        let accum = self.accum.get_mut().unwrap_or_else(|p| p.into_inner());
        for slots in accum.values_mut() {
            for slot in &mut slots.partitions {
                if let Some(open) = slot.open.take() {
                    open.outcome.set(Err(ClientError::Closed));
                }
            }
        }
    }
}

/// Moves the slot's open batch to its lane. True if there was one.
fn seal(slot: &mut PartitionSlot) -> bool {
    let Some(open) = slot.open.take() else {
        return false;
    };
    let _ = slot.lane.send(LaneMsg::Batch(SealedBatch {
        builder: open.builder,
        created: open.created,
        outcome: open.outcome,
        _permits: open.permits,
    }));
    true
}

/// Seals batches that have lingered long enough.
async fn linger_task(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let linger = strong.config.linger;
        let next_due = {
            let mut accum = strong.accum.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for slots in accum.values_mut() {
                for slot in &mut slots.partitions {
                    let Some(open) = &slot.open else { continue };
                    let due = open.created + linger;
                    if due <= now {
                        seal(slot);
                    } else {
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
            }
            next
        };
        let wake = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => strong.linger_wake.notified().await,
            }
        };
        // Hold only a weak reference while idle, so dropping the producer ends this task.
        tokio::select! {
            _ = wake => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        drop(strong);
    }
}

/// Most bytes of batches one produce request carries.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Sends one partition's batches in order. Whatever queued up while a request was in flight
/// goes in the next request together, so a slow round trip costs no throughput.
async fn lane(
    inner: Arc<LaneCtx>,
    topic: Arc<str>,
    partition: u32,
    mut rx: mpsc::UnboundedReceiver<LaneMsg>,
) {
    let mut held: Option<LaneMsg> = None;
    loop {
        let msg = match held.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        let first = match msg {
            LaneMsg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            LaneMsg::Batch(b) => b,
        };
        let mut group = vec![first];
        let mut bytes = group[0].builder.payload_len();
        while bytes < MAX_REQUEST_BYTES {
            match rx.try_recv() {
                Ok(LaneMsg::Batch(b)) => {
                    bytes += b.builder.payload_len();
                    group.push(b);
                }
                Ok(flush) => {
                    held = Some(flush);
                    break;
                }
                Err(_) => break,
            }
        }
        deliver(&inner, &topic, partition, group).await;
    }
}

/// Sends `group` (batches of one partition, in order) in one request, with retries, and
/// resolves each batch's outcome.
async fn deliver(inner: &LaneCtx, topic: &str, partition: u32, group: Vec<SealedBatch>) {
    let cfg = &inner.config;
    let created = group
        .iter()
        .map(|b| b.created)
        .min()
        .unwrap_or_else(Instant::now);
    let mut encoded = Vec::with_capacity(group.len());
    let mut outcomes = Vec::with_capacity(group.len());
    for b in group {
        let count = b.builder.record_count() as i64;
        if let Some(bytes) = b.builder.finish(ProducerStamp::NONE) {
            encoded.push(bytes);
            outcomes.push((count, b.outcome, b._permits));
        }
    }
    let deadline = created + cfg.delivery_timeout;
    let mut backoff = cfg.retry_backoff;
    let mut attempts = 0u32;
    let result = loop {
        let err = match produce_once(inner, topic, partition, encoded.clone()).await {
            Ok(base) => break Ok(base),
            Err(e) => e,
        };
        attempts += 1;
        let out_of_retries = cfg.max_retries.is_some_and(|m| attempts > m);
        if !err.is_retriable() || out_of_retries {
            break Err(err);
        }
        if Instant::now() + backoff >= deadline {
            break Err(ClientError::DeliveryTimeout {
                elapsed_ms: created.elapsed().as_millis() as u64,
                last_error: err.to_string(),
            });
        }
        tracing::debug!(topic, partition, error = %err, "retrying batch");
        inner.cluster.forget(topic);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.retry_backoff_max);
    };
    let mut next = result.as_ref().map_or(0, |b| *b);
    for (count, outcome, permits) in outcomes {
        outcome.set(result.clone().map(|_| next));
        next += count;
        drop(permits);
    }
}

async fn produce_once(
    inner: &LaneCtx,
    topic: &str,
    partition: u32,
    batches: Vec<Bytes>,
) -> Result<i64> {
    let conn = inner.cluster.leader(topic, partition).await?;
    let _slot = conn
        .in_flight
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ClientError::Closed)?;
    let mut client = conn.client.clone();
    let req = pb::ProduceRequest {
        topic: topic.to_string(),
        partition,
        batches,
    };
    let resp =
        match tokio::time::timeout(inner.cluster.request_timeout(), client.produce(req)).await {
            Err(_) => return Err(ClientError::Unreachable("produce request timed out".into())),
            Ok(Err(status)) => return Err(ClientError::from_status(&status)),
            Ok(Ok(r)) => r.into_inner(),
        };
    match ClientError::from_pb(resp.error.as_ref()) {
        Some(e) => Err(e),
        None => Ok(resp.base_offset),
    }
}
