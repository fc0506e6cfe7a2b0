//! What the cluster looks like: its agents, this agent's counters, and the event log.

use super::*;

impl Service {
    pub(super) async fn describe_cluster_inner(&self) -> Result<pb::DescribeClusterResponse> {
        let meta = &self.shared.meta;
        let ttl = self.shared.config.lease_ttl_ms as i64;
        let now_ms = meta.now_ms().await?;
        let topics = self.topic_infos(meta.list_topics().await?).await?;
        let mut led: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for p in topics.iter().flat_map(|t| &t.partitions) {
            if !p.leader_id.is_empty() {
                *led.entry(p.leader_id.as_str()).or_default() += 1;
            }
        }
        let agents = meta
            .list_agents(None)
            .await?
            .into_iter()
            .map(|a| pb::AgentInfo {
                live: !a.lost && a.heartbeat_ms > now_ms - ttl,
                partitions_led: led.get(a.id.as_str()).copied().unwrap_or(0),
                id: a.id,
                address: a.address,
                kafka_address: a.kafka_address.unwrap_or_default(),
                started_at_ms: a.started_at_ms,
                heartbeat_ms: a.heartbeat_ms,
            })
            .collect();
        Ok(pb::DescribeClusterResponse {
            error: ok(),
            now_ms,
            agents,
            topics,
            lease_ttl_ms: self.shared.config.lease_ttl_ms,
        })
    }

    pub(super) fn agent_stats(&self) -> pb::GetAgentStatsResponse {
        let stats = &self.shared.stats;
        let (buffered_batches, buffered_bytes) = self.shared.writer.buffered();
        let (flushes, flushed_bytes) = self.shared.writer.flushed();
        let partitions_led = self
            .shared
            .topics
            .all()
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.lease_epoch().is_some())
            .count() as u32;
        pb::GetAgentStatsResponse {
            error: ok(),
            agent_id: self.shared.id.clone(),
            started_at_ms: stats.started_at_ms,
            produced_records: stats.produced_records.load(Ordering::Relaxed),
            produced_bytes: stats.produced_bytes.load(Ordering::Relaxed),
            fetched_records: stats.fetched_records.load(Ordering::Relaxed),
            fetched_bytes: stats.fetched_bytes.load(Ordering::Relaxed),
            flushes,
            flushed_bytes,
            buffered_batches,
            buffered_bytes,
            partitions_led,
        }
    }

    pub(super) async fn list_events_inner(
        &self,
        r: pb::ListEventsRequest,
    ) -> Result<pb::ListEventsResponse> {
        let limit = match r.limit {
            0 => 100,
            n => n.min(1000),
        };
        let events = self
            .shared
            .meta
            .list_events(r.after_id, i64::from(limit))
            .await?
            .into_iter()
            .map(|e| pb::Event {
                id: e.id,
                at_ms: e.at_ms,
                kind: e.kind,
                subject: e.subject,
                detail: e.detail,
            })
            .collect();
        Ok(pb::ListEventsResponse {
            error: ok(),
            events,
        })
    }
}
