//! Three consumers in one group share a 6-partition topic; then one leaves and the group
//! rebalances. Prints each member's partitions as they move, and the group as the agents
//! describe it (members, committed offsets, lag).
//!
//! `cargo run --release -p demos --example consumer_group_demo [-- --bootstrap HOST:PORT]`

use std::time::{Duration, Instant};

use clap::Parser;
use demos::{ADMIN_TIMEOUT, Storage, Target};
use streamhouse_client::{Admin, ClientError, Consumer, NewTopic, Producer};
use streamhouse_tui::scenario::{Ending, Member, MemberEvent, MemberEventKind, Owners, follow};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = "orders")]
    topic: String,
    #[arg(long, default_value = "order-processors")]
    group: String,
}

const PARTITIONS: u32 = 6;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Target::connect(args.bootstrap, Storage::Temporary).await?;
    let admin =
        Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone()).await?;
    match admin
        .create_topic(NewTopic::new(&args.topic, PARTITIONS))
        .await
    {
        Ok(_) | Err(ClientError::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // A steady trickle of orders, so members have something to read and lag to show.
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .build()
        .await?;
    let topic = args.topic.clone();
    let load = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            let key = format!("customer-{}", i % 100);
            let _ = producer
                .send(
                    &topic,
                    Some(key.as_bytes()),
                    format!("order {i}").as_bytes(),
                )
                .await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut members: Vec<Member> = (1..=3)
        .map(|i| {
            Member::spawn(
                Consumer::builder()
                    .bootstrap(&target.bootstrap)
                    .security(target.security.clone()),
                &args.group,
                &args.topic,
                &format!("processor-{i}"),
                tx.clone(),
            )
        })
        .collect();
    println!(
        "three consumers join group {:?} on {} ({PARTITIONS} partitions)",
        args.group, args.topic
    );
    let mut owners = Owners::default();
    wait(&mut rx, &mut owners, started, |o| {
        o.settled_since(&args.topic, PARTITIONS, started) && o.by_member.len() == 3
    })
    .await?;
    show(&owners);

    let leaving = members.remove(1);
    println!(
        "\n{} leaves the group (close: commit, then leave at once)",
        leaving.name
    );
    let left_at = Instant::now();
    leaving.end(Ending::Leave).await?;
    wait(&mut rx, &mut owners, started, |o| {
        o.by_member.len() == 2 && o.settled_since(&args.topic, PARTITIONS, left_at)
    })
    .await?;
    println!(
        "every partition owned and being read again {} ms after the leave",
        left_at.elapsed().as_millis()
    );
    show(&owners);

    let g = admin.describe_group(&args.group).await?;
    println!(
        "\ngroup {}: {}, generation {}, assignor {}",
        g.group_id, g.state, g.generation, g.assignor
    );
    println!(
        "{:<10} {:>4} {:<12} {:>10} {:>10} {:>6}",
        "topic", "part", "owner", "committed", "high wm", "lag"
    );
    for p in &g.partitions {
        let owner = p.owner.as_deref().unwrap_or("-");
        let owner = owner.split('-').take(2).collect::<Vec<_>>().join("-");
        println!(
            "{:<10} {:>4} {:<12} {:>10} {:>10} {:>6}",
            p.tp.topic,
            p.tp.partition,
            owner,
            p.committed.map_or("-".into(), |c| c.to_string()),
            p.high_watermark,
            p.lag
        );
    }
    load.abort();
    for m in members {
        m.end(Ending::Leave).await?;
    }
    target.shutdown().await?;
    Ok(())
}

/// Prints members' events as they come until `done` holds of the owners.
async fn wait(
    rx: &mut mpsc::UnboundedReceiver<MemberEvent>,
    owners: &mut Owners,
    started: Instant,
    done: impl Fn(&Owners) -> bool + Sync,
) -> anyhow::Result<()> {
    let mut print = |e: &MemberEvent| {
        let at = e.at.duration_since(started).as_millis();
        match &e.kind {
            MemberEventKind::Assigned(tps) => {
                println!("[{at:>5} ms] {} assigned {}", e.member, list(tps))
            }
            MemberEventKind::Revoked(tps) => {
                println!("[{at:>5} ms] {} gives up {}", e.member, list(tps))
            }
            MemberEventKind::Lost(tps) => println!("[{at:>5} ms] {} lost {}", e.member, list(tps)),
            MemberEventKind::Gone => println!("[{at:>5} ms] {} is gone", e.member),
            MemberEventKind::Generation(g) => {
                println!("[{at:>5} ms] {} at generation {g}", e.member)
            }
            MemberEventKind::Polled(..) => {}
        }
    };
    follow(rx, owners, Duration::from_secs(60), &done, &mut print).await
}

fn list(tps: &[streamhouse_client::TopicPartition]) -> String {
    tps.iter()
        .map(|tp| tp.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(o: &Owners) {
    for (m, tps) in &o.by_member {
        let tps: Vec<_> = tps.iter().cloned().collect();
        println!("  {m}: {}", list(&tps));
    }
}
