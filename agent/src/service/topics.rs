//! Topic RPCs: metadata, create, delete, alter retention, and the topic descriptions they
//! answer with.

use super::*;

impl Service {
    pub(super) async fn topic_infos(&self, topics: Vec<TopicRow>) -> Result<Vec<pb::TopicInfo>> {
        let mut parts: BTreeMap<String, Vec<PartitionRow>> = BTreeMap::new();
        let rows = if topics.len() == 1 {
            self.shared
                .meta
                .list_partitions(Some(&topics[0].name))
                .await?
        } else {
            self.shared.meta.list_partitions(None).await?
        };
        for p in rows {
            parts.entry(p.topic.clone()).or_default().push(p);
        }
        Ok(topics
            .into_iter()
            .map(|t| {
                let partitions = parts.remove(&t.name).unwrap_or_default();
                topic_info(t, partitions)
            })
            .collect())
    }

    pub(super) async fn metadata_inner(
        &self,
        r: pb::GetMetadataRequest,
    ) -> Result<pb::GetMetadataResponse> {
        let meta = &self.shared.meta;
        let live_within = self.shared.config.lease_ttl_ms as i64;
        let agents = meta
            .list_agents(Some(live_within))
            .await?
            .into_iter()
            .map(|a| pb::AgentInfo {
                id: a.id,
                address: a.address,
                kafka_address: a.kafka_address.unwrap_or_default(),
                started_at_ms: a.started_at_ms,
                heartbeat_ms: a.heartbeat_ms,
                live: true,
                partitions_led: 0,
            })
            .collect();
        let mut topics = Vec::new();
        if r.topics.len() > limits::MAX_METADATA_TOPICS {
            return Err(AgentError::InvalidRequest(format!(
                "metadata for {} topics; at most {} in one request (none for all)",
                r.topics.len(),
                limits::MAX_METADATA_TOPICS
            )));
        }
        if r.topics.is_empty() {
            topics = self.topic_infos(meta.list_topics().await?).await?;
        } else {
            // Each topic is answered once, in the order first asked.
            let mut seen = HashSet::with_capacity(r.topics.len());
            for name in r.topics.into_iter().filter(|t| seen.insert(t.clone())) {
                let row = match validate_topic_name(&name) {
                    Err(e) => Err(AgentError::InvalidTopic(e)),
                    Ok(()) => meta
                        .get_topic(&name)
                        .await?
                        .ok_or_else(|| AgentError::UnknownTopic(name.clone())),
                };
                match row {
                    Ok(row) => topics.extend(self.topic_infos(vec![row]).await?),
                    Err(e) => topics.push(pb::TopicInfo {
                        name,
                        error: Some(e.to_pb()),
                        ..Default::default()
                    }),
                }
            }
        }
        Ok(pb::GetMetadataResponse {
            error: ok(),
            agents,
            topics,
            max_batch_bytes: self.shared.config.max_record_bytes as u32,
            max_request_bytes: self.shared.config.max_request_bytes() as u32,
            flush_interval_ms: self.shared.config.flush_interval().as_millis() as u32,
        })
    }

    pub(crate) async fn create_topic_inner(
        &self,
        r: pb::CreateTopicRequest,
    ) -> Result<pb::CreateTopicResponse> {
        validate_topic_name(&r.name).map_err(AgentError::InvalidTopic)?;
        if r.partitions == 0 || r.partitions > MAX_PARTITIONS {
            return Err(AgentError::InvalidPartitions(format!(
                "{} partitions; a topic has 1 to {MAX_PARTITIONS}",
                r.partitions
            )));
        }
        let retention_ms = match r.retention_ms {
            0 => self.shared.config.default_retention_ms,
            v => retention_value("retention_ms", v)?,
        };
        let retention_bytes = match r.retention_bytes {
            0 => -1,
            v => retention_value("retention_bytes", v)?,
        };
        let row = self
            .shared
            .meta
            .create_topic(&r.name, r.partitions, retention_ms, retention_bytes)
            .await?;
        self.shared.topics.upsert(&row);
        // Take this agent's share of the new partitions now rather than at the next round,
        // so the first produce finds a leader.
        if let Err(e) = crate::lease::tick(&self.shared).await {
            tracing::warn!(error = %e, "lease round after topic creation failed");
        }
        let info = self.topic_infos(vec![row]).await?.pop();
        Ok(pb::CreateTopicResponse {
            error: ok(),
            topic: info,
        })
    }

    pub(crate) async fn delete_topic_inner(
        &self,
        r: pb::DeleteTopicRequest,
    ) -> Result<pb::DeleteTopicResponse> {
        validate_topic_name(&r.name).map_err(AgentError::InvalidTopic)?;
        self.shared.meta.delete_topic(&r.name).await?;
        self.shared.topics.remove(&r.name);
        Ok(pb::DeleteTopicResponse { error: ok() })
    }

    pub(super) async fn alter_topic_config_inner(
        &self,
        r: pb::AlterTopicConfigRequest,
    ) -> Result<pb::AlterTopicConfigResponse> {
        validate_topic_name(&r.name).map_err(AgentError::InvalidTopic)?;
        let change = crate::metadata::maintenance::TopicConfigChange {
            retention_ms: r
                .retention_ms
                .map(|v| match v {
                    0 => Ok(self.shared.config.default_retention_ms),
                    v => retention_value("retention_ms", v),
                })
                .transpose()?,
            retention_bytes: r
                .retention_bytes
                .map(|v| match v {
                    0 => Ok(-1),
                    v => retention_value("retention_bytes", v),
                })
                .transpose()?,
        };
        let row = self.shared.meta.alter_topic_config(&r.name, change).await?;
        let info = self.topic_infos(vec![row]).await?.pop();
        Ok(pb::AlterTopicConfigResponse {
            error: ok(),
            topic: info,
        })
    }
}

/// A retention setting as given: positive, or -1 for none.
pub(super) fn retention_value(name: &str, v: i64) -> Result<i64> {
    if v > 0 || v == -1 {
        Ok(v)
    } else {
        Err(AgentError::InvalidRequest(format!(
            "{name} {v}: give a positive value, -1 for none or 0 for the default"
        )))
    }
}

pub(super) fn topic_info(t: TopicRow, partitions: Vec<PartitionRow>) -> pb::TopicInfo {
    pb::TopicInfo {
        partition_count: t.partition_count,
        partitions: partitions
            .into_iter()
            .map(|p| pb::PartitionInfo {
                partition: p.partition,
                leader_id: p.leader_id.unwrap_or_default(),
                leader_address: p.leader_address.unwrap_or_default(),
                lease_epoch: p.lease_epoch,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                lease_expires_ms: p.lease_expires_ms,
            })
            .collect(),
        retention_ms: t.retention_ms,
        retention_bytes: t.retention_bytes,
        created_at_ms: t.created_at_ms,
        name: t.name,
        error: ok(),
    }
}
