//! Seeking a tail to a time: the binary search over offsets against a real agent, with
//! records stamped at known times.

use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::{Admin, Consumer, NewTopic, Producer, TopicPartition};
use streamhouse_tui::workers::offset_for_time;

#[test]
fn offset_for_time_finds_the_first_record_at_or_after_the_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = EmbeddedAgent::start(
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse"),
        2,
    )
    .expect("agent starts");
    let addr = agent.addr().to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let admin = Admin::connect(&addr).await.expect("admin");
        admin
            .create_topic(NewTopic::new("times", 1))
            .await
            .expect("topic");
        let producer = Producer::builder()
            .bootstrap(&addr)
            .build()
            .await
            .expect("producer");
        // Offsets 0..100 stamped 1,000 ms apart from t0 (an hour ago: within the agent's
        // timestamp bounds), sent in a few batches.
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64
            - 3_600_000;
        for i in 0..100i64 {
            producer
                .send_record(
                    "times",
                    Some(0),
                    None,
                    Some(b"v"),
                    &[],
                    Some(t0 + i * 1_000),
                )
                .await
                .expect("send");
            if i % 30 == 29 {
                producer.flush().await.expect("flush");
            }
        }
        producer.close().await.expect("close");
        let tp = TopicPartition::new("times", 0);
        for (ts, want) in [
            (t0 - 5_000, 0),
            (t0, 0),
            (t0 + 1, 1),
            (t0 + 41_000, 41),
            (t0 + 41_500, 42),
            (t0 + 99_000, 99),
            (t0 + 99_001, 100),
        ] {
            assert_eq!(
                offset_for_time(Consumer::builder().bootstrap(&addr), &tp, ts)
                    .await
                    .expect("search"),
                want,
                "first offset at or after t0 + {} ms",
                ts - t0
            );
        }
    });
    agent.stop().expect("agent stops");
}
