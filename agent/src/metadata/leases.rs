//! Partition leases: acquiring free or expired ones, renewing, and releasing. Each change
//! bumps the partition's epoch, which fences writes from an earlier holder.

use super::*;

impl MetadataStore {
    /// Takes each of `candidates` whose lease is free, expired, or held by an agent marked
    /// lost. A live lease is never taken, not even one `agent_id` holds already (that would
    /// fence its own flush in flight).
    /// Taking increments the epoch, so whatever a previous holder (even an earlier run of this
    /// agent) still has in flight is fenced.
    pub async fn acquire_leases(
        &self,
        agent_id: &str,
        ttl_ms: i64,
        candidates: &[(String, u32)],
    ) -> Result<Vec<Lease>> {
        // In key order, as every statement that updates several partitions takes them.
        let mut candidates: Vec<&(String, u32)> = candidates.iter().collect();
        candidates.sort_unstable();
        candidates.dedup();
        self.bounded("acquire_leases", async move {
            let now = self.dialect.now_ms();
            // PostgreSQL locks the rows in key order before updating them (an UPDATE of many
            // rows takes its locks in no stated order); SQLite has one writer anyway.
            let lock = match self.dialect {
                Dialect::Postgres => " FOR UPDATE",
                Dialect::Sqlite => "",
            };
            let taken = self
                .retry_busy(|| async {
                    let mut tx = self.pool.begin().await?;
                    let mut taken = Vec::new();
                    for run in candidates.chunk_by(|a, b| a.0 == b.0) {
                        let topic = run[0].0.as_str();
                        for chunk in run.chunks(KEYS_PER_STATEMENT) {
                            let ids = |first| placeholders(first, chunk.len());
                            // Who had each, for the events: nobody, or a holder whose lease
                            // ran out.
                            let sql = format!(
                                "SELECT partition_id, leader_id FROM partitions
                                 WHERE topic = $1 AND partition_id IN ({})
                                 ORDER BY partition_id{lock}",
                                ids(2)
                            );
                            let mut q = sqlx::query(&sql).bind(topic);
                            for (_, p) in chunk {
                                q = q.bind(i64::from(*p));
                            }
                            let mut before = HashMap::with_capacity(chunk.len());
                            for r in q.fetch_all(&mut *tx).await? {
                                let leader: Option<String> = r.try_get("leader_id")?;
                                before.insert(u32_col(&r, "partition_id")?, leader);
                            }
                            let sql = format!(
                                "UPDATE partitions
                                 SET leader_id = $1, lease_epoch = lease_epoch + 1,
                                     lease_expires_ms = {now} + $2
                                 WHERE topic = $3 AND partition_id IN ({})
                                   AND (leader_id IS NULL
                                        OR leader_id IN (SELECT id FROM agents WHERE lost = 1)
                                        OR (lease_expires_ms <= {now} AND NOT EXISTS
                                              (SELECT 1 FROM agents a
                                               WHERE a.id = partitions.leader_id
                                                 AND a.lease_expires_ms > {now})))
                                 RETURNING partition_id, lease_epoch, log_start_offset,
                                           high_watermark",
                                ids(4)
                            );
                            let mut q = sqlx::query(&sql).bind(agent_id).bind(ttl_ms).bind(topic);
                            for (_, p) in chunk {
                                q = q.bind(i64::from(*p));
                            }
                            for r in q.fetch_all(&mut *tx).await? {
                                let partition = u32_col(&r, "partition_id")?;
                                let lease = Lease {
                                    topic: topic.to_string(),
                                    partition,
                                    epoch: r.try_get("lease_epoch")?,
                                    log_start_offset: r.try_get("log_start_offset")?,
                                    high_watermark: r.try_get("high_watermark")?,
                                };
                                taken.push((lease, before.remove(&partition).flatten()));
                            }
                        }
                    }
                    if !taken.is_empty() {
                        bump_lease_generation(&mut tx).await?;
                    }
                    tx.commit().await?;
                    taken.sort_unstable_by(|a, b| {
                        (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition))
                    });
                    Ok(taken)
                })
                .await?;
            let events: Vec<(&str, String, String)> = taken
                .iter()
                .map(|(l, before)| {
                    let subject = format!("{}-{}", l.topic, l.partition);
                    match before {
                        Some(prev) => (
                            "lease_taken",
                            subject,
                            format!(
                                "agent {agent_id} epoch {} (from {prev}: lease expired or holder lost)",
                                l.epoch
                            ),
                        ),
                        None => (
                            "lease_acquired",
                            subject,
                            format!("agent {agent_id} epoch {}", l.epoch),
                        ),
                    }
                })
                .collect();
            self.append_events(&events).await?;
            Ok(taken.into_iter().map(|(l, _)| l).collect())
        })
        .await
    }

    /// Every partition's live holder and lease expiry, in key order, with the store's clock:
    /// what a lease round plans from, and no more (it runs every heartbeat on every agent). A
    /// lease held by an agent marked lost (its session ended) is free, however long it had to
    /// run.
    ///
    /// The agents (a handful of rows) are read first, with the clock and the lease generation;
    /// the partitions' rows only when the generation moved since this store last read them
    /// (every change of which partitions exist or who holds them raises it, in the same
    /// transaction), since with thousands of partitions that read is most of an idle round.
    /// Each lease's expiry is worked out here from the rows and the agents' renewals. Rows
    /// read after the generation are at least as new as it, so a cache is never older than
    /// the generation it is kept under. A lease renewed between the two reads looks at worst
    /// shorter; one whose holder was marked lost between them looks live for one more round.
    pub async fn lease_holders(&self) -> Result<LeaseHolders> {
        self.bounded("lease_holders", async move {
            let mut now_ms = 0;
            let mut generation = -1;
            // By agent: `None` when marked lost, else until when its renewal runs.
            let mut renewed: HashMap<String, Option<i64>> = HashMap::new();
            for r in sqlx::query(&format!(
                "SELECT n.now_ms, g.generation, a.id, a.lost, a.lease_expires_ms
                 FROM (SELECT {} AS now_ms) n
                 JOIN lease_generation g ON g.id = 1
                 LEFT JOIN agents a ON 1 = 1",
                self.dialect.now_ms()
            ))
            .fetch_all(&self.pool)
            .await?
            {
                now_ms = r.try_get("now_ms")?;
                generation = r.try_get("generation")?;
                if let Some(id) = r.try_get::<Option<String>, _>("id")? {
                    let lost: i64 = r.try_get("lost")?;
                    let until: i64 = r.try_get("lease_expires_ms")?;
                    renewed.insert(id, (lost == 0).then_some(until));
                }
            }
            let cached = self
                .lease_rows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, rows)| rows.clone());
            let rows = match cached {
                Some(rows) => rows,
                None => {
                    let rows = Arc::new(self.holder_rows().await?);
                    *self.lease_rows.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((generation, rows.clone()));
                    rows
                }
            };
            let partitions = rows
                .iter()
                .map(|r| {
                    let expires = match r.leader.as_ref().map(|l| renewed.get(l)) {
                        Some(Some(None)) => 0,
                        Some(Some(Some(until))) => r.taken_until.max(*until),
                        Some(None) | None => r.taken_until,
                    };
                    LeaseHolder {
                        topic: r.topic.clone(),
                        partition: r.partition,
                        leader_id: r.leader.clone().filter(|_| expires > now_ms),
                        lease_expires_ms: expires,
                    }
                })
                .collect();
            Ok(LeaseHolders { now_ms, partitions })
        })
        .await
    }

    /// Every partition's holder and the expiry its lease was taken with, in key order.
    async fn holder_rows(&self) -> Result<Vec<HolderRow>> {
        sqlx::query(
            "SELECT topic, partition_id, leader_id, lease_expires_ms FROM partitions
             ORDER BY topic, partition_id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(HolderRow {
                topic: r.try_get("topic")?,
                partition: u32_col(r, "partition_id")?,
                leader: r.try_get("leader_id")?,
                taken_until: r.try_get("lease_expires_ms")?,
            })
        })
        .collect()
    }

    /// Gives up one lease, if `agent_id` still holds it at `epoch`, so its wanted owner can
    /// take it at once. False if it was no longer ours.
    pub async fn release_lease(
        &self,
        agent_id: &str,
        topic: &str,
        partition: u32,
        epoch: i64,
        why: &str,
    ) -> Result<bool> {
        self.bounded("release_lease", async move {
            let released = self
                .retry_busy(|| async {
                    let mut tx = self.pool.begin().await?;
                    let released = sqlx::query(
                        "UPDATE partitions SET leader_id = NULL, lease_expires_ms = 0
                         WHERE topic = $1 AND partition_id = $2 AND leader_id = $3 AND lease_epoch = $4",
                    )
                    .bind(topic)
                    .bind(i64::from(partition))
                    .bind(agent_id)
                    .bind(epoch)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if released {
                        bump_lease_generation(&mut tx).await?;
                    }
                    tx.commit().await?;
                    Ok(released)
                })
                .await?;
            if released {
                self.append_event(
                    "lease_released",
                    &format!("{topic}-{partition}"),
                    &format!("agent {agent_id} epoch {epoch}: {why}"),
                )
                .await?;
            }
            Ok(released)
        })
        .await
    }

    /// Extends every lease `agent_id` holds and returns them. The renewal is one row, the
    /// agent's own: a lease is live until the later of its holder's renewal and the expiry it
    /// was taken with, so an agent leading thousands of
    /// partitions writes one row per heartbeat, not one per partition, and contends with no
    /// flush commit for their rows. Leases of an agent with no registration (or marked lost)
    /// are not extended; they run out at the expiry they were taken with (or are free).
    pub async fn renew_leases(&self, agent_id: &str, ttl_ms: i64) -> Result<Vec<Lease>> {
        self.bounded("renew_leases", async move {
            let now = self.dialect.now_ms();
            self.retry_busy(|| async {
                sqlx::query(&format!(
                    "UPDATE agents SET lease_expires_ms = {now} + $2 WHERE id = $1 AND lost = 0"
                ))
                .bind(agent_id)
                .bind(ttl_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            })
            .await?;
            // After the renewal: a lease read here as ours lives at least as long as it. The
            // read is outside the writers' turn (on SQLite a flush commit waits for it), and
            // with thousands of partitions it is the longer of the two statements.
            sqlx::query(
                "SELECT topic, partition_id, lease_epoch, log_start_offset, high_watermark
                 FROM partitions WHERE leader_id = $1 ORDER BY topic, partition_id",
            )
            .bind(agent_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Lease {
                    topic: r.try_get("topic")?,
                    partition: u32_col(r, "partition_id")?,
                    epoch: r.try_get("lease_epoch")?,
                    log_start_offset: r.try_get("log_start_offset")?,
                    high_watermark: r.try_get("high_watermark")?,
                })
            })
            .collect()
        })
        .await
    }

    /// Gives up every lease `agent_id` holds, so others may take them at once.
    pub async fn release_leases(&self, agent_id: &str) -> Result<u64> {
        self.bounded("release_leases", async move {
            let released: Vec<(String, i64, i64)> = self
                .retry_busy(|| async {
                    let mut tx = self.pool.begin().await?;
                    let released = sqlx::query(&format!(
                        "UPDATE partitions SET leader_id = NULL, lease_expires_ms = 0 WHERE {}
                         RETURNING topic, partition_id, lease_epoch",
                        held_by_first_param(self.dialect)
                    ))
                    .bind(agent_id)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get("topic")?,
                            r.try_get("partition_id")?,
                            r.try_get("lease_epoch")?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                    if !released.is_empty() {
                        bump_lease_generation(&mut tx).await?;
                    }
                    tx.commit().await?;
                    Ok(released)
                })
                .await?;
            let events: Vec<(&str, String, String)> = released
                .iter()
                .map(|(t, p, e)| {
                    (
                        "lease_released",
                        format!("{t}-{p}"),
                        format!("agent {agent_id} epoch {e}: shutting down"),
                    )
                })
                .collect();
            self.append_events(&events).await?;
            Ok(released.len() as u64)
        })
        .await
    }
}

/// The rows of the partitions `$1` leads, for an UPDATE of all of them. On PostgreSQL they are
/// locked first in key order, the order a flush commit updates its partitions in, so a lease
/// round and a flush never wait on each other in a cycle (PostgreSQL would break the deadlock
/// only after its `deadlock_timeout`, a second, failing one of them). SQLite has one writer.
fn held_by_first_param(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "(topic, partition_id) IN (SELECT topic, partition_id FROM partitions
               WHERE leader_id = $1 ORDER BY topic, partition_id FOR UPDATE)"
        }
        Dialect::Sqlite => "leader_id = $1",
    }
}

/// Raises the lease generation inside the transaction of a change to which partitions exist
/// or who holds them, so every agent's next lease round reads the holders again.
pub(super) async fn bump_lease_generation(conn: &mut sqlx::AnyConnection) -> Result<()> {
    sqlx::query("UPDATE lease_generation SET generation = generation + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}
