//! What [`Admin`](super::Admin) takes and returns: descriptions of topics, partitions,
//! agents, groups and events, and the settings of new and changed topics.

use super::*;

/// One partition as the cluster describes it.
///
/// ```no_run
/// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
/// for p in admin.describe_topic("events").await?.partitions {
///     println!("{}: leader {:?}, offsets {}..{}", p.partition, p.leader_id, p.log_start_offset, p.high_watermark);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition number.
    pub partition: u32,
    /// Id of the agent holding the lease, if any.
    pub leader_id: Option<String>,
    /// Address of that agent.
    pub leader_address: Option<String>,
    /// Lease epoch: it grows with every change of leader.
    pub lease_epoch: i64,
    /// When the lease runs out unless renewed, ms since the epoch by the metadata store's
    /// clock (compare with [`ClusterDescription::now_ms`]).
    pub lease_expires_ms: i64,
    /// First offset still stored.
    pub log_start_offset: i64,
    /// Offset the next record will get.
    pub high_watermark: i64,
}

/// A topic as the cluster describes it.
///
/// ```no_run
/// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
/// let t = admin.describe_topic("events").await?;
/// println!("{} has {} partitions", t.name, t.partitions.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionDescription>,
    /// Retention by age in ms, or -1 for none.
    pub retention_ms: i64,
    /// Retention by size in bytes per partition, or -1 for none.
    pub retention_bytes: i64,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

impl TopicDescription {
    pub(super) fn from_pb(t: pb::TopicInfo) -> Self {
        TopicDescription {
            name: t.name,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    leader_id: (!p.leader_id.is_empty()).then_some(p.leader_id),
                    leader_address: (!p.leader_address.is_empty()).then_some(p.leader_address),
                    lease_epoch: p.lease_epoch,
                    lease_expires_ms: p.lease_expires_ms,
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                })
                .collect(),
            retention_ms: t.retention_ms,
            retention_bytes: t.retention_bytes,
            created_at_ms: t.created_at_ms,
        }
    }
}

/// An agent of the cluster.
///
/// ```no_run
/// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
/// for agent in admin.describe_cluster().await?.agents {
///     println!("{} at {}: live {}, leads {}", agent.id, agent.address, agent.live, agent.partitions_led);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDescription {
    /// The agent's id.
    pub id: String,
    /// Where clients reach it.
    pub address: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// Its last heartbeat, ms since the epoch.
    pub heartbeat_ms: i64,
    /// Whether its last heartbeat is younger than the lease TTL.
    pub live: bool,
    /// Partitions whose live lease it holds.
    pub partitions_led: u32,
    /// Where it serves Kafka clients (its `--kafka-listen`, as advertised), if it does.
    pub kafka_address: Option<String>,
}

/// The whole cluster at one moment: every registered agent (live or lost), every topic with
/// its partitions' leases, and the metadata store's clock they were judged by.
///
/// ```no_run
/// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
/// let c = admin.describe_cluster().await?;
/// for t in &c.topics {
///     for p in &t.partitions {
///         let left = p.lease_expires_ms - c.now_ms;
///         println!("{}-{}: {:?} epoch {} ({left} ms left)", t.name, p.partition, p.leader_id, p.lease_epoch);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The metadata store's clock, ms since the epoch.
    pub now_ms: i64,
    /// The agents' lease TTL.
    pub lease_ttl_ms: u64,
    /// Every registered agent, by id.
    pub agents: Vec<AgentDescription>,
    /// Every topic, by name.
    pub topics: Vec<TopicDescription>,
}

/// Something that happened in the cluster: an agent joined, left or was lost, a lease was
/// acquired, taken after expiry or released, a topic was created or deleted.
///
/// ```no_run
/// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
/// for e in admin.list_events(0, 100).await? {
///     println!("{} {} {}: {}", e.at_ms, e.kind, e.subject, e.detail);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Increasing id; pass the last one seen to [`Admin::list_events`] to get what follows.
    pub id: i64,
    /// When, ms since the epoch, by the metadata store's clock.
    pub at_ms: i64,
    /// `agent_joined`, `agent_left`, `agent_lost`, `lease_acquired`, `lease_taken`,
    /// `lease_released`, `topic_created` or `topic_deleted`.
    pub kind: String,
    /// What it happened to: an agent id, `topic-partition`, or a topic.
    pub subject: String,
    /// Details in words.
    pub detail: String,
}

/// A consumer group as [`Admin::list_groups`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group's id.
    pub group_id: String,
    /// `empty`, `stable` (every member owns its target) or `reconciling`; for a Kafka
    /// group, Kafka's names: `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Stable`.
    pub state: String,
    /// Live members.
    pub members: u32,
    /// Bumped by every change of membership, subscriptions or partition counts.
    pub generation: i64,
    /// The assignor in use.
    pub assignor: String,
    /// Over its committed partitions: high watermark - committed offset.
    pub total_lag: i64,
    /// A group of Kafka clients, joined through an agent's Kafka listener (the classic
    /// protocol: its members assign partitions among themselves).
    pub kafka: bool,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// The id the group gave it.
    pub member_id: String,
    /// The client id it gave.
    pub client_id: String,
    /// Its address as the agent saw it.
    pub host: String,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Where the group wants its partitions.
    pub target: Vec<TopicPartition>,
    /// What it owns now (including what it is giving up).
    pub owned: Vec<TopicPartition>,
    /// The generation it was last answered with.
    pub generation: i64,
    /// Its last heartbeat, ms since the epoch (the store's clock).
    pub last_heartbeat_ms: i64,
}

/// One partition of a group's topics, with the group's progress in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionDescription {
    /// The partition.
    pub tp: TopicPartition,
    /// The member owning it, if any.
    pub owner: Option<String>,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// First offset still stored.
    pub log_start_offset: i64,
    /// Offset the next record will get.
    pub high_watermark: i64,
    /// High watermark - committed offset (from the log start when nothing is committed).
    pub lag: i64,
}

/// A consumer group in full, from [`Admin::describe_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group's id.
    pub group_id: String,
    /// `empty`, `stable` or `reconciling`; for a Kafka group, Kafka's names (`Empty`,
    /// `PreparingRebalance`, `CompletingRebalance`, `Stable`).
    pub state: String,
    /// The current generation.
    pub generation: i64,
    /// The assignor in use.
    pub assignor: String,
    /// A group of Kafka clients (see [`GroupListing::kafka`]).
    pub kafka: bool,
    /// Live members.
    pub members: Vec<GroupMemberDescription>,
    /// Every partition of its topics.
    pub partitions: Vec<GroupPartitionDescription>,
}

/// Where [`Admin::reset_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark: skip everything stored now.
    Latest,
    /// The first stored segment stamped at or after this time (ms since the epoch).
    Timestamp(i64),
    /// This offset, clamped to each partition's bounds.
    Offset(i64),
}

/// One agent's counters since it started, from [`Admin::agent_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// The agent that answered.
    pub agent_id: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// Records acknowledged to producers.
    pub produced_records: u64,
    /// Bytes (encoded batches) acknowledged to producers.
    pub produced_bytes: u64,
    /// Records returned to consumers (whole batches).
    pub fetched_records: u64,
    /// Bytes returned to consumers.
    pub fetched_bytes: u64,
    /// Objects written and committed.
    pub flushes: u64,
    /// Bytes of those objects.
    pub flushed_bytes: u64,
    /// Batches waiting in the flush buffer now.
    pub buffered_batches: u64,
    /// Bytes waiting in the flush buffer now.
    pub buffered_bytes: u64,
    /// Partitions it leads now.
    pub partitions_led: u32,
}

/// Options of a new topic.
///
/// ```
/// let mut topic = streamhouse_client::NewTopic::new("audit", 3);
/// topic.retention_ms = Some(7 * 24 * 3600 * 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name: 1 to 249 of `[a-zA-Z0-9._-]`.
    pub name: String,
    /// Number of partitions, 1 to 10,000.
    pub partitions: u32,
    /// Retention by age in ms (Kafka's `retention.ms`): `None` for the cluster's default
    /// (7 days unless the agents are configured otherwise), `Some(-1)` to keep records forever.
    pub retention_ms: Option<i64>,
    /// Retention by size per partition in bytes (`retention.bytes`): `None` or `Some(-1)` for
    /// no limit.
    pub retention_bytes: Option<i64>,
}

impl NewTopic {
    /// A topic with the cluster's default retention.
    ///
    /// ```
    /// let topic = streamhouse_client::NewTopic::new("events", 8);
    /// assert_eq!(topic.retention_ms, None);
    /// ```
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            retention_ms: None,
            retention_bytes: None,
        }
    }
}

/// Changes to a topic's settings; a `None` field keeps its current value.
///
/// ```
/// let change = streamhouse_client::TopicConfig {
///     retention_ms: Some(24 * 3600 * 1000),
///     ..Default::default()
/// };
/// assert_eq!(change.retention_bytes, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicConfig {
    /// Milliseconds records are kept; `Some(-1)` forever, `Some(0)` the cluster's default.
    pub retention_ms: Option<i64>,
    /// Bytes each partition keeps; `Some(-1)` unlimited.
    pub retention_bytes: Option<i64>,
}
