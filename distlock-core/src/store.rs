//! The small interface a backend implements: one method per store round trip.
//!
//! Backends implement [`Store`]; [`StoreLocker`](crate::StoreLocker) turns any
//! `Store` into a full [`Locker`](crate::Locker) with validation, waiting, the
//! lost signal, background refresh and tracing, so those behave the same on
//! every backend. A backend's code is only the store's side of each operation.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::{Info, LeaseKey, Result};

/// A future that completes when the resource it was made for may have become
/// free (a release, an expiry the store noticed, or a lost connection: spurious
/// wake-ups are allowed, missed ones are not once it is returned).
pub type Wakeup = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a backend can do, and its limits. Build with [`Capabilities::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Capabilities {
    /// Short name used in errors and traces (`memory`, `redis`, `postgres`, …).
    pub backend: &'static str,
    /// Shortest TTL the backend accepts.
    pub min_ttl: Duration,
    /// Longest TTL the backend accepts.
    pub max_ttl: Duration,
    /// Most permits one resource may have.
    pub max_permits: u32,
    /// Most bytes of data stored with a grant.
    pub max_data_len: usize,
    /// Longest resource name, in bytes (never above [`MAX_RESOURCE_LEN`](crate::MAX_RESOURCE_LEN)).
    pub max_resource_len: usize,
    /// Waiters are woken by the store ([`Store::subscribe`] returns `Some`).
    pub push_wakeup: bool,
    /// [`Store::refresh`] renews many leases in one round trip.
    pub batch_refresh: bool,
    /// Waiters queue in the store ([`Store::acquire_queued`]), FIFO, each woken
    /// only by its predecessor (etcd's way), instead of the core's retry loop.
    pub queued_wait: bool,
    /// Time added to the 1 % drift margin between the client's and the store's
    /// clocks (0 when the store's clock is the client's).
    pub clock_margin: Duration,
}

impl Capabilities {
    /// Defaults: TTL 10 ms ..= 7 days, 10,000 permits, 64 KiB of data, 512-byte
    /// names, no push, no batching, 2 ms clock margin.
    pub fn new(backend: &'static str) -> Self {
        Capabilities {
            backend,
            min_ttl: Duration::from_millis(10),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            max_permits: 10_000,
            max_data_len: 64 * 1024,
            max_resource_len: crate::MAX_RESOURCE_LEN,
            push_wakeup: false,
            batch_refresh: false,
            queued_wait: false,
            clock_margin: Duration::from_millis(2),
        }
    }

    /// Set the shortest TTL.
    pub fn with_min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// Set the longest TTL.
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// Set the most permits.
    pub fn with_max_permits(mut self, permits: u32) -> Self {
        self.max_permits = permits;
        self
    }

    /// Set the most data bytes.
    pub fn with_max_data_len(mut self, len: usize) -> Self {
        self.max_data_len = len;
        self
    }

    /// Set the longest resource name.
    pub fn with_max_resource_len(mut self, len: usize) -> Self {
        self.max_resource_len = len.min(crate::MAX_RESOURCE_LEN);
        self
    }

    /// Declare push wake-up.
    pub fn with_push_wakeup(mut self, push: bool) -> Self {
        self.push_wakeup = push;
        self
    }

    /// Declare batched refresh.
    pub fn with_batch_refresh(mut self, batch: bool) -> Self {
        self.batch_refresh = batch;
        self
    }

    /// Declare a store-side wait queue ([`Store::acquire_queued`]).
    pub fn with_queued_wait(mut self, queued: bool) -> Self {
        self.queued_wait = queued;
        self
    }

    /// Set the clock margin.
    pub fn with_clock_margin(mut self, margin: Duration) -> Self {
        self.clock_margin = margin;
        self
    }

    /// How much earlier than `ttl` the holder treats its lease as gone: 1 % of the
    /// TTL plus [`Capabilities::clock_margin`]. The lost deadline is the instant
    /// before the granting request was sent, plus `ttl` minus this.
    pub fn drift_margin(&self, ttl: Duration) -> Duration {
        ttl / 100 + self.clock_margin
    }
}

/// One acquire attempt, as the backend receives it (already validated).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AcquireRequest<'a> {
    /// The resource.
    pub resource: &'a str,
    /// The key the new lease will carry (chosen by the client).
    pub key: LeaseKey,
    /// Lease duration, judged by the store's clock where it has one.
    pub ttl: Duration,
    /// Permits the resource has (1 = mutex).
    pub permits: u32,
    /// Holder identity.
    pub owner: &'a str,
    /// Data to keep with the grant.
    pub data: &'a Bytes,
}

impl<'a> AcquireRequest<'a> {
    /// A request; the locker builds these, tests and wrappers may too.
    pub fn new(
        resource: &'a str,
        key: LeaseKey,
        ttl: Duration,
        permits: u32,
        owner: &'a str,
        data: &'a Bytes,
    ) -> Self {
        AcquireRequest {
            resource,
            key,
            ttl,
            permits,
            owner,
            data,
        }
    }
}

/// A successful grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The fencing token: greater than every token granted before on this resource.
    pub token: u64,
    /// When the store will consider the lease expired (store clock; informational).
    pub expires_at: SystemTime,
    /// An instant, earlier than the core's own send time, from which the lease's
    /// TTL already runs (a session lease renewed earlier, say). `None` for most
    /// backends: the core then measures from just before it sent the request.
    pub valid_from: Option<Instant>,
}

impl Grant {
    /// A grant whose TTL runs from the request.
    pub fn new(token: u64, expires_at: SystemTime) -> Self {
        Grant {
            token,
            expires_at,
            valid_from: None,
        }
    }

    /// Say the TTL already runs from an earlier instant.
    pub fn with_valid_from(mut self, instant: Instant) -> Self {
        self.valid_from = Some(instant);
        self
    }
}

/// The answer to one acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquired {
    /// The lease is ours.
    Granted(Grant),
    /// All permits are held by others (an ordinary outcome).
    Held {
        /// How long until the earliest current lease expires, if the store knows:
        /// the longest a waiter needs to sleep before trying again.
        retry_after: Option<Duration>,
    },
}

/// One lease to renew.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RefreshRequest<'a> {
    /// The resource.
    pub resource: &'a str,
    /// The holder's key.
    pub key: LeaseKey,
    /// The new TTL, counted from when the store applies the renewal.
    pub ttl: Duration,
}

impl<'a> RefreshRequest<'a> {
    /// A renewal request.
    pub fn new(resource: &'a str, key: LeaseKey, ttl: Duration) -> Self {
        RefreshRequest { resource, key, ttl }
    }
}

/// The answer for one lease in a refresh batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refreshed {
    /// Renewed for another TTL.
    Renewed,
    /// The key no longer holds the resource: the lease is lost.
    NotHeld,
}

/// A store that can hold leases: what a backend crate implements.
///
/// # Contract
/// - Every method is **one round trip** where the store allows it, and judges
///   expiry by the **store's clock** where it has one.
/// - [`Store::acquire`] grants only if fewer than `permits` unexpired leases
///   exist, or fails with [`Error::SizeMismatch`](crate::Error::SizeMismatch) if
///   the current holders use another size. Each grant's token is greater than
///   every earlier token of the resource, for the life of the store (keep the
///   counter when a resource becomes free).
/// - [`Store::refresh`] and [`Store::release`] act only when the key holds an
///   unexpired lease; an expired lease is never revived.
/// - An error means the outcome is unknown to the caller unless the error says
///   otherwise; the core treats an unconfirmed refresh as not renewed.
/// - Arguments arrive validated against [`Store::capabilities`].
///
/// Implement the methods as `async fn`; the trait spells them as
/// `impl Future + Send` so that the core can run them on any runtime thread.
/// (`Store` is used generically, never as `dyn Store`, so no future is boxed.)
///
/// # Cancel safety
/// The core never drops an `acquire` or `acquire_queued` future that has
/// started: when the caller of `try_lock()` or `lock()` goes away mid-way, the
/// core finishes the call on its background task and, once the answer is in,
/// releases the key if it may hold anything. A request the store applies
/// *after* a release sent on another connection (a pool, a second gRPC
/// stream) is the way a cancelled acquire used to leave a lease nobody held;
/// ordering the release after the acquire's answer rules that out on any
/// connection layout, with no extra round trip on the uncontended path. When
/// the answer never comes (a transient error: the request may still land),
/// the release is retried on "not held" too, for a few seconds.
///
/// So `release` of a key that was never granted must simply answer
/// `Ok(false)`. Other methods' futures (`refresh`, `release`, `info`, …) may
/// be dropped at any point.
pub trait Store: Debug + Send + Sync + 'static {
    /// Limits and features.
    fn capabilities(&self) -> &Capabilities;

    /// Try once to take a lease.
    fn acquire(
        &self,
        request: &AcquireRequest<'_>,
    ) -> impl Future<Output = Result<Acquired>> + Send;

    /// Renew many leases; the answer has one entry per request, in order.
    /// Backends that can should do this in one round trip.
    fn refresh(
        &self,
        leases: &[RefreshRequest<'_>],
    ) -> impl Future<Output = Result<Vec<Refreshed>>> + Send;

    /// End a lease. `Ok(true)` if `key` held `resource`, `Ok(false)` if it did not.
    fn release(&self, resource: &str, key: LeaseKey) -> impl Future<Output = Result<bool>> + Send;

    /// The current holders, or `None` if nobody holds the resource.
    fn info(&self, resource: &str) -> impl Future<Output = Result<Option<Info>>> + Send;

    /// The data of the oldest current lease, or `None` if nobody holds the resource.
    fn read(&self, resource: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Names of held resources starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// End every lease of `resource` at once, without the holders' keys: an
    /// operator's force release (and the suite's way to expire a lease behind
    /// its holder's back). The fencing counter is kept, so the next grant's
    /// token is higher and the evicted holders are fenced; they see `lost` at
    /// their next refresh. Returns how many leases ended.
    fn evict(&self, resource: &str) -> impl Future<Output = Result<usize>> + Send {
        let _ = resource;
        let backend = self.capabilities().backend;
        async move {
            Err(crate::Error::Unsupported {
                backend,
                operation: "evict (force release)",
            })
        }
    }

    /// A wake-up for the next time `resource` may become free, armed before the
    /// returned future completes. `Ok(None)` when the store cannot push (the
    /// default); waiters then poll with backoff.
    fn subscribe(&self, resource: &str) -> impl Future<Output = Result<Option<Wakeup>>> + Send {
        let _ = resource;
        async { Ok(None) }
    }

    /// Join the store's wait queue for `request.resource` and wait until granted
    /// or until `deadline` (`None`: no limit). Called instead of the core's retry
    /// loop only when [`Capabilities::queued_wait`] is set.
    ///
    /// `Ok(Some(grant))`: granted; `grant.valid_from` **must** be set to an
    /// instant no later than the one from which the store counts the lease's TTL
    /// (for etcd, the sending of the session lease's last keep-alive).
    /// `Ok(None)`: the deadline passed, or the wait was `abandoned`; the queue
    /// entry is gone.
    ///
    /// # Cancel safety
    /// The core never drops this future while it runs. When the caller of
    /// `lock()` goes away, the core keeps polling it in the background and sets
    /// `abandoned`: stop waiting as soon as no write of yours is in flight
    /// (finish one already sent, so that its outcome is known), leave the queue
    /// and answer `Ok(None)`. The core then releases `request.key` (a grant that
    /// comes back anyway is released too), so no queue entry outlives the wait.
    fn acquire_queued(
        &self,
        request: &AcquireRequest<'_>,
        deadline: Option<Instant>,
        abandoned: &Abandoned,
    ) -> impl Future<Output = Result<Option<Grant>>> + Send {
        let _ = (request, deadline, abandoned);
        let backend = self.capabilities().backend;
        async move {
            Err(crate::Error::Unsupported {
                backend,
                operation: "queued acquire",
            })
        }
    }
}

/// Set by the core when nobody waits any longer for a queued acquire (its
/// `lock()` future was dropped); see [`Store::acquire_queued`].
#[derive(Clone, Debug, Default)]
pub struct Abandoned {
    inner: Arc<AbandonedInner>,
}

#[derive(Debug, Default)]
struct AbandonedInner {
    set: AtomicBool,
    notify: Notify,
}

impl Abandoned {
    /// Not abandoned yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the caller went away.
    pub fn is_abandoned(&self) -> bool {
        self.inner.set.load(Ordering::Acquire)
    }

    /// Completes once the caller went away (at once if it already has).
    pub async fn abandoned(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_abandoned() {
                return;
            }
            notified.await;
        }
    }

    /// Say the caller went away.
    pub fn abandon(&self) {
        self.inner.set.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }
}
