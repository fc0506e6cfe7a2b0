//! Rebalance time with default group settings (10 s session, 1 s heartbeat): under steady
//! produce load on a 6-partition topic with three members, a fourth member joins, then a
//! member leaves gracefully, `--rounds` times. Each time it measures from the join or leave
//! until every partition is owned and every partition that moved has given records to its
//! new owner.
//!
//! `cargo run --release -p demos --example rebalance_benchmark [-- --rounds 5]`

use std::time::{Duration, Instant};

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target};
use streamhouse_client::{Admin, Consumer, NewTopic, Producer};
use streamhouse_tui::scenario::{Ending, Member, MemberEvent, Owners, follow};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Records per second produced throughout.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
}

const TOPIC: &str = "rebalance-bench";
const GROUP: &str = "rebalance-bench";
const PARTITIONS: u32 = 6;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Target::connect(args.bootstrap, Storage::Temporary).await?;
    let admin =
        Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone()).await?;
    admin.create_topic(NewTopic::new(TOPIC, PARTITIONS)).await?;
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .build()
        .await?;
    let rate = args.rate;
    let load = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut i = 0u64;
        loop {
            tick.tick().await;
            for _ in 0..(rate / 100).max(1) {
                let _ = producer
                    .send(TOPIC, Some(format!("k{}", i % 997).as_bytes()), b"payload")
                    .await;
                i += 1;
            }
        }
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut owners = Owners::default();
    let mut next = 0usize;
    let mut spawn = |tx: &mpsc::UnboundedSender<MemberEvent>| {
        next += 1;
        Member::spawn(
            Consumer::builder()
                .bootstrap(&target.bootstrap)
                .security(target.security.clone()),
            GROUP,
            TOPIC,
            &format!("m{next}"),
            tx.clone(),
        )
    };
    let mut members: Vec<Member> = (0..3).map(|_| spawn(&tx)).collect();
    let t0 = Instant::now();
    settle(&mut rx, &mut owners, t0, 3).await?;
    println!(
        "3 members on {PARTITIONS} partitions, {} records/s; default session 10 s, heartbeat 1 s",
        args.rate
    );

    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let at = Instant::now();
        members.push(spawn(&tx));
        let took = settle(&mut rx, &mut owners, at, 4).await?;
        println!(
            "round {round}: a member joined; settled after {} ms",
            took.as_millis()
        );
        joins.push(took);

        let leaving = members.remove(0);
        let at = Instant::now();
        leaving.end(Ending::Leave).await?;
        let took = settle(&mut rx, &mut owners, at, 3).await?;
        println!(
            "round {round}: a member left; settled after {} ms",
            took.as_millis()
        );
        leaves.push(took);
    }
    let summary = |v: &mut Vec<Duration>| {
        v.sort();
        format!(
            "median {} ms, max {} ms",
            v[v.len() / 2].as_millis(),
            v.last().map_or(0, |d| d.as_millis())
        )
    };
    println!("join:  {}", summary(&mut joins));
    println!("leave: {}", summary(&mut leaves));
    load.abort();
    for m in members {
        m.end(Ending::Leave).await?;
    }
    target.shutdown().await?;
    Ok(())
}

/// Follows members' events until `members` members own every partition and every partition
/// assigned since `since` has given its new owner records; returns the time since `since`.
async fn settle(
    rx: &mut mpsc::UnboundedReceiver<MemberEvent>,
    owners: &mut Owners,
    since: Instant,
    members: usize,
) -> anyhow::Result<Duration> {
    let done = |o: &Owners| {
        let live = o.by_member.values().filter(|tps| !tps.is_empty()).count();
        live == members.min(PARTITIONS as usize) && o.settled_since(TOPIC, PARTITIONS, since)
    };
    follow(rx, owners, Duration::from_secs(60), &done, &mut |_| {}).await?;
    Ok(since.elapsed())
}
