//! Idempotent producers: issuing ids and epochs, and the per-partition sequence state that
//! de-duplicates retried batches.

use super::*;

impl MetadataStore {
    /// A new producer id at epoch 0, or, given an id and its current epoch, the next epoch.
    /// An epoch that is not the current one is refused: another instance bumped it.
    pub async fn init_producer_id(&self, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
        self.bounded("init_producer_id", async move {
            let now = self.dialect.now_ms();
            self.retry_busy(|| async {
                match current {
                    None => {
                        let row = sqlx::query(&format!(
                            "INSERT INTO producer_ids (created_at_ms, epoch) VALUES ({now}, 0) RETURNING id"
                        ))
                        .fetch_one(&self.pool)
                        .await?;
                        Ok((row.try_get("id")?, 0))
                    }
                    Some((id, epoch)) => {
                        // `created_at_ms` is when the current epoch was issued: an id is
                        // expired only when idle since.
                        let row = sqlx::query(&format!(
                            "UPDATE producer_ids SET epoch = epoch + 1, created_at_ms = {now}
                             WHERE id = $1 AND epoch = $2 AND epoch < 32767 RETURNING epoch"
                        ))
                        .bind(id)
                        .bind(i64::from(epoch))
                        .fetch_optional(&self.pool)
                        .await?;
                        match row {
                            Some(r) => {
                                let e: i64 = r.try_get("epoch")?;
                                Ok((id, e as i16))
                            }
                            None => Err(MetadataError::ProducerFenced { id, epoch }),
                        }
                    }
                }
            })
            .await
        })
        .await
    }

    /// The latest epoch issued to producer `id`, or `None` if the cluster never issued it.
    pub async fn issued_producer_epoch(&self, id: i64) -> Result<Option<i16>> {
        self.bounded("issued_producer_epoch", async move {
            let row = sqlx::query("SELECT epoch FROM producer_ids WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let epoch: i64 = r.try_get("epoch")?;
                    Ok(Some(i16::try_from(epoch).unwrap_or(i16::MAX)))
                }
            }
        })
        .await
    }

    /// What one partition remembers of its idempotent producers active within `max_age_ms`.
    pub async fn producer_states(
        &self,
        topic: &str,
        partition: u32,
        max_age_ms: i64,
    ) -> Result<Vec<(i64, crate::sequence::ProducerEntry)>> {
        Ok(self
            .producer_states_of(topic, &[partition], max_age_ms)
            .await?
            .remove(&partition)
            .unwrap_or_default())
    }

    /// What each of `partitions` of `topic` remembers of its idempotent producers active
    /// within `max_age_ms` (partitions with none are left out), in one query per
    /// [`KEYS_PER_STATEMENT`] partitions: an agent taking over thousands of leases reads
    /// them in a few round trips.
    pub async fn producer_states_of(
        &self,
        topic: &str,
        partitions: &[u32],
        max_age_ms: i64,
    ) -> Result<HashMap<u32, Vec<(i64, crate::sequence::ProducerEntry)>>> {
        self.bounded("producer_states", async move {
            let mut out: HashMap<u32, Vec<_>> = HashMap::new();
            for chunk in partitions.chunks(KEYS_PER_STATEMENT) {
                let ids = placeholders(3, chunk.len());
                let sql = format!(
                    "SELECT partition_id, producer_id, producer_epoch, recent FROM producer_state
                     WHERE topic = $1 AND updated_at_ms > {} - $2 AND partition_id IN ({ids})",
                    self.dialect.now_ms()
                );
                let mut q = sqlx::query(&sql).bind(topic).bind(max_age_ms);
                for p in chunk {
                    q = q.bind(i64::from(*p));
                }
                for r in &q.fetch_all(&self.pool).await? {
                    let partition = u32_col(r, "partition_id")?;
                    let id: i64 = r.try_get("producer_id")?;
                    let epoch: i64 = r.try_get("producer_epoch")?;
                    let recent: String = r.try_get("recent")?;
                    match crate::sequence::ProducerEntry::decode(epoch as i16, &recent) {
                        Some(e) => out.entry(partition).or_default().push((id, e)),
                        None => tracing::warn!(topic, partition, producer_id = id, %recent,
                            "unreadable producer state; that producer's next batch must start a new epoch"),
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
