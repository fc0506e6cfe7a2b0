//! `--demo failover`: a scripted scenario the console runs by itself while it shows the
//! cluster. Produce and consume load, `kill -9` of a partition leader, a restart, then the
//! measured cost: the time without acknowledgements on the partitions the victim led, and
//! how many acknowledged records are missing from the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use streamhouse_client::{Admin, ClientError, NewTopic};

use crate::action::{Action, LoadSpec};
use crate::runtime::Runner;
use crate::scenario::{new_leaders, read_topic};
use crate::workers::{Acked, Load, load_seq};

pub const TOPIC: &str = "failover-demo";
const PARTITIONS: u32 = 6;
const RATE: u64 = 2_000;
const SETTLE: Duration = Duration::from_secs(10);

/// Runs the scenario; its captions and result go to the console.
pub async fn failover(runner: Runner, agents: usize) -> anyhow::Result<()> {
    let say = |s: String| {
        tracing::info!("demo: {s}");
        let _ = runner.tx.send(Action::Caption(s));
    };
    let sup = runner
        .supervisor
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the failover demo needs a launched cluster"))?;
    say(format!("failover demo: waiting for {agents} agents"));
    let admin = wait_for_admin(&runner, agents).await?;
    match admin.delete_topic(TOPIC).await {
        Ok(()) | Err(ClientError::UnknownTopic(_)) => {}
        Err(e) => return Err(e.into()),
    }
    admin.create_topic(NewTopic::new(TOPIC, PARTITIONS)).await?;
    balanced(&admin, agents).await?;

    let producer = runner.producer().await?;
    let spec = LoadSpec {
        topic: TOPIC.into(),
        rate: RATE,
        value_size: 100,
        keys: 1_000,
    };
    let load = Load::start(producer, spec, true, runner.tx.clone());
    let shared = load.shared.clone();
    *runner.load.lock().await = Some(load);
    let _ = runner.tx.send(Action::Run(format!("tail {TOPIC} all end")));
    say(format!(
        "steady load: {RATE} records/s (idempotent) into {TOPIC}, tailed on 6 Consume; a leader dies in {} s",
        SETTLE.as_secs()
    ));
    tokio::time::sleep(SETTLE).await;

    let t = admin.describe_topic(TOPIC).await?;
    let victim = t.partitions[0]
        .leader_id
        .clone()
        .ok_or_else(|| anyhow::anyhow!("partition 0 has no leader"))?;
    let affected: Vec<u32> = t
        .partitions
        .iter()
        .filter(|p| p.leader_id.as_deref() == Some(&victim))
        .map(|p| p.partition)
        .collect();
    say(format!(
        "kill -9 {victim}, leader of partitions {affected:?}: watch 2 Partitions for the leases moving"
    ));
    let killed_at = Instant::now();
    sup.kill(&victim).await?;

    let (_, moved_after) = new_leaders(&admin, TOPIC, &victim, &affected, killed_at).await?;
    say(format!(
        "partitions {affected:?} have new leaders after {} ms; waiting for their first acknowledgements",
        moved_after.as_millis()
    ));
    let gaps = wait_for_gaps(&shared, &affected, killed_at).await?;
    let worst = gaps.values().max().copied().unwrap_or_default();
    say(format!(
        "acknowledgements resumed on every affected partition; the longest gap was {} ms. Restarting {victim} in 5 s",
        worst.as_millis()
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    sup.start(victim.clone()).await?;
    balanced(&admin, agents).await?;
    say(format!(
        "{victim} is back and the leases are balanced again; stopping the load in 5 s"
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;

    if let Some(l) = runner.load.lock().await.take() {
        l.stop().await;
    }
    let acks: Vec<Acked> =
        std::mem::take(&mut shared.lock().unwrap_or_else(|p| p.into_inner()).acks);
    say(format!(
        "reading {TOPIC} back to check all {} acknowledged records",
        acks.len()
    ));
    let log = read_topic(
        &admin,
        crate::connect::consumer().bootstrap(runner.bootstrap()),
        TOPIC,
    )
    .await?;
    let lost = acks
        .iter()
        .filter(|a| {
            let stored = log.get(&(a.partition, a.offset));
            stored.and_then(|v| v.as_deref()).and_then(load_seq) != Some(a.seq)
        })
        .count();
    let mut lines = vec![
        format!("kill -9 of {victim} (leader of partitions {affected:?})"),
        format!("new leaders after {} ms", moved_after.as_millis()),
    ];
    for (p, g) in &gaps {
        lines.push(format!(
            "partition {p}: {} ms without acknowledgements",
            g.as_millis()
        ));
    }
    lines.push(format!(
        "records lost: {lost} of {} acknowledged ({} stored)",
        acks.len(),
        log.len()
    ));
    let _ = runner.tx.send(Action::DemoResult(lines));
    say(format!(
        "done: longest gap without acknowledgements {} ms, {lost} of {} acknowledged records lost. q quits",
        worst.as_millis(),
        acks.len()
    ));
    Ok(())
}

async fn wait_for_admin(runner: &Runner, agents: usize) -> anyhow::Result<Admin> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if !runner.bootstrap().is_empty()
            && let Ok(admin) = runner.admin().await
            && let Ok(c) = admin.describe_cluster().await
            && c.agents.iter().filter(|a| a.live).count() >= agents
        {
            return Ok(admin);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agents did not start in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every partition of the cluster has a leader and `agents` live agents lead
/// within one of each other (leases are balanced over all partitions, not per topic).
async fn balanced(admin: &Admin, agents: usize) -> anyhow::Result<()> {
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

/// For each affected partition, the time between its last acknowledgement before the kill and
/// its first one after: how long that partition's producers waited.
async fn wait_for_gaps(
    shared: &std::sync::Mutex<crate::workers::LoadShared>,
    affected: &[u32],
    killed_at: Instant,
) -> anyhow::Result<BTreeMap<u32, Duration>> {
    let deadline = killed_at + Duration::from_secs(120);
    loop {
        {
            let s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let gaps = gaps(&s.acks, affected, killed_at);
            if gaps.len() == affected.len() {
                return Ok(gaps);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no acknowledgement on the affected partitions within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per partition in `affected` that has been acknowledged both before and after `at`: the
/// time from its last acknowledgement before `at` to its first after.
pub fn gaps(acks: &[Acked], affected: &[u32], at: Instant) -> BTreeMap<u32, Duration> {
    let mut before: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut after: BTreeMap<u32, Instant> = BTreeMap::new();
    for a in acks.iter().filter(|a| affected.contains(&a.partition)) {
        if a.acked_at <= at {
            let e = before.entry(a.partition).or_insert(a.acked_at);
            *e = (*e).max(a.acked_at);
        } else {
            let e = after.entry(a.partition).or_insert(a.acked_at);
            *e = (*e).min(a.acked_at);
        }
    }
    after
        .into_iter()
        .filter_map(|(p, first)| before.get(&p).map(|last| (p, first.duration_since(*last))))
        .collect()
}

pub const GROUPS_TOPIC: &str = "groups-demo";
pub const GROUP: &str = "demo-readers";

pub async fn groups(runner: Runner, agents: usize) -> anyhow::Result<()> {
    use crate::scenario::{Ending, Member, Owners};
    let say = |s: String| {
        tracing::info!("demo: {s}");
        let _ = runner.tx.send(Action::Caption(s));
    };
    say(format!("groups demo: waiting for {agents} agents"));
    let admin = wait_for_admin(&runner, agents).await?;
    match admin.delete_topic(GROUPS_TOPIC).await {
        Ok(()) | Err(ClientError::UnknownTopic(_)) => {}
        Err(e) => return Err(e.into()),
    }
    admin.create_topic(NewTopic::new(GROUPS_TOPIC, 6)).await?;
    let producer = runner.producer().await?;
    let spec = LoadSpec {
        topic: GROUPS_TOPIC.into(),
        rate: 1_000,
        value_size: 100,
        keys: 1_000,
    };
    *runner.load.lock().await = Some(Load::start(producer, spec, false, runner.tx.clone()));
    say(format!(
        "producing 1,000 records/s into {GROUPS_TOPIC}; consumers start in 8 s, so lag builds up first (3 Groups, enter)"
    ));
    tokio::time::sleep(Duration::from_secs(8)).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let bootstrap = runner.bootstrap();
    let mut members: Vec<Member> = (1..=3)
        .map(|i| {
            Member::spawn(
                crate::connect::consumer().bootstrap(&bootstrap),
                GROUP,
                GROUPS_TOPIC,
                &format!("reader-{i}"),
                tx.clone(),
            )
        })
        .collect();
    say(format!(
        "3 consumers join group {GROUP} (session 10 s, heartbeat 1 s) and drain the lag"
    ));
    let mut owners = Owners::default();
    let start = Instant::now();
    crate::scenario::follow(
        &mut rx,
        &mut owners,
        Duration::from_secs(60),
        &|o| o.by_member.len() == 3 && o.settled_since(GROUPS_TOPIC, 6, start),
        &mut |_| {},
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let victim = members.remove(0);
    say(format!(
        "{} dies without leaving: its partitions wait for its 10 s session to expire, their lag grows",
        victim.name
    ));
    let died = Instant::now();
    victim.end(Ending::Die).await?;
    crate::scenario::follow(
        &mut rx,
        &mut owners,
        Duration::from_secs(60),
        &|o| o.by_member.len() == 2 && o.settled_since(GROUPS_TOPIC, 6, died),
        &mut |_| {},
    )
    .await?;
    say(format!(
        "its partitions moved {} ms after it died; the other two drain the backlog",
        died.elapsed().as_millis()
    ));
    tokio::time::sleep(Duration::from_secs(6)).await;

    members.push(Member::spawn(
        crate::connect::consumer().bootstrap(&bootstrap),
        GROUP,
        GROUPS_TOPIC,
        "reader-4",
        tx.clone(),
    ));
    let joined = Instant::now();
    say("reader-4 joins: the group hands it a share once the owners have let go".into());
    crate::scenario::follow(
        &mut rx,
        &mut owners,
        Duration::from_secs(60),
        &|o| o.by_member.len() == 3 && o.settled_since(GROUPS_TOPIC, 6, joined),
        &mut |_| {},
    )
    .await?;
    say(format!(
        "done: reader-4 reading after {} ms; the group keeps consuming. q quits",
        joined.elapsed().as_millis()
    ));
    // The members keep running (and their events are drained) until the console quits.
    drop(tx);
    while rx.recv().await.is_some() {}
    drop(members);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_run_from_the_last_ack_before_to_the_first_after() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let ack = |partition, at| Acked {
            seq: 0,
            partition,
            offset: 0,
            sent_at: t0,
            acked_at: at,
        };
        let acks = vec![
            ack(0, ms(100)),
            ack(0, ms(900)),
            ack(1, ms(950)),
            ack(2, ms(990)),
            ack(0, ms(3_900)),
            ack(0, ms(3_950)),
            ack(1, ms(1_010)),
        ];
        let g = gaps(&acks, &[0, 2], ms(1_000));
        // Partition 2 has no acknowledgement after the kill yet; 1 was not affected.
        assert_eq!(g.len(), 1);
        assert_eq!(g[&0], Duration::from_millis(3_000));
    }
}
