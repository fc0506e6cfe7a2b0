//! Consumer throughput.
//!
//! `cargo run --release -p demos --example consumer_benchmark [-- --bootstrap HOST:PORT]`
//!
//! Produces `--records` records of `--value-size` bytes to a new topic, then (when it started
//! the agent itself) restarts the agent so nothing is in its cache, and reads every partition
//! from the beginning. Prints records/s and MB/s of values for the read alone.

use std::time::{Duration, Instant};

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target, Workload, values};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};

#[derive(Debug, Parser)]
#[command(about = "Consumer throughput, reading from storage")]
struct Args {
    #[command(flatten)]
    workload: Workload,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let w = &args.workload;
    let mut target = Target::connect(w.bootstrap.clone(), Storage::Temporary).await?;
    let topic = format!("consumer-bench-{}", std::process::id());
    Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone())
        .await?
        .create_topic(NewTopic::new(&topic, w.partitions))
        .await?;
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .build()
        .await?;
    let vals = values(1024, w.value_size, w.incompressible);
    for i in 0..w.records {
        producer
            .send(&topic, None, &vals[(i % 1024) as usize])
            .await?;
    }
    producer.close().await?;
    let cold = target.restart().await?;

    let mut consumer = Consumer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(10_000)
        .max_partition_fetch_bytes(4 * 1024 * 1024)
        .build()
        .await?;
    let tps = (0..w.partitions)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();
    // The clock starts before `assign`, which starts the background prefetch.
    let start = Instant::now();
    consumer.assign(tps).await?;
    let mut n = 0u64;
    let mut value_bytes = 0u64;
    while n < w.records {
        for r in consumer.poll(Duration::from_secs(5)).await? {
            value_bytes += r.value.map_or(0, |v| v.len() as u64);
            n += 1;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "read only {n} records"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    consumer.close().await?;
    println!(
        "consumer_benchmark: {}, read {}",
        w.describe(),
        if cold {
            "after an agent restart (cold cache, from storage)"
        } else {
            "from the given cluster"
        }
    );
    println!(
        "  throughput: {:.0} records/s, {:.1} MB/s of values ({:.2} s)",
        n as f64 / secs,
        value_bytes as f64 / secs / 1e6,
        secs
    );
    println!("{}", target.peak_rss_line());
    target.shutdown().await?;
    Ok(())
}
