//! An object store that refuses writes for a while: produce requests fail with a clear,
//! retriable error (and the producer retries them), nothing acknowledged is lost, and the
//! agent recovers by itself when the store does.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use streamhouse_agent::testing::FaultyStore;
use streamhouse_agent::{Agent, AgentConfig, object_store};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::ErrorCode;
use streamhouse_tests::{Deadline, data_dir, raw};

const TOPIC: &str = "faulty";

fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.append(
        streamhouse_tests::now_ms(),
        None,
        Some(value.as_bytes()),
        &[],
    );
    b.finish(ProducerStamp::NONE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_out_an_object_store_outage() {
    let (_guard, dir) = data_dir();
    let config = AgentConfig::embedded(&dir, "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    let store = FaultyStore::new(object_store::open(&config.storage).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = Agent::start_with_store(config, listener, store.clone())
        .await
        .unwrap();
    let addr = agent.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(agent.serve(async {
        let _ = stopped.await;
    }));

    Admin::connect(&addr)
        .await
        .unwrap()
        .create_topic(NewTopic::new(TOPIC, 2))
        .await
        .unwrap();
    let producer = Producer::builder()
        .bootstrap(&addr)
        .delivery_timeout_ms(60_000)
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..1000 {
        deliveries.push((
            i,
            producer
                .send(TOPIC, None, format!("{i}").as_bytes())
                .await
                .unwrap(),
        ));
    }
    producer.flush().await.unwrap();

    // The store goes away: a raw request is refused with a typed, retriable error...
    store.set_failing(true);
    let mut c = raw::connect(&addr).await;
    let refused = raw::produce(&mut c, TOPIC, 0, vec![batch("refused")]).await;
    assert_eq!(
        raw::code(&refused.error),
        ErrorCode::StorageUnavailable,
        "{refused:?}"
    );
    // ... and the producer keeps retrying what it is given meanwhile.
    for i in 1000..2000 {
        deliveries.push((
            i,
            producer
                .send(TOPIC, None, format!("{i}").as_bytes())
                .await
                .unwrap(),
        ));
    }
    let deadline = Deadline::within(Duration::from_secs(30));
    while store.refused.load(Ordering::SeqCst) < 5 {
        deadline.check("the producer did not retry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.set_failing(false);
    producer.flush().await.unwrap();

    let mut acked: BTreeMap<u32, BTreeMap<i64, String>> = BTreeMap::new();
    for (i, d) in deliveries {
        let m = d.await.expect("no error reaches the application");
        let dup = acked
            .entry(m.partition)
            .or_default()
            .insert(m.offset, format!("{i}"));
        assert!(dup.is_none(), "offset given twice");
    }
    producer.close().await.unwrap();

    // Everything acknowledged is there once, densely; the refused batch is not.
    let mut consumer = Consumer::builder()
        .bootstrap(&addr)
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await
        .unwrap();
    consumer
        .assign(vec![
            TopicPartition::new(TOPIC, 0),
            TopicPartition::new(TOPIC, 1),
        ])
        .await
        .unwrap();
    let mut got: BTreeMap<u32, BTreeMap<i64, String>> = BTreeMap::new();
    let mut n = 0;
    let deadline = Deadline::within(Duration::from_secs(60));
    while n < 2000 {
        deadline.check(format_args!("read {n} of 2000"));
        for r in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            got.entry(r.partition).or_default().insert(r.offset, v);
            n += 1;
        }
    }
    assert_eq!(got, acked);
    for records in got.values() {
        assert!(records.keys().enumerate().all(|(i, o)| *o == i as i64));
    }
    consumer.close().await.unwrap();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
