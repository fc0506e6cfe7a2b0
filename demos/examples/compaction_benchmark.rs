//! Compaction and garbage collection: how fast a partition's flush chunks are merged into
//! segments, what that leaves in the object store and the index, and how fast consumers then
//! read from segments with a cold cache.
//!
//! `cargo run --release -p demos --example compaction_benchmark [-- --records N --partitions P]`
//!
//! Starts its own agent on a temporary directory (maintenance every 200 ms, chunks compacted
//! once 1 s old, a GC grace of 2 s), produces the records, waits until every flush object has
//! been merged away and deleted, prints the object and index-row counts before and after and
//! the compaction rate the agent's own metrics report, then restarts the agent and reads
//! everything back.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use demos::metrics::metric;
use demos::{Workload, values};
use streamhouse_agent::metadata::MetadataStore;
use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};

#[derive(Debug, Parser)]
#[command(about = "Compaction rate, and reads from compacted segments")]
struct Args {
    #[command(flatten)]
    workload: Workload,
    /// Target segment size in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
}

fn config(dir: &Path, segment_bytes: u64) -> anyhow::Result<AgentConfig> {
    let mut c = AgentConfig::embedded(dir, "127.0.0.1:0")?;
    c.metrics_listen = Some("127.0.0.1:0".into());
    c.segment_bytes = segment_bytes;
    c.compaction_age_ms = 1_000;
    c.maintenance_interval_ms = 200;
    c.gc_grace_ms = 2_000;
    c.gc_interval_ms = 500;
    Ok(c)
}

fn count(dir: &Path, prefix: &str) -> (usize, u64) {
    std::fs::read_dir(dir.join("objects").join(prefix))
        .map(|d| {
            d.flatten().fold((0, 0), |(n, b), e| {
                (n + 1, b + e.metadata().map_or(0, |m| m.len()))
            })
        })
        .unwrap_or((0, 0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let w = &args.workload;
    anyhow::ensure!(w.bootstrap.is_none(), "this benchmark starts its own agent");
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let segment_bytes = args.segment_mib * 1024 * 1024;
    let cfg = config(&path, segment_bytes)?;
    let agent = tokio::task::spawn_blocking(move || EmbeddedAgent::start(cfg, 2)).await??;
    let bootstrap = agent.addr().to_string();
    let metrics = agent.metrics_addr().expect("metrics served");
    let topic = "compaction-bench";
    Admin::connect(&bootstrap)
        .await?
        .create_topic(NewTopic::new(topic, w.partitions))
        .await?;
    let producer = Producer::builder().bootstrap(&bootstrap).build().await?;
    let vals = values(1024, w.value_size, w.incompressible);
    let started = Instant::now();
    for i in 0..w.records {
        producer
            .send(topic, None, &vals[(i % 1024) as usize])
            .await?;
    }
    producer.close().await?;
    let produce_secs = started.elapsed().as_secs_f64();
    let meta =
        MetadataStore::connect(&format!("sqlite://{}", path.join("metadata.db").display())).await?;
    let (flush_objects, flush_bytes) = count(&path, "data");
    let rows_before = meta.segment_row_count().await?;

    // Until every flush object is merged away and deleted.
    let waited = Instant::now();
    loop {
        if count(&path, "data").0 == 0 && metric(metrics, "streamhouse_gc_runs_total")? > 0.0 {
            break;
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(600),
            "flush objects still there after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settle_secs = waited.elapsed().as_secs_f64();
    let (segments, segment_bytes_stored) = count(&path, "segments");
    let rows_after = meta.segment_row_count().await?;
    let compacted = metric(metrics, "streamhouse_compaction_bytes_total")?;
    let compaction_secs = metric(metrics, "streamhouse_compaction_seconds_sum")?;
    let compactions = metric(metrics, "streamhouse_compactions_total")?;
    meta.close().await;
    tokio::task::spawn_blocking(move || agent.stop())
        .await?
        .map_err(anyhow::Error::msg)?;

    // Read everything back from segments, with nothing cached.
    let cfg = config(&path, segment_bytes)?;
    let agent = tokio::task::spawn_blocking(move || EmbeddedAgent::start(cfg, 2)).await??;
    let mut consumer = Consumer::builder()
        .bootstrap(agent.addr().to_string())
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(10_000)
        .max_partition_fetch_bytes(4 * 1024 * 1024)
        .build()
        .await?;
    let read_started = Instant::now();
    consumer
        .assign(
            (0..w.partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
        )
        .await?;
    let mut n = 0u64;
    while n < w.records {
        n += consumer.poll(Duration::from_secs(5)).await?.len() as u64;
        anyhow::ensure!(
            read_started.elapsed() < Duration::from_secs(300),
            "read only {n} records"
        );
    }
    let read_secs = read_started.elapsed().as_secs_f64();
    consumer.close().await?;
    tokio::task::spawn_blocking(move || agent.stop())
        .await?
        .map_err(anyhow::Error::msg)?;

    let mb = |b: f64| b / 1e6;
    println!(
        "compaction_benchmark: {}, segments of {} MiB",
        w.describe(),
        args.segment_mib
    );
    println!(
        "  produced in {produce_secs:.1} s: {flush_objects} flush objects ({:.1} MB), {rows_before} index rows",
        mb(flush_bytes as f64)
    );
    println!(
        "  compacted: {compactions} segments, {:.1} MB at {:.0} MB/s ({compaction_secs:.2} s in compaction); \
         every flush object gone {settle_secs:.1} s after the last ack",
        mb(compacted),
        mb(compacted) / compaction_secs.max(1e-9)
    );
    println!(
        "  after: {segments} segment objects ({:.1} MB), {rows_after} index rows",
        mb(segment_bytes_stored as f64)
    );
    println!(
        "  read from segments, cold cache: {:.0} records/s",
        w.records as f64 / read_secs
    );
    Ok(())
}
