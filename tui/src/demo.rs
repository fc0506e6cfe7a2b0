//! `--demo failover` and `--demo groups`: scripted scenarios the console runs by itself while
//! it shows the cluster. The failover one is [`crate::scenario::failover`] on the console's
//! own agents: load, `kill -9` of a partition leader, a restart, then the measured cost.

use std::time::{Duration, Instant};

use streamhouse_client::{Admin, ClientError, NewTopic};

use crate::action::{Action, LoadSpec};
use crate::runtime::Runner;
use crate::scenario::failover;
use crate::supervisor::Supervisor;
use crate::workers::Load;

pub const TOPIC: &str = "failover-demo";
const PARTITIONS: u32 = 6;
const RATE: u64 = 2_000;
const SETTLE: Duration = Duration::from_secs(10);

/// The console's own agents, for the experiment to kill and restart.
impl failover::Agents for Supervisor {
    async fn kill(&self, id: &str) -> anyhow::Result<()> {
        Supervisor::kill(self, id).await
    }

    async fn restart(&self, id: &str) -> anyhow::Result<()> {
        self.start(id.to_string()).await.map(|_| ())
    }
}

/// Runs the failover experiment ([`failover::run`]) once on the launched cluster; its
/// captions and result go to the console.
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
    let _ = runner.tx.send(Action::Run(format!("tail {TOPIC} all end")));
    say(format!(
        "steady load into {TOPIC}, tailed on 6 Consume; a leader dies in {} s: watch 2 Partitions",
        SETTLE.as_secs()
    ));
    let bootstrap = runner.bootstrap();
    let clients = failover::Clients {
        admin,
        producer: runner.connect.producer().bootstrap(&bootstrap),
        consumer: runner.connect.consumer().bootstrap(&bootstrap),
    };
    let plan = failover::Plan {
        topic: TOPIC.into(),
        partitions: PARTITIONS,
        rate: RATE,
        settle: SETTLE,
        kills: 1,
        agents,
    };
    let out = failover::run(&sup, &clients, &plan, &say).await?;
    let mut lines = Vec::new();
    for k in &out.kills {
        lines.push(format!(
            "kill -9 of {} (leader of partitions {:?})",
            k.victim, k.affected
        ));
        lines.push(format!(
            "new leaders after {} ms",
            k.leaders_after.as_millis()
        ));
        lines.push(format!(
            "acknowledged again after {} ms",
            k.first_ack_after.as_millis()
        ));
    }
    lines.push(format!(
        "records lost: {} of {} acknowledged ({} stored twice)",
        out.lost, out.acked, out.duplicated
    ));
    let _ = runner.tx.send(Action::DemoResult(lines));
    let worst = out
        .kills
        .iter()
        .map(|k| k.first_ack_after)
        .max()
        .unwrap_or_default();
    say(format!(
        "done: acknowledged again {} ms after the kill, {} of {} acknowledged records lost. q quits",
        worst.as_millis(),
        out.lost,
        out.acked
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
                runner.connect.consumer().bootstrap(&bootstrap),
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
        runner.connect.consumer().bootstrap(&bootstrap),
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
