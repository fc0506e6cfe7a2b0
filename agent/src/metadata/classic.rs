//! Kafka's classic groups in the metadata store, on the same tables as StreamHouse's own:
//! `consumer_groups` (with the protocol type, chosen protocol, leader and deadlines),
//! `group_members` (with each member's protocols and assignment as bytes, and what the
//! assignment means decoded into the columns the console reads) and `committed_offsets`.
//!
//! Each request is one transaction holding the group's row: load, apply the state machine in
//! `group::classic`, write back what changed. A group belongs to one protocol while
//! it has members: a Kafka JoinGroup on a StreamHouse group with live members is refused, and
//! the other way round; an empty group goes to whichever joins first. Committed offsets are
//! shared either way.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{MetadataError, MetadataStore, Result};
use crate::group::classic::{self, ClassicError, Group, Member, Phase};
use crate::group::coordinator;

/// The group's protocol type for StreamHouse's own consumers.
pub const NATIVE: &str = "";

/// Protocols as one value: for each, a u16 name length, the name, a u32 metadata length and
/// the metadata.
pub fn encode_protocols(protocols: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size: usize = protocols.iter().map(|(n, m)| 6 + n.len() + m.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (name, meta) in protocols {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(meta);
    }
    out
}

/// What [`encode_protocols`] wrote.
pub fn decode_protocols(mut b: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = usize::from(u16::from_be_bytes(b.get(..2)?.try_into().ok()?));
        let name = std::str::from_utf8(b.get(2..2 + n)?).ok()?.to_string();
        b = &b[2 + n..];
        let m = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let meta = b.get(4..4 + m)?.to_vec();
        b = &b[4 + m..];
        out.push((name, meta));
    }
    Some(out)
}

/// A classic request's outcome: the store's answer, then the state machine's.
pub type Classic<T> = Result<std::result::Result<T, ClassicError>>;

impl MetadataStore {
    /// The group's protocol type, once its row is held.
    pub(super) async fn protocol_type(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
    ) -> Result<String> {
        let row = sqlx::query("SELECT protocol_type FROM consumer_groups WHERE group_id = $1")
            .bind(group)
            .fetch_one(&mut **tx)
            .await?;
        Ok(row.try_get("protocol_type")?)
    }

    /// StreamHouse's own group state as of `now` (expired members left out), or `None` when
    /// `group` is a Kafka group. Its row must be held.
    pub(super) async fn native_state(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
        now: i64,
    ) -> Result<Option<crate::group::coordinator::GroupState>> {
        if self.protocol_type(tx, group).await? != NATIVE {
            return Ok(None);
        }
        let mut native = self.load_group(tx, group).await?;
        coordinator::expire(&mut native, now);
        Ok(Some(native))
    }

    /// A Kafka group as the store keeps it (its row must be held).
    pub(super) async fn load_classic(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
    ) -> Result<Group> {
        let g = sqlx::query(
            "SELECT generation, state, protocol_type, protocol_name, leader_id, deadline_ms,
                    hold_until_ms
             FROM consumer_groups WHERE group_id = $1",
        )
        .bind(group)
        .fetch_one(&mut **tx)
        .await?;
        let rows = sqlx::query(
            "SELECT member_id, client_id, client_host, member_generation, session_timeout_ms,
                    rebalance_timeout_ms, last_heartbeat_ms, joined_at_ms, joined, protocols,
                    member_assignment
             FROM group_members WHERE group_id = $1 ORDER BY joined_at_ms, member_id",
        )
        .bind(group)
        .fetch_all(&mut **tx)
        .await?;
        let state: String = g.try_get("state")?;
        Ok(Group {
            // A group StreamHouse's consumers used last reads as empty.
            phase: Phase::parse(&state).unwrap_or(Phase::Empty),
            generation: g.try_get("generation")?,
            protocol_type: g.try_get("protocol_type")?,
            protocol: g.try_get("protocol_name")?,
            leader: g.try_get("leader_id")?,
            deadline_ms: g.try_get("deadline_ms")?,
            hold_until_ms: g.try_get("hold_until_ms")?,
            members: rows.iter().map(classic_member).collect::<Result<_>>()?,
        })
    }

    async fn save_classic(
        &self,
        tx: &mut Transaction<'static, Any>,
        group: &str,
        before: &Group,
        after: &Group,
    ) -> Result<()> {
        // A heartbeat and the like change members' liveness alone: only those rows are written.
        let liveness_only = Group {
            members: Vec::new(),
            ..before.clone()
        } == Group {
            members: Vec::new(),
            ..after.clone()
        } && before.members.len() == after.members.len()
            && before.members.iter().zip(&after.members).all(|(a, b)| {
                Member {
                    last_heartbeat_ms: b.last_heartbeat_ms,
                    session_timeout_ms: b.session_timeout_ms,
                    ..a.clone()
                } == *b
            });
        if liveness_only {
            for (a, b) in before.members.iter().zip(&after.members) {
                if a != b {
                    sqlx::query(
                        "UPDATE group_members SET last_heartbeat_ms = $3, session_timeout_ms = $4
                         WHERE group_id = $1 AND member_id = $2",
                    )
                    .bind(group)
                    .bind(b.id.as_str())
                    .bind(b.last_heartbeat_ms)
                    .bind(b.session_timeout_ms)
                    .execute(&mut **tx)
                    .await?;
                }
            }
            return Ok(());
        }
        let now = self.dialect.now_ms();
        sqlx::query(&format!(
            "UPDATE consumer_groups SET generation = $2, state = $3, assignor = $4,
                protocol_type = $5, protocol_name = $4, leader_id = $6, deadline_ms = $7,
                hold_until_ms = $8, fingerprint = '', updated_at_ms = {now}
             WHERE group_id = $1"
        ))
        .bind(group)
        .bind(after.generation)
        .bind(after.phase.name())
        .bind(after.protocol.as_str())
        .bind(after.protocol_type.as_str())
        .bind(after.leader.as_str())
        .bind(after.deadline_ms)
        .bind(after.hold_until_ms)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(group)
            .execute(&mut **tx)
            .await?;
        for m in &after.members {
            let view = classic::consumer_view(after, m);
            let topics: Vec<&str> = view.topics.iter().map(String::as_str).collect();
            let names: Vec<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            let assigned = super::groups::encode_tps(&view.assigned);
            sqlx::query(
                "INSERT INTO group_members (group_id, member_id, client_id, client_host,
                    subscription, assigned, owned, assignors, member_generation,
                    session_timeout_ms, last_heartbeat_ms, joined_at_ms, rebalance_timeout_ms,
                    joined, protocols, member_assignment)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(group)
            .bind(m.id.as_str())
            .bind(m.client_id.as_str())
            .bind(m.host.as_str())
            .bind(topics.join(","))
            .bind(assigned)
            .bind(names.join(","))
            .bind(m.generation)
            .bind(m.session_timeout_ms)
            .bind(m.last_heartbeat_ms)
            .bind(m.joined_at_ms)
            .bind(m.rebalance_timeout_ms)
            .bind(i64::from(m.joined))
            .bind(encode_protocols(&m.protocols))
            .bind(m.assignment.clone())
            .execute(&mut **tx)
            .await?;
        }
        if before.generation != after.generation && after.phase != Phase::Empty {
            let ids: Vec<&str> = after.members.iter().map(|m| m.id.as_str()).collect();
            let detail = format!(
                "generation {} (Kafka, {}): leader {}; members [{}]",
                after.generation,
                after.protocol,
                after.leader,
                ids.join(", ")
            );
            self.record_rebalance(tx, group, &detail).await?;
        }
        Ok(())
    }

    /// Runs `f` on the Kafka group `group` in one transaction and writes back what it
    /// changed; `f` also gets the store's clock. Refused while StreamHouse's own consumers
    /// are members; a group they left empty becomes a Kafka group.
    async fn with_classic<T>(
        &self,
        op: &'static str,
        group: &str,
        f: impl Fn(&mut Group, i64) -> std::result::Result<T, ClassicError>,
    ) -> Classic<T> {
        self.bounded(op, async {
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                self.lock_group(&mut tx, group).await?;
                let now = self.store_now(&mut tx).await?;
                if let Some(native) = self.native_state(&mut tx, group, now).await? {
                    if let Some(m) = native.members.first() {
                        tx.rollback().await?;
                        return Ok(Err(ClassicError::InconsistentProtocol(format!(
                            "group {group} has StreamHouse consumers ({} first); a Kafka client cannot join it",
                            m.id
                        ))));
                    }
                    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
                        .bind(group)
                        .execute(&mut *tx)
                        .await?;
                }
                let before = self.load_classic(&mut tx, group).await?;
                let mut after = before.clone();
                let out = f(&mut after, now);
                if after != before {
                    self.save_classic(&mut tx, group, &before, &after).await?;
                }
                tx.commit().await?;
                Ok(out)
            })
            .await
        })
        .await
    }

    /// A Kafka JoinGroup.
    pub async fn classic_join(
        &self,
        group: &str,
        join: &classic::Join,
        initial_delay_ms: i64,
    ) -> Classic<classic::JoinOutcome> {
        self.with_classic("classic_join", group, |g, now| {
            classic::join(g, join, now, initial_delay_ms)
        })
        .await
    }

    /// A held JoinGroup looking again.
    pub async fn classic_poll_join(
        &self,
        group: &str,
        member_id: &str,
        since: i64,
    ) -> Classic<Option<classic::Joined>> {
        self.with_classic("classic_poll_join", group, |g, now| {
            classic::poll_join(g, member_id, since, now)
        })
        .await
    }

    /// A Kafka SyncGroup.
    pub async fn classic_sync(
        &self,
        group: &str,
        member_id: &str,
        generation: i64,
        assignments: &[(String, Vec<u8>)],
    ) -> Classic<classic::SyncOutcome> {
        self.with_classic("classic_sync", group, |g, now| {
            classic::sync(g, member_id, generation, assignments, now)
        })
        .await
    }

    /// A held SyncGroup looking again.
    pub async fn classic_poll_sync(
        &self,
        group: &str,
        member_id: &str,
        generation: i64,
    ) -> Classic<classic::SyncOutcome> {
        self.with_classic("classic_poll_sync", group, |g, now| {
            classic::poll_sync(g, member_id, generation, now)
        })
        .await
    }

    /// A Kafka Heartbeat.
    pub async fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: i64,
    ) -> Classic<()> {
        self.with_classic("classic_heartbeat", group, |g, now| {
            classic::heartbeat(g, member_id, generation, now)
        })
        .await
    }

    /// A Kafka LeaveGroup: one answer per member.
    pub async fn classic_leave(
        &self,
        group: &str,
        member_ids: &[String],
    ) -> Result<Vec<std::result::Result<(), ClassicError>>> {
        Ok(self
            .with_classic("classic_leave", group, |g, now| {
                Ok(classic::leave(g, member_ids, now))
            })
            .await?
            .unwrap_or_default())
    }

    /// A Kafka OffsetCommit: checked against the group, then written, all in one
    /// transaction. `offsets`: (topic, partition, offset, metadata).
    pub async fn classic_commit(
        &self,
        group: &str,
        member_id: &str,
        generation: i64,
        offsets: &[(String, u32, i64, String)],
    ) -> Classic<()> {
        self.bounded("classic_commit", async {
            self.retry_busy(|| async {
                let mut tx = self.pool.begin().await?;
                self.lock_group(&mut tx, group).await?;
                let now = self.store_now(&mut tx).await?;
                let before = match self.native_state(&mut tx, group, now).await? {
                    Some(native) if !native.members.is_empty() => {
                        tx.rollback().await?;
                        return Ok(Err(ClassicError::InconsistentProtocol(format!(
                            "group {group} has StreamHouse consumers; commit through them"
                        ))));
                    }
                    // A commit from outside does not make StreamHouse's empty group Kafka's.
                    Some(_) => Group::default(),
                    None => self.load_classic(&mut tx, group).await?,
                };
                let mut after = before.clone();
                if let Err(e) = classic::commit(&mut after, member_id, generation, now) {
                    // What the check changed (members expired) still stands.
                    if after != before && !before.protocol_type.is_empty() {
                        self.save_classic(&mut tx, group, &before, &after).await?;
                        tx.commit().await?;
                    } else {
                        tx.rollback().await?;
                    }
                    return Ok(Err(e));
                }
                if after != before && !before.protocol_type.is_empty() {
                    self.save_classic(&mut tx, group, &before, &after).await?;
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
}

fn classic_member(r: &AnyRow) -> Result<Member> {
    let id: String = r.try_get("member_id")?;
    let protocols: Option<Vec<u8>> = r.try_get("protocols")?;
    let protocols =
        decode_protocols(protocols.as_deref().unwrap_or_default()).ok_or_else(|| {
            MetadataError::Inconsistent(format!("member {id}: its stored protocols do not decode"))
        })?;
    let assignment: Option<Vec<u8>> = r.try_get("member_assignment")?;
    Ok(Member {
        client_id: r.try_get("client_id")?,
        host: r.try_get("client_host")?,
        session_timeout_ms: r.try_get("session_timeout_ms")?,
        rebalance_timeout_ms: r.try_get("rebalance_timeout_ms")?,
        protocols,
        assignment: assignment.unwrap_or_default(),
        joined: r.try_get::<i64, _>("joined")? != 0,
        generation: r.try_get("member_generation")?,
        last_heartbeat_ms: r.try_get("last_heartbeat_ms")?,
        joined_at_ms: r.try_get("joined_at_ms")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn protocols_round_trip(p in prop::collection::vec(("[a-z-]{0,20}", prop::collection::vec(any::<u8>(), 0..64)), 0..5)) {
            prop_assert_eq!(decode_protocols(&encode_protocols(&p)), Some(p));
        }

        #[test]
        fn any_bytes_decode_or_are_refused(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_protocols(&b);
        }
    }
}
