//! Consumer groups in the metadata store: each request loads its group inside one
//! transaction that holds the group's row, applies the group coordinator and writes
//! the result back, so any agent can serve any group and concurrent requests to one group
//! take turns.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Dialect, MetadataStore, Result};
use crate::group::assignor::{Assignor, Tp};
use crate::group::coordinator::{self, GroupError, GroupState, Heartbeat, MemberState, Outcome};

/// `topic:partition,...`; topic names cannot hold `:` or `,`.
pub fn encode_tps(tps: &[Tp]) -> String {
    tps.iter()
        .map(|(t, p)| format!("{t}:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The partitions [`encode_tps`] wrote; malformed entries are skipped.
pub fn decode_tps(s: &str) -> Vec<Tp> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .filter_map(|x| {
            let (t, p) = x.rsplit_once(':')?;
            Some((t.to_string(), p.parse().ok()?))
        })
        .collect()
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The partition's topic.
    pub topic: String,
    /// Its number.
    pub partition: u32,
    /// The next offset the group will read.
    pub offset: i64,
    /// What the committer attached.
    pub metadata: String,
    /// The group generation it was committed in.
    pub generation: i64,
    /// When, by the store's clock.
    pub committed_at_ms: i64,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group's id.
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Empty`.
    pub state: String,
    /// Live members.
    pub members: u32,
    /// The current generation.
    pub generation: i64,
    /// The assignor the members agreed on.
    pub assignor: String,
    /// Over the partitions it has committed offsets for: high watermark - committed.
    pub total_lag: i64,
    /// A group of Kafka clients (the classic protocol).
    pub kafka: bool,
    /// Its Kafka protocol type (`consumer`, or `connect` for Kafka Connect's workers);
    /// `consumer` for StreamHouse's groups.
    pub protocol_type: String,
}

/// Where ResetOffsets moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark.
    Latest,
    /// The first offset of the first segment stamped at or after this time (ms).
    Timestamp(i64),
    /// This offset, clamped to each partition's log.
    Offset(i64),
}

impl MetadataStore {
    /// Takes the group's row for this transaction (creating the group if needed): on
    /// PostgreSQL a row lock, on SQLite the write lock a first write takes.
    pub(super) async fn lock_group(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
    ) -> Result<()> {
        let now = self.dialect.now_ms();
        sqlx::query(&format!(
            "INSERT INTO consumer_groups (group_id, created_at_ms, updated_at_ms)
             VALUES ($1, {now}, {now}) ON CONFLICT (group_id) DO NOTHING"
        ))
        .bind(group)
        .execute(&mut **tx)
        .await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT group_id FROM consumer_groups WHERE group_id = $1 FOR UPDATE")
                .bind(group)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Begins a transaction holding `group`'s row: the transaction, the group, the store's
    /// clock. A Kafka group with live members is refused; one without becomes StreamHouse's.
    async fn open_group(
        &self,
        group: &str,
    ) -> Result<std::result::Result<(Transaction<'static, Any>, GroupState, i64), GroupError>> {
        let mut tx = self.pool.begin().await?;
        self.lock_group(&mut tx, group).await?;
        let now = self.store_now(&mut tx).await?;
        if self.protocol_type(&mut tx, group).await? != super::classic::NATIVE {
            let mut kafka = self.load_classic(&mut tx, group).await?;
            crate::group::classic::expire(&mut kafka, now);
            if let Some(m) = kafka.members.first() {
                tx.rollback().await?;
                return Ok(Err(GroupError::OtherProtocol(format!(
                    "group {group} has Kafka consumers ({} first); StreamHouse consumers cannot join it",
                    m.id
                ))));
            }
            sqlx::query(
                "UPDATE consumer_groups SET protocol_type = '', protocol_name = '',
                    leader_id = '', deadline_ms = 0, hold_until_ms = 0, state = 'empty',
                    fingerprint = '' WHERE group_id = $1",
            )
            .bind(group)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM group_members WHERE group_id = $1")
                .bind(group)
                .execute(&mut *tx)
                .await?;
        }
        let state = self.load_group(&mut tx, group).await?;
        Ok(Ok((tx, state, now)))
    }

    pub(super) async fn load_group(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
    ) -> Result<GroupState> {
        let g = sqlx::query(
            "SELECT generation, assignor, fingerprint FROM consumer_groups WHERE group_id = $1",
        )
        .bind(group)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(g) = g else {
            return Ok(GroupState::default());
        };
        let rows = sqlx::query(
            "SELECT member_id, client_id, client_host, subscription, assigned, owned, assignors,
                    member_generation, session_timeout_ms, last_heartbeat_ms, joined_at_ms
             FROM group_members WHERE group_id = $1 ORDER BY joined_at_ms, member_id",
        )
        .bind(group)
        .fetch_all(&mut **tx)
        .await?;
        let members = rows.iter().map(member_from_row).collect::<Result<_>>()?;
        let assignor: String = g.try_get("assignor")?;
        Ok(GroupState {
            generation: g.try_get("generation")?,
            assignor: Assignor::parse(&assignor),
            fingerprint: g.try_get("fingerprint")?,
            members,
            kafka: None,
        })
    }

    async fn save_group(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
        state: &GroupState,
        rebalance: Option<&str>,
    ) -> Result<()> {
        let now = self.dialect.now_ms();
        sqlx::query(&format!(
            "UPDATE consumer_groups SET generation = $2, state = $3, assignor = $4,
                fingerprint = $5, updated_at_ms = {now} WHERE group_id = $1"
        ))
        .bind(group)
        .bind(state.generation)
        .bind(state.state())
        .bind(state.assignor.map_or("", Assignor::name))
        .bind(state.fingerprint.as_str())
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(group)
            .execute(&mut **tx)
            .await?;
        for m in &state.members {
            let topics: Vec<&str> = m.topics.iter().map(String::as_str).collect();
            let assignors: Vec<&str> = m.assignors.iter().map(|a| a.name()).collect();
            sqlx::query(
                "INSERT INTO group_members (group_id, member_id, client_id, client_host,
                    subscription, assigned, owned, assignors, member_generation,
                    session_timeout_ms, last_heartbeat_ms, joined_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(group)
            .bind(m.id.as_str())
            .bind(m.client_id.as_str())
            .bind(m.host.as_str())
            .bind(topics.join(","))
            .bind(encode_tps(&m.target))
            .bind(encode_tps(&m.owned))
            .bind(assignors.join(","))
            .bind(m.generation)
            .bind(m.session_timeout_ms)
            .bind(m.last_heartbeat_ms)
            .bind(m.joined_at_ms)
            .execute(&mut **tx)
            .await?;
        }
        if let Some(why) = rebalance {
            let ids: Vec<&str> = state.members.iter().map(|m| m.id.as_str()).collect();
            let detail = format!(
                "generation {}: {why}; members [{}]",
                state.generation,
                ids.join(", ")
            );
            self.record_rebalance(tx, group, &detail).await?;
        }
        Ok(())
    }

    /// Adds a `rebalance` event for `group` to the events log.
    pub(super) async fn record_rebalance(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
        detail: &str,
    ) -> Result<()> {
        let now = self.dialect.now_ms();
        sqlx::query(&format!(
            "INSERT INTO events (at_ms, kind, subject, detail) VALUES ({now}, 'rebalance', $1, $2)"
        ))
        .bind(group)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn save_member(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
        m: &MemberState,
    ) -> Result<()> {
        let topics: Vec<&str> = m.topics.iter().map(String::as_str).collect();
        let assignors: Vec<&str> = m.assignors.iter().map(|a| a.name()).collect();
        sqlx::query(
            "UPDATE group_members SET subscription = $3, owned = $4, assignors = $5,
                member_generation = $6, session_timeout_ms = $7, last_heartbeat_ms = $8
             WHERE group_id = $1 AND member_id = $2",
        )
        .bind(group)
        .bind(m.id.as_str())
        .bind(topics.join(","))
        .bind(encode_tps(&m.owned))
        .bind(assignors.join(","))
        .bind(m.generation)
        .bind(m.session_timeout_ms)
        .bind(m.last_heartbeat_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Partition counts of `topics` that exist.
    async fn partition_counts(
        &self,
        tx: &mut Transaction<'static, Any>,
        topics: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, u32>> {
        let mut out = BTreeMap::new();
        for t in topics {
            let row = sqlx::query("SELECT partition_count FROM topics WHERE name = $1")
                .bind(t.as_str())
                .fetch_optional(&mut **tx)
                .await?;
            if let Some(r) = row {
                out.insert(t.clone(), super::u32_col(&r, "partition_count")?);
            }
        }
        Ok(out)
    }

    pub(super) async fn store_now(&self, tx: &mut Transaction<'static, Any>) -> Result<i64> {
        let row = sqlx::query(&format!("SELECT {} AS now_ms", self.dialect.now_ms()))
            .fetch_one(&mut **tx)
            .await?;
        Ok(row.try_get("now_ms")?)
    }

    /// A join (`hb.known == false`) or heartbeat of one member, in one transaction.
    pub async fn group_heartbeat(
        &self,
        group: &str,
        hb: &Heartbeat,
    ) -> Result<std::result::Result<Outcome, GroupError>> {
        self.bounded("group_heartbeat", async move {
            self.retry_busy(|| async {
                let (mut tx, mut state, now) = match self.open_group(group).await? {
                    Ok(open) => open,
                    Err(e) => return Ok(Err(e)),
                };
                let mut topics: BTreeSet<String> = hb.topics.clone();
                for m in &state.members {
                    topics.extend(m.topics.iter().cloned());
                }
                let counts = self.partition_counts(&mut tx, &topics).await?;
                let before = state.clone();
                let out = coordinator::heartbeat(&mut state, hb, now, &counts);
                let why = match &out {
                    Ok(o) => o.rebalance.clone(),
                    Err(_) if state.generation != before.generation => {
                        Some("members expired".to_string())
                    }
                    Err(_) => None,
                };
                let same_members = state.members.len() == before.members.len()
                    && state
                        .members
                        .iter()
                        .zip(&before.members)
                        .all(|(a, b)| a.id == b.id && a.target == b.target);
                if state.generation == before.generation && same_members {
                    // A plain heartbeat: only its member's row changes, not the whole group's.
                    if let Some(m) = state.members.iter().find(|m| m.id == hb.member_id) {
                        self.save_member(&mut tx, group, m).await?;
                    }
                    if state.state() != before.state() {
                        sqlx::query("UPDATE consumer_groups SET state = $2 WHERE group_id = $1")
                            .bind(group)
                            .bind(state.state())
                            .execute(&mut *tx)
                            .await?;
                    }
                } else {
                    self.save_group(&mut tx, group, &state, why.as_deref())
                        .await?;
                }
                tx.commit().await?;
                Ok(out)
            })
            .await
        })
        .await
    }

    /// A member leaving on purpose.
    pub async fn group_leave(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<std::result::Result<(), GroupError>> {
        self.bounded("group_leave", async move {
            self.retry_busy(|| async {
                let (mut tx, mut state, now) = match self.open_group(group).await? {
                    Ok(open) => open,
                    Err(e) => return Ok(Err(e)),
                };
                let topics: BTreeSet<String> = state
                    .members
                    .iter()
                    .flat_map(|m| m.topics.iter().cloned())
                    .collect();
                let counts = self.partition_counts(&mut tx, &topics).await?;
                let out = coordinator::leave(&mut state, member_id, now, &counts);
                let why = out.as_ref().ok().cloned();
                self.save_group(&mut tx, group, &state, why.as_deref())
                    .await?;
                tx.commit().await?;
                Ok(out.map(|_| ()))
            })
            .await
        })
        .await
    }

    /// Commits offsets for a member at its generation (or, with no member, for a group
    /// without active members), all or none.
    pub async fn commit_offsets(
        &self,
        group: &str,
        member_id: &str,
        generation: i64,
        offsets: &[(String, u32, i64, String)],
    ) -> Result<std::result::Result<(), GroupError>> {
        self.bounded("commit_offsets", async move {
            self.retry_busy(|| async {
                let (mut tx, state, now) = match self.open_group(group).await? {
                    Ok(open) => open,
                    Err(e) => return Ok(Err(e)),
                };
                // A member whose session has run out may not commit, even before anyone
                // noticed and removed it.
                let mut live = state.clone();
                coordinator::expire(&mut live, now);
                let tps: Vec<Tp> = offsets.iter().map(|o| (o.0.clone(), o.1)).collect();
                if let Err(e) = coordinator::check_commit(&live, member_id, generation, &tps) {
                    tx.rollback().await?;
                    return Ok(Err(e));
                }
                self.write_offsets(&mut tx, group, generation, now, offsets)
                    .await?;
                tx.commit().await?;
                Ok(Ok(()))
            })
            .await
        })
        .await
    }

    /// Writes committed offsets, one row per partition: (topic, partition, offset, metadata).
    pub(super) async fn write_offsets(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
        generation: i64,
        now: i64,
        offsets: &[(String, u32, i64, String)],
    ) -> Result<()> {
        for (topic, partition, offset, meta) in offsets {
            sqlx::query(
                "INSERT INTO committed_offsets (group_id, topic, partition_id,
                    committed_offset, metadata, generation, committed_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET
                    committed_offset = excluded.committed_offset,
                    metadata = excluded.metadata,
                    generation = excluded.generation,
                    committed_at_ms = excluded.committed_at_ms",
            )
            .bind(group)
            .bind(topic.as_str())
            .bind(i64::from(*partition))
            .bind(*offset)
            .bind(meta.as_str())
            .bind(generation)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// The group's committed offsets, for `topics` (all when empty).
    pub async fn fetch_offsets(&self, group: &str, topics: &[String]) -> Result<Vec<Committed>> {
        self.bounded("fetch_offsets", async move {
            let rows = sqlx::query(
                "SELECT topic, partition_id, committed_offset, metadata, generation, committed_at_ms
                 FROM committed_offsets WHERE group_id = $1 ORDER BY topic, partition_id",
            )
            .bind(group)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let topic: String = r.try_get("topic")?;
                if !topics.is_empty() && !topics.contains(&topic) {
                    continue;
                }
                out.push(Committed {
                    topic,
                    partition: super::u32_col(r, "partition_id")?,
                    offset: r.try_get("committed_offset")?,
                    metadata: r.try_get("metadata")?,
                    generation: r.try_get("generation")?,
                    committed_at_ms: r.try_get("committed_at_ms")?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// One group's members (expired ones left out) and state, as of the store's clock.
    pub async fn describe_group(&self, group: &str) -> Result<Option<GroupState>> {
        self.bounded("describe_group", async move {
            let mut tx = self.pool.begin().await?;
            let exists = sqlx::query("SELECT group_id FROM consumer_groups WHERE group_id = $1")
                .bind(group)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
            let now = self.store_now(&mut tx).await?;
            if self.protocol_type(&mut tx, group).await? != super::classic::NATIVE {
                let mut kafka = self.load_classic(&mut tx, group).await?;
                tx.rollback().await?;
                crate::group::classic::expire(&mut kafka, now);
                return Ok(Some(kafka_view(&kafka)));
            }
            let mut state = self.load_group(&mut tx, group).await?;
            tx.rollback().await?;
            coordinator::expire(&mut state, now);
            Ok(Some(state))
        })
        .await
    }

    /// Every group with its state, live members, generation and total lag.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        self.bounded("list_groups", async move {
            let groups = sqlx::query("SELECT group_id FROM consumer_groups ORDER BY group_id")
                .fetch_all(&self.pool)
                .await?;
            let lags = sqlx::query(
                "SELECT c.group_id AS group_id,
                        CAST(SUM(CASE WHEN p.high_watermark > c.committed_offset
                            THEN p.high_watermark - c.committed_offset ELSE 0 END) AS BIGINT) AS lag
                 FROM committed_offsets c JOIN partitions p
                   ON p.topic = c.topic AND p.partition_id = c.partition_id
                 GROUP BY c.group_id",
            )
            .fetch_all(&self.pool)
            .await?;
            let lag: BTreeMap<String, i64> = lags
                .iter()
                .map(|r| Ok((r.try_get("group_id")?, r.try_get("lag")?)))
                .collect::<Result<_>>()?;
            let mut out = Vec::with_capacity(groups.len());
            for g in &groups {
                let id: String = g.try_get("group_id")?;
                let Some(state) = self.describe_group(&id).await? else {
                    continue;
                };
                out.push(GroupSummary {
                    state: state.state().to_string(),
                    members: state.members.len() as u32,
                    generation: state.generation,
                    assignor: state.assignor_name(),
                    total_lag: lag.get(&id).copied().unwrap_or(0),
                    kafka: state.kafka.is_some(),
                    protocol_type: state
                        .kafka
                        .as_ref()
                        .map_or("consumer", |k| k.protocol_type.as_str())
                        .to_string(),
                    group_id: id,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Deletes a group with its committed offsets: `Ok(false)` if there is no such group,
    /// `Err(NotEmpty)` while it has live members of either protocol.
    pub async fn delete_group(&self, group: &str) -> Result<std::result::Result<bool, GroupError>> {
        self.bounded("delete_group", async move {
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                let exists =
                    sqlx::query("SELECT group_id FROM consumer_groups WHERE group_id = $1")
                        .bind(group)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                if !exists {
                    tx.rollback().await?;
                    return Ok(Ok(false));
                }
                self.lock_group(&mut tx, group).await?;
                let now = self.store_now(&mut tx).await?;
                let live = match self.native_state(&mut tx, group, now).await? {
                    Some(native) => native.members.len(),
                    None => {
                        let mut kafka = self.load_classic(&mut tx, group).await?;
                        crate::group::classic::expire(&mut kafka, now);
                        kafka.members.len()
                    }
                };
                if live > 0 {
                    tx.rollback().await?;
                    return Ok(Err(GroupError::NotEmpty(format!(
                        "group {group} has {live} live members; stop them before deleting it"
                    ))));
                }
                for table in ["group_members", "committed_offsets", "consumer_groups"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE group_id = $1"))
                        .bind(group)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Ok(true))
            })
            .await
        })
        .await
    }

    /// Moves a group's committed offsets for every partition of `topic`; refused while the
    /// group has live members (they would overwrite it). Returns the new offsets.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<std::result::Result<Vec<(u32, i64)>, GroupError>> {
        self.bounded("reset_offsets", async move {
            self.retry_busy(|| async {
                let (mut tx, mut state, now) = match self.open_group(group).await? {
                    Ok(open) => open,
                    Err(e) => return Ok(Err(e)),
                };
                coordinator::expire(&mut state, now);
                if let Some(m) = state.members.first() {
                    tx.rollback().await?;
                    return Ok(Err(GroupError::NotEmpty(format!(
                        "group {group} has {} live members ({} first); stop them before resetting",
                        state.members.len(),
                        m.id
                    ))));
                }
                let parts = sqlx::query(
                    "SELECT partition_id, log_start_offset, high_watermark FROM partitions
                     WHERE topic = $1 ORDER BY partition_id",
                )
                .bind(topic)
                .fetch_all(&mut *tx)
                .await?;
                let mut out = Vec::with_capacity(parts.len());
                for r in &parts {
                    let p = super::u32_col(r, "partition_id")?;
                    let lo: i64 = r.try_get("log_start_offset")?;
                    let hi: i64 = r.try_get("high_watermark")?;
                    let offset = match to {
                        ResetTo::Earliest => lo,
                        ResetTo::Latest => hi,
                        ResetTo::Offset(o) => o.clamp(lo, hi),
                        ResetTo::Timestamp(ts) => {
                            let row = sqlx::query(super::segments::FIRST_CHUNK_AT)
                                .bind(topic)
                                .bind(i64::from(p))
                                .bind(ts)
                                .fetch_one(&mut *tx)
                                .await?;
                            row.try_get::<Option<i64>, _>("o")?
                                .unwrap_or(hi)
                                .clamp(lo, hi)
                        }
                    };
                    out.push((p, offset));
                }
                let rows: Vec<(String, u32, i64, String)> = out
                    .iter()
                    .map(|&(p, o)| (topic.to_string(), p, o, "reset".to_string()))
                    .collect();
                self.write_offsets(&mut tx, group, state.generation, now, &rows)
                    .await?;
                tx.commit().await?;
                Ok(Ok(out))
            })
            .await
        })
        .await
    }
}

/// A Kafka group as StreamHouse's describe shows one: members with their decoded
/// subscriptions and assignments.
fn kafka_view(g: &crate::group::classic::Group) -> GroupState {
    let members = g
        .members
        .iter()
        .map(|m| {
            let view = crate::group::classic::consumer_view(g, m);
            MemberState {
                id: m.id.clone(),
                client_id: m.client_id.clone(),
                host: m.host.clone(),
                topics: view.topics,
                assignors: Vec::new(),
                target: view.assigned.clone(),
                owned: view.assigned,
                generation: m.generation,
                session_timeout_ms: m.session_timeout_ms,
                last_heartbeat_ms: m.last_heartbeat_ms,
                joined_at_ms: m.joined_at_ms,
            }
        })
        .collect();
    GroupState {
        generation: g.generation,
        assignor: None,
        fingerprint: String::new(),
        members,
        kafka: Some(coordinator::KafkaGroup {
            phase: g.phase.name(),
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
        }),
    }
}

fn member_from_row(r: &AnyRow) -> Result<MemberState> {
    let subscription: String = r.try_get("subscription")?;
    let assignors: String = r.try_get("assignors")?;
    Ok(MemberState {
        id: r.try_get("member_id")?,
        client_id: r.try_get("client_id")?,
        host: r.try_get("client_host")?,
        topics: subscription
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        assignors: assignors.split(',').filter_map(Assignor::parse).collect(),
        target: decode_tps(&r.try_get::<String, _>("assigned")?),
        owned: decode_tps(&r.try_get::<String, _>("owned")?),
        generation: r.try_get("member_generation")?,
        session_timeout_ms: r.try_get("session_timeout_ms")?,
        last_heartbeat_ms: r.try_get("last_heartbeat_ms")?,
        joined_at_ms: r.try_get("joined_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lists_round_trip() {
        let tps = vec![("a.b-c_d".to_string(), 0), ("x".to_string(), 12)];
        assert_eq!(decode_tps(&encode_tps(&tps)), tps);
        assert!(decode_tps("").is_empty());
    }
}
