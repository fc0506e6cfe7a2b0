//! One task per assigned partition fetches ahead of `poll`: it follows the partition's
//! leader, backs off on transient errors, resets by `auto_offset_reset` when its offset falls
//! out of the log, and hands whole decoded batches to the consumer.

use super::*;

/// What a fetch task hands to `poll`.
#[derive(Debug)]
pub(super) enum Fetched {
    Records(Vec<ConsumerRecord>),
    Error(ClientError),
}

#[derive(Debug)]
pub(super) struct Assigned {
    /// The offset of the next record `poll` returns.
    pub(super) position: i64,
    pub(super) rx: mpsc::Receiver<Fetched>,
    pub(super) task: JoinHandle<()>,
}

pub(super) async fn fetch_loop(
    cluster: Arc<Cluster>,
    config: ConsumerBuilder,
    tp: TopicPartition,
    mut offset: i64,
    tx: mpsc::Sender<Fetched>,
) {
    let topic: Arc<str> = Arc::from(tp.topic.as_str());
    // At most half a second: after a failover the new leader is there as soon as the lease
    // has moved.
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    loop {
        match fetch_once(&cluster, &config, &tp, &topic, offset).await {
            Ok((records, next)) => {
                backoff.reset();
                offset = next;
                if !records.is_empty() && tx.send(Fetched::Records(records)).await.is_err() {
                    return;
                }
            }
            // An answer whose bounds hold the offset (an agent with a stale view of the
            // partition) is no reason to move: ask again.
            Err(ClientError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) if (log_start_offset..=high_watermark).contains(&offset) => {
                tracing::debug!(%tp, offset, log_start_offset, high_watermark,
                    "offset reported out of range yet inside the reported bounds; retrying");
                cluster.forget(&tp.topic);
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(ClientError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) => match config.auto_offset_reset {
                OffsetReset::Earliest => offset = log_start_offset,
                OffsetReset::Latest => offset = high_watermark,
                OffsetReset::None => {
                    let e = ClientError::OffsetOutOfRange {
                        offset,
                        log_start_offset,
                        high_watermark,
                    };
                    let _ = tx.send(Fetched::Error(e)).await;
                    return;
                }
            },
            Err(e) if e.is_retriable() => {
                tracing::debug!(%tp, error = %e, "fetch failed; retrying");
                cluster.forget(&tp.topic);
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                let _ = tx.send(Fetched::Error(e)).await;
                return;
            }
        }
    }
}

pub(super) async fn fetch_once(
    cluster: &Cluster,
    config: &ConsumerBuilder,
    tp: &TopicPartition,
    topic: &Arc<str>,
    offset: i64,
) -> Result<(Vec<ConsumerRecord>, i64)> {
    // The leader has the freshest high watermark; any agent can serve reads.
    let conn = cluster.leader(&tp.topic, tp.partition).await?;
    let mut client = conn.client.clone();
    let req = pb::FetchRequest {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
        max_bytes: config.max_partition_fetch_bytes as u32,
        max_wait_ms: config.fetch_max_wait.as_millis() as u32,
        min_bytes: 1,
    };
    let resp = match tokio::time::timeout(config.request_timeout, client.fetch(req)).await {
        Err(_) => return Err(ClientError::Unreachable("fetch timed out".into())),
        Ok(Err(status)) => return Err(ClientError::from_status(&status)),
        Ok(Ok(r)) => r.into_inner(),
    };
    if let Some(e) = resp.error.as_ref().filter(|e| {
        e.code == pb::ErrorCode::CorruptBatch as i32 && e.next_offset > e.damaged_offset
    }) {
        // Stored data the agent could not even frame: skip it as a whole.
        return Err(ClientError::DamagedBatch {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: e.damaged_offset,
            next_offset: e.next_offset,
            reason: e.message.clone(),
        });
    }
    if let Some(mut e) = ClientError::from_pb(resp.error.as_ref()) {
        if let ClientError::OffsetOutOfRange { offset: o, .. } = &mut e {
            *o = offset;
        }
        return Err(e);
    }
    if resp.base_offsets.len() != resp.batches.len() {
        return Err(ClientError::CorruptBatch(
            "fetch response has a base offset count unlike its batch count".into(),
        ));
    }
    let mut records = Vec::new();
    let mut next = offset;
    for (bytes, base) in resp.batches.into_iter().zip(resp.base_offsets) {
        let decoded = Batch::parse(bytes.clone()).and_then(|b| b.records(base));
        let batch_records = match decoded {
            Ok(r) => r,
            // What came before the damaged batch is delivered; the next fetch starts at it
            // and reports it.
            Err(_) if !records.is_empty() => return Ok((records, base)),
            Err(e) => {
                let count = BatchHeader::peek(&bytes).map_or(1, |h| i64::from(h.record_count));
                return Err(ClientError::DamagedBatch {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: base,
                    next_offset: base.saturating_add(count).max(offset + 1),
                    reason: e.to_string(),
                });
            }
        };
        for r in batch_records {
            if r.offset < offset {
                continue;
            }
            next = r.offset + 1;
            records.push(ConsumerRecord {
                topic: topic.clone(),
                partition: tp.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
    }
    Ok((records, next))
}
