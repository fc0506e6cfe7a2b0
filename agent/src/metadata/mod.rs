//! The metadata store: topics, partition leases, the segment index, agents, producer state,
//! consumer groups and events, in SQLite or PostgreSQL chosen by URL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the few places they differ
//! (the clock, auto-increment keys) go through [`Dialect`]. The one statement on the hot path
//! is [`MetadataStore::commit_flush`]: one transaction per agent flush, whatever the number of
//! partitions or records in it.

mod agents;
pub mod classic;
mod events;
pub mod groups;
mod leases;
pub mod maintenance;
mod producers;
mod schema;
mod segments;
mod sessions;
mod topics;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use streamhouse_proto::time::Backoff;

pub use sessions::{AgentSession, Session};

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The metadata URL cannot be used.
    #[error("invalid metadata URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store refused or failed the call (down, unreachable, a constraint).
    #[error("{0}")]
    Unavailable(#[from] sqlx::Error),
    /// A schema migration failed at start.
    #[error("migration {version} failed: {source}")]
    Migration {
        /// The migration that failed.
        version: i64,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A topic by that name exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// No topic by that name.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The commit found this agent no longer holds these partitions at the epoch it wrote with.
    #[error("fenced: lease lost for {}", fmt_partitions(.0))]
    Fenced(Vec<(Arc<str>, u32)>),
    /// A compaction found the rows it meant to replace changed under it.
    #[error("the index of {topic}-{partition} changed during compaction")]
    IndexChanged {
        /// The partition's topic.
        topic: String,
        /// Its number.
        partition: u32,
    },
    /// A flush reached its commit too late: garbage collection may already treat its
    /// uncommitted object as an orphan.
    #[error("object {0:?} was not committed within its deadline")]
    CommitTooLate(String),
    /// Another instance of this producer bumped its epoch first.
    #[error("producer {id} epoch {epoch} is no longer current")]
    ProducerFenced {
        /// The producer id.
        id: i64,
        /// The epoch it wrote with.
        epoch: i16,
    },
    /// A SQLite database's session files (beside the database file) cannot be used.
    #[error("{}: {source}", .path.display())]
    SessionFiles {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store holds something that cannot be used as it is.
    #[error("{0}")]
    Inconsistent(String),
    /// The store did not answer within the deadline every call has (below the lease TTL).
    /// A write may or may not have been applied.
    #[error("the metadata store did not answer {op} within {} ms", .after.as_millis())]
    Timeout {
        /// The call that did not finish.
        op: &'static str,
        /// The deadline it had.
        after: std::time::Duration,
    },
}

fn fmt_partitions(p: &[(Arc<str>, u32)]) -> String {
    p.iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A metadata-store result.
pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// Which SQL dialect the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: one machine, one file.
    Sqlite,
    /// PostgreSQL: any number of agents.
    Postgres,
}

impl Dialect {
    /// The store's clock in milliseconds since the epoch, as an SQL expression.
    fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// When a partition's lease runs out, by the store's clock, for a query over
    /// `partitions p LEFT JOIN agents a ON a.id = p.leader_id`: the later of its holder's
    /// renewal (one agents row renews every lease that agent holds) and the expiry it was
    /// taken with; 0 once its holder is marked lost (its session ended, or it went silent).
    fn lease_expiry(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(CASE WHEN a.lost = 1 THEN 0
                       ELSE max(p.lease_expires_ms, COALESCE(a.lease_expires_ms, 0)) END)"
            }
            Dialect::Postgres => {
                "(CASE WHEN a.lost = 1 THEN 0
                       ELSE GREATEST(p.lease_expires_ms, COALESCE(a.lease_expires_ms, 0)) END)"
            }
        }
    }

    fn bytes(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        }
    }

    fn auto_id(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        }
    }
}

/// A topic as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRow {
    /// The topic's name.
    pub name: String,
    /// How many partitions it has (never shrinks).
    pub partition_count: u32,
    /// How long records are kept, by their timestamps; 0 or less keeps them forever.
    pub retention_ms: i64,
    /// How many bytes a partition keeps at most; 0 or less for no bound.
    pub retention_bytes: i64,
    /// When it was created, by the store's clock.
    pub created_at_ms: i64,
}

/// A partition: its lease and its offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    /// The partition's topic.
    pub topic: String,
    /// Its number within the topic.
    pub partition: u32,
    /// The lease holder while its lease is live, per the store's clock.
    pub leader_id: Option<String>,
    /// Where the lease holder serves, while its lease is live.
    pub leader_address: Option<String>,
    /// Raised by every new lease; writes under an older one are fenced.
    pub lease_epoch: i64,
    /// When the current lease lapses unless its holder renews, by the store's clock (0 once
    /// its holder is marked lost).
    pub lease_expires_ms: i64,
    /// The first offset still readable (retention moves it forward).
    pub log_start_offset: i64,
    /// The offset the next record will get: one past the last committed.
    pub high_watermark: i64,
}

/// One index row: a chunk of a partition's log, in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    /// The first offset in the chunk.
    pub base_offset: i64,
    /// The last offset in the chunk.
    pub last_offset: i64,
    /// The object that holds it.
    pub object_key: String,
    /// Where the chunk starts in the object.
    pub byte_start: u64,
    /// The chunk's length in bytes.
    pub byte_len: u64,
    /// How many records it holds.
    pub record_count: i64,
    /// Its newest record's timestamp (retention judges by this).
    pub max_timestamp: i64,
    /// When the row was committed, by the metadata store's clock.
    pub created_at_ms: i64,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// The agent's id.
    pub id: String,
    /// Where it serves clients.
    pub address: String,
    /// When it registered, by the store's clock.
    pub started_at_ms: i64,
    /// Its last heartbeat, by the store's clock.
    pub heartbeat_ms: i64,
    /// Marked lost: its heartbeat stopped for a lease TTL, or its session ended.
    pub lost: bool,
    /// Where it serves Kafka clients, if it does.
    pub kafka_address: Option<String>,
    /// Its Kafka node id, once it has served Kafka clients.
    pub kafka_node_id: Option<i32>,
}

/// One partition as a lease round sees it: who holds a live lease on it, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The partition's topic.
    pub topic: String,
    /// Its number.
    pub partition: u32,
    /// The agent holding a live lease, if any.
    pub leader_id: Option<String>,
    /// When the lease runs out (the store's clock, ms).
    pub lease_expires_ms: i64,
}

/// What a lease round plans from: every partition's holder, and the store's clock it was
/// judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolders {
    /// The store's clock when the snapshot was read (ms).
    pub now_ms: i64,
    /// Every partition, in key order.
    pub partitions: Vec<LeaseHolder>,
}

/// A lease this agent now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The partition's topic.
    pub topic: String,
    /// Its number.
    pub partition: u32,
    /// The lease epoch the agent writes under.
    pub epoch: i64,
    /// The first readable offset when acquired.
    pub log_start_offset: i64,
    /// The next offset to assign when acquired.
    pub high_watermark: i64,
}

/// One entry of the cluster's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Increasing id: where a reader of the event log resumes.
    pub id: i64,
    /// When it happened, by the store's clock.
    pub at_ms: i64,
    /// What happened (`agent_joined`, `lease_released`, `topic_created`, ...).
    pub kind: String,
    /// What it happened to: an agent, a partition, a group.
    pub subject: String,
    /// A line for people.
    pub detail: String,
}

/// One partition's part of a flushed object.
#[derive(Debug, Clone)]
pub struct ChunkCommit {
    /// The partition's topic.
    pub topic: Arc<str>,
    /// Its number.
    pub partition: u32,
    /// The lease epoch the agent wrote under; the commit fails if it changed.
    pub lease_epoch: i64,
    /// The first offset assigned to the chunk.
    pub base_offset: i64,
    /// The last offset assigned to the chunk.
    pub last_offset: i64,
    /// Where the chunk starts in the object.
    pub byte_start: u64,
    /// Its length in bytes.
    pub byte_len: u64,
    /// How many records it holds.
    pub record_count: i64,
    /// Its newest record's timestamp.
    pub max_timestamp: i64,
    /// Idempotent producers whose batches are in this chunk: their state after it.
    pub producers: Vec<ProducerCommit>,
}

/// One producer's state on one partition after a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerCommit {
    /// The producer.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// The sequence number of its last record in the chunk.
    pub last_sequence: i32,
    /// Offset of the last record of the producer's last batch.
    pub last_offset: i64,
    /// The window of recent batches, as the agent's producer state encodes it.
    pub recent: String,
}

/// Everything one flush commits.
#[derive(Debug, Clone)]
pub struct FlushCommit<'a> {
    /// The agent that wrote the object.
    pub agent_id: &'a str,
    /// The object written.
    pub object_key: &'a str,
    /// Its size in bytes.
    pub object_size: u64,
    /// Every partition's part of it.
    pub chunks: &'a [ChunkCommit],
    /// The commit is refused once the store's clock passes this time (ms since the epoch):
    /// objects no row points to are deleted once their name says they are older than the
    /// garbage-collection grace, so a commit must land well within it. The transaction
    /// checks it as its last statement, and the commit connections' server-side timeouts
    /// bound how long COMMIT may follow.
    pub deadline_ms: Option<i64>,
}

/// How many events the events table keeps.
const EVENTS_KEPT: i64 = 10_000;

/// Partitions named in one statement (as `IN (...)` or `VALUES` lists): far under either
/// store's limit on bound parameters, and few round trips for thousands of partitions.
pub const KEYS_PER_STATEMENT: usize = 500;

/// `$first, $first+1, ...`: `n` bind placeholders for an `IN (...)` list.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long metadata calls may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Every call, including waiting for a connection, is abandoned after this long.
    pub call: Duration,
    /// On PostgreSQL, the server ends a statement running, or a transaction left idle,
    /// this long (`statement_timeout`, `idle_in_transaction_session_timeout`), so a
    /// transaction whose client stalled or vanished cannot commit late or hold row locks.
    pub server: Duration,
}

impl Deadlines {
    /// Generous deadlines for tools and tests that are not agents.
    pub const RELAXED: Deadlines = Deadlines {
        call: Duration::from_secs(30),
        server: Duration::from_secs(30),
    };
}

/// A connection pool to the metadata store.
#[derive(Debug, Clone)]
pub struct MetadataStore {
    pool: AnyPool,
    dialect: Dialect,
    deadlines: Deadlines,
    /// Calls that ran out of time, shared by every pool of this process.
    timeouts: Arc<std::sync::atomic::AtomicU64>,
    /// Calls made, by operation name (shared with [`MetadataStore::dedicated`] copies).
    calls: Arc<std::sync::Mutex<HashMap<&'static str, u64>>>,
    /// SQLite allows one writer at a time. Writers of this process queue here instead of
    /// meeting in SQLite's busy handler, whose sleeps grow to 100 ms and would stall a flush
    /// commit behind a lease renewal. Other processes sharing the file still meet there.
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
    /// Where agents' session lock files live, for a SQLite database file (see
    /// [`Session`]); none for an in-memory one.
    sessions_dir: Option<std::path::PathBuf>,
    /// The partitions' holders as [`MetadataStore::lease_holders`] last read them, with the
    /// lease generation they were read at.
    lease_rows: Arc<std::sync::Mutex<Option<HolderSnapshot>>>,
}

/// Every partition's holder row, and the lease generation it was read at.
type HolderSnapshot = (i64, Arc<Vec<HolderRow>>);

/// A partition's holder as its row says, before its holder's renewal is applied.
#[derive(Debug)]
struct HolderRow {
    topic: String,
    partition: u32,
    leader: Option<String>,
    taken_until: i64,
}

/// The sqlx URL for a `sqlite:` URL, and the database file's path (none in memory).
fn map_sqlite_url(url: &str) -> Result<(String, Option<std::path::PathBuf>)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(MetadataError::InvalidUrl {
            url: url.into(),
            reason: "no database file given".into(),
        });
    }
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| MetadataError::InvalidUrl {
            url: url.into(),
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    let file = (path != ":memory:" && !query.contains("mode=memory"))
        .then(|| std::path::PathBuf::from(path));
    Ok((format!("sqlite://{path}?{query}"), file))
}

/// Records a newly written object (flush or segment) in the transaction that makes it
/// referenced, and then, last, checks the deadline by the store's clock: past it, garbage
/// collection may take the object for an orphan, so the transaction must not commit
/// (dropping it rolls back). COMMIT follows at once, and the connection's server-side
/// timeouts end the transaction if it does not.
pub(crate) async fn record_object(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    object_key: &str,
    object_size: u64,
    agent_id: &str,
    deadline_ms: Option<i64>,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO objects (object_key, size_bytes, agent_id, created_at_ms)
         VALUES ($1, $2, $3, {})",
        dialect.now_ms()
    ))
    .bind(object_key)
    .bind(object_size as i64)
    .bind(agent_id)
    .execute(&mut **tx)
    .await?;
    let Some(deadline_ms) = deadline_ms else {
        return Ok(());
    };
    let row = sqlx::query(&format!(
        "SELECT CASE WHEN {} <= $1 THEN 1 ELSE 0 END AS in_time",
        dialect.now_ms()
    ))
    .bind(deadline_ms)
    .fetch_one(&mut **tx)
    .await?;
    if row.try_get::<i64, _>("in_time")? == 1 {
        Ok(())
    } else {
        Err(MetadataError::CommitTooLate(object_key.to_string()))
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        let m = d.message();
        m.contains("database is locked")
            || m.contains("database table is locked")
            || m.contains("busy")
    }) || matches!(e, sqlx::Error::PoolTimedOut)
}

fn u32_col(row: &AnyRow, col: &str) -> Result<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| {
        MetadataError::Unavailable(sqlx::Error::Decode(
            format!("column {col} holds {v}, not a u32").into(),
        ))
    })
}

fn segment_row(r: &AnyRow) -> Result<SegmentRow> {
    Ok(SegmentRow {
        base_offset: r.try_get("base_offset")?,
        last_offset: r.try_get("last_offset")?,
        object_key: r.try_get("object_key")?,
        byte_start: u64_col(r, "byte_start")?,
        byte_len: u64_col(r, "byte_len")?,
        record_count: r.try_get("record_count")?,
        max_timestamp: r.try_get("max_timestamp")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

fn u64_col(row: &AnyRow, col: &str) -> Result<u64> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| {
        MetadataError::Unavailable(sqlx::Error::Decode(
            format!("column {col} holds {v}, not a u64").into(),
        ))
    })
}

impl MetadataStore {
    /// Connects to `sqlite://PATH` or `postgres://...` and applies pending migrations, with
    /// [`Deadlines::RELAXED`].
    pub async fn connect(url: &str) -> Result<MetadataStore> {
        Self::connect_with(url, Deadlines::RELAXED).await
    }

    /// Connects with the given deadlines and applies pending migrations.
    pub async fn connect_with(url: &str, deadlines: Deadlines) -> Result<MetadataStore> {
        sqlx::any::install_default_drivers();
        let (dialect, conn_url, file) = if url.starts_with("sqlite:") {
            let (conn_url, file) = map_sqlite_url(url)?;
            (Dialect::Sqlite, conn_url, file)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_string(), None)
        } else {
            return Err(MetadataError::InvalidUrl {
                url: url.into(),
                reason: "expected sqlite://PATH or postgres://...".into(),
            });
        };
        let options: sqlx::any::AnyConnectOptions = conn_url.parse()?;
        let connections = match dialect {
            // One writer at a time anyway; a few connections let reads proceed.
            Dialect::Sqlite => 4,
            Dialect::Postgres => 8,
        };
        let pool = tokio::time::timeout(
            deadlines.call.max(Duration::from_secs(5)),
            Self::pool(dialect, options, connections, deadlines),
        )
        .await
        .map_err(|_| MetadataError::Timeout {
            op: "connect",
            after: deadlines.call.max(Duration::from_secs(5)),
        })??;
        let store = MetadataStore {
            pool,
            dialect,
            deadlines,
            timeouts: Arc::default(),
            calls: Arc::default(),
            sqlite_writer: Arc::new(tokio::sync::Mutex::new(())),
            sessions_dir: file.as_deref().map(sessions::sessions_dir),
            lease_rows: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn pool(
        dialect: Dialect,
        options: sqlx::any::AnyConnectOptions,
        connections: u32,
        deadlines: Deadlines,
    ) -> Result<AnyPool> {
        let server_ms = deadlines.server.as_millis().max(1);
        Ok(AnyPoolOptions::new()
            .max_connections(connections)
            .min_connections(1)
            .acquire_timeout(deadlines.call)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    match dialect {
                        Dialect::Sqlite => {
                            // WAL lets several agent processes share the file; FULL makes
                            // every commit durable before a producer is acknowledged.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            // Statement journals (a multi-row statement inside a transaction)
                            // in memory, not a file created and unlinked in /var/tmp for
                            // each: they only undo one statement, and never outlive it.
                            conn.execute("PRAGMA temp_store = MEMORY").await?;
                            conn.execute(format!("PRAGMA busy_timeout = {server_ms}").as_str())
                                .await?;
                        }
                        Dialect::Postgres => {
                            conn.execute(
                                format!(
                                    "SET statement_timeout = {server_ms};
                                     SET idle_in_transaction_session_timeout = {server_ms}"
                                )
                                .as_str(),
                            )
                            .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?)
    }

    /// A store on its own pool of `connections` to the same database, with `server` as its
    /// server-side timeout: leases and flush commits each get one, so that follower polling,
    /// group traffic or maintenance can never take the connections they need.
    pub async fn dedicated(&self, connections: u32, server: Duration) -> Result<MetadataStore> {
        let options = (*self.pool.connect_options()).clone();
        let deadlines = Deadlines {
            call: self.deadlines.call,
            server,
        };
        let pool = tokio::time::timeout(
            deadlines.call.max(Duration::from_secs(5)),
            Self::pool(self.dialect, options, connections, deadlines),
        )
        .await
        .map_err(|_| MetadataError::Timeout {
            op: "connect",
            after: deadlines.call.max(Duration::from_secs(5)),
        })??;
        Ok(MetadataStore {
            pool,
            dialect: self.dialect,
            deadlines,
            timeouts: self.timeouts.clone(),
            calls: self.calls.clone(),
            sqlite_writer: self.sqlite_writer.clone(),
            sessions_dir: self.sessions_dir.clone(),
            lease_rows: Arc::default(),
        })
    }

    /// Metadata calls of this process that ran out of time.
    pub fn timeouts(&self) -> &std::sync::atomic::AtomicU64 {
        &self.timeouts
    }

    /// The deadlines every call of this store runs under.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Calls made through this store and its dedicated copies, by operation, sorted by name.
    /// An operation is one method call: one transaction or query, sometimes a few statements.
    pub fn calls(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = calls.iter().map(|(k, v)| (*k, *v)).collect();
        out.sort_unstable();
        out
    }

    /// Runs one call within the call deadline.
    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default() += 1;
        match tokio::time::timeout(self.deadlines.call, call).await {
            Ok(result) => result,
            Err(_) => {
                self.timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(MetadataError::Timeout {
                    op,
                    after: self.deadlines.call,
                })
            }
        }
    }

    /// The SQL dialect it speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let create = "CREATE TABLE IF NOT EXISTS streamhouse_migrations (
                version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)";
        self.retry_busy(|| async {
            let mut tx = self.pool.begin().await?;
            // Serialise concurrent agents starting at once, from the first statement:
            // PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against itself (two at once
            // on a fresh database, one fails on a catalog unique index).
            match self.dialect {
                Dialect::Postgres => {
                    sqlx::query("SELECT pg_advisory_xact_lock(7355608)")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::raw_sql(create).execute(&mut *tx).await?;
                }
                Dialect::Sqlite => {
                    sqlx::raw_sql(create).execute(&mut *tx).await?;
                    // A write first takes SQLite's write lock for the whole transaction.
                    sqlx::query("UPDATE streamhouse_migrations SET version = version WHERE 1 = 0")
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let applied: Vec<i64> = sqlx::query("SELECT version FROM streamhouse_migrations")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<std::result::Result<_, _>>()?;
            for (version, sql) in schema::MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                let sql = sql
                    .replace("{id}", self.dialect.auto_id())
                    .replace("{bytes}", self.dialect.bytes());
                sqlx::raw_sql(&sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| MetadataError::Migration {
                        version: *version,
                        source,
                    })?;
                sqlx::query(&format!(
                    "INSERT INTO streamhouse_migrations (version, applied_at_ms) VALUES ($1, {})",
                    self.dialect.now_ms()
                ))
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Runs a write: on SQLite one at a time within this process, and again while SQLite
    /// reports that another process holds the write lock. Every write goes through here, and
    /// none calls another from inside `f` (the queue is not reentrant).
    async fn retry_busy<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let _turn = match self.dialect {
            Dialect::Sqlite => Some(self.sqlite_writer.lock().await),
            Dialect::Postgres => None,
        };
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        for _ in 0..50 {
            match f().await {
                Err(MetadataError::Unavailable(e)) if is_busy(&e) => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
        f().await
    }

    /// The store's clock, which alone judges lease expiry.
    pub async fn now_ms(&self) -> Result<i64> {
        self.bounded("now_ms", async move {
            let row = sqlx::query(&format!("SELECT {} AS now_ms", self.dialect.now_ms()))
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get("now_ms")?)
        })
        .await
    }
}

#[cfg(test)]
mod conformance;
