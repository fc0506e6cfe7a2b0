//! Sends 10,000 click events keyed by `user-{i % 100}` to the topic `clicks` and prints the
//! throughput.
//!
//! `cargo run --release -p demos --example producer_demo [-- --bootstrap HOST:PORT]`
//!
//! Without `--bootstrap` it starts an agent in this process on `./streamhouse-data`, the same
//! stores `streamhouse-agent` and `consumer_demo` use by default.

use std::time::Instant;

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target};
use streamhouse_client::{Admin, ClientError, NewTopic, Producer};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = "clicks")]
    topic: String,
    #[arg(long, default_value_t = 10_000)]
    events: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Target::connect(args.bootstrap, Storage::Dir("./streamhouse-data".into())).await?;
    match Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone())
        .await?
        .create_topic(NewTopic::new(&args.topic, 4))
        .await
    {
        Ok(_) | Err(ClientError::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .build()
        .await?;
    let pages = ["/", "/search", "/product/42", "/cart", "/checkout"];
    let start = Instant::now();
    let mut last = None;
    for i in 0..args.events {
        let user = format!("user-{}", i % 100);
        let event = format!(
            r#"{{"user":"{user}","page":"{}","seq":{i}}}"#,
            pages[(i % 5) as usize]
        );
        last = Some(
            producer
                .send(&args.topic, Some(user.as_bytes()), event.as_bytes())
                .await?,
        );
    }
    producer.flush().await?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(last) = last {
        let m = last.await?;
        println!("last event: partition {} offset {}", m.partition, m.offset);
    }
    producer.close().await?;
    println!(
        "sent {} click events to {:?} in {:.3} s: {:.0} events/s",
        args.events,
        args.topic,
        secs,
        args.events as f64 / secs
    );
    target.shutdown().await?;
    Ok(())
}
