//! Kafka clients against StreamHouse, beside StreamHouse's own client, on one agent and one
//! run: produce and consume throughput through librdkafka (`kcat`, Debian's package), and
//! acknowledgement latency at a fixed rate through librdkafka (`confluent-kafka` from PyPI,
//! `demos/kafka_benchmark.py`), each next to the same measurement with `streamhouse-client`.
//!
//! `cargo run --release -p demos --example kafka_benchmark [-- --records 2000000]`
//!
//! Both producers are idempotent, linger 5 ms and compress with LZ4 (librdkafka's LZ4 frames,
//! StreamHouse's LZ4 block); values are the same 100 B of JSON-like text, keyed over 1,000
//! keys, into topics of `--partitions` partitions. The consumers read every record back from
//! the start of every partition. Latency is from the send call to the acknowledgement, at
//! `--rate` records per second for `--seconds`. The target of issue 16 is librdkafka at 70% of
//! StreamHouse's client or better, for produce and for consume.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target, Workload, percentiles_ms, values};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};

#[derive(Debug, Parser)]
#[command(about = "librdkafka against StreamHouse, beside StreamHouse's client")]
struct Args {
    #[command(flatten)]
    workload: Workload,
    /// With `--bootstrap`: the agents' Kafka addresses.
    #[arg(long)]
    kafka_bootstrap: Option<String>,
    /// Records per second for the latency runs.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds each latency run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let w = &args.workload;
    let target = Target::connect(w.bootstrap.clone(), Storage::Temporary).await?;
    let kafka = args
        .kafka_bootstrap
        .clone()
        .or_else(|| target.kafka_bootstrap.clone())
        .ok_or_else(|| anyhow::anyhow!("give --kafka-bootstrap with --bootstrap"))?;
    let admin =
        Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone()).await?;
    let run = std::process::id();
    let topic = |what: &str| format!("kafka-bench-{what}-{run}");
    for t in ["ours", "theirs", "ours-lat", "theirs-lat"] {
        admin
            .create_topic(NewTopic::new(topic(t), w.partitions))
            .await?;
    }
    let vals = values(1024, w.value_size, false);
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();

    // Throughput, each client producing then reading back its own records (so both read
    // from a warm cache): StreamHouse's client first, then librdkafka's from a file of the
    // same records.
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .build()
        .await?;
    let start = Instant::now();
    for i in 0..w.records {
        let key = &keys[(i % 1000) as usize];
        producer
            .send(
                &topic("ours"),
                Some(key.as_bytes()),
                &vals[(i % 1024) as usize],
            )
            .await?;
    }
    producer.flush().await?;
    let ours_produce = w.records as f64 / start.elapsed().as_secs_f64();

    // Every record back from the start of every partition.
    let mut consumer = Consumer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(10_000)
        .max_partition_fetch_bytes(4 * 1024 * 1024)
        .build()
        .await?;
    let start = Instant::now();
    consumer
        .assign(
            (0..w.partitions)
                .map(|p| TopicPartition::new(topic("ours"), p))
                .collect(),
        )
        .await?;
    let mut n = 0u64;
    while n < w.records {
        n += consumer.poll(Duration::from_secs(5)).await?.len() as u64;
        anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "read only {n}");
    }
    let ours_consume = w.records as f64 / start.elapsed().as_secs_f64();
    consumer.close().await?;

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("records.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..w.records {
            f.write_all(keys[(i % 1000) as usize].as_bytes())?;
            f.write_all(b"\t")?;
            f.write_all(&vals[(i % 1024) as usize])?;
            f.write_all(b"\n")?;
        }
    }
    let path = file.to_str().unwrap_or_default();
    let start = Instant::now();
    kcat(&[
        "-P",
        "-b",
        &kafka,
        "-t",
        &topic("theirs"),
        "-K",
        "\t",
        "-l",
        path,
        "-X",
        "enable.idempotence=true",
        "-X",
        "linger.ms=5",
        "-X",
        "compression.codec=lz4",
        "-X",
        "partitioner=murmur2_random",
    ])?;
    let theirs_produce = w.records as f64 / start.elapsed().as_secs_f64();

    // Until the last record, as ours (`-e` would add the long poll that finds the end).
    let count = w.records.to_string();
    let start = Instant::now();
    let out = kcat(&[
        "-C",
        "-b",
        &kafka,
        "-t",
        &topic("theirs"),
        "-o",
        "beginning",
        "-c",
        &count,
        "-q",
        "-f",
        "\n",
        "-X",
        "max.partition.fetch.bytes=4194304",
    ])?;
    let theirs_consume = w.records as f64 / start.elapsed().as_secs_f64();
    let read = out.iter().filter(|b| **b == b'\n').count() as u64;
    anyhow::ensure!(
        read == w.records,
        "kcat read {read} of {} records",
        w.records
    );

    // Acknowledgement latency at a fixed rate: ours, then librdkafka's.
    let total = args.rate * args.seconds;
    let (tx, collector) = demos::ack_timer();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let key = &keys[(i % 1000) as usize];
        let sent = Instant::now();
        let d = producer
            .send(
                &topic("ours-lat"),
                Some(key.as_bytes()),
                &vals[(i % 1024) as usize],
            )
            .await?;
        let _ = tx.send((sent, d));
    }
    drop(tx);
    let ours_latency = collector.await??;
    producer.close().await?;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka_benchmark.py");
    let out = Command::new("python3")
        .args([
            script,
            "--bootstrap",
            &kafka,
            "--topic",
            &topic("theirs-lat"),
        ])
        .args([
            "--rate",
            &args.rate.to_string(),
            "--seconds",
            &args.seconds.to_string(),
        ])
        .args(["--value-size", &w.value_size.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "demos/kafka_benchmark.py failed (pip install confluent-kafka)"
    );
    let theirs_latency = String::from_utf8_lossy(&out.stdout).trim().to_string();

    println!("kafka_benchmark: {}, idempotent, LZ4", w.describe());
    let ratio = |a: f64, b: f64| 100.0 * a / b;
    println!(
        "  produce:  streamhouse-client {ours_produce:.0} records/s, librdkafka (kcat) \
         {theirs_produce:.0} records/s: {:.0}% (target >= 70%)",
        ratio(theirs_produce, ours_produce)
    );
    println!(
        "  consume:  streamhouse-client {ours_consume:.0} records/s, librdkafka (kcat) \
         {theirs_consume:.0} records/s: {:.0}% (target >= 70%)",
        ratio(theirs_consume, ours_consume)
    );
    println!(
        "  ack latency at {} records/s for {} s:",
        args.rate, args.seconds
    );
    println!(
        "    streamhouse-client:           {}",
        percentiles_ms(&ours_latency)
    );
    println!("    librdkafka (confluent-kafka): {theirs_latency}");
    println!("{}", target.peak_rss_line());
    target.shutdown().await?;
    Ok(())
}

/// Runs kcat to its end; its stdout.
fn kcat(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("kcat")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| anyhow::anyhow!("kcat: {e} (apt-get install kcat)"))?;
    anyhow::ensure!(out.status.success(), "kcat {args:?} failed");
    Ok(out.stdout)
}
