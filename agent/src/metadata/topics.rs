//! Topics and their partitions' rows: creating, deleting and listing them.

use super::leases::bump_lease_generation;
use super::*;

impl MetadataStore {
    /// Creates a topic and its partitions in one transaction.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<TopicRow> {
        self.bounded("create_topic", async move {
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(&format!(
                    "INSERT INTO topics (name, partition_count, retention_ms, retention_bytes, created_at_ms)
                     VALUES ($1, $2, $3, $4, {}) ON CONFLICT (name) DO NOTHING",
                    self.dialect.now_ms()
                ))
                .bind(name)
                .bind(i64::from(partitions))
                .bind(retention_ms)
                .bind(retention_bytes)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Err(MetadataError::TopicExists(name.to_string()));
                }
                // Leftovers of a deleted topic of the same name must not leak into the new one.
                for table in ["partitions", "segments", "producer_state", "committed_offsets"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE topic = $1"))
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
                for chunk in (0..partitions).collect::<Vec<_>>().chunks(KEYS_PER_STATEMENT) {
                    let values = (0..chunk.len())
                        .map(|i| format!("($1, ${})", i + 2))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql = format!("INSERT INTO partitions (topic, partition_id) VALUES {values}");
                    let mut q = sqlx::query(&sql).bind(name);
                    for p in chunk {
                        q = q.bind(i64::from(*p));
                    }
                    q.execute(&mut *tx).await?;
                }
                bump_lease_generation(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            self.append_event("topic_created", name, &format!("{partitions} partitions"))
                .await?;
            self.get_topic(name)
                .await?
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))
        })
        .await
    }

    /// Deletes a topic, its partitions, its index and its committed offsets. Its objects are
    /// left for garbage collection.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.bounded("delete_topic", async move {
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                let deleted = sqlx::query("DELETE FROM topics WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Err(MetadataError::UnknownTopic(name.to_string()));
                }
                for table in [
                    "partitions",
                    "segments",
                    "producer_state",
                    "committed_offsets",
                ] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE topic = $1"))
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
                bump_lease_generation(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            self.append_event("topic_deleted", name, "").await
        })
        .await
    }

    pub(super) fn topic_row(r: &AnyRow) -> Result<TopicRow> {
        Ok(TopicRow {
            name: r.try_get("name")?,
            partition_count: u32_col(r, "partition_count")?,
            retention_ms: r.try_get("retention_ms")?,
            retention_bytes: r.try_get("retention_bytes")?,
            created_at_ms: r.try_get("created_at_ms")?,
        })
    }

    /// The topic named `name`, if it exists.
    pub async fn get_topic(&self, name: &str) -> Result<Option<TopicRow>> {
        self.bounded("get_topic", async move {
            let row = sqlx::query(
                "SELECT name, partition_count, retention_ms, retention_bytes, created_at_ms
                 FROM topics WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(Self::topic_row).transpose()
        })
        .await
    }

    /// Every topic, by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicRow>> {
        self.bounded("list_topics", async move {
            sqlx::query(
                "SELECT name, partition_count, retention_ms, retention_bytes, created_at_ms
                 FROM topics ORDER BY name",
            )
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::topic_row)
            .collect()
        })
        .await
    }

    /// Partitions of one topic (or of all), with their live leader and its address.
    pub async fn list_partitions(&self, topic: Option<&str>) -> Result<Vec<PartitionRow>> {
        self.bounded("list_partitions", async move {
            let filter = if topic.is_some() {
                "WHERE p.topic = $1"
            } else {
                ""
            };
            let sql = self.partition_query(filter);
            let mut q = sqlx::query(&sql);
            if let Some(t) = topic {
                q = q.bind(t);
            }
            q.fetch_all(&self.pool)
                .await?
                .iter()
                .map(Self::partition_row)
                .collect()
        })
        .await
    }

    /// The partitions query, live leader and address included, with `filter` as its WHERE.
    fn partition_query(&self, filter: &str) -> String {
        format!(
            "SELECT p.topic, p.partition_id, p.lease_epoch, {expiry} AS lease_expires_ms,
                    p.log_start_offset, p.high_watermark,
                    CASE WHEN {expiry} > {now} THEN p.leader_id END AS leader_id,
                    CASE WHEN {expiry} > {now} THEN a.address END AS leader_address
             FROM partitions p LEFT JOIN agents a ON a.id = p.leader_id
             {filter}
             ORDER BY p.topic, p.partition_id",
            now = self.dialect.now_ms(),
            expiry = self.dialect.lease_expiry(),
        )
    }

    fn partition_row(r: &AnyRow) -> Result<PartitionRow> {
        Ok(PartitionRow {
            topic: r.try_get("topic")?,
            partition: u32_col(r, "partition_id")?,
            leader_id: r.try_get("leader_id")?,
            leader_address: r.try_get("leader_address")?,
            lease_epoch: r.try_get("lease_epoch")?,
            lease_expires_ms: r.try_get("lease_expires_ms")?,
            log_start_offset: r.try_get("log_start_offset")?,
            high_watermark: r.try_get("high_watermark")?,
        })
    }

    /// The log start and high watermark of the given partitions of `topic` (those it has),
    /// in one query per [`KEYS_PER_STATEMENT`].
    pub async fn partition_bounds(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<(u32, i64, i64)>> {
        self.bounded("partition_bounds", async move {
            let mut out = Vec::with_capacity(partitions.len());
            for chunk in partitions.chunks(KEYS_PER_STATEMENT) {
                let list = placeholders(2, chunk.len());
                let sql = format!(
                    "SELECT partition_id, log_start_offset, high_watermark FROM partitions
                     WHERE topic = $1 AND partition_id IN ({list})"
                );
                let mut q = sqlx::query(&sql).bind(topic);
                for p in chunk {
                    q = q.bind(i64::from(*p));
                }
                for r in q.fetch_all(&self.pool).await? {
                    out.push((
                        u32_col(&r, "partition_id")?,
                        r.try_get("log_start_offset")?,
                        r.try_get("high_watermark")?,
                    ));
                }
            }
            Ok(out)
        })
        .await
    }

    /// One partition's lease and offsets, if the topic has it: one row by primary key.
    pub async fn get_partition(&self, topic: &str, partition: u32) -> Result<Option<PartitionRow>> {
        self.bounded("get_partition", async move {
            let sql = self.partition_query("WHERE p.topic = $1 AND p.partition_id = $2");
            sqlx::query(&sql)
                .bind(topic)
                .bind(i64::from(partition))
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(Self::partition_row)
                .transpose()
        })
        .await
    }
}
