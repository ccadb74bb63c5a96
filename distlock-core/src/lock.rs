//! The handle a holder keeps: token, deadline, refresh, release and the lost signal.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::{Error, LeaseKey, Result};

/// The instants the lease state stores are nanoseconds after this one.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

const LOST: u64 = 0;
const RELEASED: u64 = 1;

pub(crate) fn encode(instant: Instant) -> u64 {
    let nanos = instant.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(nanos)
        .unwrap_or(u64::MAX - 1)
        .saturating_add(2)
}

fn decode(value: u64) -> Instant {
    epoch() + Duration::from_nanos(value - 2)
}

/// The state of one held lease, shared by its [`Lock`], its [`LostSignal`]s and
/// the locker's refresher. Small on purpose: no task, timer or channel per lease.
pub(crate) struct LeaseState {
    pub(crate) resource: Arc<str>,
    pub(crate) key: LeaseKey,
    pub(crate) token: u64,
    pub(crate) ttl: Duration,
    /// Subtracted from `ttl` when a grant or renewal sets the deadline.
    pub(crate) drift: Duration,
    /// Background refresh interval (`None`: manual refresh).
    pub(crate) interval: Option<Duration>,
    /// `LOST`, `RELEASED`, or the encoded local deadline.
    deadline: AtomicU64,
    /// Encoded instant of the next background refresh.
    next_due: AtomicU64,
    /// A refresh round for this lease is under way.
    pub(crate) in_flight: AtomicBool,
    /// Encoded instant the lease ended (lost: its deadline, or the refusal).
    ended_at: AtomicU64,
    notify: Notify,
}

impl fmt::Debug for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseState")
            .field("resource", &self.resource)
            .field("key", &self.key)
            .field("token", &self.token)
            .field("ttl", &self.ttl)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LeaseState {
    /// A lease granted by a request sent at `sent`.
    pub(crate) fn new(
        resource: Arc<str>,
        key: LeaseKey,
        token: u64,
        ttl: Duration,
        drift: Duration,
        interval: Option<Duration>,
        sent: Instant,
    ) -> Self {
        LeaseState {
            resource,
            key,
            token,
            ttl,
            drift,
            interval,
            deadline: AtomicU64::new(encode(sent + ttl.saturating_sub(drift))),
            next_due: AtomicU64::new(encode(sent + interval.unwrap_or(ttl))),
            in_flight: AtomicBool::new(false),
            ended_at: AtomicU64::new(RELEASED),
            notify: Notify::new(),
        }
        // A grant that took longer than its TTL to come back is lost from the
        // start: `is_lost` compares the deadline with the clock on every call.
    }

    /// The local deadline, or `None` once lost or released.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::Acquire) {
            LOST | RELEASED => None,
            value => Some(decode(value)),
        }
    }

    /// When the background refresher should next renew this lease.
    pub(crate) fn next_due(&self) -> Instant {
        decode(self.next_due.load(Ordering::Acquire))
    }

    pub(crate) fn set_next_due(&self, at: Instant) {
        self.next_due.store(encode(at), Ordering::Release);
    }

    pub(crate) fn is_lost(&self) -> bool {
        match self.deadline.load(Ordering::Acquire) {
            LOST => true,
            RELEASED => false,
            value => Instant::now() >= decode(value),
        }
    }

    pub(crate) fn is_released(&self) -> bool {
        self.deadline.load(Ordering::Acquire) == RELEASED
    }

    /// Not lost and not released.
    pub(crate) fn is_live(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() < d)
    }

    fn finish(&self, to: u64) -> bool {
        let mut current = self.deadline.load(Ordering::Acquire);
        loop {
            if current == LOST || current == RELEASED {
                return false;
            }
            match self
                .deadline
                .compare_exchange(current, to, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // The lease ended at its deadline, or now if that is earlier
                    // (a refused refresh, a release).
                    let ended = encode(Instant::now()).min(current);
                    self.ended_at.store(ended, Ordering::Release);
                    self.notify.notify_waiters();
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// When the lease stopped being safe to use, if it has: the deadline that
    /// passed, or the moment a refresh was refused.
    pub(crate) fn lost_at(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::Acquire) {
            LOST => match self.ended_at.load(Ordering::Acquire) {
                LOST | RELEASED => None,
                ended => Some(decode(ended)),
            },
            RELEASED => None,
            deadline => {
                let deadline = decode(deadline);
                (Instant::now() >= deadline).then_some(deadline)
            }
        }
    }

    /// Fire the lost signal (no effect once released). Returns whether this call fired it.
    pub(crate) fn mark_lost(&self) -> bool {
        self.finish(LOST)
    }

    /// Mark released; the lost signal's waiters complete. Returns whether this call did it.
    pub(crate) fn mark_released(&self) -> bool {
        self.finish(RELEASED)
    }

    /// A renewal sent at `sent` was confirmed. Extends the deadline unless the
    /// old one already passed (a lease that was lost stays lost). Returns whether
    /// the lease is still held.
    pub(crate) fn confirm_refresh(&self, sent: Instant) -> bool {
        let new_deadline = encode(sent + self.ttl.saturating_sub(self.drift));
        let mut current = self.deadline.load(Ordering::Acquire);
        loop {
            if current == LOST || current == RELEASED {
                return false;
            }
            if Instant::now() >= decode(current) {
                self.mark_lost();
                return false;
            }
            let next = current.max(new_deadline);
            match self
                .deadline
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Waiters re-arm their timers on the new deadline.
                    self.notify.notify_waiters();
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Completes once the lease is lost or released.
    pub(crate) async fn ended(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(deadline) = self.deadline() else {
                return;
            };
            if Instant::now() >= deadline {
                self.mark_lost();
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
}

/// What a [`Lock`] needs from the locker that granted it.
#[async_trait]
pub(crate) trait LeaseOwner: fmt::Debug + Send + Sync {
    /// Renew one lease now.
    async fn refresh_lease(&self, state: &Arc<LeaseState>) -> Result<()>;
    /// Release one lease now.
    async fn release_lease(&self, state: &Arc<LeaseState>) -> Result<()>;
    /// Release later, from a `Drop`: must not block and must not need a runtime.
    fn release_in_background(&self, state: &Arc<LeaseState>);
    /// Stop managing the lease without releasing it.
    fn forget_lease(&self, state: &Arc<LeaseState>);
}

/// A held lock: what [`Handler::try_lock`](crate::Handler::try_lock) and
/// [`Locker::lock`](crate::Locker::lock) return.
///
/// - [`Lock::token`] is the fencing token: pass it to the storage you guard and
///   have it reject writes with a token lower than one it has seen.
/// - [`Lock::lost`] completes when the lock can no longer be trusted. It fires no
///   later than the moment the store could grant the resource to someone else:
///   the deadline is counted from the instant *before* the granting (or last
///   renewing) request was sent, less a drift margin.
/// - [`Lock::release`] gives the lock back and reports whether that was
///   confirmed. Dropping an unreleased `Lock` stops its refresh and releases it in
///   the background (if the locker's runtime is gone, the lease expires after its
///   TTL instead).
///
/// Memory: a `Lock` is two pointers plus its data; the state behind it is a few
/// hundred bytes, with no task, timer or channel of its own.
pub struct Lock {
    state: Arc<LeaseState>,
    data: Bytes,
    owner: Arc<dyn LeaseOwner>,
    done: bool,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("resource", &self.resource())
            .field("token", &self.token())
            .field("key", &self.state.key)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl Lock {
    pub(crate) fn new(state: Arc<LeaseState>, data: Bytes, owner: Arc<dyn LeaseOwner>) -> Self {
        Lock {
            state,
            data,
            owner,
            done: false,
        }
    }

    /// The locked resource.
    pub fn resource(&self) -> &str {
        &self.state.resource
    }

    /// The lease key (needed to release from another process; keep it secret).
    pub fn key(&self) -> LeaseKey {
        self.state.key
    }

    /// The fencing token: strictly greater than every earlier grant's token on
    /// this resource, on every backend.
    pub fn token(&self) -> u64 {
        self.state.token
    }

    /// The data stored with the grant.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The TTL each grant or renewal lasts.
    pub fn ttl(&self) -> Duration {
        self.state.ttl
    }

    /// The instant by which the lease must be renewed; `lost` fires then. `None`
    /// once lost.
    pub fn deadline(&self) -> Option<Instant> {
        self.state.deadline()
    }

    /// Whether the lock is lost (refresh refused, or the deadline passed).
    pub fn is_lost(&self) -> bool {
        self.state.is_lost()
    }

    /// When the lock stopped being safe to use, once it is lost: the deadline
    /// that passed, or the moment the store refused a refresh. `None` while held
    /// (or after release).
    pub fn lost_at(&self) -> Option<Instant> {
        self.state.lost_at()
    }

    /// A future that completes when the lock is lost (or released). Ready at once
    /// if it already is; owns what it needs, so it can be moved into a task or
    /// used in `tokio::select!`.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost_signal().into_future()
    }

    /// A cheap, clonable handle on the lost signal, for other tasks.
    pub fn lost_signal(&self) -> LostSignal {
        LostSignal {
            state: self.state.clone(),
        }
    }

    /// Renew the lease for another TTL now (needed with
    /// [`Refresh::Manual`](crate::Refresh::Manual); harmless otherwise).
    ///
    /// # Errors
    /// [`Lost`](Error::Lost) if the lock was already lost or the store no longer
    /// knows this lease (the lost signal fires); a transient error if the store
    /// could not confirm (the lease is unchanged; `lost` fires at the deadline if
    /// no later renewal succeeds).
    pub async fn refresh(&self) -> Result<()> {
        if !self.state.is_live() {
            self.state.mark_lost();
            return Err(Error::Lost {
                resource: self.resource().to_owned(),
            });
        }
        self.owner.refresh_lease(&self.state).await
    }

    /// Give the lock back.
    ///
    /// # Errors
    /// [`NotHeld`](Error::NotHeld) if the lease had already expired or been taken
    /// over (whatever was done under it may have overlapped another holder);
    /// a transient error if the store could not confirm the release (the lease is
    /// then released again in the background, and expires after its TTL at worst).
    ///
    /// # Cancel safety
    /// If the future is dropped, the release finishes in the background.
    pub async fn release(mut self) -> Result<()> {
        self.done = true;
        let outcome = ReleaseOnDrop {
            state: &self.state,
            owner: &self.owner,
            armed: true,
        };
        outcome.run().await
    }

    /// Stop refreshing and tracking this lease without releasing it, and return
    /// its key (to hand the lease to another process, which releases or refreshes
    /// it through [`Handler`](crate::Handler)). It expires after its TTL otherwise.
    pub fn detach(mut self) -> LeaseKey {
        self.done = true;
        self.owner.forget_lease(&self.state);
        self.state.key
    }
}

/// Releases in the background if a `release()` future is dropped mid-way.
struct ReleaseOnDrop<'a> {
    state: &'a Arc<LeaseState>,
    owner: &'a Arc<dyn LeaseOwner>,
    armed: bool,
}

impl ReleaseOnDrop<'_> {
    async fn run(mut self) -> Result<()> {
        let result = self.owner.release_lease(self.state).await;
        self.armed = false;
        result
    }
}

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.owner.release_in_background(self.state);
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.done {
            self.owner.release_in_background(&self.state);
        }
    }
}

/// A clonable view of one lock's lost signal, like tokio's `CancellationToken`:
/// [`LostSignal::lost`] completes when the lock is lost or released.
#[derive(Clone)]
pub struct LostSignal {
    state: Arc<LeaseState>,
}

impl fmt::Debug for LostSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LostSignal")
            .field("resource", &self.state.resource)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LostSignal {
    /// Whether the lock is lost.
    pub fn is_lost(&self) -> bool {
        self.state.is_lost()
    }

    /// When the lock stopped being safe to use; see [`Lock::lost_at`].
    pub fn lost_at(&self) -> Option<Instant> {
        self.state.lost_at()
    }

    /// Whether the lock was released by its holder.
    pub fn is_released(&self) -> bool {
        self.state.is_released()
    }

    /// Completes when the lock is lost or released; at once if it already is.
    pub async fn lost(&self) {
        self.state.ended().await
    }

    /// The same as [`LostSignal::lost`], owning the signal.
    pub async fn into_future(self) {
        self.state.ended().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ttl_ms: u64) -> LeaseState {
        LeaseState::new(
            "r".into(),
            LeaseKey::random(),
            1,
            Duration::from_millis(ttl_ms),
            Duration::ZERO,
            None,
            Instant::now(),
        )
    }

    #[tokio::test]
    async fn deadline_fires_lost_and_refresh_cannot_revive() {
        let s = state(30);
        assert!(!s.is_lost());
        let sent = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), s.ended())
            .await
            .expect("lost fires by the deadline");
        assert!(s.is_lost());
        let lost_at = s.lost_at().expect("lost at its deadline");
        assert!(lost_at <= Instant::now());
        assert!(!s.confirm_refresh(sent), "a lost lease stays lost");
        assert_eq!(s.lost_at(), Some(lost_at), "the end does not move");
        assert!(s.is_lost());
    }

    #[tokio::test]
    async fn refresh_moves_deadline_and_release_ends() {
        let s = state(10_000);
        let before = s.deadline().unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(s.confirm_refresh(Instant::now()));
        assert!(s.deadline().unwrap() > before);
        assert!(s.mark_released());
        assert!(!s.mark_lost(), "released is final");
        assert!(!s.is_lost() && s.is_released());
        s.ended().await;
    }
}
