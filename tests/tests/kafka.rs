//! The Kafka listener, through a real agent process: what Kafka clients' first requests
//! (`ApiVersions`, `Metadata`, `CreateTopics`, `DeleteTopics`) are answered, that hostile
//! frames end only their own connection, and `kcat -L` (librdkafka) against it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use streamhouse_tests::{AgentProcess, data_dir, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");

/// A port free now, for `--kafka-listen`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn kafka_agent(dir: &std::path::Path) -> (AgentProcess, String) {
    let kafka = format!("127.0.0.1:{}", free_port());
    let agent = AgentProcess::start(BIN, dir, &["--kafka-listen", &kafka]);
    (agent, kafka)
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
    let mut answer = read_frame(s).expect("an answer");
    let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response = R::Response::decode(&mut answer, version).unwrap();
    assert!(!answer.has_remaining(), "bytes left over in the answer");
    response
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
        ApiKey::Metadata,
        ApiKey::ApiVersions,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
    ] {
        assert!(
            keys.contains(&(api as i16)),
            "{api:?} missing from {keys:?}"
        );
    }
    assert!(
        !keys.contains(&(ApiKey::Produce as i16)),
        "Produce is not served yet"
    );

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
    s.write_all(frame).unwrap();
    // Done sending: a frame that claims more than was sent ends at this EOF.
    s.shutdown(std::net::Shutdown::Write).unwrap();
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
    let mut produce = header(ApiKey::Produce as i16, 9);
    produce.extend_from_slice(&[0; 16]);
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
        ("an API not served", framed(&produce)),
        ("bytes after the request", framed(&trailing)),
    ];
    for (what, frame) in cases {
        assert!(
            closed_without_answer(&kafka, &frame),
            "{what}: the connection should be closed unanswered"
        );
    }

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

/// `kcat`, from Debian's package, or `None` (after saying so) when it is missing outside CI.
fn kcat() -> Option<&'static str> {
    let found = std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("kcat");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "kcat is not installed: under CI=true that is a failure, not a skip"
    );
    eprintln!("skipping: kcat is not installed (apt-get install kcat)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_the_brokers_and_topics() {
    let Some(kcat) = kcat() else {
        return;
    };
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = kafka_agent(&dir);
    let mut s = connect(&kafka);
    assert_eq!(create(&mut s, topic("events", 4)).0, 0);

    // librdkafka's own view, as JSON: one broker, four partitions, each led by it.
    let listing = wait_for(
        "kcat -L to show every leader",
        Duration::from_secs(30),
        || {
            let kafka = kafka.clone();
            async move {
                let out = std::process::Command::new(kcat)
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
