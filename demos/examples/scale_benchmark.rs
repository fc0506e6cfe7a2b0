//! Ten thousand partitions, measured: agent processes on PostgreSQL and S3, the partitions
//! of a few topics spread over them, a modest produce load to every partition, and the
//! leader of the most partitions killed with `kill -9`.
//!
//! ```text
//! cargo run --release -p demos --example scale_benchmark -- \
//!     --postgres postgres://postgres@127.0.0.1:5432/test --s3-endpoint http://127.0.0.1:5055
//! ```
//!
//! It creates a fresh database next to the one `--postgres` names and a fresh bucket on the
//! S3 endpoint (credentials from the usual `AWS_*` variables), and prints, phase by phase:
//! how long creating the topics and taking every lease took; each agent's CPU and RSS; the
//! metadata store's transactions per second (PostgreSQL's own count for the database) and
//! the agents' metadata calls per second by operation (their `streamhouse_metadata_calls`);
//! after the kill, how long until every partition the victim led was led again and had
//! acknowledged a record sent after the kill; every acknowledged record read back (lost and
//! stored twice, both counted); and the maintenance and GC pass times from the agents'
//! histograms.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use demos::metrics::{Histogram, labelled, scrape};
use sqlx::{Connection, PgConnection, Row};
use streamhouse_agent::local_cluster::{ClusterSpec, LocalCluster};
use streamhouse_client::{
    Admin, ClusterDescription, Consumer, NewTopic, OffsetReset, Producer, TopicPartition,
};

#[derive(Debug, Parser)]
#[command(about = "Ten thousand partitions on PostgreSQL and S3, measured")]
struct Args {
    /// Agent processes.
    #[arg(long, default_value_t = 5)]
    agents: usize,
    /// Topics the partitions are split over.
    #[arg(long, default_value_t = 4)]
    topics: u32,
    /// Partitions in all.
    #[arg(long, default_value_t = 10_000)]
    partitions: u32,
    /// Records per second to all partitions together, each to the next partition in turn.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Record value size.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// How long the idle phase is measured.
    #[arg(long, default_value_t = 15)]
    idle_seconds: u64,
    /// How long the load phase is measured, before the kill.
    #[arg(long, default_value_t = 30)]
    load_seconds: u64,
    /// Load after the kill, before the read-back.
    #[arg(long, default_value_t = 10)]
    after_seconds: u64,
    /// A PostgreSQL URL; the benchmark creates (and afterwards drops) a database next to it.
    #[arg(
        long,
        env = "STREAMHOUSE_TEST_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres: String,
    /// An S3 endpoint (moto, MinIO); the benchmark creates a bucket on it.
    #[arg(
        long,
        env = "STREAMHOUSE_TEST_S3_ENDPOINT",
        default_value = "http://127.0.0.1:5055"
    )]
    s3_endpoint: String,
    /// The agents' lease TTL (their default when unset).
    #[arg(long)]
    lease_ttl_ms: Option<u64>,
    /// The agents' heartbeat period (their default when unset).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// The agents' maintenance interval (retention, compaction).
    #[arg(long, default_value_t = 10_000)]
    maintenance_interval_ms: u64,
    /// The agents' garbage-collection interval.
    #[arg(long, default_value_t = 15_000)]
    gc_interval_ms: u64,
    /// Partitions one consumer reads back at a time.
    #[arg(long, default_value_t = 500)]
    read_slice: usize,
    /// Keep the database afterwards.
    #[arg(long)]
    keep_database: bool,
}

fn main() -> anyhow::Result<()> {
    // The agents this starts are this program again, in agent mode, with their own runtime.
    streamhouse_agent::process::run_if_agent();
    tokio::runtime::Runtime::new()?.block_on(run(Args::parse()))
}

/// One agent process as the benchmark watches it.
struct Watched {
    id: String,
    pid: u32,
    metrics: SocketAddr,
}

/// A process's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu: Duration,
    rss_kib: u64,
    peak_kib: u64,
}

/// Reads `/proc/PID/stat` (user and system time) and `/proc/PID/status` (VmRSS, VmHWM).
fn usage(pid: u32, tick_hz: u64) -> anyhow::Result<Usage> {
    let ticks = demos::stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu: Duration::from_millis(ticks * 1000 / tick_hz),
        rss_kib: kib("VmRSS:"),
        peak_kib: kib("VmHWM:"),
    })
}

/// CPU time of every PostgreSQL process on this machine (the server and its backends), by
/// process id.
fn postgres_cpu(tick_hz: u64) -> HashMap<u32, Duration> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres"
            && let Ok(u) = usage(pid, tick_hz)
        {
            out.insert(pid, u.cpu);
        }
    }
    out
}

/// What a phase is measured from: when it began, every agent's usage, PostgreSQL's
/// transaction count for the database, and the agents' metadata calls by operation.
struct Mark {
    at: Instant,
    /// PostgreSQL's processes' CPU time (a backend that exits between marks takes its share
    /// since the first mark along).
    postgres_cpu: HashMap<u32, Duration>,
    usage: HashMap<String, Usage>,
    xacts: i64,
    /// Metadata calls by agent, then by operation.
    calls: HashMap<String, BTreeMap<String, f64>>,
    scrapes: HashMap<String, String>,
}

struct Bench {
    args: Args,
    agents: Vec<Watched>,
    db: PgConnection,
    db_name: String,
    tick_hz: u64,
}

impl Bench {
    async fn mark(&mut self) -> anyhow::Result<Mark> {
        // The statistics a backend reports reach pg_stat_database when it goes idle, at
        // most a second later: phases are long enough for that not to matter.
        let xacts: i64 = sqlx::query(
            "SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.db_name)
        .fetch_one(&mut self.db)
        .await?
        .try_get("n")?;
        let mut usage = HashMap::new();
        let mut calls = HashMap::new();
        let mut scrapes = HashMap::new();
        for a in &self.agents {
            let Ok(u) = self::usage(a.pid, self.tick_hz) else {
                continue; // killed
            };
            usage.insert(a.id.clone(), u);
            let Ok(text) = scrape(a.metrics) else {
                continue;
            };
            let of_agent: BTreeMap<String, f64> =
                labelled(&text, "streamhouse_metadata_calls_total", "op")?
                    .into_iter()
                    .collect();
            calls.insert(a.id.clone(), of_agent);
            scrapes.insert(a.id.clone(), text);
        }
        Ok(Mark {
            at: Instant::now(),
            postgres_cpu: postgres_cpu(self.tick_hz),
            usage,
            xacts,
            calls,
            scrapes,
        })
    }

    /// Prints what changed between `from` and now: per agent CPU and RSS, and the metadata
    /// store's load.
    async fn report(&mut self, phase: &str, from: &Mark) -> anyhow::Result<Mark> {
        let now = self.mark().await?;
        let secs = now.at.duration_since(from.at).as_secs_f64();
        println!("\n{phase} ({secs:.1} s)");
        println!("  agent     CPU %   RSS MiB   peak RSS MiB   partitions led");
        for a in &self.agents {
            let (Some(u0), Some(u1)) = (from.usage.get(&a.id), now.usage.get(&a.id)) else {
                println!("  {:<8}  (not running)", a.id);
                continue;
            };
            let led = now
                .scrapes
                .get(&a.id)
                .and_then(|t| demos::metrics::value(t, "streamhouse_partitions_led").ok())
                .unwrap_or(0.0);
            println!(
                "  {:<8}  {:5.1}   {:7.1}   {:12.1}   {:>14}",
                a.id,
                (u1.cpu - u0.cpu).as_secs_f64() / secs * 100.0,
                u1.rss_kib as f64 / 1024.0,
                u1.peak_kib as f64 / 1024.0,
                led
            );
        }
        let xacts = (now.xacts - from.xacts) as f64 / secs;
        // Calls of the agents running at both marks.
        let mut by_op: BTreeMap<&str, f64> = BTreeMap::new();
        for (agent, of_now) in &now.calls {
            let Some(of_from) = from.calls.get(agent) else {
                continue;
            };
            for (op, n) in of_now {
                *by_op.entry(op).or_default() += (n - of_from.get(op).unwrap_or(&0.0)) / secs;
            }
        }
        let mut ops: Vec<(String, f64)> = by_op
            .into_iter()
            .filter(|(_, r)| *r > 0.0)
            .map(|(op, r)| (op.to_string(), r))
            .collect();
        ops.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = ops.iter().map(|(_, r)| r).sum();
        let pg_cpu: Duration = now
            .postgres_cpu
            .iter()
            .map(|(pid, t)| {
                t.saturating_sub(from.postgres_cpu.get(pid).copied().unwrap_or_default())
            })
            .sum();
        let pg = pg_cpu.as_secs_f64() / secs * 100.0;
        println!(
            "  metadata store: {xacts:.1} transactions/s and {pg:.1}% CPU (PostgreSQL), {total:.1} calls/s from the agents"
        );
        let top: Vec<String> = ops
            .iter()
            .take(8)
            .map(|(op, r)| format!("{op} {r:.1}"))
            .collect();
        println!("  calls/s by operation: {}", top.join(", "));
        Ok(now)
    }

    /// The cluster as the agents describe it. A busy store may time a description out:
    /// that is retried, for up to a minute, and counted.
    async fn describe(admin: &Admin) -> anyhow::Result<ClusterDescription> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match admin.describe_cluster().await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("describing the cluster failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits until every running agent has finished `n` maintenance passes since it started.
    async fn maintenance_passes(&self, n: f64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        for a in &self.agents {
            loop {
                let text = scrape(a.metrics)?;
                let passes = demos::metrics::value(&text, "streamhouse_maintenance_seconds_count")?;
                if passes >= n {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} made {passes} maintenance passes in 300 s",
                    a.id
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }
}

/// A value of `len` bytes starting with `id` (big-endian), then JSON-like text.
fn tagged(id: u64, len: usize) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&demos::value(id, len - 8));
    v
}

/// Acknowledged records by id, and ack latencies.
#[derive(Default)]
struct Acks {
    acked: Vec<u64>,
    failed: u64,
    /// Deliveries whose outcome is not recorded yet.
    pending: u64,
    latency: Option<hdrhistogram::Histogram<u64>>,
}

/// The produce load: `rate` records/s, each to the next partition in turn, values starting
/// with a unique id; each acknowledged id is recorded.
struct Load {
    producer: Producer,
    topics: Arc<Vec<String>>,
    per_topic: u32,
    rate: u64,
    value_size: usize,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    acks: Arc<Mutex<Acks>>,
}

/// Runs `load` until `stop`.
async fn load(load: Load, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let Load {
        producer,
        topics,
        per_topic,
        rate,
        value_size,
        next_id,
        acks,
    } = load;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total_partitions = u64::from(per_topic) * topics.len() as u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let slot = id % total_partitions;
            let topic = &topics[(slot / u64::from(per_topic)) as usize];
            let partition = (slot % u64::from(per_topic)) as u32;
            let value = tagged(id, value_size);
            let sent_at = Instant::now();
            let delivery = producer
                .send_record(topic, Some(partition), None, Some(&value), &[], None)
                .await?;
            let acks = acks.clone();
            acks.lock().unwrap_or_else(|p| p.into_inner()).pending += 1;
            tokio::spawn(async move {
                let result = delivery.await;
                let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
                a.pending -= 1;
                match result {
                    Ok(_) => {
                        a.acked.push(id);
                        if let Some(h) = a.latency.as_mut() {
                            let _ = h.record(sent_at.elapsed().as_micros() as u64);
                        }
                    }
                    Err(_) => a.failed += 1,
                }
            });
            sent += 1;
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.agents >= 2, "--agents: at least 2, one to kill");
    anyhow::ensure!(
        args.topics >= 1
            && args.partitions >= args.topics
            && args.partitions.is_multiple_of(args.topics),
        "--partitions must be a multiple of --topics"
    );
    anyhow::ensure!(args.value_size >= 8, "--value-size must hold an 8-byte id");
    anyhow::ensure!(
        args.read_slice >= 1,
        "--read-slice: at least 1 partition at a time"
    );
    let per_topic = args.partitions / args.topics;
    let tag = format!(
        "{}{}",
        std::process::id(),
        streamhouse_proto::time::now_ms() % 100_000
    );
    let db_name = format!("streamhouse_scale_{tag}");
    let mut admin_db = PgConnection::connect(&args.postgres).await?;
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin_db)
        .await?;
    let metadata = {
        let mut url = url::Url::parse(&args.postgres)?;
        url.set_path(&db_name);
        url.to_string()
    };
    let storage = format!("s3://streamhouse-scale-{tag}?endpoint={}", args.s3_endpoint);
    // The agents' logs stay after the run, for what went wrong or slow.
    let logs = tempfile::Builder::new()
        .prefix("streamhouse-scale-")
        .tempdir()?
        .keep();
    let mut flags = vec![
        "--create-bucket".to_string(),
        "--maintenance-interval-ms".to_string(),
        args.maintenance_interval_ms.to_string(),
        "--gc-interval-ms".to_string(),
        args.gc_interval_ms.to_string(),
    ];
    for (flag, value) in [
        ("--lease-ttl-ms", args.lease_ttl_ms),
        ("--heartbeat-ms", args.heartbeat_ms),
    ] {
        if let Some(v) = value {
            flags.extend([flag.to_string(), v.to_string()]);
        }
    }
    println!(
        "scale benchmark: {} agents on PostgreSQL (database {db_name}) and S3 ({}), {} topics x {per_topic} = {} partitions, {} records/s of {} B, agent flags {}",
        args.agents,
        args.s3_endpoint,
        args.topics,
        args.partitions,
        args.rate,
        args.value_size,
        flags.join(" ")
    );
    let mut spec = ClusterSpec::on_stores(&metadata, &storage, &flags);
    spec.logs = Some(logs.clone());
    let mut cluster = LocalCluster::new(spec);
    let started = Instant::now();
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let id = format!("agent-{i}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let listen = port.to_string();
        cluster.spawn_with(&id, &["--metrics-listen", &listen])?;
        agents.push(Watched {
            pid: cluster.agents[&id].pid(),
            id,
            metrics: port,
        });
    }
    println!(
        "{} agents serving after {:.1} s (logs under {})",
        args.agents,
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    let db = PgConnection::connect(&metadata).await?;
    let mut bench = Bench {
        db,
        db_name: db_name.clone(),
        tick_hz: demos::tick_hz(),
        agents,
        args,
    };
    let outcome = measure(&mut bench, &mut cluster, per_topic).await;
    let stopped = tokio::task::spawn_blocking(move || cluster.stop_all()).await?;
    drop(bench.db);
    if !bench.args.keep_database {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .execute(&mut admin_db)
            .await;
    }
    outcome?;
    stopped
}

async fn measure(
    bench: &mut Bench,
    cluster: &mut LocalCluster,
    per_topic: u32,
) -> anyhow::Result<()> {
    let bootstrap = cluster.bootstrap();
    let admin = Admin::connect_with_timeout(&bootstrap, Duration::from_secs(60)).await?;
    let args_topics = bench.args.topics;
    let topics: Arc<Vec<String>> =
        Arc::new((0..args_topics).map(|t| format!("scale-{t}")).collect());

    // Creating the topics, and every lease taken.
    let from = bench.mark().await?;
    let created = Instant::now();
    for t in topics.iter() {
        let at = Instant::now();
        admin.create_topic(NewTopic::new(t, per_topic)).await?;
        println!(
            "created {t} ({per_topic} partitions) in {} ms",
            at.elapsed().as_millis()
        );
    }
    let create_ms = created.elapsed().as_millis();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let c = Bench::describe(&admin).await?;
        let leaderless = c
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader_id.is_none())
            .count();
        if leaderless == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{leaderless} partitions still had no leader 300 s after creation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "topics created in {create_ms} ms; every lease taken {} ms after the first create",
        created.elapsed().as_millis()
    );
    let mark = bench
        .report("creating and taking the leases", &from)
        .await?;
    drop(mark);

    // Idle, once every agent has looked at each of its partitions once (a new lease's first
    // maintenance pass reads its state; later passes over idle partitions ask nothing).
    let settle = bench.mark().await?;
    bench.maintenance_passes(2.0).await?;
    bench.report("first maintenance passes", &settle).await?;
    let from = bench.mark().await?;
    tokio::time::sleep(Duration::from_secs(bench.args.idle_seconds)).await;
    bench.report("idle", &from).await?;

    // Load.
    let producer = Producer::builder().bootstrap(&bootstrap).build().await?;
    let acks = Arc::new(Mutex::new(Acks::default()));
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loader = tokio::spawn(load(
        Load {
            producer: producer.clone(),
            topics: topics.clone(),
            per_topic,
            rate: bench.args.rate,
            value_size: bench.args.value_size,
            next_id: next_id.clone(),
            acks: acks.clone(),
        },
        stop_rx,
    ));
    // Let the producer learn every leader before the measured phase.
    tokio::time::sleep(Duration::from_secs(5)).await;
    acks.lock().unwrap_or_else(|p| p.into_inner()).latency = Some(hdrhistogram::Histogram::new(3)?);
    let from = bench.mark().await?;
    tokio::time::sleep(Duration::from_secs(bench.args.load_seconds)).await;
    let before_kill = bench
        .report(
            &format!("under load ({} records/s)", bench.args.rate),
            &from,
        )
        .await?;
    {
        let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = a.latency.take() {
            println!(
                "  acknowledgement latency: {} ({} acknowledged, {} failed so far)",
                demos::percentiles_ms(&h),
                a.acked.len(),
                a.failed
            );
        }
    }

    // Kill the agent leading the most partitions.
    let c = Bench::describe(&admin).await?;
    let mut led: HashMap<String, Vec<(String, u32)>> = HashMap::new();
    for t in &c.topics {
        for p in &t.partitions {
            if let Some(l) = &p.leader_id {
                led.entry(l.clone())
                    .or_default()
                    .push((t.name.clone(), p.partition));
            }
        }
    }
    let (victim, affected) = led
        .into_iter()
        .max_by_key(|(id, v)| (v.len(), std::cmp::Reverse(id.clone())))
        .ok_or_else(|| anyhow::anyhow!("no partition has a leader"))?;
    let killed = Instant::now();
    cluster.kill9(&victim)?;
    println!(
        "\nkill -9 {victim}, leading {} partitions, under load",
        affected.len()
    );
    // One probe record to each partition it led, sent right after the kill.
    let probes: Arc<Mutex<Vec<Option<Duration>>>> =
        Arc::new(Mutex::new(vec![None; affected.len()]));
    let mut probe_tasks = Vec::new();
    for (i, (topic, partition)) in affected.iter().enumerate() {
        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let value = tagged(id, bench.args.value_size);
        let delivery = producer
            .send_record(topic, Some(*partition), None, Some(&value), &[], None)
            .await?;
        let probes = probes.clone();
        let acks = acks.clone();
        probe_tasks.push(tokio::spawn(async move {
            let ok = delivery.await.is_ok();
            let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
            if ok {
                a.acked.push(id);
                probes.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(killed.elapsed());
            } else {
                a.failed += 1;
            }
        }));
    }
    let wanted: std::collections::HashSet<(String, u32)> = affected.iter().cloned().collect();
    let led_again = loop {
        let c = Bench::describe(&admin).await?;
        let waiting = c
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(t, p)| wanted.contains(&(t.name.clone(), p.partition)))
            .filter(|(_, p)| p.leader_id.as_deref().is_none_or(|l| l == victim))
            .count();
        if waiting == 0 {
            break killed.elapsed();
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(120),
            "{waiting} partitions of {victim} still unled 120 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for t in probe_tasks {
        t.await?;
    }
    let mut acked_after: Vec<Duration> = probes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flatten()
        .copied()
        .collect();
    acked_after.sort_unstable();
    let unacked = affected.len() - acked_after.len();
    println!(
        "  every partition led again after {} ms; a record sent just after the kill acknowledged on all of them after {} ms (median {} ms){}",
        led_again.as_millis(),
        acked_after.last().map_or(0, |d| d.as_millis()),
        acked_after
            .get(acked_after.len() / 2)
            .map_or(0, |d| d.as_millis()),
        if unacked > 0 {
            format!("; {unacked} probes failed")
        } else {
            String::new()
        }
    );
    tokio::time::sleep(Duration::from_secs(bench.args.after_seconds)).await;
    bench.report("after the kill", &before_kill).await?;
    let _ = stop_tx.send(true);
    loader.await??;
    producer.flush().await?;
    producer.close().await?;
    // Deliveries are recorded by their own tasks: wait until the last of them has.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.lock().unwrap_or_else(|p| p.into_inner()).pending > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "deliveries unrecorded 60 s after close"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Read everything back.
    let (acked, failed) = {
        let a = acks.lock().unwrap_or_else(|p| p.into_inner());
        (a.acked.clone(), a.failed)
    };
    let read_from = Instant::now();
    let c = Bench::describe(&admin).await?;
    let stored: i64 = c
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.high_watermark - p.log_start_offset)
        .sum();
    // A consumer fetches each partition on its own: assigned all 10,000 at once, the fresh
    // leaders' first fetches (one index query each) swamp the store on this machine. Read
    // in slices of --read-slice partitions instead.
    let all: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| (0..per_topic).map(move |p| TopicPartition::new(t.as_str(), p)))
        .collect();
    let ends: HashMap<(String, u32), (i64, i64)> = c
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.clone(), p.partition),
                    (p.log_start_offset, p.high_watermark),
                )
            })
        })
        .collect();
    let mut seen: HashMap<u64, u32> = HashMap::with_capacity(acked.len());
    let mut read = 0i64;
    let deadline = Instant::now() + Duration::from_secs(600);
    for slice in all.chunks(bench.args.read_slice) {
        let mut consumer = Consumer::builder()
            .bootstrap(&bootstrap)
            .auto_offset_reset(OffsetReset::Earliest)
            .fetch_max_wait_ms(100)
            .build()
            .await?;
        consumer.assign(slice.to_vec()).await?;
        let want: i64 = slice
            .iter()
            .map(|tp| {
                let (start, end) = ends[&(tp.topic.clone(), tp.partition)];
                end - start
            })
            .sum::<i64>();
        let mut got = 0i64;
        while got < want {
            anyhow::ensure!(Instant::now() < deadline, "read-back took over 600 s");
            for r in consumer.poll(Duration::from_millis(500)).await? {
                if r.offset >= ends[&(r.topic.to_string(), r.partition)].1 {
                    continue;
                }
                got += 1;
                let v = r.value.unwrap_or_default();
                anyhow::ensure!(v.len() >= 8, "a record of {} B is not ours", v.len());
                let id = u64::from_be_bytes(v[..8].try_into()?);
                *seen.entry(id).or_default() += 1;
            }
        }
        read += got;
        consumer.close().await?;
    }
    let lost = acked.iter().filter(|id| !seen.contains_key(id)).count();
    let twice = seen.values().filter(|n| **n > 1).count();
    println!(
        "  {} records acknowledged, {failed} failed, {stored} stored, {read} read in {:.1} s; acknowledged records lost: {lost}; stored twice: {twice}",
        acked.len(),
        read_from.elapsed().as_secs_f64()
    );

    // Maintenance and garbage collection, as the agents timed them.
    println!("\nmaintenance and garbage-collection passes over the whole run");
    let end = bench.mark().await?;
    for a in &bench.agents {
        let Some(text) = end.scrapes.get(&a.id) else {
            println!("  {:<8}  (killed; its passes are not counted)", a.id);
            continue;
        };
        let m = Histogram::parse(text, "streamhouse_maintenance_seconds")?;
        let g = Histogram::parse(text, "streamhouse_gc_seconds")?;
        println!(
            "  {:<8}  maintenance: {}\n            GC:          {}",
            a.id,
            m.describe(),
            g.describe()
        );
    }
    anyhow::ensure!(lost == 0, "{lost} acknowledged records were lost");
    anyhow::ensure!(twice == 0, "{twice} records were stored twice");
    Ok(())
}
