//! The Kafka listener, through a real agent process: what Kafka clients' requests are
//! answered, that hostile frames end only their own connection, and `kcat` (librdkafka)
//! listing, producing and consuming, with records crossing between it and the gRPC client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, EndTxnRequest, EndTxnResponse, JoinGroupRequest, JoinGroupResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use streamhouse_agent::testing::present_or_skip;
use streamhouse_tests::{AgentProcess, data_dir, wait_for};

#[path = "kafka/groups.rs"]
mod kafka_groups;
#[path = "kafka/security.rs"]
mod kafka_security;

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");

/// A port free now, for `--kafka-listen`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn kafka_agent(dir: &std::path::Path) -> (AgentProcess, String) {
    kafka_agent_with(dir, &[])
}

/// An agent listening for Kafka on a free port, with `extra` flags; returns its Kafka address.
fn kafka_agent_with(dir: &std::path::Path, extra: &[&str]) -> (AgentProcess, String) {
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut flags = vec!["--kafka-listen", &kafka];
    flags.extend_from_slice(extra);
    let agent = AgentProcess::start(BIN, dir, &flags);
    (agent, kafka)
}

/// Agents on one store, each killable (`take()` one to kill it), with their Kafka addresses,
/// and the bootstrap list of them all.
type Cluster = (Vec<(Option<AgentProcess>, String)>, String);

/// `n` agents on the store in `dir`, each with a Kafka listener and `extra` flags.
fn kafka_cluster(dir: &std::path::Path, n: usize, extra: &[&str]) -> Cluster {
    let agents: Vec<(Option<AgentProcess>, String)> = (0..n)
        .map(|_| {
            let (a, k) = kafka_agent_with(dir, extra);
            (Some(a), k)
        })
        .collect();
    let bootstrap = agents
        .iter()
        .map(|(_, k)| k.clone())
        .collect::<Vec<_>>()
        .join(",");
    (agents, bootstrap)
}

/// An agent with topic `name` of `partitions` partitions, each with a leader.
async fn agent_with_topic(
    dir: &std::path::Path,
    name: &str,
    partitions: i32,
) -> (AgentProcess, String) {
    let (agent, kafka) = kafka_agent(dir);
    assert_eq!(create(&mut connect(&kafka), topic(name, partitions)).0, 0);
    all_led(&kafka, name).await;
    (agent, kafka)
}

/// Waits until every partition of `topic` has a leader, as `kafka`'s Metadata says.
async fn all_led(kafka: &str, topic: &str) -> MetadataResponse {
    let (kafka, topic) = (kafka.to_string(), topic.to_string());
    wait_for("every partition led", Duration::from_secs(30), || {
        let (kafka, topic) = (kafka.clone(), topic.clone());
        async move {
            let m = metadata(&mut connect(&kafka), 12, Some(&[&topic]));
            m.topics[0]
                .partitions
                .iter()
                .all(|p| p.error_code == 0)
                .then_some(m)
        }
    })
    .await
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the Kafka listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Sends `req` at `version` and reads its answer, as a Kafka client does.
fn call<R: Request>(s: &mut TcpStream, version: i16, req: &R) -> R::Response {
    send(s, version, req);
    let mut answer = read_frame(s).expect("an answer");
    let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response = R::Response::decode(&mut answer, version).unwrap();
    assert!(!answer.has_remaining(), "bytes left over in the answer");
    response
}

/// Sends `req` at `version` without reading an answer.
fn send<R: Request>(s: &mut TcpStream, version: i16, req: &R) {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("streamhouse-test")))
        .encode(&mut body, R::header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    s.write_all(&frame).unwrap();
}

/// One size-prefixed frame, or `None` if the agent closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    match s.read_exact(&mut size) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading an answer: {e}"),
    }
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    Some(Bytes::from(body))
}

fn metadata(s: &mut TcpStream, version: i16, topics: Option<&[&str]>) -> MetadataResponse {
    let req = MetadataRequest::default().with_topics(topics.map(|t| {
        t.iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(name(n))))
            .collect()
    }));
    call(s, version, &req)
}

fn create(s: &mut TcpStream, topic: CreatableTopic) -> (i16, Option<String>) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000);
    let r: CreateTopicsResponse = call(s, 7, &req);
    let t = &r.topics[0];
    (
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn topic(n: &str, partitions: i32) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(n))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_find_brokers_and_create_and_delete_topics() {
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = kafka_agent(&dir);
    let mut s = connect(&kafka);

    // ApiVersions lists what is served, and only that.
    let v: ApiVersionsResponse = call(&mut s, 3, &ApiVersionsRequest::default());
    assert_eq!(v.error_code, 0);
    let keys: Vec<i16> = v.api_keys.iter().map(|k| k.api_key).collect();
    for api in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::ApiVersions,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::InitProducerId,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
        ApiKey::ListGroups,
        ApiKey::DescribeCluster,
        ApiKey::DescribeConfigs,
    ] {
        assert!(
            keys.contains(&(api as i16)),
            "{api:?} missing from {keys:?}"
        );
    }
    // Transactions are not served, nor static membership (JoinGroup v5 and later).
    for api in [
        ApiKey::AddPartitionsToTxn,
        ApiKey::EndTxn,
        ApiKey::TxnOffsetCommit,
    ] {
        assert!(!keys.contains(&(api as i16)), "{api:?} is listed");
    }
    let join = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::JoinGroup as i16)
        .unwrap();
    assert_eq!(join.max_version, 4);

    // Created, refused as a duplicate, and refused for what cannot be honoured.
    assert_eq!(create(&mut s, topic("orders", 3)).0, 0);
    assert_eq!(
        create(&mut s, topic("orders", 3)).0,
        ResponseError::TopicAlreadyExists.code()
    );
    assert_eq!(
        create(&mut s, topic("bad/name", 1)).0,
        ResponseError::InvalidTopicException.code()
    );
    assert_eq!(
        create(&mut s, topic("zero", 0)).0,
        ResponseError::InvalidPartitions.code()
    );
    let compacted = topic("compacted", 1).with_configs(vec![
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("compact"))),
    ]);
    let (code, message) = create(&mut s, compacted);
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.unwrap().contains("compaction"));

    // Every partition gets this agent as its leader once its lease is taken; the broker list
    // names the listener's address.
    let port: i32 = kafka.rsplit_once(':').unwrap().1.parse().unwrap();
    let m = wait_for("leaders for orders", Duration::from_secs(30), || {
        let mut s = connect(&kafka);
        async move {
            let m = metadata(&mut s, 12, None);
            let t = m.topics.iter().find(|t| t.name == Some(name("orders")))?;
            (t.partitions.len() == 3 && t.partitions.iter().all(|p| p.error_code == 0)).then_some(m)
        }
    })
    .await;
    assert_eq!(m.brokers.len(), 1);
    let b = &m.brokers[0];
    assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", port));
    assert_eq!(m.controller_id, b.node_id);
    let t = m
        .topics
        .iter()
        .find(|t| t.name == Some(name("orders")))
        .unwrap();
    for p in &t.partitions {
        assert_eq!(p.leader_id, b.node_id);
        assert_eq!(p.replica_nodes, vec![b.node_id]);
        assert_eq!(p.isr_nodes, vec![b.node_id]);
    }
    // The oldest layouts answer the same (version 0 asks for all topics with an empty list).
    let old = metadata(&mut s, 0, Some(&[]));
    assert!(old.topics.iter().any(|t| t.name == Some(name("orders"))));
    let old = metadata(&mut s, 1, Some(&["orders", "nope"]));
    assert_eq!(old.topics.len(), 2);
    assert_eq!(old.topics[0].partitions.len(), 3);
    assert_eq!(
        old.topics[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // Deleted by name (versions up to 5) and gone from the metadata.
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![name("orders"), name("missing")])
        .with_timeout_ms(30_000);
    let d: DeleteTopicsResponse = call(&mut s, 4, &req);
    assert_eq!(d.responses[0].error_code, 0);
    assert_eq!(
        d.responses[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let after = metadata(&mut s, 12, Some(&["orders"]));
    assert_eq!(
        after.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

/// Writes `frame` raw on a new connection; true if the agent closed it without answering.
fn closed_without_answer(addr: &str, frame: &[u8]) -> bool {
    let mut s = connect(addr);
    // The agent may close the connection before all of it is written, or before the write
    // side is shut: either is the outcome under test, not a failure.
    let _ = s.write_all(frame);
    // Done sending: a frame that claims more than was sent ends at this EOF.
    let _ = s.shutdown(std::net::Shutdown::Write);
    read_frame(&mut s).is_none()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request header of the non-flexible layout (v1).
fn header(api: i16, version: i16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&9i32.to_be_bytes());
    h.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_kafka_frames_end_only_their_own_connection() {
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = kafka_agent(&dir);

    // Metadata v1 declaring 2^31-1 topics in a 14-byte frame: unbounded, the reservation alone
    // would abort the process.
    let mut huge_array = header(ApiKey::Metadata as i16, 1);
    huge_array.extend_from_slice(&i32::MAX.to_be_bytes());
    let mut unknown_api = header(999, 0);
    unknown_api.extend_from_slice(&[0; 8]);
    let mut old_huge = header(ApiKey::Produce as i16, 2);
    old_huge.extend_from_slice(&(-1i16).to_be_bytes());
    old_huge.extend_from_slice(&1000i32.to_be_bytes());
    old_huge.extend_from_slice(&i32::MAX.to_be_bytes());
    let mut delete_records = header(ApiKey::DeleteRecords as i16, 0);
    delete_records.extend_from_slice(&[0; 16]);
    let mut trailing = header(ApiKey::Metadata as i16, 1);
    trailing.extend_from_slice(&0i32.to_be_bytes());
    trailing.extend_from_slice(b"junk");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative size", (-1i32).to_be_bytes().to_vec()),
        ("size below a header", framed(&[0, 3])),
        (
            "size over the request limit",
            (512 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("size larger than what follows", {
            let mut f = 1000i32.to_be_bytes().to_vec();
            f.extend_from_slice(&header(ApiKey::Metadata as i16, 1));
            f
        }),
        ("array length of 2^31-1", framed(&huge_array)),
        ("unknown API key", framed(&unknown_api)),
        ("an old Produce declaring 2^31-1 topics", framed(&old_huge)),
        // Unserved, and its answer carries errors only per partition: no true answer.
        (
            "an API not served without an error code",
            framed(&delete_records),
        ),
        ("bytes after the request", framed(&trailing)),
    ];
    for (what, frame) in cases {
        assert!(
            closed_without_answer(&kafka, &frame),
            "{what}: the connection should be closed unanswered"
        );
    }

    // An API or version not served whose answer has an error code of its own is answered
    // UNSUPPORTED_VERSION, and the connection goes on.
    let mut s = connect(&kafka);
    let join: JoinGroupResponse = call(&mut s, 5, &JoinGroupRequest::default());
    assert_eq!(join.error_code, ResponseError::UnsupportedVersion.code());
    let end: EndTxnResponse = call(&mut s, 3, &EndTxnRequest::default());
    assert_eq!(end.error_code, ResponseError::UnsupportedVersion.code());
    let cg: ConsumerGroupHeartbeatResponse =
        call(&mut s, 0, &ConsumerGroupHeartbeatRequest::default());
    assert_eq!(cg.error_code, ResponseError::UnsupportedVersion.code());
    let m: MetadataResponse = call(&mut s, 13, &MetadataRequest::default());
    assert_eq!(m.error_code, ResponseError::UnsupportedVersion.code());
    // Produce 0-2 is listed (librdkafka 2.0 compresses with LZ4 only for brokers that list
    // version 0) and refused per partition: it carries message formats 0 and 1. The codec has
    // no such versions, so the frames are written by hand.
    let old_produce = |version: i16, acks: i16| {
        let mut f = header(ApiKey::Produce as i16, version);
        f.extend_from_slice(&acks.to_be_bytes());
        f.extend_from_slice(&1000i32.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        f.extend_from_slice(&7i16.to_be_bytes());
        f.extend_from_slice(b"nowhere");
        f.extend_from_slice(&1i32.to_be_bytes());
        f.extend_from_slice(&3i32.to_be_bytes()); // partition 3
        f.extend_from_slice(&4i32.to_be_bytes());
        f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        framed(&f)
    };
    for version in 0..=2i16 {
        s.write_all(&old_produce(version, -1)).unwrap();
        let mut a = read_frame(&mut s).expect("an old Produce is answered");
        assert_eq!(a.get_i32(), 9, "correlation id");
        assert_eq!(a.get_i32(), 1, "topics");
        assert_eq!(a.get_i16(), 7);
        a.advance(7);
        assert_eq!(a.get_i32(), 1, "partitions");
        assert_eq!(a.get_i32(), 3, "partition");
        assert_eq!(
            a.get_i16(),
            ResponseError::UnsupportedForMessageFormat.code(),
            "Produce v{version}"
        );
        assert_eq!(a.get_i64(), -1, "base offset");
        if version >= 2 {
            assert_eq!(a.get_i64(), -1, "log append time");
        }
        if version >= 1 {
            assert_eq!(a.get_i32(), 0, "throttle time");
        }
        assert!(!a.has_remaining());
    }
    // acks=0: no answer; the next request's answer is the next frame.
    s.write_all(&old_produce(2, 0)).unwrap();
    assert_eq!(metadata(&mut s, 12, None).brokers.len(), 1);

    // A client newer than the agent is told which versions there are, at version 0.
    let mut s = connect(&kafka);
    let mut newer = header(ApiKey::ApiVersions as i16, 99);
    newer.push(0); // tagged fields of a flexible header
    s.write_all(&framed(&newer)).unwrap();
    let mut answer = read_frame(&mut s).expect("ApiVersions answers a newer version");
    assert_eq!(
        ResponseHeader::decode(&mut answer, 0)
            .unwrap()
            .correlation_id,
        9
    );
    let v = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
    assert_eq!(v.error_code, ResponseError::UnsupportedVersion.code());
    assert!(
        v.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Metadata as i16)
    );

    // And the agent serves new connections as before.
    let mut s = connect(&kafka);
    let v: ApiVersionsResponse = call(&mut s, 3, &ApiVersionsRequest::default());
    assert_eq!(v.error_code, 0);
    assert_eq!(metadata(&mut s, 12, None).brokers.len(), 1);
}

/// A Kafka client program (kcat, python3) to run, without the `LD_LIBRARY_PATH` cargo gives
/// the tests: it names the build directory of `rdkafka-sys` (a dev-dependency of `demos`),
/// whose `librdkafka.so.1`, built without OpenSSL, would stand in for the system's under kcat.
fn client(program: &str) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env_remove("LD_LIBRARY_PATH");
    c
}

/// `kcat`, from Debian's package, or `None` (after saying so) when it is missing outside CI.
fn kcat() -> Option<&'static str> {
    let found = client("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    present_or_skip(found, "kcat is not installed (apt-get install kcat)").then_some("kcat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_the_brokers_and_topics() {
    let Some(kcat) = kcat() else {
        return;
    };
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = agent_with_topic(&dir, "events", 4).await;

    // librdkafka's own view, as JSON: one broker, four partitions, each led by it.
    let listing = wait_for(
        "kcat -L to show every leader",
        Duration::from_secs(30),
        || {
            let kafka = kafka.clone();
            async move {
                let out = client(kcat)
                    .args(["-L", "-J", "-m", "10", "-b", &kafka, "-t", "events"])
                    .output()
                    .expect("run kcat");
                assert!(
                    out.status.success(),
                    "kcat -L failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_yaml::Value =
                    serde_yaml::from_slice(&out.stdout).expect("kcat's JSON");
                let parts = v["topics"][0]["partitions"].as_sequence()?.clone();
                (parts.len() == 4 && parts.iter().all(|p| p["leader"].as_i64() != Some(-1)))
                    .then_some(v)
            }
        },
    )
    .await;
    let brokers = listing["brokers"].as_sequence().expect("brokers");
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["name"].as_str(), Some(kafka.as_str()));
    let node = brokers[0]["id"].as_i64().expect("broker id");
    assert_eq!(listing["topics"][0]["topic"].as_str(), Some("events"));
    for p in listing["topics"][0]["partitions"].as_sequence().unwrap() {
        assert_eq!(p["leader"].as_i64(), Some(node));
    }
}

fn run_kcat(kcat: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    use std::process::Stdio;
    let mut child = client(kcat)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let out = child.wait_with_output().expect("kcat ends");
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_keyed_records_and_reads_them_back_in_order() {
    let Some(kcat) = kcat() else {
        return;
    };
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = agent_with_topic(&dir, "keyed", 3).await;

    // 300 keyed records from a file, through librdkafka's partitioner (kcat's default is
    // consistent_random; ask for Kafka's murmur2), from an idempotent producer.
    let input: String = (0..300)
        .map(|i| format!("key-{}:value-{i}\n", i % 17))
        .collect();
    let file = dir.join("records.txt");
    std::fs::write(&file, &input).unwrap();
    run_kcat(
        kcat,
        &[
            "-P",
            "-b",
            &kafka,
            "-t",
            "keyed",
            "-K",
            ":",
            "-X",
            "partitioner=murmur2_random",
            "-X",
            "enable.idempotence=true",
            "-l",
            file.to_str().unwrap(),
        ],
        None,
    );
    // Read back: every record once, each key on one partition, in order within it.
    let out = run_kcat(
        kcat,
        &[
            "-C",
            "-b",
            &kafka,
            "-t",
            "keyed",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p %o %k %s\n",
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut seen: Vec<(i32, i64, String, String)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].into(),
                f[3].into(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 300, "{text}");
    let mut partition_of = std::collections::HashMap::new();
    for (p, _, k, _) in &seen {
        assert_eq!(
            *partition_of.entry(k.clone()).or_insert(*p),
            *p,
            "key {k} on two partitions"
        );
    }
    // Within a partition, offsets are dense from 0 and values keep the order they were sent.
    seen.sort_by_key(|(p, o, _, _)| (*p, *o));
    for p in 0..3 {
        let mine: Vec<_> = seen.iter().filter(|r| r.0 == p).collect();
        for (i, r) in mine.iter().enumerate() {
            assert_eq!(r.1, i as i64, "partition {p}: offsets dense from 0");
        }
        let order: Vec<usize> = mine
            .iter()
            .map(|r| r.3.trim_start_matches("value-").parse().unwrap())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order"
        );
    }
    // And the keys landed where Kafka's default partitioner puts them.
    for (k, p) in &partition_of {
        let want = streamhouse_proto::partitioner::partition_for_key(k.as_bytes(), 3);
        assert_eq!(*p as u32, want, "key {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cross_between_the_grpc_client_and_kafka_clients_unchanged() {
    use streamhouse_client::{Header, Producer, TopicPartition};
    let Some(kcat) = kcat() else {
        return;
    };
    let (_guard, dir) = data_dir();
    let (agent, kafka) = agent_with_topic(&dir, "cross", 2).await;

    // Our producer (LZ4 batches in StreamHouse's layout) -> kcat.
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .build()
        .await
        .expect("producer");
    let t0 = streamhouse_tests::now_ms() - 60_000;
    for i in 0..50i64 {
        let headers = [Header {
            key: "trace".into(),
            value: Some(Bytes::from(format!("t{i}"))),
        }];
        producer
            .send_record(
                "cross",
                Some(0),
                Some(format!("k{i}").as_bytes()),
                Some(format!("v{i}").as_bytes()),
                &headers,
                Some(t0 + i),
            )
            .await
            .expect("send");
    }
    producer.flush().await.expect("flush");
    let out = run_kcat(
        kcat,
        &[
            "-C",
            "-b",
            &kafka,
            "-t",
            "cross",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%o|%k|%s|%T|%h\n",
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            *line,
            format!("{i}|k{i}|v{i}|{}|trace=t{i}", t0 + i as i64),
            "record {i}"
        );
    }

    // kcat (librdkafka's batches, in Kafka's layout) -> our consumer.
    let before = streamhouse_tests::now_ms();
    let input: String = (0..40).map(|i| format!("key{i}:value{i}\n")).collect();
    run_kcat(
        kcat,
        &[
            "-P",
            "-b",
            &kafka,
            "-t",
            "cross",
            "-p",
            "1",
            "-K",
            ":",
            "-H",
            "source=kcat",
        ],
        Some(input.as_bytes()),
    );
    let after = streamhouse_tests::now_ms();
    let tp = TopicPartition::new("cross", 1);
    let mut consumer = streamhouse_tests::consumer_at(&agent.addr, &tp, 0).await;
    let mut got = Vec::new();
    while got.len() < 40 {
        let polled = consumer.poll(Duration::from_secs(10)).await.expect("poll");
        assert!(!polled.is_empty(), "only {} of 40 records came", got.len());
        got.extend(polled);
    }
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(format!("key{i}").as_bytes()));
        assert_eq!(r.value.as_deref(), Some(format!("value{i}").as_bytes()));
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].key, "source");
        assert_eq!(r.headers[0].value.as_deref(), Some(&b"kcat"[..]));
        assert!(
            (before..=after).contains(&r.timestamp),
            "timestamp {}",
            r.timestamp
        );
    }
}

mod data_path {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
        ProduceResponse,
    };
    use streamhouse_proto::batch::forge::payload_of;
    use streamhouse_proto::batch::kafka::forge::batch as kafka_batch;
    use streamhouse_proto::batch::{Batch, BatchBuilder, Compression, ProducerStamp};

    /// The encoded records of `values`, stamped `ts`, as a Kafka batch carries them.
    fn records(values: &[&str], ts: i64) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None);
        for v in values {
            b.append(ts, Some(b"k"), Some(v.as_bytes()), &[]);
        }
        payload_of(&b.finish(ProducerStamp::NONE).unwrap()).to_vec()
    }

    fn good(values: &[&str], ts: i64) -> Vec<u8> {
        let n = values.len() as i32;
        kafka_batch(&records(values, ts), 0, 0, n, ts, ts, (-1, -1, -1), 0)
    }

    fn produce(
        s: &mut TcpStream,
        topic: &str,
        batch: Option<Vec<u8>>,
        acks: i16,
    ) -> Option<(i16, i64)> {
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(batch.map(Bytes::from)),
                    ]),
            ]);
        if acks == 0 {
            send_only(s, 9, &req);
            return None;
        }
        let r: ProduceResponse = call(s, 9, &req);
        let p = &r.responses[0].partition_responses[0];
        Some((p.error_code, p.base_offset))
    }

    /// Writes a request Kafka answers with nothing (acks=0).
    fn send_only<R: Request>(s: &mut TcpStream, version: i16, req: &R) {
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(3)
            .encode(&mut body, R::header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        s.write_all(&frame).unwrap();
    }

    fn fetch(
        s: &mut TcpStream,
        topic: &str,
        offset: i64,
        max_wait_ms: i32,
    ) -> (i16, i64, Vec<(i64, String)>) {
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let r: FetchResponse = call(s, 12, &req);
        let p = &r.responses[0].partitions[0];
        let mut values = Vec::new();
        let mut run = p.records.clone().unwrap_or_default();
        // Each batch as a Kafka client reads it: base offset, then the batch.
        while !run.is_empty() {
            let base = i64::from_be_bytes(run[..8].try_into().unwrap());
            let len = 12 + i32::from_be_bytes(run[8..12].try_into().unwrap()) as usize;
            let mut stored = run.split_to(len).to_vec();
            stored[..8].fill(0);
            for rec in Batch::parse(Bytes::from(stored))
                .unwrap()
                .records(base)
                .unwrap()
            {
                values.push((
                    rec.offset,
                    String::from_utf8(rec.value.unwrap().to_vec()).unwrap(),
                ));
            }
        }
        (p.error_code, p.high_watermark, values)
    }

    fn list_offset(s: &mut TcpStream, topic: &str, timestamp: i64) -> (i16, i64) {
        let req = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let r: ListOffsetsResponse = call(s, 6, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_kafka_clients_send_is_stored_whole_or_refused_and_read_back() {
        let (_guard, dir) = data_dir();
        let (_agent, kafka) = agent_with_topic(&dir, "edge", 1).await;
        let mut s = connect(&kafka);
        let t0 = streamhouse_tests::now_ms() - 10_000;
        assert_eq!(
            produce(&mut s, "edge", Some(good(&["a", "b"], t0)), -1),
            Some((0, 0))
        );

        let invalid = ResponseError::InvalidRecord.code();
        let mut crc = good(&["x"], t0);
        let last = crc.len() - 1;
        crc[last] ^= 1;
        let transactional = kafka_batch(&records(&["x"], t0), 0, 1 << 4, 1, t0, t0, (5, 0, 0), 0);
        let mut two = good(&["x"], t0);
        two.extend_from_slice(&good(&["y"], t0));
        // A gzip payload of 64 MiB of zeros in a batch of a few kilobytes.
        let bomb = {
            use std::io::Write as _;
            let mut plain = records(&["z"], t0);
            plain.resize(64 << 20, 0);
            let mut e = flate2_like::encoder();
            e.write_all(&plain).unwrap();
            kafka_batch(&e.finish().unwrap(), 1, 0, 1, t0, t0, (-1, -1, -1), 0)
        };
        for (what, batch, code) in [
            ("a flipped byte", Some(crc), invalid),
            ("a transactional batch", Some(transactional), invalid),
            ("two batches", Some(two), invalid),
            ("no records", None, invalid),
            ("a decompression bomb", Some(bomb), invalid),
            ("garbage", Some(vec![7; 40]), invalid),
        ] {
            let (got, _) = produce(&mut s, "edge", batch, -1).unwrap();
            assert_eq!(got, code, "{what}");
        }
        assert_eq!(
            produce(&mut s, "nope", Some(good(&["x"], t0)), 1)
                .unwrap()
                .0,
            ResponseError::UnknownTopicOrPartition.code()
        );
        // acks=0 is answered with nothing; the next answer is the next request's.
        assert!(produce(&mut s, "edge", Some(good(&["c"], t0 + 5_000)), 0).is_none());
        let (code, base) = produce(&mut s, "edge", Some(good(&["d", "e"], t0 + 9_000)), 1).unwrap();
        assert_eq!((code, base), (0, 3));

        // What was accepted reads back, densely, and nothing else.
        let (code, hw, values) = fetch(&mut s, "edge", 0, 0);
        assert_eq!((code, hw), (0, 5));
        let want: Vec<(i64, String)> = ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.to_string()))
            .collect();
        assert_eq!(values, want);
        // Mid-batch offsets return the whole batch (the client skips), as Kafka does.
        assert_eq!(fetch(&mut s, "edge", 4, 0).2.first().map(|v| v.0), Some(3));
        // Past the end: OFFSET_OUT_OF_RANGE; at the end, a long poll that waits its time.
        assert_eq!(
            fetch(&mut s, "edge", 9, 0).0,
            ResponseError::OffsetOutOfRange.code()
        );
        let started = std::time::Instant::now();
        let (code, _, values) = fetch(&mut s, "edge", 5, 300);
        assert_eq!(code, 0);
        assert!(values.is_empty());
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );

        // min_bytes beyond what is there: the fetch waits out max_wait for more, then answers
        // with what there is, as Kafka does.
        let req = FetchRequest::default()
            .with_max_wait_ms(300)
            .with_min_bytes(1 << 20)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name("edge"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let started = std::time::Instant::now();
        let r: FetchResponse = call(&mut s, 12, &req);
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .is_some_and(|b| !b.is_empty())
        );

        // ListOffsets: earliest, latest, and by time.
        assert_eq!(list_offset(&mut s, "edge", -2), (0, 0));
        assert_eq!(list_offset(&mut s, "edge", -1), (0, 5));
        assert_eq!(list_offset(&mut s, "edge", t0), (0, 0));
        assert_eq!(list_offset(&mut s, "edge", t0 + 1), (0, 2));
        assert_eq!(list_offset(&mut s, "edge", t0 + 6_000), (0, 3));
        assert_eq!(list_offset(&mut s, "edge", t0 + 60_000), (0, -1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_naming_too_much_do_bounded_work() {
        let (_guard, dir) = data_dir();
        let (_agent, kafka) = agent_with_topic(&dir, "few", 2).await;
        let mut s = connect(&kafka);
        // 1,001 topics to create: refused whole, nothing created.
        let many: Vec<CreatableTopic> = (0..1001).map(|i| topic(&format!("t{i}"), 1)).collect();
        let r: CreateTopicsResponse = call(
            &mut s,
            7,
            &CreateTopicsRequest::default()
                .with_topics(many)
                .with_timeout_ms(30_000),
        );
        assert_eq!(r.topics.len(), 1001);
        assert!(
            r.topics
                .iter()
                .all(|t| t.error_code == ResponseError::InvalidRequest.code())
        );
        assert_eq!(
            metadata(&mut s, 12, Some(&["t0"])).topics[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        // A fetch naming 10,001 partitions: the last is refused without work; the ones that
        // do not exist are UNKNOWN_TOPIC_OR_PARTITION, the ones that do are read.
        let parts: Vec<FetchPartition> = (0..10_001)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1024)
            })
            .collect();
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name("few"))
                    .with_partitions(parts),
            ]);
        let r: FetchResponse = call(&mut s, 12, &req);
        let codes: Vec<i16> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes.len(), 10_001);
        assert_eq!(&codes[..2], &[0, 0]);
        assert!(
            codes[2..10_000]
                .iter()
                .all(|c| *c == ResponseError::UnknownTopicOrPartition.code())
        );
        assert_eq!(codes[10_000], ResponseError::InvalidRequest.code());
        // ListOffsets of a topic that does not exist, named by many partitions.
        let req = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("absent"))
                    .with_partitions(
                        (0..100)
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(-1)
                            })
                            .collect(),
                    ),
            ]);
        let r: ListOffsetsResponse = call(&mut s, 6, &req);
        assert!(
            r.topics[0]
                .partitions
                .iter()
                .all(|p| p.error_code == ResponseError::UnknownTopicOrPartition.code())
        );
    }

    /// One readable line: what a Kafka client logs.
    fn one_line(message: &Option<StrBytes>) {
        let m = message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(!m.is_empty() && !m.contains('\n') && m.len() < 300, "{m:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worst_values_of_each_request_field_get_a_clear_code_and_lose_nothing() {
        use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
        use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
        let (_guard, dir) = data_dir();
        let (_agent, kafka) = agent_with_topic(&dir, "w", 1).await;
        let mut s = connect(&kafka);
        let t0 = streamhouse_tests::now_ms() - 10_000;
        assert_eq!(
            produce(&mut s, "w", Some(good(&["kept"], t0)), -1),
            Some((0, 0))
        );

        // Produce: acks outside -1, 0, 1; partitions that do not exist.
        for acks in [2, 7, -2, i16::MIN, i16::MAX] {
            let req = ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(-1)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name("w"))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from(good(&["lost"], t0)))),
                        ]),
                ]);
            let r: ProduceResponse = call(&mut s, 9, &req);
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(
                p.error_code,
                ResponseError::InvalidRequiredAcks.code(),
                "acks {acks}"
            );
            one_line(&p.error_message);
        }
        for index in [-1, 1, i32::MAX, i32::MIN] {
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name("w"))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(index)
                                .with_records(Some(Bytes::from(good(&["lost"], t0)))),
                        ]),
                ]);
            let r: ProduceResponse = call(&mut s, 9, &req);
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(
                p.error_code,
                ResponseError::UnknownTopicOrPartition.code(),
                "{index}"
            );
            one_line(&p.error_message);
        }

        // Fetch: negative waits, sizes and offsets, and partitions that do not exist.
        let req = FetchRequest::default()
            .with_max_wait_ms(i32::MIN)
            .with_min_bytes(i32::MIN)
            .with_max_bytes(i32::MIN)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name("w"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(i32::MIN),
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(-1)
                            .with_partition_max_bytes(1 << 20),
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(i64::MAX)
                            .with_partition_max_bytes(1 << 20),
                        FetchPartition::default()
                            .with_partition(-1)
                            .with_partition_max_bytes(1 << 20),
                        FetchPartition::default()
                            .with_partition(7)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let r: FetchResponse = call(&mut s, 12, &req);
        let codes: Vec<i16> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        let range = ResponseError::OffsetOutOfRange.code();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(codes, [0, range, range, invalid, unknown]);
        // The first still gets its batch: a size below one batch returns one batch, as Kafka.
        assert!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .is_some_and(|b| !b.is_empty())
        );

        // ListOffsets: timestamps Kafka gives meaning to only at later versions, and below.
        for (ts, want) in [
            (-3, invalid),
            (-4, invalid),
            (i64::MIN, invalid),
            (i64::MAX, 0),
        ] {
            assert_eq!(list_offset(&mut s, "w", ts).0, want, "timestamp {ts}");
        }
        assert_eq!(list_offset(&mut s, "w", i64::MAX), (0, -1));

        // CreateTopics: every field at its worst.
        let long = "x".repeat(250);
        let config = |k: &'static str, v: Option<&'static str>| {
            topic("c", 1).with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str(k))
                    .with_value(v.map(StrBytes::from_static_str)),
            ])
        };
        let assigned = topic("c", 1).with_assignments(vec![Default::default()]);
        for (what, t, code) in [
            (
                "10,001 partitions",
                topic("c", 10_001),
                ResponseError::InvalidPartitions,
            ),
            (
                "i32::MIN partitions",
                topic("c", i32::MIN),
                ResponseError::InvalidPartitions,
            ),
            (
                "replication 0",
                topic("c", 1).with_replication_factor(0),
                ResponseError::InvalidReplicationFactor,
            ),
            (
                "replication -2",
                topic("c", 1).with_replication_factor(-2),
                ResponseError::InvalidReplicationFactor,
            ),
            (
                "a 250-character name",
                topic(&long, 1),
                ResponseError::InvalidTopicException,
            ),
            (
                "an empty name",
                topic("", 1),
                ResponseError::InvalidTopicException,
            ),
            (
                "retention.ms null",
                config("retention.ms", None),
                ResponseError::InvalidConfig,
            ),
            (
                "retention.ms 0",
                config("retention.ms", Some("0")),
                ResponseError::InvalidConfig,
            ),
            (
                "retention.bytes -5",
                config("retention.bytes", Some("-5")),
                ResponseError::InvalidConfig,
            ),
            (
                "retention.ms text",
                config("retention.ms", Some("1d")),
                ResponseError::InvalidConfig,
            ),
            (
                "an unknown setting",
                config("message.downconversion.enable", Some("true")),
                ResponseError::InvalidConfig,
            ),
            (
                "replica assignments",
                assigned,
                ResponseError::InvalidRequest,
            ),
        ] {
            let r: CreateTopicsResponse = call(
                &mut s,
                7,
                &CreateTopicsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(-1),
            );
            assert_eq!(r.topics[0].error_code, code.code(), "{what}");
            one_line(&r.topics[0].error_message);
        }
        assert_eq!(
            metadata(&mut s, 12, Some(&["c"])).topics[0].error_code,
            unknown,
            "a refused topic was created"
        );

        // Named by topic id only (there are none here), in Metadata and DeleteTopics.
        let by_id = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(None)]));
        let m: MetadataResponse = call(&mut s, 12, &by_id);
        assert_eq!(m.topics[0].error_code, ResponseError::UnknownTopicId.code());
        let d: DeleteTopicsResponse = call(
            &mut s,
            6,
            &DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_name(None)])
                .with_timeout_ms(-1),
        );
        assert_eq!(
            d.responses[0].error_code,
            ResponseError::UnknownTopicId.code()
        );
        one_line(&d.responses[0].error_message);

        // InitProducerId: ids below -1, an id never issued, a transactional id.
        for (id, epoch) in [(-2i64, -1i16), (i64::MIN, 0), (123_456, 0), (0, i16::MIN)] {
            let r: InitProducerIdResponse = call(
                &mut s,
                4,
                &InitProducerIdRequest::default()
                    .with_producer_id(kafka_protocol::messages::ProducerId(id))
                    .with_producer_epoch(epoch)
                    .with_transaction_timeout_ms(-1),
            );
            assert_ne!(r.error_code, 0, "producer {id} epoch {epoch}");
            assert_eq!(r.producer_id.0, -1);
        }
        let r: InitProducerIdResponse = call(
            &mut s,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_static_str("tx"),
                )))
                .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1),
        );
        assert_eq!(r.error_code, invalid);

        // And nothing was lost or added: the partition holds exactly what was accepted.
        let (code, hw, values) = fetch(&mut s, "w", 0, 0);
        assert_eq!((code, hw), (0, 1));
        assert_eq!(values, vec![(0, "kept".to_string())]);
    }

    /// gzip, as a Kafka client compresses.
    mod flate2_like {
        pub fn encoder() -> flate2::write::GzEncoder<Vec<u8>> {
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())
        }
    }
}

/// Whether `python3` can import `module` (from PyPI's `package`); when it cannot, says so and
/// the test skips, except under CI, where that is a failure.
fn python_has(module: &str, package: &str) -> bool {
    let found = client("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    present_or_skip(
        found,
        &format!("{package} is not installed (pip install {package})"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_producer_keeps_every_record_once_through_a_kill_9() {
    use std::io::BufRead;
    if !python_has("confluent_kafka", "confluent-kafka") {
        return;
    }
    let (_guard, dir) = data_dir();
    // Three agents on one store, each with a Kafka listener.
    let (mut agents, bootstrap) = kafka_cluster(&dir, 3, &[]);
    let first = agents[0].1.clone();
    assert_eq!(create(&mut connect(&first), topic("orders", 6)).0, 0);
    let spread = all_led(&first, "orders").await;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kafka_clients/failover_produce.py"
    );
    let mut child = client("python3")
        .args([script, "--bootstrap", &bootstrap, "--topic", "orders"])
        .args(["--records", "100000", "--partitions", "6"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3");
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut killed = None;
    let mut outcome = Vec::new();
    for line in lines {
        let line = line.expect("the script's output");
        if line == "acked 20000" && killed.is_none() {
            // kill -9 the agent leading the most partitions (as the last metadata said).
            let m = metadata(&mut connect(&first), 12, Some(&["orders"]));
            let mut led = std::collections::HashMap::new();
            for p in &m.topics[0].partitions {
                *led.entry(p.leader_id).or_insert(0) += 1;
            }
            let (node, _) = led.into_iter().max_by_key(|(_, n)| *n).unwrap();
            let b = m.brokers.iter().find(|b| b.node_id == node).unwrap();
            let addr = format!("{}:{}", b.host, b.port);
            let victim = agents.iter_mut().find(|(_, k)| *k == addr).unwrap();
            victim.0.take().unwrap().kill9();
            killed = Some(addr);
        }
        outcome.push(line);
    }
    let status = child.wait().unwrap();
    assert!(
        killed.is_some(),
        "the run ended before 20,000 acknowledgements: {outcome:?}"
    );
    assert!(
        status.success(),
        "the librdkafka run failed: {:?}",
        outcome.last()
    );
    assert_eq!(outcome.last().map(String::as_str), Some("ok 100000 100000"));
    // Keys landed where Kafka's default partitioner puts them.
    let placed = outcome
        .iter()
        .find_map(|l| l.strip_prefix("partitions "))
        .expect("the script's key placement");
    for kp in placed.split(' ') {
        let (k, p) = kp.rsplit_once('=').unwrap();
        let want = streamhouse_proto::partitioner::partition_for_key(k.as_bytes(), 6);
        assert_eq!(p.parse::<u32>().unwrap(), want, "key {k}");
    }
    drop(spread);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_and_consumes_with_every_codec() {
    // Snappy, LZ4 and zstd need their libraries beside kafka-python.
    if !python_has(
        "kafka, snappy, lz4.frame, zstandard",
        "kafka-python python-snappy lz4 zstandard",
    ) {
        return;
    }
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = agent_with_topic(&dir, "codecs", 1).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka_clients/codecs.py");
    let out = client("python3")
        .args([script, "--bootstrap", &kafka, "--topic", "codecs"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka-python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok None gzip snappy lz4 zstd"
    );
}
