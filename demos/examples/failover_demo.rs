//! Failover, narrated: three agent processes under steady produce and consume load; the
//! leader of a partition is killed with `kill -9`; the demo prints the new leader and its
//! epoch, how long until records are acknowledged again, and how many acknowledged records
//! were lost (always 0).
//!
//! `cargo run --release -p demos --example failover_demo`

use clap::Parser;
use demos::failover::{self, Options};

#[derive(Debug, Parser)]
#[command(about = "Kill a partition leader under load and watch the cluster recover")]
struct Args {
    #[command(flatten)]
    opts: Options,
}

fn main() -> anyhow::Result<()> {
    // The agents this starts are this program again, in agent mode, with their own runtime.
    streamhouse_agent::process::run_if_agent();
    tokio::runtime::Runtime::new()?.block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let say = move |line: String| println!("[{:6.2} s] {line}", start.elapsed().as_secs_f64());
    let out = failover::run(&args.opts, 1, &say).await?;
    let k = &out.kills[0];
    println!();
    println!(
        "killed:                  {} (partitions {:?})",
        k.victim, k.affected
    );
    for (p, leader, epoch) in &k.new_leaders {
        println!("new leader:              partition {p} -> {leader}, epoch {epoch}");
    }
    println!(
        "leases moved after:      {} ms",
        k.leaders_after.as_millis()
    );
    println!(
        "acknowledged again after: {} ms",
        k.first_ack_after.as_millis()
    );
    println!(
        "records:                 {} sent, {} acknowledged, {} failed, {} read while running",
        out.sent, out.acked, out.failed, out.consumed_live
    );
    println!("acknowledged records lost: {}", out.lost);
    println!("records stored twice:      {}", out.duplicated);
    anyhow::ensure!(out.lost == 0, "acknowledged records were lost");
    Ok(())
}
