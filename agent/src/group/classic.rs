//! Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as plain
//! functions of (group, request, time): no sockets, no clocks, no store.
//!
//! A rebalance is a barrier. It opens (`PreparingRebalance`) when a member joins, leaves,
//! changes what it supports or runs out its session; every member must then send JoinGroup
//! again before the deadline (the longest rebalance timeout among them), or be dropped. When
//! the last one is in, the generation goes up, one protocol (assignor) all members support is
//! picked by vote, and a leader is named (`CompletingRebalance`). The leader computes the
//! assignment on the client side and hands it over in its SyncGroup; every member's SyncGroup
//! answers with its own part (`Stable`). Heartbeats tell members of a new rebalance with
//! `REBALANCE_IN_PROGRESS`.
//!
//! Kafka's broker answers the requests held at the barrier from memory. Here the state lives
//! in the metadata store and any agent may serve any request, so a held JoinGroup or SyncGroup
//! polls its group ([`poll_join`], [`poll_sync`]) until its answer is there, and deadlines
//! are acted on by whichever request sees them pass first. Members whose request is held are
//! alive by definition: a member that joined is not expired while the barrier is up, and no
//! member is expired while the leader's assignment is awaited, until the deadline.

use std::collections::BTreeSet;

use super::assignor::Tp;

/// A group's phase, named as Kafka's DescribeGroups and ListGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Empty,
            Phase::PreparingRebalance,
            Phase::CompletingRebalance,
            Phase::Stable,
        ]
        .into_iter()
        .find(|p| p.name() == s)
    }
}

/// One member of a classic group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    pub id: String,
    pub client_id: String,
    pub host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    /// The protocols (assignors) it supports, in order of preference, each with its metadata
    /// (for consumers: the subscription).
    pub protocols: Vec<(String, Vec<u8>)>,
    /// What the leader assigned it in the current generation.
    pub assignment: Vec<u8>,
    /// It has sent JoinGroup in the rebalance that is open.
    pub joined: bool,
    /// The last generation whose join it was part of.
    pub generation: i64,
    pub last_heartbeat_ms: i64,
    pub joined_at_ms: i64,
}

impl Member {
    /// Its metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> &[u8] {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map_or(&[][..], |(_, m)| m)
    }
}

/// A classic group as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub phase: Phase,
    pub generation: i64,
    /// `consumer` for Kafka consumers; fixed while the group has members.
    pub protocol_type: String,
    /// The protocol picked for the current generation.
    pub protocol: String,
    pub leader: String,
    /// While preparing: when the join completes whoever is missing. While completing: until
    /// when the members wait for the leader's assignment.
    pub deadline_ms: i64,
    /// While preparing a group that was empty: the join completes no earlier than this, so
    /// members starting together join one generation (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub hold_until_ms: i64,
    pub members: Vec<Member>,
}

/// A JoinGroup as the state machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// What a member learns when its join completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i64,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member and its metadata for the chosen protocol. Empty for
    /// the others.
    pub members: Vec<(String, Vec<u8>)>,
}

/// Where a JoinGroup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined(Joined),
    /// Held at the barrier: poll with [`poll_join`], passing `since`.
    Waiting {
        since: i64,
    },
}

/// Where a SyncGroup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The member's assignment.
    Assigned(Vec<u8>),
    /// The leader has not handed the assignment over yet: poll with [`poll_sync`].
    Waiting,
}

/// Why a request was refused, each one a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassicError {
    #[error("member {0} is not in the group; rejoin")]
    UnknownMember(String),
    #[error("generation {got} is not the group's ({current}); rejoin")]
    IllegalGeneration { got: i64, current: i64 },
    #[error("the group is rebalancing; rejoin")]
    RebalanceInProgress,
    #[error("{0}")]
    InconsistentProtocol(String),
    #[error("the group has {0} members, the most it may have")]
    Full(usize),
}

/// Most members one group may have (Kafka's `group.max.size`): every request rewrites at
/// most this many rows.
pub const MAX_MEMBERS: usize = 1_000;

fn alive(g: &Group, m: &Member, now: i64) -> bool {
    if m.last_heartbeat_ms + m.session_timeout_ms >= now {
        return true;
    }
    match g.phase {
        // Its JoinGroup is held: the client is there.
        Phase::PreparingRebalance => m.joined,
        // Everyone waits for the leader; the deadline bounds the wait.
        Phase::CompletingRebalance => now <= g.deadline_ms,
        _ => false,
    }
}

/// Drops members whose sessions ran out by `now` and opens a rebalance if any did; returns
/// their ids.
pub fn expire(g: &mut Group, now: i64) -> Vec<String> {
    let gone: Vec<String> = g
        .members
        .iter()
        .filter(|m| !alive(g, m, now))
        .map(|m| m.id.clone())
        .collect();
    if !gone.is_empty() {
        g.members.retain(|m| !gone.contains(&m.id));
        after_removal(g, now);
    }
    gone
}

fn after_removal(g: &mut Group, now: i64) {
    if g.members.is_empty() {
        g.generation += 1;
        g.phase = Phase::Empty;
        g.protocol.clear();
        g.leader.clear();
        g.deadline_ms = 0;
        g.hold_until_ms = 0;
    } else if g.phase != Phase::PreparingRebalance {
        begin_rebalance(g, now, 0);
    }
}

/// A rebalance waits as long as its most patient member allows (Kafka's rule).
fn longest_rebalance(g: &Group) -> i64 {
    g.members
        .iter()
        .map(|m| m.rebalance_timeout_ms)
        .max()
        .unwrap_or(0)
}

fn begin_rebalance(g: &mut Group, now: i64, initial_delay_ms: i64) {
    let was_empty = g.phase == Phase::Empty;
    g.phase = Phase::PreparingRebalance;
    g.deadline_ms = now + longest_rebalance(g);
    g.hold_until_ms = if was_empty {
        (now + initial_delay_ms).min(g.deadline_ms)
    } else {
        0
    };
    for m in &mut g.members {
        m.joined = false;
    }
}

/// Completes the open join if every member is in (and the initial hold is over) or the
/// deadline passed; returns whether it did.
pub fn try_complete(g: &mut Group, now: i64) -> bool {
    if g.phase != Phase::PreparingRebalance {
        return false;
    }
    let all_in = g.members.iter().all(|m| m.joined);
    if !(all_in && now >= g.hold_until_ms || now >= g.deadline_ms) {
        return false;
    }
    g.members.retain(|m| m.joined);
    g.generation += 1;
    g.hold_until_ms = 0;
    if g.members.is_empty() {
        g.phase = Phase::Empty;
        g.protocol.clear();
        g.leader.clear();
        g.deadline_ms = 0;
        return true;
    }
    g.protocol = select_protocol(&g.members);
    if !g.members.iter().any(|m| m.id == g.leader) {
        g.leader = g.members[0].id.clone();
    }
    g.phase = Phase::CompletingRebalance;
    g.deadline_ms = now + longest_rebalance(g);
    for m in &mut g.members {
        m.joined = false;
        m.generation = g.generation;
        m.last_heartbeat_ms = now;
        m.assignment.clear();
    }
    true
}

/// Kafka's choice: among the protocols every member supports, the one most members list
/// first (ties go to the earlier in the first member's order). Joins are refused unless a
/// common protocol exists, so there is one.
fn select_protocol(members: &[Member]) -> String {
    let common: Vec<&str> = members[0]
        .protocols
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            members
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
        .collect();
    let votes = |name: &str| {
        members
            .iter()
            .filter(|m| {
                m.protocols
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .find(|p| common.contains(p))
                    == Some(name)
            })
            .count()
    };
    let mut best: Option<(&str, usize)> = None;
    for name in &common {
        let v = votes(name);
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((name, v));
        }
    }
    best.map(|(n, _)| n.to_string()).unwrap_or_default()
}

fn answer(g: &Group, member_id: &str) -> Joined {
    let members = if g.leader == member_id {
        g.members
            .iter()
            .map(|m| (m.id.clone(), m.metadata(&g.protocol).to_vec()))
            .collect()
    } else {
        Vec::new()
    };
    Joined {
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol: g.protocol.clone(),
        leader: g.leader.clone(),
        member_id: member_id.to_string(),
        members,
    }
}

/// A JoinGroup: adds or updates the member, opens a rebalance if the group needs one, and
/// answers at once if the join can complete now.
pub fn join(
    g: &mut Group,
    j: &Join,
    now: i64,
    initial_delay_ms: i64,
) -> Result<JoinOutcome, ClassicError> {
    expire(g, now);
    if !g.members.is_empty() {
        if g.protocol_type != j.protocol_type {
            return Err(ClassicError::InconsistentProtocol(format!(
                "protocol type {:?}; the group's members use {:?}",
                j.protocol_type, g.protocol_type
            )));
        }
        let others: Vec<&Member> = g.members.iter().filter(|m| m.id != j.member_id).collect();
        let shared = j.protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        });
        if !others.is_empty() && !shared {
            let theirs: BTreeSet<&str> = others
                .iter()
                .flat_map(|m| m.protocols.iter().map(|(p, _)| p.as_str()))
                .collect();
            let ours: Vec<&str> = j.protocols.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ClassicError::InconsistentProtocol(format!(
                "assignors {ours:?} share none with the group's members ({theirs:?})"
            )));
        }
    }
    let existing = g.members.iter().position(|m| m.id == j.member_id);
    if existing.is_none() && g.members.len() >= MAX_MEMBERS {
        return Err(ClassicError::Full(g.members.len()));
    }
    let idx = match existing {
        Some(i) => i,
        None => {
            g.members.push(Member {
                id: j.member_id.clone(),
                joined_at_ms: now,
                ..Member::default()
            });
            g.members.len() - 1
        }
    };
    let unchanged = existing.is_some() && g.members[idx].protocols == j.protocols;
    {
        let m = &mut g.members[idx];
        m.client_id = j.client_id.clone();
        m.host = j.host.clone();
        m.session_timeout_ms = j.session_timeout_ms;
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.protocols = j.protocols.clone();
        m.last_heartbeat_ms = now;
    }
    g.protocol_type = j.protocol_type.clone();
    match g.phase {
        // A follower asking again with nothing changed (its answer was lost): the current
        // generation stands. The leader rejoining means it wants a new assignment.
        Phase::Stable | Phase::CompletingRebalance if unchanged && g.leader != j.member_id => {
            return Ok(JoinOutcome::Joined(answer(g, &j.member_id)));
        }
        Phase::Empty => begin_rebalance(g, now, initial_delay_ms),
        Phase::Stable | Phase::CompletingRebalance => begin_rebalance(g, now, 0),
        Phase::PreparingRebalance => {
            if existing.is_none() && g.hold_until_ms > now {
                // Another member of a group starting up: wait as long again for the next.
                g.hold_until_ms = (now + initial_delay_ms).min(g.deadline_ms);
            }
        }
    }
    g.members[idx].joined = true;
    let since = g.generation;
    if try_complete(g, now) {
        return Ok(JoinOutcome::Joined(answer(g, &j.member_id)));
    }
    Ok(JoinOutcome::Waiting { since })
}

/// A held JoinGroup looks again: its answer once a join it was part of completed after
/// `since`, or `None` while the barrier is up.
pub fn poll_join(
    g: &mut Group,
    member_id: &str,
    since: i64,
    now: i64,
) -> Result<Option<Joined>, ClassicError> {
    expire(g, now);
    try_complete(g, now);
    let m = g
        .members
        .iter()
        .find(|m| m.id == member_id)
        .ok_or_else(|| ClassicError::UnknownMember(member_id.to_string()))?;
    if m.generation > since && m.generation == g.generation {
        return Ok(Some(answer(g, member_id)));
    }
    if g.generation > since && g.phase != Phase::PreparingRebalance {
        // A generation completed without this member having joined it: it must join again.
        return Err(ClassicError::RebalanceInProgress);
    }
    Ok(None)
}

fn member_at<'a>(
    g: &'a mut Group,
    member_id: &str,
    generation: i64,
) -> Result<&'a mut Member, ClassicError> {
    let current = g.generation;
    let phase = g.phase;
    let m = g
        .members
        .iter_mut()
        .find(|m| m.id == member_id)
        .ok_or_else(|| ClassicError::UnknownMember(member_id.to_string()))?;
    if phase == Phase::PreparingRebalance {
        return Err(ClassicError::RebalanceInProgress);
    }
    if generation != current {
        return Err(ClassicError::IllegalGeneration {
            got: generation,
            current,
        });
    }
    Ok(m)
}

/// A SyncGroup: the leader's carries everyone's assignment; every member gets its own.
pub fn sync(
    g: &mut Group,
    member_id: &str,
    generation: i64,
    assignments: &[(String, Vec<u8>)],
    now: i64,
) -> Result<SyncOutcome, ClassicError> {
    expire(g, now);
    try_complete(g, now);
    let leader = g.leader == member_id;
    member_at(g, member_id, generation)?.last_heartbeat_ms = now;
    if g.phase == Phase::CompletingRebalance && leader {
        for m in &mut g.members {
            m.assignment = assignments
                .iter()
                .find(|(id, _)| *id == m.id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
        }
        g.phase = Phase::Stable;
        g.deadline_ms = 0;
    }
    poll_sync(g, member_id, generation, now)
}

/// A held SyncGroup looks again.
pub fn poll_sync(
    g: &mut Group,
    member_id: &str,
    generation: i64,
    now: i64,
) -> Result<SyncOutcome, ClassicError> {
    expire(g, now);
    try_complete(g, now);
    let phase = g.phase;
    let m = member_at(g, member_id, generation)?;
    Ok(match phase {
        Phase::Stable => SyncOutcome::Assigned(m.assignment.clone()),
        _ => SyncOutcome::Waiting,
    })
}

/// A Heartbeat: keeps the member's session and tells it whether a rebalance is open.
pub fn heartbeat(
    g: &mut Group,
    member_id: &str,
    generation: i64,
    now: i64,
) -> Result<(), ClassicError> {
    expire(g, now);
    try_complete(g, now);
    let current = g.generation;
    let phase = g.phase;
    let m = g
        .members
        .iter_mut()
        .find(|m| m.id == member_id)
        .ok_or_else(|| ClassicError::UnknownMember(member_id.to_string()))?;
    m.last_heartbeat_ms = now;
    match phase {
        Phase::PreparingRebalance => Err(ClassicError::RebalanceInProgress),
        _ if generation != current => Err(ClassicError::IllegalGeneration {
            got: generation,
            current,
        }),
        _ => Ok(()),
    }
}

/// Members leaving on purpose; each gets its own answer. The rest rebalance at once.
pub fn leave(g: &mut Group, member_ids: &[String], now: i64) -> Vec<Result<(), ClassicError>> {
    expire(g, now);
    let mut left = false;
    let out = member_ids
        .iter()
        .map(|id| {
            let before = g.members.len();
            g.members.retain(|m| &m.id != id);
            if g.members.len() == before {
                Err(ClassicError::UnknownMember(id.clone()))
            } else {
                left = true;
                Ok(())
            }
        })
        .collect();
    if left {
        after_removal(g, now);
        try_complete(g, now);
    }
    out
}

/// Checks an OffsetCommit. Without a member and with a negative generation it is a commit
/// from outside the group (manual assignment), allowed while the group has no members. A
/// member's commit counts as a heartbeat.
pub fn commit(
    g: &mut Group,
    member_id: &str,
    generation: i64,
    now: i64,
) -> Result<(), ClassicError> {
    expire(g, now);
    try_complete(g, now);
    if member_id.is_empty() && generation < 0 && g.members.is_empty() {
        return Ok(());
    }
    // While the leader's assignment is awaited nobody may commit; while a rebalance is
    // being prepared, members commit what they read before giving partitions up (as Kafka
    // allows), at the generation they still have.
    if g.phase == Phase::CompletingRebalance {
        return Err(ClassicError::RebalanceInProgress);
    }
    let current = g.generation;
    let m = g
        .members
        .iter_mut()
        .find(|m| m.id == member_id)
        .ok_or_else(|| ClassicError::UnknownMember(member_id.to_string()))?;
    if generation != current {
        return Err(ClassicError::IllegalGeneration {
            got: generation,
            current,
        });
    }
    m.last_heartbeat_ms = now;
    Ok(())
}

/// What a consumer group member's bytes say, for the console and DescribeGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerView {
    /// The topics it subscribes to.
    pub topics: BTreeSet<String>,
    /// What the leader assigned it.
    pub assigned: Vec<Tp>,
}

/// Decodes a member's subscription (for the group's protocol, or its first before one is
/// chosen) and assignment when the group is a Kafka consumer group; anything that does not
/// decode shows as nothing.
pub fn consumer_view(g: &Group, m: &Member) -> ConsumerView {
    use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
    use kafka_protocol::protocol::Decodable;
    if g.protocol_type != "consumer" {
        return ConsumerView::default();
    }
    // Each carries its version first; newer versions only append fields, so the newest
    // this crate knows reads them.
    fn versioned<T: Decodable>(b: &[u8]) -> Option<T> {
        let mut buf = bytes::Bytes::copy_from_slice(b);
        if buf.len() < 2 {
            return None;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
        bytes::Buf::advance(&mut buf, 2);
        T::decode(&mut buf, version).ok()
    }
    let meta = if g.protocol.is_empty() {
        m.protocols.first().map_or(&[][..], |(_, b)| b)
    } else {
        m.metadata(&g.protocol)
    };
    let topics = versioned::<ConsumerProtocolSubscription>(meta)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default();
    let assigned = versioned::<ConsumerProtocolAssignment>(&m.assignment)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .flat_map(|tp| {
                    let topic = tp.topic.0.to_string();
                    tp.partitions
                        .iter()
                        .filter(|p| **p >= 0)
                        .map(move |p| (topic.clone(), *p as u32))
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumerView { topics, assigned }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn j(id: &str, protocols: &[&str]) -> Join {
        Join {
            member_id: id.into(),
            client_id: "c".into(),
            host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), format!("{id}/{p}").into_bytes()))
                .collect(),
        }
    }

    /// A group whose members `ids` joined together at time 0 (an initial delay of 10 ms):
    /// generation 1, led by the first, its assignment awaited.
    fn formed(ids: &[&str]) -> Group {
        let mut g = Group::default();
        for id in ids {
            join(&mut g, &j(id, &["range"]), 0, 10).unwrap();
        }
        poll_join(&mut g, ids[0], 0, 10).unwrap().unwrap();
        assert_eq!((g.generation, g.phase), (1, Phase::CompletingRebalance));
        g
    }

    fn joined(o: JoinOutcome) -> Joined {
        match o {
            JoinOutcome::Joined(j) => j,
            w => panic!("still waiting: {w:?}"),
        }
    }

    #[test]
    fn three_members_join_one_generation_and_the_leader_hands_out_assignments() {
        let mut g = Group::default();
        // Held for the initial delay, then each later member extends it.
        let a = join(&mut g, &j("a", &["range"]), 0, 100).unwrap();
        assert_eq!(a, JoinOutcome::Waiting { since: 0 });
        assert!(matches!(
            join(&mut g, &j("b", &["range"]), 50, 100).unwrap(),
            JoinOutcome::Waiting { .. }
        ));
        assert!(matches!(
            join(&mut g, &j("c", &["range"]), 60, 100).unwrap(),
            JoinOutcome::Waiting { .. }
        ));
        assert_eq!(poll_join(&mut g, "a", 0, 120).unwrap(), None);
        let ja = poll_join(&mut g, "a", 0, 160).unwrap().unwrap();
        assert_eq!(ja.generation, 1);
        assert_eq!(ja.leader, "a");
        assert_eq!(ja.members.len(), 3);
        assert_eq!(ja.members[1], ("b".to_string(), b"b/range".to_vec()));
        let jb = poll_join(&mut g, "b", 0, 161).unwrap().unwrap();
        assert!(jb.members.is_empty());
        assert_eq!(g.phase, Phase::CompletingRebalance);
        // A follower's sync waits for the leader's.
        assert_eq!(
            sync(&mut g, "b", 1, &[], 170).unwrap(),
            SyncOutcome::Waiting
        );
        let plan = vec![
            ("a".to_string(), b"A".to_vec()),
            ("b".to_string(), b"B".to_vec()),
            ("c".to_string(), b"C".to_vec()),
        ];
        assert_eq!(
            sync(&mut g, "a", 1, &plan, 180).unwrap(),
            SyncOutcome::Assigned(b"A".to_vec())
        );
        assert_eq!(
            poll_sync(&mut g, "b", 1, 181).unwrap(),
            SyncOutcome::Assigned(b"B".to_vec())
        );
        assert_eq!(g.phase, Phase::Stable);
        assert_eq!(heartbeat(&mut g, "c", 1, 200), Ok(()));
        assert_eq!(commit(&mut g, "c", 1, 200), Ok(()));
        assert_eq!(
            heartbeat(&mut g, "c", 0, 200),
            Err(ClassicError::IllegalGeneration { got: 0, current: 1 })
        );
    }

    #[test]
    fn a_member_leaving_rebalances_the_rest_who_keep_going() {
        let mut g = formed(&["a", "b", "c"]);
        sync(&mut g, "a", 1, &[], 1).unwrap();
        assert_eq!(
            leave(&mut g, &["b".to_string(), "zz".to_string()], 2),
            vec![Ok(()), Err(ClassicError::UnknownMember("zz".into()))]
        );
        assert_eq!(g.phase, Phase::PreparingRebalance);
        assert_eq!(
            heartbeat(&mut g, "a", 1, 3),
            Err(ClassicError::RebalanceInProgress)
        );
        // Members may still commit what they read before they give partitions up.
        assert_eq!(commit(&mut g, "c", 1, 3), Ok(()));
        let w = join(&mut g, &j("c", &["range"]), 4, 0).unwrap();
        assert_eq!(w, JoinOutcome::Waiting { since: 1 });
        let ja = joined(join(&mut g, &j("a", &["range"]), 5, 0).unwrap());
        assert_eq!(
            (ja.generation, ja.leader.as_str(), ja.members.len()),
            (2, "a", 2)
        );
        let jc = poll_join(&mut g, "c", 1, 6).unwrap().unwrap();
        assert_eq!(jc.generation, 2);
    }

    #[test]
    fn a_silent_member_is_dropped_and_a_missing_joiner_at_the_deadline() {
        let mut g = formed(&["a", "b"]);
        sync(&mut g, "a", 1, &[], 10).unwrap();
        // b never heartbeats: a's heartbeat after b's session finds the group rebalancing.
        heartbeat(&mut g, "a", 1, 5_000).unwrap();
        assert_eq!(
            heartbeat(&mut g, "a", 1, 10_011),
            Err(ClassicError::RebalanceInProgress)
        );
        assert_eq!(g.members.len(), 1);
        let ja = joined(join(&mut g, &j("a", &["range"]), 10_002, 0).unwrap());
        assert_eq!(ja.generation, 2);
        // Now c joins; a keeps heartbeating but does not join again: c's join completes at
        // the deadline, without a.
        let w = join(&mut g, &j("c", &["range"]), 11_000, 0).unwrap();
        assert_eq!(w, JoinOutcome::Waiting { since: 2 });
        for at in [15_000, 24_000, 33_000, 39_000] {
            assert_eq!(
                heartbeat(&mut g, "a", 2, at),
                Err(ClassicError::RebalanceInProgress)
            );
        }
        assert_eq!(poll_join(&mut g, "c", 2, 40_000).unwrap(), None);
        let jc = poll_join(&mut g, "c", 2, 41_000).unwrap().unwrap();
        assert_eq!((jc.generation, jc.leader.as_str()), (3, "c"));
        assert_eq!(
            heartbeat(&mut g, "a", 2, 41_001),
            Err(ClassicError::UnknownMember("a".into()))
        );
    }

    #[test]
    fn a_leader_that_never_syncs_is_dropped_at_the_deadline() {
        let mut g = formed(&["a", "b"]);
        assert_eq!(sync(&mut g, "b", 1, &[], 1).unwrap(), SyncOutcome::Waiting);
        assert_eq!(
            poll_sync(&mut g, "b", 1, 29_000).unwrap(),
            SyncOutcome::Waiting
        );
        // Past the deadline both sessions count again; b keeps heartbeating, a is gone.
        heartbeat(&mut g, "b", 1, 29_500).unwrap();
        assert_eq!(
            poll_sync(&mut g, "b", 1, 30_011),
            Err(ClassicError::RebalanceInProgress)
        );
        assert_eq!(
            g.members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn members_must_share_a_protocol_and_type() {
        let mut g = Group::default();
        join(&mut g, &j("a", &["range", "roundrobin"]), 0, 10).unwrap();
        assert!(matches!(
            join(&mut g, &j("b", &["cooperative-sticky"]), 1, 0),
            Err(ClassicError::InconsistentProtocol(_))
        ));
        let mut other = j("b", &["range"]);
        other.protocol_type = "connect".into();
        assert!(matches!(
            join(&mut g, &other, 1, 0),
            Err(ClassicError::InconsistentProtocol(_))
        ));
        // The vote: b and c prefer roundrobin, a range; roundrobin wins.
        join(&mut g, &j("b", &["roundrobin", "range"]), 2, 10).unwrap();
        join(&mut g, &j("c", &["roundrobin"]), 3, 10).unwrap();
        let ja = poll_join(&mut g, "a", 0, 13).unwrap().unwrap();
        assert_eq!(ja.protocol, "roundrobin");
        assert_eq!(ja.members[0].1, b"a/roundrobin".to_vec());
    }

    #[test]
    fn a_follower_asking_again_keeps_its_generation() {
        let mut g = formed(&["a", "b"]);
        sync(&mut g, "a", 1, &[], 0).unwrap();
        let again = joined(join(&mut g, &j("b", &["range"]), 5, 0).unwrap());
        assert_eq!((again.generation, g.phase), (1, Phase::Stable));
        // The leader asking again starts a new generation.
        assert!(matches!(
            join(&mut g, &j("a", &["range"]), 6, 0).unwrap(),
            JoinOutcome::Waiting { .. }
        ));
        assert_eq!(g.phase, Phase::PreparingRebalance);
    }

    #[test]
    fn commits_from_outside_only_while_empty() {
        let mut g = Group::default();
        assert_eq!(commit(&mut g, "", -1, 0), Ok(()));
        join(&mut g, &j("a", &["range"]), 0, 0).unwrap();
        assert!(commit(&mut g, "", -1, 1).is_err());
        leave(&mut g, &["a".to_string()], 2);
        assert_eq!(g.phase, Phase::Empty);
        assert_eq!(commit(&mut g, "", -1, 3), Ok(()));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Join(usize),
        Sync(usize),
        Beat(usize),
        Leave(usize),
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (0usize..5).prop_map(Step::Join),
            2 => (0usize..5).prop_map(Step::Sync),
            3 => (0usize..5).prop_map(Step::Beat),
            1 => (0usize..5).prop_map(Step::Leave),
            1 => (1i64..40_000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Members join, sync, heartbeat, leave and fall silent in any order. Whatever
        /// happens: at most one member per generation is told it leads; every member
        /// answered for a generation hears the same leader and protocol; an assignment is
        /// handed out only for the generation it was made in; and the group never holds
        /// more members than joined.
        #[test]
        fn one_leader_and_one_plan_per_generation(steps in prop::collection::vec(step(), 1..150)) {
            let mut g = Group::default();
            let mut now = 0i64;
            // Per member: its generation as it believes it (None: not joined or waiting since).
            let mut gens: Vec<Option<i64>> = vec![None; 5];
            let mut waiting: Vec<Option<i64>> = vec![None; 5];
            let mut leaders: std::collections::BTreeMap<i64, (String, String)> = Default::default();
            let mut plans: std::collections::BTreeMap<i64, i64> = Default::default();
            for s in steps {
                now += 7;
                let mut note = |g: &Group, jn: &Joined| -> Result<(), TestCaseError> {
                    let entry = leaders.entry(jn.generation).or_insert((jn.leader.clone(), jn.protocol.clone()));
                    prop_assert_eq!(&*entry, &(jn.leader.clone(), jn.protocol.clone()));
                    prop_assert_eq!(jn.members.is_empty(), jn.leader != jn.member_id);
                    prop_assert!(g.members.len() <= 5);
                    Ok(())
                };
                match s {
                    Step::Join(i) => {
                        let id = format!("m{i}");
                        match join(&mut g, &j(&id, &["range"]), now, 50) {
                            Ok(JoinOutcome::Joined(jn)) => { note(&g, &jn)?; gens[i] = Some(jn.generation); waiting[i] = None; }
                            Ok(JoinOutcome::Waiting { since }) => { waiting[i] = Some(since); gens[i] = None; }
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                    Step::Sync(i) => {
                        let id = format!("m{i}");
                        if let Some(since) = waiting[i] {
                            match poll_join(&mut g, &id, since, now) {
                                Ok(Some(jn)) => { note(&g, &jn)?; gens[i] = Some(jn.generation); waiting[i] = None; }
                                Ok(None) => {}
                                Err(_) => waiting[i] = None,
                            }
                        } else if let Some(gn) = gens[i] {
                            let plan = vec![(id.clone(), gn.to_be_bytes().to_vec())];
                            let lead = g.leader == id;
                            match sync(&mut g, &id, gn, if lead { &plan } else { &[] }, now) {
                                Ok(SyncOutcome::Assigned(a)) if !a.is_empty() => {
                                    // Made for this very generation.
                                    prop_assert_eq!(a, gn.to_be_bytes().to_vec());
                                    *plans.entry(gn).or_default() += 1;
                                }
                                Ok(_) => {}
                                Err(_) => gens[i] = None,
                            }
                        }
                    }
                    Step::Beat(i) => {
                        if let Some(gn) = gens[i] && heartbeat(&mut g, &format!("m{i}"), gn, now).is_err() {
                            gens[i] = None;
                        }
                    }
                    Step::Leave(i) => {
                        leave(&mut g, &[format!("m{i}")], now);
                        gens[i] = None;
                        waiting[i] = None;
                    }
                    Step::Wait(ms) => now += ms,
                }
                prop_assert!(g.members.iter().filter(|m| m.id == g.leader).count() <= 1);
                if g.phase == Phase::Empty {
                    prop_assert!(g.members.is_empty());
                }
            }
        }
    }
}
