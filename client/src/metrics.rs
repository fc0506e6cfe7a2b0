//! Where a producer's time goes, as Kafka's producer reports it (`record-queue-time`,
//! `request-latency`): lock-free latency histograms, read as [`ProducerMetrics`] snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this many microseconds have a bucket each.
const LINEAR: u64 = 64;
/// Buckets per power of two above [`LINEAR`]: a bucket is at most 1/32 (3 %) of its value wide.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two above [`LINEAR`] (64 µs · 2^34 is about 12 days; longer values share the
/// last bucket).
const OCTAVES: u64 = 34;
const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

/// The bucket of a value in microseconds.
fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    // `us` is in [2^e, 2^(e+1)) with e >= 6; the octave's 32 buckets split that range evenly.
    let e = 63 - u64::from(us.leading_zeros());
    let octave = e - u64::from(LINEAR.trailing_zeros());
    let sub = (us >> (e - u64::from(SUB_BITS))) - SUB;
    (LINEAR + octave * SUB + sub).min(BUCKETS as u64 - 1) as usize
}

/// The largest value, in microseconds, that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let octave = (i - LINEAR) / SUB;
    let sub = (i - LINEAR) % SUB;
    let e = octave + u64::from(LINEAR.trailing_zeros());
    let width = 1u64 << (e - u64::from(SUB_BITS));
    (1u64 << e) + (sub + 1) * width - 1
}

/// A latency histogram that many tasks record into at once.
#[derive(Debug)]
pub(crate) struct Recorder {
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a latency histogram: counts in buckets at most 3 % wide (1 µs wide below
/// 64 µs), so a quantile read from it is within 3 % of the recorded value.
///
/// ```
/// # fn show(h: &streamhouse_client::LatencyHistogram) {
/// println!("p99 {:?} over {} samples", h.quantile(0.99), h.count());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    sum_us: u64,
    max_us: u64,
}

impl LatencyHistogram {
    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their mean (zero when there are none).
    pub fn mean(&self) -> Duration {
        match self.count() {
            0 => Duration::ZERO,
            n => Duration::from_micros(self.sum_us / n),
        }
    }

    /// The largest value recorded since the producer started (a [`LatencyHistogram::since`]
    /// window keeps the later snapshot's, and caps it at its largest bucket).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The upper edge of the bucket holding the `q` quantile (`q` in 0..=1; zero when nothing
    /// was recorded).
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(bucket_high(i).min(self.max_us));
            }
        }
        self.max()
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram taken before).
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let max_us = counts
            .iter()
            .rposition(|c| *c > 0)
            .map_or(0, |i| bucket_high(i).min(self.max_us));
        LatencyHistogram {
            counts,
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            max_us,
        }
    }
}

/// Where a producer's batches spent their time, from the producer's start. Take two
/// snapshots and [`LatencyHistogram::since`] for a window.
///
/// Each batch is timed from its first record, so these are the waits of the record that
/// waited longest in it. A batch's life is `linger`, then `queue`, then one or more
/// `request`s (one per attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerMetrics {
    /// From a batch's first record to the batch being sealed: the linger, or less when the
    /// batch filled up, or more when the partition already had as many batches outstanding
    /// as an agent takes (the batch then keeps filling until one comes back), or when the
    /// sender was busy.
    pub linger: LatencyHistogram,
    /// From sealed to first sent: waiting for a request slot (`max_in_flight`,
    /// `max_in_flight_per_partition`), a leader, or the producer's id.
    pub queue: LatencyHistogram,
    /// Each produce request, from encoding it to its answer: the network and the agent,
    /// which answers once the batch is durable in object storage and committed.
    pub request: LatencyHistogram,
}

impl ProducerMetrics {
    /// What was recorded after `earlier`, a snapshot of the same producer taken before.
    pub fn since(&self, earlier: &ProducerMetrics) -> ProducerMetrics {
        ProducerMetrics {
            linger: self.linger.since(&earlier.linger),
            queue: self.queue.since(&earlier.queue),
            request: self.request.since(&earlier.request),
        }
    }
}

/// The producer's recorders behind [`ProducerMetrics`].
#[derive(Debug, Default)]
pub(crate) struct ProducerRecorders {
    pub(crate) linger: Recorder,
    pub(crate) queue: Recorder,
    pub(crate) request: Recorder,
}

impl ProducerRecorders {
    pub(crate) fn snapshot(&self) -> ProducerMetrics {
        ProducerMetrics {
            linger: self.linger.snapshot(),
            queue: self.queue.snapshot(),
            request: self.request.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it_and_is_at_most_three_percent_wide() {
        let mut v = 0u64;
        while v < 1 << 40 {
            let i = bucket(v);
            assert!(bucket_high(i) >= v, "{v} above its bucket {i}");
            if i > 0 {
                assert!(bucket_high(i - 1) < v, "{v} belongs below bucket {i}");
            }
            assert!(
                bucket_high(i) - v <= v / 32,
                "bucket {i} too wide for {v}: high {}",
                bucket_high(i)
            );
            v = v + 1 + v / 7;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_mean_and_windows_follow_what_was_recorded() {
        let r = Recorder::default();
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms));
        }
        let first = r.snapshot();
        assert_eq!(first.count(), 100);
        assert_eq!(first.mean(), Duration::from_micros(50_500));
        let p50 = first.quantile(0.5).as_micros() as f64;
        assert!((50_000.0..=50_000.0 * 1.03).contains(&p50), "p50 {p50}");
        let p99 = first.quantile(0.99).as_micros() as f64;
        assert!((99_000.0..=99_000.0 * 1.03).contains(&p99), "p99 {p99}");
        assert_eq!(first.quantile(1.0), Duration::from_millis(100));
        assert_eq!(first.max(), Duration::from_millis(100));

        r.record(Duration::from_micros(7));
        let window = r.snapshot().since(&first);
        assert_eq!(window.count(), 1);
        assert_eq!(window.quantile(0.5), Duration::from_micros(7));
        assert_eq!(window.max(), Duration::from_micros(7));
        assert_eq!(
            LatencyHistogram::since(&first, &first).quantile(0.99),
            Duration::ZERO
        );
    }
}
