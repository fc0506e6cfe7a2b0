//! Bad input over raw gRPC gets a typed error, and the agent keeps serving.

use bytes::Bytes;
use streamhouse_client::{ClientError, Producer};
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::{self, ErrorCode};
use streamhouse_tests::raw::{self, code, create_topic};
use streamhouse_tests::{AgentProcess, data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");
const MAX: usize = 64 * 1024;

fn batch(values: &[&[u8]], compression: Compression) -> Bytes {
    let mut b = BatchBuilder::new(compression);
    for v in values {
        b.append(streamhouse_tests::now_ms(), Some(b"k"), Some(v), &[]);
    }
    b.finish(ProducerStamp::NONE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_typed_errors_and_the_agent_keeps_serving() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &["--max-record-bytes", &MAX.to_string()]);
    let mut c = raw::connect(&agent.addr).await;

    // Topics: bad names, bad partition counts, duplicates.
    for name in ["", "bad name", "a/b", "..", &"x".repeat(250)] {
        let r = create_topic(&mut c, name, 1).await;
        assert_eq!(code(&r.error), ErrorCode::InvalidTopic, "{name:?}");
    }
    for partitions in [0, 10_001] {
        let r = create_topic(&mut c, "t", partitions).await;
        assert_eq!(code(&r.error), ErrorCode::InvalidPartitions);
    }
    assert_eq!(
        code(&create_topic(&mut c, "t", 2).await.error),
        ErrorCode::Ok
    );
    assert_eq!(
        code(&create_topic(&mut c, "t", 2).await.error),
        ErrorCode::TopicExists
    );

    let good = batch(&[b"hello", b"world"], Compression::Lz4);

    // Unknown topics and partitions, invalid names.
    assert_eq!(
        code(
            &raw::produce(&mut c, "nope", 0, vec![good.clone()])
                .await
                .error
        ),
        ErrorCode::UnknownTopic
    );
    assert_eq!(
        code(&raw::produce(&mut c, "t", 2, vec![good.clone()]).await.error),
        ErrorCode::UnknownPartition
    );
    assert_eq!(
        code(
            &raw::produce(&mut c, "no way", 0, vec![good.clone()])
                .await
                .error
        ),
        ErrorCode::InvalidTopic
    );
    assert_eq!(
        code(&raw::fetch(&mut c, "nope", 0, 0, 1 << 20, 0).await.error),
        ErrorCode::UnknownTopic
    );
    assert_eq!(
        code(&raw::fetch(&mut c, "t", 9, 0, 1 << 20, 0).await.error),
        ErrorCode::UnknownPartition
    );
    let deleted = c
        .delete_topic(pb::DeleteTopicRequest {
            name: "nope".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&deleted.error), ErrorCode::UnknownTopic);
    let meta = c
        .get_metadata(pb::GetMetadataRequest {
            topics: vec!["nope".into(), "t".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&meta.topics[0].error), ErrorCode::UnknownTopic);
    assert_eq!(code(&meta.topics[1].error), ErrorCode::Ok);

    // A batch over the limit.
    let big = vec![7u8; MAX + 1];
    let r = raw::produce(&mut c, "t", 0, vec![batch(&[&big], Compression::None)]).await;
    assert_eq!(code(&r.error), ErrorCode::RecordTooLarge);

    // Corrupt batches: a flipped byte, a dropped tail, garbage, nothing.
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let mut bad_crc = good.to_vec();
    bad_crc[6] ^= 1;
    for corrupt in [
        Bytes::from(flipped),
        Bytes::from(bad_crc),
        good.slice(..good.len() - 3),
        good.slice(..10),
        Bytes::from_static(b"definitely not a batch, but long enough to have a header......"),
        Bytes::new(),
    ] {
        let r = raw::produce(&mut c, "t", 0, vec![corrupt]).await;
        assert_eq!(code(&r.error), ErrorCode::CorruptBatch);
    }

    // Fetches outside [log start, high watermark] report both bounds.
    let ok = raw::produce(&mut c, "t", 0, vec![good.clone()]).await;
    assert_eq!(code(&ok.error), ErrorCode::Ok);
    assert_eq!(ok.base_offset, 0);
    for offset in [-1, 3, 1_000] {
        let r = raw::fetch(&mut c, "t", 0, offset, 1 << 20, 0).await;
        assert_eq!(
            code(&r.error),
            ErrorCode::OffsetOutOfRange,
            "offset {offset}"
        );
        let e = r.error.unwrap();
        assert_eq!((e.log_start_offset, e.high_watermark), (0, 2));
    }

    // One request for several partitions: each is answered on its own; a bad one does not
    // take the good one down with it.
    let mixed = raw::produce_many(
        &mut c,
        vec![
            ("t", 1, vec![good.clone()]),
            ("t", 7, vec![good.clone()]),
            ("nope", 0, vec![good.clone()]),
            ("t", 0, vec![Bytes::from_static(b"garbage")]),
        ],
    )
    .await;
    assert_eq!(code(&mixed.error), ErrorCode::Ok);
    let codes: Vec<_> = mixed.results.iter().map(|r| code(&r.error)).collect();
    assert_eq!(
        codes,
        [
            ErrorCode::Ok,
            ErrorCode::UnknownPartition,
            ErrorCode::UnknownTopic,
            ErrorCode::CorruptBatch
        ]
    );
    assert_eq!(mixed.results[0].base_offset, 0);
    let empty = raw::produce_many(&mut c, vec![]).await;
    assert_eq!(code(&empty.error), ErrorCode::InvalidRequest);

    // Still serving: nothing above touched the log, and what was written reads back.
    let ok = raw::produce(&mut c, "t", 0, vec![good.clone()]).await;
    assert_eq!((code(&ok.error), ok.base_offset), (ErrorCode::Ok, 2));
    let r = raw::fetch(&mut c, "t", 0, 0, 1 << 20, 0).await;
    assert_eq!(code(&r.error), ErrorCode::Ok);
    assert_eq!(r.base_offsets, vec![0, 2]);
    assert_eq!(r.batches, vec![good.clone(), good.clone()]);
    assert_eq!(r.high_watermark, 4);

    // The client refuses an oversize record before sending it.
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .batch_bytes(MAX)
        .build()
        .await
        .unwrap();
    let err = producer.send("t", None, &big).await.unwrap_err();
    assert!(matches!(err, ClientError::RecordTooLarge { .. }), "{err}");
    // And reports the agent's refusal of a batch over the agent's own limit as typed.
    let strict = Producer::builder()
        .bootstrap(&agent.addr)
        .batch_bytes(4 * MAX)
        .compression(Compression::None)
        .build()
        .await
        .unwrap();
    let err = strict
        .send_and_wait("t", None, &vec![1u8; 2 * MAX])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RecordTooLarge), "{err}");
    // Unknown topics fail fast rather than retrying until the delivery timeout.
    let err = producer.send("missing", None, b"x").await.unwrap_err();
    assert!(matches!(err, ClientError::UnknownTopic(_)), "{err}");
}
