//! Helpers for scenarios that break a cluster on purpose and check what it kept: the
//! console's `--demo failover` and the demos share them, and [`failover`] is the failover
//! experiment itself.

pub mod failover;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhouse_client::{Admin, Consumer, ConsumerBuilder, OffsetReset, TopicPartition};

/// Waits until each partition in `affected` of `topic` has a leader other than `victim`;
/// returns (partition, new leader, lease epoch) for each, and the time since `since`.
pub async fn new_leaders(
    admin: &Admin,
    topic: &str,
    victim: &str,
    affected: &[u32],
    since: Instant,
) -> anyhow::Result<(Vec<(u32, String, i64)>, Duration)> {
    let deadline = since + Duration::from_secs(60);
    loop {
        if let Ok(t) = admin.describe_topic(topic).await {
            let moved: Vec<(u32, String, i64)> = affected
                .iter()
                .filter_map(|&p| {
                    let d = t.partitions.get(p as usize)?;
                    d.leader_id
                        .as_ref()
                        .filter(|l| *l != victim)
                        .map(|l| (p, l.clone(), d.lease_epoch))
                })
                .collect();
            if moved.len() == affected.len() {
                return Ok((moved, since.elapsed()));
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no new leaders for {affected:?} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A consumer of partitions `0..partitions` of `topic`, each from its first stored record,
/// built from `consumer` (its bootstrap and security set).
pub async fn from_the_start(
    consumer: ConsumerBuilder,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<Consumer> {
    let mut consumer = consumer
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(10_000)
        .build()
        .await?;
    consumer
        .assign(
            (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
        )
        .await?;
    Ok(consumer)
}

/// Reads every partition of `topic` from its log start to its high watermark at the call:
/// (partition, offset) -> value. The consumer is built from `consumer`.
pub async fn read_topic(
    admin: &Admin,
    consumer: ConsumerBuilder,
    topic: &str,
) -> anyhow::Result<HashMap<(u32, i64), Option<Bytes>>> {
    let t = admin.describe_topic(topic).await?;
    let total: i64 = t
        .partitions
        .iter()
        .map(|p| p.high_watermark - p.log_start_offset)
        .sum();
    let mut consumer = from_the_start(consumer, topic, t.partitions.len() as u32).await?;
    let mut log = HashMap::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(300);
    while (log.len() as i64) < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "could not read {topic} back in 300 s"
        );
        for r in consumer.poll(Duration::from_millis(500)).await? {
            log.insert((r.partition, r.offset), r.value);
        }
    }
    consumer.close().await?;
    Ok(log)
}

/// What a scenario's group member reports, with when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEventKind {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
    Lost(Vec<TopicPartition>),
    /// A poll returned records: (partition, first offset, last offset) for each partition,
    /// and the count.
    Polled(Vec<(u32, i64, i64)>, usize),
    /// It heard of a new generation.
    Generation(i64),
    /// It left the group (closed) or died (dropped without leaving).
    Gone,
}

#[derive(Debug, Clone)]
pub struct MemberEvent {
    pub at: Instant,
    pub member: String,
    pub kind: MemberEventKind,
}

/// How a scenario member ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Running,
    /// `close()`: commit and leave at once.
    Leave,
    /// Dropped without leaving, as a crash: its partitions wait for its session to expire.
    Die,
}

/// A consumer-group member running in its own task.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    stop: tokio::sync::watch::Sender<Ending>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

struct Listener {
    name: String,
    tx: tokio::sync::mpsc::UnboundedSender<MemberEvent>,
}

impl Listener {
    fn send(&self, kind: MemberEventKind) {
        let _ = self.tx.send(MemberEvent {
            at: Instant::now(),
            member: self.name.clone(),
            kind,
        });
    }
}

impl streamhouse_client::RebalanceListener for Listener {
    fn on_partitions_revoked(
        &mut self,
        revoked: &[(TopicPartition, i64)],
    ) -> Vec<(TopicPartition, i64)> {
        self.send(MemberEventKind::Revoked(
            revoked.iter().map(|r| r.0.clone()).collect(),
        ));
        Vec::new()
    }

    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition]) {
        self.send(MemberEventKind::Assigned(assigned.to_vec()));
    }

    fn on_partitions_lost(&mut self, lost: &[TopicPartition]) {
        self.send(MemberEventKind::Lost(lost.to_vec()));
    }
}

impl Member {
    /// Joins `group` for `topic` as `name` with the default group settings (10 s session,
    /// 1 s heartbeat, auto-commit) and polls until stopped, reporting to `tx`. The consumer is
    /// built from `consumer` (its bootstrap and security set).
    pub fn spawn(
        consumer: ConsumerBuilder,
        group: &str,
        topic: &str,
        name: &str,
        tx: tokio::sync::mpsc::UnboundedSender<MemberEvent>,
    ) -> Member {
        Member::spawn_with(consumer, group, topic, name, (10_000, 1_000), tx)
    }

    /// As [`Member::spawn`], with this (session timeout, heartbeat interval) in ms.
    pub fn spawn_with(
        consumer: ConsumerBuilder,
        group: &str,
        topic: &str,
        name: &str,
        (session_ms, heartbeat_ms): (u64, u64),
        tx: tokio::sync::mpsc::UnboundedSender<MemberEvent>,
    ) -> Member {
        let (stop, mut ending) = tokio::sync::watch::channel(Ending::Running);
        let (group, topic, member) = (group.to_string(), topic.to_string(), name.to_string());
        let task = tokio::spawn(async move {
            let mut c = consumer
                .group_id(&group)
                .client_id(&member)
                .session_timeout_ms(session_ms)
                .heartbeat_interval_ms(heartbeat_ms)
                .auto_commit_interval_ms(1_000)
                .auto_offset_reset(OffsetReset::Earliest)
                .build()
                .await?;
            let listener = Listener {
                name: member.clone(),
                tx: tx.clone(),
            };
            c.subscribe_with_listener(vec![topic], listener).await?;
            let mut generation = 0;
            loop {
                if let Some((_, g)) = c.membership()
                    && g != generation
                {
                    generation = g;
                    let _ = tx.send(MemberEvent {
                        at: Instant::now(),
                        member: member.clone(),
                        kind: MemberEventKind::Generation(g),
                    });
                }
                tokio::select! {
                    _ = ending.changed() => break,
                    polled = c.poll(Duration::from_millis(100)) => {
                        let records = polled?;
                        if !records.is_empty() {
                            let mut ranges: Vec<(u32, i64, i64)> = Vec::new();
                            for r in &records {
                                match ranges.iter_mut().find(|x| x.0 == r.partition) {
                                    Some(x) => x.2 = x.2.max(r.offset),
                                    None => ranges.push((r.partition, r.offset, r.offset)),
                                }
                            }
                            let _ = tx.send(MemberEvent {
                                at: Instant::now(),
                                member: member.clone(),
                                kind: MemberEventKind::Polled(ranges, records.len()),
                            });
                        }
                    }
                }
            }
            let how = *ending.borrow();
            if how == Ending::Leave {
                c.close().await?;
            } else {
                drop(c);
            }
            let _ = tx.send(MemberEvent {
                at: Instant::now(),
                member: member.clone(),
                kind: MemberEventKind::Gone,
            });
            Ok(())
        });
        Member {
            name: name.to_string(),
            stop,
            task,
        }
    }

    /// Ends the member as `how` and waits for it.
    pub async fn end(self, how: Ending) -> anyhow::Result<()> {
        let _ = self.stop.send(how);
        self.task.await?
    }
}

/// Who owns what, followed from members' events.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    pub by_member: std::collections::BTreeMap<String, std::collections::BTreeSet<TopicPartition>>,
    /// When each partition was last assigned, and to whom.
    pub assigned_at: HashMap<TopicPartition, (String, Instant)>,
    /// When each partition last gave records to its owner.
    pub polled_at: HashMap<(String, u32), Instant>,
}

impl Owners {
    /// Applies one event; returns an error if it would give a partition two owners.
    pub fn apply(&mut self, e: &MemberEvent) -> Result<(), String> {
        match &e.kind {
            MemberEventKind::Assigned(tps) => {
                for tp in tps {
                    if let Some((other, _)) = self
                        .by_member
                        .iter()
                        .find(|(m, owned)| **m != e.member && owned.contains(tp))
                    {
                        return Err(format!(
                            "{tp} assigned to {} while {other} owns it",
                            e.member
                        ));
                    }
                    self.by_member
                        .entry(e.member.clone())
                        .or_default()
                        .insert(tp.clone());
                    self.assigned_at
                        .insert(tp.clone(), (e.member.clone(), e.at));
                }
            }
            MemberEventKind::Revoked(tps) | MemberEventKind::Lost(tps) => {
                if let Some(owned) = self.by_member.get_mut(&e.member) {
                    for tp in tps {
                        owned.remove(tp);
                    }
                }
            }
            MemberEventKind::Polled(ranges, _) => {
                for (p, _, _) in ranges {
                    self.polled_at.insert((e.member.clone(), *p), e.at);
                }
            }
            MemberEventKind::Gone => {
                self.by_member.remove(&e.member);
            }
            MemberEventKind::Generation(_) => {}
        }
        Ok(())
    }

    /// Every one of `partitions` partitions owned by a live member.
    pub fn all_owned(&self, topic: &str, partitions: u32) -> bool {
        (0..partitions).all(|p| {
            let tp = TopicPartition::new(topic, p);
            self.by_member.values().any(|o| o.contains(&tp))
        })
    }

    /// Every partition owned, and each assigned after `since` already polled by its owner.
    pub fn settled_since(&self, topic: &str, partitions: u32, since: Instant) -> bool {
        self.all_owned(topic, partitions)
            && (0..partitions).all(|p| {
                let tp = TopicPartition::new(topic, p);
                match self.assigned_at.get(&tp) {
                    Some((m, at)) if *at >= since => self
                        .polled_at
                        .get(&(m.clone(), p))
                        .is_some_and(|polled| polled >= at),
                    _ => true,
                }
            })
    }
}

/// Applies members' events from `rx` to `owners`, handing each to `seen`, until `until`
/// holds (within `limit`). Fails if a partition would get two owners.
pub async fn follow(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<MemberEvent>,
    owners: &mut Owners,
    limit: Duration,
    until: &(dyn Fn(&Owners) -> bool + Sync),
    seen: &mut (dyn FnMut(&MemberEvent) + Send),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !until(owners) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(e)) = tokio::time::timeout(left, rx.recv()).await else {
            anyhow::bail!("the group did not settle in {} s", limit.as_secs());
        };
        owners.apply(&e).map_err(anyhow::Error::msg)?;
        seen(&e);
    }
    Ok(())
}

/// Waits until every partition of the cluster has a leader and `agents` live agents lead
/// within one of each other (leases are balanced over all partitions, not per topic).
pub async fn balanced(admin: &Admin, agents: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = admin.describe_cluster().await {
            let mut load: BTreeMap<&str, usize> = BTreeMap::new();
            let mut all = true;
            for p in c.topics.iter().flat_map(|t| &t.partitions) {
                match &p.leader_id {
                    Some(l) if p.lease_expires_ms > c.now_ms => *load.entry(l).or_default() += 1,
                    _ => all = false,
                }
            }
            let total: usize = load.values().sum();
            let spread = load.values().max().unwrap_or(&0) - load.values().min().unwrap_or(&0);
            if all && load.len() == agents.min(total) && spread <= 1 {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the leases did not balance in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
