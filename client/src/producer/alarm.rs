//! The sender's alarm clock: wakes the sender task at an instant, to within the operating
//! system's timer slack (about 50 µs on Linux), from a thread of its own.
//!
//! Tokio's timers run on a 1 ms wheel: a deadline is rounded up to the next tick, and a
//! runtime that parks waiting for it parks for whole milliseconds from the current tick, so a
//! sleep ends up to 2 ms after its deadline. For a 5 ms linger that is 40 % of the linger,
//! and it lands on the acknowledgement latency of every batch sealed by time. A condition
//! variable's timed wait is a futex with a nanosecond timeout, so this thread fires within
//! the slack, and sleeps without waking in between.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// Fires `wake.notify_one()` at the instant last given to [`Alarm::set`]. Dropping it ends
/// its thread.
#[derive(Debug)]
pub(super) struct Alarm {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    at: Option<Instant>,
    stopped: bool,
}

impl Alarm {
    /// Starts the alarm's thread; nothing fires until [`Alarm::set`].
    pub(super) fn start(wake: Arc<Notify>) -> std::io::Result<Alarm> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("streamhouse-producer-alarm".into())
            .spawn(move || ring(&theirs, &wake))?;
        Ok(Alarm { shared })
    }

    /// Fires at `at` (at once if it has passed), in place of any earlier setting.
    pub(super) fn set(&self, at: Instant) {
        let mut state = self.shared.lock();
        let sooner = state.at.is_none_or(|old| at < old);
        state.at = Some(at);
        drop(state);
        // A later instant needs no wake-up: the thread finds it when the old one comes.
        if sooner {
            self.shared.changed.notify_one();
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The alarm's thread: waits for the instant set, notifies, and waits for the next.
fn ring(shared: &Shared, wake: &Notify) {
    let mut state = shared.lock();
    loop {
        if state.stopped {
            return;
        }
        state = match state.at {
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                let now = Instant::now();
                if at <= now {
                    state.at = None;
                    wake.notify_one();
                    continue;
                }
                shared
                    .changed
                    .wait_timeout(state, at - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How late a firing may be on a loaded test machine and still count as on time; the
    /// figure that matters (tens of microseconds) is measured by `latency_benchmark`.
    const LATE: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn fires_at_the_instant_set_and_not_before() {
        let wake = Arc::new(Notify::new());
        let alarm = Alarm::start(wake.clone()).unwrap();
        for ms in [0u64, 1, 3, 20] {
            let at = Instant::now() + Duration::from_millis(ms);
            alarm.set(at);
            tokio::time::timeout(LATE + Duration::from_millis(ms), wake.notified())
                .await
                .expect("the alarm fired");
            assert!(Instant::now() >= at, "fired before its instant ({ms} ms)");
        }
    }

    #[tokio::test]
    async fn a_new_setting_replaces_the_old_one_either_way() {
        let wake = Arc::new(Notify::new());
        let alarm = Alarm::start(wake.clone()).unwrap();
        // Moved sooner: fires at the sooner instant, long before the first.
        let started = Instant::now();
        alarm.set(started + Duration::from_secs(3600));
        alarm.set(started + Duration::from_millis(5));
        tokio::time::timeout(LATE, wake.notified())
            .await
            .expect("fired at the sooner instant");
        // Moved later: does not fire at the earlier one.
        let later = Instant::now() + Duration::from_millis(300);
        alarm.set(Instant::now() + Duration::from_millis(10));
        alarm.set(later);
        tokio::time::timeout(LATE + Duration::from_millis(300), wake.notified())
            .await
            .expect("fired at the later instant");
        assert!(Instant::now() >= later, "fired at the replaced instant");
    }

    #[test]
    fn dropping_it_ends_its_thread() {
        let wake = Arc::new(Notify::new());
        let alarm = Alarm::start(wake).unwrap();
        let shared = Arc::downgrade(&alarm.shared);
        alarm.set(Instant::now() + Duration::from_secs(3600));
        drop(alarm);
        // The thread holds the shared state until it returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.strong_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "the alarm's thread is still running"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
