//! The failover experiment, once for the console's `--demo failover` and the demos'
//! `failover_demo` and `failover_benchmark`: a cluster under steady produce and consume load,
//! `kill -9` of a partition's leader, and what it cost: how long until the partitions it led
//! had new leaders, how long until a record sent after the kill was acknowledged on each of
//! them, and whether any acknowledged record went missing or was stored twice.
//!
//! Who starts and kills the agents is the caller's: the console's supervisor, or a
//! [`LocalCluster`](streamhouse_agent::local_cluster::LocalCluster) of the demos'.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use streamhouse_client::{
    Admin, ConsumerBuilder, NewTopic, Producer, ProducerBuilder, TopicDescription,
};
use tokio::sync::{mpsc, watch};

use super::{balanced, from_the_start, new_leaders, read_topic};

/// The agents an experiment kills and brings back.
pub trait Agents {
    /// `kill -9` of agent `id`.
    fn kill(&self, id: &str) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Starts agent `id` again after a kill.
    fn restart(&self, id: &str) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// The load and the kills.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The topic, created if missing.
    pub topic: String,
    /// Its partitions.
    pub partitions: u32,
    /// Records per second the producer sends.
    pub rate: u64,
    /// Steady load before each kill.
    pub settle: Duration,
    /// How many kills, each of the leader of the next partition in turn.
    pub kills: usize,
    /// Agents that must lead within one of each other before each kill.
    pub agents: usize,
}

/// How the experiment reaches the cluster: builders with bootstrap and security set.
#[derive(Debug, Clone)]
pub struct Clients {
    /// For the admin requests.
    pub admin: Admin,
    /// For the load's producer (idempotent, with a long delivery timeout).
    pub producer: ProducerBuilder,
    /// For the tailing consumer and the final read-back.
    pub consumer: ConsumerBuilder,
}

/// What one kill cost.
#[derive(Debug, Clone)]
pub struct Kill {
    pub victim: String,
    /// Partitions the victim led.
    pub affected: Vec<u32>,
    /// (partition, new leader, epoch) once each affected partition has a live leader again.
    pub new_leaders: Vec<(u32, String, i64)>,
    /// From the kill until every affected partition had a new leader.
    pub leaders_after: Duration,
    /// From the kill until, on every affected partition, a record sent after the kill was
    /// acknowledged (the slowest partition).
    pub first_ack_after: Duration,
}

/// What the whole run showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kills: Vec<Kill>,
    pub sent: u64,
    pub acked: u64,
    /// Sends that failed (they reach the application; there should be none).
    pub failed: u64,
    /// Records the consumer read while the scenario ran.
    pub consumed_live: u64,
    /// Acknowledged records not found in the log afterwards.
    pub lost: u64,
    /// Records found more than once in the log.
    pub duplicated: u64,
    pub elapsed: Duration,
}

/// One acknowledged record: where it went, and when it was sent and acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    partition: u32,
    offset: i64,
    value: u64,
    sent_at: Instant,
    acked_at: Instant,
}

#[derive(Debug, Default)]
struct Acks {
    list: Vec<Ack>,
    failed: u64,
}

/// Runs `plan` against `agents`, telling `say` what happens.
pub async fn run<A: Agents>(
    agents: &A,
    clients: &Clients,
    plan: &Plan,
    say: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Outcome> {
    let admin = &clients.admin;
    let topic = plan.topic.as_str();
    match admin
        .create_topic(NewTopic::new(topic, plan.partitions))
        .await
    {
        Ok(_) | Err(streamhouse_client::ClientError::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    balanced(admin, plan.agents).await?;
    let t = admin.describe_topic(topic).await?;
    say(format!("topic {topic}: {}", leaders_line(&t)));

    let started = Instant::now();
    let producer = clients
        .producer
        .clone()
        .delivery_timeout_ms(120_000)
        .build()
        .await?;
    let acks = Arc::new(Mutex::new(Acks::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = tokio::spawn(produce(
        producer.clone(),
        topic.to_string(),
        plan.rate,
        acks.clone(),
        stop_rx.clone(),
    ));
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = tokio::spawn(consume(
        clients.consumer.clone(),
        topic.to_string(),
        plan.partitions,
        consumed.clone(),
        stop_rx,
    ));
    say(format!(
        "producing {} records/s (idempotent) into {topic} and consuming all partitions",
        plan.rate
    ));

    let mut report = Vec::new();
    for k in 0..plan.kills {
        tokio::time::sleep(plan.settle).await;
        let t = admin.describe_topic(topic).await?;
        let target = (k as u32) % plan.partitions;
        let victim = t.partitions[target as usize]
            .leader_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("partition {target} has no leader"))?;
        let affected: Vec<u32> = t
            .partitions
            .iter()
            .filter(|p| p.leader_id.as_deref() == Some(victim.as_str()))
            .map(|p| p.partition)
            .collect();
        say(format!(
            "kill -9 {victim}, leader of partitions {affected:?} (acknowledged so far: {})",
            acks.lock().unwrap_or_else(|p| p.into_inner()).list.len()
        ));
        let killed_at = Instant::now();
        agents.kill(&victim).await?;

        let (new_leaders, leaders_after) =
            new_leaders(admin, topic, &victim, &affected, killed_at).await?;
        for (p, leader, epoch) in &new_leaders {
            say(format!(
                "  partition {p}: new leader {leader} at epoch {epoch} after {} ms",
                leaders_after.as_millis()
            ));
        }
        let first_ack_after = first_acks(&acks, &affected, killed_at).await?;
        say(format!(
            "  a record sent after the kill was acknowledged on every affected partition after {} ms",
            first_ack_after.as_millis()
        ));
        report.push(Kill {
            victim: victim.clone(),
            affected,
            new_leaders,
            leaders_after,
            first_ack_after,
        });

        agents.restart(&victim).await?;
        balanced(admin, plan.agents).await?;
        let t = admin.describe_topic(topic).await?;
        say(format!("restarted {victim}; {}", leaders_line(&t)));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let sent = load.await??;
    producer.flush().await?;
    producer.close().await?;
    reader.await??;
    let elapsed = started.elapsed();

    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
    say(format!(
        "reading {topic} back to check all {} acknowledged records",
        acks.list.len()
    ));
    let (lost, duplicated) = verify(admin, clients.consumer.clone(), topic, &acks.list).await?;
    Ok(Outcome {
        kills: report,
        sent,
        acked: acks.list.len() as u64,
        failed: acks.failed,
        consumed_live: consumed.load(std::sync::atomic::Ordering::Relaxed),
        lost,
        duplicated,
        elapsed,
    })
}

fn leaders_line(t: &TopicDescription) -> String {
    t.partitions
        .iter()
        .map(|p| {
            format!(
                "{}:{}@{}",
                p.partition,
                p.leader_id.as_deref().unwrap_or("-"),
                p.lease_epoch
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until each affected partition has acknowledged a record sent after the kill;
/// returns the time from the kill to the slowest partition's first such acknowledgement.
async fn first_acks(
    acks: &Mutex<Acks>,
    affected: &[u32],
    killed_at: Instant,
) -> anyhow::Result<Duration> {
    let deadline = killed_at + Duration::from_secs(120);
    loop {
        let found = {
            let a = acks.lock().unwrap_or_else(|p| p.into_inner());
            first_ack_after(&a.list, affected, killed_at)
        };
        if let Some(after) = found {
            return Ok(after);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no acknowledgement on the affected partitions within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// From `killed_at` to the slowest partition's first acknowledgement of a record sent after
/// it, once every partition in `affected` has one. `list` is in acknowledgement order.
fn first_ack_after(list: &[Ack], affected: &[u32], killed_at: Instant) -> Option<Duration> {
    let mut first: BTreeMap<u32, Instant> = BTreeMap::new();
    // Newest acknowledgement first; those from before the kill cannot count.
    for ack in list.iter().rev() {
        if ack.acked_at < killed_at {
            break;
        }
        if ack.sent_at < killed_at {
            continue;
        }
        if affected.contains(&ack.partition) {
            let e = first.entry(ack.partition).or_insert(ack.acked_at);
            *e = (*e).min(ack.acked_at);
        }
    }
    (first.len() == affected.len()).then(|| {
        let slowest = first.values().max().copied().unwrap_or(killed_at);
        slowest.duration_since(killed_at)
    })
}

/// Sends `rate` records/s until stopped; a collector notes each acknowledgement as it comes.
async fn produce(
    producer: Producer,
    topic: String,
    rate: u64,
    acks: Arc<Mutex<Acks>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some((value, sent_at, d)) => pending.push(async move {
                        let d: streamhouse_client::DeliveryFuture = d;
                        (value, sent_at, d.await, Instant::now())
                    }),
                    None => break,
                },
                Some((value, sent_at, result, acked_at)) = pending.next() => {
                    note(&acks, value, sent_at, result, acked_at);
                }
            }
        }
        while let Some((value, sent_at, result, acked_at)) = pending.next().await {
            note(&acks, value, sent_at, result, acked_at);
        }
    });
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut i = 0u64;
    while !*stop.borrow_and_update() {
        tick.tick().await;
        for _ in 0..per_tick {
            let key = format!("k{}", i % 1024);
            let d = producer
                .send(&topic, Some(key.as_bytes()), i.to_string().as_bytes())
                .await?;
            let _ = tx.send((i, Instant::now(), d));
            i += 1;
        }
    }
    drop(tx);
    collector.await?;
    Ok(i)
}

fn note(
    acks: &Mutex<Acks>,
    value: u64,
    sent_at: Instant,
    result: streamhouse_client::Result<streamhouse_client::RecordMetadata>,
    acked_at: Instant,
) {
    let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(m) => a.list.push(Ack {
            partition: m.partition,
            offset: m.offset,
            value,
            sent_at,
            acked_at,
        }),
        Err(e) => {
            eprintln!("send failed: {e}");
            a.failed += 1;
        }
    }
}

/// Tails every partition until stopped, counting records.
async fn consume(
    consumer: ConsumerBuilder,
    topic: String,
    partitions: u32,
    count: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut consumer = from_the_start(consumer, &topic, partitions).await?;
    while !*stop.borrow_and_update() {
        let got = consumer.poll(Duration::from_millis(200)).await?;
        count.fetch_add(got.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    consumer.close().await?;
    Ok(())
}

/// Reads the whole topic and returns (acknowledged records missing or changed, records
/// stored more than once).
async fn verify(
    admin: &Admin,
    consumer: ConsumerBuilder,
    topic: &str,
    acks: &[Ack],
) -> anyhow::Result<(u64, u64)> {
    let log: HashMap<(u32, i64), u64> = read_topic(admin, consumer, topic)
        .await?
        .into_iter()
        .map(|(at, v)| {
            let n = v
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            (at, n)
        })
        .collect();
    let lost = acks
        .iter()
        .filter(|a| log.get(&(a.partition, a.offset)) != Some(&a.value))
        .count() as u64;
    let mut seen = HashSet::with_capacity(log.len());
    let duplicated = log.values().filter(|v| !seen.insert(**v)).count() as u64;
    Ok((lost, duplicated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_sent_after_the_kill_count_and_the_slowest_partition_decides() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let ack = |partition, sent, acked| Ack {
            partition,
            offset: 0,
            value: 0,
            sent_at: ms(sent),
            acked_at: ms(acked),
        };
        let kill = ms(1_000);
        // Partition 0: acknowledged after the kill, but sent before it: does not count.
        let mut list = vec![ack(0, 100, 200), ack(1, 900, 950), ack(0, 990, 3_000)];
        assert_eq!(first_ack_after(&list, &[0, 2], kill), None);
        list.push(ack(2, 1_100, 3_200));
        list.push(ack(0, 1_200, 3_500));
        list.push(ack(0, 1_300, 3_400));
        // Partition 0's first is at 3,400 ms, partition 2's at 3,200: the slowest decides.
        assert_eq!(
            first_ack_after(&list, &[0, 2], kill),
            Some(Duration::from_millis(2_400))
        );
    }
}
