//! The console's background work: polling the cluster, the load generator and the tail.
//! Each reports to the state through [`Action`]s; none ever blocks the render loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use streamhouse_client::{
    Admin, ClientError, Consumer, ConsumerBuilder, OffsetReset, Producer, TopicPartition,
};
use tokio::sync::{mpsc, watch};

use crate::action::{Action, LoadReport, LoadSpec, RecordView, StartAt, TailSpec};
use crate::connect::Connect;

/// How long one poll may wait on one agent.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls the cluster every `period`: its description, every live agent's counters and new
/// events. Follows `bootstrap` when it changes (launched agents restart on new ports).
pub async fn poll_cluster(
    mut bootstrap: watch::Receiver<String>,
    connect: Connect,
    watched_group: watch::Receiver<Option<String>>,
    period: Duration,
    tx: mpsc::UnboundedSender<Action>,
    on_tick: impl Fn() + Send,
) {
    let mut admin: Option<Admin> = None;
    let mut last_event = 0i64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        on_tick();
        if bootstrap.has_changed().unwrap_or(false) || admin.is_none() {
            let b = bootstrap.borrow_and_update().clone();
            if b.is_empty() {
                continue;
            }
            match connect.admin(&b, POLL_TIMEOUT).await {
                Ok(a) => admin = Some(a),
                Err(e) => {
                    let _ = tx.send(Action::PollFailed(e.to_string()));
                    continue;
                }
            }
        }
        let Some(a) = &admin else { continue };
        match a.describe_cluster().await {
            Ok(cluster) => {
                let stats = futures::future::join_all(
                    cluster
                        .agents
                        .iter()
                        .filter(|x| x.live)
                        .map(|x| a.agent_stats(&x.address)),
                )
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect();
                if tx
                    .send(Action::Snapshot {
                        cluster: Box::new(cluster),
                        stats,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Action::PollFailed(e.to_string()));
                continue;
            }
        }
        if let Ok(groups) = a.list_groups().await {
            let _ = tx.send(Action::Groups(groups));
        }
        let watched = watched_group.borrow().clone();
        if let Some(g) = watched
            && let Ok(d) = a.describe_group(&g).await
        {
            let _ = tx.send(Action::GroupDetail(Box::new(d)));
        }
        loop {
            match a.list_events(last_event, 500).await {
                Ok(events) if !events.is_empty() => {
                    let n = events.len();
                    last_event = events.last().map_or(last_event, |e| e.id);
                    let _ = tx.send(Action::Events(events));
                    if n < 500 {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
}

/// One acknowledged record of a tracked load: what the failover demo checks afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub seq: u64,
    pub partition: u32,
    pub offset: i64,
    pub sent_at: Instant,
    pub acked_at: Instant,
}

/// What a running load generator shares with whoever started it.
#[derive(Debug, Default)]
pub struct LoadShared {
    pub report: LoadReport,
    /// Every acknowledgement, when tracking.
    pub acks: Vec<Acked>,
}

#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    pub shared: Arc<Mutex<LoadShared>>,
}

impl Load {
    /// Starts sending `spec.rate` records/s. With `track`, keeps every acknowledgement
    /// (for a bounded demo; an hour of load would not fit).
    pub fn start(
        producer: Producer,
        spec: LoadSpec,
        track: bool,
        tx: mpsc::UnboundedSender<Action>,
    ) -> Load {
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Mutex::new(LoadShared {
            report: LoadReport {
                running: true,
                topic: spec.topic.clone(),
                target_rate: spec.rate,
                ..LoadReport::default()
            },
            acks: Vec::new(),
        }));
        let task = tokio::spawn(generate(producer, spec, track, shared.clone(), stop_rx, tx));
        Load { stop, task, shared }
    }

    /// Stops sending and waits for what was sent to be acknowledged or fail.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The value of record `seq`: its number first (so a reader can tell which it is), padded
/// to `size` bytes.
pub fn load_value(seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{seq:012}").into_bytes();
    v.resize(size.max(12), b'.');
    v
}

/// The sequence number a [`load_value`] carries.
pub fn load_seq(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..12)?).ok()?.parse().ok()
}

async fn generate(
    producer: Producer,
    spec: LoadSpec,
    track: bool,
    shared: Arc<Mutex<LoadShared>>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Action>,
) {
    let lock = |s: &Arc<Mutex<LoadShared>>| {
        let s = s.clone();
        move || -> LoadReport { s.lock().unwrap_or_else(|p| p.into_inner()).report.clone() }
    };
    let report_now = lock(&shared);
    let mut pending = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let started = Instant::now();
    let mut seq = 0u64;
    let mut acked_at_last_report = 0u64;
    let mut last_report = Instant::now();
    let note = |shared: &Mutex<LoadShared>, seq: u64, sent_at: Instant, r| {
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(m) => {
                let m: streamhouse_client::RecordMetadata = m;
                s.report.acked += 1;
                if track {
                    s.acks.push(Acked {
                        seq,
                        partition: m.partition,
                        offset: m.offset,
                        sent_at,
                        acked_at: Instant::now(),
                    });
                }
            }
            Err(e) => {
                let e: streamhouse_client::ClientError = e;
                s.report.failed += 1;
                s.report.last_error = Some(e.to_string());
            }
        }
    };
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {
                // Catch up to the rate since the start, so a slow tick does not lower it.
                let due = (started.elapsed().as_millis() as u64 * spec.rate / 1000).saturating_sub(seq);
                for _ in 0..due.min(spec.rate) {
                    let key = format!("key-{}", seq % spec.keys);
                    let value = load_value(seq, spec.value_size);
                    let sent_at = Instant::now();
                    match producer.send(&spec.topic, Some(key.as_bytes()), &value).await {
                        Ok(d) => pending.push(async move { (seq, sent_at, d.await) }),
                        Err(e) => note(&shared, seq, sent_at, Err(e)),
                    }
                    seq += 1;
                }
                shared.lock().unwrap_or_else(|p| p.into_inner()).report.sent = seq;
            }
            Some((seq, sent_at, r)) = pending.next() => note(&shared, seq, sent_at, r),
            _ = report.tick() => {
                let mut r = report_now();
                let dt = last_report.elapsed().as_secs_f64().max(0.001);
                r.acked_rate = (r.acked - acked_at_last_report) as f64 / dt;
                acked_at_last_report = r.acked;
                last_report = Instant::now();
                shared.lock().unwrap_or_else(|p| p.into_inner()).report.acked_rate = r.acked_rate;
                let _ = tx.send(Action::Load(r));
            }
            _ = stop.changed() => {}
        }
    }
    let _ = producer.flush().await;
    while let Some((seq, sent_at, r)) = pending.next().await {
        note(&shared, seq, sent_at, r);
    }
    let _ = producer.close().await;
    let mut r = report_now();
    r.running = false;
    r.acked_rate = 0.0;
    shared.lock().unwrap_or_else(|p| p.into_inner()).report = r.clone();
    let _ = tx.send(Action::Load(r));
}

/// A running tail: the task and the channel that moves it.
#[derive(Debug)]
pub struct Tail {
    control: mpsc::UnboundedSender<StartAt>,
    task: tokio::task::JoinHandle<()>,
}

impl Tail {
    pub fn start(
        bootstrap: String,
        connect: Connect,
        spec: TailSpec,
        tx: mpsc::UnboundedSender<Action>,
    ) -> Tail {
        let (control, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            if let Err(e) = tail(&bootstrap, &connect, &spec, rx, &tx).await {
                let _ = tx.send(Action::TailStatus(format!("stopped: {e}")));
            }
        });
        Tail { control, task }
    }

    pub fn seek(&self, to: StartAt) {
        let _ = self.control.send(to);
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tail(
    bootstrap: &str,
    connect: &Connect,
    spec: &TailSpec,
    mut control: mpsc::UnboundedReceiver<StartAt>,
    tx: &mpsc::UnboundedSender<Action>,
) -> anyhow::Result<()> {
    let admin = connect.admin(bootstrap, POLL_TIMEOUT).await?;
    let topic = admin.describe_topic(&spec.topic).await?;
    let tps: Vec<TopicPartition> = match spec.partition {
        Some(p) => {
            anyhow::ensure!(
                (p as usize) < topic.partitions.len(),
                "{} has partitions 0 to {}",
                spec.topic,
                topic.partitions.len().saturating_sub(1)
            );
            vec![TopicPartition::new(&spec.topic, p)]
        }
        None => (0..topic.partitions.len() as u32)
            .map(|p| TopicPartition::new(&spec.topic, p))
            .collect(),
    };
    let mut consumer = connect
        .consumer()
        .bootstrap(bootstrap)
        .auto_offset_reset(OffsetReset::Latest)
        .max_poll_records(500)
        .build()
        .await?;
    consumer.assign(tps.clone()).await?;
    // Time searches probe with consumers of their own.
    let probe = connect.consumer().bootstrap(bootstrap);
    let mut from = spec.from.clone();
    loop {
        let at = position(&mut consumer, &tps, &probe, &from).await?;
        let _ = tx.send(Action::TailStatus(format!("from {at}")));
        loop {
            tokio::select! {
                next = control.recv() => match next {
                    Some(to) => { from = to; break; }
                    None => return Ok(()),
                },
                polled = consumer.poll(Duration::from_millis(250)) => {
                    let records = match polled {
                        // Shown as one damaged row; the tail reads on past it.
                        Err(ClientError::DamagedBatch { topic, partition, offset, next_offset, reason }) => {
                            consumer.seek(&TopicPartition::new(&topic, partition), next_offset).await?;
                            let row = RecordView {
                                partition,
                                offset,
                                timestamp: 0,
                                key: None,
                                value: None,
                                headers: Vec::new(),
                                damaged: Some(format!(
                                    "{reason}; offsets {offset} to {} skipped",
                                    next_offset - 1
                                )),
                            };
                            if tx.send(Action::Records(vec![row])).is_err() {
                                return Ok(());
                            }
                            continue;
                        }
                        other => other?,
                    };
                    if !records.is_empty() {
                        let views = records.into_iter().map(|r| RecordView {
                            partition: r.partition,
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key.map(|k| k.to_vec()),
                            value: r.value.map(|v| v.to_vec()),
                            headers: r.headers.into_iter().map(|h| (h.key, h.value.map(|v| v.to_vec()))).collect(),
                            damaged: None,
                        }).collect();
                        if tx.send(Action::Records(views)).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Moves every partition of the tail to `from`; says where it went.
async fn position(
    consumer: &mut Consumer,
    tps: &[TopicPartition],
    probe: &ConsumerBuilder,
    from: &StartAt,
) -> anyhow::Result<String> {
    Ok(match from {
        StartAt::Beginning => {
            consumer.seek_to_beginning(tps).await?;
            "the beginning".into()
        }
        StartAt::End => {
            consumer.seek_to_end(tps).await?;
            "the end".into()
        }
        StartAt::Offset(o) => {
            for tp in tps {
                let (lo, hi) = consumer.bounds(tp).await?;
                consumer.seek(tp, (*o).clamp(lo, hi)).await?;
            }
            format!("offset {o}")
        }
        StartAt::Timestamp(_) | StartAt::Ago(_) => {
            let ts = match from {
                StartAt::Ago(ms) => now_ms() - ms,
                StartAt::Timestamp(t) => *t,
                _ => unreachable!("matched above"),
            };
            for tp in tps {
                let o = offset_for_time(probe.clone(), tp, ts).await?;
                consumer.seek(tp, o).await?;
            }
            format!("time {ts} ({} UTC)", crate::ui::clock(ts))
        }
    })
}

pub use streamhouse_proto::time::now_ms;

/// The first offset of `tp` whose record is stamped at or after `ts`, or the high
/// watermark if none is. A binary search over offsets, one fetch per probe: the agents keep
/// no time index yet, and record timestamps are producer create times, which rise with the
/// offset for all but out-of-order producers.
pub async fn offset_for_time(
    probe: ConsumerBuilder,
    tp: &TopicPartition,
    ts: i64,
) -> anyhow::Result<i64> {
    let mut probe = probe
        .max_poll_records(1)
        .prefetch_batches(1)
        .build()
        .await?;
    probe.assign(vec![tp.clone()]).await?;
    let (mut lo, mut hi) = probe.bounds(tp).await?;
    // Invariant: every offset below `lo` is stamped before `ts`; `hi` is at or after it.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        probe.seek(tp, mid).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let first = loop {
            let got = probe.poll(Duration::from_millis(500)).await?;
            if let Some(r) = got.into_iter().find(|r| r.offset >= mid) {
                break r;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no record at offset {mid} of {tp:?}"
            );
        };
        if first.timestamp >= ts {
            hi = first.offset.min(mid);
        } else {
            lo = first.offset + 1;
        }
    }
    probe.close().await?;
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_values_carry_their_sequence() {
        let v = load_value(42, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(load_seq(&v), Some(42));
        assert_eq!(load_value(7, 3).len(), 12);
        assert_eq!(load_seq(b"short"), None);
    }
}
