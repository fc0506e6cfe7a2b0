//! The gRPC service: decodes requests, checks them, and hands them to the writer, the reader
//! or the metadata store. Every outcome, good or bad, is a typed response; the transport's
//! own status codes are left to the transport.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use streamhouse_proto::wire::Answer;
use streamhouse_proto::{batch, limits, pb, validate_topic_name};
use tonic::{Request, Response, Status};

use crate::Shared;
use crate::config::AgentConfig;
use crate::error::{AgentError, Result, ok};
use crate::metadata::{PartitionRow, TopicRow};
use crate::partitions::{PartitionState, TopicState};
use crate::producer_ids::Issued;
use crate::writer::Appended;

mod cluster;
mod fetch;
mod groups;
pub(crate) use groups::new_member_id;
mod produce;
mod topics;

/// Longest a fetch may wait at the high watermark.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Default and ceiling for a fetch's size.
const DEFAULT_FETCH_BYTES: usize = 1024 * 1024;
const MAX_FETCH_BYTES: usize = 64 * 1024 * 1024;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    pub fn new(shared: Arc<Shared>) -> Self {
        Service { shared }
    }

    pub(crate) async fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Arc<TopicState>, Arc<PartitionState>)> {
        validate_topic_name(topic).map_err(AgentError::InvalidTopic)?;
        let t = self.shared.topic(topic).await?;
        let p = partition_of(&t, partition)?;
        Ok((t, p))
    }

    async fn leader_hint(&self, topic: &str, partition: u32) -> Option<String> {
        match self.shared.meta.get_partition(topic, partition).await {
            Ok(Some(row)) => row.leader_address,
            _ => None,
        }
    }
}

/// Partition `partition` of a topic, or UNKNOWN_PARTITION.
fn partition_of(t: &TopicState, partition: u32) -> Result<Arc<PartitionState>> {
    t.partitions
        .get(partition as usize)
        .cloned()
        .ok_or_else(|| AgentError::UnknownPartition {
            topic: t.name.to_string(),
            partition,
            count: t.partitions.len() as u32,
        })
}

/// Builds a response whose `error` field carries `e`.
macro_rules! answer {
    ($result:expr, $ty:ty) => {
        Ok(Response::new(match $result {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                <$ty as Answer>::refused(e.to_pb())
            }
        }))
    };
}

#[tonic::async_trait]
impl pb::stream_house_server::StreamHouse for Service {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let started = std::time::Instant::now();
        let out = self.produce_inner(request.into_inner()).await;
        let m = &self.shared.metrics;
        m.produce_seconds.observe(started.elapsed());
        if out.is_err() {
            m.produce_errors.inc();
        }
        answer!(out, pb::ProduceResponse)
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let started = std::time::Instant::now();
        let out = self.fetch_inner(request.into_inner()).await;
        let m = &self.shared.metrics;
        m.fetch_seconds.observe(started.elapsed());
        if out.is_err() {
            m.fetch_errors.inc();
        }
        answer!(out, pb::FetchResponse)
    }

    async fn get_metadata(
        &self,
        request: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        answer!(
            self.metadata_inner(request.into_inner()).await,
            pb::GetMetadataResponse
        )
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        answer!(
            self.create_topic_inner(request.into_inner()).await,
            pb::CreateTopicResponse
        )
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        answer!(
            self.delete_topic_inner(request.into_inner()).await,
            pb::DeleteTopicResponse
        )
    }

    async fn alter_topic_config(
        &self,
        request: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        answer!(
            self.alter_topic_config_inner(request.into_inner()).await,
            pb::AlterTopicConfigResponse
        )
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let result: Result<pb::ListTopicsResponse> = async {
            let topics = self.shared.meta.list_topics().await?;
            Ok(pb::ListTopicsResponse {
                error: ok(),
                topics: self.topic_infos(topics).await?,
            })
        }
        .await;
        answer!(result, pb::ListTopicsResponse)
    }

    async fn init_producer_id(
        &self,
        request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        answer!(
            self.init_producer_id_inner(request.into_inner()).await,
            pb::InitProducerIdResponse
        )
    }

    async fn describe_cluster(
        &self,
        _request: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        answer!(
            self.describe_cluster_inner().await,
            pb::DescribeClusterResponse
        )
    }

    async fn get_agent_stats(
        &self,
        _request: Request<pb::GetAgentStatsRequest>,
    ) -> Result<Response<pb::GetAgentStatsResponse>, Status> {
        Ok(Response::new(self.agent_stats()))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        answer!(
            self.list_events_inner(request.into_inner()).await,
            pb::ListEventsResponse
        )
    }

    async fn join_group(
        &self,
        request: Request<pb::GroupHeartbeatRequest>,
    ) -> Result<Response<pb::GroupHeartbeatResponse>, Status> {
        let peer = request.remote_addr();
        answer!(
            self.group_heartbeat_inner(request.into_inner(), true, peer)
                .await,
            pb::GroupHeartbeatResponse
        )
    }

    async fn heartbeat(
        &self,
        request: Request<pb::GroupHeartbeatRequest>,
    ) -> Result<Response<pb::GroupHeartbeatResponse>, Status> {
        let peer = request.remote_addr();
        answer!(
            self.group_heartbeat_inner(request.into_inner(), false, peer)
                .await,
            pb::GroupHeartbeatResponse
        )
    }

    async fn leave_group(
        &self,
        request: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        answer!(
            self.leave_group_inner(request.into_inner()).await,
            pb::LeaveGroupResponse
        )
    }

    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        answer!(
            self.commit_offsets_inner(request.into_inner()).await,
            pb::CommitOffsetsResponse
        )
    }

    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        answer!(
            self.fetch_offsets_inner(request.into_inner()).await,
            pb::FetchOffsetsResponse
        )
    }

    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        answer!(self.list_groups_inner().await, pb::ListGroupsResponse)
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        answer!(
            self.describe_group_inner(request.into_inner()).await,
            pb::DescribeGroupResponse
        )
    }

    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        answer!(
            self.reset_offsets_inner(request.into_inner()).await,
            pb::ResetOffsetsResponse
        )
    }
}

#[cfg(test)]
mod tests {
    use super::produce::*;
    use super::*;
    use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};

    fn verified(timestamps: &[i64]) -> batch::Verified {
        let mut b = BatchBuilder::new(Compression::None);
        for &ts in timestamps {
            b.append(ts, None, Some(b"v"), &[]);
        }
        let bytes = b.finish(ProducerStamp::NONE).unwrap();
        batch::verify(&bytes, 1 << 20).unwrap()
    }

    #[test]
    fn timestamps_are_judged_at_both_ends() {
        let mut config = <AgentConfig as clap::Parser>::parse_from(["streamhouse-agent"]);
        let now = 1_800_000_000_000;
        let (week, hour) = (7 * 24 * 3_600_000, 3_600_000);
        assert!(check_timestamps(&config, &verified(&[now]), now).is_ok());
        assert!(check_timestamps(&config, &verified(&[now - week]), now).is_ok());
        assert!(check_timestamps(&config, &verified(&[now + hour]), now).is_ok());
        for bad in [
            &[0][..],
            &[now - week - 1],
            &[now + hour + 1],
            &[now, 0],
            &[i64::MIN],
        ] {
            let e = check_timestamps(&config, &verified(bad), now).unwrap_err();
            assert!(
                matches!(e, AgentError::InvalidTimestamp { .. }),
                "{bad:?}: {e}"
            );
        }
        let e = check_timestamps(&config, &verified(&[0]), now).unwrap_err();
        assert!(e.to_string().contains("timestamp_before_max_ms"), "{e}");
        // -1 turns a bound off.
        config.timestamp_before_max_ms = -1;
        config.timestamp_after_max_ms = -1;
        assert!(check_timestamps(&config, &verified(&[0, i64::MAX / 2]), now).is_ok());
    }
}
