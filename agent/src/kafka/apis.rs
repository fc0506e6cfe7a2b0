//! The Kafka APIs an agent serves, on the same metadata store as the gRPC service.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, MetadataRequest, MetadataResponse, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use streamhouse_proto::{limits, pb, validate_topic_name};

use crate::Shared;
use crate::error::AgentError;
use crate::metadata::{AgentRow, PartitionRow, TopicRow};
use crate::service::{MAX_PARTITIONS, Service};

/// The APIs served and their versions: what `ApiVersions` advertises and nothing more.
pub(super) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    // Versions 0-2 are listed, and refused per partition: clients pick the newest version
    // both sides have, but librdkafka 2.0 (Debian 12's) compresses with LZ4 only for brokers that
    // list Produce version 0.
    (ApiKey::Produce, 0, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 4),
    // Group APIs stop below the versions that carry `group.instance.id`: static membership
    // is not served, and a client configured for it is told so by these versions.
    (ApiKey::JoinGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 2),
    (ApiKey::Heartbeat, 0, 2),
    (ApiKey::LeaveGroup, 0, 2),
    (ApiKey::OffsetCommit, 2, 6),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    // After a version 0 SaslHandshake the client sends its SASL message bare; since Kafka
    // 1.0 clients use version 1 and SaslAuthenticate. librdkafka looks for both.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Most topics one CreateTopics or DeleteTopics may name; a longer request is refused whole
/// (each topic `INVALID_REQUEST`), so one request does bounded work.
const MAX_TOPICS_PER_REQUEST: usize = 1_000;

/// What the cluster calls itself in `Metadata` answers.
const CLUSTER_ID: &str = "streamhouse";

/// Topic settings Kafka clients send that mean nothing here (replication and local log
/// files); they are accepted and have no effect. Anything else but retention is refused.
const IGNORED_CONFIGS: &[&str] = &[
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "segment.jitter.ms",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "preallocate",
    "file.delete.delay.ms",
    "local.retention.ms",
    "local.retention.bytes",
    "remote.storage.enable",
];

pub(super) fn supports(api: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(k, lo, hi)| *k == api && (*lo..=*hi).contains(&version))
}

fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect()
}

/// Answers to requests of an API or version not in [`SUPPORTED`], for the APIs whose response
/// carries an error code of its own: `UNSUPPORTED_VERSION`, so a client that did not look at
/// `ApiVersions` still gets a refusal rather than a closed connection. `None` for the others
/// (their responses only carry errors per topic or partition, and an empty one would read as
/// success): their connection ends.
macro_rules! refusals {
    ($($api:ident => $response:ident,)*) => {
        pub(super) fn refusal(api: ApiKey) -> Option<ResponseKind> {
            let code = ResponseError::UnsupportedVersion.code();
            match api {
                $(ApiKey::$api => Some(ResponseKind::$api(
                    kafka_protocol::messages::$response::default().with_error_code(code),
                )),)*
                _ => None,
            }
        }
    };
}

refusals! {
    AddOffsetsToTxn => AddOffsetsToTxnResponse,
    AddPartitionsToTxn => AddPartitionsToTxnResponse,
    AddRaftVoter => AddRaftVoterResponse,
    AllocateProducerIds => AllocateProducerIdsResponse,
    AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
    AlterPartition => AlterPartitionResponse,
    AlterShareGroupOffsets => AlterShareGroupOffsetsResponse,
    AssignReplicasToDirs => AssignReplicasToDirsResponse,
    BeginQuorumEpoch => BeginQuorumEpochResponse,
    BrokerHeartbeat => BrokerHeartbeatResponse,
    BrokerRegistration => BrokerRegistrationResponse,
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
    ControllerRegistration => ControllerRegistrationResponse,
    CreateDelegationToken => CreateDelegationTokenResponse,
    DeleteShareGroupOffsets => DeleteShareGroupOffsetsResponse,
    DescribeAcls => DescribeAclsResponse,
    DescribeClientQuotas => DescribeClientQuotasResponse,
    DescribeCluster => DescribeClusterResponse,
    DescribeDelegationToken => DescribeDelegationTokenResponse,
    DescribeLogDirs => DescribeLogDirsResponse,
    DescribeQuorum => DescribeQuorumResponse,
    DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
    ElectLeaders => ElectLeadersResponse,
    EndQuorumEpoch => EndQuorumEpochResponse,
    EndTxn => EndTxnResponse,
    Envelope => EnvelopeResponse,
    ExpireDelegationToken => ExpireDelegationTokenResponse,
    Fetch => FetchResponse,
    FetchSnapshot => FetchSnapshotResponse,
    FindCoordinator => FindCoordinatorResponse,
    GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
    Heartbeat => HeartbeatResponse,
    InitProducerId => InitProducerIdResponse,
    JoinGroup => JoinGroupResponse,
    LeaveGroup => LeaveGroupResponse,
    ListConfigResources => ListConfigResourcesResponse,
    ListGroups => ListGroupsResponse,
    ListPartitionReassignments => ListPartitionReassignmentsResponse,
    ListTransactions => ListTransactionsResponse,
    Metadata => MetadataResponse,
    OffsetDelete => OffsetDeleteResponse,
    OffsetFetch => OffsetFetchResponse,
    PushTelemetry => PushTelemetryResponse,
    RemoveRaftVoter => RemoveRaftVoterResponse,
    RenewDelegationToken => RenewDelegationTokenResponse,
    SaslAuthenticate => SaslAuthenticateResponse,
    SaslHandshake => SaslHandshakeResponse,
    ShareAcknowledge => ShareAcknowledgeResponse,
    ShareFetch => ShareFetchResponse,
    ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
    SyncGroup => SyncGroupResponse,
    UnregisterBroker => UnregisterBrokerResponse,
    UpdateFeatures => UpdateFeaturesResponse,
    UpdateRaftVoter => UpdateRaftVoterResponse,
    Vote => VoteResponse,
}

/// The answer to an `ApiVersions` request newer than ours.
pub(super) fn api_versions_unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_versions())
}

/// An answer that comes later (`None`: nothing is written, as for `acks=0`).
pub(super) type Later =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<ResponseKind>> + Send>>;

/// What serving a request came to.
pub(super) enum Served {
    /// The answer, now.
    Now(Box<ResponseKind>),
    /// A produce (its batches are appended, its answer comes with their commit), or a group
    /// request held at the group's barrier.
    Later(Later),
    /// An API not in [`SUPPORTED`].
    Unsupported,
}

/// Serves one decoded request: whatever must follow the connection's request order is done
/// before this returns.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    client: &super::groups::Client,
    request: RequestKind,
    version: i16,
) -> Served {
    use super::groups;
    let later = |r: Result<ResponseKind, Later>| match r {
        Ok(now) => Served::Now(Box::new(now)),
        Err(later) => Served::Later(later),
    };
    let answer: ResponseKind = match request {
        RequestKind::ApiVersions(_) => ApiVersionsResponse::default()
            .with_api_keys(api_versions())
            .into(),
        RequestKind::Metadata(r) => metadata(shared, r, version).await.into(),
        RequestKind::CreateTopics(r) => create_topics(shared, r).await.into(),
        RequestKind::DeleteTopics(r) => delete_topics(shared, r).await.into(),
        RequestKind::Produce(r) => {
            let later = super::data::produce(shared, r).await;
            return Served::Later(Box::pin(async move { later.await.map(Into::into) }));
        }
        RequestKind::Fetch(r) => super::data::fetch(shared, r).await.into(),
        RequestKind::ListOffsets(r) => super::data::list_offsets(shared, r, version).await.into(),
        RequestKind::InitProducerId(r) => super::data::init_producer_id(shared, r).await.into(),
        RequestKind::FindCoordinator(r) => {
            groups::find_coordinator(shared, r, version).await.into()
        }
        RequestKind::JoinGroup(r) => {
            return later(
                groups::join_group(shared, client, r, version)
                    .await
                    .map(Into::into),
            );
        }
        RequestKind::SyncGroup(r) => {
            return later(groups::sync_group(shared, r).await.map(Into::into));
        }
        RequestKind::Heartbeat(r) => groups::heartbeat(shared, r).await.into(),
        RequestKind::LeaveGroup(r) => groups::leave_group(shared, r).await.into(),
        RequestKind::OffsetCommit(r) => groups::offset_commit(shared, r).await.into(),
        RequestKind::OffsetFetch(r) => groups::offset_fetch(shared, r, version).await.into(),
        RequestKind::DescribeGroups(r) => groups::describe_groups(shared, r).await.into(),
        RequestKind::ListGroups(r) => groups::list_groups(shared, r).await.into(),
        RequestKind::DeleteGroups(r) => groups::delete_groups(shared, r).await.into(),
        RequestKind::DescribeCluster(r) => describe_cluster(shared, r).await.into(),
        RequestKind::DescribeConfigs(r) => describe_configs(shared, r, version).await.into(),
        _ => return Served::Unsupported,
    };
    Served::Now(Box::new(answer))
}

/// The Kafka error code a client acts on for an agent's refusal.
pub(super) fn error_code(e: &AgentError) -> i16 {
    kafka_code(e.to_pb().code())
}

/// The Kafka error code for a StreamHouse one: the one whose retry logic fits.
pub(super) fn kafka_code(code: pb::ErrorCode) -> i16 {
    use pb::ErrorCode as C;
    let err = match code {
        C::Ok => return 0,
        C::UnknownTopic | C::UnknownPartition => ResponseError::UnknownTopicOrPartition,
        // Fenced, or stopping: the client refreshes its metadata and finds the new leader.
        C::NotLeader | C::Fenced | C::ShuttingDown => ResponseError::NotLeaderOrFollower,
        C::TopicExists => ResponseError::TopicAlreadyExists,
        C::InvalidTopic => ResponseError::InvalidTopicException,
        C::InvalidPartitions => ResponseError::InvalidPartitions,
        C::InvalidRequest => ResponseError::InvalidRequest,
        C::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        C::RecordTooLarge | C::RequestTooLarge => ResponseError::MessageTooLarge,
        C::CorruptBatch => ResponseError::InvalidRecord,
        C::StorageUnavailable => ResponseError::KafkaStorageError,
        // The store is down or slow, or the agent holds all it may: retriable, later.
        C::MetadataUnavailable | C::Throttled => ResponseError::RequestTimedOut,
        C::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        C::ProducerFenced => ResponseError::InvalidProducerEpoch,
        C::InvalidProducer => ResponseError::UnknownProducerId,
        C::InvalidTimestamp => ResponseError::InvalidTimestamp,
        C::StaleGeneration => ResponseError::IllegalGeneration,
        C::UnknownMember => ResponseError::UnknownMemberId,
        C::InconsistentAssignors => ResponseError::InconsistentGroupProtocol,
        C::NonEmptyGroup => ResponseError::NonEmptyGroup,
        C::UnknownGroup => ResponseError::GroupIdNotFound,
        C::Unknown => ResponseError::UnknownServerError,
    };
    err.code()
}

fn too_many(n: usize) -> String {
    format!("{n} topics in one request; at most {MAX_TOPICS_PER_REQUEST}")
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// `Metadata`: the live agents that serve Kafka as brokers, and each topic's partitions with
/// their lease holders as leaders (and only replica: the object store keeps the copies).
async fn metadata(shared: &Arc<Shared>, r: MetadataRequest, version: i16) -> MetadataResponse {
    let own = shared.kafka.as_ref().map_or(-1, |k| k.node_id);
    let mut out = MetadataResponse::default()
        .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
        .with_controller_id(BrokerId(own));
    let live_within = shared.config.lease_ttl_ms as i64;
    let agents = match shared.meta.list_agents(Some(live_within)).await {
        Ok(a) => a,
        Err(e) => {
            // Without the store there is nothing true to say but that this agent exists.
            tracing::warn!(error = %e, "Kafka Metadata: the metadata store failed");
            if let Some(k) = &shared.kafka {
                out.brokers.push(broker(own, &k.advertise));
            }
            let code = error_code(&AgentError::from(e));
            for t in r.topics.into_iter().flatten() {
                out.topics.push(topic_error(t.name, code));
            }
            if version >= 13 {
                out.error_code = code;
            }
            return out;
        }
    };
    let nodes = brokers(&agents, &mut out);
    // Version 0 asks for every topic with an empty list; later versions with none.
    let named: Option<Vec<Option<TopicName>>> = match r.topics {
        Some(t) if !(version == 0 && t.is_empty()) => Some(t.into_iter().map(|t| t.name).collect()),
        _ => None,
    };
    match named {
        None => match all_topics(shared).await {
            Ok(topics) => {
                out.topics = topics
                    .into_iter()
                    .map(|(t, parts)| topic_entry(&t.name, parts, &nodes))
                    .collect();
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kafka Metadata: the metadata store failed");
                if version >= 13 {
                    out.error_code = error_code(&e);
                }
            }
        },
        Some(names) if names.len() > limits::MAX_METADATA_TOPICS => {
            let code = ResponseError::InvalidRequest.code();
            out.topics = names.into_iter().map(|n| topic_error(n, code)).collect();
        }
        Some(names) => {
            let mut seen = std::collections::HashSet::with_capacity(names.len());
            for name in names {
                let Some(n) = name.as_ref().map(|n| n.0.as_str().to_string()) else {
                    // Asked by topic id: topics have none here.
                    out.topics
                        .push(topic_error(None, ResponseError::UnknownTopicId.code()));
                    continue;
                };
                if !seen.insert(n.clone()) {
                    continue;
                }
                match one_topic(shared, &n).await {
                    Ok((t, parts)) => out.topics.push(topic_entry(&t.name, parts, &nodes)),
                    Err(e) => out.topics.push(topic_error(name, error_code(&e))),
                }
            }
        }
    }
    out
}

/// DescribeCluster: the live agents that serve Kafka. Every agent answers for the cluster
/// and names itself controller; there are no controller endpoints of their own.
async fn describe_cluster(
    shared: &Arc<Shared>,
    r: kafka_protocol::messages::DescribeClusterRequest,
) -> kafka_protocol::messages::DescribeClusterResponse {
    use kafka_protocol::messages::DescribeClusterResponse;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    let own = shared.kafka.as_ref().map_or(-1, |k| k.node_id);
    let mut out = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(CLUSTER_ID))
        .with_controller_id(BrokerId(own))
        .with_endpoint_type(r.endpoint_type)
        .with_cluster_authorized_operations(i32::MIN);
    if r.endpoint_type != 1 {
        return out
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("only broker endpoints (type 1)")));
    }
    match shared
        .meta
        .list_agents(Some(shared.config.lease_ttl_ms as i64))
        .await
    {
        Ok(agents) => {
            let mut listed = MetadataResponse::default();
            brokers(&agents, &mut listed);
            out.brokers = listed
                .brokers
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(b.node_id)
                        .with_host(b.host)
                        .with_port(b.port)
                })
                .collect();
        }
        Err(e) => {
            let e = AgentError::from(e);
            out.error_code = error_code(&e);
            out.error_message = Some(str_bytes(&e.to_string()));
        }
    }
    out
}

/// Kafka's config types and sources, as DescribeConfigs numbers them.
const LONG: i8 = 5;
const INT: i8 = 3;
const LIST: i8 = 7;
const BOOLEAN: i8 = 1;
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// DescribeConfigs for topics and for this broker: the settings that mean something here,
/// read-only but for the two a topic was created with.
async fn describe_configs(
    shared: &Arc<Shared>,
    r: kafka_protocol::messages::DescribeConfigsRequest,
    version: i16,
) -> kafka_protocol::messages::DescribeConfigsResponse {
    use kafka_protocol::messages::DescribeConfigsResponse;
    use kafka_protocol::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    let cfg = &shared.config;
    let own = shared.kafka.as_ref().map_or(-1, |k| k.node_id);
    let mut out = DescribeConfigsResponse::default();
    let too_many = r.resources.len() > MAX_TOPICS_PER_REQUEST;
    for res in r.resources {
        let result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let refuse = |code: ResponseError, why: String| {
            result
                .clone()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&why)))
        };
        if too_many {
            out.results
                .push(refuse(ResponseError::InvalidRequest, too_many_resources()));
            continue;
        }
        let name = res.resource_name.as_str();
        // (name, value, type, source, read-only)
        let entries: Vec<(&str, String, i8, i8, bool)> = match res.resource_type {
            2 => match one_topic(shared, name).await {
                Err(e) => {
                    out.results.push(
                        result
                            .with_error_code(error_code(&e))
                            .with_error_message(Some(str_bytes(&e.to_string()))),
                    );
                    continue;
                }
                Ok((t, _)) => {
                    let forever = |v: i64| if v <= 0 { -1 } else { v };
                    vec![
                        (
                            "retention.ms",
                            forever(t.retention_ms).to_string(),
                            LONG,
                            TOPIC_CONFIG,
                            false,
                        ),
                        (
                            "retention.bytes",
                            forever(t.retention_bytes).to_string(),
                            LONG,
                            TOPIC_CONFIG,
                            false,
                        ),
                        (
                            "cleanup.policy",
                            "delete".into(),
                            LIST,
                            DEFAULT_CONFIG,
                            true,
                        ),
                        (
                            "max.message.bytes",
                            cfg.max_record_bytes.to_string(),
                            INT,
                            STATIC_BROKER_CONFIG,
                            true,
                        ),
                    ]
                }
            },
            4 if name.is_empty() || name == own.to_string() => vec![
                (
                    "message.max.bytes",
                    cfg.max_record_bytes.to_string(),
                    INT,
                    STATIC_BROKER_CONFIG,
                    true,
                ),
                (
                    "num.partitions",
                    DEFAULT_PARTITIONS.to_string(),
                    INT,
                    DEFAULT_CONFIG,
                    true,
                ),
                (
                    "log.retention.ms",
                    cfg.default_retention_ms.to_string(),
                    LONG,
                    STATIC_BROKER_CONFIG,
                    true,
                ),
                (
                    "auto.create.topics.enable",
                    "false".into(),
                    BOOLEAN,
                    DEFAULT_CONFIG,
                    true,
                ),
                (
                    "group.min.session.timeout.ms",
                    cfg.group_min_session_timeout_ms.to_string(),
                    INT,
                    STATIC_BROKER_CONFIG,
                    true,
                ),
                (
                    "group.max.session.timeout.ms",
                    cfg.group_max_session_timeout_ms.to_string(),
                    INT,
                    STATIC_BROKER_CONFIG,
                    true,
                ),
                (
                    "group.initial.rebalance.delay.ms",
                    cfg.group_initial_rebalance_delay_ms.to_string(),
                    INT,
                    STATIC_BROKER_CONFIG,
                    true,
                ),
            ],
            4 => {
                out.results.push(refuse(
                    ResponseError::InvalidRequest,
                    format!("this is broker {own}; ask broker {name} itself"),
                ));
                continue;
            }
            t => {
                out.results.push(refuse(
                    ResponseError::InvalidRequest,
                    format!("resource type {t}: topics (2) and brokers (4) are described"),
                ));
                continue;
            }
        };
        let keys = res.configuration_keys.as_ref();
        let configs = entries
            .into_iter()
            .filter(|(n, ..)| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == *n)))
            .map(|(n, value, kind, source, read_only)| {
                let mut c = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(n))
                    .with_value(Some(str_bytes(&value)))
                    .with_read_only(read_only)
                    .with_config_source(source);
                if version >= 3 {
                    c.config_type = kind;
                }
                c
            })
            .collect();
        out.results.push(result.with_configs(configs));
    }
    out
}

fn too_many_resources() -> String {
    format!("more than {MAX_TOPICS_PER_REQUEST} resources in one request")
}

/// Adds the agents that serve Kafka to `out` as brokers; returns agent id -> node id.
fn brokers(agents: &[AgentRow], out: &mut MetadataResponse) -> HashMap<String, i32> {
    let mut nodes = HashMap::with_capacity(agents.len());
    for a in agents {
        if let (Some(addr), Some(node)) = (&a.kafka_address, a.kafka_node_id) {
            out.brokers.push(broker(node, addr));
            nodes.insert(a.id.clone(), node);
        }
    }
    nodes
}

fn broker(node_id: i32, address: &str) -> MetadataResponseBroker {
    // Addresses are checked at start (`--kafka-advertise`); an unparsable one from a store
    // written by hand still yields an entry, with port 0, rather than hiding the broker.
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(node_id))
        .with_host(str_bytes(host))
        .with_port(port.parse().unwrap_or(0))
}

fn topic_error(name: Option<TopicName>, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_error_code(code)
}

fn topic_entry(
    name: &str,
    parts: Vec<PartitionRow>,
    nodes: &HashMap<String, i32>,
) -> MetadataResponseTopic {
    let partitions = parts
        .into_iter()
        .map(|p| {
            let entry = MetadataResponsePartition::default()
                .with_partition_index(p.partition as i32)
                .with_leader_epoch(p.lease_epoch.clamp(0, i64::from(i32::MAX)) as i32);
            match p.leader_id.as_ref().and_then(|id| nodes.get(id)) {
                Some(&node) => entry
                    .with_leader_id(BrokerId(node))
                    .with_replica_nodes(vec![BrokerId(node)])
                    .with_isr_nodes(vec![BrokerId(node)]),
                // No lease holder now, or one that does not serve Kafka: the client asks again.
                None => entry
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1)),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_partitions(partitions)
}

async fn all_topics(shared: &Shared) -> Result<Vec<(TopicRow, Vec<PartitionRow>)>, AgentError> {
    let topics = shared.meta.list_topics().await?;
    let mut parts: HashMap<String, Vec<PartitionRow>> = HashMap::new();
    for p in shared.meta.list_partitions(None).await? {
        parts.entry(p.topic.clone()).or_default().push(p);
    }
    Ok(topics
        .into_iter()
        .map(|t| {
            let p = parts.remove(&t.name).unwrap_or_default();
            (t, p)
        })
        .collect())
}

async fn one_topic(
    shared: &Shared,
    name: &str,
) -> Result<(TopicRow, Vec<PartitionRow>), AgentError> {
    validate_topic_name(name).map_err(AgentError::InvalidTopic)?;
    let t = shared
        .meta
        .get_topic(name)
        .await?
        .ok_or_else(|| AgentError::UnknownTopic(name.to_string()))?;
    let parts = shared.meta.list_partitions(Some(name)).await?;
    Ok((t, parts))
}

/// A topic to create, as Kafka describes it, in StreamHouse's terms.
fn creatable(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    default_partitions: u32,
) -> Result<pb::CreateTopicRequest, (i16, String)> {
    let name = t.name.0.as_str().to_string();
    let invalid = |code: ResponseError, msg: String| (code.code(), msg);
    validate_topic_name(&name).map_err(|e| invalid(ResponseError::InvalidTopicException, e))?;
    if !t.assignments.is_empty() {
        return Err(invalid(
            ResponseError::InvalidRequest,
            "replica assignments are not taken: partition leases place partitions".into(),
        ));
    }
    // The object store keeps the copies: any replication factor is met by one lease holder.
    if t.replication_factor == 0 || t.replication_factor < -1 {
        return Err(invalid(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {}: give -1 or at least 1",
                t.replication_factor
            ),
        ));
    }
    let partitions = match t.num_partitions {
        -1 => default_partitions,
        n if n >= 1 && n as u32 <= MAX_PARTITIONS => n as u32,
        n => {
            return Err(invalid(
                ResponseError::InvalidPartitions,
                format!("{n} partitions; a topic has 1 to {MAX_PARTITIONS} (-1 for the default)"),
            ));
        }
    };
    let mut out = pb::CreateTopicRequest {
        name,
        partitions,
        retention_ms: 0,
        retention_bytes: 0,
    };
    for c in &t.configs {
        let key = c.name.as_str();
        let value = c.value.as_ref().map(|v| v.as_str());
        let number = || {
            value
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|v| *v > 0 || *v == -1)
                .ok_or_else(|| {
                    invalid(
                        ResponseError::InvalidConfig,
                        format!(
                            "{key}={}: give a positive number or -1",
                            value.unwrap_or("null")
                        ),
                    )
                })
        };
        match key {
            "retention.ms" => out.retention_ms = number()?,
            "retention.bytes" => out.retention_bytes = number()?,
            "cleanup.policy" if value == Some("delete") => {}
            "cleanup.policy" => {
                return Err(invalid(
                    ResponseError::InvalidConfig,
                    format!(
                        "cleanup.policy={}: only delete; log compaction is not supported",
                        value.unwrap_or("null")
                    ),
                ));
            }
            k if IGNORED_CONFIGS.contains(&k) => {}
            k => {
                return Err(invalid(
                    ResponseError::InvalidConfig,
                    format!(
                        "topic setting {k} is not supported (retention.ms, retention.bytes and cleanup.policy=delete are)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Partitions a Kafka `CreateTopics` gets with `num_partitions` -1 (Kafka's `num.partitions`).
const DEFAULT_PARTITIONS: u32 = 1;

async fn create_topics(shared: &Arc<Shared>, r: CreateTopicsRequest) -> CreateTopicsResponse {
    let service = Service::new(shared.clone());
    let mut out = CreateTopicsResponse::default();
    if r.topics.len() > MAX_TOPICS_PER_REQUEST {
        let why = str_bytes(&too_many(r.topics.len()));
        out.topics = r
            .topics
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(why.clone()))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect();
        return out;
    }
    for t in &r.topics {
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_replication_factor(1);
        let request = match creatable(t, DEFAULT_PARTITIONS) {
            Ok(req) => req,
            Err((code, msg)) => {
                out.topics.push(
                    result
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(&msg)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
                continue;
            }
        };
        let partitions = request.partitions as i32;
        let created = if r.validate_only {
            // Validation covers the name's availability too.
            match shared.meta.get_topic(&request.name).await {
                Ok(Some(_)) => Err(AgentError::TopicExists(request.name.clone())),
                Ok(None) => Ok(()),
                Err(e) => Err(e.into()),
            }
        } else {
            service.create_topic_inner(request).await.map(|_| ())
        };
        out.topics.push(match created {
            Ok(()) => result.with_num_partitions(partitions),
            Err(e) => result
                .with_error_code(error_code(&e))
                .with_error_message(Some(str_bytes(&e.to_string())))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    out
}

async fn delete_topics(shared: &Arc<Shared>, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let service = Service::new(shared.clone());
    let mut out = DeleteTopicsResponse::default();
    // Versions up to 5 name topics in `topic_names`, version 6 in `topics` (by name or id).
    let names: Vec<Option<TopicName>> = r
        .topic_names
        .into_iter()
        .map(Some)
        .chain(r.topics.into_iter().map(|t| t.name))
        .collect();
    if names.len() > MAX_TOPICS_PER_REQUEST {
        let why = str_bytes(&too_many(names.len()));
        out.responses = names
            .into_iter()
            .map(|n| {
                DeletableTopicResult::default()
                    .with_name(n)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(why.clone()))
            })
            .collect();
        return out;
    }
    for name in names {
        let result = DeletableTopicResult::default().with_name(name.clone());
        let Some(n) = name else {
            out.responses.push(
                result
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_error_message(Some(str_bytes("topics have no ids here; name them"))),
            );
            continue;
        };
        let deleted = service
            .delete_topic_inner(pb::DeleteTopicRequest {
                name: n.0.as_str().to_string(),
            })
            .await;
        out.responses.push(match deleted {
            Ok(_) => result,
            Err(e) => result
                .with_error_code(error_code(&e))
                .with_error_message(Some(str_bytes(&e.to_string()))),
        });
    }
    out
}
