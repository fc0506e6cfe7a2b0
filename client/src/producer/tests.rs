//! The producer's batching and settling without an agent: time passes by the `now` the
//! functions are given, and answers are handed to the sender as a request would bring them.

use super::*;

/// A sealed batch, numbered after every one made before it.
fn sealed(bytes: usize, records: i64) -> SealedBatch {
    static SEALED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SealedBatch {
        order: SEALED.fetch_add(1, Ordering::Relaxed) + 1,
        payload: Payload::Encoded(Bytes::from(vec![0u8; bytes])),
        record_count: records,
        created: Instant::now(),
        sealed_at: None,
        attempts: 0,
        last_error: None,
        outcome: Arc::new(BatchOutcome::default()),
        stamp: None,
        _permits: None,
    }
}

#[test]
fn a_routing_error_does_not_hide_the_last_real_cause() {
    let agent = |code, message: &str| ClientError::Agent {
        code,
        message: message.into(),
    };
    let storage = agent(ErrorCode::StorageUnavailable, "bucket missing");
    let moved = agent(ErrorCode::NotLeader, "this agent does not lead t-0");
    let stopped = ClientError::Unreachable("connection refused".into());
    // The cause survives the routing errors after it...
    let kept = last_cause(Some(storage.clone()), &moved);
    let kept = last_cause(Some(kept), &stopped);
    assert_eq!(kept.to_string(), storage.to_string());
    // ...a newer cause replaces it, and with no cause the newest error is reported.
    let throttled = agent(ErrorCode::Throttled, "buffer full");
    assert_eq!(
        last_cause(Some(kept), &throttled).to_string(),
        throttled.to_string()
    );
    assert_eq!(last_cause(None, &moved).to_string(), moved.to_string());
    assert_eq!(
        last_cause(Some(moved.clone()), &stopped).to_string(),
        stopped.to_string()
    );
}

fn queue(batches: usize, bytes: usize) -> PartitionQueue {
    let mut q = PartitionQueue::default();
    q.sealed.extend((0..batches).map(|_| sealed(bytes, 10)));
    q
}

#[test]
fn a_request_takes_batches_within_its_budget_and_the_window() {
    // Budget for two and a half: two go; the first always goes, however large.
    let mut q = queue(5, 1000);
    assert_eq!(take_batches(&mut q, false, None, 2500).len(), 2);
    assert_eq!(take_batches(&mut q, false, None, 10).len(), 1);
    // Never more than the agents take for one partition in one request.
    let mut q = queue(40, 10);
    let taken = take_batches(&mut q, true, Some((7, 0)), usize::MAX);
    assert_eq!(taken.len(), limits::MAX_BATCHES_PER_PARTITION);
    let mut q = queue(40, 10);
    assert_eq!(
        take_batches(&mut q, false, None, usize::MAX).len(),
        limits::MAX_BATCHES_PER_PARTITION
    );
    // With requests in flight, no more than the agent's de-duplication window is outstanding.
    let mut q = queue(40, 10);
    q.in_flight = vec![InFlight {
        outcomes: (0..10).map(|_| Arc::new(BatchOutcome::default())).collect(),
        behind: false,
    }];
    let taken = take_batches(&mut q, true, Some((7, 0)), usize::MAX);
    assert_eq!(taken.len(), batch::DEDUPE_WINDOW - 10);
    q.in_flight.push(InFlight {
        outcomes: taken.iter().map(|b| b.outcome.clone()).collect(),
        behind: true,
    });
    assert!(take_batches(&mut q, true, Some((7, 0)), usize::MAX).is_empty());
}

#[test]
fn sequences_restart_for_a_new_epoch_or_a_new_id() {
    let mut q = queue(6, 10);
    let seqs = |b: &[SealedBatch]| -> Vec<(i64, i16, i32)> {
        b.iter()
            .map(|b| {
                b.stamp
                    .map(|s| (s.producer_id, s.producer_epoch, s.base_sequence))
            })
            .collect::<Option<_>>()
            .unwrap_or_default()
    };
    let first = take_batches(&mut q, true, Some((7, 0)), 20);
    assert_eq!(seqs(&first), [(7, 0, 0), (7, 0, 10)]);
    // The cluster forgot id 7; a new id starts at epoch 0 again, and at sequence 0.
    let second = take_batches(&mut q, true, Some((8, 0)), 20);
    assert_eq!(seqs(&second), [(8, 0, 0), (8, 0, 10)]);
    let third = take_batches(&mut q, true, Some((8, 1)), 10);
    assert_eq!(seqs(&third), [(8, 1, 0)]);
    // Without an identity, unnumbered batches wait.
    assert!(take_batches(&mut q, true, None, 100).is_empty());
}

// ---- the accumulator: lingering and delivery timeouts -------------------------------------

fn open_batch(created: Instant, records: usize) -> (OpenBatch, Arc<BatchOutcome>) {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        builder.append(1_700_000_000_000 + i as i64, None, Some(b"v"), &[]);
    }
    let outcome = Arc::new(BatchOutcome::default());
    let open = OpenBatch {
        builder,
        created,
        outcome: outcome.clone(),
        permits: None,
    };
    (open, outcome)
}

fn delivery(outcome: &Arc<BatchOutcome>, index: i64) -> DeliveryFuture {
    DeliveryFuture {
        outcome: outcome.clone(),
        topic: Arc::from("t"),
        partition: 3,
        index,
        timestamp: 1,
    }
}

const LINGER: Duration = Duration::from_millis(5);
const DELIVERY: Duration = Duration::from_secs(120);

#[test]
fn an_open_batch_is_sealed_once_it_has_lingered() {
    let t0 = Instant::now();
    let mut q = PartitionQueue {
        open: Some(open_batch(t0, 3).0),
        ..Default::default()
    };
    // Before its linger: still open, and due when the linger ends.
    let (due, _) = ripen(
        &mut q,
        t0 + Duration::from_millis(1),
        LINGER,
        DELIVERY,
        false,
        false,
    );
    assert!(q.open.is_some() && q.sealed.is_empty());
    // Due a little early, so the sender's alarm seals it by the end of its linger.
    assert_eq!(due, Some(t0 + LINGER - LINGER_EARLY));
    let before = t0 + LINGER - LINGER_EARLY - Duration::from_micros(1);
    let (due, _) = ripen(&mut q, before, LINGER, DELIVERY, false, false);
    assert!(q.open.is_some(), "sealed more than LINGER_EARLY early");
    assert_eq!(due, Some(t0 + LINGER - LINGER_EARLY));
    // Within LINGER_EARLY of its linger: sealed whole, and due next at its delivery timeout.
    let (due, _) = ripen(
        &mut q,
        t0 + LINGER - LINGER_EARLY,
        LINGER,
        DELIVERY,
        false,
        false,
    );
    assert!(q.open.is_none());
    assert_eq!(q.sealed.len(), 1);
    assert_eq!(q.sealed[0].record_count, 3);
    assert_eq!(due, Some(t0 + DELIVERY));
}

#[test]
fn a_held_partition_keeps_filling_its_batch_past_the_linger() {
    let t0 = Instant::now();
    let mut q = PartitionQueue {
        open: Some(open_batch(t0, 3).0),
        ..Default::default()
    };
    // The partition cannot send: the batch stays open, with no timer (a request coming back
    // wakes the sender).
    let (due, _) = ripen(&mut q, t0 + 4 * LINGER, LINGER, DELIVERY, false, true);
    assert!(q.open.is_some() && q.sealed.is_empty());
    assert_eq!(due, None);
    // Still held before its linger: timed as usual.
    let mut early = PartitionQueue {
        open: Some(open_batch(t0, 1).0),
        ..Default::default()
    };
    let (due, _) = ripen(&mut early, t0, LINGER, DELIVERY, false, true);
    assert!(early.open.is_some());
    assert_eq!(due, Some(t0 + LINGER - LINGER_EARLY));
    // Released: sealed at once, every record in one batch.
    ripen(&mut q, t0 + 4 * LINGER, LINGER, DELIVERY, false, false);
    assert!(q.open.is_none());
    assert_eq!(q.sealed.len(), 1);
    assert_eq!(q.sealed[0].record_count, 3);
    // Closing seals even a held partition's batch.
    ripen(&mut early, t0, LINGER, DELIVERY, true, true);
    assert!(early.open.is_none());
}

#[test]
fn closing_seals_at_once() {
    let t0 = Instant::now();
    let mut q = PartitionQueue {
        open: Some(open_batch(t0, 1).0),
        ..Default::default()
    };
    ripen(&mut q, t0, LINGER, DELIVERY, true, false);
    assert!(q.open.is_none());
    assert_eq!(q.sealed.len(), 1);
}

#[tokio::test]
async fn a_batch_past_its_delivery_timeout_fails_with_its_last_error() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::default();
    let mut old = sealed(10, 2);
    old.created = t0;
    old.last_error = Some(ClientError::Agent {
        code: ErrorCode::StorageUnavailable,
        message: "bucket missing".into(),
    });
    let old_outcome = old.outcome.clone();
    let mut young = sealed(10, 2);
    young.created = t0 + Duration::from_secs(60);
    let young_outcome = young.outcome.clone();
    q.sealed.extend([old, young]);

    let (due, failed_stamped) = ripen(&mut q, t0 + DELIVERY, LINGER, DELIVERY, false, false);
    assert!(!failed_stamped);
    assert_eq!(q.sealed.len(), 1, "only the old batch timed out");
    assert_eq!(due, Some(t0 + Duration::from_secs(60) + DELIVERY));
    match delivery(&old_outcome, 1).await {
        Err(ClientError::DeliveryTimeout {
            elapsed_ms,
            last_error,
        }) => {
            assert_eq!(elapsed_ms, DELIVERY.as_millis() as u64);
            assert!(last_error.contains("bucket missing"), "{last_error}");
        }
        other => panic!("expected a delivery timeout, got {other:?}"),
    }
    assert!(young_outcome.result.get().is_none());
}

#[test]
fn a_timed_out_batch_with_a_sequence_asks_for_a_new_epoch() {
    let t0 = Instant::now();
    let mut q = PartitionQueue::default();
    let mut b = sealed(10, 1);
    b.created = t0;
    b.stamp = Some(ProducerStamp {
        producer_id: 7,
        producer_epoch: 0,
        base_sequence: 0,
    });
    q.sealed.push_back(b);
    let (due, failed_stamped) = ripen(&mut q, t0 + DELIVERY, LINGER, DELIVERY, false, false);
    assert!(failed_stamped && due.is_none() && q.sealed.is_empty());
}

// ---- the sender: settling a request's answer ----------------------------------------------

fn inner(max_retries: Option<u32>) -> Inner {
    let mut config = Producer::builder()
        .bootstrap("127.0.0.1:9")
        .retry_backoff_ms(100)
        .retry_backoff_max_ms(1_000);
    config.max_retries = max_retries;
    let cluster = Arc::new(Cluster::new(
        vec!["127.0.0.1:9".into()],
        1,
        Duration::from_secs(1),
        crate::Security::default(),
    ));
    Inner {
        cluster,
        buffer: Arc::new(Semaphore::new(1 << 20)),
        config,
        accum: Mutex::new(HashMap::new()),
        wake: Arc::new(Notify::new()),
        refreshing: Mutex::new(HashSet::new()),
        closed: AtomicBool::new(false),
        identity: Mutex::new(Identity::default()),
        metrics: Default::default(),
    }
}

#[tokio::test]
async fn an_acknowledged_request_resolves_every_record_with_its_offset() {
    let inner = inner(None);
    let mut q = PartitionQueue::default();
    let (a, b) = (sealed(10, 2), sealed(10, 3));
    let (oa, ob) = (a.outcome.clone(), b.outcome.clone());
    q.in_flight = vec![InFlight {
        outcomes: vec![oa.clone(), ob.clone()],
        behind: false,
    }];
    q.retry_at = Some(Instant::now());
    inner.settle(&mut q, "t", "agent-a", vec![a, b], Ok(vec![40, 42]));
    assert!(q.in_flight.is_empty() && q.retry_at.is_none() && q.sealed.is_empty());
    assert_eq!(delivery(&oa, 1).await.expect("acked").offset, 41);
    let m = delivery(&ob, 2).await.expect("acked");
    assert_eq!((m.topic.as_str(), m.partition, m.offset), ("t", 3, 44));
}

#[test]
fn a_retriable_error_puts_the_batches_back_in_order_and_backs_off() {
    let inner = inner(None);
    let mut q = PartitionQueue::default();
    let (a, b) = (sealed(10, 1), sealed(20, 1));
    q.sealed.push_back(sealed(10, 1)); // sealed after them, queued behind the request
    let before = Instant::now();
    let moved = ClientError::Agent {
        code: ErrorCode::NotLeader,
        message: "moved".into(),
    };
    inner.settle(&mut q, "t", "agent-a", vec![a, b], Err(moved));
    // In front of what was queued, in their own order, each remembering the error.
    let sizes: Vec<usize> = q.sealed.iter().map(SealedBatch::size).collect();
    assert_eq!(sizes, [10, 20, 10]);
    assert!(
        q.sealed
            .iter()
            .take(2)
            .all(|b| b.attempts == 1 && b.last_error.is_some())
    );
    assert_eq!(q.failed_leader.as_deref(), Some("agent-a"));
    let wait = q.retry_at.expect("backing off") - before;
    assert!(wait >= Duration::from_millis(100) && wait < Duration::from_millis(1_000));
    // A second failure of the same batches backs off twice as long.
    let again: Vec<SealedBatch> = q.sealed.drain(..2).collect();
    let before = Instant::now();
    let stopping = ClientError::Unreachable("refused".into());
    inner.settle(&mut q, "t", "agent-a", again, Err(stopping));
    let wait = q.retry_at.expect("backing off") - before;
    assert!(wait >= Duration::from_millis(200), "{wait:?}");
}

#[tokio::test]
async fn errors_that_cannot_pass_and_exhausted_retries_fail_the_records() {
    let inner = inner(Some(0));
    let mut q = PartitionQueue::default();
    let a = sealed(10, 1);
    let oa = a.outcome.clone();
    let throttled = ClientError::Agent {
        code: ErrorCode::Throttled,
        message: "full".into(),
    };
    inner.settle(&mut q, "t", "agent-a", vec![a], Err(throttled));
    assert!(q.sealed.is_empty(), "no retries allowed");
    assert!(matches!(
        delivery(&oa, 0).await,
        Err(ClientError::Agent {
            code: ErrorCode::Throttled,
            ..
        })
    ));

    let inner = self::inner(None);
    let mut q = PartitionQueue::default();
    let b = sealed(10, 1);
    let ob = b.outcome.clone();
    inner.settle(
        &mut q,
        "t",
        "agent-a",
        vec![b],
        Err(ClientError::RecordTooLarge { size: 10, max: 5 }),
    );
    assert!(q.sealed.is_empty() && q.retry_at.is_none());
    assert!(matches!(
        delivery(&ob, 0).await,
        Err(ClientError::RecordTooLarge { .. })
    ));
}

/// Pipelined requests of one partition come back out of order: the later one refused for the
/// gap the earlier one's failure left, then the earlier one failed. Both go back in the order
/// they were sealed, and nothing is resent before every request in flight has come back.
#[test]
fn batches_refused_behind_a_gap_go_back_in_line_behind_the_retried_ones() {
    let inner = inner(None);
    let mut q = PartitionQueue::default();
    let (a, b, c) = (sealed(10, 1), sealed(20, 1), sealed(30, 1));
    q.in_flight = vec![
        InFlight {
            outcomes: vec![a.outcome.clone()],
            behind: false,
        },
        InFlight {
            outcomes: vec![b.outcome.clone(), c.outcome.clone()],
            behind: true,
        },
    ];
    let gap = ClientError::Agent {
        code: ErrorCode::OutOfOrderSequence,
        message: "expected 0, got 1".into(),
    };
    inner.settle(&mut q, "t", "agent-a", vec![b, c], Err(gap.clone()));
    assert_eq!(q.in_flight.len(), 1, "the first request is still out");
    assert!(q.retry_at.is_some(), "nothing is sent until it is back");
    let moved = ClientError::Agent {
        code: ErrorCode::NotLeader,
        message: "moved".into(),
    };
    inner.settle(&mut q, "t", "agent-a", vec![a], Err(moved));
    assert!(q.in_flight.is_empty());
    let sizes: Vec<usize> = q.sealed.iter().map(SealedBatch::size).collect();
    assert_eq!(sizes, [10, 20, 30], "in the order they were sealed");
    let attempts: Vec<u32> = q.sealed.iter().map(|b| b.attempts).collect();
    assert_eq!(
        attempts,
        [1, 0, 0],
        "a batch sent ahead of a gap did not fail"
    );
}

/// A gap with nothing in front of it (no request out, no retry pending) is a real loss of
/// order: the batch fails rather than being sent forever.
#[tokio::test]
async fn a_gap_nothing_explains_fails_the_batch() {
    let inner = inner(None);
    let mut q = PartitionQueue::default();
    let a = sealed(10, 1);
    let oa = a.outcome.clone();
    q.in_flight = vec![InFlight {
        outcomes: vec![oa.clone()],
        behind: false,
    }];
    let gap = ClientError::Agent {
        code: ErrorCode::OutOfOrderSequence,
        message: "expected 4, got 9".into(),
    };
    inner.settle(&mut q, "t", "agent-a", vec![a], Err(gap));
    assert!(q.sealed.is_empty() && q.in_flight.is_empty());
    assert!(matches!(
        delivery(&oa, 0).await,
        Err(ClientError::Agent {
            code: ErrorCode::OutOfOrderSequence,
            ..
        })
    ));
}

/// Two requests out at once; the agent saw the later one first and refused it for the gap,
/// then stored the earlier one, whose answer came back first. The later one was sent behind
/// the earlier, so it goes out again instead of failing.
#[test]
fn a_refusal_for_a_gap_the_earlier_request_has_since_filled_is_sent_again() {
    let inner = inner(None);
    let mut q = PartitionQueue::default();
    let (a, b) = (sealed(10, 1), sealed(20, 1));
    let (oa, ob) = (a.outcome.clone(), b.outcome.clone());
    q.in_flight = vec![
        InFlight {
            outcomes: vec![oa],
            behind: false,
        },
        InFlight {
            outcomes: vec![ob],
            behind: true,
        },
    ];
    inner.settle(&mut q, "t", "agent-a", vec![a], Ok(vec![7]));
    let gap = ClientError::Agent {
        code: ErrorCode::OutOfOrderSequence,
        message: "expected 1, got 2".into(),
    };
    inner.settle(&mut q, "t", "agent-a", vec![b], Err(gap));
    assert_eq!(q.sealed.len(), 1, "queued to be sent again");
    assert!(q.in_flight.is_empty());
}

/// Builds `builder` and expects it refused as invalid configuration, in one line naming
/// `setting`.
async fn assert_refused(builder: ProducerBuilder, setting: &str) {
    let e = builder.build().await.expect_err("refused");
    let line = e.to_string();
    assert!(
        matches!(e, ClientError::InvalidConfig(_))
            && line.contains(setting)
            && !line.contains('\n'),
        "{line}"
    );
}

/// The worst `max_in_flight_per_partition` an application could set is refused in one line
/// naming it; an agent announcing an absurd flush interval spaces requests at most
/// `MAX_FLUSH_INTERVAL_MS` (a minute) apart.
#[tokio::test]
async fn worst_in_flight_settings_and_announced_intervals() {
    for (idempotence, n) in [(true, 0), (true, 6), (false, 0), (false, usize::MAX)] {
        let builder = Producer::builder()
            .bootstrap("127.0.0.1:9")
            .enable_idempotence(idempotence)
            .max_in_flight_per_partition(n);
        assert_refused(builder, "max_in_flight_per_partition").await;
    }
    assert_eq!(
        crate::cluster::announced_flush_interval(u32::MAX),
        Duration::from_secs(60)
    );
    assert_eq!(
        crate::cluster::announced_flush_interval(100),
        Duration::from_millis(100)
    );
}

#[tokio::test]
async fn worst_linger_settings() {
    for ms in [60_001, u64::MAX] {
        let builder = Producer::builder().bootstrap("127.0.0.1:9").linger_ms(ms);
        assert_refused(builder, "linger_ms").await;
    }
    let longest = Producer::builder()
        .bootstrap("127.0.0.1:9")
        .linger_ms(60_000)
        .build()
        .await;
    assert!(
        !matches!(longest, Err(ClientError::InvalidConfig(_))),
        "60000 is allowed: {:?}",
        longest.err()
    );

    // No linger: sealed at once. A linger shorter than twice LINGER_EARLY is timed half of
    // it early.
    let t0 = Instant::now();
    let mut q = PartitionQueue {
        open: Some(open_batch(t0, 1).0),
        ..Default::default()
    };
    ripen(&mut q, t0, Duration::ZERO, DELIVERY, false, false);
    assert_eq!(q.sealed.len(), 1);
    let short = LINGER_EARLY;
    let mut q = PartitionQueue {
        open: Some(open_batch(t0, 1).0),
        ..Default::default()
    };
    let (due, _) = ripen(&mut q, t0, short, DELIVERY, false, false);
    assert!(q.open.is_some());
    assert_eq!(due, Some(t0 + short / 2));
}
