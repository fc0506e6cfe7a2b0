//! Fetch boundaries: `max_bytes` may stop a fetch inside a chunk; a fetch starting inside a
//! chunk skips the batches before it; a fetch at the high watermark waits for new data.

use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::stream_house_client::StreamHouseClient;
use streamhouse_proto::pb::{self, ErrorCode};
use streamhouse_tests::{data_dir, AgentProcess};

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");

fn batch(records: usize, tag: u8) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for _ in 0..records {
        b.append(1, None, Some(&[tag; 100]), &[]);
    }
    b.finish(ProducerStamp::NONE).unwrap()
}

fn fetch_req(offset: i64, max_bytes: u32, max_wait_ms: u32) -> pb::FetchRequest {
    pb::FetchRequest {
        topic: "f".into(),
        partition: 0,
        offset,
        max_bytes,
        max_wait_ms,
        min_bytes: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_respects_batch_boundaries_and_long_polls() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let mut c = StreamHouseClient::connect(format!("http://{}", agent.addr))
        .await
        .unwrap();
    let r = c
        .create_topic(pb::CreateTopicRequest {
            name: "f".into(),
            partitions: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().code, ErrorCode::Ok as i32);

    // Three batches in one request land in one chunk, at offsets 0, 2 and 5.
    let batches = vec![batch(2, 1), batch(3, 2), batch(4, 3)];
    let r = c
        .produce(pb::ProduceRequest {
            topic: "f".into(),
            partition: 0,
            batches: batches.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.error.unwrap().code, r.base_offset), (0, 0));

    // A tiny max_bytes still returns one whole batch, and stopping inside the chunk is fine.
    let r = c.fetch(fetch_req(0, 1, 0)).await.unwrap().into_inner();
    assert_eq!(r.error.unwrap().code, 0);
    assert_eq!(r.base_offsets, vec![0]);
    assert_eq!(r.batches, vec![batches[0].clone()]);
    // Starting inside the chunk skips the batches wholly before the offset.
    let r = c
        .fetch(fetch_req(3, 1 << 20, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.base_offsets, vec![2, 5]);
    assert_eq!(r.batches, batches[1..].to_vec());
    assert_eq!(r.high_watermark, 9);

    // At the high watermark the fetch waits for the next commit, then returns it.
    let mut waiter = c.clone();
    let started = Instant::now();
    let pending = tokio::spawn(async move { waiter.fetch(fetch_req(9, 1 << 20, 10_000)).await });
    let r = c
        .produce(pb::ProduceRequest {
            topic: "f".into(),
            partition: 0,
            batches: vec![batch(1, 4)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.base_offset, 9);
    let r = pending.await.unwrap().unwrap().into_inner();
    assert_eq!(r.base_offsets, vec![9]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "long poll did not wake"
    );
    // With nothing new, it returns empty once max_wait passes.
    let r = c
        .fetch(fetch_req(10, 1 << 20, 50))
        .await
        .unwrap()
        .into_inner();
    assert!(r.batches.is_empty());
    assert_eq!(r.high_watermark, 10);
}
