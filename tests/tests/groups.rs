//! Consumer groups against real agent processes: partitions shared and moved as members
//! join, die and leave, never owned twice; committed offsets surviving a consumer restart
//! and a restart of every agent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamhouse_client::{
    Admin, Consumer, NewTopic, OffsetReset, Producer, RebalanceListener, TopicPartition,
};
use streamhouse_tests::{AgentProcess, Deadline, data_dir};
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");
const LEASE: [&str; 4] = ["--lease-ttl-ms", "1500", "--heartbeat-ms", "300"];

/// What each running consumer owns, as its `poll` loop last saw it.
type Owned = Arc<Mutex<BTreeMap<String, BTreeSet<TopicPartition>>>>;

async fn consumer(addr: &str, group: &str, name: &str) -> Consumer {
    Consumer::builder()
        .bootstrap(addr)
        .group_id(group)
        .client_id(name)
        .session_timeout_ms(3_000)
        .heartbeat_interval_ms(200)
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await
        .unwrap()
}

/// Polls until aborted, publishing the assignment after every poll.
fn run(mut c: Consumer, name: &str, owned: Owned) -> JoinHandle<()> {
    let name = name.to_string();
    tokio::spawn(async move {
        c.subscribe(vec!["jobs".into()]).await.unwrap();
        loop {
            c.poll(Duration::from_millis(50)).await.unwrap();
            let mine: BTreeSet<TopicPartition> = c.assignment().into_iter().collect();
            owned.lock().unwrap().insert(name.clone(), mine);
        }
    })
}

/// Waits until `ok` holds of the owners, checking on every look that no partition has two.
async fn wait_owned(
    owned: &Owned,
    what: &str,
    ok: impl Fn(&BTreeMap<String, BTreeSet<TopicPartition>>) -> bool,
) {
    let deadline = Deadline::within(Duration::from_secs(30));
    loop {
        {
            let o = owned.lock().unwrap();
            let mut seen = BTreeSet::new();
            for tps in o.values() {
                for tp in tps {
                    assert!(seen.insert(tp.clone()), "{tp} owned twice: {o:?}");
                }
            }
            if ok(&o) {
                return;
            }
            deadline.check(format_args!("{what}: {o:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sizes(o: &BTreeMap<String, BTreeSet<TopicPartition>>, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| o.get(*n).map_or(0, BTreeSet::len))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_share_partitions_as_they_join_die_and_leave() {
    let (_dir, path) = data_dir();
    let agent = AgentProcess::start(BIN, &path, &LEASE);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin.create_topic(NewTopic::new("jobs", 4)).await.unwrap();
    let owned: Owned = Arc::default();

    let a = run(
        consumer(&agent.addr, "workers", "a").await,
        "a",
        owned.clone(),
    );
    let b = run(
        consumer(&agent.addr, "workers", "b").await,
        "b",
        owned.clone(),
    );
    wait_owned(&owned, "2 + 2", |o| sizes(o, &["a", "b"]) == [2, 2]).await;

    let c = run(
        consumer(&agent.addr, "workers", "c").await,
        "c",
        owned.clone(),
    );
    wait_owned(&owned, "all 4 owned by 3, within one", |o| {
        let s = sizes(o, &["a", "b", "c"]);
        s.iter().sum::<usize>() == 4 && s.iter().all(|n| (1..=2).contains(n))
    })
    .await;

    // c dies without leaving: its partitions wait for its session to run out.
    let died_at = Instant::now();
    c.abort();
    let _ = c.await;
    owned.lock().unwrap().remove("c");
    wait_owned(&owned, "a and b own all 4 again", |o| {
        sizes(o, &["a", "b"]) == [2, 2]
    })
    .await;
    assert!(
        died_at.elapsed() >= Duration::from_millis(2_500),
        "c's partitions moved before its 3 s session ran out"
    );

    // A graceful leave moves partitions at once, with no session to wait for.
    let d = consumer(&agent.addr, "workers", "d").await;
    let mut d = d;
    d.subscribe(vec!["jobs".into()]).await.unwrap();
    let deadline = Deadline::within(Duration::from_secs(30));
    while d.assignment().is_empty() {
        deadline.check("d never got a partition");
        d.poll(Duration::from_millis(50)).await.unwrap();
    }
    let (d_id, _) = d.membership().expect("d is a member");
    d.close().await.unwrap();
    wait_owned(&owned, "a and b own all 4 after d left", |o| {
        sizes(o, &["a", "b"]) == [2, 2]
    })
    .await;
    // Its partitions moved because it left, not because its session ran out.
    let events = admin.list_events(0, 1000).await.unwrap();
    let about_d: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "rebalance" && e.detail.contains(d_id.as_str()))
        .map(|e| e.detail.as_str())
        .collect();
    assert!(
        about_d.iter().any(|d| d.contains(&format!("{d_id} left"))),
        "{about_d:?}"
    );
    assert!(
        !about_d
            .iter()
            .any(|d| d.contains(&format!("{d_id} session expired"))),
        "a graceful leave waited like a session expiry: {about_d:?}"
    );

    let groups = admin.list_groups().await.unwrap();
    let g = groups.iter().find(|g| g.group_id == "workers").unwrap();
    assert_eq!(g.members, 2);
    let events = admin.list_events(0, 1000).await.unwrap();
    let rebalances: Vec<_> = events.iter().filter(|e| e.kind == "rebalance").collect();
    assert!(
        rebalances
            .iter()
            .any(|e| e.detail.contains("session expired"))
    );
    assert!(rebalances.iter().any(|e| e.detail.contains("left")));
    a.abort();
    b.abort();
}

/// Records which partitions were revoked and assigned, and commits nothing itself.
#[derive(Default, Clone)]
struct Told(Arc<Mutex<Vec<String>>>);

impl RebalanceListener for Told {
    fn on_partitions_revoked(
        &mut self,
        revoked: &[(TopicPartition, i64)],
    ) -> Vec<(TopicPartition, i64)> {
        self.0
            .lock()
            .unwrap()
            .push(format!("revoked {}", revoked.len()));
        Vec::new()
    }
    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("assigned {}", assigned.len()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_survive_consumer_and_agent_restarts() {
    let (_dir, path) = data_dir();
    let agent = AgentProcess::start(BIN, &path, &LEASE);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin
        .create_topic(NewTopic::new("ledger", 2))
        .await
        .unwrap();
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        producer
            .send_record(
                "ledger",
                Some(i % 2),
                None,
                Some(format!("{i}").as_bytes()),
                &[],
                None,
            )
            .await
            .unwrap();
    }
    producer.close().await.unwrap();

    // Read about half, commit, and leave.
    let told = Told::default();
    let mut c = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("auditors")
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .max_poll_records(30)
        .heartbeat_interval_ms(200)
        .build()
        .await
        .unwrap();
    c.subscribe_with_listener(vec!["ledger".into()], told.clone())
        .await
        .unwrap();
    let mut read = 0;
    let deadline = Deadline::within(Duration::from_secs(30));
    while read < 100 {
        deadline.check(format_args!("read only {read}"));
        read += c.poll(Duration::from_millis(100)).await.unwrap().len();
    }
    c.commit().await.unwrap();
    let tps = [
        TopicPartition::new("ledger", 0),
        TopicPartition::new("ledger", 1),
    ];
    let committed: BTreeMap<TopicPartition, i64> = c
        .committed(&tps)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, o)| (tp, o.expect("committed")))
        .collect();
    assert_eq!(committed.values().sum::<i64>(), read as i64);
    c.close().await.unwrap();
    assert_eq!(
        told.0.lock().unwrap().first().map(String::as_str),
        Some("assigned 2")
    );

    // Every agent restarts; the offsets are in the metadata store.
    assert!(agent.terminate().success());
    let agent = AgentProcess::start(BIN, &path, &LEASE);

    let mut again = consumer(&agent.addr, "auditors", "again").await;
    again.subscribe(vec!["ledger".into()]).await.unwrap();
    let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut total = 0;
    let deadline = Deadline::within(Duration::from_secs(30));
    while total < 200 - read {
        deadline.check(format_args!("read {total} of {}", 200 - read));
        for r in again.poll(Duration::from_millis(100)).await.unwrap() {
            first
                .entry(TopicPartition::new("ledger", r.partition))
                .or_insert(r.offset);
            total += 1;
        }
    }
    // Each partition resumes exactly at its commit (one fully read before has nothing new).
    for (tp, offset) in &first {
        assert_eq!(
            Some(offset),
            committed.get(tp),
            "{tp} resumed after its last commit"
        );
    }
    assert_eq!(total, 200 - read);
    again.close().await.unwrap();

    // With no members left, the group's offsets can be reset.
    let admin = Admin::connect(&agent.addr).await.unwrap();
    let reset = admin
        .reset_offsets(
            "auditors",
            "ledger",
            streamhouse_client::ResetTarget::Earliest,
        )
        .await
        .unwrap();
    assert_eq!(reset, vec![(0, 0), (1, 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_group_requests_get_typed_errors() {
    use streamhouse_client::{AssignorKind, ClientError, ErrorCode};
    let (_dir, path) = data_dir();
    let agent = AgentProcess::start(BIN, &path, &LEASE);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin.create_topic(NewTopic::new("t", 2)).await.unwrap();
    let poll_error = |mut c: Consumer| async move {
        c.subscribe(vec!["t".into()]).await.unwrap();
        let deadline = Deadline::within(Duration::from_secs(20));
        loop {
            match c.poll(Duration::from_millis(100)).await {
                Err(e) => return e,
                Ok(_) => deadline.check("no error reached poll"),
            }
        }
    };

    // A session timeout below the cluster's minimum.
    let short = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("g")
        .session_timeout_ms(500)
        .heartbeat_interval_ms(100)
        .build()
        .await
        .unwrap();
    let e = poll_error(short).await;
    assert_eq!(e.code(), Some(ErrorCode::InvalidRequest), "{e}");

    // Members that share no assignor: the second is refused; the first keeps working.
    let mut first = consumer(&agent.addr, "h", "first").await;
    first.subscribe(vec!["t".into()]).await.unwrap();
    let deadline = Deadline::within(Duration::from_secs(20));
    while first.assignment().len() < 2 {
        deadline.check("the first consumer to own both partitions");
        first.poll(Duration::from_millis(50)).await.unwrap();
    }
    let sticky_only = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("h")
        .assignors(vec![AssignorKind::Sticky])
        .heartbeat_interval_ms(100)
        .build()
        .await
        .unwrap();
    let e = poll_error(sticky_only).await;
    assert_eq!(e.code(), Some(ErrorCode::InconsistentAssignors), "{e}");
    first.poll(Duration::from_millis(50)).await.unwrap();
    assert_eq!(first.assignment().len(), 2);

    // Commits outside the group's rules.
    let mut outsider = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("h")
        .build()
        .await
        .unwrap();
    let e = outsider
        .commit_offsets(&[(TopicPartition::new("t", 0), 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Agent {
                code: ErrorCode::UnknownMember,
                ..
            }
        ),
        "{e}"
    );
    first.close().await.unwrap();
}

/// A member whose application stops calling `poll` leaves after `max_poll_interval`, and its
/// partitions go to the others; when it polls again it rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_stops_polling_gives_its_partitions_up() {
    let (_dir, path) = data_dir();
    let agent = AgentProcess::start(BIN, &path, &LEASE);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin.create_topic(NewTopic::new("jobs", 4)).await.unwrap();
    let owned: Owned = Arc::default();
    let b = run(consumer(&agent.addr, "slow", "b").await, "b", owned.clone());
    let mut a = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("slow")
        .heartbeat_interval_ms(200)
        .max_poll_interval_ms(1_000)
        .build()
        .await
        .unwrap();
    a.subscribe(vec!["jobs".into()]).await.unwrap();
    let deadline = Deadline::within(Duration::from_secs(30));
    while a.assignment().len() != 2 {
        deadline.check("a never got its share");
        a.poll(Duration::from_millis(50)).await.unwrap();
    }
    // a's application stalls: b ends up with everything.
    wait_owned(&owned, "b owning all 4 while a stalls", |o| {
        sizes(o, &["b"]) == [4]
    })
    .await;
    // a polls again: it gives up what it no longer owns and rejoins for a share.
    let deadline = Deadline::within(Duration::from_secs(30));
    loop {
        a.poll(Duration::from_millis(50)).await.unwrap();
        let b_has = owned.lock().unwrap().get("b").map_or(0, BTreeSet::len);
        if a.assignment().len() == 2 && b_has == 2 {
            break;
        }
        deadline.check("a did not rejoin");
    }
    b.abort();
}
