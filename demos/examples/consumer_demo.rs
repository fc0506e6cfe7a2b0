//! Reads the topic `clicks` from the beginning and prints every event, until no new event has
//! arrived for `--idle-ms`.
//!
//! `cargo run --release -p demos --example consumer_demo [-- --bootstrap HOST:PORT]`
//!
//! Without `--bootstrap` it starts an agent in this process on `./streamhouse-data`, where
//! `producer_demo` wrote.

use std::time::{Duration, Instant};

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target};
use streamhouse_client::{Admin, Consumer, OffsetReset, TopicPartition};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = "clicks")]
    topic: String,
    #[arg(long, default_value_t = 2_000)]
    idle_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Target::connect(args.bootstrap, Storage::Dir("./streamhouse-data".into())).await?;
    let topic = Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone())
        .await?
        .describe_topic(&args.topic)
        .await?;
    let mut consumer = Consumer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await?;
    consumer
        .assign(
            topic
                .partitions
                .iter()
                .map(|p| TopicPartition::new(&args.topic, p.partition))
                .collect(),
        )
        .await?;
    let mut count = 0u64;
    let mut last_seen = Instant::now();
    while last_seen.elapsed() < Duration::from_millis(args.idle_ms) {
        for r in consumer.poll(Duration::from_millis(200)).await? {
            let key = r
                .key
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let value = r
                .value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!("{}-{} @{}  {key}  {value}", r.topic, r.partition, r.offset);
            count += 1;
            last_seen = Instant::now();
        }
    }
    consumer.close().await?;
    println!("read {count} events from {:?}", args.topic);
    target.shutdown().await?;
    Ok(())
}
