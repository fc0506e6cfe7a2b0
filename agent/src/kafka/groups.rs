//! Kafka's consumer-group APIs: FindCoordinator, the classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), OffsetCommit and OffsetFetch, and DescribeGroups and ListGroups,
//! on the same metadata tables as StreamHouse's own groups.
//!
//! Every agent can serve every group (its state is in the store); FindCoordinator still names
//! one agent per group, picked by hashing the group id over the live agents, so the members of
//! a group meet in one process and a held JoinGroup or SyncGroup is woken the moment another
//! member's request changes the group, rather than at its next look at the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ResponseKind, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use streamhouse_proto::limits::{
    MAX_ASSIGNORS, MAX_COMMIT_METADATA_BYTES, MAX_GROUP_PARTITIONS, MAX_GROUP_TOPICS, MAX_ID_BYTES,
};
use tokio::sync::Notify;

use super::apis::{Later, error_code};
use crate::Shared;
use crate::error::AgentError;
use crate::group::classic::{self, ClassicError, JoinOutcome, SyncOutcome};
use crate::metadata::MetadataError;

/// How often a held JoinGroup or SyncGroup looks at the store when nothing in this agent
/// woke it: members of one group served by two agents (a coordinator moved) still meet.
const LOOK_AGAIN: Duration = Duration::from_millis(500);

/// Longest a held request waits whatever the group says (the group's own deadline comes
/// first; this bounds a request whose group was deleted under it).
const MAX_HOLD: Duration = Duration::from_secs(3_600);

/// Most bytes of protocol metadata, and of assignment, one member may carry: a group is
/// loaded whole by each request, so its size is bounded by this times its members.
const MAX_MEMBER_BYTES: usize = 128 * 1024;

/// Most groups one DescribeGroups, or keys one FindCoordinator, may name; a longer request
/// is refused whole.
const MAX_DESCRIBE_GROUPS: usize = 100;
const MAX_COORDINATOR_KEYS: usize = 1_000;

/// Wakes the held requests of a group when another request changes it, by shard.
#[derive(Debug)]
pub(crate) struct Wakers {
    shards: Vec<Notify>,
}

impl Default for Wakers {
    fn default() -> Self {
        Wakers {
            shards: (0..64).map(|_| Notify::new()).collect(),
        }
    }
}

impl Wakers {
    fn of(&self, group: &str) -> &Notify {
        &self.shards[(fnv(group) % self.shards.len() as u64) as usize]
    }

    fn wake(&self, group: &str) {
        self.of(group).notify_waiters();
    }
}

/// FNV-1a: a hash that is the same in every agent and every release, so all agents name the
/// same coordinator for a group.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Who sent a request: what DescribeGroups shows for each member. The client id is the
/// header's own bytes (shared, not copied: every request builds one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    pub id: Option<StrBytes>,
    pub peer: Option<SocketAddr>,
}

impl Client {
    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("")
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn wakers(shared: &Shared) -> Option<&Wakers> {
    shared.kafka.as_ref().map(|k| &*k.groups)
}

/// A group id a Kafka client may use: 1 to 255 bytes without control characters.
fn check_group(id: &str) -> Result<(), i16> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ResponseError::InvalidGroupId.code());
    }
    Ok(())
}

fn check_member(id: &str) -> Result<(), i16> {
    if id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ResponseError::UnknownMemberId.code());
    }
    Ok(())
}

fn classic_code(e: &ClassicError) -> i16 {
    match e {
        ClassicError::UnknownMember(_) => ResponseError::UnknownMemberId,
        ClassicError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        ClassicError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        ClassicError::InconsistentProtocol(_) => ResponseError::InconsistentGroupProtocol,
        ClassicError::Full(_) => ResponseError::GroupMaxSizeReached,
    }
    .code()
}

/// The store failed: the client finds its coordinator again and retries, as after a
/// coordinator moves.
fn store_code(op: &str, group: &str, e: &MetadataError) -> i16 {
    tracing::warn!(%group, error = %e, "Kafka {op}: the metadata store failed");
    ResponseError::CoordinatorNotAvailable.code()
}

/// Clamps a generation to Kafka's i32.
fn gen32(g: i64) -> i32 {
    g.clamp(-1, i64::from(i32::MAX)) as i32
}

/// FindCoordinator: the agent that coordinates each group, by hash over the live agents that
/// serve Kafka.
pub(super) async fn find_coordinator(
    shared: &Arc<Shared>,
    r: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version >= 4 {
        r.coordinator_keys
    } else {
        vec![r.key]
    };
    let brokers = match shared
        .meta
        .list_agents(Some(shared.config.lease_ttl_ms as i64))
        .await
    {
        Ok(agents) => {
            let mut b: Vec<(i32, String)> = agents
                .into_iter()
                .filter_map(|a| Some((a.kafka_node_id?, a.kafka_address?)))
                .collect();
            b.sort();
            Ok(b)
        }
        Err(e) => Err(e),
    };
    let too_many = keys.len() > MAX_COORDINATOR_KEYS;
    let answers: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let base = Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            let refuse = |code: ResponseError, why: &str| {
                base.clone()
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(why)))
            };
            if too_many {
                return refuse(
                    ResponseError::InvalidRequest,
                    &format!("more than {MAX_COORDINATOR_KEYS} keys in one request"),
                );
            }
            match r.key_type {
                0 => {}
                1 => {
                    return refuse(
                        ResponseError::InvalidRequest,
                        "transactions are not supported",
                    );
                }
                t => return refuse(ResponseError::InvalidRequest, &format!("key type {t}")),
            }
            if check_group(&key).is_err() {
                return refuse(
                    ResponseError::InvalidGroupId,
                    "a group id is 1 to 255 bytes without control characters",
                );
            }
            match &brokers {
                Err(e) => refuse(
                    ResponseError::CoordinatorNotAvailable,
                    &format!("metadata store: {e}"),
                ),
                Ok(b) if b.is_empty() => refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "no live agent serves Kafka",
                ),
                Ok(b) => {
                    let (node, addr) = &b[(fnv(&key) % b.len() as u64) as usize];
                    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
                    base.with_node_id(BrokerId(*node))
                        .with_host(str_bytes(
                            host.trim_start_matches('[').trim_end_matches(']'),
                        ))
                        .with_port(port.parse().unwrap_or(0))
                }
            }
        })
        .collect();
    let mut out = FindCoordinatorResponse::default();
    if version >= 4 {
        out.coordinators = answers;
    } else if let Some(c) = answers.into_iter().next() {
        out.error_code = c.error_code;
        if version >= 1 {
            out.error_message = c.error_message;
        }
        out.node_id = c.node_id;
        out.host = c.host;
        out.port = c.port;
    }
    out
}

fn join_error(code: i16, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
}

fn joined(j: classic::Joined, version: i16) -> JoinGroupResponse {
    let mut out = JoinGroupResponse::default()
        .with_generation_id(gen32(j.generation))
        .with_protocol_name(Some(str_bytes(&j.protocol)))
        .with_leader(str_bytes(&j.leader))
        .with_member_id(str_bytes(&j.member_id))
        .with_members(
            j.members
                .into_iter()
                .map(|(id, meta)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&id))
                        .with_metadata(Bytes::from(meta))
                })
                .collect(),
        );
    if version >= 7 {
        out.protocol_type = Some(str_bytes(&j.protocol_type));
    }
    out
}

/// JoinGroup: held at the barrier until every member has joined or the deadline passed.
pub(super) async fn join_group(
    shared: &Arc<Shared>,
    client: &Client,
    r: JoinGroupRequest,
    version: i16,
) -> Result<JoinGroupResponse, Later> {
    let group = r.group_id.0.to_string();
    if let Err(code) = check_group(&group).and(check_member(&r.member_id)) {
        return Ok(join_error(code, &r.member_id));
    }
    let cfg = &shared.config;
    let session = i64::from(r.session_timeout_ms);
    if session < cfg.group_min_session_timeout_ms as i64
        || session > cfg.group_max_session_timeout_ms as i64
    {
        return Ok(join_error(
            ResponseError::InvalidSessionTimeout.code(),
            &r.member_id,
        ));
    }
    let protocol_bytes: usize = r
        .protocols
        .iter()
        .map(|p| p.name.len() + p.metadata.len())
        .sum();
    if r.protocol_type.is_empty()
        || r.protocols.is_empty()
        || r.protocols.len() > MAX_ASSIGNORS
        || protocol_bytes > MAX_MEMBER_BYTES
        || r.protocols
            .iter()
            .any(|p| p.name.is_empty() || p.name.len() > MAX_ID_BYTES)
    {
        return Ok(join_error(
            ResponseError::InconsistentGroupProtocol.code(),
            &r.member_id,
        ));
    }
    let member_id = if r.member_id.is_empty() {
        let id = crate::service::new_member_id(client.id());
        if version >= 4 {
            // KIP-394: the client learns its id first and joins with it, so a client that
            // never comes back leaves no member behind.
            return Ok(join_error(ResponseError::MemberIdRequired.code(), &id));
        }
        id
    } else {
        r.member_id.to_string()
    };
    // Version 0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance = if version == 0 || r.rebalance_timeout_ms <= 0 {
        session
    } else {
        i64::from(r.rebalance_timeout_ms)
    };
    let join = classic::Join {
        member_id: member_id.clone(),
        client_id: client.id().to_string(),
        host: client.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
    };
    let delay = cfg.group_initial_rebalance_delay_ms as i64;
    let outcome = shared.meta.classic_join(&group, &join, delay).await;
    if let Some(w) = wakers(shared) {
        w.wake(&group);
    }
    let since = match outcome {
        Err(e) => return Ok(join_error(store_code("JoinGroup", &group, &e), &member_id)),
        Ok(Err(e)) => return Ok(join_error(classic_code(&e), &member_id)),
        Ok(Ok(JoinOutcome::Joined(j))) => return Ok(joined(j, version)),
        Ok(Ok(JoinOutcome::Waiting { since })) => since,
    };
    let shared = shared.clone();
    let limit = Duration::from_millis(rebalance as u64).saturating_add(Duration::from_secs(5));
    Err(Box::pin(async move {
        let answer = hold(&shared, &group, limit.min(MAX_HOLD), || {
            shared.meta.classic_poll_join(&group, &member_id, since)
        })
        .await;
        let response = match answer {
            Held::Done(j) => joined(j, version),
            Held::Refused(e) => join_error(classic_code(&e), &member_id),
            Held::Store(e) => join_error(store_code("JoinGroup", &group, &e), &member_id),
            Held::TimedOut => join_error(ResponseError::RebalanceInProgress.code(), &member_id),
        };
        Some(ResponseKind::JoinGroup(response))
    }))
}

/// How a held request ended.
enum Held<T> {
    Done(T),
    Refused(ClassicError),
    Store(MetadataError),
    TimedOut,
}

/// Something a held request waits for: `Ok(None)` while it is not there yet.
trait Look<T> {
    fn done(self) -> Option<T>;
}

impl Look<classic::Joined> for Option<classic::Joined> {
    fn done(self) -> Option<classic::Joined> {
        self
    }
}

impl Look<Vec<u8>> for SyncOutcome {
    fn done(self) -> Option<Vec<u8>> {
        match self {
            SyncOutcome::Assigned(a) => Some(a),
            SyncOutcome::Waiting => None,
        }
    }
}

/// Looks at the group each time a request to it in this agent changes it, and every
/// [`LOOK_AGAIN`] in any case, until `look` has the answer or `limit` passes.
async fn hold<T, L, F, Fut>(shared: &Shared, group: &str, limit: Duration, look: F) -> Held<T>
where
    L: Look<T>,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Result<L, ClassicError>, MetadataError>>,
{
    let until = tokio::time::Instant::now() + limit;
    let idle = Notify::new();
    let notify = wakers(shared).map_or(&idle, |w| w.of(group));
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match look().await {
            Err(e) => return Held::Store(e),
            Ok(Err(e)) => return Held::Refused(e),
            Ok(Ok(l)) => {
                if let Some(t) = l.done() {
                    // Its answer may have completed the group for the others too.
                    if let Some(w) = wakers(shared) {
                        w.wake(group);
                    }
                    return Held::Done(t);
                }
            }
        }
        if tokio::time::Instant::now() >= until {
            return Held::TimedOut;
        }
        let next = (tokio::time::Instant::now() + LOOK_AGAIN).min(until);
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

fn sync_answer(code: i16, assignment: Vec<u8>) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(code)
        .with_assignment(Bytes::from(assignment))
}

/// SyncGroup: the leader hands over the assignment; each member waits for its part.
pub(super) async fn sync_group(
    shared: &Arc<Shared>,
    r: SyncGroupRequest,
) -> Result<SyncGroupResponse, Later> {
    let group = r.group_id.0.to_string();
    if let Err(code) = check_group(&group).and(check_member(&r.member_id)) {
        return Ok(sync_answer(code, Vec::new()));
    }
    if r.assignments.len() > classic::MAX_MEMBERS
        || r.assignments
            .iter()
            .any(|a| a.assignment.len() > MAX_MEMBER_BYTES)
    {
        return Ok(sync_answer(
            ResponseError::InvalidRequest.code(),
            Vec::new(),
        ));
    }
    let member_id = r.member_id.to_string();
    let generation = i64::from(r.generation_id);
    let plan: Vec<(String, Vec<u8>)> = r
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    let outcome = shared
        .meta
        .classic_sync(&group, &member_id, generation, &plan)
        .await;
    if let Some(w) = wakers(shared) {
        w.wake(&group);
    }
    match outcome {
        Err(e) => {
            return Ok(sync_answer(store_code("SyncGroup", &group, &e), Vec::new()));
        }
        Ok(Err(e)) => return Ok(sync_answer(classic_code(&e), Vec::new())),
        Ok(Ok(SyncOutcome::Assigned(a))) => return Ok(sync_answer(0, a)),
        Ok(Ok(SyncOutcome::Waiting)) => {}
    }
    let shared = shared.clone();
    Err(Box::pin(async move {
        let answer = hold(&shared, &group, MAX_HOLD, || {
            shared
                .meta
                .classic_poll_sync(&group, &member_id, generation)
        })
        .await;
        let response = match answer {
            Held::Done(a) => sync_answer(0, a),
            Held::Refused(e) => sync_answer(classic_code(&e), Vec::new()),
            Held::Store(e) => sync_answer(store_code("SyncGroup", &group, &e), Vec::new()),
            Held::TimedOut => sync_answer(ResponseError::RebalanceInProgress.code(), Vec::new()),
        };
        Some(ResponseKind::SyncGroup(response))
    }))
}

/// Heartbeat: keeps the session and says whether a rebalance is open.
pub(super) async fn heartbeat(shared: &Arc<Shared>, r: HeartbeatRequest) -> HeartbeatResponse {
    let group = r.group_id.0.to_string();
    let code = match check_group(&group).and(check_member(&r.member_id)) {
        Err(code) => code,
        Ok(()) => match shared
            .meta
            .classic_heartbeat(&group, &r.member_id, i64::from(r.generation_id))
            .await
        {
            Err(e) => store_code("Heartbeat", &group, &e),
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                // It may have dropped a silent member and opened a rebalance.
                if let Some(w) = wakers(shared) {
                    w.wake(&group);
                }
                classic_code(&e)
            }
        },
    };
    HeartbeatResponse::default().with_error_code(code)
}

/// LeaveGroup (versions 0-2: one member).
pub(super) async fn leave_group(shared: &Arc<Shared>, r: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = r.group_id.0.to_string();
    let code = match check_group(&group).and(check_member(&r.member_id)) {
        Err(code) => code,
        Ok(()) => match shared
            .meta
            .classic_leave(&group, &[r.member_id.to_string()])
            .await
        {
            Err(e) => store_code("LeaveGroup", &group, &e),
            Ok(results) => results
                .first()
                .map_or(0, |r| r.as_ref().map_or_else(classic_code, |()| 0)),
        },
    };
    if let Some(w) = wakers(shared) {
        w.wake(&group);
    }
    LeaveGroupResponse::default().with_error_code(code)
}

/// Partition counts of the named topics: `None` for one that does not exist.
async fn partition_counts<'a>(
    shared: &Shared,
    names: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Option<u32>>, AgentError> {
    let mut out = HashMap::new();
    for n in names {
        if out.contains_key(n) {
            continue;
        }
        let count = if streamhouse_proto::validate_topic_name(n).is_ok() {
            shared.meta.get_topic(n).await?.map(|t| t.partition_count)
        } else {
            None
        };
        out.insert(n.to_string(), count);
    }
    Ok(out)
}

/// OffsetCommit: checked against the group's generation, all partitions in one transaction.
pub(super) async fn offset_commit(
    shared: &Arc<Shared>,
    r: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = r.group_id.0.to_string();
    let named: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
    let mut codes: Vec<Vec<i16>> = r
        .topics
        .iter()
        .map(|t| vec![0; t.partitions.len()])
        .collect();
    let everywhere = |codes: &mut Vec<Vec<i16>>, code: i16| {
        for c in codes.iter_mut().flatten() {
            if *c == 0 {
                *c = code;
            }
        }
    };
    let early = check_group(&group).and(check_member(&r.member_id)).and(
        if named > MAX_GROUP_PARTITIONS || r.topics.len() > MAX_GROUP_TOPICS {
            Err(ResponseError::InvalidRequest.code())
        } else {
            Ok(())
        },
    );
    if let Err(code) = early {
        everywhere(&mut codes, code);
    } else {
        match partition_counts(shared, r.topics.iter().map(|t| t.name.0.as_str())).await {
            Err(e) => everywhere(&mut codes, error_code(&e)),
            Ok(counts) => {
                let mut offsets = Vec::with_capacity(named);
                let mut at: BTreeMap<(String, u32), usize> = BTreeMap::new();
                for (ti, t) in r.topics.iter().enumerate() {
                    let name = t.name.0.to_string();
                    for (pi, p) in t.partitions.iter().enumerate() {
                        let meta = p.committed_metadata.as_deref().unwrap_or("");
                        let code = match counts.get(&name).copied().flatten() {
                            None => ResponseError::UnknownTopicOrPartition.code(),
                            Some(n) if p.partition_index < 0 || p.partition_index as u32 >= n => {
                                ResponseError::UnknownTopicOrPartition.code()
                            }
                            _ if meta.len() > MAX_COMMIT_METADATA_BYTES => {
                                ResponseError::OffsetMetadataTooLarge.code()
                            }
                            _ if p.committed_offset < 0 => {
                                ResponseError::InvalidCommitOffsetSize.code()
                            }
                            _ => 0,
                        };
                        codes[ti][pi] = code;
                        if code == 0 {
                            // A partition named twice keeps its last offset.
                            let entry = (
                                name.clone(),
                                p.partition_index as u32,
                                p.committed_offset,
                                meta.to_string(),
                            );
                            match at.get(&(entry.0.clone(), entry.1)) {
                                Some(&i) => offsets[i] = entry,
                                None => {
                                    at.insert((entry.0.clone(), entry.1), offsets.len());
                                    offsets.push(entry);
                                }
                            }
                        }
                    }
                }
                if !offsets.is_empty() {
                    let done = shared
                        .meta
                        .classic_commit(
                            &group,
                            &r.member_id,
                            i64::from(r.generation_id_or_member_epoch),
                            &offsets,
                        )
                        .await;
                    match done {
                        Err(e) => everywhere(&mut codes, store_code("OffsetCommit", &group, &e)),
                        Ok(Err(e)) => {
                            if let Some(w) = wakers(shared) {
                                w.wake(&group);
                            }
                            everywhere(&mut codes, classic_code(&e));
                        }
                        Ok(Ok(())) => {}
                    }
                }
            }
        }
    }
    let topics = r
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, codes)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(codes)
                        .map(|(p, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch (versions 1-7, one group): the group's committed offsets, -1 where none.
pub(super) async fn offset_fetch(
    shared: &Arc<Shared>,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let group = r.group_id.0.to_string();
    let mut out = OffsetFetchResponse::default();
    let fail = |mut out: OffsetFetchResponse, code: i16, topics: Option<Vec<_>>| {
        if version >= 2 {
            out.error_code = code;
        }
        // Version 1 has no group-level error: each partition carries it.
        out.topics = topics
            .unwrap_or_default()
            .into_iter()
            .map(
                |t: kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                },
            )
            .collect();
        out
    };
    if let Err(code) = check_group(&group) {
        return fail(out, code, r.topics);
    }
    let named: usize = r
        .topics
        .iter()
        .flatten()
        .map(|t| t.partition_indexes.len())
        .sum();
    if named > MAX_GROUP_PARTITIONS
        || r.topics
            .as_ref()
            .is_some_and(|t| t.len() > MAX_GROUP_TOPICS)
    {
        return fail(out, ResponseError::InvalidRequest.code(), r.topics);
    }
    let wanted: Vec<String> = r
        .topics
        .iter()
        .flatten()
        .map(|t| t.name.0.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let committed = match shared.meta.fetch_offsets(&group, &wanted).await {
        Ok(c) => c,
        Err(e) => {
            let code = store_code("OffsetFetch", &group, &e);
            return fail(out, code, r.topics);
        }
    };
    let found: BTreeMap<(&str, u32), &crate::metadata::groups::Committed> = committed
        .iter()
        .map(|c| ((c.topic.as_str(), c.partition), c))
        .collect();
    let entry = |index: i32, c: Option<&&crate::metadata::groups::Committed>| {
        OffsetFetchResponsePartition::default()
            .with_partition_index(index)
            .with_committed_offset(c.map_or(-1, |c| c.offset))
            .with_metadata(Some(str_bytes(c.map_or("", |c| c.metadata.as_str()))))
    };
    out.topics = match r.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        let c = u32::try_from(p)
                            .ok()
                            .and_then(|n| found.get(&(name.as_str(), n)));
                        entry(p, c)
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<&str, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
            for (&(t, p), c) in &found {
                by_topic
                    .entry(t)
                    .or_default()
                    .push(entry(p as i32, Some(c)));
            }
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(parts)
                })
                .collect()
        }
    };
    out
}

/// A Kafka name for a group's state: Kafka groups keep theirs; StreamHouse groups map theirs.
fn kafka_state(state: &str) -> &str {
    match state {
        "empty" => "Empty",
        "stable" => "Stable",
        "reconciling" => "CompletingRebalance",
        other => other,
    }
}

fn encoded<T: Encodable>(message: &T, version: i16) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    // The messages are built here from valid values; an encoding failure leaves them empty.
    if message.encode(&mut buf, version).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

/// DescribeGroups: state, protocol and members, with subscriptions and assignments in the
/// consumer protocol's layout for both kinds of group.
pub(super) async fn describe_groups(
    shared: &Arc<Shared>,
    r: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut out = DescribeGroupsResponse::default();
    let too_many = r.groups.len() > MAX_DESCRIBE_GROUPS;
    for id in r.groups {
        let name = id.0.to_string();
        let base = DescribedGroup::default().with_group_id(id.clone());
        if too_many {
            out.groups
                .push(base.with_error_code(ResponseError::InvalidRequest.code()));
            continue;
        }
        if let Err(code) = check_group(&name) {
            out.groups.push(base.with_error_code(code));
            continue;
        }
        let state = match shared.meta.describe_group(&name).await {
            Err(e) => {
                let code = store_code("DescribeGroups", &name, &e);
                out.groups.push(base.with_error_code(code));
                continue;
            }
            Ok(None) => {
                // Kafka's answer for a group it does not know.
                out.groups.push(base.with_group_state(str_bytes("Dead")));
                continue;
            }
            Ok(Some(s)) => s,
        };
        let protocol_type = state
            .kafka
            .as_ref()
            .map_or("consumer", |k| k.protocol_type.as_str());
        let members = state
            .members
            .iter()
            .map(|m| {
                let subscription = ConsumerProtocolSubscription::default()
                    .with_topics(m.topics.iter().map(|t| str_bytes(t)).collect());
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for (t, p) in &m.owned {
                    by_topic.entry(t.as_str()).or_default().push(*p as i32);
                }
                let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    by_topic
                        .into_iter()
                        .map(|(t, parts)| {
                            kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                                .with_topic(TopicName(str_bytes(t)))
                                .with_partitions(parts)
                        })
                        .collect(),
                );
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.id))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&format!("/{}", m.host)))
                    .with_member_metadata(encoded(&subscription, 0))
                    .with_member_assignment(encoded(&assignment, 0))
            })
            .collect();
        out.groups.push(
            base.with_group_state(str_bytes(kafka_state(state.state())))
                .with_protocol_type(str_bytes(protocol_type))
                .with_protocol_data(str_bytes(&state.assignor_name()))
                .with_members(members),
        );
    }
    out
}

/// DeleteGroups: each group with its committed offsets, if it has no live members.
pub(super) async fn delete_groups(
    shared: &Arc<Shared>,
    r: kafka_protocol::messages::DeleteGroupsRequest,
) -> kafka_protocol::messages::DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut out = kafka_protocol::messages::DeleteGroupsResponse::default();
    let too_many = r.groups_names.len() > MAX_DESCRIBE_GROUPS;
    for id in r.groups_names {
        let name = id.0.to_string();
        let code = if too_many {
            ResponseError::InvalidRequest.code()
        } else if let Err(code) = check_group(&name) {
            code
        } else {
            match shared.meta.delete_group(&name).await {
                Ok(Ok(true)) => {
                    tracing::info!(group = %name, "group deleted");
                    0
                }
                Ok(Ok(false)) => ResponseError::GroupIdNotFound.code(),
                Ok(Err(_)) => ResponseError::NonEmptyGroup.code(),
                Err(e) => store_code("DeleteGroups", &name, &e),
            }
        };
        out.results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    out
}

/// ListGroups: every group, StreamHouse's and Kafka's, filtered by state (version 4).
pub(super) async fn list_groups(shared: &Arc<Shared>, r: ListGroupsRequest) -> ListGroupsResponse {
    let mut out = ListGroupsResponse::default();
    let groups = match shared.meta.list_groups().await {
        Ok(g) => g,
        Err(e) => {
            out.error_code = store_code("ListGroups", "*", &e);
            return out;
        }
    };
    let states: Vec<String> = r
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    out.groups = groups
        .into_iter()
        .map(|g| (kafka_state(&g.state).to_string(), g))
        .filter(|(state, _)| states.is_empty() || states.contains(&state.to_ascii_lowercase()))
        .map(|(state, g)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_group_state(str_bytes(&state))
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinator_hash_is_fixed() {
        // Every agent, of every release, must name the same coordinator.
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
