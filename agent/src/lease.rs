//! Partition leases: which agent writes which partition, and the rounds that keep it so.
//!
//! Every heartbeat the agent runs one round: it marks agents that went silent, or whose
//! session with the metadata store ended (see [`crate::metadata::Session`]), as lost, renews
//! the leases it holds (and forgets those it lost), then reads one snapshot of the live agents
//! and every partition's holder and follows the [`assignment`] plan: hand back (after
//! flushing) what another live agent should lead, take the free or expired leases that map to
//! it. It heartbeats its registration first, but only after a round that succeeded whole:
//! an agent whose rounds fail stops looking live.
//! An agent whose flushes cannot commit sits rounds out (see `sit_out`). The metadata store's clock
//! alone judges expiry, and every change of holder increments the epoch that the flush
//! commit checks, so a paused or partitioned agent can never commit after losing a lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Shared;
use crate::assignment::{self, Slot};
use crate::error::Result;
use crate::metadata::{Lease, Session};
use crate::partitions::PartitionState;

/// Leases one round takes at most. After a kill thousands may be free at once; taken in
/// bounded slices, each round's transactions stay short (a round that overruns the metadata
/// deadline would cost the agent its heartbeat), and the next round follows at once.
const ACQUIRE_PER_ROUND: usize = 256;

/// Runs lease rounds until `stop` turns true.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.heartbeat_ms);
    loop {
        let sleep = match tick(&shared).await {
            Ok(Some(soon)) => soon.min(period),
            Ok(None) => period,
            Err(e) => {
                tracing::warn!(error = %e, "lease round failed; retrying");
                period
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.lease_kick.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One round. Returns how soon the next one should run when a lease this agent would take
/// over is about to expire (its holder has gone quiet), so takeover does not wait a period.
pub async fn tick(shared: &Shared) -> Result<Option<Duration>> {
    let _turn = shared.lease_round.lock().await;
    let meta = &shared.lease_meta;
    let ttl = shared.config.lease_ttl_ms as i64;
    if sit_out(shared) {
        return Ok(None);
    }
    // The heartbeat comes before the renewal, so a lease never outlives the heartbeat that
    // makes its holder look live (its successor takes it the moment it expires). It is sent
    // only after a round that succeeded whole: an agent that reaches the store for some
    // statements but not others (its transactions hang, say) stops looking live, and its
    // partitions move instead of being handed back to it.
    let session = current_session(shared);
    if shared.last_round_ok.swap(false, Ordering::AcqRel) {
        heartbeat(shared, session.key()).await?;
    }
    let ended = ended_sessions(shared, &session).await?;
    for (lost, why) in meta.reap_lost_agents(ttl, &ended).await? {
        tracing::warn!(agent = %lost, why, "agent lost");
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
    *shared
        .last_renewal
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    let held_epochs: HashMap<(&str, u32), i64> = held
        .iter()
        .map(|l| ((l.topic.as_str(), l.partition), l.epoch))
        .collect();
    for t in shared.topics.all() {
        for p in &t.partitions {
            let Some(epoch) = p.lease_epoch() else {
                continue;
            };
            if held_epochs.get(&(&*t.name, p.partition)) != Some(&epoch) {
                tracing::warn!(topic = %t.name, partition = p.partition, epoch, "lease lost");
                p.drop_lease(Some(epoch));
            }
        }
    }
    // Held in the store but not in memory (after an uncertain commit): adopt afresh.
    for l in &held {
        if let Some(p) = partition_state(shared, &l.topic, l.partition)
            && p.lease_epoch() != Some(l.epoch)
        {
            adopt(shared, &p, l).await?;
        }
    }

    // One snapshot of who is live and who holds what, and the plan it gives.
    let agents: Vec<String> = meta
        .list_agents(Some(ttl))
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    let snapshot = meta.lease_holders().await?;
    let (rows, now) = (&snapshot.partitions, snapshot.now_ms);
    let slots: Vec<Slot<'_>> = rows
        .iter()
        .map(|r| Slot {
            topic: &r.topic,
            partition: r.partition,
            holder: r.leader_id.as_deref(),
        })
        .collect();
    let planned = plan_for(shared, &agents, &slots);
    let (plan, wanted) = (&planned.0, &planned.1);

    for &s in &plan.hand_back {
        let row = &rows[s];
        let to = wanted[s].map_or("another agent", |k| agents[k].as_str());
        if let Some(state) = partition_state(shared, &row.topic, row.partition) {
            hand_back(shared, &state, to).await?;
        }
    }

    let more_to_take = plan.acquire.len() > ACQUIRE_PER_ROUND;
    if !shared.shutting_down.load(Ordering::Acquire) && !plan.acquire.is_empty() {
        let mine: Vec<(String, u32)> = plan
            .acquire
            .iter()
            .take(ACQUIRE_PER_ROUND)
            .map(|&s| (rows[s].topic.clone(), rows[s].partition))
            .collect();
        let taken = meta.acquire_leases(&shared.id, ttl, &mine).await?;
        // The leases come in key order: one read of the producer states per topic.
        for run in taken.chunk_by(|a, b| a.topic == b.topic) {
            let Some(row) = topics.iter().find(|t| t.name == run[0].topic) else {
                continue;
            };
            let topic = shared.topics.upsert(row);
            let ids: Vec<u32> = run.iter().map(|l| l.partition).collect();
            let mut producers = meta
                .producer_states_of(&row.name, &ids, shared.config.producer_expiry_ms as i64)
                .await?;
            for l in run {
                if let Some(p) = topic.partitions.get(l.partition as usize) {
                    tracing::info!(topic = %l.topic, partition = l.partition, epoch = l.epoch, "lease acquired");
                    let states = producers.remove(&l.partition).unwrap_or_default();
                    p.adopt_lease(l.epoch, l.log_start_offset, l.high_watermark, states);
                }
            }
        }
    }

    shared.last_round_ok.store(true, Ordering::Release);

    // Leases we would inherit: wake just after the first one runs out.
    let soonest = plan
        .successor_of
        .iter()
        .map(|&s| rows[s].lease_expires_ms - now)
        .min();
    if more_to_take {
        return Ok(Some(Duration::ZERO));
    }
    Ok(soonest.map(|ms| Duration::from_millis(ms.max(0) as u64 + 5)))
}

/// Refreshes this agent's heartbeat and the session its row names, registering again if
/// the row is gone or was marked lost.
async fn heartbeat(shared: &Shared, session: i64) -> Result<()> {
    let meta = &shared.lease_meta;
    if !meta.heartbeat_agent(&shared.id, session).await? {
        let kafka = shared.kafka.as_ref().map(|k| k.advertise.as_str());
        meta.register_agent(&shared.id, &shared.advertise, kafka, session)
            .await?;
    }
    Ok(())
}

fn current_session(shared: &Shared) -> Arc<Session> {
    shared
        .session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// The other agents whose session with the metadata store has ended (their process is gone),
/// by the session key their row names: their leases are free at once. Judged only while this
/// agent's own session holds and has held for two heartbeats: when the store comes back after
/// an outage every session has ended, and each agent needs a round to name its new one. An
/// agent whose own session ended opens a new one and names it before anyone can take the old
/// one's end for its own.
async fn ended_sessions(shared: &Shared, session: &Session) -> Result<Vec<(String, i64)>> {
    if session.key() == 0 {
        return Ok(Vec::new());
    }
    let meta = &shared.lease_meta;
    if !session.holds(meta.deadlines().call).await {
        tracing::warn!("this agent's session with the metadata store ended; opening a new one");
        let fresh = Arc::new(meta.open_session().await?);
        heartbeat(shared, fresh.key()).await?;
        *shared.session.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        return Ok(Vec::new());
    }
    if session.age() < Duration::from_millis(shared.config.heartbeat_ms * 2) {
        return Ok(Vec::new());
    }
    Ok(meta
        .agent_sessions()
        .await?
        .into_iter()
        .filter(|s| !s.alive && !s.lost && s.id != shared.id)
        .map(|s| (s.id, s.key))
        .collect())
}

/// A lease round's plan, kept for the next round: with thousands of partitions the plan
/// (an assignment per other holder) costs far more than comparing snapshots.
#[derive(Debug)]
pub struct CachedPlan {
    /// A digest of the live agents and every partition's holder, in the snapshot's order.
    snapshot: u64,
    planned: Arc<Planned>,
}

/// A round's plan for this agent and the wanted owner of every slot.
type Planned = (assignment::Plan, Vec<Option<usize>>);

/// A digest of what the plan depends on: the live agents and each slot's key and holder.
fn snapshot_digest(agents: &[String], slots: &[Slot<'_>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    agents.hash(&mut h);
    slots.len().hash(&mut h);
    for s in slots {
        (s.topic, s.partition, s.holder).hash(&mut h);
    }
    h.finish()
}

/// The plan for this snapshot and the wanted owner of every slot: the last round's when
/// nothing it depends on changed, else computed afresh.
fn plan_for(shared: &Shared, agents: &[String], slots: &[Slot<'_>]) -> Arc<Planned> {
    let snapshot = snapshot_digest(agents, slots);
    let mut cached = shared.lease_plan.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cached.as_ref().filter(|c| c.snapshot == snapshot) {
        return c.planned.clone();
    }
    let planned = Arc::new((
        assignment::plan(&shared.id, agents, slots),
        assignment::assign(agents, slots),
    ));
    *cached = Some(CachedPlan {
        snapshot,
        planned: planned.clone(),
    });
    planned
}

/// Whether this round is sat out because the agent's flushes cannot commit. Renewing leases
/// for partitions that cannot be written would keep them from agents that could: once commits
/// have failed for a lease TTL without one succeeding, the agent drops its leases, stops
/// heartbeating and renewing until the last renewal has surely run out, then tries again (a
/// store that is down for everyone is by then back or still down for all, and nothing is lost
/// either way). A shorter stall of the store (a slow second under load) fails a flush or two
/// and nothing more: dropping thousands of leases over it would cost far more than it saves.
fn sit_out(shared: &Shared) -> bool {
    let now = Instant::now();
    let ttl = Duration::from_millis(shared.config.lease_ttl_ms);
    let mut until = shared
        .withheld_until
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(t) = *until {
        if now < t {
            return true;
        }
        *until = None;
        shared.writer.clear_failing();
        tracing::info!("leases withheld long enough; taking part in lease rounds again");
        return false;
    }
    let Some(since) = shared.writer.failing_since() else {
        return false;
    };
    if now.duration_since(since) < ttl {
        return false;
    }
    let renewed = shared
        .last_renewal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or(now);
    // The first time, until its leases have run out; again and again without a commit in
    // between, for twice as long each time (up to 32 lease TTLs), so an agent that stays sick
    // stops taking partitions back from the healthy ones every few seconds.
    let committed = shared.writer.flushed().0;
    let mut streak = shared.sit_outs.lock().unwrap_or_else(|p| p.into_inner());
    if streak.1 != committed {
        *streak = (0, committed);
    }
    streak.0 += 1;
    let backoff = streamhouse_proto::time::Backoff::new(ttl, ttl * 32).delay(streak.0);
    let leases_out = renewed + ttl + Duration::from_millis(50);
    *until = Some(if streak.0 == 1 {
        leases_out.max(now)
    } else {
        leases_out.max(now + backoff)
    });
    for t in shared.topics.all() {
        for p in &t.partitions {
            p.drop_lease(None);
        }
    }
    shared.metrics.leases_withheld.inc();
    tracing::warn!(
        failing_ms = now.duration_since(since).as_millis() as u64,
        sit_out_ms = until.map_or(0, |t| t.duration_since(now).as_millis() as u64),
        "flush commits keep failing: leases dropped and no longer renewed, so agents that \
         can commit take them"
    );
    true
}

fn partition_state(shared: &Shared, topic: &str, partition: u32) -> Option<Arc<PartitionState>> {
    shared
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(partition as usize).cloned())
}

/// Starts leading a partition: its bounds and producer table from the store, then the epoch.
async fn adopt(shared: &Shared, state: &PartitionState, lease: &Lease) -> Result<()> {
    let producers = shared
        .lease_meta
        .producer_states(
            &lease.topic,
            lease.partition,
            shared.config.producer_expiry_ms as i64,
        )
        .await?;
    state.adopt_lease(
        lease.epoch,
        lease.log_start_offset,
        lease.high_watermark,
        producers,
    );
    Ok(())
}

/// Gives a partition to the agent that should lead it: refuse new batches, flush the
/// buffered ones, then release the lease (only at our epoch) so its owner can take it.
async fn hand_back(shared: &Shared, state: &PartitionState, to: &str) -> Result<()> {
    let Some(epoch) = state.lease_epoch() else {
        return Ok(());
    };
    state.set_closing(true);
    shared.writer.sync().await;
    let released = shared
        .lease_meta
        .release_lease(
            &shared.id,
            &state.topic,
            state.partition,
            epoch,
            &format!("handed back to {to}"),
        )
        .await;
    match released {
        Ok(_) => {
            tracing::info!(topic = %state.topic, partition = state.partition, epoch, to,
                "lease handed back");
            state.drop_lease(Some(epoch));
            Ok(())
        }
        Err(e) => {
            state.set_closing(false);
            Err(e.into())
        }
    }
}
