//! The failover scenario that `failover_demo` narrates and `failover_benchmark` repeats: a
//! local cluster of agent processes under steady produce and consume load, `kill -9` of a
//! partition's leader, and what it cost: how long until the partition has a new leader, how
//! long until a record sent after the kill is acknowledged, and whether any acknowledged
//! record went missing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use streamhouse_client::{Admin, Consumer, NewTopic, Producer, TopicDescription};
use tokio::sync::{mpsc, watch};

use streamhouse_agent::local_cluster::LocalCluster;
use streamhouse_tui::scenario::{from_the_start, new_leaders, read_topic};

/// How the scenario runs.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Agent processes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Records per second the producer sends.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// The agents' lease TTL.
    #[arg(long, default_value_t = 3_000)]
    pub lease_ttl_ms: u64,
    /// The agents' heartbeat (and lease round) period.
    #[arg(long, default_value_t = 1_000)]
    pub heartbeat_ms: u64,
    /// Steady load before each kill.
    #[arg(long, default_value_t = 3)]
    pub settle_seconds: u64,
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

const TOPIC: &str = "failover";

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

/// Runs the scenario with `kills` kills on a cluster under `dir`, telling `say` what happens.
pub async fn run(
    dir: &Path,
    opts: &Options,
    kills: usize,
    say: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Outcome> {
    let flags = vec![
        "--lease-ttl-ms".to_string(),
        opts.lease_ttl_ms.to_string(),
        "--heartbeat-ms".to_string(),
        opts.heartbeat_ms.to_string(),
    ];
    let mut cluster = LocalCluster::start(dir, opts.agents, &flags)?;
    say(format!(
        "started {} agents ({}), lease TTL {} ms",
        opts.agents,
        cluster.bootstrap(),
        opts.lease_ttl_ms
    ));
    let admin = Admin::connect(&cluster.bootstrap()).await?;
    match admin
        .create_topic(NewTopic::new(TOPIC, opts.partitions))
        .await
    {
        Ok(_) | Err(streamhouse_client::ClientError::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let t = balanced(&admin, opts.agents).await?;
    say(format!("topic {TOPIC}: {}", leaders_line(&t)));

    let started = Instant::now();
    let producer = Producer::builder()
        .bootstrap(cluster.bootstrap())
        .delivery_timeout_ms(120_000)
        .build()
        .await?;
    let acks = Arc::new(Mutex::new(Acks::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = tokio::spawn(produce(
        producer.clone(),
        opts.rate,
        acks.clone(),
        stop_rx.clone(),
    ));
    let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = tokio::spawn(consume(
        cluster.bootstrap(),
        opts.partitions,
        consumed.clone(),
        stop_rx,
    ));
    say(format!(
        "producing {} records/s (idempotent) and consuming all partitions",
        opts.rate
    ));

    let mut report = Vec::new();
    for k in 0..kills {
        tokio::time::sleep(Duration::from_secs(opts.settle_seconds)).await;
        let t = admin.describe_topic(TOPIC).await?;
        let target = (k as u32) % opts.partitions;
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
        cluster.kill9(&victim)?;

        let (new_leaders, leaders_after) =
            new_leaders(&admin, TOPIC, &victim, &affected, killed_at).await?;
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

        cluster.spawn(&victim)?;
        let t = balanced(&admin, opts.agents).await?;
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
    say("reading every partition back to check what was acknowledged".into());
    let (lost, duplicated) = verify(&admin, &cluster.bootstrap(), &acks.list).await?;
    cluster.stop_all()?;
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

/// Waits until every partition has a live leader and `agents` agents lead within one.
async fn balanced(admin: &Admin, agents: usize) -> anyhow::Result<TopicDescription> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(t) = admin.describe_topic(TOPIC).await {
            let mut load: HashMap<&str, usize> = HashMap::new();
            let all_led = t.partitions.iter().all(|p| p.leader_id.is_some());
            for p in &t.partitions {
                if let Some(l) = &p.leader_id {
                    *load.entry(l.as_str()).or_default() += 1;
                }
            }
            let spread = load.values().max().unwrap_or(&0) - load.values().min().unwrap_or(&0);
            let want = agents.min(t.partitions.len());
            if all_led && load.len() == want && spread <= 1 {
                return Ok(t);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster did not balance in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        {
            let a = acks.lock().unwrap_or_else(|p| p.into_inner());
            let mut first: BTreeMap<u32, Instant> = BTreeMap::new();
            // Newest acknowledgement first; those from before the kill cannot count.
            for ack in a.list.iter().rev() {
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
            if first.len() == affected.len() {
                let slowest = first.values().max().copied().unwrap_or(killed_at);
                return Ok(slowest.duration_since(killed_at));
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no acknowledgement on the affected partitions within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `rate` records/s until stopped; a collector notes each acknowledgement as it comes.
async fn produce(
    producer: Producer,
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
                .send(TOPIC, Some(key.as_bytes()), i.to_string().as_bytes())
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
    bootstrap: String,
    partitions: u32,
    count: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut consumer =
        from_the_start(Consumer::builder().bootstrap(&bootstrap), TOPIC, partitions).await?;
    while !*stop.borrow_and_update() {
        let got = consumer.poll(Duration::from_millis(200)).await?;
        count.fetch_add(got.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    consumer.close().await?;
    Ok(())
}

/// Reads the whole topic and returns (acknowledged records missing or changed, records
/// stored more than once).
async fn verify(admin: &Admin, bootstrap: &str, acks: &[Ack]) -> anyhow::Result<(u64, u64)> {
    let consumer = Consumer::builder().bootstrap(bootstrap);
    let log: HashMap<(u32, i64), u64> = read_topic(admin, consumer, TOPIC)
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
