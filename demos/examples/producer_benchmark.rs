//! Producer throughput and acknowledgement latency.
//!
//! `cargo run --release -p demos --example producer_benchmark [-- --bootstrap HOST:PORT]`
//!
//! Sends `--records` records of `--value-size` bytes, keyed over 1,000 keys, to a new topic of
//! `--partitions` partitions from one task awaiting each `send` (so back-pressure, not the
//! loop, sets the pace), then waits for every acknowledgement. Prints records/s, MB/s of
//! values, and the acknowledgement latency (send to ack) of every `--sample`-th record.

use std::time::Instant;

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target, Workload, percentiles_ms, values};
use streamhouse_client::{Admin, NewTopic, Producer};

#[derive(Debug, Parser)]
#[command(about = "Producer throughput and acknowledgement latency")]
struct Args {
    #[command(flatten)]
    workload: Workload,
    /// Measure the latency of one record in this many.
    #[arg(long, default_value_t = 8)]
    sample: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let w = &args.workload;
    let target = Target::connect(w.bootstrap.clone(), Storage::Temporary).await?;
    let topic = format!("producer-bench-{}", std::process::id());
    Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone())
        .await?
        .create_topic(NewTopic::new(&topic, w.partitions))
        .await?;
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .enable_idempotence(!w.no_idempotence)
        .build()
        .await?;

    // Values and keys are made before the clock starts.
    let values = values(1024, w.value_size, w.incompressible);
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();

    let (tx, collector) = demos::ack_timer();

    let start = Instant::now();
    for i in 0..w.records {
        let key = &keys[(i % 1000) as usize];
        let d = producer
            .send(&topic, Some(key.as_bytes()), &values[(i % 1024) as usize])
            .await?;
        if i % args.sample == 0 {
            let _ = tx.send((Instant::now(), d));
        }
    }
    let sent_in = start.elapsed();
    let flushed = producer.flush().await;
    let elapsed = start.elapsed();
    drop(tx);
    let h = collector.await??;
    flushed?;
    producer.close().await?;

    let secs = elapsed.as_secs_f64();
    println!("producer_benchmark: {}", w.describe());
    println!(
        "  enqueued in {:.2} s; all acknowledged after {:.2} s",
        sent_in.as_secs_f64(),
        secs
    );
    println!(
        "  throughput: {:.0} records/s, {:.1} MB/s of values",
        w.records as f64 / secs,
        (w.records as f64 * w.value_size as f64) / secs / 1e6
    );
    println!(
        "  ack latency (1 in {}): {}",
        args.sample,
        percentiles_ms(&h)
    );
    println!("{}", target.peak_rss_line());
    target.shutdown().await?;
    Ok(())
}
