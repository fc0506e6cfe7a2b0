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
    /// Stable agent id; a random one is chosen when absent.
    #[arg(long, env = "STREAMHOUSE_AGENT_ID")]
    pub id: Option<String>,
    /// Flush the write buffer when its oldest batch has waited this long. Default: 10 on a
    /// local directory, 100 on S3.
    #[arg(long, env = "STREAMHOUSE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Flush the write buffer when it holds this many bytes.
    #[arg(long, env = "STREAMHOUSE_FLUSH_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub flush_bytes: usize,
    /// Partition lease time to live: an agent silent this long loses its partitions.
    #[arg(long, env = "STREAMHOUSE_LEASE_TTL_MS", default_value_t = 3_000)]
    pub lease_ttl_ms: u64,
    /// How often the agent heartbeats, renews its leases and rebalances; at most half the
    /// lease TTL, so one late round does not cost a lease.
    #[arg(long, env = "STREAMHOUSE_HEARTBEAT_MS", default_value_t = 1_000)]
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
    /// Largest record batch accepted, in bytes (Kafka's message.max.bytes).
    #[arg(long, env = "STREAMHOUSE_MAX_RECORD_BYTES", default_value_t = 1024 * 1024)]
    pub max_record_bytes: usize,
    /// Bytes of chunk data kept in the read cache.
    #[arg(long, env = "STREAMHOUSE_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_bytes: usize,
    /// Write logs to rolling daily files in this directory instead of stderr.
    #[arg(long, env = "STREAMHOUSE_LOG_DIR")]
    pub log_dir: Option<String>,
}

impl AgentConfig {
    /// An agent on embedded storage under `dir`, listening on `listen`; every other setting
    /// is what the command line would give with no flags (environment variables included).
    pub fn embedded(dir: &std::path::Path, listen: &str) -> Self {
        let mut config = <Self as clap::Parser>::parse_from(["streamhouse-agent"]);
        config.metadata = format!("sqlite://{}", dir.join("metadata.db").display());
        config.storage = format!("file://{}", dir.join("objects").display());
        config.listen = listen.to_string();
        config
    }

    pub fn flush_interval(&self) -> Duration {
        let default = if self.storage.starts_with("s3://") {
            100
        } else {
            10
        };
        Duration::from_millis(self.flush_interval_ms.unwrap_or(default))
    }

    /// Checks every value, so a bad setting fails at start with a clear message.
    pub fn validate(&self) -> Result<(), String> {
        if self.flush_bytes < 1024 {
            return Err(format!("flush_bytes {} is below 1024", self.flush_bytes));
        }
        if !(1..=60_000).contains(&self.flush_interval().as_millis()) {
            return Err("flush_interval_ms must be between 1 and 60000".into());
        }
        if self.lease_ttl_ms < 300 {
            return Err(format!("lease_ttl_ms {} is below 300", self.lease_ttl_ms));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 2 > self.lease_ttl_ms {
            return Err(format!(
                "heartbeat_ms {} must be positive and at most half of lease_ttl_ms {}",
                self.heartbeat_ms, self.lease_ttl_ms
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_record_bytes) {
            return Err("max_record_bytes must be between 1 KiB and 64 MiB".into());
        }
        Ok(())
    }
}
