//! Topic administration: create, list, describe, delete.

use std::sync::Arc;
use std::time::Duration;

use streamhouse_proto::pb;

use crate::cluster::{Cluster, parse_bootstrap};
use crate::consumer::TopicPartition;
use crate::error::{ClientError, Result};

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
    fn from_pb(t: pb::TopicInfo) -> Self {
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
    /// `empty`, `stable` (every member owns its target) or `reconciling`.
    pub state: String,
    /// Live members.
    pub members: u32,
    /// Bumped by every change of membership, subscriptions or partition counts.
    pub generation: i64,
    /// The assignor in use.
    pub assignor: String,
    /// Over its committed partitions: high watermark - committed offset.
    pub total_lag: i64,
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
    /// `empty`, `stable` or `reconciling`.
    pub state: String,
    /// The current generation.
    pub generation: i64,
    /// The assignor in use.
    pub assignor: String,
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

/// Manages topics.
///
/// ```no_run
/// # async fn demo() -> Result<(), streamhouse_client::ClientError> {
/// use streamhouse_client::{Admin, NewTopic};
/// let admin = Admin::connect("127.0.0.1:9660").await?;
/// admin.create_topic(NewTopic::new("events", 8)).await?;
/// for topic in admin.list_topics().await? {
///     println!("{} has {} partitions", topic.name, topic.partitions.len());
/// }
/// admin.delete_topic("events").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    /// An admin client for the cluster behind these comma-separated `HOST:PORT` addresses.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// let admin = streamhouse_client::Admin::connect("127.0.0.1:9660,127.0.0.1:9661").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Admin::connect_with_timeout(bootstrap, Duration::from_secs(30)).await
    }

    /// As [`Admin::connect`], with each request to an agent given up after `timeout` (and
    /// the next agent tried). Tools that watch a cluster use a short one, so that an agent
    /// that is down or stopped costs them little.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// use std::time::Duration;
    /// let admin =
    ///     streamhouse_client::Admin::connect_with_timeout("127.0.0.1:9660", Duration::from_secs(2))
    ///         .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_timeout(bootstrap: &str, timeout: Duration) -> Result<Admin> {
        Admin::connect_with(bootstrap, timeout, crate::Security::default()).await
    }

    /// As [`Admin::connect_with_timeout`], over TLS and/or with a token.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// use std::time::Duration;
    /// use streamhouse_client::{Admin, Security};
    /// let security = Security::new().tls_ca_file("ca.pem")?.token_file("token")?;
    /// let admin = Admin::connect_with("agents.internal:9660", Duration::from_secs(30), security).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        bootstrap: &str,
        timeout: Duration,
        security: crate::Security,
    ) -> Result<Admin> {
        security.validate()?;
        let cluster = Cluster::new(parse_bootstrap(bootstrap)?, 4, timeout, security);
        Ok(Admin {
            cluster: Arc::new(cluster),
        })
    }

    /// Creates a topic. Fails with [`ClientError::TopicExists`] if the name is taken.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// match admin.create_topic(streamhouse_client::NewTopic::new("events", 8)).await {
    ///     Ok(_) | Err(streamhouse_client::ClientError::TopicExists(_)) => {}
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicDescription> {
        let req = pb::CreateTopicRequest {
            name: topic.name.clone(),
            partitions: topic.partitions,
            retention_ms: topic.retention_ms.unwrap_or(0),
            retention_bytes: topic.retention_bytes.unwrap_or(-1),
        };
        let resp = self
            .cluster
            .ask(|mut c| {
                let req = req.clone();
                async move { c.create_topic(req).await }
            })
            .await?;
        resp.topic
            .map(TopicDescription::from_pb)
            .ok_or(ClientError::UnknownTopic(topic.name))
    }

    /// Deletes a topic and everything in it.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// admin.delete_topic("events").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let resp = self
            .cluster
            .any_agent(|mut c| {
                let name = name.to_string();
                async move { c.delete_topic(pb::DeleteTopicRequest { name }).await }
            })
            .await?;
        self.cluster.forget(name);
        match ClientError::from_pb(resp.error.as_ref()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Changes a topic's retention. Takes effect at the partition leaders' next maintenance
    /// pass (every 10 s by default): whole segments beyond the new limits are dropped and
    /// the log start advances.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// use streamhouse_client::TopicConfig;
    /// let topic = admin
    ///     .alter_topic_config("events", TopicConfig { retention_ms: Some(3_600_000), ..Default::default() })
    ///     .await?;
    /// assert_eq!(topic.retention_ms, 3_600_000);
    /// # Ok(()) }
    /// ```
    pub async fn alter_topic_config(
        &self,
        name: &str,
        change: TopicConfig,
    ) -> Result<TopicDescription> {
        let req = pb::AlterTopicConfigRequest {
            name: name.to_string(),
            retention_ms: change.retention_ms,
            retention_bytes: change.retention_bytes,
        };
        let resp = self
            .cluster
            .ask(|mut c| {
                let req = req.clone();
                async move { c.alter_topic_config(req).await }
            })
            .await?;
        resp.topic
            .map(TopicDescription::from_pb)
            .ok_or_else(|| ClientError::UnknownTopic(name.to_string()))
    }

    /// Every topic, by name.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// let names: Vec<String> = admin.list_topics().await?.into_iter().map(|t| t.name).collect();
    /// # Ok(()) }
    /// ```
    pub async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        let resp = self
            .cluster
            .ask(|mut c| async move { c.list_topics(pb::ListTopicsRequest {}).await })
            .await?;
        Ok(resp
            .topics
            .into_iter()
            .map(TopicDescription::from_pb)
            .collect())
    }

    /// One topic, with its partitions' leaders and offsets.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// let t = admin.describe_topic("events").await?;
    /// let stored: i64 = t.partitions.iter().map(|p| p.high_watermark - p.log_start_offset).sum();
    /// # Ok(()) }
    /// ```
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let resp = self.cluster.metadata(vec![name.to_string()]).await?;
        let t = resp
            .topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ClientError::UnknownTopic(name.to_string()))?;
        if let Some(e) = ClientError::from_pb(t.error.as_ref()) {
            return Err(e);
        }
        Ok(TopicDescription::from_pb(t))
    }

    /// Every registered agent and every partition's lease, with the store's clock.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// let live = admin.describe_cluster().await?.agents.iter().filter(|a| a.live).count();
    /// println!("{live} agents live");
    /// # Ok(()) }
    /// ```
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let resp = self
            .cluster
            .ask(|mut c| async move { c.describe_cluster(pb::DescribeClusterRequest {}).await })
            .await?;
        // Agents that joined (or restarted on a new port) since the bootstrap list was
        // written are asked next time, before the bootstrap list.
        let live: Vec<String> = resp
            .agents
            .iter()
            .filter(|a| a.live)
            .map(|a| a.address.clone())
            .collect();
        if !live.is_empty() {
            self.cluster.set_agents(live);
        }
        Ok(ClusterDescription {
            now_ms: resp.now_ms,
            lease_ttl_ms: resp.lease_ttl_ms,
            agents: resp
                .agents
                .into_iter()
                .map(|a| AgentDescription {
                    id: a.id,
                    address: a.address,
                    started_at_ms: a.started_at_ms,
                    heartbeat_ms: a.heartbeat_ms,
                    live: a.live,
                    partitions_led: a.partitions_led,
                })
                .collect(),
            topics: resp
                .topics
                .into_iter()
                .map(TopicDescription::from_pb)
                .collect(),
        })
    }

    /// The counters of the agent at `address` (`HOST:PORT`, as [`AgentDescription::address`]
    /// names it) since it started. Rates come from the differences between two answers.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// for agent in admin.describe_cluster().await?.agents.iter().filter(|a| a.live) {
    ///     let s = admin.agent_stats(&agent.address).await?;
    ///     println!("{}: {} records produced", s.agent_id, s.produced_records);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn agent_stats(&self, address: &str) -> Result<AgentStats> {
        let mut c = self.cluster.conn(address)?.client;
        let resp = match tokio::time::timeout(
            self.cluster.request_timeout(),
            c.get_agent_stats(pb::GetAgentStatsRequest {}),
        )
        .await
        {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                return Err(ClientError::Unreachable(format!(
                    "{address}: {}",
                    ClientError::from_status(&status)
                )));
            }
            Err(_) => {
                return Err(ClientError::Unreachable(format!("{address}: timed out")));
            }
        };
        if let Some(e) = ClientError::from_pb(resp.error.as_ref()) {
            return Err(e);
        }
        Ok(AgentStats {
            agent_id: resp.agent_id,
            started_at_ms: resp.started_at_ms,
            produced_records: resp.produced_records,
            produced_bytes: resp.produced_bytes,
            fetched_records: resp.fetched_records,
            fetched_bytes: resp.fetched_bytes,
            flushes: resp.flushes,
            flushed_bytes: resp.flushed_bytes,
            buffered_batches: resp.buffered_batches,
            buffered_bytes: resp.buffered_bytes,
            partitions_led: resp.partitions_led,
        })
    }

    /// Every consumer group with its state, member count, generation and total lag.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// for g in admin.list_groups().await? {
    ///     println!("{}: {} members, lag {}", g.group_id, g.members, g.total_lag);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let resp = self
            .cluster
            .ask(|mut c| async move { c.list_groups(pb::ListGroupsRequest {}).await })
            .await?;
        Ok(resp
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id,
                state: g.state,
                members: g.members,
                generation: g.generation,
                assignor: g.assignor,
                total_lag: g.total_lag,
            })
            .collect())
    }

    /// One group: its members with their partitions, and per partition the committed
    /// offset, high watermark and lag.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// let g = admin.describe_group("analytics").await?;
    /// for p in &g.partitions {
    ///     println!("{} owned by {:?}: lag {}", p.tp, p.owner, p.lag);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let req = pb::DescribeGroupRequest {
            group_id: group_id.to_string(),
        };
        let resp = self
            .cluster
            .ask(|mut c| {
                let req = req.clone();
                async move { c.describe_group(req).await }
            })
            .await?;
        Ok(GroupDescription {
            group_id: resp.group_id,
            state: resp.state,
            generation: resp.generation,
            assignor: resp.assignor,
            members: resp
                .members
                .into_iter()
                .map(|m| GroupMemberDescription {
                    target: crate::group::from_pb(&m.target).into_iter().collect(),
                    owned: crate::group::from_pb(&m.owned).into_iter().collect(),
                    member_id: m.member_id,
                    client_id: m.client_id,
                    host: m.host,
                    topics: m.topics,
                    generation: m.generation,
                    last_heartbeat_ms: m.last_heartbeat_ms,
                })
                .collect(),
            partitions: resp
                .partitions
                .into_iter()
                .map(|p| GroupPartitionDescription {
                    tp: TopicPartition::new(p.topic, p.partition),
                    owner: (!p.owner.is_empty()).then_some(p.owner),
                    committed: (p.committed_offset >= 0).then_some(p.committed_offset),
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    lag: p.lag,
                })
                .collect(),
        })
    }

    /// Moves a group's committed offsets for every partition of `topic`. Refused with
    /// `NON_EMPTY_GROUP` while the group has live members. Returns (partition, offset).
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// use streamhouse_client::ResetTarget;
    /// admin.reset_offsets("analytics", "events", ResetTarget::Earliest).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        to: ResetTarget,
    ) -> Result<Vec<(u32, i64)>> {
        let (to, value) = match to {
            ResetTarget::Earliest => ("earliest", 0),
            ResetTarget::Latest => ("latest", 0),
            ResetTarget::Timestamp(t) => ("timestamp", t),
            ResetTarget::Offset(o) => ("offset", o),
        };
        let req = pb::ResetOffsetsRequest {
            group_id: group_id.to_string(),
            topic: topic.to_string(),
            to: to.to_string(),
            value,
        };
        let resp = self
            .cluster
            .ask(|mut c| {
                let req = req.clone();
                async move { c.reset_offsets(req).await }
            })
            .await?;
        Ok(resp
            .offsets
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect())
    }

    /// Up to `limit` (at most 1,000) cluster events with an id above `after_id`, oldest
    /// first. The cluster keeps the last 10,000.
    ///
    /// ```no_run
    /// # async fn example(admin: streamhouse_client::Admin) -> Result<(), streamhouse_client::ClientError> {
    /// let mut last = 0;
    /// loop {
    ///     for e in admin.list_events(last, 100).await? {
    ///         println!("{}: {}", e.kind, e.subject);
    ///         last = e.id;
    ///     }
    ///     tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    /// }
    /// # }
    /// ```
    pub async fn list_events(&self, after_id: i64, limit: u32) -> Result<Vec<ClusterEvent>> {
        let resp = self
            .cluster
            .ask(|mut c| async move {
                c.list_events(pb::ListEventsRequest { after_id, limit })
                    .await
            })
            .await?;
        Ok(resp
            .events
            .into_iter()
            .map(|e| ClusterEvent {
                id: e.id,
                at_ms: e.at_ms,
                kind: e.kind,
                subject: e.subject,
                detail: e.detail,
            })
            .collect())
    }
}
