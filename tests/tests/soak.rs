//! Soak: produce without pause against a retention of a few seconds, with short flush,
//! maintenance and GC intervals. What the cluster stores must stay bounded (objects on disk,
//! index rows in the metadata store) while every record still inside retention stays
//! readable, in order and intact, the whole time.
//!
//! `STREAMHOUSE_SOAK_SECS` lengthens it (default 20).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamhouse_agent::metadata::MetadataStore;
use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::{Admin, ClientError, NewTopic, Producer, TopicPartition};

const RETENTION_MS: i64 = 2_000;
const PARTITIONS: u32 = 2;

use streamhouse_tests::metrics::metric;
use streamhouse_tests::now_ms;

fn count_objects(dir: &Path) -> usize {
    ["data", "segments"]
        .iter()
        .map(|p| {
            std::fs::read_dir(dir.join("objects").join(p))
                .map(|d| d.flatten().count())
                .unwrap_or(0)
        })
        .sum()
}

/// Per partition, the timestamp each offset was sent with (offsets are dense from 0: one
/// producer, one in-order stream per partition).
type Sent = Arc<Mutex<HashMap<u32, Vec<i64>>>>;

#[test]
fn storage_stays_bounded_and_retained_records_stay_readable() {
    let secs: u64 = std::env::var("STREAMHOUSE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    streamhouse_tests::fast_maintenance(&mut config);
    let agent = EmbeddedAgent::start(config, 2).unwrap();
    let addr = agent.addr().to_string();
    let metrics = agent.metrics_addr().expect("metrics are served");
    let meta_url = format!("sqlite://{}", dir.path().join("metadata.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Admin::connect(&addr).await.unwrap();
        let mut topic = NewTopic::new("soak", PARTITIONS);
        topic.retention_ms = Some(RETENTION_MS);
        admin.create_topic(topic).await.unwrap();
        let meta = MetadataStore::connect(&meta_url).await.unwrap();

        let sent: Sent = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let producing = {
            let (addr, sent, done) = (addr.clone(), sent.clone(), done.clone());
            tokio::spawn(async move {
                let p = Producer::builder()
                    .bootstrap(&addr)
                    .linger_ms(2)
                    .build()
                    .await
                    .unwrap();
                let mut n = [0i64; PARTITIONS as usize];
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for part in 0..PARTITIONS {
                        for _ in 0..50 {
                            let ts = now_ms();
                            let value = format!("{part}:{}", n[part as usize]);
                            sent.lock().unwrap().entry(part).or_default().push(ts);
                            p.send_record(
                                "soak",
                                Some(part),
                                None,
                                Some(value.as_bytes()),
                                &[],
                                Some(ts),
                            )
                            .await
                            .unwrap();
                            n[part as usize] += 1;
                        }
                    }
                    p.flush().await.unwrap();
                    // About 5,000 records/s: steady, not saturating two shared cores.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                p.close().await.unwrap();
            })
        };

        let started = Instant::now();
        let mut samples: Vec<(Duration, usize, i64)> = Vec::new();
        let mut checks = 0u32;
        while started.elapsed() < Duration::from_secs(secs) {
            for part in 0..PARTITIONS {
                check_partition(&addr, &admin, part, &sent).await;
            }
            checks += 1;
            samples.push((
                started.elapsed(),
                count_objects(dir.path()),
                meta.segment_row_count().await.unwrap(),
            ));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        producing.await.unwrap();
        let produced: usize = sent.lock().unwrap().values().map(Vec::len).sum();

        // Bounded: after a warm-up of twice what retention, grace and compaction need, the
        // second half never holds much more than the first, while production went on.
        let warm = Duration::from_millis(2 * (RETENTION_MS as u64 + 1_000 + 500));
        let (first, second): (Vec<_>, Vec<_>) = samples
            .iter()
            .filter(|s| s.0 >= warm)
            .partition(|s| s.0 < warm + (Duration::from_secs(secs) - warm) / 2);
        let peak = |v: &[&(Duration, usize, i64)], f: fn(&(Duration, usize, i64)) -> i64| {
            v.iter().map(|s| f(s)).max().unwrap_or(0)
        };
        let objects = |s: &(Duration, usize, i64)| s.1 as i64;
        let rows = |s: &(Duration, usize, i64)| s.2;
        println!(
            "soak {secs} s: {produced} records, {checks} read checks; objects peak {} then {}, \
             index rows peak {} then {}",
            peak(&first, objects),
            peak(&second, objects),
            peak(&first, rows),
            peak(&second, rows)
        );
        assert!(
            !first.is_empty() && !second.is_empty(),
            "too short to judge"
        );
        assert!(produced > 0, "nothing was produced");
        assert!(
            peak(&second, objects) <= peak(&first, objects) * 3 / 2 + 20,
            "objects keep growing: {samples:?}"
        );
        assert!(
            peak(&second, rows) <= peak(&first, rows) * 3 / 2 + 20,
            "index rows keep growing: {samples:?}"
        );
        // Objects are removed, not merely written slowly: more were written than remain.
        let written = metric(metrics, "streamhouse_flushes_total") as i64;
        assert!(
            peak(&second, objects) < written,
            "objects are not being removed: {} on disk after {written} flushes",
            peak(&second, objects)
        );
        meta.close().await;
    });
    agent.stop().unwrap();
}

/// At one moment: the log start only ever drops records older than retention, and every
/// record from the log start to the high watermark reads back intact and in order.
async fn check_partition(addr: &str, admin: &Admin, part: u32, sent: &Sent) {
    let topics = admin.list_topics().await.unwrap();
    let p = &topics[0].partitions[part as usize];
    let at = now_ms();
    assert_retention_kept(sent, part, p.log_start_offset, at);
    let tp = TopicPartition::new("soak", part);
    let mut c = streamhouse_tests::consumer_at(addr, &tp, p.log_start_offset).await;
    let mut next = p.log_start_offset;
    while next < p.high_watermark {
        match c.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                for r in records {
                    assert_eq!(r.offset, next, "dense and in order");
                    let want = format!("{part}:{next}");
                    assert_eq!(r.value.as_deref(), Some(want.as_bytes()));
                    next += 1;
                }
            }
            // Retention moved on while reading: it may only have dropped expired records.
            Err(ClientError::OffsetOutOfRange {
                log_start_offset, ..
            }) => {
                assert_retention_kept(sent, part, log_start_offset, now_ms());
                assert!(log_start_offset > next);
                next = log_start_offset;
                c.seek(&tp, next).await.unwrap();
            }
            Err(e) => panic!("read of soak-{part} at {next} failed: {e}"),
        }
    }
    c.close().await.unwrap();
}

/// Every record below `log_start` was older than retention at `at_ms`.
fn assert_retention_kept(sent: &Sent, part: u32, log_start: i64, at_ms: i64) {
    let sent = sent.lock().unwrap();
    // The first check may come before the producer has sent to this partition.
    let times = sent.get(&part).map_or(&[][..], Vec::as_slice);
    let dropped = &times[..(log_start as usize).min(times.len())];
    if let Some(newest) = dropped.iter().max() {
        assert!(
            *newest < at_ms - RETENTION_MS,
            "soak-{part}: log start {log_start} dropped a record of {newest}, inside retention at {at_ms}"
        );
    }
}
