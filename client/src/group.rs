//! A consumer's membership of a group: the heartbeat task, and the group RPCs the consumer
//! and admin use.
//!
//! The task heartbeats every `heartbeat_interval` (and at once when woken) with the
//! partitions the consumer owns, and publishes the assignment the agent answers with. The
//! consumer applies it in `poll`: it gives up what is no longer assigned (committing first
//! with auto-commit, telling the rebalance listener) before the task reports it gone, which
//! is what lets the agent hand those partitions to another member. A member whose session
//! runs out without a successful heartbeat treats everything it owned as lost and joins
//! again under a new id.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamhouse_proto::pb::{self, ErrorCode};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::consumer::TopicPartition;
use crate::error::{ClientError, Result};

/// How soon a member heartbeats again while partitions meant for it are being given up.
const PENDING_RETRY: Duration = Duration::from_millis(100);

/// The assignors a consumer can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignorKind {
    /// Partitions dealt to members in turn (the default).
    RoundRobin,
    /// Contiguous ranges of each topic's partitions.
    Range,
    /// Balanced, keeping as many current owners as balance allows.
    Sticky,
}

impl AssignorKind {
    /// The name agents know it by.
    ///
    /// ```
    /// assert_eq!(streamhouse_client::AssignorKind::Sticky.name(), "sticky");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::RoundRobin => "round-robin",
            AssignorKind::Range => "range",
            AssignorKind::Sticky => "sticky",
        }
    }
}

/// What the heartbeat task and the consumer share.
#[derive(Debug)]
pub(crate) struct Membership {
    pub member_id: String,
    pub generation: i64,
    /// The assignment last answered, not yet applied by `poll` when it differs from `owned`.
    pub target: Option<BTreeSet<TopicPartition>>,
    /// What the consumer owns (applied by `poll`); what heartbeats report.
    pub owned: BTreeSet<TopicPartition>,
    /// Set when the session ran out: `poll` drops everything without committing.
    pub lost: bool,
    /// An error no retry will fix (the members share no assignor, say).
    pub fatal: Option<ClientError>,
    pub last_ok: Instant,
    /// When `poll` last ran.
    pub last_poll: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct GroupConfig {
    pub group_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    pub assignors: Vec<AssignorKind>,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub max_poll_interval: Duration,
}

/// The running membership: shared state, the task's wake-up, the task.
#[derive(Debug)]
pub(crate) struct Group {
    pub config: GroupConfig,
    pub state: Arc<Mutex<Membership>>,
    /// Wakes the heartbeat task (to report a change at once).
    pub wake: Arc<Notify>,
    /// The heartbeat task tells `poll` of a new assignment.
    pub changed: Arc<Notify>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl Group {
    pub fn start(cluster: Arc<Cluster>, config: GroupConfig) -> Group {
        let state = Arc::new(Mutex::new(Membership {
            member_id: String::new(),
            generation: 0,
            target: None,
            owned: BTreeSet::new(),
            lost: false,
            fatal: None,
            last_ok: Instant::now(),
            last_poll: Instant::now(),
        }));
        let wake = Arc::new(Notify::new());
        let changed = Arc::new(Notify::new());
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(heartbeat_loop(
            cluster,
            config.clone(),
            state.clone(),
            wake.clone(),
            changed.clone(),
            stopping.clone(),
        ));
        Group {
            config,
            state,
            wake,
            changed,
            stopping,
            task,
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops heartbeating (the caller leaves the group).
    /// Stops heartbeating between two heartbeats, never in the middle of one, so the
    /// generation the consumer knows is the one the group last answered with.
    pub async fn stop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn to_pb(tps: &BTreeSet<TopicPartition>) -> Vec<pb::TopicPartitions> {
    pb::TopicPartitions::group(tps.iter().map(|tp| (tp.topic.as_str(), tp.partition)))
}

/// Partitions as the wire lists them, per topic.
pub(crate) fn from_pb(tps: &[pb::TopicPartitions]) -> BTreeSet<TopicPartition> {
    pb::TopicPartitions::pairs(tps)
        .map(|(topic, partition)| TopicPartition::new(topic, partition))
        .collect()
}

async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    config: GroupConfig,
    state: Arc<Mutex<Membership>>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if stopping.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        // An application that stopped polling cannot be processing its partitions: leave,
        // so others take them, and join again when it polls.
        let stalled = {
            let s = lock();
            (s.last_poll.elapsed() > config.max_poll_interval).then(|| s.member_id.clone())
        };
        if let Some(member_id) = stalled {
            if !member_id.is_empty() {
                tracing::warn!(group = %config.group_id, member = %member_id,
                    "poll not called within max_poll_interval; leaving the group");
                if let Err(e) = leave(&cluster, &config.group_id, &member_id).await {
                    tracing::debug!(error = %e, "leave after a stalled poll failed");
                }
                let mut s = lock();
                lose(&mut s);
                changed.notify_one();
            }
            tokio::select! {
                _ = tokio::time::sleep(config.heartbeat_interval) => {}
                _ = wake.notified() => {}
            }
            continue;
        }
        // Reported: what `poll` has applied, and what it may be applying now (the last
        // assignment), so nothing `poll` takes on is ever unknown to the group.
        let (member_id, owned) = {
            let s = lock();
            let mut owned = s.owned.clone();
            if let Some(t) = &s.target {
                owned.extend(t.iter().cloned());
            }
            (s.member_id.clone(), owned)
        };
        let join = member_id.is_empty();
        let req = pb::GroupHeartbeatRequest {
            group_id: config.group_id.clone(),
            member_id: member_id.clone(),
            client_id: config.client_id.clone(),
            topics: config.topics.clone(),
            assignors: config
                .assignors
                .iter()
                .map(|a| a.name().to_string())
                .collect(),
            owned: to_pb(&owned),
            session_timeout_ms: config.session_timeout.as_millis() as u32,
        };
        let sent_at = Instant::now();
        let mut next = config.heartbeat_interval;
        let resp = cluster
            .ask(|mut c| {
                let req = req.clone();
                async move {
                    if join {
                        c.join_group(req).await
                    } else {
                        c.heartbeat(req).await
                    }
                }
            })
            .await;
        {
            let mut s = lock();
            match resp {
                Ok(r) => {
                    s.member_id = r.member_id;
                    s.generation = r.generation;
                    let target = from_pb(&r.assignment);
                    if target != s.owned {
                        changed.notify_one();
                    }
                    // Reported only because they were offered, never taken on, and now
                    // taken back: say so at once, so they reach their owner sooner.
                    if owned
                        .iter()
                        .any(|tp| !target.contains(tp) && !s.owned.contains(tp))
                    {
                        next = next.min(PENDING_RETRY);
                    }
                    s.target = Some(target);
                    s.last_ok = sent_at;
                    // Partitions on their way here: ask again soon, not a whole interval later.
                    if r.pending > 0 {
                        next = next.min(PENDING_RETRY);
                    }
                }
                Err(ClientError::Agent {
                    code: ErrorCode::UnknownMember,
                    ..
                }) => {
                    tracing::info!(group = %config.group_id, member = %member_id,
                        "no longer a member; partitions lost, rejoining");
                    lose(&mut s);
                    changed.notify_one();
                }
                Err(
                    e @ (ClientError::Agent {
                        code: ErrorCode::InconsistentAssignors | ErrorCode::InvalidRequest,
                        ..
                    }
                    | ClientError::InvalidTopic(_)),
                ) => {
                    s.fatal = Some(e);
                    changed.notify_one();
                    return;
                }
                Err(e) => {
                    tracing::debug!(group = %config.group_id, error = %e, "heartbeat failed");
                    if !s.member_id.is_empty() && s.last_ok.elapsed() > config.session_timeout {
                        tracing::warn!(group = %config.group_id,
                            "no heartbeat got through within the session timeout; partitions lost");
                        lose(&mut s);
                        changed.notify_one();
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = wake.notified() => {}
        }
    }
}

/// The session is over: whatever was owned belongs to someone else now.
fn lose(s: &mut Membership) {
    s.member_id.clear();
    s.generation = 0;
    s.target = Some(BTreeSet::new());
    s.owned.clear();
    s.lost = true;
}

/// Commits `offsets` for a group member at its generation (or, with `member_id` empty and
/// `generation` -1, for a group without live members).
pub(crate) async fn commit(
    cluster: &Cluster,
    group_id: &str,
    member_id: &str,
    generation: i64,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    let req = pb::CommitOffsetsRequest {
        group_id: group_id.to_string(),
        member_id: member_id.to_string(),
        generation,
        offsets: offsets
            .iter()
            .map(|(tp, o)| pb::OffsetCommit {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: *o,
                metadata: String::new(),
            })
            .collect(),
    };
    cluster
        .ask(|mut c| {
            let req = req.clone();
            async move { c.commit_offsets(req).await }
        })
        .await?;
    Ok(())
}

/// The group's committed offsets (of `topics`, or all).
pub(crate) async fn fetch_committed(
    cluster: &Cluster,
    group_id: &str,
    topics: &[String],
) -> Result<Vec<(TopicPartition, i64)>> {
    let req = pb::FetchOffsetsRequest {
        group_id: group_id.to_string(),
        topics: topics.to_vec(),
    };
    let resp = cluster
        .ask(|mut c| {
            let req = req.clone();
            async move { c.fetch_offsets(req).await }
        })
        .await?;
    Ok(resp
        .offsets
        .into_iter()
        .map(|o| (TopicPartition::new(o.topic, o.partition), o.offset))
        .collect())
}

/// Leaves the group at once, so its partitions move without waiting for the session.
pub(crate) async fn leave(cluster: &Cluster, group_id: &str, member_id: &str) -> Result<()> {
    let req = pb::LeaveGroupRequest {
        group_id: group_id.to_string(),
        member_id: member_id.to_string(),
    };
    cluster
        .ask(|mut c| {
            let req = req.clone();
            async move { c.leave_group(req).await }
        })
        .await?;
    Ok(())
}
