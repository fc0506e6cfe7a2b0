//! The agents table: registration, heartbeats, and reaping agents whose heartbeat stopped.

use super::*;

/// What `list_agents` reads, from `agents a` joined with `kafka_nodes k`.
const AGENT_COLUMNS: &str =
    "a.id, a.address, a.started_at_ms, a.heartbeat_ms, a.lost, a.kafka_address, k.node_id";

impl MetadataStore {
    /// Registers agent `id` serving at `address` (again, after a restart), with the key of
    /// its [`Session`] (0 for none), and logs it.
    pub async fn register_agent(
        &self,
        id: &str,
        address: &str,
        kafka_address: Option<&str>,
        session: i64,
    ) -> Result<()> {
        self.bounded("register_agent", async move {
            let now = self.dialect.now_ms();
            self.retry_busy(|| async {
                sqlx::query(&format!(
                    "INSERT INTO agents (id, address, started_at_ms, heartbeat_ms, session_key,
                         kafka_address)
                     VALUES ($1, $2, {now}, {now}, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET address = $2, started_at_ms = {now},
                         heartbeat_ms = {now}, lost = 0, session_key = $3, kafka_address = $4"
                ))
                .bind(id)
                .bind(address)
                .bind(session)
                .bind(kafka_address)
                .execute(&self.pool)
                .await?;
                Ok(())
            })
            .await?;
            let kafka = kafka_address.map_or_else(String::new, |k| format!(", Kafka {k}"));
            self.append_event("agent_joined", id, &format!("address {address}{kafka}"))
                .await
        })
        .await
    }

    /// Agent `id`'s Kafka node id: the one it was given before, or the next free one. Kafka
    /// clients know brokers by these numbers, so an agent keeps its number across restarts.
    pub async fn kafka_node_id(&self, id: &str) -> Result<i32> {
        self.bounded("kafka_node_id", async move {
            // Two agents may pick the same next number at once on PostgreSQL: the loser's
            // insert does nothing (the number is unique) and it tries the next one.
            for _ in 0..16 {
                let got = self
                    .retry_busy(|| async {
                        sqlx::query(
                            "INSERT INTO kafka_nodes (agent_id, node_id)
                             SELECT $1, COALESCE(MAX(node_id), 0) + 1 FROM kafka_nodes
                             WHERE NOT EXISTS (SELECT 1 FROM kafka_nodes WHERE agent_id = $1)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                        let row =
                            sqlx::query("SELECT node_id FROM kafka_nodes WHERE agent_id = $1")
                                .bind(id)
                                .fetch_optional(&self.pool)
                                .await?;
                        row.map(|r| r.try_get::<i64, _>("node_id"))
                            .transpose()
                            .map_err(MetadataError::from)
                    })
                    .await?;
                if let Some(n) = got {
                    return i32::try_from(n).map_err(|_| {
                        MetadataError::Inconsistent(format!(
                            "Kafka node id {n} of agent {id} is not an i32"
                        ))
                    });
                }
            }
            Err(MetadataError::Inconsistent(format!(
                "no Kafka node id could be given to agent {id}: 16 attempts collided"
            )))
        })
        .await
    }

    /// Refreshes the agent's heartbeat and the key of its current [`Session`]; false if its
    /// registration is gone or it was marked lost.
    pub async fn heartbeat_agent(&self, id: &str, session: i64) -> Result<bool> {
        self.bounded("heartbeat_agent", async move {
            let now = self.dialect.now_ms();
            self.retry_busy(|| async {
                let done = sqlx::query(&format!(
                    "UPDATE agents SET heartbeat_ms = {now}, session_key = $2
                     WHERE id = $1 AND lost = 0"
                ))
                .bind(id)
                .bind(session)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            })
            .await
        })
        .await
    }

    /// Removes agent `id` on a graceful shutdown, and logs it.
    pub async fn deregister_agent(&self, id: &str) -> Result<()> {
        self.bounded("deregister_agent", async move {
            self.retry_busy(|| async {
                sqlx::query("DELETE FROM agents WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            })
            .await?;
            self.append_event("agent_left", id, "graceful shutdown")
                .await
        })
        .await
    }

    /// The address and heartbeat age (by the store's clock) of agent `id`, if registered
    /// and not marked lost.
    pub async fn agent_heartbeat(&self, id: &str) -> Result<Option<(String, i64, i64)>> {
        self.bounded("agent_heartbeat", async move {
            let row = sqlx::query(&format!(
                "SELECT address, heartbeat_ms, {} - heartbeat_ms AS age_ms FROM agents
                 WHERE id = $1 AND lost = 0",
                self.dialect.now_ms()
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            row.map(|r| {
                Ok((
                    r.try_get("address")?,
                    r.try_get("heartbeat_ms")?,
                    r.try_get("age_ms")?,
                ))
            })
            .transpose()
        })
        .await
    }

    /// Agents not marked lost whose heartbeat is younger than `live_within_ms` (every
    /// registered agent when `None`).
    pub async fn list_agents(&self, live_within_ms: Option<i64>) -> Result<Vec<AgentRow>> {
        self.bounded("list_agents", async move {
            let rows = match live_within_ms {
                Some(ms) => {
                    sqlx::query(&format!(
                        "SELECT {AGENT_COLUMNS} FROM agents a
                         LEFT JOIN kafka_nodes k ON k.agent_id = a.id
                         WHERE a.heartbeat_ms > {} - $1 AND a.lost = 0 ORDER BY a.id",
                        self.dialect.now_ms()
                    ))
                    .bind(ms)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query(&format!(
                        "SELECT {AGENT_COLUMNS} FROM agents a
                     LEFT JOIN kafka_nodes k ON k.agent_id = a.id ORDER BY a.id"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
            rows.iter()
                .map(|r| {
                    Ok(AgentRow {
                        id: r.try_get("id")?,
                        address: r.try_get("address")?,
                        started_at_ms: r.try_get("started_at_ms")?,
                        heartbeat_ms: r.try_get("heartbeat_ms")?,
                        lost: r.try_get::<i64, _>("lost")? != 0,
                        kafka_address: r.try_get("kafka_address")?,
                        kafka_node_id: r
                            .try_get::<Option<i64>, _>("node_id")?
                            .and_then(|n| i32::try_from(n).ok()),
                    })
                })
                .collect()
        })
        .await
    }

    /// Marks as lost (once each, with an event) the agents whose heartbeat is older than
    /// `ttl_ms`, and those of `ended` (an agent and the key of a session seen ended) whose row
    /// still names that session; forgets agents silent for an hour. A lost agent's leases are
    /// free to take at once. Returns the newly lost, each with why.
    pub async fn reap_lost_agents(
        &self,
        ttl_ms: i64,
        ended: &[(String, i64)],
    ) -> Result<Vec<(String, String)>> {
        self.bounded("reap_lost_agents", async move {
            let now = self.dialect.now_ms();
            let lost: Vec<(String, String)> = self
                .retry_busy(|| async {
                    let mut tx = self.pool.begin().await?;
                    let mut lost = Vec::new();
                    for r in sqlx::query(&format!(
                        "UPDATE agents SET lost = 1 WHERE lost = 0 AND heartbeat_ms <= {now} - $1
                         RETURNING id"
                    ))
                    .bind(ttl_ms)
                    .fetch_all(&mut *tx)
                    .await?
                    {
                        lost.push((r.try_get("id")?, format!("no heartbeat for {ttl_ms} ms")));
                    }
                    for (id, key) in ended {
                        let done = sqlx::query(
                            "UPDATE agents SET lost = 1
                             WHERE id = $1 AND session_key = $2 AND lost = 0",
                        )
                        .bind(id)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                        if done.rows_affected() == 1 {
                            lost.push((
                                id.clone(),
                                "its session with the metadata store ended (process gone)".into(),
                            ));
                        }
                    }
                    sqlx::query(&format!(
                        "DELETE FROM agents WHERE lost = 1 AND heartbeat_ms <= {now} - 3600000"
                    ))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(lost)
                })
                .await?;
            let events: Vec<(&str, String, String)> = lost
                .iter()
                .map(|(id, why)| ("agent_lost", id.clone(), why.clone()))
                .collect();
            self.append_events(&events).await?;
            Ok(lost)
        })
        .await
    }
}
