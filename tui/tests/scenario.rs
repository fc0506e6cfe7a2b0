//! The console's consumer-group scenario against a real agent process: the members it runs
//! ([`Member`]) and the ownership checker it shows ([`Owners`]) hold up under churn.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use streamhouse_client::{Admin, Consumer, NewTopic, Producer};
use streamhouse_tests::{AgentProcess, Deadline, data_dir};
use streamhouse_tui::scenario::{Ending, Member, MemberEvent, MemberEventKind, Owners};

/// The console binary, run in agent mode.
const BIN: &str = env!("CARGO_BIN_EXE_streamhouse-tui");
const LEASE: [&str; 4] = ["--lease-ttl-ms", "1500", "--heartbeat-ms", "300"];

/// While a producer writes, members join, leave and die; afterwards every record was
/// processed at least once, and the log of members' generations and (member, partition,
/// acquired/released) never shows a partition with two owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_loses_nothing_and_never_doubles_an_owner() {
    let (_dir, path) = data_dir();
    let agent = AgentProcess::start(BIN, &path, &LEASE);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin.create_topic(NewTopic::new("churn", 6)).await.unwrap();
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .build()
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        for i in 0..6_000u32 {
            producer
                .send("churn", Some(format!("k{}", i % 101).as_bytes()), b"x")
                .await
                .unwrap();
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
        producer.close().await.unwrap();
    });

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let timing = (2_000, 200);
    let spawn = |n: usize| {
        Member::spawn_with(
            Consumer::builder().bootstrap(&agent.addr),
            "churners",
            "churn",
            &format!("m{n}"),
            timing,
            tx.clone(),
        )
    };
    let mut members: Vec<Member> = (0..3).map(spawn).collect();
    let mut next = 3;
    // Random joins, leaves and deaths; the seed is printed so a failure can be replayed
    // with STREAMHOUSE_CHURN_SEED.
    let seed: u64 = std::env::var("STREAMHOUSE_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("churn seed {seed}");
    let mut state = seed | 1;
    let steps: Vec<&str> = (0..12)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ["join", "leave", "die"][(state % 3) as usize]
        })
        .collect();
    let mut owners = Owners::default();
    let mut log: Vec<String> = Vec::new();
    let mut seen: BTreeMap<u32, Vec<(i64, i64)>> = BTreeMap::new();
    let follow = |owners: &mut Owners,
                  log: &mut Vec<String>,
                  seen: &mut BTreeMap<u32, Vec<(i64, i64)>>,
                  e: MemberEvent| {
        match &e.kind {
            MemberEventKind::Assigned(tps) => {
                log.extend(tps.iter().map(|tp| format!("{} acquired {tp}", e.member)))
            }
            MemberEventKind::Revoked(tps) | MemberEventKind::Lost(tps) => {
                log.extend(tps.iter().map(|tp| format!("{} released {tp}", e.member)))
            }
            MemberEventKind::Polled(ranges, _) => {
                for (p, lo, hi) in ranges {
                    seen.entry(*p).or_default().push((*lo, *hi));
                }
            }
            MemberEventKind::Gone => log.push(format!("{} gone", e.member)),
            MemberEventKind::Generation(g) => log.push(format!("{} at generation {g}", e.member)),
        }
        if let Err(why) = owners.apply(&e) {
            panic!("{why}; log:\n{}", log.join("\n"));
        }
    };
    for step in steps.iter().copied() {
        let until = Instant::now() + Duration::from_millis(700);
        while let Ok(Some(e)) =
            tokio::time::timeout(until.saturating_duration_since(Instant::now()), rx.recv()).await
        {
            follow(&mut owners, &mut log, &mut seen, e);
        }
        match step {
            "join" => {
                members.push(spawn(next));
                next += 1;
            }
            "leave" if members.len() > 1 => members.remove(0).end(Ending::Leave).await.unwrap(),
            "die" if members.len() > 1 => members.remove(0).end(Ending::Die).await.unwrap(),
            _ => {}
        }
    }
    writer.await.unwrap();

    // The survivors read to the end.
    let t = admin.describe_topic("churn").await.unwrap();
    let hw: BTreeMap<u32, i64> = t
        .partitions
        .iter()
        .map(|p| (p.partition, p.high_watermark))
        .collect();
    assert_eq!(hw.values().sum::<i64>(), 6_000);
    let covered = |seen: &BTreeMap<u32, Vec<(i64, i64)>>| {
        hw.iter().all(|(p, &end)| {
            let mut ranges = seen.get(p).cloned().unwrap_or_default();
            ranges.sort_unstable();
            let mut next = 0;
            for (lo, hi) in ranges {
                if lo > next {
                    return false;
                }
                next = next.max(hi + 1);
            }
            next >= end
        })
    };
    let deadline = Deadline::within(Duration::from_secs(60));
    while !covered(&seen) {
        deadline.check(format_args!("records never processed; seen {seen:?}"));
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            follow(&mut owners, &mut log, &mut seen, e);
        }
    }
    for m in members {
        m.end(Ending::Leave).await.unwrap();
    }
    assert!(
        log.iter().any(|l| l.contains("released")),
        "nothing ever moved: {log:?}"
    );
}
