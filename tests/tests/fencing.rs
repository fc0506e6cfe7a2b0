//! A flush in which one partition turns out fenced: that partition's batches are refused
//! with NOT_LEADER, and the other partitions of the same flush, whose leases stand, are
//! written by the next flush instead of failing.

use std::time::Duration;

use bytes::Bytes;
use streamhouse_agent::metadata::MetadataStore;
use streamhouse_agent::{Agent, AgentConfig};
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::ErrorCode;
use streamhouse_tests::{data_dir, raw};

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
async fn a_fenced_partition_does_not_fail_its_flush_mates() {
    let (_guard, dir) = data_dir();
    let mut config =
        AgentConfig::embedded(&dir, "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    config.id = Some("victim".into());
    // Lease rounds far apart, so the theft below is found by the flush commit, not a round.
    config.lease_ttl_ms = 600_000;
    config.heartbeat_ms = 300_000;
    let metadata_url = config.metadata.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = Agent::start(config, listener).await.unwrap();
    let addr = agent.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(agent.serve(async {
        let _ = stopped.await;
    }));
    let mut c = raw::connect(&addr).await;
    assert_eq!(
        raw::code(&raw::create_topic(&mut c, "shared", 2).await.error),
        ErrorCode::Ok
    );

    // Someone else takes partition 0 behind the agent's back, at a higher epoch.
    let store = MetadataStore::connect(&metadata_url).await.unwrap();
    let p0 = store.get_partition("shared", 0).await.unwrap().unwrap();
    assert_eq!(p0.leader_id.as_deref(), Some("victim"));
    assert!(
        store
            .release_lease("victim", "shared", 0, p0.lease_epoch, "test")
            .await
            .unwrap()
    );
    let stolen = store
        .acquire_leases("thief", 600_000, &[("shared".into(), 0)])
        .await
        .unwrap();
    assert_eq!(stolen[0].epoch, p0.lease_epoch + 1);

    // One request, so both partitions share one flush.
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        raw::produce_many(
            &mut c,
            vec![
                ("shared", 0, vec![batch("lost-lease")]),
                ("shared", 1, vec![batch("bystander")]),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(raw::code(&resp.error), ErrorCode::Ok);
    assert_eq!(raw::code(&resp.results[0].error), ErrorCode::NotLeader);
    assert_eq!(raw::code(&resp.results[1].error), ErrorCode::Ok, "{resp:?}");
    assert_eq!(resp.results[1].base_offsets, vec![0]);

    // Partition 0 holds nothing; partition 1 holds its batch.
    assert_eq!(
        store
            .get_partition("shared", 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        0
    );
    let f = raw::fetch(&mut c, "shared", 1, 0, 1 << 20, 0).await;
    assert_eq!(raw::code(&f.error), ErrorCode::Ok);
    assert_eq!(f.batches.len(), 1);
    store.close().await;
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
