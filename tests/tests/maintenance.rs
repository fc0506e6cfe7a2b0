//! Retention, compaction and garbage collection against running agents: reads stay correct
//! while index rows are swapped and objects deleted, retention moves the log start under
//! consumers, and deleting a topic removes its objects.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::{
    Admin, ClientError, Consumer, NewTopic, OffsetReset, Producer, TopicConfig, TopicPartition,
};
use streamhouse_proto::batch::Batch;
use streamhouse_proto::pb::ErrorCode;
use streamhouse_tests::metrics::{metadata_calls, metric};
use streamhouse_tests::{raw, wait_for, wait_until};

/// An agent on `dir` that compacts and collects garbage every few hundred milliseconds.
fn fast_maintenance(dir: &Path) -> AgentConfig {
    let mut c = AgentConfig::embedded(dir, "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    streamhouse_tests::fast_maintenance(&mut c);
    c
}

/// Object keys under `objects/PREFIX` of a data directory.
fn objects(dir: &Path, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("objects").join(prefix)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".obj") {
                out.insert(format!("{prefix}/{name}"));
            }
        }
    }
    out
}

/// Sends records `numbers` to partition 0 of `topic`, each value the decimal of its number,
/// stamped `timestamp` (now when `None`), and waits for them all to be acknowledged.
async fn send_numbered(
    producer: &Producer,
    topic: &str,
    numbers: std::ops::Range<i64>,
    timestamp: Option<i64>,
) {
    for n in numbers {
        producer
            .send_record(
                topic,
                Some(0),
                None,
                Some(n.to_string().as_bytes()),
                &[],
                timestamp,
            )
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
}

/// Reads `[from, to)` of a partition with a fresh consumer and checks every value is the
/// decimal of its offset.
async fn read_checked(addr: &str, topic: &str, from: i64, to: i64) {
    let tp = TopicPartition::new(topic, 0);
    let mut c = streamhouse_tests::consumer_at(addr, &tp, from).await;
    let mut next = from;
    while next < to {
        for r in c.poll(Duration::from_millis(500)).await.unwrap() {
            assert_eq!(r.offset, next, "offsets dense and in order");
            let v = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(v, r.offset.to_string(), "value at {}", r.offset);
            next += 1;
        }
    }
    c.close().await.unwrap();
}

#[test]
fn fetches_stay_correct_while_compaction_swaps_and_gc_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let agent = EmbeddedAgent::start(fast_maintenance(dir.path()), 2).unwrap();
    let addr = agent.addr().to_string();
    let metrics = agent.metrics_addr().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let total = rt.block_on(async {
        let admin = Admin::connect(&addr).await.unwrap();
        admin.create_topic(NewTopic::new("c", 1)).await.unwrap();
        let producer = Producer::builder()
            .bootstrap(&addr)
            .linger_ms(2)
            .build()
            .await
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Readers start over from offset 0 again and again while the index changes.
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let addr = addr.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut rounds = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let admin = Admin::connect(&addr).await.unwrap();
                        let hwm =
                            admin.list_topics().await.unwrap()[0].partitions[0].high_watermark;
                        read_checked(&addr, "c", 0, hwm).await;
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        let started = Instant::now();
        let mut n = 0i64;
        while started.elapsed() < Duration::from_secs(6) {
            send_numbered(&producer, "c", n..n + 200, None).await;
            n += 200;
        }
        producer.close().await.unwrap();
        // Until at least one compaction and one deletion happened under the readers.
        wait_until(
            "compaction and garbage collection ran",
            Duration::from_secs(30),
            || {
                metric(metrics, "streamhouse_compactions_total") >= 2.0
                    && metric(metrics, "streamhouse_gc_objects_deleted_total") >= 1.0
            },
        )
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() >= 1, "each reader finished a full pass");
        }
        read_checked(&addr, "c", 0, n).await;
        n
    });
    assert!(total > 1_000);
    // Compaction moved the partition into segment objects; the flush objects it replaced
    // are gone once the grace passed.
    assert!(!objects(dir.path(), "segments").is_empty());
    assert!(metric(metrics, "streamhouse_compaction_errors_total") == 0.0);
    assert!(metric(metrics, "streamhouse_fetch_errors_total") == 0.0);
    agent.stop().unwrap();
}

#[test]
fn an_agent_holding_an_old_index_reads_through_compaction_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_maintenance(dir.path());
    // No chunk cache: every read goes to the objects, so a deleted one would show.
    config.cache_bytes = 0;
    // Chunks wait 3 s before compaction, so the follower reads the flush objects first.
    config.compaction_age_ms = 3_000;
    let a = EmbeddedAgent::start(config.clone(), 1).unwrap();
    let b = EmbeddedAgent::start(config, 1).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Admin::connect(&a.addr().to_string()).await.unwrap();
        admin.create_topic(NewTopic::new("old", 1)).await.unwrap();
        // The partition's leader may be the other agent, which takes it at its next round.
        let leader = wait_for(
            "a leader for the partition",
            Duration::from_secs(30),
            || async {
                admin.describe_topic("old").await.unwrap().partitions[0]
                    .leader_id
                    .clone()
            },
        )
        .await;
        let follower = if leader == a.id() { b.addr() } else { a.addr() };
        let producer = Producer::builder()
            .bootstrap(a.addr().to_string())
            .build()
            .await
            .unwrap();
        for start in (0..300).step_by(30) {
            send_numbered(&producer, "old", start..start + 30, None).await;
        }
        producer.close().await.unwrap();
        let flushed = objects(dir.path(), "data");
        assert!(flushed.len() >= 5, "{flushed:?}");

        // The follower reads everything once: its index now points at the flush objects.
        let mut raw = raw::connect(&follower.to_string()).await;
        let read_all = |mut c: raw::Client| async move {
            let mut next = 0i64;
            while next < 300 {
                let r = raw::fetch(&mut c, "old", 0, next, 1 << 20, 0).await;
                assert_eq!(raw::code(&r.error), ErrorCode::Ok, "{:?}", r.error);
                for (base, bytes) in r.base_offsets.iter().zip(r.batches) {
                    let batch = Batch::parse(bytes).unwrap();
                    for rec in batch.records(*base).unwrap() {
                        if rec.offset < next {
                            continue;
                        }
                        assert_eq!(rec.offset, next);
                        assert_eq!(rec.value.as_deref(), Some(next.to_string().as_bytes()));
                        next += 1;
                    }
                }
            }
        };
        read_all(raw.clone()).await;

        // Compaction (after 3 s) and then GC (1 s later) remove every one of those objects.
        wait_until(
            "the flush objects the follower indexed are deleted",
            Duration::from_secs(30),
            || objects(dir.path(), "data").is_disjoint(&flushed),
        )
        .await;
        assert!(!objects(dir.path(), "segments").is_empty());
        // The follower's cached index is stale; the read still succeeds, with the same data.
        read_all(raw.clone()).await;
        let r = raw::fetch(&mut raw, "old", 0, 0, 1 << 20, 0).await;
        assert_eq!(raw::code(&r.error), ErrorCode::Ok);
    });
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn retention_advances_the_log_start_and_consumers_reset_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_maintenance(dir.path());
    // Records stamped 2001 are a backfill: the operator lifts the bound that refuses them.
    config.timestamp_before_max_ms = -1;
    let agent = EmbeddedAgent::start(config, 2).unwrap();
    let addr = agent.addr().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Admin::connect(&addr).await.unwrap();
        let t = admin
            .create_topic(NewTopic::new("default", 1))
            .await
            .unwrap();
        assert_eq!(t.retention_ms, 7 * 24 * 3600 * 1000, "the cluster default");
        let mut forever = NewTopic::new("short", 1);
        forever.retention_ms = Some(-1);
        let t = admin.create_topic(forever).await.unwrap();
        assert_eq!(t.retention_ms, -1);
        let producer = Producer::builder().bootstrap(&addr).build().await.unwrap();
        let old = 1_000_000_000_000i64; // 2001: long past any retention
        send_numbered(&producer, "short", 0..100, Some(old)).await;
        send_numbered(&producer, "short", 100..150, None).await;
        producer.close().await.unwrap();
        // Kept forever so far; with an hour's retention only the records of 2001 go.
        let altered = admin
            .alter_topic_config(
                "short",
                TopicConfig {
                    retention_ms: Some(3_600_000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (altered.retention_ms, altered.retention_bytes),
            (3_600_000, -1)
        );
        let log_start = || {
            let admin = admin.clone();
            async move {
                let topics = admin.list_topics().await.unwrap();
                let t = topics.iter().find(|t| t.name == "short").unwrap();
                t.partitions[0].log_start_offset
            }
        };
        wait_for(
            "retention to advance the log start",
            Duration::from_secs(30),
            || async { (log_start().await > 0).then_some(()) },
        )
        .await;
        assert_eq!(log_start().await, 100, "exactly the old flush is dropped");

        // A consumer positioned before the log start: a typed error with the new start...
        let tp = TopicPartition::new("short", 0);
        let mut strict = Consumer::builder()
            .bootstrap(&addr)
            .auto_offset_reset(OffsetReset::None)
            .build()
            .await
            .unwrap();
        strict.assign(vec![tp.clone()]).await.unwrap();
        strict.seek(&tp, 5).await.unwrap();
        match strict.poll(Duration::from_secs(2)).await {
            Err(ClientError::OffsetOutOfRange {
                log_start_offset, ..
            }) => assert_eq!(log_start_offset, 100),
            other => panic!("expected OffsetOutOfRange, got {other:?}"),
        }
        // ...and with auto_offset_reset=earliest it continues from there.
        let mut lenient = Consumer::builder()
            .bootstrap(&addr)
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        lenient.assign(vec![tp.clone()]).await.unwrap();
        lenient.seek(&tp, 5).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 50 {
            got.extend(lenient.poll(Duration::from_secs(1)).await.unwrap());
        }
        assert_eq!(got[0].offset, 100);
        assert_eq!(got[0].value.as_deref(), Some(&b"100"[..]));
        lenient.close().await.unwrap();

        // Size retention: a tiny limit drops every row but the newest (as Kafka keeps its
        // active segment), so once more records arrive the earlier ones go.
        admin
            .alter_topic_config(
                "short",
                TopicConfig {
                    retention_bytes: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let producer = Producer::builder().bootstrap(&addr).build().await.unwrap();
        send_numbered(&producer, "short", 150..200, None).await;
        producer.close().await.unwrap();
        wait_for(
            "size retention to drop the rest",
            Duration::from_secs(30),
            || async { (log_start().await >= 150).then_some(()) },
        )
        .await;
        // Bad values are refused with a typed error.
        let bad = admin
            .alter_topic_config(
                "short",
                TopicConfig {
                    retention_ms: Some(-5),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(
            bad.as_ref().err().and_then(ClientError::code),
            Some(ErrorCode::InvalidRequest),
            "{bad:?}"
        );
        let unknown = admin
            .alter_topic_config("nope", TopicConfig::default())
            .await;
        assert!(
            matches!(unknown, Err(ClientError::UnknownTopic(_))),
            "{unknown:?}"
        );
    });
    agent.stop().unwrap();
}

#[test]
fn deleting_a_topic_removes_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let agent = EmbeddedAgent::start(fast_maintenance(dir.path()), 2).unwrap();
    let addr = agent.addr().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Admin::connect(&addr).await.unwrap();
        admin
            .create_topic(NewTopic::new("doomed", 2))
            .await
            .unwrap();
        let producer = Producer::builder().bootstrap(&addr).build().await.unwrap();
        for i in 0..2_000u32 {
            producer
                .send_record("doomed", Some(i % 2), None, Some(b"x"), &[], None)
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
        assert!(!objects(dir.path(), "data").is_empty());
        admin.delete_topic("doomed").await.unwrap();
        wait_until(
            "every object of the topic is deleted",
            Duration::from_secs(30),
            || objects(dir.path(), "data").is_empty() && objects(dir.path(), "segments").is_empty(),
        )
        .await;
    });
    agent.stop().unwrap();
}

#[test]
fn small_segments_merge_by_tiers_and_stay_few() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_maintenance(dir.path());
    config.compaction_age_ms = 50;
    let agent = EmbeddedAgent::start(config, 2).unwrap();
    let addr = agent.addr().to_string();
    let metrics = agent.metrics_addr().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rounds = 64i64;
    rt.block_on(async {
        let admin = Admin::connect(&addr).await.unwrap();
        admin
            .create_topic(NewTopic::new("trickle", 1))
            .await
            .unwrap();
        let producer = Producer::builder().bootstrap(&addr).build().await.unwrap();
        // A trickle: each round's few records are compacted into a tiny segment of their own
        // before the next round, as a quiet partition's are after `compaction_age_ms`.
        let mut n = 0i64;
        for _ in 0..rounds {
            let before = metric(metrics, "streamhouse_compactions_total");
            send_numbered(&producer, "trickle", n..n + 20, None).await;
            n += 20;
            wait_until("the round compacted", Duration::from_secs(30), || {
                metric(metrics, "streamhouse_compactions_total") > before
            })
            .await;
        }
        producer.close().await.unwrap();
        // Once GC has removed what merging replaced, fewer than four segments per size tier
        // remain (tiers of 4x from a few hundred bytes to half of the 64 KiB target).
        wait_until("merged segments collected", Duration::from_secs(30), || {
            objects(dir.path(), "segments").len() <= 3 * 5 && objects(dir.path(), "data").is_empty()
        })
        .await;
        let compactions = metric(metrics, "streamhouse_compactions_total");
        assert!(
            compactions > rounds as f64,
            "{compactions} compactions for {rounds} rounds: tiers merged nothing"
        );
        read_checked(&addr, "trickle", 0, n).await;
    });
    agent.stop().unwrap();
}

#[test]
fn passes_over_idle_partitions_ask_the_store_nothing_until_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_maintenance(dir.path());
    config.timestamp_before_max_ms = -1;
    let agent = EmbeddedAgent::start(config, 2).unwrap();
    let addr = agent.addr().to_string();
    let metrics = agent.metrics_addr().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Admin::connect(&addr).await.unwrap();
        admin.create_topic(NewTopic::new("idle", 64)).await.unwrap();
        let passes = || metric(metrics, "streamhouse_maintenance_seconds_count");
        let per_partition = ["segments", "uncompacted_segments", "small_segments"];
        let asked = || per_partition.map(|op| metadata_calls(metrics, op));
        // Every lease taken, and two passes since: the first learns each partition's state.
        wait_until(
            "the agent to lead all 64 partitions",
            Duration::from_secs(30),
            || metric(metrics, "streamhouse_partitions_led") == 64.0,
        )
        .await;
        let led_at = passes();
        wait_until("two maintenance passes", Duration::from_secs(30), || {
            passes() >= led_at + 2.0
        })
        .await;
        let before = asked();
        assert!(
            before.iter().all(|n| *n >= 64.0),
            "the first pass looked at every partition: {before:?}"
        );
        let from = passes();
        wait_until("five more passes", Duration::from_secs(30), || {
            passes() >= from + 5.0
        })
        .await;
        assert_eq!(
            asked(),
            before,
            "passes over 64 idle partitions asked the store again"
        );

        // A commit makes retention look again: a record of 2001 goes at the next pass.
        let producer = Producer::builder().bootstrap(&addr).build().await.unwrap();
        producer
            .send_record(
                "idle",
                Some(7),
                None,
                Some(b"old"),
                &[],
                Some(1_000_000_000_000),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        producer.close().await.unwrap();
        wait_for(
            "retention to drop the record of 2001",
            Duration::from_secs(30),
            || async {
                let t = admin.describe_topic("idle").await.unwrap();
                (t.partitions[7].log_start_offset == 1).then_some(())
            },
        )
        .await;
    });
}
