//! Garbage collection: objects no index row points to are marked, then deleted once unreferenced
//! for the grace period; objects the store never recorded are deleted once their name says they
//! are older than the grace. One agent of the cluster (the live one with the smallest id) runs it.

use super::*;

/// What one garbage-collection pass decides, before it touches anything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcPlan {
    /// Known objects found unreferenced for the first time.
    pub mark: Vec<String>,
    /// Known objects unreferenced for at least the grace period.
    pub delete: Vec<String>,
    /// Stored objects the metadata store has no row for, older than the grace period.
    pub orphans: Vec<String>,
}

/// The reference logic. `listed` must be read before `records`, so that an object committed
/// meanwhile is either known or, being younger than half the grace, no orphan. `store_now_ms` is
/// the metadata store's clock (which marked the records); `wall_now_ms` this agent's (which,
/// like the writers', named the objects).
pub fn gc_plan(
    listed: &[ObjectMeta],
    records: &[ObjectRecord],
    referenced: &HashSet<String>,
    store_now_ms: i64,
    wall_now_ms: i64,
    grace_ms: i64,
) -> GcPlan {
    let mut plan = GcPlan::default();
    let known: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    for r in records {
        if referenced.contains(&r.key) {
            continue;
        }
        if r.unreferenced_since_ms < 0 {
            plan.mark.push(r.key.clone());
        } else if store_now_ms - r.unreferenced_since_ms >= grace_ms {
            plan.delete.push(r.key.clone());
        }
    }
    for o in listed {
        if known.contains(o.key.as_str()) || referenced.contains(&o.key) {
            continue;
        }
        if object_time_ms(&o.key).is_some_and(|t| wall_now_ms - t >= grace_ms) {
            plan.orphans.push(o.key.clone());
        }
    }
    plan
}

/// What a garbage-collection pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub marked: u64,
    pub deleted: u64,
    pub orphans_deleted: u64,
    pub bytes_deleted: u64,
    /// Objects marked and waiting out the grace after this pass.
    pub waiting: u64,
}

/// Runs garbage collection every `gc_interval_ms` while this agent is the live agent with
/// the smallest id.
pub async fn run_gc(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.config.gc_interval_ms);
    while next_round(period, &mut stop).await {
        let ours = match shared
            .meta
            .list_agents(Some(shared.config.lease_ttl_ms as i64))
            .await
        {
            Ok(agents) => agents.iter().map(|a| a.id.as_str()).min() == Some(&*shared.id),
            Err(e) => {
                tracing::warn!(error = %e, "garbage collection: cannot list agents");
                false
            }
        };
        if !ours {
            continue;
        }
        let cfg = &shared.config;
        match shared
            .meta
            .expire_idle(cfg.producer_expiry_ms as i64, cfg.group_expiry_ms as i64)
            .await
        {
            Ok((0, 0, 0)) => {}
            Ok((states, ids, groups)) => {
                tracing::info!(states, ids, groups, "expired idle producers and groups");
            }
            Err(e) => tracing::warn!(error = %e, "expiring idle producers and groups failed"),
        }
        let started = std::time::Instant::now();
        match gc_pass(&shared).await {
            Ok(r) => {
                shared.metrics.gc_seconds.observe(started.elapsed());
                if r.deleted + r.orphans_deleted > 0 {
                    tracing::info!(
                        deleted = r.deleted,
                        orphans = r.orphans_deleted,
                        bytes = r.bytes_deleted,
                        waiting = r.waiting,
                        "garbage collected"
                    );
                }
            }
            Err(e) => {
                shared.metrics.gc_errors.inc();
                tracing::warn!(error = %e, "garbage collection failed; retrying next interval");
            }
        }
    }
}

/// One garbage-collection pass over the whole store.
pub async fn gc_pass(shared: &Shared) -> Result<GcReport> {
    let grace = shared.config.gc_grace_ms as i64;
    let mut listed = shared.store.list(FLUSH_PREFIX).await?;
    listed.extend(shared.store.list(SEGMENT_PREFIX).await?);
    let records = shared.meta.object_records().await?;
    let unreferenced = shared.meta.unreferenced_objects().await?;
    // Known objects are referenced unless the store just said otherwise; an object committed
    // after `records` was read is not among them, and is too young to be an orphan.
    let referenced: HashSet<String> = records
        .iter()
        .filter(|r| !unreferenced.contains(&r.key))
        .map(|r| r.key.clone())
        .collect();
    let store_now = shared.meta.now_ms().await?;
    let plan = gc_plan(&listed, &records, &referenced, store_now, now_ms(), grace);
    let sizes: HashMap<&str, u64> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut report = GcReport::default();
    if !plan.mark.is_empty() {
        shared.meta.mark_unreferenced(&plan.mark).await?;
        report.marked = plan.mark.len() as u64;
    }
    let m = &shared.metrics;
    // A row goes before its object: a crash between the two leaves an orphan, which a later
    // pass deletes, never a row without its object.
    let forgotten = shared
        .meta
        .forget_objects(&plan.delete, store_now - grace)
        .await?;
    // Deletes run DELETES_IN_FLIGHT at a time: one at a time, an object store's round trip
    // would cap collection below what a busy cluster writes.
    let deletes: Vec<_> = forgotten
        .iter()
        .chain(&plan.orphans)
        .map(|key| {
            let (store, key) = (shared.store.clone(), key.clone());
            async move {
                let result = store.delete(&key).await;
                (key, result)
            }
        })
        .collect();
    let results: Vec<(String, Result<(), crate::object_store::StorageError>)> =
        futures::stream::iter(deletes)
            .buffer_unordered(DELETES_IN_FLIGHT)
            .collect()
            .await;
    for (key, result) in results {
        match result {
            Ok(()) => {
                let bytes = sizes.get(key.as_str()).copied().unwrap_or(0);
                report.bytes_deleted += bytes;
                m.gc_bytes_deleted.inc_by(bytes);
            }
            Err(e) => {
                m.gc_errors.inc();
                tracing::warn!(object = %key, error = %e, "could not delete; a later pass retries");
            }
        }
    }
    report.deleted = forgotten.len() as u64;
    report.orphans_deleted = plan.orphans.len() as u64;
    report.waiting = records
        .iter()
        .filter(|r| !referenced.contains(&r.key))
        .count() as u64
        - report.deleted;
    m.gc_objects_deleted.inc_by(report.deleted);
    m.gc_orphans_deleted.inc_by(report.orphans_deleted);
    m.gc_objects_waiting
        .set(i64::try_from(report.waiting).unwrap_or(i64::MAX));
    m.gc_runs.inc();
    Ok(report)
}
