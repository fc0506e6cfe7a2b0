//! End-to-end latency at a fixed rate: from `send` to the record arriving at a consumer.
//!
//! `cargo run --release -p demos --example latency_benchmark [-- --rate 10000 --seconds 20]`
//!
//! A producer sends `--rate` records per second, each carrying its send time, for
//! `--seconds`; a consumer in the same process, reading from the end, records how long each
//! took. Prints p50, p99, p99.9 and max, and where the time went, as measured: in the
//! producer (each batch's linger, its wait for a request slot, and the produce requests,
//! from [`Producer::metrics`]) and inside the agent (how long a flush's oldest batch waited
//! for it, the object put, the metadata commit, the whole produce request), from the agent's
//! own histograms over the run: the agent started here, or the one whose metrics address
//! `--metrics` gives.

use std::time::{Duration, Instant};

use clap::Parser;
use demos::metrics::{Histogram, scrape, value};
use demos::{ADMIN_TIMEOUT, Storage, Target, client_percentiles_ms, percentiles_ms};
use streamhouse_client::{Admin, Consumer, NewTopic, Producer, TopicPartition};

#[derive(Debug, Parser)]
struct Args {
    /// Agents to use; without it an agent is started in this process on a temporary directory.
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Turn the producer's idempotence off (at-least-once), to see what it costs.
    #[arg(long)]
    no_idempotence: bool,
    /// The producer's linger.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// With `--bootstrap`: an agent's metrics address (`--metrics-listen`), for the breakdown.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

/// The agent's latency histograms a write passes through, in the order it does.
const STAGES: [(&str, &str); 4] = [
    ("flush wait", "streamhouse_flush_wait_seconds"),
    ("object put", "streamhouse_object_put_seconds"),
    ("metadata commit", "streamhouse_metadata_commit_seconds"),
    ("produce request", "streamhouse_produce_request_seconds"),
];

/// The stages' histograms, and produce requests answered with an error, in one scrape.
fn stages(text: &str) -> anyhow::Result<(Vec<Histogram>, f64)> {
    let stages = STAGES
        .iter()
        .map(|(_, name)| Histogram::parse(text, name))
        .collect::<anyhow::Result<_>>()?;
    Ok((stages, value(text, "streamhouse_produce_errors_total")?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.value_size >= 8,
        "value_size must hold an 8-byte timestamp"
    );
    let total = demos::paced_total(args.rate, args.seconds)?;
    let target = Target::connect(args.bootstrap.clone(), Storage::Temporary).await?;
    let topic = format!("latency-bench-{}", std::process::id());
    Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone())
        .await?
        .create_topic(NewTopic::new(&topic, args.partitions))
        .await?;
    let epoch = Instant::now();

    let mut consumer = Consumer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .fetch_max_wait_ms(500)
        .build()
        .await?;
    let tps = (0..args.partitions)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();
    consumer.assign(tps).await?;
    let reader = tokio::spawn(async move {
        let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
        let deadline = Instant::now() + Duration::from_secs(args.seconds + 60);
        while (h.len()) < total && Instant::now() < deadline {
            for r in consumer.poll(Duration::from_millis(200)).await? {
                let v = r.value.unwrap_or_default();
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&v[..8]);
                let sent = Duration::from_nanos(u64::from_be_bytes(ts));
                h.record((epoch.elapsed() - sent).as_micros() as u64)?;
            }
        }
        consumer.close().await?;
        anyhow::Ok(h)
    });

    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .linger_ms(args.linger_ms)
        .enable_idempotence(!args.no_idempotence)
        .build()
        .await?;
    // Acknowledgement latency of every record, taken when its own delivery completes (not
    // in send order: a record of a slow partition must not delay the timing of the rest),
    // awaited off the sending loop.
    let (ack_tx, acks) = demos::ack_timer();
    let client_before = producer.metrics();
    let metrics = args.metrics.or(target.metrics_addr());
    let before = match metrics {
        Some(addr) => Some(stages(&scrape(addr)?)?),
        None => None,
    };
    let mut value = vec![b'x'; args.value_size];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        while sent < due {
            value[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
            let key = format!("k{}", sent % 1000);
            let sent_at = Instant::now();
            let d = producer.send(&topic, Some(key.as_bytes()), &value).await?;
            let _ = ack_tx.send((sent_at, d));
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    producer.close().await?;
    let client = producer.metrics().since(&client_before);
    drop(ack_tx);
    let acked = acks.await??;
    let h = reader.await??;
    let after = match metrics {
        Some(addr) => Some(stages(&scrape(addr)?)?),
        None => None,
    };
    println!(
        "latency_benchmark: {} records/s for {} s, {} B values, {} partitions, linger {} ms",
        args.rate, args.seconds, args.value_size, args.partitions, args.linger_ms
    );
    println!("  acknowledged (send -> ack):  {}", percentiles_ms(&acked));
    println!("  end-to-end (send -> poll):   {}", percentiles_ms(&h));
    println!("  where the time went, for the record of each batch that waited longest:");
    println!("    in the producer:");
    for (stage, h) in [
        ("linger", &client.linger),
        ("queue", &client.queue),
        ("produce request", &client.request),
    ] {
        println!("      {stage:<16} {}", client_percentiles_ms(h));
    }
    if let (Some((before, errors_before)), Some((after, errors_after))) = (before, after) {
        println!("    inside the agent (its histograms' bucket bounds), within the request:");
        for (((stage, _), a), b) in STAGES.iter().zip(&after).zip(&before) {
            println!("      {stage:<16} {}", a.since(b).describe());
        }
        println!(
            "    produce requests refused as a whole: {}",
            errors_after - errors_before
        );
    }
    anyhow::ensure!(h.len() == total, "received {} of {total} records", h.len());
    target.shutdown().await?;
    Ok(())
}
