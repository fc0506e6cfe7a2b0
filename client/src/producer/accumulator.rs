//! Batches on their way out: each partition's open batch, the sealed batches queued behind
//! it, and which of them the next request takes.

use super::*;

#[derive(Debug)]
pub(super) struct OpenBatch {
    pub(super) builder: BatchBuilder,
    pub(super) created: Instant,
    pub(super) outcome: Arc<BatchOutcome>,
    pub(super) permits: Option<OwnedSemaphorePermit>,
}

/// A batch's records, encoded (and compressed) once, on its first send.
#[derive(Debug)]
pub(super) enum Payload {
    Records(BatchBuilder),
    Encoded(Bytes),
}

/// A batch that has left its partition's open slot.
#[derive(Debug)]
pub(super) struct SealedBatch {
    pub(super) payload: Payload,
    pub(super) record_count: i64,
    pub(super) created: Instant,
    /// When it was sealed, until its first send (which records its linger and queue time).
    pub(super) sealed_at: Option<Instant>,
    pub(super) attempts: u32,
    pub(super) last_error: Option<ClientError>,
    pub(super) outcome: Arc<BatchOutcome>,
    /// Producer id, epoch and first sequence, given on the batch's first send and kept for
    /// every retry, so the agent recognises a retry.
    pub(super) stamp: Option<ProducerStamp>,
    /// Buffer space held until the batch's outcome is known.
    pub(super) _permits: Option<OwnedSemaphorePermit>,
    /// Its place in its partition: batches are sealed, numbered and sent in this order, and a
    /// retried batch goes back to it.
    pub(super) order: u64,
}

impl SealedBatch {
    pub(super) fn encode(&mut self) -> Bytes {
        let bytes = match std::mem::replace(&mut self.payload, Payload::Encoded(Bytes::new())) {
            Payload::Records(b) => b
                .finish(self.stamp.unwrap_or(ProducerStamp::NONE))
                .unwrap_or_default(),
            Payload::Encoded(b) => b,
        };
        self.payload = Payload::Encoded(bytes.clone());
        bytes
    }

    /// Encoded bytes: exact once encoded, the bound before.
    pub(super) fn size(&self) -> usize {
        match &self.payload {
            Payload::Records(b) => batch::encoded_len_bound(b.payload_len()),
            Payload::Encoded(b) => b.len(),
        }
    }

    pub(super) fn fail(self, e: ClientError) {
        self.outcome.set(Err(e));
    }
}

/// One request in flight, as its partition sees it.
#[derive(Debug)]
pub(super) struct InFlight {
    /// The outcomes of its batches for the partition.
    pub(super) outcomes: Vec<Arc<BatchOutcome>>,
    /// Sent while an earlier request of the partition was out: the agent may see it first
    /// and refuse it for the gap (requests are served concurrently), and then it is sent
    /// again rather than failed.
    pub(super) behind: bool,
}

/// One partition's records on their way out.
#[derive(Debug, Default)]
pub(super) struct PartitionQueue {
    pub(super) open: Option<OpenBatch>,
    pub(super) sealed: VecDeque<SealedBatch>,
    /// The requests in flight (the outcomes of each one's batches), oldest first: up to the
    /// producer's `max_in_flight_per_partition`. The agent appends a producer's batches
    /// strictly in sequence order, so pipelined requests keep the partition's order; after a
    /// failure nothing is resent until every request in flight has come back.
    pub(super) in_flight: Vec<InFlight>,
    /// Batches sealed so far: the next one's [`SealedBatch::order`].
    pub(super) sealed_count: u64,
    /// Backing off after a failure: nothing is sent before this, unless the partition gets
    /// a leader other than `failed_leader`, the agent the failed request went to.
    pub(super) retry_at: Option<Instant>,
    pub(super) failed_leader: Option<String>,
    /// The producer id and epoch `next_sequence` counts under; a new epoch, or a new id (after
    /// the cluster forgot the old one), starts again at 0.
    pub(super) sequence_identity: Option<(i64, i16)>,
    pub(super) next_sequence: i32,
}

#[derive(Debug)]
pub(super) struct TopicQueues {
    pub(super) name: Arc<str>,
    pub(super) partitions: Vec<PartitionQueue>,
    /// Where keyless records go until that partition's batch is sealed.
    pub(super) sticky: u32,
}

impl PartitionQueue {
    /// Batches in the requests in flight.
    pub(super) fn outstanding(&self) -> usize {
        self.in_flight.iter().map(|r| r.outcomes.len()).sum()
    }
}

impl TopicQueues {
    pub(super) fn new(topic: &str, count: u32) -> Self {
        TopicQueues {
            name: Arc::from(topic),
            partitions: (0..count).map(|_| PartitionQueue::default()).collect(),
            sticky: rand::random::<u32>() % count.max(1),
        }
    }
}

/// A batch is timed this much before the end of its linger (at most half of it), and sealed
/// when the sender's [`Alarm`] fires for it. The alarm fires within tens of microseconds of
/// its instant, so `linger` stays an upper bound, as in Kafka, short of it by this on
/// average; and batches due within this of each other are sealed by one wake-up.
pub(super) const LINGER_EARLY: Duration = Duration::from_micros(250);

/// Time passing for one partition at `now`: its open batch is sealed once it has lingered
/// `linger`, less up to [`LINGER_EARLY`] (at once when `closing`), unless the partition is
/// `held` (another batch could not be sent now: the batch keeps filling, and the sender
/// looks again when a request comes back), and sealed batches older than `delivery_timeout` fail
/// with [`ClientError::DeliveryTimeout`] naming their last error. Returns when this partition
/// next needs looking at (an open batch's linger, the oldest batch's delivery timeout), and
/// whether a failed batch carried a producer sequence.
pub(super) fn ripen(
    q: &mut PartitionQueue,
    now: Instant,
    linger: Duration,
    delivery_timeout: Duration,
    closing: bool,
    held: bool,
) -> (Option<Instant>, bool) {
    let mut due = None;
    if let Some(open) = &q.open {
        let sealed_at = open.created + linger;
        let early = LINGER_EARLY.min(linger / 2);
        if closing || (sealed_at <= now + early && !held) {
            seal(q);
        } else if sealed_at > now + early {
            due = Some(sealed_at - early);
        }
    }
    let mut failed_stamped = false;
    while q
        .sealed
        .front()
        .is_some_and(|b| b.created + delivery_timeout <= now)
    {
        if let Some(b) = q.sealed.pop_front() {
            failed_stamped |= b.stamp.is_some();
            let last_error = b
                .last_error
                .as_ref()
                .map_or_else(|| "never sent".to_string(), |e| e.to_string());
            let elapsed_ms = now.saturating_duration_since(b.created).as_millis() as u64;
            b.fail(ClientError::DeliveryTimeout {
                elapsed_ms,
                last_error,
            });
        }
    }
    if let Some(front) = q.sealed.front() {
        let timeout = front.created + delivery_timeout;
        due = Some(due.map_or(timeout, |d: Instant| d.min(timeout)));
    }
    (due, failed_stamped)
}

/// Moves the partition's open batch to its queue. True if there was one.
pub(super) fn seal(q: &mut PartitionQueue) -> bool {
    let Some(open) = q.open.take() else {
        return false;
    };
    q.sealed_count += 1;
    q.sealed.push_back(SealedBatch {
        order: q.sealed_count,
        record_count: open.builder.record_count() as i64,
        payload: Payload::Records(open.builder),
        created: open.created,
        sealed_at: Some(Instant::now()),
        attempts: 0,
        last_error: None,
        outcome: open.outcome,
        stamp: None,
        _permits: open.permits,
    });
    true
}

/// Takes the batches of a partition's next request: at most the agents' per-partition limit
/// (the de-duplication window) and, after the first, no more than `budget` bytes. With
/// idempotence each is numbered on its first send (retries keep theirs); batches not yet
/// numbered wait while there is no identity to number them with.
pub(super) fn take_batches(
    q: &mut PartitionQueue,
    idempotence: bool,
    stamp_with: Option<(i64, i16)>,
    budget: usize,
) -> Vec<SealedBatch> {
    let mut taken = 0;
    let mut out = Vec::new();
    // The agent recognises a retried batch among a producer's last DEDUPE_WINDOW batches on a
    // partition, so no more than that are ever outstanding.
    let outstanding = q.outstanding();
    let most = if idempotence {
        limits::MAX_BATCHES_PER_PARTITION.min(batch::DEDUPE_WINDOW.saturating_sub(outstanding))
    } else {
        limits::MAX_BATCHES_PER_PARTITION
    };
    while out.len() < most {
        let Some(front) = q.sealed.front_mut() else {
            break;
        };
        if !out.is_empty() && taken + front.size() > budget {
            break;
        }
        if !idempotence {
            taken += front.size();
            if let Some(b) = q.sealed.pop_front() {
                out.push(b);
            }
            continue;
        }
        if front.stamp.is_none() {
            let Some((producer_id, producer_epoch)) = stamp_with else {
                break;
            };
            if q.sequence_identity != Some((producer_id, producer_epoch)) {
                q.sequence_identity = Some((producer_id, producer_epoch));
                q.next_sequence = 0;
            }
            front.stamp = Some(ProducerStamp {
                producer_id,
                producer_epoch,
                base_sequence: q.next_sequence,
            });
            q.next_sequence = batch::next_sequence(q.next_sequence, front.record_count as i32);
        }
        taken += front.size();
        if let Some(b) = q.sealed.pop_front() {
            out.push(b);
        }
    }
    out
}

/// Puts batches that must be sent again back into the partition's queue at their places, so
/// the queue stays in the order the batches were sealed (and numbered) whatever order their
/// requests come back in.
pub(super) fn requeue(q: &mut PartitionQueue, mut batches: Vec<SealedBatch>) {
    batches.sort_unstable_by_key(|b| b.order);
    let queued = std::mem::take(&mut q.sealed);
    let mut queued = queued.into_iter().peekable();
    let mut back = batches.into_iter().peekable();
    loop {
        let from_back = match (back.peek(), queued.peek()) {
            (Some(b), Some(s)) => b.order < s.order,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if from_back {
            back.next()
        } else {
            queued.next()
        };
        q.sealed.extend(next);
    }
}
