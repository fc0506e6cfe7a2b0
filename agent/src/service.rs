//! The gRPC service: decodes requests, checks them, and hands them to the writer, the reader
//! or the metadata store. Every outcome, good or bad, is a typed response; the transport's
//! own status codes are left to the transport.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use streamhouse_proto::{batch, limits, pb, validate_topic_name};
use tonic::{Request, Response, Status};

use crate::config::AgentConfig;
use crate::error::{ok, AgentError, Result};
use crate::metadata::{PartitionRow, TopicRow};
use crate::partitions::{PartitionState, TopicState};
use crate::producer_ids::Issued;
use crate::writer::Appended;
use crate::Shared;

mod groups;

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

    async fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<(Arc<TopicState>, Arc<PartitionState>)> {
        validate_topic_name(topic).map_err(AgentError::InvalidTopic)?;
        let t = self.shared.topic(topic).await?;
        let p = partition_of(&t, partition)?;
        Ok((t, p))
    }

    async fn produce_inner(&self, r: pb::ProduceRequest) -> Result<pb::ProduceResponse> {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return Err(AgentError::ShuttingDown);
        }
        check_produce_shape(&r)?;
        // One clock reading judges every batch of the request.
        let now = crate::writer::now_ms();
        // A topic named by several partitions is looked up once, a producer checked once.
        let mut topics: HashMap<String, Option<Arc<TopicState>>> = HashMap::new();
        let mut producers: Vec<(i64, i16, Issued)> = Vec::new();
        // Append every partition's batches before waiting for any, so they share a flush.
        let mut appended = Vec::with_capacity(r.partitions.len());
        for p in r.partitions {
            let (topic, partition) = (p.topic.clone(), p.partition);
            let state = self
                .memo_partition(&mut topics, &p.topic, p.partition)
                .await;
            let acks = match state {
                Ok(state) => self.append_partition(p, state, now, &mut producers).await,
                Err(e) => Err(e),
            };
            appended.push((topic, partition, acks));
        }
        let mut results = Vec::with_capacity(appended.len());
        for (topic, partition, acks) in appended {
            let outcome = match acks {
                Ok((acks, records, bytes)) => {
                    let all = all_of(acks).await;
                    if all.is_ok() {
                        let stats = &self.shared.stats;
                        stats.produced_records.fetch_add(records, Ordering::Relaxed);
                        stats.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                    all
                }
                Err(e) => Err(e),
            };
            results.push(match outcome {
                Ok(all) => pb::PartitionProduceResult {
                    topic,
                    partition,
                    error: ok(),
                    base_offset: all.first().map_or(0, |a| a.base_offset),
                    append_time_ms: all.iter().map(|a| a.append_time_ms).max().unwrap_or(0),
                    log_start_offset: all.iter().map(|a| a.log_start_offset).max().unwrap_or(0),
                    base_offsets: all.iter().map(|a| a.base_offset).collect(),
                },
                Err(e) => pb::PartitionProduceResult {
                    topic,
                    partition,
                    error: Some(e.to_pb()),
                    ..Default::default()
                },
            });
        }
        Ok(pb::ProduceResponse {
            error: ok(),
            results,
        })
    }

    /// Whether a producer id and epoch were issued. Each (id, epoch) of a request is judged
    /// once, and a request may carry at most [`limits::MAX_PRODUCERS_PER_REQUEST`] of them,
    /// so forged stamps cost the store a bounded number of queries.
    async fn check_producer(
        &self,
        judged: &mut Vec<(i64, i16, Issued)>,
        id: i64,
        epoch: i16,
    ) -> Result<()> {
        if let Some(&(_, _, verdict)) = judged.iter().find(|(i, e, _)| (*i, *e) == (id, epoch)) {
            return verdict.into_result(id, epoch);
        }
        if judged.len() >= limits::MAX_PRODUCERS_PER_REQUEST {
            return Err(AgentError::InvalidRequest(format!(
                "batches stamped with more than {} producer ids and epochs in one request",
                limits::MAX_PRODUCERS_PER_REQUEST
            )));
        }
        let verdict = self
            .shared
            .issued_producers
            .check(&self.shared.meta, id, epoch)
            .await?;
        judged.push((id, epoch, verdict));
        verdict.into_result(id, epoch)
    }

    /// [`Service::partition`], looking each topic up at most once per request.
    async fn memo_partition(
        &self,
        topics: &mut HashMap<String, Option<Arc<TopicState>>>,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<PartitionState>> {
        let known = match topics.get(topic) {
            Some(t) => t.clone(),
            None => {
                validate_topic_name(topic).map_err(AgentError::InvalidTopic)?;
                let found = match self.shared.topic(topic).await {
                    Ok(t) => Some(t),
                    Err(AgentError::UnknownTopic(_)) => None,
                    Err(e) => return Err(e),
                };
                topics.insert(topic.to_string(), found.clone());
                found
            }
        };
        let t = known.ok_or_else(|| AgentError::UnknownTopic(topic.to_string()))?;
        partition_of(&t, partition)
    }

    /// Checks one partition's batches completely and hands them to the writer: all of them,
    /// or, if any fails, none. Also returns their record and byte counts.
    async fn append_partition(
        &self,
        p: pb::PartitionBatches,
        state: Arc<PartitionState>,
        now: i64,
        producers: &mut Vec<(i64, i16, Issued)>,
    ) -> Result<(Vec<Ack>, u64, u64)> {
        if p.batches.is_empty() {
            return Err(AgentError::InvalidRequest(format!(
                "no batch for {}-{}",
                p.topic, p.partition
            )));
        }
        if p.batches.len() > limits::MAX_BATCHES_PER_PARTITION {
            return Err(AgentError::InvalidRequest(format!(
                "{} batches for {}-{}; at most {} per partition in one request",
                p.batches.len(),
                p.topic,
                p.partition,
                limits::MAX_BATCHES_PER_PARTITION
            )));
        }
        let config = &self.shared.config;
        let max = config.max_record_bytes;
        let mut checked = Vec::with_capacity(p.batches.len());
        let (mut records, mut bytes) = (0u64, 0u64);
        for b in p.batches {
            if b.len() > max {
                return Err(AgentError::RecordTooLarge { size: b.len(), max });
            }
            let verified = batch::verify(&b, config.max_decompressed_bytes())?;
            check_timestamps(config, &verified, now)?;
            let header = verified.header;
            if header.producer_id >= 0 {
                self.check_producer(producers, header.producer_id, header.producer_epoch)
                    .await?;
            }
            records += header.record_count.max(0) as u64;
            bytes += b.len() as u64;
            checked.push((b, header));
        }
        let Some(epoch) = state.append_epoch() else {
            return Err(AgentError::NotLeader {
                leader_hint: self.leader_hint(&p.topic, p.partition).await,
                topic: p.topic,
                partition: p.partition,
            });
        };
        let acks = self.shared.writer.append(&state, epoch, checked)?;
        Ok((acks, records, bytes))
    }

    async fn leader_hint(&self, topic: &str, partition: u32) -> Option<String> {
        match self.shared.meta.get_partition(topic, partition).await {
            Ok(Some(row)) => row.leader_address,
            _ => None,
        }
    }

    async fn fetch_inner(&self, r: pb::FetchRequest) -> Result<pb::FetchResponse> {
        let (_, state) = self.partition(&r.topic, r.partition).await?;
        let max_bytes = match r.max_bytes as usize {
            0 => DEFAULT_FETCH_BYTES,
            n => n.min(MAX_FETCH_BYTES),
        };
        let max_wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_FETCH_WAIT);
        let fetched = self
            .shared
            .reader
            .fetch(&state, r.offset, max_bytes, max_wait)
            .await?;
        let stats = &self.shared.stats;
        for (_, b) in &fetched.batches {
            if let Ok(h) = batch::BatchHeader::peek(b) {
                stats
                    .fetched_records
                    .fetch_add(h.record_count.max(0) as u64, Ordering::Relaxed);
            }
            stats
                .fetched_bytes
                .fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        let (base_offsets, batches) = fetched.batches.into_iter().unzip();
        Ok(pb::FetchResponse {
            error: ok(),
            batches,
            base_offsets,
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start_offset,
        })
    }

    async fn topic_infos(&self, topics: Vec<TopicRow>) -> Result<Vec<pb::TopicInfo>> {
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

    async fn metadata_inner(&self, r: pb::GetMetadataRequest) -> Result<pb::GetMetadataResponse> {
        let meta = &self.shared.meta;
        let live_within = self.shared.config.lease_ttl_ms as i64;
        let agents = meta
            .list_agents(Some(live_within))
            .await?
            .into_iter()
            .map(|a| pb::AgentInfo {
                id: a.id,
                address: a.address,
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
        })
    }

    async fn create_topic_inner(
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
            .await
            .map_err(|e| match e {
                crate::metadata::MetadataError::TopicExists(n) => AgentError::TopicExists(n),
                other => AgentError::Metadata(other),
            })?;
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

    async fn delete_topic_inner(
        &self,
        r: pb::DeleteTopicRequest,
    ) -> Result<pb::DeleteTopicResponse> {
        validate_topic_name(&r.name).map_err(AgentError::InvalidTopic)?;
        self.shared
            .meta
            .delete_topic(&r.name)
            .await
            .map_err(|e| match e {
                crate::metadata::MetadataError::UnknownTopic(n) => AgentError::UnknownTopic(n),
                other => AgentError::Metadata(other),
            })?;
        self.shared.topics.remove(&r.name);
        Ok(pb::DeleteTopicResponse { error: ok() })
    }

    async fn alter_topic_config_inner(
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
        let row = self
            .shared
            .meta
            .alter_topic_config(&r.name, change)
            .await
            .map_err(|e| match e {
                crate::metadata::MetadataError::UnknownTopic(n) => AgentError::UnknownTopic(n),
                other => AgentError::Metadata(other),
            })?;
        let info = self.topic_infos(vec![row]).await?.pop();
        Ok(pb::AlterTopicConfigResponse {
            error: ok(),
            topic: info,
        })
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

/// A produce request's shape: some partitions, not too many, each named once.
fn check_produce_shape(r: &pb::ProduceRequest) -> Result<()> {
    if r.partitions.is_empty() {
        return Err(AgentError::InvalidRequest(
            "produce request names no partition".into(),
        ));
    }
    if r.partitions.len() > limits::MAX_PRODUCE_PARTITIONS {
        return Err(AgentError::InvalidRequest(format!(
            "produce request names {} partitions; at most {}",
            r.partitions.len(),
            limits::MAX_PRODUCE_PARTITIONS
        )));
    }
    let mut seen = HashSet::with_capacity(r.partitions.len());
    for p in &r.partitions {
        if !seen.insert((p.topic.as_str(), p.partition)) {
            return Err(AgentError::InvalidRequest(format!(
                "produce request names {}-{} twice; put all its batches in one entry",
                p.topic, p.partition
            )));
        }
    }
    Ok(())
}

/// Kafka's timestamp bounds: a batch's records must lie within the configured distance of
/// the agent's clock, so retention neither deletes them at once nor is held back by them.
fn check_timestamps(config: &AgentConfig, v: &batch::Verified, now: i64) -> Result<()> {
    let before = config.timestamp_before_max_ms;
    if before >= 0 && v.min_timestamp < now.saturating_sub(before) {
        return Err(AgentError::InvalidTimestamp {
            timestamp: v.min_timestamp,
            distance_ms: now.saturating_sub(v.min_timestamp),
            side: "before",
            limit_ms: before,
            setting: "timestamp_before_max_ms",
        });
    }
    let after = config.timestamp_after_max_ms;
    let max = v.header.max_timestamp;
    if after >= 0 && max > now.saturating_add(after) {
        return Err(AgentError::InvalidTimestamp {
            timestamp: max,
            distance_ms: max.saturating_sub(now),
            side: "after",
            limit_ms: after,
            setting: "timestamp_after_max_ms",
        });
    }
    Ok(())
}

/// A retention setting as given: positive, or -1 for none.
fn retention_value(name: &str, v: i64) -> Result<i64> {
    if v > 0 || v == -1 {
        Ok(v)
    } else {
        Err(AgentError::InvalidRequest(format!(
            "{name} {v}: give a positive value, -1 for none or 0 for the default"
        )))
    }
}

impl Service {
    async fn init_producer_id_inner(
        &self,
        r: pb::InitProducerIdRequest,
    ) -> Result<pb::InitProducerIdResponse> {
        let current = match r.producer_id {
            -1 => None,
            id if id >= 0 => {
                let epoch = i16::try_from(r.producer_epoch).map_err(|_| {
                    AgentError::InvalidRequest(format!(
                        "producer epoch {} is out of range",
                        r.producer_epoch
                    ))
                })?;
                Some((id, epoch))
            }
            id => {
                return Err(AgentError::InvalidRequest(format!(
                    "producer id {id}: -1 asks for a new one, otherwise it must be >= 0"
                )))
            }
        };
        let (producer_id, epoch) = self.shared.meta.init_producer_id(current).await?;
        Ok(pb::InitProducerIdResponse {
            error: ok(),
            producer_id,
            producer_epoch: i32::from(epoch),
        })
    }

    async fn describe_cluster_inner(&self) -> Result<pb::DescribeClusterResponse> {
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
                live: a.heartbeat_ms > now_ms - ttl,
                partitions_led: led.get(a.id.as_str()).copied().unwrap_or(0),
                id: a.id,
                address: a.address,
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

    fn agent_stats(&self) -> pb::GetAgentStatsResponse {
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

    async fn list_events_inner(&self, r: pb::ListEventsRequest) -> Result<pb::ListEventsResponse> {
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

type Ack = tokio::sync::oneshot::Receiver<Result<Appended>>;

/// Waits for every batch appended together and answers for them all: the first error, or
/// where each was stored.
async fn all_of(acks: Vec<Ack>) -> Result<Vec<Appended>> {
    let mut all = Vec::with_capacity(acks.len());
    let mut error = None;
    for ack in acks {
        match ack.await.map_err(|_| AgentError::ShuttingDown) {
            Ok(Ok(a)) => all.push(a),
            Ok(Err(e)) | Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

fn topic_info(t: TopicRow, partitions: Vec<PartitionRow>) -> pb::TopicInfo {
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

/// Builds a response whose `error` field carries `e`.
macro_rules! answer {
    ($result:expr, $ty:ty) => {
        Ok(Response::new(match $result {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                <$ty>::with_error(e.to_pb())
            }
        }))
    };
}

trait WithError {
    fn with_error(e: pb::Error) -> Self;
}

macro_rules! with_error {
    ($($ty:ty),*) => {$(
        impl WithError for $ty {
            fn with_error(e: pb::Error) -> Self {
                let mut r = Self::default();
                r.error = Some(e);
                r
            }
        }
    )*};
}

with_error!(
    pb::ProduceResponse,
    pb::FetchResponse,
    pb::GetMetadataResponse,
    pb::CreateTopicResponse,
    pb::DeleteTopicResponse,
    pb::AlterTopicConfigResponse,
    pb::ListTopicsResponse,
    pb::InitProducerIdResponse,
    pb::DescribeClusterResponse,
    pb::ListEventsResponse,
    pb::GroupHeartbeatResponse,
    pb::LeaveGroupResponse,
    pb::CommitOffsetsResponse,
    pb::FetchOffsetsResponse,
    pb::ListGroupsResponse,
    pb::DescribeGroupResponse,
    pb::ResetOffsetsResponse
);

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
            m.produce_errors.fetch_add(1, Ordering::Relaxed);
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
            m.fetch_errors.fetch_add(1, Ordering::Relaxed);
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
