//! The consumer-group protocol as a plain function of (group state, request, time, topics):
//! server-side assignment with incremental hand-over, in the spirit of Kafka's KIP-848.
//!
//! Every member heartbeats with what it owns. A change of membership, subscriptions or
//! partition counts bumps the group's generation and computes a new target assignment. Each
//! heartbeat answers with what the member may own now: its target partitions that it owns
//! already or that no other member reports owning. A partition therefore reaches its new
//! owner only after the old owner has reported giving it up (it stops fetching and commits
//! first) or has been removed because its session expired; no two members own a partition
//! at once. The metadata store runs this inside one transaction per request.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, Assignor, Tp};

/// One member as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub id: String,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    /// Assignors it supports, in order of preference.
    pub assignors: Vec<Assignor>,
    /// Where the group wants its partitions to be.
    pub target: Vec<Tp>,
    /// What it reported owning at its last heartbeat, plus what that heartbeat granted.
    pub owned: Vec<Tp>,
    /// The generation its last heartbeat was answered with.
    pub generation: i64,
    pub session_timeout_ms: i64,
    pub last_heartbeat_ms: i64,
    pub joined_at_ms: i64,
}

/// One group as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    pub generation: i64,
    pub assignor: Option<Assignor>,
    /// Members, subscriptions and partition counts the current target was computed for.
    pub fingerprint: String,
    pub members: Vec<MemberState>,
    /// Set for a group of Kafka clients (the classic protocol), whose members assign on
    /// their side: its phase and the protocol (assignor) they chose.
    pub kafka: Option<KafkaGroup>,
}

/// What a Kafka group shows beside its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaGroup {
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Stable`.
    pub phase: &'static str,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor, such as `range` or `cooperative-sticky`.
    pub protocol: String,
}

impl GroupState {
    /// The assignor the members use, by name.
    pub fn assignor_name(&self) -> String {
        match &self.kafka {
            Some(k) => k.protocol.clone(),
            None => self.assignor.map_or("", Assignor::name).to_string(),
        }
    }

    /// `empty` (no members), `stable` (every member owns exactly its target) or
    /// `reconciling` (partitions are being handed over).
    pub fn state(&self) -> &'static str {
        if let Some(k) = &self.kafka {
            k.phase
        } else if self.members.is_empty() {
            "empty"
        } else if self
            .members
            .iter()
            .all(|m| sorted(m.owned.clone()) == sorted(m.target.clone()))
        {
            "stable"
        } else {
            "reconciling"
        }
    }
}

fn sorted(mut v: Vec<Tp>) -> Vec<Tp> {
    v.sort();
    v.dedup();
    v
}

/// A heartbeat (a join when `member_id` is new to the group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: String,
    /// False for a member's first heartbeat: it asks to join under `member_id`.
    pub known: bool,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    pub assignors: Vec<Assignor>,
    /// What the member owns now: after a revocation, without what it gave up.
    pub owned: Vec<Tp>,
    pub session_timeout_ms: i64,
}

/// What a heartbeat changed and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the member may own now.
    pub assignment: Vec<Tp>,
    pub generation: i64,
    /// Set when this request started a new generation: why, for the events log.
    pub rebalance: Option<String>,
    /// The assignor the group uses.
    pub assignor: Option<Assignor>,
    /// Partitions of the member's target that others still own: it should heartbeat again
    /// soon rather than a whole interval later.
    pub pending: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The member is not in the group (it left, or its session expired): it must rejoin.
    #[error("member {0} is not in the group; rejoin")]
    UnknownMember(String),
    /// The members share no assignor.
    #[error("the members share no assignor: {0}")]
    InconsistentAssignors(String),
    /// A commit from an old generation, or for a partition the member does not own.
    #[error("{0}")]
    StaleGeneration(String),
    /// An operation that needs a group without live members.
    #[error("{0}")]
    NotEmpty(String),
    /// The group's members speak the other protocol (Kafka's classic groups, or ours).
    #[error("{0}")]
    OtherProtocol(String),
}

/// Removes members whose sessions expired by `now`; returns their ids.
pub fn expire(group: &mut GroupState, now: i64) -> Vec<String> {
    let mut gone = Vec::new();
    group.members.retain(|m| {
        let alive = m.last_heartbeat_ms + m.session_timeout_ms >= now;
        if !alive {
            gone.push(m.id.clone());
        }
        alive
    });
    gone
}

/// Applies one heartbeat at store time `now` with the topics' partition counts. A refused
/// join (the members would share no assignor) leaves the group as it was.
pub fn heartbeat(
    group: &mut GroupState,
    hb: &Heartbeat,
    now: i64,
    partitions: &BTreeMap<String, u32>,
) -> Result<Outcome, GroupError> {
    let before = group.clone();
    let out = apply_heartbeat(group, hb, now, partitions);
    if let Err(GroupError::InconsistentAssignors(_)) = &out {
        *group = before;
    }
    out
}

fn apply_heartbeat(
    group: &mut GroupState,
    hb: &Heartbeat,
    now: i64,
    partitions: &BTreeMap<String, u32>,
) -> Result<Outcome, GroupError> {
    let expired = expire(group, now);
    let mut why: Vec<String> = expired
        .iter()
        .map(|id| format!("{id} session expired"))
        .collect();
    let existing = group.members.iter().position(|m| m.id == hb.member_id);
    let idx = match (existing, hb.known) {
        (Some(i), _) => i,
        (None, true) => {
            // Its expiry may have started a generation the others must hear of.
            if !why.is_empty() {
                retarget(group, partitions, &why.join(", "))?;
            }
            return Err(GroupError::UnknownMember(hb.member_id.clone()));
        }
        (None, false) => {
            group.members.push(MemberState {
                id: hb.member_id.clone(),
                client_id: hb.client_id.clone(),
                host: hb.host.clone(),
                topics: BTreeSet::new(),
                assignors: Vec::new(),
                target: Vec::new(),
                owned: Vec::new(),
                generation: 0,
                session_timeout_ms: hb.session_timeout_ms,
                last_heartbeat_ms: now,
                joined_at_ms: now,
            });
            why.push(format!("{} joined", hb.member_id));
            group.members.len() - 1
        }
    };
    {
        let m = &mut group.members[idx];
        if m.topics != hb.topics && !m.topics.is_empty() {
            why.push(format!("{} changed its subscription", m.id));
        }
        m.topics = hb.topics.clone();
        m.assignors = hb.assignors.clone();
        m.session_timeout_ms = hb.session_timeout_ms;
        m.last_heartbeat_ms = now;
        // A member can only give partitions up between heartbeats, never take them: what
        // it reports is at most what it was granted.
        let granted: BTreeSet<&Tp> = m.owned.iter().collect();
        m.owned = sorted(
            hb.owned
                .iter()
                .filter(|tp| granted.contains(tp))
                .cloned()
                .collect(),
        );
    }
    let print = fingerprint(group, partitions);
    let rebalance = if print != group.fingerprint || !why.is_empty() {
        let reason = if why.is_empty() {
            "topics changed".to_string()
        } else {
            why.join(", ")
        };
        retarget(group, partitions, &reason)?;
        Some(reason)
    } else {
        None
    };

    // Grant: the member's target partitions that no other member owns.
    let others: BTreeSet<Tp> = group
        .members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .flat_map(|(_, m)| m.owned.iter().cloned())
        .collect();
    let generation = group.generation;
    let m = &mut group.members[idx];
    let assignment: Vec<Tp> = m
        .target
        .iter()
        .filter(|tp| !others.contains(*tp))
        .cloned()
        .collect();
    // What it reported stays owned until it reports it gone: partitions left out of the
    // answer are being revoked, and the member still has them until its next heartbeat.
    let mut owned = m.owned.clone();
    owned.extend(assignment.iter().cloned());
    m.owned = sorted(owned);
    m.generation = generation;
    let pending = m.target.len() - assignment.len();
    Ok(Outcome {
        assignment,
        generation,
        rebalance,
        assignor: group.assignor,
        pending,
    })
}

/// Recomputes every member's target and bumps the generation.
fn retarget(
    group: &mut GroupState,
    partitions: &BTreeMap<String, u32>,
    _why: &str,
) -> Result<(), GroupError> {
    group.generation += 1;
    group.fingerprint = fingerprint(group, partitions);
    if group.members.is_empty() {
        group.assignor = None;
        return Ok(());
    }
    let prefs: Vec<Vec<Assignor>> = group
        .members
        .iter()
        .map(|m| {
            if m.assignors.is_empty() {
                vec![Assignor::RoundRobin]
            } else {
                m.assignors.clone()
            }
        })
        .collect();
    let kind = assignor::choose(&prefs).ok_or_else(|| {
        GroupError::InconsistentAssignors(
            group
                .members
                .iter()
                .map(|m| {
                    let names: Vec<&str> = m.assignors.iter().map(|a| a.name()).collect();
                    format!("{}: {}", m.id, names.join("/"))
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    group.assignor = Some(kind);
    let specs: Vec<assignor::Member> = group
        .members
        .iter()
        .map(|m| assignor::Member {
            id: m.id.clone(),
            topics: m.topics.clone(),
            current: if m.target.is_empty() {
                m.owned.clone()
            } else {
                m.target.clone()
            },
        })
        .collect();
    let targets = assignor::assign(kind, &specs, partitions);
    for m in &mut group.members {
        m.target = targets.get(&m.id).cloned().unwrap_or_default();
    }
    Ok(())
}

/// What the target depends on: members, their subscriptions, and subscribed topics' sizes.
fn fingerprint(group: &GroupState, partitions: &BTreeMap<String, u32>) -> String {
    let mut ids: Vec<String> = group
        .members
        .iter()
        .map(|m| {
            let topics: Vec<String> = m
                .topics
                .iter()
                .map(|t| format!("{t}={}", partitions.get(t).copied().unwrap_or(0)))
                .collect();
            format!("{}[{}]", m.id, topics.join(","))
        })
        .collect();
    ids.sort();
    ids.join(";")
}

/// A member leaving on purpose: its partitions are free at once.
pub fn leave(
    group: &mut GroupState,
    member_id: &str,
    now: i64,
    partitions: &BTreeMap<String, u32>,
) -> Result<String, GroupError> {
    let expired = expire(group, now);
    let before = group.members.len();
    group.members.retain(|m| m.id != member_id);
    if group.members.len() == before {
        return Err(GroupError::UnknownMember(member_id.to_string()));
    }
    let mut why = vec![format!("{member_id} left")];
    why.extend(expired.iter().map(|id| format!("{id} session expired")));
    let reason = why.join(", ");
    retarget(group, partitions, &reason)?;
    Ok(reason)
}

/// Checks a commit: from a member of the group, at the generation it was last answered
/// with, for partitions it owns. A commit without a member (`member_id` empty) is allowed
/// only while the group has no members.
pub fn check_commit(
    group: &GroupState,
    member_id: &str,
    generation: i64,
    partitions: &[Tp],
) -> Result<(), GroupError> {
    if member_id.is_empty() {
        return match group.members.first() {
            None => Ok(()),
            Some(_) => Err(GroupError::UnknownMember(
                "(none): the group has active members; commit as one of them".into(),
            )),
        };
    }
    let m = group
        .members
        .iter()
        .find(|m| m.id == member_id)
        .ok_or_else(|| GroupError::UnknownMember(member_id.to_string()))?;
    if generation != m.generation {
        return Err(GroupError::StaleGeneration(format!(
            "commit at generation {generation}; {member_id} is at {}",
            m.generation
        )));
    }
    if let Some(tp) = partitions.iter().find(|tp| !m.owned.contains(tp)) {
        return Err(GroupError::StaleGeneration(format!(
            "{member_id} does not own {}-{}",
            tp.0, tp.1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(n: u32) -> BTreeMap<String, u32> {
        [("t".to_string(), n)].into_iter().collect()
    }

    fn hb(id: &str, known: bool, owned: &[Tp]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            known,
            client_id: "c".into(),
            host: "h".into(),
            topics: ["t".to_string()].into_iter().collect(),
            assignors: vec![Assignor::RoundRobin],
            owned: owned.to_vec(),
            session_timeout_ms: 10_000,
        }
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_gives_it_up() {
        let mut g = GroupState::default();
        let p = parts(4);
        let a = heartbeat(&mut g, &hb("a", false, &[]), 0, &p).unwrap();
        assert_eq!(a.assignment.len(), 4);
        assert_eq!(a.generation, 1);
        // b joins: its target is half, but a still owns everything.
        let b = heartbeat(&mut g, &hb("b", false, &[]), 10, &p).unwrap();
        assert_eq!(b.generation, 2);
        assert!(b.assignment.is_empty());
        assert_eq!(g.state(), "reconciling");
        // a hears it must give two up...
        let a2 = heartbeat(&mut g, &hb("a", true, &a.assignment), 20, &p).unwrap();
        assert_eq!(a2.assignment.len(), 2);
        // ...and reports them gone on its next heartbeat; only then does b get them.
        let b2 = heartbeat(&mut g, &hb("b", true, &b.assignment), 25, &p).unwrap();
        assert!(b2.assignment.is_empty());
        heartbeat(&mut g, &hb("a", true, &a2.assignment), 30, &p).unwrap();
        let b3 = heartbeat(&mut g, &hb("b", true, &b2.assignment), 40, &p).unwrap();
        assert_eq!(b3.assignment.len(), 2);
        assert_eq!(g.state(), "stable");
    }

    #[test]
    fn an_expired_member_frees_its_partitions_and_cannot_commit() {
        let mut g = GroupState::default();
        let p = parts(2);
        let a = heartbeat(&mut g, &hb("a", false, &[]), 0, &p).unwrap();
        heartbeat(&mut g, &hb("b", false, &[]), 0, &p).unwrap();
        // a has not heard of generation 2 yet and still owns both: its commit is good.
        assert!(check_commit(&g, "a", a.generation, &a.assignment).is_ok());
        // a never heartbeats again; after its session b gets everything.
        heartbeat(&mut g, &hb("b", true, &[]), 5_000, &p).unwrap();
        let b = heartbeat(&mut g, &hb("b", true, &[]), 10_001, &p).unwrap();
        assert_eq!(b.assignment.len(), 2);
        assert!(b.rebalance.unwrap().contains("a session expired"));
        assert_eq!(
            check_commit(&g, "a", a.generation, &a.assignment),
            Err(GroupError::UnknownMember("a".into()))
        );
        assert!(check_commit(&g, "b", b.generation, &b.assignment).is_ok());
        assert!(matches!(
            check_commit(&g, "b", b.generation - 1, &b.assignment),
            Err(GroupError::StaleGeneration(_))
        ));
        assert_eq!(
            heartbeat(&mut g, &hb("a", true, &a.assignment), 10_002, &p),
            Err(GroupError::UnknownMember("a".into()))
        );
    }

    #[test]
    fn members_must_share_an_assignor() {
        let mut g = GroupState::default();
        let p = parts(2);
        heartbeat(&mut g, &hb("a", false, &[]), 0, &p).unwrap();
        let mut b = hb("b", false, &[]);
        b.assignors = vec![Assignor::Sticky];
        let before = g.clone();
        assert!(matches!(
            heartbeat(&mut g, &b, 1, &p),
            Err(GroupError::InconsistentAssignors(_))
        ));
        // The refused member left no trace: same members, same generation.
        assert_eq!(g, before);
    }

    /// A member process: what it may own, and what it reports at its next heartbeat.
    type Proc = (Vec<Tp>, Vec<Tp>);

    #[derive(Debug, Clone)]
    enum Step {
        Join,
        Beat(usize),
        Leave(usize),
        Die(usize),
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => Just(Step::Join),
            6 => (0usize..6).prop_map(Step::Beat),
            1 => (0usize..6).prop_map(Step::Leave),
            1 => (0usize..6).prop_map(Step::Die),
            1 => (1i64..6_000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Members join, heartbeat, leave and die in any order; what each member believes it
        /// owns never overlaps another's, and once the survivors keep heartbeating every
        /// partition ends up owned, balanced within one.
        #[test]
        fn no_partition_ever_has_two_owners(steps in prop::collection::vec(step(), 1..120), n in 1u32..9) {
            let p = parts(n);
            let mut g = GroupState::default();
            // Each live member process: what it may own (its last answer, plus what it is
            // still revoking until its next heartbeat) and what it reports next (None: dead
            // or left).
            let mut procs: Vec<(String, Option<Proc>)> = Vec::new();
            let union = |a: &[Tp], b: &[Tp]| sorted(a.iter().chain(b).cloned().collect());
            let mut now = 0i64;
            for s in steps {
                now += 1;
                match s {
                    Step::Join => {
                        let id = format!("m{}", procs.len());
                        let out = heartbeat(&mut g, &hb(&id, false, &[]), now, &p).unwrap();
                        procs.push((id, Some((out.assignment.clone(), out.assignment))));
                    }
                    Step::Beat(i) if i < procs.len() => {
                        let (id, state) = procs[i].clone();
                        if let Some((_, report)) = state {
                            match heartbeat(&mut g, &hb(&id, true, &report), now, &p) {
                                Ok(out) => {
                                    procs[i].1 = Some((union(&report, &out.assignment), out.assignment));
                                }
                                // Expired while alive: it stops consuming (its session is
                                // over) and would rejoin under a new id.
                                Err(GroupError::UnknownMember(_)) => procs[i].1 = None,
                                Err(e) => prop_assert!(false, "{e}"),
                            }
                        }
                    }
                    Step::Leave(i) if i < procs.len() && procs[i].1.is_some() => {
                        procs[i].1 = None;
                        let _ = leave(&mut g, &procs[i].0, now, &p);
                    }
                    Step::Die(i) if i < procs.len() => procs[i].1 = None,
                    Step::Wait(ms) => now += ms,
                    _ => {}
                }
                // A member that has not heartbeaten within its session stops on its own
                // (the client's own timer), so count only those still within it.
                let mut seen = BTreeSet::new();
                for (id, state) in &procs {
                    let Some((owned, _)) = state else { continue };
                    let fresh = g.members.iter().any(|m| &m.id == id && m.last_heartbeat_ms + m.session_timeout_ms >= now);
                    if !fresh { continue; }
                    for tp in owned {
                        prop_assert!(seen.insert(tp.clone()), "{tp:?} owned twice: {procs:?}");
                    }
                }
            }
            // Survivors heartbeat a few rounds: everything converges.
            now += 20_000;
            let alive: Vec<usize> = (0..procs.len()).filter(|&i| procs[i].1.is_some()).collect();
            for _ in 0..4 {
                for &i in &alive {
                    let (id, state) = procs[i].clone();
                    let report = state.map(|s| s.1).unwrap_or_default();
                    let out = match heartbeat(&mut g, &hb(&id, true, &report), now, &p) {
                        Ok(o) => o,
                        Err(GroupError::UnknownMember(_)) => heartbeat(&mut g, &hb(&id, false, &[]), now, &p).unwrap(),
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    };
                    procs[i].1 = Some((out.assignment.clone(), out.assignment));
                }
                now += 1;
            }
            if !alive.is_empty() {
                let owned: Vec<usize> = alive.iter().map(|&i| procs[i].1.as_ref().map_or(0, |s| s.1.len())).collect();
                prop_assert_eq!(owned.iter().sum::<usize>(), n as usize);
                prop_assert!(owned.iter().max().unwrap() - owned.iter().min().unwrap() <= 1);
                prop_assert_eq!(g.state(), "stable");
            }
        }
    }
}
