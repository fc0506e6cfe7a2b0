//! The segment index: a flush commits its chunks (and its producers' sequences) in one
//! transaction fenced by lease epochs; reads find the chunks that hold an offset.

use super::*;

/// Partitions whose high watermarks one statement of a flush commit moves (4 parameters each).
const COMMIT_ROWS: usize = 250;

/// The UPDATE that moves the high watermarks of `n` partitions of one topic, each only where
/// `$2` holds it at the chunk's epoch and the log ends where the chunk begins. Parameters: `$1`
/// the topic, `$2` the agent, then per partition its id, lease epoch, old and new watermark.
///
/// The rows are named by an `IN` list on the primary key, which every planner answers with
/// index lookups, and each row's values are picked by `CASE`. The same update written as a join
/// with a `VALUES` list left PostgreSQL to choose the join; without fresh statistics (a table
/// never analysed) it rescanned the list once for every partition of the topic, 40-75 ms a
/// statement at 2,500 partitions a topic.
fn advance_watermarks_sql(n: usize) -> String {
    use std::fmt::Write;
    let param = |i: usize, field: usize| 3 + 4 * i + field;
    let case = |field: usize| {
        let mut c = String::from("CASE partition_id");
        for i in 0..n {
            let _ = write!(c, " WHEN ${} THEN ${}", param(i, 0), param(i, field));
        }
        c.push_str(" END");
        c
    };
    let ids = (0..n)
        .map(|i| format!("${}", param(i, 0)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE partitions SET high_watermark = {new_hw}
         WHERE topic = $1 AND partition_id IN ({ids}) AND leader_id = $2
           AND lease_epoch = {epoch} AND high_watermark = {old_hw}
         RETURNING partition_id",
        new_hw = case(3),
        epoch = case(1),
        old_hw = case(2),
    )
}

impl MetadataStore {
    /// Commits one flushed object in ONE transaction: for every chunk it checks the lease is
    /// still this agent's at the same epoch and the log ends where the chunk begins, advances
    /// the high watermark, and indexes the chunk. Any check failing rolls back everything and
    /// reports the partitions that failed as [`MetadataError::Fenced`].
    pub async fn commit_flush(&self, commit: &FlushCommit<'_>) -> Result<()> {
        self.bounded("commit_flush", async move {
            self.retry_busy(|| self.try_commit_flush(commit)).await
        })
        .await
    }

    pub(super) async fn try_commit_flush(&self, c: &FlushCommit<'_>) -> Result<()> {
        let now = self.dialect.now_ms();
        let mut tx = self.pool.begin().await?;
        // The high watermarks move in a few statements, whatever the number of partitions:
        // one UPDATE per run of a topic's partitions (chunks come in key order, one per
        // partition), each row only where this agent holds it at the chunk's epoch and the
        // watermark is where the chunk begins.
        let mut fenced = Vec::new();
        for run in c.chunks.chunk_by(|a, b| a.topic == b.topic) {
            for batch in run.chunks(COMMIT_ROWS) {
                let topic: &str = &batch[0].topic;
                if self.dialect == Dialect::Postgres {
                    // Row locks in key order, as lease rounds take them: no deadlock.
                    let ids = placeholders(2, batch.len());
                    let sql = format!(
                        "SELECT partition_id FROM partitions WHERE topic = $1
                         AND partition_id IN ({ids}) ORDER BY partition_id FOR UPDATE"
                    );
                    let mut q = sqlx::query(&sql).bind(topic);
                    for ch in batch {
                        q = q.bind(i64::from(ch.partition));
                    }
                    q.fetch_all(&mut *tx).await?;
                }
                let sql = advance_watermarks_sql(batch.len());
                let mut q = sqlx::query(&sql).bind(topic).bind(c.agent_id);
                for ch in batch {
                    q = q
                        .bind(i64::from(ch.partition))
                        .bind(ch.lease_epoch)
                        .bind(ch.base_offset)
                        .bind(ch.last_offset + 1);
                }
                let mut moved = std::collections::HashSet::with_capacity(batch.len());
                for r in q.fetch_all(&mut *tx).await? {
                    moved.insert(u32_col(&r, "partition_id")?);
                }
                fenced.extend(
                    batch
                        .iter()
                        .filter(|ch| !moved.contains(&ch.partition))
                        .map(|ch| (ch.topic.clone(), ch.partition)),
                );
            }
        }
        if !fenced.is_empty() {
            tx.rollback().await?;
            return Err(MetadataError::Fenced(fenced));
        }
        for batch in c.chunks.chunks(100) {
            const PER_ROW: usize = 8;
            let values = (0..batch.len())
                .map(|i| {
                    let p: Vec<String> = (0..PER_ROW)
                        .map(|k| format!("${}", i * PER_ROW + k + 2))
                        .collect();
                    format!(
                        "({}, {}, {}, {}, $1, {}, {}, {}, {}, {now})",
                        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO segments (topic, partition_id, base_offset, last_offset, object_key,
                    byte_start, byte_len, record_count, max_timestamp, created_at_ms) VALUES {values}"
            );
            let mut q = sqlx::query(&sql).bind(c.object_key);
            for ch in batch {
                q = q
                    .bind(&*ch.topic)
                    .bind(i64::from(ch.partition))
                    .bind(ch.base_offset)
                    .bind(ch.last_offset)
                    .bind(ch.byte_start as i64)
                    .bind(ch.byte_len as i64)
                    .bind(ch.record_count)
                    .bind(ch.max_timestamp);
            }
            q.execute(&mut *tx).await?;
        }
        let producers: Vec<(&ChunkCommit, &ProducerCommit)> = c
            .chunks
            .iter()
            .flat_map(|ch| ch.producers.iter().map(move |p| (ch, p)))
            .collect();
        for batch in producers.chunks(100) {
            const PER_ROW: usize = 7;
            let values = (0..batch.len())
                .map(|i| {
                    let p: Vec<String> = (0..PER_ROW)
                        .map(|k| format!("${}", i * PER_ROW + k + 1))
                        .collect();
                    format!("({}, {now})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO producer_state (producer_id, topic, partition_id, producer_epoch,
                    last_sequence, last_offset, recent, updated_at_ms) VALUES {values}
                 ON CONFLICT (producer_id, topic, partition_id) DO UPDATE SET
                    producer_epoch = excluded.producer_epoch,
                    last_sequence = excluded.last_sequence,
                    last_offset = excluded.last_offset,
                    recent = excluded.recent,
                    updated_at_ms = excluded.updated_at_ms"
            );
            let mut q = sqlx::query(&sql);
            for (ch, p) in batch {
                q = q
                    .bind(p.producer_id)
                    .bind(&*ch.topic)
                    .bind(i64::from(ch.partition))
                    .bind(i64::from(p.epoch))
                    .bind(i64::from(p.last_sequence))
                    .bind(p.last_offset)
                    .bind(p.recent.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        record_object(
            &mut tx,
            self.dialect,
            c.object_key,
            c.object_size,
            c.agent_id,
            c.deadline_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Index rows of a partition that hold offsets at or after `from_offset`, in order.
    pub async fn segments(
        &self,
        topic: &str,
        partition: u32,
        from_offset: i64,
        limit: i64,
    ) -> Result<Vec<SegmentRow>> {
        self.bounded("segments", async move {
            sqlx::query(
                "SELECT base_offset, last_offset, object_key, byte_start, byte_len, record_count,
                        max_timestamp, created_at_ms
                 FROM segments
                 WHERE topic = $1 AND partition_id = $2 AND last_offset >= $3
                 ORDER BY base_offset LIMIT $4",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .bind(from_offset)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(segment_row)
            .collect()
        })
        .await
    }

    /// The first offset of the first chunk of a partition holding a record stamped at or
    /// after `timestamp` (by the chunks' latest timestamps, as Kafka's time index), if any.
    pub async fn first_chunk_at(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<i64>> {
        self.bounded("first_chunk_at", async move {
            let row = sqlx::query(FIRST_CHUNK_AT)
                .bind(topic)
                .bind(i64::from(partition))
                .bind(timestamp)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get::<Option<i64>, _>("o")?)
        })
        .await
    }
}

/// The first offset of the first index row of a partition whose newest record is stamped at
/// or after a time (`$1` topic, `$2` partition, `$3` time; column `o`, NULL if none): Kafka's
/// time index, by chunk.
pub(super) const FIRST_CHUNK_AT: &str = "SELECT MIN(base_offset) AS o FROM segments
     WHERE topic = $1 AND partition_id = $2 AND max_timestamp >= $3";
