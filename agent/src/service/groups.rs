//! The consumer-group RPCs: checks on the way in, the metadata store's group transactions,
//! and the answers.

use std::collections::{BTreeMap, BTreeSet};

use streamhouse_proto::limits::{
    MAX_ASSIGNORS, MAX_COMMIT_METADATA_BYTES, MAX_GROUP_PARTITIONS, MAX_GROUP_TOPICS,
    MAX_ID_BYTES as MAX_ID,
};
use streamhouse_proto::{pb, validate_topic_name};

use super::Service;
use crate::error::{AgentError, Result, ok};
use crate::group::assignor::{Assignor, Tp};
use crate::group::coordinator::Heartbeat;
use crate::metadata::groups::ResetTo;

fn to_pb_tps(tps: &[Tp]) -> Vec<pb::TopicPartitions> {
    pb::TopicPartitions::group(tps.iter().map(|(t, p)| (t.as_str(), *p)))
}

fn from_pb_tps(tps: &[pb::TopicPartitions]) -> Vec<Tp> {
    pb::TopicPartitions::pairs(tps)
        .map(|(t, p)| (t.to_string(), p))
        .collect()
}

/// Refuses a list longer than `max`, naming it.
fn check_len(what: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(AgentError::InvalidRequest(format!(
            "{len} {what}; at most {max} in one request"
        )));
    }
    Ok(())
}

/// A new member's id: its client id (cut to fit) and a random suffix, within [`MAX_ID`].
/// Kafka clients' members get theirs here too.
pub(crate) fn new_member_id(client_id: &str) -> String {
    const SUFFIX: usize = 17; // '-' and 16 hex digits
    let client = if client_id.is_empty() {
        "consumer"
    } else {
        client_id
    };
    let mut cut = client.len().min(MAX_ID - SUFFIX);
    while !client.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{:016x}", &client[..cut], rand::random::<u64>())
}

fn check_id(what: &str, id: &str, may_be_empty: bool) -> Result<()> {
    if id.is_empty() && !may_be_empty {
        return Err(AgentError::InvalidRequest(format!("{what} is empty")));
    }
    if id.len() > MAX_ID || id.chars().any(|c| c.is_control()) {
        return Err(AgentError::InvalidRequest(format!(
            "{what} must be at most {MAX_ID} bytes without control characters"
        )));
    }
    Ok(())
}

impl Service {
    pub(super) async fn group_heartbeat_inner(
        &self,
        r: pb::GroupHeartbeatRequest,
        join: bool,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<pb::GroupHeartbeatResponse> {
        check_id("group id", &r.group_id, false)?;
        check_id("member id", &r.member_id, join)?;
        check_id("client id", &r.client_id, true)?;
        if r.topics.is_empty() {
            return Err(AgentError::InvalidRequest(
                "subscribe to at least one topic".into(),
            ));
        }
        check_len("subscribed topics", r.topics.len(), MAX_GROUP_TOPICS)?;
        check_len("assignors", r.assignors.len(), MAX_ASSIGNORS)?;
        let owned: usize = r.owned.iter().map(|t| t.partitions.len().max(1)).sum();
        check_len("owned partitions", owned, MAX_GROUP_PARTITIONS)?;
        for t in &r.owned {
            validate_topic_name(&t.topic).map_err(AgentError::InvalidTopic)?;
        }
        for t in &r.topics {
            validate_topic_name(t).map_err(AgentError::InvalidTopic)?;
        }
        let cfg = &self.shared.config;
        let session = u64::from(r.session_timeout_ms);
        if session < cfg.group_min_session_timeout_ms || session > cfg.group_max_session_timeout_ms
        {
            return Err(AgentError::InvalidRequest(format!(
                "session timeout {session} ms is outside this cluster's [{}, {}] ms",
                cfg.group_min_session_timeout_ms, cfg.group_max_session_timeout_ms
            )));
        }
        let assignors = r
            .assignors
            .iter()
            .map(|a| {
                Assignor::parse(a).ok_or_else(|| {
                    AgentError::InvalidRequest(format!(
                        "unknown assignor {a:?}: round-robin, range or sticky"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let member_id = if join && r.member_id.is_empty() {
            new_member_id(&r.client_id)
        } else {
            r.member_id.clone()
        };
        let hb = Heartbeat {
            member_id: member_id.clone(),
            known: !join,
            client_id: r.client_id.clone(),
            host: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            topics: r.topics.iter().cloned().collect::<BTreeSet<_>>(),
            assignors,
            owned: from_pb_tps(&r.owned),
            session_timeout_ms: i64::from(r.session_timeout_ms),
        };
        let out = self.shared.meta.group_heartbeat(&r.group_id, &hb).await??;
        if let Some(why) = &out.rebalance {
            tracing::info!(group = %r.group_id, generation = out.generation, %why, "rebalance");
        }
        Ok(pb::GroupHeartbeatResponse {
            error: ok(),
            member_id,
            generation: out.generation,
            assignment: to_pb_tps(&out.assignment),
            assignor: out.assignor.map_or("", Assignor::name).to_string(),
            pending: out.pending as u32,
        })
    }

    pub(super) async fn leave_group_inner(
        &self,
        r: pb::LeaveGroupRequest,
    ) -> Result<pb::LeaveGroupResponse> {
        check_id("group id", &r.group_id, false)?;
        check_id("member id", &r.member_id, false)?;
        self.shared
            .meta
            .group_leave(&r.group_id, &r.member_id)
            .await??;
        Ok(pb::LeaveGroupResponse { error: ok() })
    }

    pub(super) async fn commit_offsets_inner(
        &self,
        r: pb::CommitOffsetsRequest,
    ) -> Result<pb::CommitOffsetsResponse> {
        check_id("group id", &r.group_id, false)?;
        check_id("member id", &r.member_id, true)?;
        check_len("offsets", r.offsets.len(), MAX_GROUP_PARTITIONS)?;
        // A partition named twice keeps its last offset: one row per partition, as the
        // store's upsert needs.
        let mut offsets: Vec<(String, u32, i64, String)> = Vec::with_capacity(r.offsets.len());
        let mut at: BTreeMap<(String, u32), usize> = BTreeMap::new();
        for o in r.offsets {
            validate_topic_name(&o.topic).map_err(AgentError::InvalidTopic)?;
            if o.offset < 0 {
                return Err(AgentError::InvalidRequest(format!(
                    "offset {} for {}-{} is negative",
                    o.offset, o.topic, o.partition
                )));
            }
            if o.metadata.len() > MAX_COMMIT_METADATA_BYTES {
                return Err(AgentError::InvalidRequest(format!(
                    "commit metadata is limited to {MAX_COMMIT_METADATA_BYTES} bytes"
                )));
            }
            let entry = (o.topic, o.partition, o.offset, o.metadata);
            match at.get(&(entry.0.clone(), entry.1)) {
                Some(&i) => offsets[i] = entry,
                None => {
                    at.insert((entry.0.clone(), entry.1), offsets.len());
                    offsets.push(entry);
                }
            }
        }
        self.shared
            .meta
            .commit_offsets(&r.group_id, &r.member_id, r.generation, &offsets)
            .await??;
        Ok(pb::CommitOffsetsResponse { error: ok() })
    }

    pub(super) async fn fetch_offsets_inner(
        &self,
        r: pb::FetchOffsetsRequest,
    ) -> Result<pb::FetchOffsetsResponse> {
        check_id("group id", &r.group_id, false)?;
        check_len("topics", r.topics.len(), MAX_GROUP_TOPICS)?;
        let topics: Vec<String> = r
            .topics
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let offsets = self
            .shared
            .meta
            .fetch_offsets(&r.group_id, &topics)
            .await?
            .into_iter()
            .map(|c| pb::CommittedOffset {
                topic: c.topic,
                partition: c.partition,
                offset: c.offset,
                metadata: c.metadata,
                committed_at_ms: c.committed_at_ms,
            })
            .collect();
        Ok(pb::FetchOffsetsResponse {
            error: ok(),
            offsets,
        })
    }

    pub(super) async fn list_groups_inner(&self) -> Result<pb::ListGroupsResponse> {
        let groups = self
            .shared
            .meta
            .list_groups()
            .await?
            .into_iter()
            .map(|g| pb::GroupSummary {
                group_id: g.group_id,
                state: g.state,
                members: g.members,
                generation: g.generation,
                assignor: g.assignor,
                total_lag: g.total_lag,
                kafka: g.kafka,
            })
            .collect();
        Ok(pb::ListGroupsResponse {
            error: ok(),
            groups,
        })
    }

    pub(super) async fn describe_group_inner(
        &self,
        r: pb::DescribeGroupRequest,
    ) -> Result<pb::DescribeGroupResponse> {
        check_id("group id", &r.group_id, false)?;
        let meta = &self.shared.meta;
        let state = meta
            .describe_group(&r.group_id)
            .await?
            .ok_or_else(|| AgentError::UnknownGroup(r.group_id.clone()))?;
        let committed: BTreeMap<Tp, i64> = meta
            .fetch_offsets(&r.group_id, &[])
            .await?
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        // Every partition of a subscribed topic, and any other with a committed offset.
        let mut topics: BTreeSet<String> = state
            .members
            .iter()
            .flat_map(|m| m.topics.iter().cloned())
            .collect();
        topics.extend(committed.keys().map(|tp| tp.0.clone()));
        let owner: BTreeMap<&Tp, &str> = state
            .members
            .iter()
            .flat_map(|m| m.owned.iter().map(move |tp| (tp, m.id.as_str())))
            .collect();
        let mut partitions = Vec::new();
        for t in &topics {
            for p in meta.list_partitions(Some(t)).await? {
                let tp = (p.topic.clone(), p.partition);
                let c = committed.get(&tp).copied();
                let from = c.unwrap_or(p.log_start_offset);
                partitions.push(pb::GroupPartition {
                    owner: owner.get(&tp).map(|s| s.to_string()).unwrap_or_default(),
                    committed_offset: c.unwrap_or(-1),
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    lag: (p.high_watermark - from).max(0),
                    topic: p.topic,
                    partition: p.partition,
                });
            }
        }
        Ok(pb::DescribeGroupResponse {
            error: ok(),
            group_id: r.group_id,
            state: state.state().to_string(),
            generation: state.generation,
            assignor: state.assignor_name(),
            kafka: state.kafka.is_some(),
            members: state
                .members
                .iter()
                .map(|m| pb::GroupMember {
                    member_id: m.id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    topics: m.topics.iter().cloned().collect(),
                    target: to_pb_tps(&m.target),
                    owned: to_pb_tps(&m.owned),
                    generation: m.generation,
                    last_heartbeat_ms: m.last_heartbeat_ms,
                    joined_at_ms: m.joined_at_ms,
                })
                .collect(),
            partitions,
        })
    }

    pub(super) async fn reset_offsets_inner(
        &self,
        r: pb::ResetOffsetsRequest,
    ) -> Result<pb::ResetOffsetsResponse> {
        check_id("group id", &r.group_id, false)?;
        validate_topic_name(&r.topic).map_err(AgentError::InvalidTopic)?;
        let to = match r.to.as_str() {
            "earliest" => ResetTo::Earliest,
            "latest" => ResetTo::Latest,
            "timestamp" => ResetTo::Timestamp(r.value),
            "offset" => ResetTo::Offset(r.value),
            other => {
                return Err(AgentError::InvalidRequest(format!(
                    "reset to {other:?}: earliest, latest, timestamp or offset"
                )));
            }
        };
        if self.shared.meta.get_topic(&r.topic).await?.is_none() {
            return Err(AgentError::UnknownTopic(r.topic));
        }
        let moved = self
            .shared
            .meta
            .reset_offsets(&r.group_id, &r.topic, to)
            .await??;
        tracing::info!(group = %r.group_id, topic = %r.topic, to = %r.to, "offsets reset");
        Ok(pb::ResetOffsetsResponse {
            error: ok(),
            offsets: moved
                .into_iter()
                .map(|(partition, offset)| pb::CommittedOffset {
                    topic: r.topic.clone(),
                    partition,
                    offset,
                    metadata: "reset".into(),
                    committed_at_ms: 0,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_fit_whatever_the_client_id() {
        for client in [
            "",
            "c",
            &"x".repeat(250),
            &"é".repeat(200),
            &"y".repeat(MAX_ID),
        ] {
            let id = new_member_id(client);
            assert!(
                check_id("member id", &id, false).is_ok(),
                "{client:?} gave {id:?}"
            );
        }
    }
}
