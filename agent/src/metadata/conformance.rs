//! The behaviour every metadata backend must have, written once and run against SQLite and
//! PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::groups::ResetTo;
use super::{
    AgentSession, ChunkCommit, FlushCommit, LeaseHolder, MetadataError, MetadataStore,
    ProducerCommit,
};
use crate::group::assignor::Assignor;
use crate::group::coordinator::{GroupError, Heartbeat};
use crate::sequence::ProducerEntry;

fn chunk(topic: &str, partition: u32, epoch: i64, base: i64, count: i64) -> ChunkCommit {
    ChunkCommit {
        topic: Arc::from(topic),
        partition,
        lease_epoch: epoch,
        base_offset: base,
        last_offset: base + count - 1,
        byte_start: 0,
        byte_len: 100,
        record_count: count,
        max_timestamp: 1_700_000_000_000,
        producers: Vec::new(),
    }
}

async fn run(store: &MetadataStore) {
    // Topics.
    let t = store.create_topic("orders", 3, -1, -1).await.unwrap();
    assert_eq!((t.name.as_str(), t.partition_count), ("orders", 3));
    assert!(matches!(
        store.create_topic("orders", 5, -1, -1).await,
        Err(MetadataError::TopicExists(_))
    ));
    store
        .create_topic("audit", 1, 86_400_000, -1)
        .await
        .unwrap();
    let names: Vec<_> = store
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["audit", "orders"]);
    let parts = store.list_partitions(Some("orders")).await.unwrap();
    assert_eq!(parts.len(), 3);
    assert!(
        parts
            .iter()
            .all(|p| p.high_watermark == 0 && p.leader_id.is_none() && p.lease_epoch == 0)
    );
    assert!(store.get_topic("nope").await.unwrap().is_none());

    // Agents.
    store
        .register_agent("a1", "127.0.0.1:1", None, 0)
        .await
        .unwrap();
    store
        .register_agent("a2", "127.0.0.1:2", None, 0)
        .await
        .unwrap();
    assert!(store.heartbeat_agent("a1", 0).await.unwrap());
    assert!(!store.heartbeat_agent("ghost", 0).await.unwrap());
    assert_eq!(store.list_agents(Some(60_000)).await.unwrap().len(), 2);

    // Leases: one holder at a time, epochs grow with every change of holder.
    let orders: Vec<(String, u32)> = (0..3).map(|p| ("orders".to_string(), p)).collect();
    let got = store.acquire_leases("a1", 60_000, &orders).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|l| l.epoch == 1));
    assert!(
        store
            .acquire_leases("a2", 60_000, &orders)
            .await
            .unwrap()
            .is_empty()
    );
    // Not even the holder takes a live lease again: that would fence its own flushes.
    assert!(
        store
            .acquire_leases("a1", 60_000, &orders)
            .await
            .unwrap()
            .is_empty()
    );
    let holders = store.lease_holders().await.unwrap().partitions;
    assert_eq!(
        holders
            .iter()
            .filter(|h| h.topic == "orders")
            .map(|h| (h.partition, h.leader_id.as_deref()))
            .collect::<Vec<_>>(),
        vec![(0, Some("a1")), (1, Some("a1")), (2, Some("a1"))],
        "every partition in key order with its live holder"
    );
    let p0 = store.get_partition("orders", 0).await.unwrap().unwrap();
    assert_eq!(p0.lease_epoch, 1);
    assert_eq!(p0.leader_id.as_deref(), Some("a1"));
    assert_eq!(p0.leader_address.as_deref(), Some("127.0.0.1:1"));
    let renewed = store.renew_leases("a1", 60_000).await.unwrap();
    assert_eq!(renewed.len(), 3);

    // The write path: one transaction per flush, fenced on a stale epoch or a gap; it
    // stores idempotent producers' state with the data.
    let (pid, epoch) = store.init_producer_id(None).await.unwrap();
    assert_eq!(epoch, 0);
    let (pid2, _) = store.init_producer_id(None).await.unwrap();
    assert_ne!(pid, pid2);
    let mut c = [chunk("orders", 0, 1, 0, 10), chunk("orders", 1, 1, 0, 5)];
    let mut entry = ProducerEntry::new(
        0,
        crate::sequence::Written {
            first_sequence: 0,
            last_sequence: 9,
            base_offset: 0,
        },
    );
    c[0].producers.push(ProducerCommit {
        producer_id: pid,
        epoch: 0,
        last_sequence: 9,
        last_offset: 0,
        recent: entry.encode_recent(),
    });
    store
        .commit_flush(&FlushCommit {
            agent_id: "a1",
            object_key: "data/1.obj",
            object_size: 200,
            chunks: &c,
            deadline_ms: None,
        })
        .await
        .unwrap();
    let p0 = store.get_partition("orders", 0).await.unwrap().unwrap();
    assert_eq!(p0.high_watermark, 10);
    assert!(store.get_partition("orders", 99).await.unwrap().is_none());
    // Bounds of the partitions asked for, those the topic has, in one call.
    let mut bounds = store.partition_bounds("orders", &[1, 99, 0]).await.unwrap();
    bounds.sort_unstable();
    assert_eq!(bounds, vec![(0, 0, 10), (1, 0, 5)]);
    let many: Vec<u32> = (0..1_200).collect();
    assert_eq!(
        store.partition_bounds("orders", &many).await.unwrap().len(),
        3,
        "more than one query's worth of partitions"
    );
    assert!(
        store
            .partition_bounds("nope", &[0])
            .await
            .unwrap()
            .is_empty()
    );
    let states = store.producer_states("orders", 0, 60_000).await.unwrap();
    assert_eq!(states, vec![(pid, entry.clone())]);
    let of_many = store
        .producer_states_of("orders", &[2, 1, 0], 60_000)
        .await
        .unwrap();
    assert_eq!(
        of_many.len(),
        1,
        "partitions without producers are left out"
    );
    assert_eq!(of_many[&0], vec![(pid, entry.clone())]);
    assert!(
        store
            .producer_states("orders", 1, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    // A later flush replaces the producer's row.
    entry.record(
        0,
        crate::sequence::Written {
            first_sequence: 10,
            last_sequence: 11,
            base_offset: 10,
        },
    );
    let mut more = [chunk("orders", 0, 1, 10, 2)];
    more[0].producers.push(ProducerCommit {
        producer_id: pid,
        epoch: 0,
        last_sequence: 11,
        last_offset: 10,
        recent: entry.encode_recent(),
    });
    store
        .commit_flush(&FlushCommit {
            agent_id: "a1",
            object_key: "data/1b.obj",
            object_size: 50,
            chunks: &more,
            deadline_ms: None,
        })
        .await
        .unwrap();
    let states = store.producer_states("orders", 0, 60_000).await.unwrap();
    assert_eq!(states, vec![(pid, entry)]);
    // Epoch bumps: only from the current epoch.
    assert_eq!(
        store.init_producer_id(Some((pid, 0))).await.unwrap(),
        (pid, 1)
    );
    assert!(matches!(
        store.init_producer_id(Some((pid, 0))).await,
        Err(MetadataError::ProducerFenced { .. })
    ));
    assert!(matches!(
        store.init_producer_id(Some((999_999, 0))).await,
        Err(MetadataError::ProducerFenced { .. })
    ));
    let segs = store.segments("orders", 0, 0, 10).await.unwrap();
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].base_offset, segs[0].last_offset), (0, 9));
    assert_eq!(segs[0].object_key, "data/1.obj");
    assert_eq!((segs[1].base_offset, segs[1].last_offset), (10, 11));
    assert!(
        store
            .segments("orders", 0, 12, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A chunk that does not start at the high watermark is refused, and takes the whole
    // flush with it.
    let bad = [chunk("orders", 0, 1, 12, 1), chunk("orders", 1, 1, 7, 1)];
    match store
        .commit_flush(&FlushCommit {
            agent_id: "a1",
            object_key: "data/2.obj",
            object_size: 200,
            chunks: &bad,
            deadline_ms: None,
        })
        .await
    {
        Err(MetadataError::Fenced(p)) => assert_eq!(p, vec![(Arc::from("orders"), 1)]),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(
        store
            .get_partition("orders", 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        12
    );

    // Handing back one lease works only at the holder's epoch.
    assert!(
        !store
            .release_lease("a1", "orders", 2, 7, "test")
            .await
            .unwrap()
    );
    assert!(
        !store
            .release_lease("a2", "orders", 2, 1, "test")
            .await
            .unwrap()
    );
    assert!(
        store
            .release_lease("a1", "orders", 2, 1, "test")
            .await
            .unwrap()
    );
    assert!(
        store
            .get_partition("orders", 2)
            .await
            .unwrap()
            .unwrap()
            .leader_id
            .is_none()
    );

    // Release, take over: the new holder's epoch is higher, and the old one is fenced.
    assert_eq!(store.release_leases("a1").await.unwrap(), 2);
    let taken = store
        .acquire_leases("a2", 60_000, &[("orders".into(), 0)])
        .await
        .unwrap();
    assert_eq!(taken[0].epoch, 2);
    assert_eq!(taken[0].high_watermark, 12);
    let stale = [chunk("orders", 0, 1, 12, 1)];
    assert!(matches!(
        store
            .commit_flush(&FlushCommit {
                agent_id: "a1",
                object_key: "data/3.obj",
                object_size: 1,
                chunks: &stale,
                deadline_ms: None,
            })
            .await,
        Err(MetadataError::Fenced(_))
    ));

    // An expired lease (by the store's clock) can be taken. a2 has never renewed: its lease
    // runs out at the expiry it was taken with.
    let short = store
        .acquire_leases("a2", 50, &[("audit".into(), 0)])
        .await
        .unwrap();
    assert_eq!(short.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = store
            .acquire_leases("a1", 60_000, &[("audit".into(), 0)])
            .await
            .unwrap();
        if let Some(l) = got.first() {
            assert_eq!(l.epoch, 2);
            let events = store.list_events(0, 1000).await.unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e.kind == "lease_taken" && e.subject == "audit-0")
            );
            break;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Deleting a topic removes its partitions and index; recreating starts clean.
    store.delete_topic("orders").await.unwrap();
    assert!(matches!(
        store.delete_topic("orders").await,
        Err(MetadataError::UnknownTopic(_))
    ));
    assert!(
        store
            .list_partitions(Some("orders"))
            .await
            .unwrap()
            .is_empty()
    );
    store.create_topic("orders", 2, -1, -1).await.unwrap();
    assert!(store.segments("orders", 0, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .get_partition("orders", 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        0
    );

    // Events were recorded along the way, in order.
    let events = store.list_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "agent_joined" && e.subject == "a1")
    );
    assert!(events.iter().any(|e| e.kind == "lease_acquired"));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));

    assert!(events.iter().any(|e| e.kind == "lease_released"));

    // An agent silent past the TTL is reported lost once, and must register again.
    store
        .register_agent("a3", "127.0.0.1:3", None, 0)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lost = loop {
        let lost = store.reap_lost_agents(50, &[]).await.unwrap();
        if lost.iter().any(|(id, _)| id == "a3") {
            break lost;
        }
        assert!(Instant::now() < deadline, "a3 was never reported lost");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(lost.iter().any(|(id, _)| id == "a3"));
    assert!(
        !store
            .reap_lost_agents(50, &[])
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| id == "a3")
    );
    assert!(!store.heartbeat_agent("a3", 0).await.unwrap());
    store
        .register_agent("a3", "127.0.0.1:3", None, 0)
        .await
        .unwrap();
    assert!(store.heartbeat_agent("a3", 0).await.unwrap());
    let events = store.list_events(0, 1000).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "agent_lost" && e.subject == "a3")
            .count(),
        1
    );

    groups(store).await;

    store.deregister_agent("a1").await.unwrap();
    store.deregister_agent("a3").await.unwrap();
    assert_eq!(store.list_agents(None).await.unwrap().len(), 1);
    let events = store.list_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "agent_left" && e.subject == "a1")
    );
}

fn member(id: &str, known: bool, owned: &[(String, u32)]) -> Heartbeat {
    Heartbeat {
        member_id: id.into(),
        known,
        client_id: "test".into(),
        host: "127.0.0.1".into(),
        topics: ["orders".to_string()].into_iter().collect(),
        assignors: vec![Assignor::RoundRobin],
        owned: owned.to_vec(),
        session_timeout_ms: 30_000,
    }
}

/// Groups: joins, the hand-over, commits fenced by member and generation, lag, reset, and
/// concurrent heartbeats to one group taking turns.
async fn groups(store: &MetadataStore) {
    let a = store
        .group_heartbeat("g1", &member("a", false, &[]))
        .await
        .unwrap()
        .unwrap();
    // `orders` has 2 partitions by now (it was deleted and created again above).
    assert_eq!((a.assignment.len(), a.generation), (2, 1));
    let b = store
        .group_heartbeat("g1", &member("b", false, &[]))
        .await
        .unwrap()
        .unwrap();
    assert!(b.assignment.is_empty(), "a still owns everything");
    let a2 = store
        .group_heartbeat("g1", &member("a", true, &a.assignment))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a2.assignment.len(), 1);
    // a commits what it is giving up, at the generation it was told, before reporting.
    let revoked: Vec<_> = a
        .assignment
        .iter()
        .filter(|tp| !a2.assignment.contains(tp))
        .cloned()
        .collect();
    let commit: Vec<(String, u32, i64, String)> = revoked
        .iter()
        .map(|(t, p)| (t.clone(), *p, 0, "m".to_string()))
        .collect();
    store
        .commit_offsets("g1", "a", a2.generation, &commit)
        .await
        .unwrap()
        .unwrap();
    store
        .group_heartbeat("g1", &member("a", true, &a2.assignment))
        .await
        .unwrap()
        .unwrap();
    let b2 = store
        .group_heartbeat("g1", &member("b", true, &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b2.assignment, revoked);
    // Fencing: an old generation, a partition not owned, a stranger.
    assert!(matches!(
        store
            .commit_offsets("g1", "b", b2.generation - 1, &commit)
            .await
            .unwrap(),
        Err(GroupError::StaleGeneration(_))
    ));
    let not_b: Vec<(String, u32, i64, String)> = a2
        .assignment
        .iter()
        .map(|(t, p)| (t.clone(), *p, 5, String::new()))
        .collect();
    assert!(matches!(
        store
            .commit_offsets("g1", "b", b2.generation, &not_b)
            .await
            .unwrap(),
        Err(GroupError::StaleGeneration(_))
    ));
    assert!(matches!(
        store
            .commit_offsets("g1", "zed", b2.generation, &commit)
            .await
            .unwrap(),
        Err(GroupError::UnknownMember(_))
    ));
    assert!(matches!(
        store.commit_offsets("g1", "", 0, &commit).await.unwrap(),
        Err(GroupError::UnknownMember(_))
    ));
    let got = store.fetch_offsets("g1", &[]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset, got[0].metadata.as_str()), (0, "m"));

    let d = store.describe_group("g1").await.unwrap().unwrap();
    assert_eq!(d.state(), "stable");
    assert_eq!(d.members.len(), 2);
    let list = store.list_groups().await.unwrap();
    let g = list.iter().find(|g| g.group_id == "g1").unwrap();
    assert_eq!(
        (g.members, g.state.as_str(), g.assignor.as_str()),
        (2, "stable", "round-robin")
    );
    let events = store.list_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e.kind == "rebalance" && e.subject == "g1")
            .count()
            >= 2
    );

    // Reset needs an empty group.
    assert!(matches!(
        store
            .reset_offsets("g1", "orders", ResetTo::Latest)
            .await
            .unwrap(),
        Err(GroupError::NotEmpty(_))
    ));
    store.group_leave("g1", "a").await.unwrap().unwrap();
    store.group_leave("g1", "b").await.unwrap().unwrap();
    assert!(matches!(
        store.group_leave("g1", "b").await.unwrap(),
        Err(GroupError::UnknownMember(_))
    ));
    let reset = store
        .reset_offsets("g1", "orders", ResetTo::Latest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reset.len(), 2);
    // With no members, a commit without a member is allowed (standalone consumers).
    store
        .commit_offsets("g1", "", 0, &[("orders".into(), 0, 1, String::new())])
        .await
        .unwrap()
        .unwrap();

    // Many members joining at once take turns: one generation each, everything owned once.
    let joins = (0..8).map(|i| {
        let hb = member(&format!("c{i}"), false, &[]);
        async move { store.group_heartbeat("g2", &hb).await.unwrap().unwrap() }
    });
    let outs = futures::future::join_all(joins).await;
    let mut gens: Vec<i64> = outs.iter().map(|o| o.generation).collect();
    gens.sort_unstable();
    assert_eq!(gens, (1..=8).collect::<Vec<i64>>());
    let mut owned: Vec<_> = outs.iter().flat_map(|o| o.assignment.clone()).collect();
    let n = owned.len();
    owned.sort();
    owned.dedup();
    assert_eq!(owned.len(), n, "a partition granted twice");
}

/// Idle producers and empty groups expire; live ones stay.
async fn expiry(store: &MetadataStore) {
    let (pid, _) = store.init_producer_id(None).await.unwrap();
    store.create_topic("expiring", 1, -1, -1).await.unwrap();
    store
        .register_agent("x1", "127.0.0.1:9", None, 0)
        .await
        .unwrap();
    let tp = [("expiring".to_string(), 0)];
    assert_eq!(
        store.acquire_leases("x1", 60_000, &tp).await.unwrap().len(),
        1
    );
    let written = crate::sequence::Written {
        first_sequence: 0,
        last_sequence: 0,
        base_offset: 0,
    };
    let mut c = [chunk("expiring", 0, 1, 0, 1)];
    c[0].producers.push(ProducerCommit {
        producer_id: pid,
        epoch: 0,
        last_sequence: 0,
        last_offset: 0,
        recent: ProducerEntry::new(0, written).encode_recent(),
    });
    store
        .commit_flush(&FlushCommit {
            agent_id: "x1",
            object_key: "data/expiring.obj",
            object_size: 100,
            chunks: &c,
            deadline_ms: None,
        })
        .await
        .unwrap();
    store
        .commit_offsets("idle-g", "", -1, &[("orders".into(), 0, 5, String::new())])
        .await
        .unwrap()
        .unwrap();
    store
        .group_heartbeat("live-g", &member("m", false, &[]))
        .await
        .unwrap()
        .unwrap();
    let day = 86_400_000;
    store.expire_idle(day, day).await.unwrap();
    assert_eq!(store.issued_producer_epoch(pid).await.unwrap(), Some(0));
    assert_eq!(
        store
            .producer_states("expiring", 0, day)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.fetch_offsets("idle-g", &[]).await.unwrap().len(), 1);
    // A cut-off a minute ahead makes everything idle but the member heartbeating now.
    let (states, ids, groups) = store.expire_idle(-60_000, -60_000).await.unwrap();
    assert!(
        states >= 1 && ids >= 1 && groups >= 1,
        "{states} {ids} {groups}"
    );
    assert_eq!(store.issued_producer_epoch(pid).await.unwrap(), None);
    assert!(
        store
            .producer_states("expiring", 0, day)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.issued_producer_epoch(-5).await.unwrap().is_none());
    assert!(store.fetch_offsets("idle-g", &[]).await.unwrap().is_empty());
    assert!(store.describe_group("idle-g").await.unwrap().is_none());
    assert!(store.describe_group("live-g").await.unwrap().is_some());
}

/// Retention, compaction's swap and garbage collection's bookkeeping.
async fn maintenance(store: &MetadataStore) {
    use super::SegmentRow;
    use super::maintenance::{SegmentSwap, TopicConfigChange};
    store.create_topic("logs", 1, 60_000, -1).await.unwrap();
    let t = store
        .alter_topic_config(
            "logs",
            TopicConfigChange {
                retention_bytes: Some(5_000),
                ..TopicConfigChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((t.retention_ms, t.retention_bytes), (60_000, 5_000));
    assert!(matches!(
        store
            .alter_topic_config("nope", TopicConfigChange::default())
            .await,
        Err(MetadataError::UnknownTopic(_))
    ));

    store
        .register_agent("m1", "127.0.0.1:11", None, 0)
        .await
        .unwrap();
    let tp = [("logs".to_string(), 0u32)];
    let lease = store.acquire_leases("m1", 60_000, &tp).await.unwrap();
    let e1 = lease[0].epoch;
    // Four flushes of ten records, each in its own object, within their deadline by the
    // store's clock.
    let store_now = store.now_ms().await.unwrap();
    for i in 0..4i64 {
        let key = format!("data/m-{i}.obj");
        store
            .commit_flush(&FlushCommit {
                agent_id: "m1",
                object_key: &key,
                object_size: 100,
                chunks: &[chunk("logs", 0, e1, i * 10, 10)],
                deadline_ms: Some(store_now + 60_000),
            })
            .await
            .unwrap();
    }
    let usage = store.partition_usage("logs", 0).await.unwrap();
    assert_eq!((usage.rows, usage.bytes), (4, 400));
    assert!(matches!(
        store
            .commit_flush(&FlushCommit {
                agent_id: "m1",
                object_key: "data/late.obj",
                object_size: 100,
                chunks: &[chunk("logs", 0, e1, 40, 10)],
                // The store's clock, checked inside the transaction, decides.
                deadline_ms: Some(store.now_ms().await.unwrap() - 1),
            })
            .await,
        Err(MetadataError::CommitTooLate(_))
    ));
    assert_eq!(
        store
            .get_partition("logs", 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        40,
        "a late commit changes nothing"
    );

    // Compaction: rows 10..=29 (two of them) become one segment with one row.
    let merged = [SegmentRow {
        base_offset: 10,
        last_offset: 29,
        object_key: "segments/1.obj".into(),
        byte_start: 0,
        byte_len: 200,
        record_count: 20,
        max_timestamp: 1_700_000_000_000,
        created_at_ms: 0,
    }];
    let swap = |epoch: i64, replaced: u64| SegmentSwap {
        agent_id: "m1",
        topic: "logs",
        partition: 0,
        lease_epoch: epoch,
        first_base: 10,
        last_offset: 29,
        replaced_rows: replaced,
        object_key: "segments/1.obj",
        object_size: 200,
        rows: &merged,
        deadline_ms: None,
    };
    assert!(matches!(
        store.swap_segments(&swap(e1, 3)).await,
        Err(MetadataError::IndexChanged { .. })
    ));
    // A swap past its deadline (its segment object may be taken for an orphan) is refused.
    let late_swap = SegmentSwap {
        deadline_ms: Some(store.now_ms().await.unwrap() - 1),
        ..swap(e1, 2)
    };
    assert!(matches!(
        store.swap_segments(&late_swap).await,
        Err(MetadataError::CommitTooLate(_))
    ));
    assert_eq!(store.partition_usage("logs", 0).await.unwrap().rows, 4);
    store.swap_segments(&swap(e1, 2)).await.unwrap();
    let rows = store.segments("logs", 0, 0, 100).await.unwrap();
    let spans: Vec<(i64, i64, &str)> = rows
        .iter()
        .map(|r| (r.base_offset, r.last_offset, r.object_key.as_str()))
        .collect();
    assert_eq!(
        spans,
        [
            (0, 9, "data/m-0.obj"),
            (10, 29, "segments/1.obj"),
            (30, 39, "data/m-3.obj")
        ]
    );
    let uncompacted = store
        .uncompacted_segments("logs", 0, "segments/", 100)
        .await
        .unwrap();
    assert_eq!(uncompacted.len(), 2);

    // Garbage collection's bookkeeping: data/1 and data/2 are no longer referenced.
    let unreferenced = store.unreferenced_objects().await.unwrap();
    assert!(!unreferenced.contains("segments/1.obj") && unreferenced.contains("data/m-1.obj"));
    assert!(unreferenced.contains("data/m-2.obj") && !unreferenced.contains("data/m-0.obj"));
    let all: Vec<String> = store
        .object_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.key.starts_with("data/") || r.key.starts_with("segments/"))
        .map(|r| r.key)
        .collect();
    let marked_at = store.mark_unreferenced(&all).await.unwrap();
    let records = store.object_records().await.unwrap();
    let marked: Vec<&str> = records
        .iter()
        .filter(|r| {
            r.unreferenced_since_ms >= 0
                && (r.key.contains("/m-") || r.key.starts_with("segments/"))
        })
        .map(|r| r.key.as_str())
        .collect();
    assert!(marked.contains(&"data/m-1.obj") && marked.contains(&"data/m-2.obj"));
    assert!(
        !marked.contains(&"data/m-0.obj") && !marked.contains(&"segments/1.obj"),
        "{marked:?}"
    );
    // Not yet past a grace that ends before the marking.
    assert!(
        store
            .forget_objects(&["data/m-1.obj".into()], marked_at - 1)
            .await
            .unwrap()
            .is_empty()
    );
    // A referenced object is never forgotten, whatever the caller asks.
    let gone = store
        .forget_objects(
            &[
                "data/m-1.obj".into(),
                "data/m-0.obj".into(),
                "segments/1.obj".into(),
            ],
            marked_at,
        )
        .await
        .unwrap();
    assert_eq!(gone, ["data/m-1.obj"]);

    // Retention: drop everything below 30, fenced by the epoch.
    store
        .register_agent("m2", "127.0.0.1:12", None, 0)
        .await
        .unwrap();
    assert!(matches!(
        store.advance_log_start("m2", "logs", 0, e1, 30).await,
        Err(MetadataError::Fenced(_))
    ));
    assert!(
        matches!(
            store.advance_log_start("m1", "logs", 0, e1, 41).await,
            Err(MetadataError::Fenced(_)),
        ),
        "past the high watermark"
    );
    assert_eq!(
        store
            .advance_log_start("m1", "logs", 0, e1, 30)
            .await
            .unwrap(),
        2
    );
    let p = store.get_partition("logs", 0).await.unwrap().unwrap();
    assert_eq!((p.log_start_offset, p.high_watermark), (30, 40));
    assert_eq!(store.segments("logs", 0, 0, 100).await.unwrap().len(), 1);

    // A new leader fences the old one's swap: nothing is committed.
    store
        .release_lease("m1", "logs", 0, e1, "handed over")
        .await
        .unwrap();
    let e2 = store.acquire_leases("m2", 60_000, &tp).await.unwrap()[0].epoch;
    assert!(e2 > e1);
    let late = [SegmentRow {
        base_offset: 30,
        last_offset: 39,
        object_key: "segments/2.obj".into(),
        ..merged[0].clone()
    }];
    let fenced = store
        .swap_segments(&SegmentSwap {
            first_base: 30,
            last_offset: 39,
            replaced_rows: 1,
            object_key: "segments/2.obj",
            rows: &late,
            ..swap(e1, 1)
        })
        .await;
    assert!(
        matches!(fenced, Err(MetadataError::Fenced(_))),
        "{fenced:?}"
    );
    let rows = store.segments("logs", 0, 0, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].object_key, "data/m-3.obj");
    assert!(
        !store
            .object_records()
            .await
            .unwrap()
            .iter()
            .any(|r| r.key == "segments/2.obj")
    );
}

/// Sessions: held, an agent's session is seen alive and its leases stay; once its process
/// lets go (here: the session dropped), it is seen ended, the agent can be marked lost by the
/// key its row names (not by a stale one), and its leases are free at once, at a new epoch.
async fn sessions(store: &MetadataStore) {
    let of = |all: &[AgentSession], id: &str| {
        all.iter()
            .find(|s| s.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no session for {id} in {all:?}"))
    };
    store.create_topic("sessions", 2, -1, -1).await.unwrap();
    let parts: Vec<(String, u32)> = vec![("sessions".into(), 0), ("sessions".into(), 1)];
    let s1 = store.open_session().await.unwrap();
    let s2 = store.open_session().await.unwrap();
    assert!(s1.key() > 0 && s2.key() > 0 && s1.key() != s2.key());
    store
        .register_agent("s1", "127.0.0.1:21", None, s1.key())
        .await
        .unwrap();
    store
        .register_agent("s2", "127.0.0.1:22", None, s2.key())
        .await
        .unwrap();
    let first = store.acquire_leases("s1", 60_000, &parts).await.unwrap();
    assert_eq!(first.len(), 2);

    let all = store.agent_sessions().await.unwrap();
    assert!(of(&all, "s1").alive && of(&all, "s2").alive);
    assert!(s1.holds(Duration::from_secs(5)).await);
    assert!(
        store
            .acquire_leases("s2", 60_000, &parts)
            .await
            .unwrap()
            .is_empty()
    );

    let key1 = s1.key();
    drop(s1);
    // PostgreSQL ends the backend when it sees the connection closed: soon, not at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while of(&store.agent_sessions().await.unwrap(), "s1").alive {
        assert!(Instant::now() < deadline, "s1's session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = store.agent_sessions().await.unwrap();
    assert_eq!(of(&all, "s1").key, key1);
    assert!(of(&all, "s2").alive, "{all:?}");

    // A key the row no longer names (a predecessor's) marks nobody.
    let stale = [("s1".to_string(), key1 + 1)];
    assert!(
        store
            .reap_lost_agents(60_000, &stale)
            .await
            .unwrap()
            .is_empty()
    );
    let lost = store
        .reap_lost_agents(60_000, &[("s1".to_string(), key1)])
        .await
        .unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].0, "s1");
    assert!(of(&store.agent_sessions().await.unwrap(), "s1").lost);
    let live: Vec<String> = store
        .list_agents(Some(60_000))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert!(live.contains(&"s2".to_string()) && !live.contains(&"s1".to_string()));

    // Its leases had a minute to run, yet they are free now, and taken at a new epoch.
    let holders = store.lease_holders().await.unwrap().partitions;
    let mine: Vec<_> = holders.iter().filter(|h| h.topic == "sessions").collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|h| h.leader_id.is_none()), "{mine:?}");
    let taken = store.acquire_leases("s2", 60_000, &parts).await.unwrap();
    assert_eq!(taken.len(), 2);
    for (before, after) in first.iter().zip(&taken) {
        assert!(after.epoch > before.epoch);
    }
    assert!(
        store
            .list_events(0, 10_000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "agent_lost" && e.subject == "s1" && e.detail.contains("session"))
    );

    // Restarted, the agent is live again under its new session.
    let s1 = store.open_session().await.unwrap();
    store
        .register_agent("s1", "127.0.0.1:21", None, s1.key())
        .await
        .unwrap();
    let all = store.agent_sessions().await.unwrap();
    assert!(of(&all, "s1").alive && !of(&all, "s1").lost);
    store.deregister_agent("s1").await.unwrap();
    store.deregister_agent("s2").await.unwrap();
    drop(s1);
    drop(s2);
    // Ended sessions leave no lock files behind.
    if let Some(dir) = &store.sessions_dir {
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// Leases are renewed by agent: one renewal, one row, keeps every lease its agent holds live
/// past the expiry it was taken with; once the agent stops renewing they run out with its
/// last renewal, and another agent takes them at a new epoch.
async fn renewal(store: &MetadataStore) {
    store.create_topic("renewal", 3, -1, -1).await.unwrap();
    store
        .register_agent("r1", "127.0.0.1:31", None, 0)
        .await
        .unwrap();
    store
        .register_agent("r2", "127.0.0.1:32", None, 0)
        .await
        .unwrap();
    let parts: Vec<(String, u32)> = (0..3).map(|p| ("renewal".into(), p)).collect();
    let of_topic = |all: Vec<LeaseHolder>| -> Vec<LeaseHolder> {
        all.into_iter().filter(|h| h.topic == "renewal").collect()
    };
    let wait_past = |at: i64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.now_ms().await.unwrap() <= at {
            assert!(
                Instant::now() < deadline,
                "the store's clock never passed {at}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let taken_at = store.now_ms().await.unwrap();
    let first = store.acquire_leases("r1", 300, &parts).await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(store.renew_leases("r1", 60_000).await.unwrap(), first);
    // Past the 300 ms they were taken with, the renewal keeps them r1's.
    wait_past(taken_at + 400).await;
    assert!(
        store
            .acquire_leases("r2", 60_000, &parts)
            .await
            .unwrap()
            .is_empty()
    );
    let holders = of_topic(store.lease_holders().await.unwrap().partitions);
    assert_eq!(holders.len(), 3);
    for h in &holders {
        assert_eq!(h.leader_id.as_deref(), Some("r1"), "{h:?}");
        assert!(h.lease_expires_ms > taken_at + 50_000, "{h:?}");
    }
    let p = store.get_partition("renewal", 2).await.unwrap().unwrap();
    assert_eq!(p.leader_id.as_deref(), Some("r1"));
    assert_eq!(p.leader_address.as_deref(), Some("127.0.0.1:31"));
    assert!(p.lease_expires_ms > taken_at + 50_000, "{p:?}");

    // Renewed for 100 ms and then not at all: they run out with that renewal.
    let renewed_at = store.now_ms().await.unwrap();
    assert_eq!(store.renew_leases("r1", 100).await.unwrap().len(), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let got = store.acquire_leases("r2", 60_000, &parts).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "r1's leases never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(store.now_ms().await.unwrap() >= renewed_at + 100);
    assert_eq!(taken.len(), 3, "all three ran out with the one renewal");
    assert!(taken.iter().all(|l| l.epoch == 2), "{taken:?}");
    // r1 renewing again does not win them back: they are r2's now.
    assert!(
        store
            .renew_leases("r1", 60_000)
            .await
            .unwrap()
            .iter()
            .all(|l| l.topic != "renewal")
    );
    let holders = of_topic(store.lease_holders().await.unwrap().partitions);
    assert!(holders.iter().all(|h| h.leader_id.as_deref() == Some("r2")));
    store.release_leases("r2").await.unwrap();
    store.deregister_agent("r1").await.unwrap();
    store.deregister_agent("r2").await.unwrap();
}

/// A flush over more partitions of a topic than one statement moves (600: statements of 250,
/// 250 and 100): each partition's watermark moves by its own chunk, and one stale epoch or
/// one gap anywhere refuses the whole flush, naming just those partitions.
async fn wide_commit(store: &MetadataStore) {
    const N: u32 = 600;
    store.create_topic("wide", N, -1, -1).await.unwrap();
    store
        .register_agent("w1", "127.0.0.1:41", None, 0)
        .await
        .unwrap();
    let parts: Vec<(String, u32)> = (0..N).map(|p| ("wide".into(), p)).collect();
    assert_eq!(
        store
            .acquire_leases("w1", 60_000, &parts)
            .await
            .unwrap()
            .len(),
        N as usize
    );
    let count = |p: u32| i64::from(p % 7 + 1);
    let first: Vec<ChunkCommit> = (0..N).map(|p| chunk("wide", p, 1, 0, count(p))).collect();
    fn commit<'a>(key: &'a str, chunks: &'a [ChunkCommit]) -> FlushCommit<'a> {
        FlushCommit {
            agent_id: "w1",
            object_key: key,
            object_size: 100 * chunks.len() as u64,
            chunks,
            deadline_ms: None,
        }
    }
    store
        .commit_flush(&commit("data/wide-1.obj", &first))
        .await
        .unwrap();
    let bounds = store
        .partition_bounds("wide", &(0..N).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(bounds.len(), N as usize);
    for (p, start, hw) in bounds {
        assert_eq!((start, hw), (0, count(p)), "partition {p}");
    }

    // One stale epoch in the second statement, one gap in the third: all refused.
    let second: Vec<ChunkCommit> = (0..N)
        .map(|p| match p {
            300 => chunk("wide", p, 2, count(p), 1),
            555 => chunk("wide", p, 1, count(p) + 1, 1),
            _ => chunk("wide", p, 1, count(p), 1),
        })
        .collect();
    match store
        .commit_flush(&commit("data/wide-2.obj", &second))
        .await
    {
        Err(MetadataError::Fenced(p)) => {
            assert_eq!(p, vec![(Arc::from("wide"), 300), (Arc::from("wide"), 555)])
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    for (p, _, hw) in store
        .partition_bounds("wide", &(0..N).collect::<Vec<_>>())
        .await
        .unwrap()
    {
        assert_eq!(hw, count(p), "partition {p} moved in a refused flush");
    }
    assert!(
        store
            .segments("wide", 0, count(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.release_leases("w1").await.unwrap();
    store.deregister_agent("w1").await.unwrap();
}

/// `watcher` keeps its snapshot of the holders while the lease generation stands, and sees
/// every change `writer` (another pool on the same database) makes to which partitions exist
/// or who holds them: create, acquire, release one, release all, delete. A flush commit and a
/// renewal change no holder and leave the generation where it was.
async fn generation(watcher: &MetadataStore, writer: &MetadataStore) {
    let generation = || async {
        let row = sqlx::query("SELECT generation FROM lease_generation WHERE id = 1")
            .fetch_one(&writer.pool)
            .await
            .unwrap();
        sqlx::Row::try_get::<i64, _>(&row, "generation").unwrap()
    };
    let holders = || async {
        watcher
            .lease_holders()
            .await
            .unwrap()
            .partitions
            .into_iter()
            .filter(|h| h.topic == "gen")
            .map(|h| (h.partition, h.leader_id))
            .collect::<Vec<_>>()
    };
    assert!(holders().await.is_empty());
    writer
        .register_agent("g1", "127.0.0.1:51", None, 0)
        .await
        .unwrap();
    writer.create_topic("gen", 2, -1, -1).await.unwrap();
    assert_eq!(holders().await, vec![(0, None), (1, None)]);
    let parts: Vec<(String, u32)> = (0..2).map(|p| ("gen".into(), p)).collect();
    let leases = writer.acquire_leases("g1", 60_000, &parts).await.unwrap();
    let g1 = Some("g1".to_string());
    assert_eq!(holders().await, vec![(0, g1.clone()), (1, g1.clone())]);

    let before = generation().await;
    writer
        .commit_flush(&FlushCommit {
            agent_id: "g1",
            object_key: "data/gen.obj",
            object_size: 100,
            chunks: &[chunk("gen", 0, leases[0].epoch, 0, 3)],
            deadline_ms: None,
        })
        .await
        .unwrap();
    writer.renew_leases("g1", 60_000).await.unwrap();
    assert_eq!(generation().await, before);
    assert_eq!(holders().await, vec![(0, g1.clone()), (1, g1.clone())]);

    assert!(
        writer
            .release_lease("g1", "gen", 1, leases[1].epoch, "test")
            .await
            .unwrap()
    );
    assert_eq!(holders().await, vec![(0, g1.clone()), (1, None)]);
    writer.release_leases("g1").await.unwrap();
    assert_eq!(holders().await, vec![(0, None), (1, None)]);
    writer.delete_topic("gen").await.unwrap();
    assert!(holders().await.is_empty());
    assert!(generation().await > before);
    writer.deregister_agent("g1").await.unwrap();
}

/// Kafka node ids: one per agent id, kept across restarts, never given twice, also when
/// agents ask at once through two stores; the Kafka address is listed with the agent.
async fn kafka_nodes(a: &MetadataStore, b: &MetadataStore) {
    a.register_agent("k1", "127.0.0.1:61", Some("127.0.0.1:9092"), 0)
        .await
        .unwrap();
    let k1 = a.kafka_node_id("k1").await.unwrap();
    assert!(k1 >= 1);
    assert_eq!(b.kafka_node_id("k1").await.unwrap(), k1, "stable");
    // Restarted without a Kafka listener: the address goes, the number stays for later.
    a.register_agent("k1", "127.0.0.1:61", None, 0)
        .await
        .unwrap();
    let listed = a.list_agents(None).await.unwrap();
    let row = listed.iter().find(|r| r.id == "k1").unwrap();
    assert_eq!(row.kafka_address, None);
    assert_eq!(row.kafka_node_id, Some(k1));
    a.register_agent("k1", "127.0.0.1:61", Some("host-a:9092"), 0)
        .await
        .unwrap();
    let listed = a.list_agents(Some(60_000)).await.unwrap();
    let row = listed.iter().find(|r| r.id == "k1").unwrap();
    assert_eq!(row.kafka_address.as_deref(), Some("host-a:9092"));
    // Twenty agents asking at once through two stores get twenty different numbers.
    let asks = (0..20).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        async move { store.kafka_node_id(&format!("kn{i}")).await.unwrap() }
    });
    let mut ids = futures::future::join_all(asks).await;
    ids.push(k1);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 21, "node ids given twice: {ids:?}");
    a.deregister_agent("k1").await.unwrap();
}

/// Kafka's classic groups through two stores: members meet at the barrier, the leader's
/// assignment reaches the follower, bytes of any value survive the store, StreamHouse's own
/// consumers are kept out while Kafka members live and let in once they left, and committed
/// offsets are shared.
async fn classic_groups(a: &MetadataStore, b: &MetadataStore) {
    use crate::group::classic::{ClassicError, Join, JoinOutcome, SyncOutcome};
    // Every byte value, as any client may send: NUL, quotes, backslash, high bytes.
    let meta: Vec<u8> = (0..=255u8).collect();
    let join = |id: &str| Join {
        member_id: id.into(),
        client_id: "rdkafka".into(),
        host: "10.0.0.1".into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), meta.clone()),
            ("roundrobin".into(), vec![]),
        ],
    };
    let waiting = |o: JoinOutcome| match o {
        JoinOutcome::Waiting { since } => since,
        j => panic!("joined at once: {j:?}"),
    };
    let since_a = waiting(
        a.classic_join("kg", &join("ka"), 1_000)
            .await
            .unwrap()
            .unwrap(),
    );
    let since_b = waiting(
        b.classic_join("kg", &join("kb"), 1_000)
            .await
            .unwrap()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let ja = loop {
        if let Some(j) = a
            .classic_poll_join("kg", "ka", since_a)
            .await
            .unwrap()
            .unwrap()
        {
            break j;
        }
        assert!(Instant::now() < deadline, "the join did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((ja.leader.as_str(), ja.protocol.as_str()), ("ka", "range"));
    assert_eq!(
        ja.members,
        vec![
            ("ka".to_string(), meta.clone()),
            ("kb".to_string(), meta.clone())
        ]
    );
    let jb = b
        .classic_poll_join("kg", "kb", since_b)
        .await
        .unwrap()
        .unwrap()
        .expect("kb joined the same generation");
    assert_eq!((jb.generation, jb.members.len()), (ja.generation, 0));
    let g = ja.generation;
    assert_eq!(
        b.classic_sync("kg", "kb", g, &[]).await.unwrap().unwrap(),
        SyncOutcome::Waiting
    );
    let plan = vec![
        ("ka".to_string(), vec![0xff, 0]),
        ("kb".to_string(), vec![0, 0xff, b'\\']),
    ];
    assert_eq!(
        a.classic_sync("kg", "ka", g, &plan).await.unwrap().unwrap(),
        SyncOutcome::Assigned(plan[0].1.clone())
    );
    assert_eq!(
        b.classic_poll_sync("kg", "kb", g).await.unwrap().unwrap(),
        SyncOutcome::Assigned(plan[1].1.clone())
    );
    a.classic_heartbeat("kg", "kb", g).await.unwrap().unwrap();
    assert_eq!(
        b.classic_heartbeat("kg", "kb", g + 1).await.unwrap(),
        Err(ClassicError::IllegalGeneration {
            got: g + 1,
            current: g
        })
    );
    // StreamHouse's consumers stay out while Kafka members live.
    assert!(matches!(
        a.group_heartbeat("kg", &member("ours", false, &[]))
            .await
            .unwrap(),
        Err(GroupError::OtherProtocol(_))
    ));
    let d = b.describe_group("kg").await.unwrap().unwrap();
    assert_eq!((d.state(), d.members.len()), ("Stable", 2));
    assert_eq!(d.assignor_name(), "range");
    let listed = a.list_groups().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s.group_id == "kg" && s.state == "Stable")
    );
    // Offsets: only from members at the group's generation, shared with everyone.
    let offsets = vec![("orders".to_string(), 0, 9, "kafka".to_string())];
    assert_eq!(
        a.classic_commit("kg", "ka", g - 1, &offsets).await.unwrap(),
        Err(ClassicError::IllegalGeneration {
            got: g - 1,
            current: g
        })
    );
    a.classic_commit("kg", "ka", g, &offsets)
        .await
        .unwrap()
        .unwrap();
    let got = b
        .fetch_offsets("kg", &["orders".to_string()])
        .await
        .unwrap();
    assert_eq!((got[0].offset, got[0].metadata.as_str()), (9, "kafka"));
    // Once the Kafka members left, the group is empty, and ours may join it.
    let left = a
        .classic_leave(
            "kg",
            &["ka".to_string(), "kb".to_string(), "kc".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![
            Ok(()),
            Ok(()),
            Err(ClassicError::UnknownMember("kc".into()))
        ]
    );
    assert_eq!(
        b.describe_group("kg").await.unwrap().unwrap().state(),
        "Empty"
    );
    let ours = b
        .group_heartbeat("kg", &member("ours", false, &[]))
        .await
        .unwrap()
        .unwrap();
    assert!(ours.generation > g);
    // And now the Kafka client is the one kept out.
    assert!(matches!(
        a.classic_join("kg", &join("kd"), 0).await.unwrap(),
        Err(ClassicError::InconsistentProtocol(_))
    ));
    assert!(matches!(
        a.delete_group("kg").await.unwrap(),
        Err(GroupError::NotEmpty(_))
    ));
    b.group_leave("kg", "ours").await.unwrap().unwrap();
    // Empty: deleted with its offsets, once.
    assert_eq!(a.delete_group("kg").await.unwrap(), Ok(true));
    assert_eq!(b.delete_group("kg").await.unwrap(), Ok(false));
    assert!(b.fetch_offsets("kg", &[]).await.unwrap().is_empty());
    assert!(a.describe_group("kg").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    let store = MetadataStore::connect(&url).await.unwrap();
    run(&store).await;
    maintenance(&store).await;
    expiry(&store).await;
    // Migrations are idempotent: a second agent on the same file starts cleanly.
    let again = MetadataStore::connect(&url).await.unwrap();
    assert_eq!(again.list_topics().await.unwrap().len(), 4);
    sessions(&again).await;
    renewal(&again).await;
    wide_commit(&again).await;
    generation(&store, &again).await;
    kafka_nodes(&store, &again).await;
    classic_groups(&store, &again).await;
}

#[tokio::test]
async fn sqlite_connections_commit_durably_and_journal_statements_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    let store = MetadataStore::connect(&url).await.unwrap();
    let dedicated = store.dedicated(1, Duration::from_secs(1)).await.unwrap();
    for pool in [&store.pool, &dedicated.pool] {
        let mut conn = pool.acquire().await.unwrap();
        let mut pragma = async |name: &str| -> String {
            use sqlx::Row;
            let row = sqlx::query(&format!("PRAGMA {name}"))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            match row.try_get::<String, _>(0) {
                Ok(s) => s,
                Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
            }
        };
        assert_eq!(pragma("journal_mode").await, "wal");
        // 2: FULL, every commit synced before it returns.
        assert_eq!(pragma("synchronous").await, "2");
        // 2: MEMORY, no temporary file per multi-row statement.
        assert_eq!(pragma("temp_store").await, "2");
    }
}

#[tokio::test]
async fn postgres() {
    let Some(db) = crate::testing::FreshPostgres::create().await else {
        return;
    };
    let store = MetadataStore::connect(&db.url).await.unwrap();
    run(&store).await;
    maintenance(&store).await;
    expiry(&store).await;
    let again = MetadataStore::connect(&db.url).await.unwrap();
    assert_eq!(again.list_topics().await.unwrap().len(), 4);
    sessions(&again).await;
    renewal(&again).await;
    wide_commit(&again).await;
    generation(&store, &again).await;
    kafka_nodes(&store, &again).await;
    classic_groups(&store, &again).await;
    // A session whose server side ends (here its backend is terminated, and waited for; in
    // life, a server restart) no longer holds, and its agent opens another.
    let session = again.open_session().await.unwrap();
    assert!(session.holds(Duration::from_secs(5)).await);
    sqlx::query(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks
         WHERE locktype = 'advisory' AND objsubid = 2 AND objid::bigint = $1",
    )
    .bind(session.key())
    .execute(&again.pool)
    .await
    .unwrap();
    assert!(!session.holds(Duration::from_secs(5)).await);
    // Every connection carries the server-side timeouts that end a stalled transaction,
    // dedicated pools their own.
    let commits = again
        .dedicated(1, Duration::from_millis(1234))
        .await
        .unwrap();
    for (pool, want) in [(&again.pool, "30s"), (&commits.pool, "1234ms")] {
        for setting in ["statement_timeout", "idle_in_transaction_session_timeout"] {
            let row = sqlx::query(&format!("SELECT current_setting('{setting}') AS v"))
                .fetch_one(pool)
                .await
                .unwrap();
            let got: String = sqlx::Row::try_get(&row, "v").unwrap();
            assert_eq!(got, want, "{setting}");
        }
    }
    commits.close().await;
    store.close().await;
    again.close().await;
    db.drop_db().await;
}

/// Agents started together on a fresh PostgreSQL database all migrate it (the compose file
/// starts three at once): one creates the schema, the others wait for it and find it done.
#[tokio::test]
async fn agents_starting_together_on_a_fresh_postgres_database_all_migrate() {
    let Some(db) = crate::testing::FreshPostgres::create().await else {
        return;
    };
    let starts = (0..8).map(|_| MetadataStore::connect(&db.url));
    let stores: Vec<MetadataStore> = futures::future::join_all(starts)
        .await
        .into_iter()
        .collect::<Result<_, MetadataError>>()
        .unwrap_or_else(|e| panic!("a concurrent start failed: {e}"));
    for store in stores {
        store.close().await;
    }
    db.drop_db().await;
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(matches!(
        MetadataStore::connect("mysql://x").await,
        Err(MetadataError::InvalidUrl { .. })
    ));
    assert!(matches!(
        MetadataStore::connect("sqlite://").await,
        Err(MetadataError::InvalidUrl { .. })
    ));
}
