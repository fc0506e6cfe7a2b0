//! The wall clock as record timestamps use it, and the one retry backoff policy.
//!
//! [`now_ms`] is the only clock read in this crate; the codecs take timestamps as arguments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by this machine's clock: the unit of record timestamps.
/// A clock set before 1970 reads as 0.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Exponential backoff: `initial`, then doubling per attempt, never above `max`.
///
/// ```
/// use std::time::Duration;
/// use streamhouse_proto::time::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
/// let waits: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
/// assert_eq!(waits, [100, 200, 400, 500, 500]);
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// assert_eq!(b.delay(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A policy starting at `initial` and capped at `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The wait before retry number `attempt` (1 is the first retry): `initial × 2^(attempt-1)`,
    /// capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The wait before the next retry; each call counts one attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.delay(self.attempt)
    }

    /// Starts over at `initial`, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
