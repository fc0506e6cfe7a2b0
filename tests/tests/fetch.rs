//! Fetch boundaries: `max_bytes` may stop a fetch inside a chunk; a fetch starting inside a
//! chunk skips the batches before it; a fetch at the high watermark waits for new data.

use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::ErrorCode;
use streamhouse_tests::raw::{self, code};
use streamhouse_tests::{AgentProcess, data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");

fn batch(records: usize, tag: u8) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for _ in 0..records {
        b.append(streamhouse_tests::now_ms(), None, Some(&[tag; 100]), &[]);
    }
    b.finish(ProducerStamp::NONE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_respects_batch_boundaries_and_long_polls() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let mut c = raw::connect(&agent.addr).await;
    assert_eq!(
        code(&raw::create_topic(&mut c, "f", 1).await.error),
        ErrorCode::Ok
    );

    // Three batches in one request land in one chunk, at offsets 0, 2 and 5.
    let batches = vec![batch(2, 1), batch(3, 2), batch(4, 3)];
    let r = raw::produce(&mut c, "f", 0, batches.clone()).await;
    assert_eq!((code(&r.error), r.base_offset), (ErrorCode::Ok, 0));

    // A tiny max_bytes still returns one whole batch, and stopping inside the chunk is fine.
    let r = raw::fetch(&mut c, "f", 0, 0, 1, 0).await;
    assert_eq!(code(&r.error), ErrorCode::Ok);
    assert_eq!(r.base_offsets, vec![0]);
    assert_eq!(r.batches, vec![batches[0].clone()]);
    // Starting inside the chunk skips the batches wholly before the offset.
    let r = raw::fetch(&mut c, "f", 0, 3, 1 << 20, 0).await;
    assert_eq!(r.base_offsets, vec![2, 5]);
    assert_eq!(r.batches, batches[1..].to_vec());
    assert_eq!(r.high_watermark, 9);

    // At the high watermark the fetch waits for the next commit, then returns it.
    let mut waiter = c.clone();
    let started = Instant::now();
    let pending =
        tokio::spawn(async move { raw::fetch(&mut waiter, "f", 0, 9, 1 << 20, 10_000).await });
    let r = raw::produce(&mut c, "f", 0, vec![batch(1, 4)]).await;
    assert_eq!(r.base_offset, 9);
    let r = pending.await.unwrap();
    assert_eq!(r.base_offsets, vec![9]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "long poll did not wake"
    );
    // With nothing new, it returns empty once max_wait passes.
    let r = raw::fetch(&mut c, "f", 0, 10, 1 << 20, 50).await;
    assert!(r.batches.is_empty());
    assert_eq!(r.high_watermark, 10);
}
