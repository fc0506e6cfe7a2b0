//! The agent's edge, through a real agent process over raw gRPC, on default settings: no
//! request can make a partition unreadable, every request does bounded work, timestamps and
//! producer ids are checked, and ordinary records of any size are accepted end to end.

use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use streamhouse_client::{Admin, NewTopic, Producer};
use streamhouse_proto::batch::forge::{frame, frame_stamped, lz4_payload, payload_of};
use streamhouse_proto::batch::{Batch, BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::{self, ErrorCode};
use streamhouse_tests::raw::{self, code, create_topic};
use streamhouse_tests::{AgentProcess, Deadline, data_dir, now_ms};

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");

/// An agent on default settings with one topic, and a raw client of it.
async fn agent_with_topic(
    topic: &str,
    partitions: u32,
) -> (tempfile::TempDir, AgentProcess, raw::Client) {
    let (guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let mut c = raw::connect(&agent.addr).await;
    let created = create_topic(&mut c, topic, partitions).await;
    assert_eq!(code(&created.error), ErrorCode::Ok);
    (guard, agent, c)
}

fn batch_at(ts: i64, values: &[&[u8]]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.append(ts, Some(b"k"), Some(v), &[]);
    }
    b.finish(ProducerStamp::NONE).expect("non-empty")
}

fn zigzag(buf: &mut Vec<u8>, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// A producer id and epoch the agent issues.
async fn new_producer(c: &mut raw::Client) -> pb::InitProducerIdResponse {
    let issued = c
        .init_producer_id(pb::InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&issued.error), ErrorCode::Ok);
    issued
}

async fn high_watermark(c: &mut raw::Client, topic: &str, partition: u32) -> i64 {
    raw::fetch(c, topic, partition, 0, 1 << 20, 0)
        .await
        .high_watermark
}

/// Sends each of `seqs` (built by `at`) to partition 0 of `t` as its own request, all at once,
/// until every one is stored: each is stored at the offset of its sequence (batch 0 being at
/// offset 0), or refused with OUT_OF_ORDER_SEQUENCE for arriving ahead of a gap and resent.
async fn send_until_stored(
    c: &raw::Client,
    seqs: std::ops::RangeInclusive<i32>,
    at: impl Fn(i32) -> Bytes,
) {
    let mut pending: Vec<i32> = seqs.collect();
    let deadline = Deadline::within(Duration::from_secs(30));
    while !pending.is_empty() {
        deadline.check(format_args!("batches {pending:?} to be stored"));
        let sends: Vec<_> = pending
            .iter()
            .map(|&seq| {
                let mut c = c.clone();
                let batch = at(seq);
                tokio::spawn(async move { (seq, raw::produce(&mut c, "t", 0, vec![batch]).await) })
            })
            .collect();
        let mut refused = Vec::new();
        for s in sends {
            let (seq, r) = s.await.unwrap();
            match code(&r.error) {
                ErrorCode::Ok => assert_eq!(r.base_offset, i64::from(seq), "stored out of order"),
                ErrorCode::OutOfOrderSequence => refused.push(seq),
                other => panic!("batch {seq}: {other:?} {r:?}"),
            }
        }
        pending = refused;
    }
}

/// The values of partition 0 of `t`, in offset order.
async fn values_of(c: &mut raw::Client) -> Vec<String> {
    let f = raw::fetch(c, "t", 0, 0, 1 << 20, 0).await;
    f.batches
        .iter()
        .zip(&f.base_offsets)
        .flat_map(|(b, base)| Batch::parse(b.clone()).unwrap().records(*base).unwrap())
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

/// Each kind of malformed batch the issue names, with a correct CRC: refused with
/// CORRUPT_BATCH, nothing appended, and the good partition of the same request unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_batches_are_refused_and_append_nothing() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 2).await;

    let ts = now_ms();
    let one = batch_at(ts, &[b"value"]);
    let two = batch_at(ts, &[b"value", b"value"]);
    let plain = payload_of(&one).to_vec();
    let mut key_minus_7 = vec![0u8, 0, 0];
    zigzag(&mut key_minus_7, -7);
    key_minus_7.extend_from_slice(&[0, 0, 0]);
    let mut record = Vec::new();
    zigzag(&mut record, key_minus_7.len() as i32);
    record.extend_from_slice(&key_minus_7);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("count 2147483647", frame(&plain, false, i32::MAX, ts, ts)),
        (
            "count smaller than the records",
            frame(payload_of(&two), false, 1, ts, ts),
        ),
        (
            "truncated record",
            frame(&plain[..plain.len() - 2], false, 1, ts, ts),
        ),
        (
            "overflowing length varint",
            frame(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0],
                false,
                1,
                ts,
                ts,
            ),
        ),
        ("key length -7", frame(&record, false, 1, ts, ts)),
        (
            "max_timestamp not the records'",
            frame(&plain, false, 1, ts, ts + 5),
        ),
        (
            "LZ4 block that does not decompress",
            frame(&[0, 0, 0, 10, 0xff, 0xff, 0xff], true, 1, ts, ts),
        ),
        (
            "LZ4 block declaring 2^31 bytes",
            frame(&lz4_payload(&plain, 1 << 31), true, 1, ts, ts),
        ),
    ];
    let good = batch_at(ts, &[b"fine"]);
    for (i, (what, bad)) in cases.into_iter().enumerate() {
        let r = raw::produce_many(
            &mut c,
            vec![
                ("t", 0, vec![Bytes::from(bad)]),
                ("t", 1, vec![good.clone()]),
            ],
        )
        .await;
        assert_eq!(code(&r.error), ErrorCode::Ok, "{what}");
        assert_eq!(code(&r.results[0].error), ErrorCode::CorruptBatch, "{what}");
        let message = &r.results[0].error.as_ref().expect("error set").message;
        assert!(
            !message.contains('\n') && !message.is_empty(),
            "{what}: {message:?}"
        );
        assert_eq!(code(&r.results[1].error), ErrorCode::Ok, "{what}");
        assert_eq!(r.results[1].base_offset, i as i64, "{what}");
        assert_eq!(high_watermark(&mut c, "t", 0).await, 0, "{what} appended");
    }
    // A good batch after them all lands at offset 0, and both partitions read back whole.
    let ok = raw::produce(&mut c, "t", 0, vec![one.clone()]).await;
    assert_eq!((code(&ok.error), ok.base_offset), (ErrorCode::Ok, 0));
    let f = raw::fetch(&mut c, "t", 1, 0, 1 << 20, 0).await;
    assert_eq!(f.batches.len(), 8);
    for b in f.batches {
        assert_eq!(
            streamhouse_proto::batch::Batch::parse(b)
                .unwrap()
                .records(0)
                .unwrap()
                .len(),
            1
        );
    }
}

/// Requests whose lists or names are out of bounds are refused with a typed error naming the
/// bound; repeated names are answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_does_bounded_work() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 2).await;

    // 200,000 copies of one name: refused at once, by the cap.
    let many = c
        .get_metadata(pb::GetMetadataRequest {
            topics: vec!["t".into(); 200_000],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&many.error), ErrorCode::InvalidRequest);
    assert!(many.error.unwrap().message.contains("at most 1000"));
    // 1,000 copies: answered once.
    let dup = c
        .get_metadata(pb::GetMetadataRequest {
            topics: vec!["t".into(); 1_000],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&dup.error), ErrorCode::Ok);
    assert_eq!(dup.topics.len(), 1);
    assert!(dup.max_batch_bytes >= 1024 * 1024 && dup.max_request_bytes > dup.max_batch_bytes);

    let good = batch_at(now_ms(), &[b"x"]);
    // The same partition twice in one request.
    let r = raw::produce_many(
        &mut c,
        vec![("t", 0, vec![good.clone()]), ("t", 0, vec![good.clone()])],
    )
    .await;
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    // More partitions than a request may name (unknown topics cost no lookup each).
    let names: Vec<String> = (0..1_001).map(|i| format!("nope-{i}")).collect();
    let r = raw::produce_many(
        &mut c,
        names
            .iter()
            .map(|n| (n.as_str(), 0, vec![good.clone()]))
            .collect(),
    )
    .await;
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    // 1,000 partitions of one unknown topic: one lookup, each answered UNKNOWN_TOPIC.
    let r = raw::produce_many(
        &mut c,
        (0..1_000)
            .map(|p| ("ghost", p, vec![good.clone()]))
            .collect(),
    )
    .await;
    assert_eq!(code(&r.error), ErrorCode::Ok);
    assert!(
        r.results
            .iter()
            .all(|x| code(&x.error) == ErrorCode::UnknownTopic)
    );
    // More batches for one partition than the window.
    let r = raw::produce(&mut c, "t", 0, vec![good.clone(); 17]).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    assert_eq!(high_watermark(&mut c, "t", 0).await, 0);

    // Groups: subscriptions, owned partitions, commits and offset fetches are capped.
    let join = |topics: Vec<String>, owned: Vec<pb::TopicPartitions>| pb::GroupHeartbeatRequest {
        group_id: "g".into(),
        client_id: "c".into(),
        topics,
        assignors: vec!["range".into()],
        owned,
        session_timeout_ms: 10_000,
        ..Default::default()
    };
    let r = c
        .join_group(join(vec!["t".into(); 1_001], vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    let r = c
        .join_group(join(
            vec!["t".into()],
            vec![pb::TopicPartitions {
                topic: "t".into(),
                partitions: (0..100_001).collect(),
            }],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    let commit = |n: u32| pb::CommitOffsetsRequest {
        group_id: "g".into(),
        member_id: String::new(),
        generation: -1,
        offsets: (0..n)
            .map(|i| pb::OffsetCommit {
                topic: "t".into(),
                partition: i % 2,
                offset: i64::from(i),
                metadata: String::new(),
            })
            .collect(),
    };
    let mut many_assignors = join(vec!["t".into()], vec![]);
    many_assignors.assignors = vec!["range".into(); 9];
    let r = c.join_group(many_assignors).await.unwrap().into_inner();
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    assert!(r.error.unwrap().message.contains("at most 8"));
    let r = c
        .commit_offsets(commit(100_001))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
    // A partition named several times keeps its last offset.
    let r = c.commit_offsets(commit(6)).await.unwrap().into_inner();
    assert_eq!(code(&r.error), ErrorCode::Ok);
    let fetched = c
        .fetch_offsets(pb::FetchOffsetsRequest {
            group_id: "g".into(),
            topics: vec!["t".into(); 3],
        })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<(u32, i64)> = fetched
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    got.sort_unstable();
    assert_eq!(got, [(0, 4), (1, 5)]);
    let r = c
        .fetch_offsets(pb::FetchOffsetsRequest {
            group_id: "g".into(),
            topics: vec!["t".into(); 1_001],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.error), ErrorCode::InvalidRequest);
}

/// A client id of 250 characters joins, and its member keeps heartbeating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_client_id_joins_and_heartbeats() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 2).await;
    let mut req = pb::GroupHeartbeatRequest {
        group_id: "g".into(),
        client_id: "c".repeat(250),
        topics: vec!["t".into()],
        assignors: vec!["range".into()],
        session_timeout_ms: 10_000,
        ..Default::default()
    };
    let joined = c.join_group(req.clone()).await.unwrap().into_inner();
    assert_eq!(code(&joined.error), ErrorCode::Ok);
    assert!(joined.member_id.len() <= 255);
    req.member_id = joined.member_id;
    for _ in 0..3 {
        let hb = c.heartbeat(req.clone()).await.unwrap().into_inner();
        assert_eq!(code(&hb.error), ErrorCode::Ok, "{:?}", hb.error);
        req.owned = hb.assignment;
    }
}

/// Kafka's timestamp bounds on default settings: a week back, an hour ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_far_from_the_agents_clock_are_refused() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 1).await;
    let now = now_ms();
    let hour = 3_600_000;
    for (ts, want) in [
        (0, ErrorCode::InvalidTimestamp),
        (now - 8 * 24 * hour, ErrorCode::InvalidTimestamp),
        (now + 2 * hour, ErrorCode::InvalidTimestamp),
        (32_503_680_000_000, ErrorCode::InvalidTimestamp), // the year 3000
        (now - 24 * hour, ErrorCode::Ok),
        (now + hour / 2, ErrorCode::Ok),
    ] {
        let r = raw::produce(&mut c, "t", 0, vec![batch_at(ts, &[b"v"])]).await;
        assert_eq!(code(&r.error), want, "timestamp {ts}");
    }
    // A batch with one record in bounds and one out is refused whole.
    let mut b = BatchBuilder::new(Compression::Lz4);
    b.append(now, None, Some(b"ok"), &[]);
    b.append(1, None, Some(b"1970"), &[]);
    let r = raw::produce(&mut c, "t", 0, vec![b.finish(ProducerStamp::NONE).unwrap()]).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidTimestamp);
    assert_eq!(high_watermark(&mut c, "t", 0).await, 2);
}

/// A producer id nobody issued, or an epoch ahead of the issued one, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_producer_ids_are_refused() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 8).await;
    let ts = now_ms();
    let plain = payload_of(&batch_at(ts, &[b"v"])).to_vec();
    let stamped =
        |id: i64, epoch: i16| Bytes::from(frame_stamped(&plain, false, 1, ts, ts, (id, epoch, 0)));

    let r = raw::produce(&mut c, "t", 0, vec![stamped(987_654_321, 0)]).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidProducer);
    let issued = new_producer(&mut c).await;
    let r = raw::produce(&mut c, "t", 0, vec![stamped(issued.producer_id, 3)]).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidProducer);
    let r = raw::produce(&mut c, "t", 0, vec![stamped(issued.producer_id, -1)]).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidProducer);
    let r = raw::produce(&mut c, "t", 0, vec![stamped(issued.producer_id, 0)]).await;
    assert_eq!((code(&r.error), r.base_offset), (ErrorCode::Ok, 0));

    // One forged id on every partition of a request: each refused (judged once).
    let forged = raw::produce_many(
        &mut c,
        (0..8)
            .map(|p| ("t", p, vec![stamped(424_242, 0)]))
            .collect(),
    )
    .await;
    assert!(
        forged
            .results
            .iter()
            .all(|r| code(&r.error) == ErrorCode::InvalidProducer)
    );
    // A different forged id on each: past four, the request's bound refuses them unasked.
    let spread = raw::produce_many(
        &mut c,
        (0..8)
            .map(|p| ("t", p, vec![stamped(500_000 + i64::from(p), 0)]))
            .collect(),
    )
    .await;
    let codes: Vec<_> = spread.results.iter().map(|r| code(&r.error)).collect();
    assert_eq!(&codes[..4], [ErrorCode::InvalidProducer; 4]);
    assert_eq!(&codes[4..], [ErrorCode::InvalidRequest; 4]);
    assert!(
        spread.results[4]
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("more than 4 producer ids"))
    );
    assert_eq!(high_watermark(&mut c, "t", 0).await, 1);
    for p in 1..8 {
        assert_eq!(high_watermark(&mut c, "t", p).await, 0);
    }
}

fn random_values(n: usize, size: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            let mut v = vec![0u8; size];
            rng.fill_bytes(&mut v);
            v
        })
        .collect()
}

/// With default settings on both sides, incompressible values of every ordinary size up to
/// the limit are acknowledged, to one partition and to eight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_every_size_up_to_the_limit_are_accepted() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    let max = 1024 * 1024;
    for partitions in [1u32, 8] {
        for size in [100, 1024, 2048, 100 * 1024, max - 200] {
            let topic = format!("sizes-{partitions}-{size}");
            admin
                .create_topic(NewTopic::new(&topic, partitions))
                .await
                .unwrap();
            let producer = Producer::builder()
                .bootstrap(&agent.addr)
                .build()
                .await
                .unwrap();
            let n = (3 * 1024 * 1024 / size).max(3);
            let values = random_values(n.min(64), size);
            let mut deliveries = Vec::with_capacity(n);
            for i in 0..n {
                let key = format!("k{i}");
                let d = producer
                    .send(&topic, Some(key.as_bytes()), &values[i % values.len()])
                    .await
                    .unwrap_or_else(|e| panic!("{size} B to {partitions}: {e}"));
                deliveries.push(d);
            }
            for d in deliveries {
                d.await
                    .unwrap_or_else(|e| panic!("{size} B to {partitions}: {e}"));
            }
            let t = admin.describe_topic(&topic).await.unwrap();
            let stored: i64 = t.partitions.iter().map(|p| p.high_watermark).sum();
            assert_eq!(stored, n as i64, "{size} B to {partitions}");
            producer.close().await.unwrap();
        }
    }
    // One byte more than fits is refused by send, at once.
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .build()
        .await
        .unwrap();
    let err = producer
        .send("sizes-1-100", None, &vec![0u8; max])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RecordTooLarge), "{err}");
}

/// A 64 MiB backlog on one partition, built while its leader is stopped, drains without a
/// delivery timeout: no request exceeds what the agent decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_backlog_drains() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin
        .create_topic(NewTopic::new("backlog", 1))
        .await
        .unwrap();
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .buffer_bytes(128 * 1024 * 1024)
        .build()
        .await
        .unwrap();
    producer
        .send_and_wait("backlog", None, b"warm")
        .await
        .unwrap();
    let values = random_values(4096, 1024);
    let records = 64 * 1024;
    agent.signal(streamhouse_tests::Signal::SIGSTOP);
    let stopped = std::time::Instant::now();
    let mut deliveries = Vec::with_capacity(records);
    for i in 0..records {
        deliveries.push(
            producer
                .send("backlog", None, &values[i % 4096])
                .await
                .unwrap(),
        );
    }
    // At least 3 s stopped, whatever the machine's speed.
    if let Some(left) = Duration::from_secs(3).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(left).await;
    }
    agent.signal(streamhouse_tests::Signal::SIGCONT);
    let mut offsets = Vec::with_capacity(records);
    for d in deliveries {
        offsets.push(d.await.expect("delivered, not timed out").offset);
    }
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), records, "every record stored once");
    let t = admin.describe_topic("backlog").await.unwrap();
    assert_eq!(t.partitions[0].high_watermark, records as i64 + 1);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Batches damaged at rest, in a record (caught by the consumer's CRC check) and in a
/// header (caught by the agent, which cannot frame the chunk): each gives the consumer a typed
/// error naming topic, partition and offset, and seeking to its `next_offset` reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_seeks_past_batches_damaged_at_rest() {
    use streamhouse_client::{ClientError, Consumer, OffsetReset, TopicPartition};
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let admin = Admin::connect(&agent.addr).await.unwrap();
    admin.create_topic(NewTopic::new("rot", 1)).await.unwrap();
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .build()
        .await
        .unwrap();
    // One record per flush, so each batch is a chunk of its own.
    for v in [
        "value-0",
        "payload-rot",
        "value-2",
        "header-rot!",
        "value-4",
    ] {
        producer
            .send_and_wait("rot", None, v.as_bytes())
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    assert!(agent.terminate().success());

    // Where they are stored (uncompressed: LZ4 does not shrink a payload this small), flip a
    // byte of one value, and the format version of the other's batch (its value starts 51
    // bytes in: the 45-byte header, then six one-byte fields).
    let mut damaged = 0;
    for path in files_under(&dir.join("objects")) {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(11).position(|w| w == b"payload-rot") {
            bytes[at] ^= 0x20;
            damaged += 1;
        }
        if let Some(at) = bytes.windows(11).position(|w| w == b"header-rot!") {
            bytes[at - 51 + 4] = 9;
            damaged += 1;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    assert_eq!(damaged, 2, "each damaged batch is stored once");

    let agent = AgentProcess::start(BIN, &dir, &[]);
    let tp = TopicPartition::new("rot", 0);
    let mut consumer = Consumer::builder()
        .bootstrap(&agent.addr)
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .await
        .unwrap();
    consumer.assign(vec![tp.clone()]).await.unwrap();
    let mut seen = Vec::new();
    for (damaged_at, kind) in [(1, "CRC"), (3, "format version")] {
        let deadline = Deadline::within(Duration::from_secs(30));
        let error = loop {
            deadline.check(format_args!("no error for the batch at {damaged_at}"));
            match consumer.poll(Duration::from_millis(200)).await {
                Ok(records) => seen.extend(records.into_iter().map(|r| r.offset)),
                Err(e) => break e,
            }
        };
        assert_eq!(seen.last(), Some(&(damaged_at - 1)));
        match &error {
            ClientError::DamagedBatch {
                topic,
                partition,
                offset,
                next_offset,
                reason,
            } => {
                assert_eq!(
                    (topic.as_str(), *partition, *offset, *next_offset),
                    ("rot", 0, damaged_at, damaged_at + 1)
                );
                assert!(reason.contains(kind), "{reason}");
            }
            other => panic!("expected DamagedBatch, got {other}"),
        }
        assert!(!error.to_string().contains('\n'));
        consumer.seek(&tp, damaged_at + 1).await.unwrap();
    }
    let deadline = Deadline::within(Duration::from_secs(30));
    while !seen.contains(&4) {
        deadline.check("nothing after the damaged batches");
        let records = consumer.poll(Duration::from_millis(200)).await.unwrap();
        seen.extend(records.iter().map(|r| r.offset));
    }
    assert_eq!(seen, [0, 2, 4]);
}

/// "Accepted ⇒ readable" through a real agent: a seeded stream of mutated batches (CRC
/// recomputed, so only the record walk stands in the way), then every batch the agent stored
/// decodes into exactly its records, and the high watermark counts exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_the_agent_accepts_a_consumer_reads() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (_guard, _agent, mut c) = agent_with_topic("fuzz", 1).await;
    let ts = now_ms();
    let (mut accepted, mut refused) = (0i64, 0);
    for _ in 0..400 {
        let n = rng.random_range(1..6);
        let values: Vec<Vec<u8>> = (0..n)
            .map(|i| vec![b'a' + i as u8; rng.random_range(0..40)])
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let good = batch_at(ts, &refs);
        let mut plain = payload_of(&good).to_vec();
        let mut count = n as i32;
        match rng.random_range(0..5) {
            0 => {
                let i = rng.random_range(0..plain.len());
                plain[i] ^= rng.random_range(1..=255u8);
            }
            1 => plain.truncate(rng.random_range(0..plain.len())),
            2 => {
                let i = rng.random_range(0..=plain.len());
                plain.insert(i, rng.random());
            }
            3 => count = rng.random_range(-2..8),
            _ => {}
        }
        let lz4 = rng.random_bool(0.5);
        let payload = if lz4 {
            lz4_payload(&plain, plain.len() as u32)
        } else {
            plain
        };
        let bytes = Bytes::from(frame(&payload, lz4, count, ts, ts));
        let r = raw::produce(&mut c, "fuzz", 0, vec![bytes]).await;
        match code(&r.error) {
            ErrorCode::Ok => accepted += i64::from(count),
            ErrorCode::CorruptBatch => refused += 1,
            other => panic!("unexpected {other:?} (seed {seed})"),
        }
    }
    assert!(
        refused > 0 && accepted > 0,
        "seed {seed}: {accepted} accepted, {refused} refused"
    );
    let mut offset = 0;
    let mut read = 0i64;
    while offset < accepted {
        let f = raw::fetch(&mut c, "fuzz", 0, offset, 1 << 20, 0).await;
        assert_eq!(code(&f.error), ErrorCode::Ok);
        assert_eq!(f.high_watermark, accepted, "seed {seed}");
        for (b, base) in f.batches.into_iter().zip(f.base_offsets) {
            let batch = streamhouse_proto::batch::Batch::parse(b).expect("stored batch parses");
            let records = batch
                .records(base)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(records.len() as i32, batch.header().record_count);
            read += records.len() as i64;
            offset = base + records.len() as i64;
        }
    }
    assert_eq!(read, accepted, "seed {seed}");
}

/// A request over the agent's decode limit gets a named transport error, and the agent
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_decode_limit_is_refused_by_name() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 1).await;
    let limit = c
        .get_metadata(pb::GetMetadataRequest::default())
        .await
        .unwrap()
        .into_inner()
        .max_request_bytes as usize;
    let status = c
        .produce(pb::ProduceRequest {
            partitions: vec![pb::PartitionBatches {
                topic: "t".into(),
                partition: 0,
                batches: vec![Bytes::from(vec![0u8; limit + 1])],
            }],
        })
        .await
        .unwrap_err();
    let e = streamhouse_client::ClientError::from(status);
    assert!(
        matches!(e, streamhouse_client::ClientError::RequestTooLarge(_)),
        "{e}"
    );
    assert!(!e.is_retriable());
    let ok = raw::produce(&mut c, "t", 0, vec![batch_at(now_ms(), &[b"still"])]).await;
    assert_eq!(code(&ok.error), ErrorCode::Ok);
}

/// A producer's batches on a partition are stored strictly in sequence order, each once: one
/// sent ahead of a gap is refused with OUT_OF_ORDER_SEQUENCE and stores nothing; five requests
/// in flight at once are each stored or refused for a gap, and those refused go in when resent
/// in order; a retry of a stored batch is answered with its offset and not stored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_batches_are_stored_in_sequence_order_once() {
    let (_guard, _agent, mut c) = agent_with_topic("t", 1).await;
    let issued = new_producer(&mut c).await;
    let ts = now_ms();
    // Batch `seq` holds one record whose value is `seq`.
    let at = |seq: i32| {
        let mut b = BatchBuilder::new(Compression::None);
        b.append(ts, Some(b"k"), Some(seq.to_string().as_bytes()), &[]);
        b.finish(ProducerStamp {
            producer_id: issued.producer_id,
            producer_epoch: issued.producer_epoch as i16,
            base_sequence: seq,
        })
        .unwrap()
    };
    let r = raw::produce(&mut c, "t", 0, vec![at(0)]).await;
    assert_eq!((code(&r.error), r.base_offset), (ErrorCode::Ok, 0));
    // Ahead of the gap at 1: refused, nothing stored.
    let r = raw::produce(&mut c, "t", 0, vec![at(2)]).await;
    assert_eq!(code(&r.error), ErrorCode::OutOfOrderSequence, "{r:?}");
    assert_eq!(high_watermark(&mut c, "t", 0).await, 1);

    // Five requests in flight at once: each is stored, or refused because it arrived ahead
    // of one before it; the refused ones, resent in order, go in after.
    send_until_stored(&c, 1..=5, at).await;
    assert_eq!(high_watermark(&mut c, "t", 0).await, 6);
    // A retry of a stored batch: its original offset, nothing stored.
    let r = raw::produce(&mut c, "t", 0, vec![at(3)]).await;
    assert_eq!((code(&r.error), r.base_offset), (ErrorCode::Ok, 3));
    assert_eq!(high_watermark(&mut c, "t", 0).await, 6);
    // The log holds 0 to 5, in order.
    assert_eq!(values_of(&mut c).await, ["0", "1", "2", "3", "4", "5"]);
}

/// Five batches of one producer in flight to a leader that is killed before it flushes them:
/// resent to the new leader they are stored once each and in sequence order, and a batch the
/// old leader had stored is answered with its offset, not stored again (the new leader reads
/// the producer's state from the store when it takes the lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_in_flight_across_a_failover_are_stored_once_in_order() {
    let (_guard, dir) = data_dir();
    // A long flush interval keeps the five waiting in the leader's buffer when it dies.
    let flags = [
        "--flush-interval-ms",
        "2000",
        "--lease-ttl-ms",
        "1000",
        "--heartbeat-ms",
        "250",
    ];
    let mut a = Some(AgentProcess::start(
        BIN,
        &dir,
        &[&flags[..], &["--id", "a"]].concat(),
    ));
    let mut b = Some(AgentProcess::start(
        BIN,
        &dir,
        &[&flags[..], &["--id", "b"]].concat(),
    ));
    let a_addr = a.as_ref().unwrap().addr.clone();
    let b_addr = b.as_ref().unwrap().addr.clone();
    let mut c = raw::connect(&a_addr).await;
    assert_eq!(
        code(&create_topic(&mut c, "t", 1).await.error),
        ErrorCode::Ok
    );
    let admin = Admin::connect(&a_addr).await.unwrap();
    let leader_of = |admin: Admin| async move {
        admin.describe_topic("t").await.unwrap().partitions[0]
            .leader_id
            .clone()
    };
    let first = streamhouse_tests::wait_for("a leader", Duration::from_secs(30), || {
        leader_of(admin.clone())
    })
    .await;
    let (leader, follower_addr) = if first == "a" {
        (a.take().unwrap(), b_addr)
    } else {
        (b.take().unwrap(), a_addr)
    };
    let mut to_leader = raw::connect(&leader.addr).await;
    let issued = new_producer(&mut to_leader).await;
    let ts = now_ms();
    let at = |seq: i32| {
        let mut b = BatchBuilder::new(Compression::None);
        b.append(ts, Some(b"k"), Some(seq.to_string().as_bytes()), &[]);
        b.finish(ProducerStamp {
            producer_id: issued.producer_id,
            producer_epoch: issued.producer_epoch as i16,
            base_sequence: seq,
        })
        .unwrap()
    };
    let r = raw::produce(&mut to_leader, "t", 0, vec![at(0)]).await;
    assert_eq!((code(&r.error), r.base_offset), (ErrorCode::Ok, 0));

    // Five more in flight; the leader's next flush is up to 2 s away.
    let sends: Vec<_> = (1..=5)
        .map(|seq| {
            let mut c = to_leader.clone();
            let batches = vec![at(seq)];
            tokio::spawn(async move {
                c.produce(pb::ProduceRequest {
                    partitions: vec![pb::PartitionBatches {
                        topic: "t".into(),
                        partition: 0,
                        batches,
                    }],
                })
                .await
            })
        })
        .collect();
    // Every one of them waits in the leader's buffer, or was answered (one that arrived ahead
    // of another is refused at once): then the leader dies.
    let leader_admin = Admin::connect(&leader.addr).await.unwrap();
    streamhouse_tests::wait_for(
        "the five to reach the leader",
        Duration::from_secs(30),
        || {
            let leader_admin = leader_admin.clone();
            let addr = leader.addr.clone();
            let answered = sends.iter().filter(|s| s.is_finished()).count() as u64;
            async move {
                let stats = leader_admin.agent_stats(&addr).await.unwrap();
                (stats.buffered_batches + answered == 5).then_some(())
            }
        },
    )
    .await;
    leader.kill9();
    for s in sends {
        if let Ok(r) = s.await.unwrap() {
            let r = r.into_inner();
            assert_ne!(
                code(&r.error),
                ErrorCode::Ok,
                "acknowledged before any flush: {r:?}"
            );
        }
    }

    // The survivor takes the lease; everything is resent to it.
    let survivor = Admin::connect(&follower_addr).await.unwrap();
    let dead = first.clone();
    streamhouse_tests::wait_for("the survivor to lead", Duration::from_secs(30), || {
        let survivor = survivor.clone();
        let dead = dead.clone();
        async move { leader_of(survivor).await.filter(|l| *l != dead) }
    })
    .await;
    let mut c = raw::connect(&follower_addr).await;
    let r = raw::produce(&mut c, "t", 0, vec![at(0)]).await;
    assert_eq!(
        (code(&r.error), r.base_offset),
        (ErrorCode::Ok, 0),
        "the stored batch, resent: its offset, not a second copy"
    );
    send_until_stored(&c, 1..=5, at).await;
    assert_eq!(high_watermark(&mut c, "t", 0).await, 6);
    assert_eq!(values_of(&mut c).await, ["0", "1", "2", "3", "4", "5"]);
    drop((a, b));
}
