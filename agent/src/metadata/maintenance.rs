//! What keeps the store bounded: topic configs, retention (advance a partition's log start and
//! drop the index rows below it), compaction's index swap, and the bookkeeping of garbage
//! collection. Every change to a partition's index is fenced by the lease epoch of the agent
//! making it, exactly as a flush commit is.

use std::collections::HashSet;

use sqlx::Row;

use super::{MetadataError, MetadataStore, Result, SegmentRow, TopicRow, segment_row};

/// A topic's settings as an alter request gives them: `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicConfigChange {
    /// Milliseconds a record is kept; -1 forever.
    pub retention_ms: Option<i64>,
    /// Bytes a partition keeps; -1 unlimited.
    pub retention_bytes: Option<i64>,
}

/// A partition's index as the leader's maintenance sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionUsage {
    /// Index rows.
    pub rows: i64,
    /// Bytes those rows cover.
    pub bytes: i64,
}

/// One compaction: the index rows `[first_base, last_offset]` (exactly `replaced_rows` of
/// them) are replaced by `rows`, which all point into the new object `object_key`.
#[derive(Debug, Clone)]
pub struct SegmentSwap<'a> {
    /// The agent that wrote the new object.
    pub agent_id: &'a str,
    /// The partition's topic.
    pub topic: &'a str,
    /// Its number.
    pub partition: u32,
    /// The lease epoch the compaction ran under; the swap fails if it changed.
    pub lease_epoch: i64,
    /// The first offset of the rows replaced.
    pub first_base: i64,
    /// The last offset of the rows replaced.
    pub last_offset: i64,
    /// How many rows are replaced; the swap fails if the index has another count.
    pub replaced_rows: u64,
    /// The new object.
    pub object_key: &'a str,
    /// Its size in bytes.
    pub object_size: u64,
    /// The rows that replace them, all in the new object.
    pub rows: &'a [SegmentRow],
    /// Refused once the store's clock passes this (ms since the epoch), as a flush is: see
    /// [`super::FlushCommit::deadline_ms`].
    pub deadline_ms: Option<i64>,
}

/// An object the metadata store knows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size_bytes: i64,
    /// When garbage collection first found no index row pointing at it; -1 while referenced.
    pub unreferenced_since_ms: i64,
}

/// `$first, $first+1, ...`: `n` bind parameters for an `IN (...)` list.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl MetadataStore {
    /// Changes a topic's retention settings and returns the topic as it now is.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        change: TopicConfigChange,
    ) -> Result<TopicRow> {
        self.bounded("alter_topic_config", async move {
            self.retry_busy(|| async {
                let done = sqlx::query(
                    "UPDATE topics SET
                        retention_ms = COALESCE($2, retention_ms),
                        retention_bytes = COALESCE($3, retention_bytes)
                     WHERE name = $1",
                )
                .bind(name)
                .bind(change.retention_ms)
                .bind(change.retention_bytes)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(MetadataError::UnknownTopic(name.to_string()));
                }
                Ok(())
            })
            .await?;
            let row = self
                .get_topic(name)
                .await?
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
            self.append_event(
                "topic_altered",
                name,
                &format!(
                    "retention_ms {} retention_bytes {}",
                    row.retention_ms, row.retention_bytes
                ),
            )
            .await?;
            Ok(row)
        })
        .await
    }

    /// How many index rows and bytes a partition holds.
    pub async fn partition_usage(&self, topic: &str, partition: u32) -> Result<PartitionUsage> {
        self.bounded("partition_usage", async move {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(byte_len), 0) AS BIGINT) AS bytes
                 FROM segments WHERE topic = $1 AND partition_id = $2",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_one(&self.pool)
            .await?;
            Ok(PartitionUsage {
                rows: row.try_get("n")?,
                bytes: row.try_get("bytes")?,
            })
        })
        .await
    }

    /// Index rows of a partition that still point into shared flush objects (not yet
    /// compacted), in offset order, at most `limit`.
    pub async fn uncompacted_segments(
        &self,
        topic: &str,
        partition: u32,
        segment_prefix: &str,
        limit: i64,
    ) -> Result<Vec<SegmentRow>> {
        self.bounded("uncompacted_segments", async move {
            sqlx::query(
                "SELECT base_offset, last_offset, object_key, byte_start, byte_len, record_count,
                        max_timestamp, created_at_ms
                 FROM segments
                 WHERE topic = $1 AND partition_id = $2 AND object_key NOT LIKE $3
                 ORDER BY base_offset LIMIT $4",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .bind(format!("{segment_prefix}%"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(segment_row)
            .collect()
        })
        .await
    }

    /// Index rows of a partition's segment objects smaller than `below` bytes, in offset
    /// order, at most `limit`: what tiered merging works on.
    pub async fn small_segments(
        &self,
        topic: &str,
        partition: u32,
        segment_prefix: &str,
        below: u64,
        limit: i64,
    ) -> Result<Vec<SegmentRow>> {
        self.bounded("small_segments", async move {
            sqlx::query(
                "SELECT s.base_offset, s.last_offset, s.object_key, s.byte_start, s.byte_len,
                        s.record_count, s.max_timestamp, s.created_at_ms
                 FROM segments s JOIN objects o ON o.object_key = s.object_key
                 WHERE s.topic = $1 AND s.partition_id = $2 AND s.object_key LIKE $3
                   AND o.size_bytes < $4
                 ORDER BY s.base_offset LIMIT $5",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .bind(format!("{segment_prefix}%"))
            .bind(below as i64)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(segment_row)
            .collect()
        })
        .await
    }

    /// Retention: moves the partition's log start to `new_log_start` and drops the index rows
    /// wholly below it, in one transaction that holds only while `agent_id` leads at
    /// `lease_epoch`. Returns the rows dropped.
    pub async fn advance_log_start(
        &self,
        agent_id: &str,
        topic: &str,
        partition: u32,
        lease_epoch: i64,
        new_log_start: i64,
    ) -> Result<u64> {
        self.bounded("advance_log_start", async move {
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                let moved = sqlx::query(
                    "UPDATE partitions SET log_start_offset = $1
                     WHERE topic = $2 AND partition_id = $3 AND leader_id = $4 AND lease_epoch = $5
                       AND log_start_offset <= $1 AND high_watermark >= $1",
                )
                .bind(new_log_start)
                .bind(topic)
                .bind(i64::from(partition))
                .bind(agent_id)
                .bind(lease_epoch)
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Err(MetadataError::Fenced(vec![(topic.into(), partition)]));
                }
                let dropped = sqlx::query(
                    "DELETE FROM segments WHERE topic = $1 AND partition_id = $2 AND last_offset < $3",
                )
                .bind(topic)
                .bind(i64::from(partition))
                .bind(new_log_start)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(dropped.rows_affected())
            })
            .await
        })
        .await
    }

    /// Compaction's swap, in one transaction: the lease must still be `agent_id`'s at
    /// `lease_epoch` and every replaced row must still be there (retention by a later leader
    /// may have dropped some). Otherwise nothing changes and the error says which check failed.
    pub async fn swap_segments(&self, s: &SegmentSwap<'_>) -> Result<()> {
        self.bounded("swap_segments", async move {
            let now = self.dialect.now_ms();
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                // Touching the row also takes its lock on PostgreSQL, so a flush commit of the
                // same partition waits for the swap rather than interleaving with it.
                let held = sqlx::query(
                    "UPDATE partitions SET lease_epoch = lease_epoch
                     WHERE topic = $1 AND partition_id = $2 AND leader_id = $3 AND lease_epoch = $4",
                )
                .bind(s.topic)
                .bind(i64::from(s.partition))
                .bind(s.agent_id)
                .bind(s.lease_epoch)
                .execute(&mut *tx)
                .await?;
                if held.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Err(MetadataError::Fenced(vec![(s.topic.into(), s.partition)]));
                }
                let removed = sqlx::query(
                    "DELETE FROM segments WHERE topic = $1 AND partition_id = $2
                       AND base_offset >= $3 AND last_offset <= $4",
                )
                .bind(s.topic)
                .bind(i64::from(s.partition))
                .bind(s.first_base)
                .bind(s.last_offset)
                .execute(&mut *tx)
                .await?;
                if removed.rows_affected() != s.replaced_rows {
                    tx.rollback().await?;
                    return Err(MetadataError::IndexChanged {
                        topic: s.topic.to_string(),
                        partition: s.partition,
                    });
                }
                for row in s.rows {
                    sqlx::query(&format!(
                        "INSERT INTO segments (topic, partition_id, base_offset, last_offset,
                            object_key, byte_start, byte_len, record_count, max_timestamp,
                            created_at_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {now})"
                    ))
                    .bind(s.topic)
                    .bind(i64::from(s.partition))
                    .bind(row.base_offset)
                    .bind(row.last_offset)
                    .bind(s.object_key)
                    .bind(row.byte_start as i64)
                    .bind(row.byte_len as i64)
                    .bind(row.record_count)
                    .bind(row.max_timestamp)
                    .execute(&mut *tx)
                    .await?;
                }
                super::record_object(
                    &mut tx,
                    self.dialect,
                    s.object_key,
                    s.object_size,
                    s.agent_id,
                    s.deadline_ms,
                )
                .await?;
                tx.commit().await?;
                Ok(())
            })
            .await
        })
        .await
    }

    // ---- garbage collection -------------------------------------------------------------

    /// Every object the store has a row for.
    pub async fn object_records(&self) -> Result<Vec<ObjectRecord>> {
        self.bounded("object_records", async move {
            sqlx::query("SELECT object_key, size_bytes, unreferenced_since_ms FROM objects")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(ObjectRecord {
                        key: r.try_get("object_key")?,
                        size_bytes: r.try_get("size_bytes")?,
                        unreferenced_since_ms: r.try_get("unreferenced_since_ms")?,
                    })
                })
                .collect()
        })
        .await
    }

    /// The known objects no index row points at (one probe of the `segments_by_object` index
    /// per object, rather than a scan of the whole index).
    pub async fn unreferenced_objects(&self) -> Result<HashSet<String>> {
        self.bounded("unreferenced_objects", async move {
            sqlx::query(
                "SELECT o.object_key FROM objects o
                 WHERE NOT EXISTS (SELECT 1 FROM segments s WHERE s.object_key = o.object_key)",
            )
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get("object_key")?))
            .collect()
        })
        .await
    }

    /// Records that `keys` were found unreferenced now (by the store's clock), unless an
    /// index row points at them again by now. Returns the store's time of the marking.
    pub async fn mark_unreferenced(&self, keys: &[String]) -> Result<i64> {
        self.bounded("mark_unreferenced", async move {
            let now = self.now_ms().await?;
            for chunk in keys.chunks(200) {
                self.retry_busy(|| async {
                    let list = placeholders(2, chunk.len());
                    let sql = format!(
                        "UPDATE objects SET unreferenced_since_ms = $1
                         WHERE unreferenced_since_ms < 0 AND object_key IN ({list})
                           AND NOT EXISTS (SELECT 1 FROM segments s
                                           WHERE s.object_key = objects.object_key)"
                    );
                    let mut q = sqlx::query(&sql).bind(now);
                    for k in chunk {
                        q = q.bind(k.as_str());
                    }
                    q.execute(&self.pool).await?;
                    Ok(())
                })
                .await?;
            }
            Ok(now)
        })
        .await
    }

    /// Forgets the rows of objects about to be deleted, but only those that are still
    /// unreferenced and were marked at or before `marked_before_ms`. Returns the keys whose
    /// rows went, which alone may now be deleted from the object store.
    pub async fn forget_objects(
        &self,
        keys: &[String],
        marked_before_ms: i64,
    ) -> Result<Vec<String>> {
        self.bounded("forget_objects", async move {
            let mut gone = Vec::new();
            for chunk in keys.chunks(200) {
                let rows = self
                    .retry_busy(|| async {
                        let list = placeholders(2, chunk.len());
                        let sql = format!(
                            "DELETE FROM objects
                             WHERE unreferenced_since_ms >= 0 AND unreferenced_since_ms <= $1
                               AND object_key IN ({list})
                               AND NOT EXISTS (SELECT 1 FROM segments s
                                               WHERE s.object_key = objects.object_key)
                             RETURNING object_key"
                        );
                        let mut q = sqlx::query(&sql).bind(marked_before_ms);
                        for k in chunk {
                            q = q.bind(k.as_str());
                        }
                        Ok(q.fetch_all(&self.pool).await?)
                    })
                    .await?;
                for r in rows {
                    gone.push(r.try_get("object_key")?);
                }
            }
            Ok(gone)
        })
        .await
    }

    /// Counts the index rows of every partition (for the soak test and the metrics).
    pub async fn segment_row_count(&self) -> Result<i64> {
        self.bounded("segment_row_count", async move {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM segments")
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get("n")?)
        })
        .await
    }

    /// Forgets what idles: idempotent producers' per-partition state not updated within
    /// `producer_idle_ms`, then producer ids with no state left that were issued (or last
    /// bumped) before it; and consumer groups with no live member whose last change and last
    /// commit are older than `group_idle_ms`, with their offsets (Kafka's
    /// `producer.id.expiration.ms` and `offsets.retention.minutes`). Returns (producer
    /// states, producer ids, groups) removed.
    pub async fn expire_idle(
        &self,
        producer_idle_ms: i64,
        group_idle_ms: i64,
    ) -> Result<(u64, u64, u64)> {
        self.bounded("expire_idle", async move {
            let now = self.dialect.now_ms();
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                let states = sqlx::query(&format!(
                    "DELETE FROM producer_state WHERE updated_at_ms < {now} - $1"
                ))
                .bind(producer_idle_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let ids = sqlx::query(&format!(
                    "DELETE FROM producer_ids WHERE created_at_ms < {now} - $1
                       AND NOT EXISTS (SELECT 1 FROM producer_state s
                                       WHERE s.producer_id = producer_ids.id)"
                ))
                .bind(producer_idle_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let idle: Vec<String> = sqlx::query(&format!(
                    "SELECT g.group_id FROM consumer_groups g
                     WHERE g.updated_at_ms < {now} - $1
                       AND NOT EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = g.group_id
                                       AND m.last_heartbeat_ms + m.session_timeout_ms > {now})
                       AND NOT EXISTS (SELECT 1 FROM committed_offsets o WHERE o.group_id = g.group_id
                                       AND o.committed_at_ms >= {now} - $1)
                     LIMIT 1000"
                ))
                .bind(group_idle_ms)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("group_id"))
                .collect::<std::result::Result<_, _>>()?;
                for table in ["group_members", "committed_offsets", "consumer_groups"] {
                    for chunk in idle.chunks(200) {
                        let list = placeholders(1, chunk.len());
                        let sql = format!("DELETE FROM {table} WHERE group_id IN ({list})");
                        let mut q = sqlx::query(&sql);
                        for g in chunk {
                            q = q.bind(g.as_str());
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok((states, ids, idle.len() as u64))
            })
            .await
        })
        .await
    }
}
