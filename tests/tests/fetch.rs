//! Fetch boundaries: `max_bytes` may stop a fetch inside a chunk; a fetch starting inside a
//! chunk skips the batches before it; a fetch at the high watermark waits for new data, also
//! on an agent that does not lead the partition.

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

#[test]
fn long_polls_on_followers_share_one_poll_of_the_store() {
    use streamhouse_agent::{AgentConfig, EmbeddedAgent};
    use streamhouse_client::{Admin, NewTopic, Producer};
    use streamhouse_tests::metrics::metadata_calls;
    use streamhouse_tests::{wait_for, wait_until};

    let (_guard, dir) = data_dir();
    let mut config = AgentConfig::embedded(&dir, "127.0.0.1:0").unwrap();
    config.metrics_listen = Some("127.0.0.1:0".into());
    let a = EmbeddedAgent::start(config.clone(), 1).unwrap();
    let b = EmbeddedAgent::start(config, 1).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Admin::connect(&a.addr().to_string()).await.unwrap();
        admin
            .create_topic(NewTopic::new("follow", 16))
            .await
            .unwrap();
        // Both agents lead half: each long-polls the other's partitions as a follower.
        let leaders = wait_for(
            "both agents to lead 8 partitions",
            Duration::from_secs(30),
            || async {
                let t = admin.describe_topic("follow").await.unwrap();
                let leaders: Vec<String> = t
                    .partitions
                    .iter()
                    .filter_map(|p| p.leader_id.clone())
                    .collect();
                let of_a = leaders.iter().filter(|l| **l == a.id()).count();
                (leaders.len() == 16 && of_a == 8).then_some(leaders)
            },
        )
        .await;
        let agents = [&a, &b];
        let polls_of =
            |i: usize| metadata_calls(agents[i].metrics_addr().unwrap(), "partition_bounds");
        let before = [polls_of(0), polls_of(1)];
        let started = Instant::now();
        let mut waits = Vec::new();
        for (p, leader) in leaders.iter().enumerate() {
            let follower = if *leader == a.id() {
                b.addr()
            } else {
                a.addr()
            };
            waits.push(tokio::spawn(async move {
                let mut c = raw::connect(&follower.to_string()).await;
                raw::fetch(&mut c, "follow", p as u32, 0, 1 << 20, 10_000).await
            }));
        }
        // Once both agents poll for their followers, the fetches wait: send one record each.
        wait_until(
            "both agents to poll the store for their followers",
            Duration::from_secs(10),
            || polls_of(0) > before[0] && polls_of(1) > before[1],
        )
        .await;
        let producer = Producer::builder()
            .bootstrap(a.addr().to_string())
            .build()
            .await
            .unwrap();
        for p in 0..16 {
            producer
                .send_record("follow", Some(p), None, Some(b"x"), &[], None)
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        for (p, w) in waits.into_iter().enumerate() {
            let r = w.await.unwrap();
            assert_eq!(code(&r.error), ErrorCode::Ok, "partition {p}");
            assert_eq!(
                r.high_watermark, 1,
                "partition {p}: the wait saw the other agent's commit"
            );
            assert_eq!(r.batches.len(), 1, "partition {p}");
        }
        // Eight waits on each agent, one poll of the store every 100 ms between them.
        let most = started.elapsed().as_millis() as f64 / 100.0 + 1.0;
        for (i, earlier) in before.iter().enumerate() {
            let polls = polls_of(i) - earlier;
            assert!(
                polls <= most,
                "agent {i}: {polls} polls in {:?} (at most {most})",
                started.elapsed()
            );
        }
        producer.close().await.unwrap();
    });
    a.stop().unwrap();
    b.stop().unwrap();
}
