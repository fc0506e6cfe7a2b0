//! The whole data path against real agent processes: 100,000 records over 8 partitions come
//! back complete and in order, and every acknowledged record survives a graceful restart and
//! a `kill -9`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};
use streamhouse_proto::partitioner::partition_for_key;
use streamhouse_tests::{AgentProcess, Deadline, data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");
const TOPIC: &str = "clicks";
const PARTITIONS: u32 = 8;
const LEASE: [&str; 4] = ["--lease-ttl-ms", "1500", "--heartbeat-ms", "300"];

/// What the producer was told: partition -> offset -> value.
type Acked = BTreeMap<u32, BTreeMap<i64, String>>;

async fn produce(addr: &str, from: usize, to: usize, acked: &mut Acked) {
    let producer = Producer::builder()
        .bootstrap(addr)
        .delivery_timeout_ms(60_000)
        .build()
        .await
        .unwrap();
    let mut pending = Vec::with_capacity(to - from);
    for i in from..to {
        let key = format!("user-{}", i % 1000);
        let value = format!("{i}:{key}");
        let d = producer
            .send(TOPIC, Some(key.as_bytes()), value.as_bytes())
            .await
            .unwrap();
        pending.push((key, value, d));
    }
    producer.flush().await.unwrap();
    for (key, value, d) in pending {
        let meta = d.await.unwrap();
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), PARTITIONS)
        );
        let previous = acked
            .entry(meta.partition)
            .or_default()
            .insert(meta.offset, value);
        assert!(previous.is_none(), "offset {} given twice", meta.offset);
    }
    producer.close().await.unwrap();
}

async fn create_topic(addr: &str) {
    Admin::connect(addr)
        .await
        .unwrap()
        .create_topic(NewTopic::new(TOPIC, PARTITIONS))
        .await
        .unwrap();
}

/// Reads every partition from the beginning to its high watermark.
async fn consume_all(addr: &str, expected: &Acked) -> Acked {
    let mut consumer = Consumer::builder()
        .bootstrap(addr)
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(5000)
        .build()
        .await
        .unwrap();
    let tps: Vec<_> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    consumer.assign(tps).await.unwrap();
    let want: usize = expected.values().map(BTreeMap::len).sum();
    let mut got: Acked = BTreeMap::new();
    let mut last: HashMap<u32, i64> = HashMap::new();
    let deadline = Deadline::within(Duration::from_secs(120));
    let mut n = 0;
    while n < want {
        deadline.check(format_args!("read {n} of {want} records"));
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let prev = last.insert(r.partition, r.offset);
            assert!(
                prev.is_none_or(|p| p + 1 == r.offset),
                "partition {} jumped from {prev:?} to {}",
                r.partition,
                r.offset
            );
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            got.entry(r.partition).or_default().insert(r.offset, value);
            n += 1;
        }
    }
    consumer.close().await.unwrap();
    got
}

fn check_dense_and_keyed(acked: &Acked) {
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    for (p, records) in acked {
        // Offsets are dense from 0.
        for (i, offset) in records.keys().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p} is not dense");
        }
        // Every key on one partition, and per key the records in the order they were sent.
        let mut last_seq: HashMap<&str, usize> = HashMap::new();
        for value in records.values() {
            let (seq, key) = value.split_once(':').unwrap();
            let seq: usize = seq.parse().unwrap();
            assert_eq!(*key_partition.entry(key.to_string()).or_insert(*p), *p);
            if let Some(prev) = last_seq.insert(key, seq) {
                assert!(prev < seq, "{key}: record {seq} after {prev}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_restarts_complete_and_in_order() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &LEASE);
    create_topic(&agent.addr).await;

    let mut acked = Acked::new();
    produce(&agent.addr, 0, 100_000, &mut acked).await;
    assert_eq!(acked.values().map(BTreeMap::len).sum::<usize>(), 100_000);
    assert_eq!(acked.len(), PARTITIONS as usize);
    check_dense_and_keyed(&acked);
    assert_eq!(consume_all(&agent.addr, &acked).await, acked);

    // Graceful stop: exit 0, and a new agent on the same stores serves everything.
    assert!(agent.terminate().success());
    let agent = AgentProcess::start(BIN, &dir, &LEASE);
    assert_eq!(consume_all(&agent.addr, &acked).await, acked);

    // More records, then kill -9 right after the acknowledgements.
    produce(&agent.addr, 100_000, 120_000, &mut acked).await;
    agent.kill9();
    let agent = AgentProcess::start(BIN, &dir, &LEASE);
    check_dense_and_keyed(&acked);
    assert_eq!(consume_all(&agent.addr, &acked).await, acked);

    // And the restarted agent takes writes again, continuing the offsets.
    produce(&agent.addr, 120_000, 121_000, &mut acked).await;
    check_dense_and_keyed(&acked);
    assert_eq!(consume_all(&agent.addr, &acked).await, acked);
}

/// The same path on PostgreSQL and S3: runs when `STREAMHOUSE_TEST_POSTGRES` and
/// `STREAMHOUSE_TEST_S3_ENDPOINT` name the services (always under CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_restart_on_postgres_and_s3() {
    let Some(endpoint) = streamhouse_agent::testing::service_env("STREAMHOUSE_TEST_S3_ENDPOINT")
    else {
        return;
    };
    let Some(db) = streamhouse_agent::testing::FreshPostgres::create().await else {
        return;
    };
    let bucket = format!("sh-e2e-{:08x}", rand_suffix());
    let storage = format!("s3://{bucket}/cluster?endpoint={endpoint}&region=us-east-1");
    streamhouse_agent::object_store::S3Store::open(&storage)
        .await
        .unwrap()
        .ensure_bucket()
        .await
        .unwrap();
    let extra = [&LEASE[..], &["--flush-interval-ms", "50"]].concat();
    let agent = AgentProcess::start_with(BIN, &db.url, &storage, &extra);
    create_topic(&agent.addr).await;
    let mut acked = Acked::new();
    produce(&agent.addr, 0, 20_000, &mut acked).await;
    check_dense_and_keyed(&acked);
    agent.kill9();
    let agent = AgentProcess::start_with(BIN, &db.url, &storage, &extra);
    assert_eq!(consume_all(&agent.addr, &acked).await, acked);
    assert!(agent.terminate().success());
    db.drop_db().await;
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}
