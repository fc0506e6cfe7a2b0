//! Kafka consumer groups (the classic protocol) through real agent processes: librdkafka
//! (kcat and confluent-kafka) and kafka-python groups sharing topics, committing and taking
//! over; a group shared between Kafka clients and StreamHouse consumers one at a time; and
//! the worst values of every group request field.

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse,
};

use super::*;

/// Kafka groups complete their first rebalance after 300 ms, not 3 s.
const QUICK_GROUPS: &[&str] = &["--group-initial-rebalance-delay-ms", "300"];

/// An agent whose Kafka groups form quickly.
fn group_agent(dir: &std::path::Path) -> (AgentProcess, String) {
    kafka_agent_with(dir, QUICK_GROUPS)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join_req(group: &str, member: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0\0\0")),
        ])
}

/// Joins `group` as a new member at JoinGroup v4 (learning its id first); returns the answer.
fn join(k: &mut TcpStream, group: &str) -> JoinGroupResponse {
    let first: JoinGroupResponse = call(k, 4, &join_req(group, "", 10_000));
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    call(k, 4, &join_req(group, &first.member_id, 10_000))
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    parts: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(
            parts
                .iter()
                .map(|(t, p, o)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(name(t))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o),
                        ])
                })
                .collect(),
        )
}

fn fetch_offsets(k: &mut TcpStream, group: &str, topic: &str, parts: Vec<i32>) -> Vec<i64> {
    let r: OffsetFetchResponse = call(
        k,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(name(topic))
                    .with_partition_indexes(parts),
            ])),
    );
    assert_eq!(r.error_code, 0);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_group_of_three_shares_a_topic_and_takes_over_when_one_leaves() {
    if !python_has("confluent_kafka", "confluent-kafka") {
        return;
    }
    let (_guard, dir) = data_dir();
    // Three agents: the group's coordinator is whichever FindCoordinator names, not
    // necessarily the one bootstrapped from.
    let (agents, bootstrap) = kafka_cluster(&dir, 3, QUICK_GROUPS);
    assert_eq!(create(&mut connect(&agents[0].1), topic("shared", 6)).0, 0);
    all_led(&agents[0].1, "shared").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kafka_clients/group_consume.py"
    );
    let out = client("python3")
        .args([script, "--bootstrap", &bootstrap, "--topic", "shared"])
        .args(["--partitions", "6", "--records", "3000"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the librdkafka group failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 6,000 records read once each; partitions split 2/2/2, then 3/3.
    assert!(stdout.starts_with("ok 6000 [2, 2, 2] [3, 3]"), "{stdout}");
    // The group, as Kafka's own DescribeGroups shows it after everyone left.
    let d: DescribeGroupsResponse = call(
        &mut connect(&agents[1].1),
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid("three")]),
    );
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert_eq!(d.groups[0].protocol_type.as_str(), "consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_group_shares_a_topic_and_takes_over_when_one_leaves() {
    if !python_has("kafka", "kafka-python") {
        return;
    }
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = group_agent(&dir);
    assert_eq!(create(&mut connect(&kafka), topic("pairs", 4)).0, 0);
    all_led(&kafka, "pairs").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kafka_clients/group_kafka_python.py"
    );
    let out = client("python3")
        .args([script, "--bootstrap", &kafka, "--topic", "pairs"])
        .args(["--partitions", "4", "--records", "1000"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the kafka-python group failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 2000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_consumer_group_resumes_from_its_committed_offsets() {
    let Some(kcat) = kcat() else {
        return;
    };
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = group_agent(&dir);
    assert_eq!(create(&mut connect(&kafka), topic("tail", 3)).0, 0);
    all_led(&kafka, "tail").await;
    let produce = |from: usize, to: usize| {
        let lines: String = (from..to).map(|i| format!("k{i}:v{i}\n")).collect();
        run_kcat(
            kcat,
            &["-P", "-b", &kafka, "-t", "tail", "-K:"],
            Some(lines.as_bytes()),
        );
    };
    // The balanced consumer (-G) reads to the end of every partition, commits and leaves.
    let consume = || {
        // Where the group has committed nothing yet, it starts at the beginning.
        let out = run_kcat(
            kcat,
            &[
                "-b",
                &kafka,
                "-G",
                "tailers",
                "-X",
                "auto.offset.reset=earliest",
                "-e",
                "-q",
                "-f",
                "%s\n",
                "tail",
            ],
            None,
        );
        let mut values: Vec<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches('v').parse().expect("a value"))
            .collect();
        values.sort_unstable();
        values
    };
    produce(0, 300);
    assert_eq!(consume(), (0..300).collect::<Vec<_>>());
    // Everything was committed: a second run reads nothing.
    assert_eq!(consume(), Vec::<usize>::new());
    produce(300, 400);
    assert_eq!(consume(), (300..400).collect::<Vec<_>>());
    let committed = fetch_offsets(&mut connect(&kafka), "tailers", "tail", vec![0, 1, 2]);
    let m = metadata(&mut connect(&kafka), 12, Some(&["tail"]));
    assert_eq!(m.topics[0].partitions.len(), 3);
    assert_eq!(committed.iter().sum::<i64>(), 400, "{committed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_serves_one_protocol_at_a_time_and_shares_its_offsets() {
    use streamhouse_client::{Consumer, TopicPartition};
    let (_guard, dir) = data_dir();
    let (agent, kafka) = group_agent(&dir);
    assert_eq!(create(&mut connect(&kafka), topic("both", 2)).0, 0);
    all_led(&kafka, "both").await;

    // A StreamHouse consumer holds the group: a Kafka client may not join it.
    let mut ours = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("mixed")
        .enable_auto_commit(false)
        .build()
        .await
        .expect("consumer");
    ours.subscribe(vec!["both".into()])
        .await
        .expect("subscribe");
    let deadline = streamhouse_tests::Deadline::within(Duration::from_secs(30));
    while ours.membership().is_none() {
        deadline.check("the StreamHouse consumer to join");
        ours.poll(Duration::from_millis(100)).await.expect("poll");
    }
    let mut k = connect(&kafka);
    let refused = join(&mut k, "mixed");
    assert_eq!(
        refused.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    ours.commit_offsets(&[(TopicPartition::new("both", 0), 0)])
        .await
        .expect("commit");
    ours.close().await.expect("close");

    // Empty now: a Kafka member joins, leads, assigns and sees what ours committed.
    let joined = join(&mut k, "mixed");
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.members.len(), 1);
    let synced: SyncGroupResponse = call(
        &mut k,
        2,
        &SyncGroupRequest::default()
            .with_group_id(gid("mixed"))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(joined.member_id.clone())
                    .with_assignment(Bytes::from_static(b"plan")),
            ]),
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"plan");
    // The member is named for the client id in its requests' header, and shown with it.
    assert!(joined.member_id.starts_with("streamhouse-test-"));
    let d: DescribeGroupsResponse = call(
        &mut k,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid("mixed")]),
    );
    let member = &d.groups[0].members[0];
    assert_eq!(member.client_id.as_str(), "streamhouse-test");
    assert_eq!(member.client_host.as_str(), "/127.0.0.1");
    assert_eq!(fetch_offsets(&mut k, "mixed", "both", vec![0, 1]), [0, -1]);
    let c: OffsetCommitResponse = call(
        &mut k,
        6,
        &commit_req(
            "mixed",
            &joined.member_id,
            joined.generation_id,
            &[("both", 1, 7)],
        ),
    );
    assert_eq!(c.topics[0].partitions[0].error_code, 0);

    // Now ours may not join, until the Kafka member leaves.
    let mut again = Consumer::builder()
        .bootstrap(&agent.addr)
        .group_id("mixed")
        .build()
        .await
        .expect("consumer");
    again
        .subscribe(vec!["both".into()])
        .await
        .expect("subscribe");
    let err = again
        .poll(Duration::from_millis(100))
        .await
        .expect_err("a Kafka group with members");
    assert!(err.to_string().contains("Kafka consumers"), "{err}");
    let left: LeaveGroupResponse = call(
        &mut k,
        2,
        &LeaveGroupRequest::default()
            .with_group_id(gid("mixed"))
            .with_member_id(joined.member_id.clone()),
    );
    assert_eq!(left.error_code, 0);
    again
        .subscribe(vec!["both".into()])
        .await
        .expect("subscribe");
    let committed = again
        .committed(&[TopicPartition::new("both", 1)])
        .await
        .expect("committed");
    assert_eq!(committed, vec![(TopicPartition::new("both", 1), Some(7))]);
    again.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_requests_refuse_the_worst_value_of_every_field() {
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = group_agent(&dir);
    assert_eq!(create(&mut connect(&kafka), topic("w", 2)).0, 0);
    all_led(&kafka, "w").await;
    let mut k = connect(&kafka);
    let code = |e: ResponseError| e.code();

    // FindCoordinator: a group id of the wrong size, a transaction key, too many keys.
    let fc = |key: &str, key_type: i8| {
        FindCoordinatorRequest::default()
            .with_key(s(key))
            .with_key_type(key_type)
    };
    let r: FindCoordinatorResponse = call(&mut k, 3, &fc("g", 0));
    assert_eq!(
        (r.error_code, r.port),
        (0, kafka.rsplit_once(':').unwrap().1.parse().unwrap())
    );
    let r: FindCoordinatorResponse = call(&mut k, 3, &fc("", 0));
    assert_eq!(r.error_code, code(ResponseError::InvalidGroupId));
    let r: FindCoordinatorResponse = call(&mut k, 3, &fc(&"g".repeat(256), 0));
    assert_eq!(r.error_code, code(ResponseError::InvalidGroupId));
    let r: FindCoordinatorResponse = call(&mut k, 3, &fc("tx", 1));
    assert_eq!(r.error_code, code(ResponseError::InvalidRequest));
    let r: FindCoordinatorResponse = call(&mut k, 3, &fc("g", 9));
    assert_eq!(r.error_code, code(ResponseError::InvalidRequest));
    let many: Vec<StrBytes> = (0..1_001).map(|i| s(&format!("g{i}"))).collect();
    let r: FindCoordinatorResponse = call(
        &mut k,
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(many),
    );
    assert_eq!(r.coordinators.len(), 1_001);
    assert!(
        r.coordinators
            .iter()
            .all(|c| c.error_code == code(ResponseError::InvalidRequest))
    );

    // JoinGroup: group id, session timeouts, protocol type, protocols, member id.
    let r: JoinGroupResponse = call(&mut k, 4, &join_req("", "", 10_000));
    assert_eq!(r.error_code, code(ResponseError::InvalidGroupId));
    for session in [i32::MIN, -1, 0, 999, 300_001, i32::MAX] {
        let r: JoinGroupResponse = call(&mut k, 4, &join_req("g", "", session));
        assert_eq!(
            r.error_code,
            code(ResponseError::InvalidSessionTimeout),
            "{session}"
        );
    }
    let r: JoinGroupResponse = call(
        &mut k,
        4,
        &join_req("g", "", 10_000).with_protocol_type(s("")),
    );
    assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol));
    let r: JoinGroupResponse = call(&mut k, 4, &join_req("g", "", 10_000).with_protocols(vec![]));
    assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol));
    let nine = (0..9)
        .map(|i| JoinGroupRequestProtocol::default().with_name(s(&format!("p{i}"))))
        .collect();
    let r: JoinGroupResponse = call(&mut k, 4, &join_req("g", "", 10_000).with_protocols(nine));
    assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol));
    let huge = vec![
        JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(vec![0u8; 200 * 1024])),
    ];
    let r: JoinGroupResponse = call(&mut k, 4, &join_req("g", "", 10_000).with_protocols(huge));
    assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol));
    let r: JoinGroupResponse = call(&mut k, 4, &join_req("g", &"m".repeat(256), 10_000));
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
    // Version 0 (no rebalance timeout) with no member id joins at once.
    let r: JoinGroupResponse = call(&mut k, 0, &join_req("v0", "", 10_000));
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1);

    // Heartbeat, SyncGroup, LeaveGroup from members the group does not know.
    let hb = |g: &str, m: &str, generation: i32| {
        HeartbeatRequest::default()
            .with_group_id(gid(g))
            .with_member_id(s(m))
            .with_generation_id(generation)
    };
    let r: HeartbeatResponse = call(&mut k, 2, &hb("v0", "nobody", 1));
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
    let r: HeartbeatResponse = call(&mut k, 2, &hb("v0", &"m".repeat(256), 1));
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
    let joined: JoinGroupResponse = call(&mut k, 0, &join_req("v1", "", 10_000));
    for generation in [i32::MIN, -1, 0, 2, i32::MAX] {
        let r: HeartbeatResponse = call(&mut k, 2, &hb("v1", &joined.member_id, generation));
        assert_eq!(
            r.error_code,
            code(ResponseError::IllegalGeneration),
            "{generation}"
        );
    }
    let r: SyncGroupResponse = call(
        &mut k,
        2,
        &SyncGroupRequest::default()
            .with_group_id(gid("v1"))
            .with_member_id(s("nobody"))
            .with_generation_id(1),
    );
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
    let too_many = (0..1_001)
        .map(|i| SyncGroupRequestAssignment::default().with_member_id(s(&format!("m{i}"))))
        .collect();
    let r: SyncGroupResponse = call(
        &mut k,
        2,
        &SyncGroupRequest::default()
            .with_group_id(gid("v1"))
            .with_member_id(joined.member_id.clone())
            .with_generation_id(joined.generation_id)
            .with_assignments(too_many),
    );
    assert_eq!(r.error_code, code(ResponseError::InvalidRequest));
    let r: LeaveGroupResponse = call(
        &mut k,
        2,
        &LeaveGroupRequest::default()
            .with_group_id(gid("v1"))
            .with_member_id(s("nobody")),
    );
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));

    // OffsetCommit: unknown topic and partition, negative offset, oversized metadata, a
    // member or generation that is not the group's, a commit from outside a live group.
    let one = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    // While the leader's assignment is awaited, no commit is taken.
    assert_eq!(
        one(call(
            &mut k,
            6,
            &commit_req(
                "v1",
                &joined.member_id,
                joined.generation_id,
                &[("w", 0, 3)]
            )
        )),
        code(ResponseError::RebalanceInProgress)
    );
    let synced: SyncGroupResponse = call(
        &mut k,
        2,
        &SyncGroupRequest::default()
            .with_group_id(gid("v1"))
            .with_member_id(joined.member_id.clone())
            .with_generation_id(joined.generation_id),
    );
    assert_eq!(synced.error_code, 0);
    let empty = "lonely";
    assert_eq!(
        one(call(
            &mut k,
            6,
            &commit_req(empty, "", -1, &[("nope", 0, 1)])
        )),
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        one(call(&mut k, 6, &commit_req(empty, "", -1, &[("w", 2, 1)]))),
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        one(call(&mut k, 6, &commit_req(empty, "", -1, &[("w", -1, 1)]))),
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        one(call(&mut k, 6, &commit_req(empty, "", -1, &[("w", 0, -1)]))),
        code(ResponseError::InvalidCommitOffsetSize)
    );
    let mut big = commit_req(empty, "", -1, &[("w", 0, 1)]);
    big.topics[0].partitions[0].committed_metadata = Some(s(&"x".repeat(4097)));
    assert_eq!(
        one(call(&mut k, 6, &big)),
        code(ResponseError::OffsetMetadataTooLarge)
    );
    assert_eq!(
        one(call(&mut k, 6, &commit_req(empty, "", -1, &[("w", 0, 3)]))),
        0
    );
    assert_eq!(
        one(call(&mut k, 6, &commit_req("v1", "", -1, &[("w", 0, 3)]))),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        one(call(
            &mut k,
            6,
            &commit_req("v1", "nobody", 1, &[("w", 0, 3)])
        )),
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        one(call(
            &mut k,
            6,
            &commit_req("v1", &joined.member_id, 7, &[("w", 0, 3)])
        )),
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        one(call(&mut k, 6, &commit_req("", "", -1, &[("w", 0, 3)]))),
        code(ResponseError::InvalidGroupId)
    );
    // What was refused left nothing behind; what was accepted is there.
    assert_eq!(fetch_offsets(&mut k, empty, "w", vec![0, 1]), [3, -1]);
    assert_eq!(
        fetch_offsets(&mut k, "v1", "w", vec![0, -5, i32::MAX]),
        [-1, -1, -1]
    );
    // OffsetFetch of every topic (null), and of a group nobody knows.
    let all: OffsetFetchResponse = call(
        &mut k,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(gid(empty))
            .with_topics(None),
    );
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].partitions[0].committed_offset, 3);
    let none: OffsetFetchResponse = call(
        &mut k,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(gid("never"))
            .with_topics(None),
    );
    assert_eq!((none.error_code, none.topics.len()), (0, 0));

    // DescribeGroups: unknown (Dead), invalid, and too many; ListGroups with a filter.
    let d: DescribeGroupsResponse = call(
        &mut k,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid("never"), gid(""), gid("v1")]),
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");
    assert_eq!(d.groups[1].error_code, code(ResponseError::InvalidGroupId));
    assert_eq!(d.groups[2].group_state.as_str(), "Stable");
    assert_eq!(d.groups[2].members.len(), 1);
    let many: Vec<GroupId> = (0..101).map(|i| gid(&format!("g{i}"))).collect();
    let d: DescribeGroupsResponse = call(
        &mut k,
        5,
        &DescribeGroupsRequest::default().with_groups(many),
    );
    assert!(
        d.groups
            .iter()
            .all(|g| g.error_code == code(ResponseError::InvalidRequest))
    );
    let l: ListGroupsResponse = call(
        &mut k,
        4,
        &ListGroupsRequest::default().with_states_filter(vec![s("CompletingRebalance")]),
    );
    let listed: Vec<&str> = l.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert_eq!(listed, ["v0"]);
    // Kafka Connect's workers form groups of their own protocol type, and are listed so.
    let workers: JoinGroupResponse = call(
        &mut k,
        0,
        &join_req("workers", "", 10_000).with_protocol_type(s("connect")),
    );
    assert_eq!(workers.error_code, 0);
    let l: ListGroupsResponse = call(&mut k, 4, &ListGroupsRequest::default());
    let types: Vec<(&str, &str)> = l
        .groups
        .iter()
        .map(|g| (g.group_id.0.as_str(), g.protocol_type.as_str()))
        .filter(|(g, _)| ["v0", "workers"].contains(g))
        .collect();
    assert_eq!(types, [("v0", "consumer"), ("workers", "connect")]);

    // DeleteGroups: a group with a live member, one nobody knows, an invalid id, an empty one
    // with offsets (gone with them), and too many at once.
    let del = |names: Vec<GroupId>| DeleteGroupsRequest::default().with_groups_names(names);
    let r: DeleteGroupsResponse = call(
        &mut k,
        2,
        &del(vec![gid("v1"), gid("never"), gid(""), gid(empty)]),
    );
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(
        codes,
        [
            code(ResponseError::NonEmptyGroup),
            code(ResponseError::GroupIdNotFound),
            code(ResponseError::InvalidGroupId),
            0
        ]
    );
    assert_eq!(fetch_offsets(&mut k, empty, "w", vec![0]), [-1]);
    let r: DeleteGroupsResponse = call(
        &mut k,
        2,
        &del((0..101).map(|i| gid(&format!("g{i}"))).collect()),
    );
    assert!(
        r.results
            .iter()
            .all(|x| x.error_code == code(ResponseError::InvalidRequest))
    );

    // DescribeConfigs: a topic, an unknown one, this broker, another broker, a logger.
    let res = |t: i8, n: &str| {
        kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(t)
            .with_resource_name(s(n))
            .with_configuration_keys(None)
    };
    let r: DescribeConfigsResponse = call(
        &mut k,
        4,
        &DescribeConfigsRequest::default().with_resources(vec![
            res(2, "w"),
            res(2, "nope"),
            res(2, ""),
            res(4, ""),
            res(4, "9999"),
            res(8, "x"),
        ]),
    );
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(
        codes,
        [
            0,
            code(ResponseError::UnknownTopicOrPartition),
            code(ResponseError::InvalidTopicException),
            0,
            code(ResponseError::InvalidRequest),
            code(ResponseError::InvalidRequest),
        ]
    );
    let retention = r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("604800000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_group_carries_on_through_a_kill_9_of_its_coordinator() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    if !python_has("confluent_kafka", "confluent-kafka") {
        return;
    }
    let (_guard, dir) = data_dir();
    let (mut agents, bootstrap) = kafka_cluster(&dir, 3, QUICK_GROUPS);
    assert_eq!(create(&mut connect(&agents[0].1), topic("survive", 6)).0, 0);
    all_led(&agents[0].1, "survive").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kafka_clients/group_consume.py"
    );
    let mut child = client("python3")
        .args([script, "--bootstrap", &bootstrap, "--topic", "survive"])
        .args([
            "--partitions",
            "6",
            "--records",
            "20000",
            "--group",
            "survivors",
        ])
        .arg("--hold")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("the script's output");
    assert_eq!(first, "holding", "the group did not form");
    // The agent FindCoordinator names for the group, as the consumers were told.
    let mut k = connect(&agents[0].1);
    let found: FindCoordinatorResponse = call(
        &mut k,
        3,
        &FindCoordinatorRequest::default().with_key(s("survivors")),
    );
    assert_eq!(found.error_code, 0);
    let coordinator = format!("{}:{}", found.host.as_str(), found.port);
    let victim = agents
        .iter_mut()
        .find(|(_, k)| *k == coordinator)
        .expect("the coordinator is one of ours");
    victim.0.take().unwrap().kill9();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .expect("tell the script to go on");
    let rest: Vec<String> = lines.map(|l| l.expect("the script's output")).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "the group did not carry on: {rest:?}");
    let last = rest.last().expect("the script's result");
    assert!(last.starts_with("ok 40000 [2, 2, 2] [3, 3]"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_cooperative_sticky_group_moves_only_what_it_must() {
    if !python_has("confluent_kafka", "confluent-kafka") {
        return;
    }
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = group_agent(&dir);
    assert_eq!(create(&mut connect(&kafka), topic("sticky", 6)).0, 0);
    all_led(&kafka, "sticky").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kafka_clients/group_consume.py"
    );
    let out = client("python3")
        .args([script, "--bootstrap", &kafka, "--topic", "sticky"])
        .args([
            "--partitions",
            "6",
            "--records",
            "3000",
            "--group",
            "sticky",
        ])
        .args(["--assignor", "cooperative-sticky"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the cooperative group failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Incremental rebalances through the classic protocol: 2/2/2, then 3/3.
    assert!(stdout.starts_with("ok 6000 [2, 2, 2] [3, 3]"), "{stdout}");
}
