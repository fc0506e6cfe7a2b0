//! Helpers for scenarios that break a cluster on purpose and check what it kept: the
//! console's `--demo failover` and the demos' failover scenario share them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhouse_client::{Admin, Consumer, OffsetReset, TopicPartition};

/// Waits until each partition in `affected` of `topic` has a leader other than `victim`;
/// returns (partition, new leader, lease epoch) for each, and the time since `since`.
pub async fn new_leaders(
    admin: &Admin,
    topic: &str,
    victim: &str,
    affected: &[u32],
    since: Instant,
) -> anyhow::Result<(Vec<(u32, String, i64)>, Duration)> {
    let deadline = since + Duration::from_secs(60);
    loop {
        if let Ok(t) = admin.describe_topic(topic).await {
            let moved: Vec<(u32, String, i64)> = affected
                .iter()
                .filter_map(|&p| {
                    let d = t.partitions.get(p as usize)?;
                    d.leader_id
                        .as_ref()
                        .filter(|l| *l != victim)
                        .map(|l| (p, l.clone(), d.lease_epoch))
                })
                .collect();
            if moved.len() == affected.len() {
                return Ok((moved, since.elapsed()));
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no new leaders for {affected:?} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads every partition of `topic` from its log start to its high watermark at the call:
/// (partition, offset) -> value.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<HashMap<(u32, i64), Option<Bytes>>> {
    let admin = Admin::connect(bootstrap).await?;
    let t = admin.describe_topic(topic).await?;
    let total: i64 = t
        .partitions
        .iter()
        .map(|p| p.high_watermark - p.log_start_offset)
        .sum();
    let mut consumer = Consumer::builder()
        .bootstrap(bootstrap)
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(10_000)
        .build()
        .await?;
    consumer
        .assign(
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(topic, p.partition))
                .collect(),
        )
        .await?;
    let mut log = HashMap::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(300);
    while (log.len() as i64) < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "could not read {topic} back in 300 s"
        );
        for r in consumer.poll(Duration::from_millis(500)).await? {
            log.insert((r.partition, r.offset), r.value);
        }
    }
    consumer.close().await?;
    Ok(log)
}
