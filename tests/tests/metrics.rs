//! `/metrics` after traffic: the documented series are there, in Prometheus' text format,
//! with values that match what was done.

use std::time::Duration;

use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};
use streamhouse_tests::Deadline;
use streamhouse_tests::metrics::{scrape, value};

#[test]
fn metrics_show_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    // Maintenance often enough that compaction and GC show within the test.
    streamhouse_tests::fast_maintenance(&mut config);
    let agent = EmbeddedAgent::start(config, 2).unwrap();
    let addr = agent.addr().to_string();
    let metrics = agent.metrics_addr().expect("metrics served");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Admin::connect(&addr)
            .await
            .unwrap()
            .create_topic(NewTopic::new("m", 1))
            .await
            .unwrap();
        let p = Producer::builder().bootstrap(&addr).build().await.unwrap();
        for i in 0..100 {
            p.send("m", None, format!("{i}").as_bytes()).await.unwrap();
        }
        p.close().await.unwrap();
        let mut c = Consumer::builder()
            .bootstrap(&addr)
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        c.assign(vec![TopicPartition::new("m", 0)]).await.unwrap();
        let mut got = 0;
        while got < 100 {
            got += c.poll(Duration::from_millis(200)).await.unwrap().len();
        }
        c.close().await.unwrap();
    });
    let resp = scrape(metrics, "/metrics");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/plain; version=0.0.4"));
    assert_eq!(value(&resp, "streamhouse_produced_records_total"), 100.0);
    assert!(value(&resp, "streamhouse_fetched_records_total") >= 100.0);
    assert!(value(&resp, "streamhouse_flushes_total") >= 1.0);
    assert_eq!(value(&resp, "streamhouse_partitions_led"), 1.0);
    assert!(value(&resp, "streamhouse_produce_request_seconds_count") >= 1.0);
    assert!(value(&resp, "streamhouse_fetch_request_seconds_count") >= 1.0);
    let puts = value(&resp, "streamhouse_object_put_seconds_count");
    assert!(puts >= 1.0);
    assert_eq!(
        value(&resp, "streamhouse_object_put_seconds_bucket{le=\"+Inf\"}"),
        puts
    );
    assert!(value(&resp, "streamhouse_metadata_commit_seconds_count") >= 1.0);
    assert_eq!(value(&resp, "streamhouse_object_put_errors_total"), 0.0);
    let reads = value(&resp, "streamhouse_cache_hits_total")
        + value(&resp, "streamhouse_cache_misses_total");
    assert!(reads >= 1.0, "every chunk read is a hit or a miss");
    assert!(scrape(metrics, "/nope").starts_with("HTTP/1.1 404"));

    // Every series docs/OPERATIONS.md documents is served.
    let ops = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"),
    )
    .unwrap();
    let documented: Vec<String> = ops
        .lines()
        .filter(|l| l.starts_with("| `streamhouse_"))
        .flat_map(|l| {
            let names = l.split('|').nth(1).unwrap();
            let mut out = Vec::new();
            for n in names.split(',').map(|n| n.trim().trim_matches('`')) {
                out.push(if n.starts_with('_') {
                    format!("streamhouse{n}")
                } else {
                    n.to_string()
                });
            }
            out
        })
        .collect();
    assert!(documented.len() >= 30, "{documented:?}");
    for name in &documented {
        assert!(
            resp.contains(&format!("# TYPE {name} ")),
            "{name} is documented but not served"
        );
    }

    // Compaction and garbage collection progress, once their intervals pass.
    let deadline = Deadline::within(Duration::from_secs(30));
    loop {
        let text = scrape(metrics, "/metrics");
        if value(&text, "streamhouse_compactions_total") >= 1.0
            && value(&text, "streamhouse_gc_runs_total") >= 1.0
            && value(&text, "streamhouse_gc_objects_deleted_total") >= 1.0
        {
            assert!(value(&text, "streamhouse_compaction_rows_replaced_total") >= 1.0);
            assert!(value(&text, "streamhouse_compaction_bytes_total") > 0.0);
            assert!(value(&text, "streamhouse_compaction_seconds_count") >= 1.0);
            assert!(value(&text, "streamhouse_gc_bytes_deleted_total") > 0.0);
            assert_eq!(value(&text, "streamhouse_compaction_errors_total"), 0.0);
            break;
        }
        deadline.check(format_args!("no compaction or GC: {text}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.stop().unwrap();
}

/// The producer's own histograms time what it did: batches linger as configured, each batch
/// is timed once however many requests carry it, and requests are timed as the agent answers.
#[test]
fn producer_metrics_time_linger_queue_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    let agent = EmbeddedAgent::start(config, 2).unwrap();
    let addr = agent.addr().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Admin::connect(&addr)
            .await
            .unwrap()
            .create_topic(NewTopic::new("pm", 2))
            .await
            .unwrap();
        let p = Producer::builder()
            .bootstrap(&addr)
            .linger_ms(30)
            .build()
            .await
            .unwrap();
        let start = p.metrics();
        assert_eq!(start.linger.count(), 0);
        // Three rounds of one batch per partition, each round sent whole before the next.
        for round in 0..3 {
            let started = std::time::Instant::now();
            let mut deliveries = Vec::new();
            for partition in 0..2 {
                let d = p
                    .send_record("pm", Some(partition), None, Some(b"v"), &[], None)
                    .await
                    .unwrap();
                deliveries.push(d);
            }
            for d in deliveries {
                d.await.unwrap();
            }
            assert!(
                started.elapsed() >= Duration::from_millis(30),
                "round {round}"
            );
        }
        let m = p.metrics().since(&start);
        assert_eq!(m.linger.count(), 6, "one per batch");
        assert_eq!(m.queue.count(), 6, "one per batch");
        assert!(
            (3..=6).contains(&m.request.count()),
            "a request per round, or one per partition: {}",
            m.request.count()
        );
        // Sealed within a timer tick of 30 ms, not before.
        let linger_min = m.linger.quantile(0.0);
        assert!(
            linger_min >= Duration::from_millis(29),
            "linger {linger_min:?}"
        );
        assert!(m.linger.max() < Duration::from_secs(5), "{:?}", m.linger);
        assert!(m.request.quantile(1.0) > Duration::ZERO);
        p.close().await.unwrap();
    });
}
