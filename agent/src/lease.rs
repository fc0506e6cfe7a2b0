//! Partition leases: which agent writes which partition.
//!
//! Every third of the lease TTL the agent heartbeats, renews what it holds, notices what it
//! lost, and takes the free or expired partitions that rendezvous hashing over the live agents
//! assigns to it. The metadata store's clock alone judges expiry, and every change of holder
//! increments the epoch that the flush commit checks, so a paused or partitioned agent can
//! never commit after losing a lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::Result;
use crate::Shared;

/// Rendezvous (highest random weight) hashing: the agent that should own a partition. Stable
/// as agents come and go: only the partitions of an agent that left (or their share for one
/// that joined) move.
pub fn rendezvous_owner<'a>(agents: &'a [String], topic: &str, partition: u32) -> Option<&'a str> {
    agents
        .iter()
        .max_by_key(|a| weight(a, topic, partition))
        .map(String::as_str)
}

fn weight(agent: &str, topic: &str, partition: u32) -> u64 {
    // FNV-1a over the three fields, then a 64-bit finaliser (splitmix64) to spread it.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in agent
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(topic.as_bytes())
        .chain([0u8].iter())
        .chain(partition.to_be_bytes().iter())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Runs the lease loop until `stop` turns true.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.lease_ttl_ms / 3);
    loop {
        if let Err(e) = tick(&shared).await {
            tracing::warn!(error = %e, "lease round failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shared.lease_kick.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One round: heartbeat, reconcile topics, renew, take.
pub async fn tick(shared: &Shared) -> Result<()> {
    let _turn = shared.lease_round.lock().await;
    let meta = &shared.meta;
    let ttl = shared.config.lease_ttl_ms as i64;
    if !meta.heartbeat_agent(&shared.id).await? {
        meta.register_agent(&shared.id, &shared.advertise).await?;
    }

    // Topics deleted or recreated elsewhere.
    let topics = meta.list_topics().await?;
    let by_name: HashMap<&str, i64> = topics
        .iter()
        .map(|t| (t.name.as_str(), t.created_at_ms))
        .collect();
    for t in shared.topics.all() {
        if by_name.get(&*t.name) != Some(&t.created_at_ms) {
            shared.topics.remove(&t.name);
        }
    }
    for row in &topics {
        shared.topics.upsert(row);
    }

    // Renew; whatever we thought we held and the store no longer says is ours is lost.
    let held = meta.renew_leases(&shared.id, ttl).await?;
    let held_epochs: HashMap<(&str, u32), &crate::metadata::Lease> = held
        .iter()
        .map(|l| ((l.topic.as_str(), l.partition), l))
        .collect();
    for t in shared.topics.all() {
        for p in &t.partitions {
            let Some(epoch) = p.lease_epoch() else {
                continue;
            };
            match held_epochs.get(&(&*t.name, p.partition)) {
                Some(l) if l.epoch == epoch => {}
                _ => {
                    tracing::warn!(topic = %t.name, partition = p.partition, epoch, "lease lost");
                    p.drop_lease(Some(epoch));
                }
            }
        }
    }
    // Held in the store but not in memory (after an uncertain commit): adopt afresh.
    for l in &held {
        if let Some(p) = shared
            .topics
            .get(&l.topic)
            .and_then(|t| t.partitions.get(l.partition as usize).cloned())
        {
            if p.lease_epoch() != Some(l.epoch) {
                p.adopt_lease(l.epoch, l.log_start_offset, l.high_watermark);
            }
        }
    }

    // Take the free partitions that map to this agent.
    let free = meta.free_partitions().await?;
    if free.is_empty() {
        return Ok(());
    }
    let agents: Vec<String> = meta
        .list_agents(Some(ttl))
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    let mine: Vec<(String, u32)> = free
        .into_iter()
        .filter(|(t, p)| rendezvous_owner(&agents, t, *p).is_none_or(|owner| owner == shared.id))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    for l in meta.acquire_leases(&shared.id, ttl, &mine).await? {
        let Some(row) = topics.iter().find(|t| t.name == l.topic) else {
            continue;
        };
        let topic = shared.topics.upsert(row);
        if let Some(p) = topic.partitions.get(l.partition as usize) {
            tracing::info!(topic = %l.topic, partition = l.partition, epoch = l.epoch, "lease acquired");
            p.adopt_lease(l.epoch, l.log_start_offset, l.high_watermark);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_balanced_and_moves_little() {
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut counts = HashMap::new();
        for p in 0..3000 {
            *counts
                .entry(rendezvous_owner(&three, "t", p).unwrap())
                .or_insert(0) += 1;
        }
        for (_, n) in counts {
            assert!((850..1150).contains(&n), "unbalanced: {n}");
        }
        // Removing an agent moves only the partitions it owned.
        let two: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        for p in 0..3000 {
            let before = rendezvous_owner(&three, "t", p).unwrap();
            let after = rendezvous_owner(&two, "t", p).unwrap();
            if before != "c" {
                assert_eq!(before, after);
            }
        }
        assert_eq!(rendezvous_owner(&[], "t", 0), None);
    }
}
