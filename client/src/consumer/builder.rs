//! The consumer's settings and their checks.

use super::*;

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
    pub(super) bootstrap: String,
    pub(super) auto_offset_reset: OffsetReset,
    pub(super) max_poll_records: usize,
    pub(super) fetch_max_wait: Duration,
    pub(super) max_partition_fetch_bytes: usize,
    pub(super) request_timeout: Duration,
    pub(super) prefetch_batches: usize,
    pub(super) group_id: Option<String>,
    pub(super) client_id: String,
    pub(super) session_timeout: Duration,
    pub(super) heartbeat_interval: Duration,
    pub(super) enable_auto_commit: bool,
    pub(super) auto_commit_interval: Duration,
    pub(super) max_poll_interval: Duration,
    pub(super) assignors: Vec<AssignorKind>,
    pub(super) security: crate::Security,
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
