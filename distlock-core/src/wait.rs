//! Sleeping between attempts: jittered exponential backoff, capped by the
//! holder's expiry and the caller's deadline.

use std::time::{Duration, Instant};

/// First pause between polls of a store that cannot push.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between polls.
const MAX_PAUSE: Duration = Duration::from_millis(500);
/// Shortest pause, so a store that keeps answering "free in 0 ms" cannot make a
/// waiter spin.
const MIN_PAUSE: Duration = Duration::from_millis(1);

/// Jittered exponential backoff, the one every crate of the workspace uses
/// for retries and polling: each pause is drawn from [half, full] of the
/// current step ("equal jitter"), so that clients spread out but never retry
/// sooner than half the step; the step doubles up to a cap.
///
/// ```
/// use std::time::Duration;
/// use distlock_core::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
/// let first = backoff.next_pause();
/// assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Pauses starting at `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max: max.max(first),
            step: first,
        }
    }

    /// The waiting `lock()`'s backoff: 5 ms doubling to 500 ms.
    pub(crate) fn for_waiting() -> Self {
        Self::new(FIRST_PAUSE, MAX_PAUSE)
    }

    /// The next pause (jittered), and a step up.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        jitter(step)
    }

    /// Start again from the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.first;
    }

    /// Sleep the next pause, or until `deadline` if that comes first: `false`
    /// when the deadline has passed (nothing more to wait for).
    pub async fn sleep(&mut self, deadline: Option<Instant>) -> bool {
        let now = Instant::now();
        let pause = self.next_pause();
        match deadline {
            Some(at) if at <= now + pause => {
                tokio::time::sleep_until(at.into()).await;
                false
            }
            _ => {
                tokio::time::sleep(pause).await;
                true
            }
        }
    }

    /// How long a waiter sleeps before the next attempt.
    ///
    /// - `push`: the store wakes us on release, so sleep until the holder's lease
    ///   would expire (a missed message costs at most that), or poll if unknown.
    /// - otherwise: the backoff step, never past the holder's expiry.
    ///
    /// Always capped by `deadline`, and never shorter than a millisecond.
    pub(crate) fn pause(
        &mut self,
        push: bool,
        retry_after: Option<Duration>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Duration {
        let step = self.next_pause();
        let pause = match (push, retry_after) {
            // Someone else's lease runs out then: add a little jitter so that all
            // waiters do not retry in the same instant.
            (true, Some(expiry)) => expiry + jitter(FIRST_PAUSE),
            (false, Some(expiry)) => step.min(expiry + jitter(FIRST_PAUSE)),
            (_, None) => step,
        };
        let pause = pause.max(MIN_PAUSE);
        match deadline {
            Some(deadline) => pause.min(deadline.saturating_duration_since(now)),
            None => pause,
        }
    }
}

/// A duration drawn uniformly from [d/2, d].
fn jitter(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_respects_limits() {
        let mut b = Backoff::for_waiting();
        let now = Instant::now();
        let pauses: Vec<_> = (0..12).map(|_| b.pause(false, None, now, None)).collect();
        assert!(pauses[0] <= FIRST_PAUSE && pauses[0] >= FIRST_PAUSE / 2);
        assert!(pauses.iter().all(|p| *p <= MAX_PAUSE));
        assert!(pauses[11] >= MAX_PAUSE / 2);
        // never past the holder's expiry (plus jitter) when polling
        let p = b.pause(false, Some(Duration::from_millis(20)), now, None);
        assert!(p <= Duration::from_millis(25), "{p:?}");
        // never past the caller's deadline
        let p = b.pause(
            true,
            Some(Duration::from_secs(60)),
            now,
            Some(now + Duration::from_millis(3)),
        );
        assert!(p <= Duration::from_millis(3), "{p:?}");
        // never a spin
        let p = b.pause(false, Some(Duration::ZERO), now, None);
        assert!(p >= MIN_PAUSE);
    }
}
