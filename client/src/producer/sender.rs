//! The sender task: seals lingering batches, groups ready partitions into one request per
//! leader, and settles each partition's batches from the answer (retry, fail, or resolve).

use super::*;

/// Partitions are added to a produce request while it carries fewer bytes than this (unless
/// the agents decode less); the last one added may take it past, up to the agents' limit.
pub(super) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Room left in a request for its protobuf framing: topic names and field tags.
pub(super) const REQUEST_FRAMING: usize = 512 * 1024;

/// The sender: seals batches that lingered long enough, fails those past the delivery
/// timeout, and sends the rest. It holds the producer only weakly, so dropping every
/// `Producer` ends it (and, with it, its alarm's thread). It sleeps until `wake` is notified:
/// by a send, a request coming back, or the alarm at the next instant something is due.
pub(super) async fn sender(inner: Weak<Inner>, wake: Arc<Notify>, alarm: Alarm) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let next = strong.dispatch();
        drop(strong);
        let idle = Instant::now() + Duration::from_secs(1);
        alarm.set(next.map_or(idle, |n| n.min(idle)));
        wake.notified().await;
    }
}

/// One request being built: the partitions going to one agent.
pub(super) type RequestParts = Vec<(Arc<str>, u32, Vec<SealedBatch>)>;

impl Inner {
    /// Most bytes of records one batch may hold: the producer's `batch_bytes`, and what keeps
    /// the encoded batch within the agents' limit.
    pub(super) fn payload_limit(&self) -> usize {
        let agent = self.cluster.limits().max_batch_bytes;
        self.config
            .batch_bytes
            .min(agent.saturating_sub(batch::encoded_len_bound(0)))
    }

    /// Does everything due now; returns when something will next be due.
    pub(super) fn dispatch(self: &Arc<Inner>) -> Option<Instant> {
        let cfg = &self.config;
        let now = Instant::now();
        let closing = self.closed.load(Ordering::Acquire);
        let mut next: Option<Instant> = None;
        let mut soonest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let mut unknown: Vec<String> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        let stamp_with = if cfg.idempotence {
            self.identity_for_new_batches()
        } else {
            None
        };
        let mut failed_stamped = false;
        let mut accum = self.accum.lock().unwrap_or_else(|p| p.into_inner());

        // Partitions ready to send, by leader address.
        let mut ready: HashMap<String, Vec<(String, u32)>> = HashMap::new();
        for (name, topic) in accum.iter_mut() {
            for (p, q) in topic.partitions.iter_mut().enumerate() {
                // While another sealed batch could not go out (a partition has at most
                // MAX_BATCHES_PER_PARTITION batches outstanding, the agent's de-duplication
                // window), the open batch keeps filling past its linger, as Kafka's does,
                // instead of queueing small batches that would each take a place in the
                // window. Requests coming back, or failing by their timeout, release it.
                let held = q.outstanding() + q.sealed.len() >= limits::MAX_BATCHES_PER_PARTITION;
                let (due, expired) = ripen(q, now, cfg.linger, cfg.delivery_timeout, closing, held);
                if let Some(due) = due {
                    soonest(due);
                }
                failed_stamped |= expired;
                let Some(front) = q.sealed.front() else {
                    continue;
                };
                if q.in_flight.len() >= cfg.in_flight_per_partition() {
                    continue;
                }
                // The agent's de-duplication window is all out already.
                if cfg.idempotence && q.outstanding() >= batch::DEDUPE_WINDOW {
                    continue;
                }
                // After a failure, what is in flight comes back first: then the batches go out
                // again in order, from the first that was not stored.
                if q.retry_at.is_some() && !q.in_flight.is_empty() {
                    continue;
                }
                if cfg.idempotence && front.stamp.is_none() && stamp_with.is_none() {
                    // Waiting for the producer's (next) epoch.
                    continue;
                }
                if let Some(t) = q.retry_at.filter(|t| *t > now) {
                    // A new leader ends the wait at once. While the failed one is still
                    // named (its lease has not run out yet), look again every base backoff,
                    // so a failover costs the lease TTL and not the grown backoff as well.
                    let cached = self.cluster.cached_leader(name, p as u32);
                    let moved = matches!((&cached, &q.failed_leader),
                        (Some(Some(now_leader)), Some(failed)) if now_leader != failed);
                    if !moved {
                        if q.failed_leader.is_some()
                            && self
                                .cluster
                                .cached_age(name)
                                .is_some_and(|age| age >= cfg.retry_backoff)
                        {
                            stale.push(name.clone());
                        }
                        soonest(t.min(now + cfg.retry_backoff));
                        continue;
                    }
                    q.retry_at = None;
                }
                match self.cluster.cached_leader(name, p as u32) {
                    Some(Some(addr)) => ready
                        .entry(addr)
                        .or_default()
                        .push((name.clone(), p as u32)),
                    _ => {
                        unknown.push(name.clone());
                        q.retry_at = Some(now + cfg.retry_backoff);
                        soonest(now + cfg.retry_backoff);
                    }
                }
            }
        }

        // Partitions join a request while it is under the soft budget, each with its whole
        // window of batches unless that would pass what the agents decode (the hard limit).
        // The soft budget leaves room for one more batch, so even the first batch of the last
        // partition added fits.
        let agent_limits = self.cluster.limits();
        let hard_limit = agent_limits
            .max_request_bytes
            .saturating_sub(REQUEST_FRAMING)
            .max(1);
        let request_budget = MAX_REQUEST_BYTES
            .min(hard_limit.saturating_sub(agent_limits.max_batch_bytes))
            .max(1);
        // An agent holds what it is sent until its next flush, up to `flush_interval` away:
        // while a request waits there, the next goes at most every interval / max_in_flight,
        // so the slots are spread over the wait instead of all taken at its start (which
        // would leave what is sealed later for the flush after).
        let spacing = agent_limits.flush_interval / cfg.max_in_flight as u32;
        for (addr, parts) in ready {
            let conn = match self.cluster.conn(&addr) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot reach the leader's address");
                    continue;
                }
            };
            let busy = conn.in_flight.available_permits() < cfg.max_in_flight;
            let last_sent = *conn.last_sent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = last_sent
                .map(|t| t + spacing)
                .filter(|at| busy && *at > now)
            {
                soonest(at);
                continue;
            }
            let mut parts = parts.into_iter().peekable();
            while parts.peek().is_some() {
                // Without a free request slot the partitions wait for a request to finish,
                // which wakes the sender.
                let Ok(slot) = conn.in_flight.clone().try_acquire_owned() else {
                    break;
                };
                let mut request: RequestParts = Vec::new();
                let mut bytes = 0;
                while bytes < request_budget && request.len() < limits::MAX_PRODUCE_PARTITIONS {
                    let Some((name, p)) = parts.next() else { break };
                    let Some(topic) = accum.get_mut(&name) else {
                        continue;
                    };
                    let q = &mut topic.partitions[p as usize];
                    let room = hard_limit.saturating_sub(bytes);
                    let mut batches = take_batches(q, cfg.idempotence, stamp_with, room);
                    if batches.is_empty() {
                        continue;
                    }
                    let sending = Instant::now();
                    for b in &mut batches {
                        if let Some(sealed) = b.sealed_at.take() {
                            let m = &self.metrics;
                            m.linger.record(sealed.saturating_duration_since(b.created));
                            m.queue.record(sending.saturating_duration_since(sealed));
                        }
                    }
                    bytes += batches.iter().map(SealedBatch::size).sum::<usize>();
                    q.in_flight.push(InFlight {
                        outcomes: batches.iter().map(|b| b.outcome.clone()).collect(),
                        behind: !q.in_flight.is_empty(),
                    });
                    request.push((topic.name.clone(), p, batches));
                }
                if request.is_empty() {
                    // Nothing these partitions may send now: free the slot, send nothing.
                    break;
                }
                *conn.last_sent.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                tokio::spawn(send_request(
                    self.clone(),
                    addr.clone(),
                    conn.clone(),
                    slot,
                    request,
                ));
            }
        }
        drop(accum);

        stale.sort_unstable();
        stale.dedup();
        for topic in unknown.into_iter().chain(stale) {
            self.refresh_later(topic);
        }
        if failed_stamped {
            self.renew_identity_later();
        }
        self.start_identity_renewal();
        next
    }
}

impl Inner {
    /// Fetches a topic's metadata in the background, once at a time per topic. A topic that
    /// no longer exists fails its queued records at once.
    pub(super) fn refresh_later(self: &Arc<Inner>, topic: String) {
        if !self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.clone())
        {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let result = inner.cluster.refresh(&topic).await;
            inner
                .refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&topic);
            if let Err(e) = result
                && !e.is_retriable()
            {
                let mut accum = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = accum.get_mut(&topic) {
                    for q in &mut t.partitions {
                        for b in q.sealed.drain(..) {
                            b.fail(e.clone());
                        }
                    }
                }
            }
            inner.wake.notify_one();
        });
    }

    /// Settles one partition's part of a finished request: acknowledge, queue again for a
    /// retry (in front, so order holds), or fail.
    pub(super) fn settle(
        &self,
        q: &mut PartitionQueue,
        topic: &str,
        addr: &str,
        batches: Vec<SealedBatch>,
        result: Result<Vec<i64>>,
    ) {
        let cfg = &self.config;
        let mut behind = false;
        if let Some(first) = batches.first() {
            q.in_flight.retain(|r| {
                let this = r
                    .outcomes
                    .first()
                    .is_some_and(|o| Arc::ptr_eq(o, &first.outcome));
                behind |= this && r.behind;
                !this
            });
        }
        // A batch refused for a gap in its sequence that an earlier request of the partition
        // explains: one that was out when this was sent (the agent may have seen this first),
        // or one that failed and waits to be sent again. It goes back in line behind it.
        let behind_a_gap = |e: &ClientError| {
            e.code() == Some(ErrorCode::OutOfOrderSequence)
                && (behind || q.retry_at.is_some() || !q.in_flight.is_empty())
        };
        match result {
            Ok(offsets) => {
                q.retry_at = None;
                q.failed_leader = None;
                for (b, base) in batches.into_iter().zip(offsets) {
                    b.outcome.set(Ok(base));
                }
            }
            Err(e) if behind_a_gap(&e) => {
                tracing::debug!(topic, error = %e, "sent ahead of a retried batch; resending");
                requeue(q, batches);
                q.retry_at.get_or_insert_with(Instant::now);
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(topic, error = %e, "produce failed; retrying");
                self.cluster.forget(topic);
                let mut attempts = 0;
                let mut again = Vec::with_capacity(batches.len());
                for mut b in batches {
                    b.attempts += 1;
                    attempts = attempts.max(b.attempts);
                    if cfg.max_retries.is_some_and(|m| b.attempts > m) {
                        if b.stamp.is_some() {
                            self.renew_identity_later();
                        }
                        b.fail(e.clone());
                    } else {
                        b.last_error = Some(last_cause(b.last_error.take(), &e));
                        again.push(b);
                    }
                }
                requeue(q, again);
                let backoff =
                    Backoff::new(cfg.retry_backoff, cfg.retry_backoff_max).delay(attempts);
                q.retry_at = Some(Instant::now() + backoff);
                q.failed_leader = Some(addr.to_string());
            }
            Err(e) => {
                for b in batches {
                    if b.stamp.is_some() {
                        self.renew_identity_later();
                    }
                    b.fail(e.clone());
                }
            }
        }
    }
}

/// What a batch reports if its delivery times out: the newest error, except that a routing
/// error (a leader moved, an agent stopping or unreachable) does not hide the last real cause
/// seen before it (a store unavailable, the agent throttling).
pub(super) fn last_cause(previous: Option<ClientError>, new: &ClientError) -> ClientError {
    let is_cause = |e: &ClientError| {
        matches!(
            e.code(),
            Some(
                ErrorCode::StorageUnavailable
                    | ErrorCode::MetadataUnavailable
                    | ErrorCode::Throttled
            )
        )
    };
    match previous {
        Some(p) if is_cause(&p) && !is_cause(new) => p,
        _ => new.clone(),
    }
}

/// Sends one request and settles each of its partitions.
pub(super) async fn send_request(
    inner: Arc<Inner>,
    addr: String,
    conn: AgentConn,
    slot: OwnedSemaphorePermit,
    mut parts: RequestParts,
) {
    let started = Instant::now();
    let req = pb::ProduceRequest {
        partitions: parts
            .iter_mut()
            .map(|(topic, partition, batches)| pb::PartitionBatches {
                topic: topic.to_string(),
                partition: *partition,
                batches: batches.iter_mut().map(SealedBatch::encode).collect(),
            })
            .collect(),
    };
    let mut client = conn.client.clone();
    let sent = tokio::time::timeout(inner.cluster.request_timeout(), client.produce(req)).await;
    drop(slot);
    inner.metrics.request.record(started.elapsed());
    let whole: std::result::Result<pb::ProduceResponse, ClientError> = match sent {
        Err(_) => Err(ClientError::Unreachable("produce request timed out".into())),
        Ok(Err(status)) => Err(ClientError::from_status(&status)),
        Ok(Ok(r)) => {
            let r = r.into_inner();
            match ClientError::from_pb(r.error.as_ref()) {
                Some(e) => Err(e),
                None => Ok(r),
            }
        }
    };
    let mut accum = inner.accum.lock().unwrap_or_else(|p| p.into_inner());
    for (i, (topic, partition, batches)) in parts.into_iter().enumerate() {
        let result = match &whole {
            Err(e) => Err(e.clone()),
            Ok(resp) => match resp.results.get(i) {
                Some(r) if r.topic == *topic && r.partition == partition => {
                    match ClientError::from_pb(r.error.as_ref()) {
                        Some(e) => Err(e),
                        None if r.base_offsets.len() == batches.len() => Ok(r.base_offsets.clone()),
                        // An agent that does not list each batch's offset: they are adjacent.
                        None => Ok(batches
                            .iter()
                            .scan(r.base_offset, |next, b| {
                                let base = *next;
                                *next += b.record_count;
                                Some(base)
                            })
                            .collect()),
                    }
                }
                _ => Err(ClientError::Agent {
                    code: pb::ErrorCode::Unknown,
                    message: format!("the agent's answer has no result for {topic}-{partition}"),
                }),
            },
        };
        if let Some(t) = accum.get_mut(&*topic) {
            inner.settle(
                &mut t.partitions[partition as usize],
                &topic,
                &addr,
                batches,
                result,
            );
        }
    }
    drop(accum);
    inner.wake.notify_one();
}
