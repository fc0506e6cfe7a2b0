//! Failover, measured: under steady produce load on a local cluster of agent processes, kill
//! a partition leader with `kill -9` ten times (restarting it after each), and print for each
//! kill the time from the kill until a record sent after it is acknowledged on every affected
//! partition; then the median and maximum, and the count of acknowledged records lost.
//!
//! `cargo run --release -p demos --example failover_benchmark`

use clap::Parser;
use demos::failover::{self, Options};

#[derive(Debug, Parser)]
#[command(about = "Kill partition leaders under load and measure the time to recover")]
struct Args {
    #[command(flatten)]
    opts: Options,
    /// How many kills.
    #[arg(long, default_value_t = 10)]
    kills: usize,
}

fn main() -> anyhow::Result<()> {
    // The agents this starts are this program again, in agent mode, with their own runtime.
    streamhouse_agent::process::run_if_agent();
    tokio::runtime::Runtime::new()?.block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "failover benchmark: {} agents, {} partitions, {} records/s, lease TTL {} ms, heartbeat {} ms, {} kills",
        args.opts.agents,
        args.opts.partitions,
        args.opts.rate,
        args.opts.lease_ttl_ms,
        args.opts.heartbeat_ms,
        args.kills
    );
    let start = std::time::Instant::now();
    let progress =
        move |line: String| eprintln!("[{:6.2} s] {line}", start.elapsed().as_secs_f64());
    let out = failover::run(&args.opts, args.kills, &progress).await?;
    println!("kill  victim    partitions    new leader after  first ack after");
    let mut acks: Vec<u128> = Vec::new();
    for (i, k) in out.kills.iter().enumerate() {
        let ms = k.first_ack_after.as_millis();
        acks.push(ms);
        println!(
            "{:>4}  {:<8}  {:<12}  {:>13} ms  {:>12} ms",
            i + 1,
            k.victim,
            format!("{:?}", k.affected),
            k.leaders_after.as_millis(),
            ms
        );
    }
    acks.sort_unstable();
    let median = if acks.is_empty() {
        0
    } else if acks.len() % 2 == 1 {
        acks[acks.len() / 2]
    } else {
        (acks[acks.len() / 2 - 1] + acks[acks.len() / 2]) / 2
    };
    println!(
        "time from kill to first acknowledgement: median {median} ms, max {} ms",
        acks.last().copied().unwrap_or(0)
    );
    println!(
        "records: {} sent, {} acknowledged, {} failed; acknowledged records lost: {}; stored twice: {}; {:.0} s",
        out.sent,
        out.acked,
        out.failed,
        out.lost,
        out.duplicated,
        out.elapsed.as_secs_f64()
    );
    anyhow::ensure!(out.lost == 0, "acknowledged records were lost");
    Ok(())
}
