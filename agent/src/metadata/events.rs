//! The cluster's event log: leases moving, agents joining and leaving, as the console shows.

use super::*;

impl MetadataStore {
    /// Appends to the bounded events log.
    pub async fn append_event(&self, kind: &str, subject: &str, detail: &str) -> Result<()> {
        self.bounded("append_event", async move {
            self.append_events(&[(kind, subject.to_string(), detail.to_string())])
                .await
        })
        .await
    }

    /// Appends several events, one statement per 200, trimming the log to its last
    /// `EVENTS_KEPT` whenever the ids pass a thousand.
    pub async fn append_events(&self, events: &[(&str, String, String)]) -> Result<()> {
        if events.is_empty() {
            // Nothing to write: no call (a lease round without news makes none).
            return Ok(());
        }
        self.bounded("append_events", async move {
            let now = self.dialect.now_ms();
            for batch in events.chunks(200) {
                let values = (0..batch.len())
                    .map(|i| format!("({now}, ${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "INSERT INTO events (at_ms, kind, subject, detail) VALUES {values} RETURNING id"
                );
                self.retry_busy(|| async {
                    let mut q = sqlx::query(&sql);
                    for (kind, subject, detail) in batch {
                        q = q.bind(*kind).bind(subject.as_str()).bind(detail.as_str());
                    }
                    let ids = q
                        .fetch_all(&self.pool)
                        .await?
                        .iter()
                        .map(|r| r.try_get::<i64, _>("id"))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    if let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max())
                        && (lo - 1) / 1000 != hi / 1000
                    {
                        sqlx::query("DELETE FROM events WHERE id <= $1")
                            .bind(hi - EVENTS_KEPT)
                            .execute(&self.pool)
                            .await?;
                    }
                    Ok(())
                })
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Events after `after_id`, oldest first.
    pub async fn list_events(&self, after_id: i64, limit: i64) -> Result<Vec<EventRow>> {
        self.bounded("list_events", async move {
            sqlx::query(
                "SELECT id, at_ms, kind, subject, detail FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(EventRow {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    kind: r.try_get("kind")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
        })
        .await
    }
}
