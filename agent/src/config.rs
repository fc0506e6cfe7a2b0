//! Agent configuration: flags, the environment variables behind them, and their defaults.

use std::time::Duration;

/// How an agent runs. `streamhouse-agent --help` lists the same settings as flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "streamhouse-agent", version, about = "StreamHouse agent")]
pub struct AgentConfig {
    /// Metadata store: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "STREAMHOUSE_METADATA",
        default_value = "sqlite://./streamhouse-data/metadata.db"
    )]
    pub metadata: String,
    /// Object store: file://DIR or s3://BUCKET/PREFIX?endpoint=URL&region=REGION.
    #[arg(
        long,
        env = "STREAMHOUSE_STORAGE",
        default_value = "file://./streamhouse-data/objects"
    )]
    pub storage: String,
    /// Address to listen on for gRPC (port 0 picks a free one).
    #[arg(long, env = "STREAMHOUSE_LISTEN", default_value = "127.0.0.1:9660")]
    pub listen: String,
    /// Address other agents and clients should use; defaults to the bound listen address.
    #[arg(long, env = "STREAMHOUSE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Serve Kafka clients on this address too (e.g. `0.0.0.0:9092`; port 0 picks a free
    /// one). Off when absent.
    #[arg(long, env = "STREAMHOUSE_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// The `HOST:PORT` Kafka clients are told to use for this agent; defaults to the bound
    /// Kafka listen address.
    #[arg(long, env = "STREAMHOUSE_KAFKA_ADVERTISE")]
    pub kafka_advertise: Option<String>,
    /// Stable agent id; a random one is chosen when absent.
    #[arg(long, env = "STREAMHOUSE_AGENT_ID")]
    pub id: Option<String>,
    /// Flushes of the write buffer begin at least this far apart (0: each as soon as the
    /// previous one ends; a batch that arrives after a quiet spell is written at once). The
    /// longest a batch waits, and the knob that trades object-store requests for latency.
    /// Default: 0 on a local directory, 100 on S3.
    #[arg(long, env = "STREAMHOUSE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Flush the write buffer when it holds this many bytes.
    #[arg(long, env = "STREAMHOUSE_FLUSH_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub flush_bytes: usize,
    /// Most bytes of produced batches the agent holds before they are committed (buffered,
    /// and in the flush under way). Past it, produce is refused with THROTTLED, which
    /// producers back off on and retry, so a slow object store cannot exhaust memory.
    #[arg(
        long,
        env = "STREAMHOUSE_MAX_BUFFERED_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub max_buffered_bytes: usize,
    /// Longest any metadata-store call may take, waiting for a connection included; also the
    /// server-side statement and idle-transaction timeout on PostgreSQL. Below the lease TTL,
    /// so a hung store cannot stall an agent past its leases. Default: half the lease TTL.
    #[arg(long, env = "STREAMHOUSE_METADATA_TIMEOUT_MS")]
    pub metadata_timeout_ms: Option<u64>,
    /// Create the bucket named by an `s3://` storage URL if it does not exist (development
    /// setups; production buckets are made with their policies by whoever owns them).
    #[arg(long, env = "STREAMHOUSE_CREATE_BUCKET")]
    pub create_bucket: bool,
    /// Partition lease time to live: an agent silent this long loses its partitions.
    #[arg(long, env = "STREAMHOUSE_LEASE_TTL_MS", default_value_t = 1_000)]
    pub lease_ttl_ms: u64,
    /// How often the agent heartbeats, renews its leases and rebalances; at most half the
    /// lease TTL, so one late round does not cost a lease.
    #[arg(long, env = "STREAMHOUSE_HEARTBEAT_MS", default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// Serve Prometheus metrics at `/metrics` on this address (e.g. `0.0.0.0:9661`).
    #[arg(long, env = "STREAMHOUSE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Shortest consumer-group session timeout a member may ask for.
    #[arg(
        long,
        env = "STREAMHOUSE_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub group_min_session_timeout_ms: u64,
    /// Longest consumer-group session timeout a member may ask for.
    #[arg(
        long,
        env = "STREAMHOUSE_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 300_000
    )]
    pub group_max_session_timeout_ms: u64,
    /// How long the first rebalance of an empty Kafka group waits for more members before
    /// it completes (Kafka's `group.initial.rebalance.delay.ms`): consumers starting
    /// together join one generation instead of one each.
    #[arg(
        long,
        env = "STREAMHOUSE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000
    )]
    pub group_initial_rebalance_delay_ms: u64,
    /// Largest record batch accepted, in bytes (Kafka's message.max.bytes).
    #[arg(long, env = "STREAMHOUSE_MAX_RECORD_BYTES", default_value_t = 1024 * 1024)]
    pub max_record_bytes: usize,
    /// Refuse a record stamped more than this many milliseconds before the agent's clock
    /// (Kafka's `log.message.timestamp.before.max.ms`; -1: no bound). The default matches the
    /// default retention, so a record is not deleted by retention as soon as it lands.
    #[arg(
        long,
        env = "STREAMHOUSE_TIMESTAMP_BEFORE_MAX_MS",
        default_value_t = 7 * 24 * 3600 * 1000,
        allow_negative_numbers = true
    )]
    pub timestamp_before_max_ms: i64,
    /// Refuse a record stamped more than this many milliseconds after the agent's clock
    /// (Kafka's `log.message.timestamp.after.max.ms`; -1: no bound), so a clock far ahead
    /// cannot hold retention back.
    #[arg(
        long,
        env = "STREAMHOUSE_TIMESTAMP_AFTER_MAX_MS",
        default_value_t = 3600 * 1000,
        allow_negative_numbers = true
    )]
    pub timestamp_after_max_ms: i64,
    /// An idempotent producer idle this long is forgotten: its per-partition sequence state
    /// and, once none is left, its id (Kafka's `producer.id.expiration.ms`). Its next batch
    /// is then refused and the producer starts afresh.
    #[arg(
        long,
        env = "STREAMHOUSE_PRODUCER_EXPIRY_MS",
        default_value_t = 7 * 24 * 3600 * 1000
    )]
    pub producer_expiry_ms: u64,
    /// A consumer group with no live member, no change and no commit for this long is
    /// deleted with its committed offsets (Kafka's `offsets.retention.minutes`).
    #[arg(
        long,
        env = "STREAMHOUSE_GROUP_EXPIRY_MS",
        default_value_t = 7 * 24 * 3600 * 1000
    )]
    pub group_expiry_ms: u64,
    /// Bytes of chunk data kept in the read cache.
    #[arg(long, env = "STREAMHOUSE_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_bytes: usize,
    /// Retention of a topic created without one, in milliseconds (-1: keep forever).
    #[arg(
        long,
        env = "STREAMHOUSE_DEFAULT_RETENTION_MS",
        default_value_t = 7 * 24 * 3600 * 1000,
        allow_negative_numbers = true
    )]
    pub default_retention_ms: i64,
    /// Compaction merges a partition's small chunks into segment objects of about this size.
    #[arg(long, env = "STREAMHOUSE_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub segment_bytes: u64,
    /// Chunks younger than this wait for more to fill a segment; older ones are compacted
    /// into a smaller segment (which tiered merging later merges with others).
    #[arg(long, env = "STREAMHOUSE_COMPACTION_AGE_MS", default_value_t = 60_000)]
    pub compaction_age_ms: u64,
    /// How often a leader applies retention and compaction to its partitions.
    #[arg(
        long,
        env = "STREAMHOUSE_MAINTENANCE_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub maintenance_interval_ms: u64,
    /// Objects nothing points to are deleted after this long, which must exceed the longest
    /// read in flight. Flushes must commit within half of it. Every agent should use the same.
    #[arg(long, env = "STREAMHOUSE_GC_GRACE_MS", default_value_t = 300_000)]
    pub gc_grace_ms: u64,
    /// How often garbage collection runs (on one agent of the cluster at a time).
    #[arg(long, env = "STREAMHOUSE_GC_INTERVAL_MS", default_value_t = 60_000)]
    pub gc_interval_ms: u64,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, env = "STREAMHOUSE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for TLS on the gRPC port (with --tls-cert).
    #[arg(long, env = "STREAMHOUSE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// File of bearer tokens, one per line (`#` comments); when set, every request must carry
    /// one of them in `authorization: Bearer TOKEN`.
    #[arg(long, env = "STREAMHOUSE_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<std::path::PathBuf>,
    /// Write logs to rolling daily files in this directory instead of stderr.
    #[arg(long, env = "STREAMHOUSE_LOG_DIR")]
    pub log_dir: Option<String>,
}

impl AgentConfig {
    /// An agent on embedded storage under `dir`, listening on `listen`; every other setting
    /// is what the command line would give with no flags (environment variables included).
    ///
    /// A malformed `STREAMHOUSE_*` variable is an error naming it, never an exit: this is a
    /// library call.
    pub fn embedded(dir: &std::path::Path, listen: &str) -> Result<Self, crate::StartError> {
        let mut config = <Self as clap::Parser>::try_parse_from(["streamhouse-agent"])
            .map_err(|e| crate::StartError::Config(clap_error_line(&e)))?;
        config.metadata = format!("sqlite://{}", dir.join("metadata.db").display());
        config.storage = format!("file://{}", dir.join("objects").display());
        config.listen = listen.to_string();
        Ok(config)
    }

    /// The largest batch a compressed payload may decompress to.
    pub fn max_decompressed_bytes(&self) -> usize {
        self.max_record_bytes
            .saturating_mul(streamhouse_proto::limits::DECOMPRESSION_FACTOR)
    }

    /// The largest request the gRPC server decodes.
    pub fn max_request_bytes(&self) -> usize {
        streamhouse_proto::limits::max_request_bytes(self.max_record_bytes)
    }

    /// How long a flush may take from naming its object to committing it.
    pub fn commit_deadline(&self) -> Duration {
        Duration::from_millis(self.gc_grace_ms / 2)
    }

    /// The deadline of every metadata-store call.
    pub fn metadata_timeout(&self) -> Duration {
        Duration::from_millis(self.metadata_timeout_ms.unwrap_or(self.lease_ttl_ms / 2))
    }

    /// The server-side timeout of the connections that commit flushes and compactions: after
    /// a commit's in-transaction deadline check, COMMIT must land within this (at most a
    /// quarter of the GC grace, so it lands before the grace runs out).
    pub fn commit_server_timeout(&self) -> Duration {
        self.metadata_timeout()
            .min(Duration::from_millis(self.gc_grace_ms / 4))
    }

    /// How far apart flushes begin: `flush_interval_ms`, else 100 ms on S3 (fewer, larger
    /// puts) and 0 on a local directory (group commit alone).
    pub fn flush_interval(&self) -> Duration {
        let default = if self.storage.starts_with("s3://") {
            100
        } else {
            0
        };
        Duration::from_millis(self.flush_interval_ms.unwrap_or(default))
    }

    /// Checks every value, so a bad setting fails at start with a clear message.
    pub fn validate(&self) -> Result<(), String> {
        if self.flush_bytes < 1024 {
            return Err(format!("flush_bytes {} is below 1024", self.flush_bytes));
        }
        let most = streamhouse_proto::limits::MAX_FLUSH_INTERVAL_MS;
        if self.flush_interval().as_millis() > u128::from(most) {
            return Err(format!("flush_interval_ms must be between 0 and {most}"));
        }
        // A lease's expiry is the store's clock plus the TTL in signed milliseconds; an hour is
        // longer than any stuck agent should keep its partitions.
        if !(300..=3_600_000).contains(&self.lease_ttl_ms) {
            return Err(format!(
                "lease_ttl_ms {} must be between 300 and 3600000 (an hour)",
                self.lease_ttl_ms
            ));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms > self.lease_ttl_ms / 2 {
            return Err(format!(
                "heartbeat_ms {} must be positive and at most half of lease_ttl_ms {}",
                self.heartbeat_ms, self.lease_ttl_ms
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_record_bytes) {
            return Err("max_record_bytes must be between 1 KiB and 64 MiB".into());
        }
        if self.default_retention_ms == 0 || self.default_retention_ms < -1 {
            return Err("default_retention_ms must be positive, or -1 to keep forever".into());
        }
        if !(64 * 1024..=4 * 1024 * 1024 * 1024).contains(&self.segment_bytes) {
            return Err("segment_bytes must be between 64 KiB and 4 GiB".into());
        }
        if self.maintenance_interval_ms < 50 || self.gc_interval_ms < 50 {
            return Err("maintenance_interval_ms and gc_interval_ms must be at least 50".into());
        }
        for (name, v) in [
            ("timestamp_before_max_ms", self.timestamp_before_max_ms),
            ("timestamp_after_max_ms", self.timestamp_after_max_ms),
        ] {
            if v < -1 {
                return Err(format!(
                    "{name} {v} is negative; give milliseconds, or -1 for no bound"
                ));
            }
        }
        if self.producer_expiry_ms < 60_000 || self.group_expiry_ms < 60_000 {
            return Err("producer_expiry_ms and group_expiry_ms must be at least 60000".into());
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(format!(
                "group_min_session_timeout_ms {} is above group_max_session_timeout_ms {}; lower it",
                self.group_min_session_timeout_ms, self.group_max_session_timeout_ms
            ));
        }
        if self.group_initial_rebalance_delay_ms > 300_000 {
            return Err(format!(
                "group_initial_rebalance_delay_ms {} is above 300000 (5 minutes); a new group \
                 would wait that long for its first generation",
                self.group_initial_rebalance_delay_ms
            ));
        }
        if self.gc_grace_ms < 1_000 {
            return Err(format!("gc_grace_ms {} is below 1000", self.gc_grace_ms));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        let timeout = self.metadata_timeout().as_millis() as u64;
        if timeout < 50 || timeout >= self.lease_ttl_ms {
            return Err(format!(
                "metadata_timeout_ms {timeout} must be at least 50 and below lease_ttl_ms {}, \
                 so a hung metadata store cannot outlast a lease",
                self.lease_ttl_ms
            ));
        }
        if self.kafka_listen.is_none() && self.kafka_advertise.is_some() {
            return Err("kafka_advertise is set without kafka_listen; set both, or neither".into());
        }
        if let Some(a) = &self.kafka_advertise {
            check_host_port("kafka_advertise", a)?;
        }
        let request = self.max_request_bytes();
        if self.max_buffered_bytes < request {
            return Err(format!(
                "max_buffered_bytes {} is below the largest request ({request} bytes, from \
                 max_record_bytes); raise it",
                self.max_buffered_bytes
            ));
        }
        Ok(())
    }
}

/// `HOST:PORT` with a port of 1-65535, as Kafka clients must be told an address.
fn check_host_port(name: &str, value: &str) -> Result<(), String> {
    let ok = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name} {value:?} must be HOST:PORT with a port of 1 to 65535"
        ))
    }
}

/// The one line of a clap error that says what is wrong, without clap's `error:` prefix and
/// usage hints.
fn clap_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.trim_start_matches("error: ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AgentConfig {
        <AgentConfig as clap::Parser>::parse_from(["streamhouse-agent"])
    }

    #[test]
    fn a_malformed_setting_is_one_line_naming_it() {
        let e = <AgentConfig as clap::Parser>::try_parse_from([
            "streamhouse-agent",
            "--lease-ttl-ms",
            "soon",
        ])
        .unwrap_err();
        let line = clap_error_line(&e);
        assert!(
            line.contains("--lease-ttl-ms") && line.contains("soon"),
            "{line}"
        );
        assert!(
            !line.contains('\n') && !line.starts_with("error:"),
            "{line}"
        );
    }

    #[test]
    fn defaults_are_valid_and_bad_edge_settings_are_named() {
        assert_eq!(defaults().validate(), Ok(()));
        type Change = fn(&mut AgentConfig);
        let cases: [(Change, &str); 10] = [
            (|c| c.heartbeat_ms = u64::MAX, "heartbeat_ms"),
            (
                |c| c.flush_interval_ms = Some(u64::MAX),
                "flush_interval_ms",
            ),
            (
                |c| {
                    c.lease_ttl_ms = 1_000;
                    c.heartbeat_ms = 501;
                },
                "heartbeat_ms",
            ),
            (
                |c| c.timestamp_before_max_ms = -2,
                "timestamp_before_max_ms",
            ),
            (
                |c| c.timestamp_after_max_ms = i64::MIN,
                "timestamp_after_max_ms",
            ),
            (|c| c.producer_expiry_ms = 0, "producer_expiry_ms"),
            (|c| c.group_expiry_ms = 59_999, "group_expiry_ms"),
            (|c| c.max_record_bytes = 1023, "max_record_bytes"),
            (
                |c| c.metadata_timeout_ms = Some(3_000),
                "metadata_timeout_ms",
            ),
            (|c| c.max_buffered_bytes = 1024 * 1024, "max_buffered_bytes"),
        ];
        for (set, name) in cases {
            let mut c = defaults();
            set(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.contains(name) && !e.contains('\n'), "{e}");
        }
        // 0: each flush as soon as the previous one ends.
        let mut c = defaults();
        c.flush_interval_ms = Some(0);
        assert_eq!(c.validate(), Ok(()));
        // A negative interval does not parse, and says so in one line.
        let e = <AgentConfig as clap::Parser>::try_parse_from([
            "streamhouse-agent",
            "--flush-interval-ms",
            "-5",
        ])
        .unwrap_err();
        let line = clap_error_line(&e);
        assert!(line.contains("-5") && !line.contains('\n'), "{line}");
        // -1 turns a timestamp bound off; the request limit follows the batch limit.
        let mut c = defaults();
        c.timestamp_before_max_ms = -1;
        c.timestamp_after_max_ms = -1;
        assert_eq!(c.validate(), Ok(()));
        c.max_record_bytes = 64 * 1024 * 1024;
        assert_eq!(c.max_request_bytes(), 129 * 1024 * 1024);
        assert_eq!(c.max_decompressed_bytes(), 512 * 1024 * 1024);
    }

    #[test]
    fn group_settings_refuse_their_worst_values_in_one_line() {
        // What does not parse as a number of milliseconds: one line with the value.
        for bad in ["-1", "soon", "", "99999999999999999999999", "1.5"] {
            let e = <AgentConfig as clap::Parser>::try_parse_from([
                "streamhouse-agent",
                "--group-initial-rebalance-delay-ms",
                bad,
            ])
            .unwrap_err();
            let line = clap_error_line(&e);
            assert!(
                line.contains(bad) && !line.contains('\n'),
                "{bad:?}: {line}"
            );
        }
        // What parses but cannot work: one line naming the setting and the bound.
        let mut c = defaults();
        c.group_initial_rebalance_delay_ms = u64::MAX;
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("group_initial_rebalance_delay_ms") && e.contains("300000"),
            "{e}"
        );
        let mut c = defaults();
        c.group_min_session_timeout_ms = u64::MAX;
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("group_min_session_timeout_ms") && !e.contains('\n'),
            "{e}"
        );
        // The edges that work: no delay at all, and the longest allowed.
        for ok in [0, 300_000] {
            let mut c = defaults();
            c.group_initial_rebalance_delay_ms = ok;
            assert_eq!(c.validate(), Ok(()), "{ok}");
        }
    }
}
