//! Topic administration: create, list, describe, delete.

use std::sync::Arc;
use std::time::Duration;

use streamhouse_proto::pb;

use crate::cluster::{Cluster, parse_bootstrap};
use crate::consumer::TopicPartition;
use crate::error::{ClientError, Result};

mod descriptions;

pub use descriptions::*;

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
                    kafka_address: Some(a.kafka_address).filter(|k| !k.is_empty()),
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
                kafka: g.kafka,
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
            kafka: resp.kafka,
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
