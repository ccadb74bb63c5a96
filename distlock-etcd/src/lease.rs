//! etcd leases as the store sees them: the session, and per-lock leases.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One etcd lease this store granted (or found a key hanging on).
#[derive(Debug)]
pub(crate) struct LeaseHandle {
    /// etcd's lease ID.
    pub(crate) id: i64,
    /// The TTL etcd granted, in seconds.
    pub(crate) secs: i64,
    /// The TTL asked for, in seconds (locks whose TTL rounds to it hang here).
    pub(crate) asked: i64,
    /// The locker's session (shared by many locks), not a per-lock lease.
    pub(crate) session: bool,
    /// The instant before the last grant or keep-alive etcd confirmed was sent:
    /// the lease lives at least `secs` from here.
    confirmed: Mutex<Instant>,
    /// etcd said the lease is gone (or a put on it was refused).
    dead: AtomicBool,
}

impl LeaseHandle {
    pub(crate) fn new(id: i64, secs: i64, asked: i64, session: bool, sent: Instant) -> Self {
        LeaseHandle {
            id,
            secs,
            asked,
            session,
            confirmed: Mutex::new(sent),
            dead: AtomicBool::new(false),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.secs).unwrap_or(0))
    }

    /// When the last confirmed grant or keep-alive was sent.
    pub(crate) fn confirmed(&self) -> Instant {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A keep-alive sent at `sent` was confirmed.
    pub(crate) fn confirm(&self, sent: Instant) {
        let mut confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if sent > *confirmed {
            *confirmed = sent;
        }
    }

    /// Time since the last confirmation.
    pub(crate) fn age(&self) -> Duration {
        self.confirmed().elapsed()
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
    }

    /// Alive as far as this client knows, with at least `margin` of life left.
    pub(crate) fn usable(&self, margin: Duration) -> bool {
        !self.is_dead() && self.age() + margin < self.ttl()
    }
}
