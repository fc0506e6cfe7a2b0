//! The producer's settings and their checks.

use super::*;

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
    pub(super) bootstrap: String,
    pub(super) batch_size: usize,
    pub(super) batch_bytes: usize,
    pub(super) linger: Duration,
    pub(super) max_in_flight: usize,
    pub(super) max_in_flight_per_partition: Option<usize>,
    pub(super) request_timeout: Duration,
    pub(super) delivery_timeout: Duration,
    pub(super) retry_backoff: Duration,
    pub(super) retry_backoff_max: Duration,
    pub(super) max_retries: Option<u32>,
    pub(super) compression: Compression,
    pub(super) buffer_bytes: usize,
    pub(super) idempotence: bool,
    pub(super) security: crate::Security,
}

impl Default for ProducerBuilder {
    fn default() -> Self {
        ProducerBuilder {
            bootstrap: String::new(),
            batch_size: 1000,
            batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            max_in_flight_per_partition: None,
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

    /// How long a batch waits for more records before it is sent (default 5 ms): an upper
    /// bound, as in Kafka; a batch goes up to 0.25 ms sooner, so that batches due together
    /// go together. A thread of the producer's own times it, to within tens of microseconds
    /// (tokio's timers run up to 2 ms late).
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

    /// Most produce requests in flight for one partition (default 5 with idempotence, as
    /// Kafka's `max.in.flight.requests.per.connection`; 1 without). With idempotence the
    /// agent keeps each partition's records in order across retries, and the most is 5.
    /// Without it, more than 1 lets a retried batch land after a later one, as in Kafka.
    ///
    /// ```
    /// let b = streamhouse_client::Producer::builder().max_in_flight_per_partition(1);
    /// ```
    pub fn max_in_flight_per_partition(mut self, n: usize) -> Self {
        self.max_in_flight_per_partition = Some(n);
        self
    }

    /// What [`ProducerBuilder::max_in_flight_per_partition`] comes to.
    pub(super) fn in_flight_per_partition(&self) -> usize {
        self.max_in_flight_per_partition
            .unwrap_or(if self.idempotence { 5 } else { 1 })
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
        let per_partition = self.in_flight_per_partition();
        let most = if self.idempotence { 5 } else { 1000 };
        if !(1..=most).contains(&per_partition) {
            return bad(format!(
                "max_in_flight_per_partition {per_partition} must be 1..={most}{}",
                if self.idempotence {
                    " with idempotence"
                } else {
                    ""
                }
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
        let alarm = Alarm::start(wake.clone()).map_err(|e| {
            ClientError::System(format!("cannot start the producer's timer thread: {e}"))
        })?;
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
            metrics: Default::default(),
        });
        tokio::spawn(sender(Arc::downgrade(&inner), wake, alarm));
        Ok(Producer { inner })
    }
}
