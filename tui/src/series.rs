//! Metric history: a bounded ring of timestamped samples per series, and rates derived from
//! the monotonically increasing counters agents report.

use std::collections::VecDeque;

/// The last `capacity` samples of one series, oldest first, each at a console-clock time in
/// milliseconds.
#[derive(Debug, Clone)]
pub struct Ring {
    capacity: usize,
    samples: VecDeque<(u64, f64)>,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, at_ms: u64, value: f64) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((at_ms, value));
    }

    pub fn last(&self) -> Option<f64> {
        self.samples.back().map(|s| s.1)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.samples.iter().copied()
    }

    /// Samples no older than `window_ms` before `now_ms`, as chart points: x is seconds
    /// relative to now (negative: in the past).
    pub fn points(&self, now_ms: u64, window_ms: u64) -> Vec<(f64, f64)> {
        self.samples
            .iter()
            .filter(|(t, _)| now_ms.saturating_sub(*t) <= window_ms)
            .map(|(t, v)| (-((now_ms.saturating_sub(*t)) as f64) / 1000.0, *v))
            .collect()
    }

    pub fn max(&self) -> f64 {
        self.samples.iter().map(|s| s.1).fold(0.0, f64::max)
    }

    /// The last `n` values, oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = f64> + '_ {
        self.samples
            .iter()
            .skip(self.samples.len().saturating_sub(n))
            .map(|s| s.1)
    }
}

/// The per-second rate between two readings of a counter, or `None` when the counter went
/// backwards (the agent restarted) or no time passed.
pub fn rate(prev: u64, prev_ms: u64, cur: u64, cur_ms: u64) -> Option<f64> {
    if cur < prev || cur_ms <= prev_ms {
        return None;
    }
    Some((cur - prev) as f64 * 1000.0 / (cur_ms - prev_ms) as f64)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A one-line sparkline of `values` scaled to their own maximum, `width` cells wide (the
/// newest value last; padded on the left while there is less history than room).
pub fn sparkline(values: &[f64], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0, f64::max);
    let mut out = String::with_capacity(width * 3);
    out.extend(std::iter::repeat_n(' ', width - shown.len()));
    for v in shown {
        let c = if max <= 0.0 || *v <= 0.0 {
            ' '
        } else {
            let level = ((v / max) * (BARS.len() - 1) as f64).round() as usize;
            BARS[level.min(BARS.len() - 1)]
        };
        out.push(c);
    }
    out
}

/// `1234567.0` as `1.2M`, for rates and counts in narrow columns.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Bytes per second as `12.3 MB/s`.
pub fn mb(bytes_per_s: f64) -> String {
    format!("{:.1} MB/s", bytes_per_s / 1e6)
}

/// A duration in milliseconds as `850ms`, `12s`, `3m05s` or `2h14m`.
pub fn age(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}s", ms / 1_000)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let mut r = Ring::new(3);
        for i in 0..5 {
            r.push(i * 1000, i as f64);
        }
        assert_eq!(
            r.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(r.last(), Some(4.0));
        assert_eq!(r.max(), 4.0);
        assert_eq!(r.tail(2).collect::<Vec<_>>(), vec![3.0, 4.0]);
        assert_eq!(r.points(4000, 1000), vec![(-1.0, 3.0), (0.0, 4.0)]);
    }

    #[test]
    fn rates_skip_restarts() {
        assert_eq!(rate(100, 1_000, 300, 3_000), Some(100.0));
        assert_eq!(rate(300, 1_000, 10, 2_000), None);
        assert_eq!(rate(1, 1_000, 2, 1_000), None);
    }

    #[test]
    fn sparkline_scales_to_its_maximum() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0], 6), "   ▃▅█");
        assert_eq!(sparkline(&[5.0; 10], 3), "███");
        assert_eq!(sparkline(&[], 2), "  ");
    }

    #[test]
    fn numbers_read_short() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1_500.0), "1.5k");
        assert_eq!(si(25_000.0), "25k");
        assert_eq!(si(1_250_000.0), "1.2M");
        assert_eq!(age(850), "850ms");
        assert_eq!(age(65_000), "1m05s");
        assert_eq!(age(7_500_000), "2h05m");
    }
}
