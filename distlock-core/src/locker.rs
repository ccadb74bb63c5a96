//! [`StoreLocker`]: any [`Store`] as a full [`Locker`].
//!
//! The data path of an acquire, start to end:
//! [`Locker::lock`] → validate → `attempt` (random lease key, instant before
//! sending, one [`Store::acquire`] round trip) → on "held", sleep until a push
//! wake-up or a backoff (never past the holder's expiry) → on "granted", a
//! [`LeaseState`] with its deadline, registered with the background refresher if
//! auto-refresh is on → [`Lock`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::lock::{LeaseOwner, LeaseState};
use crate::options::{validate_owner, validate_prefix, validate_resource};
use crate::refresher::{Background, Job, RELEASE_RETRIES};
use crate::trace::round_trip;
use crate::wait::Backoff;
use crate::{
    Abandoned, Acquired, Capabilities, Error, Grant, Handler, Info, Infoer, LeaseKey, Lock,
    LockOptions, Locker, Reader, RefreshRequest, Refreshed, Result, Store,
};

/// Any [`Store`] as a [`Locker`]: validation, waiting, fencing, the lost signal,
/// background refresh (one task per locker, batched) and tracing, identical on
/// every backend. Backend crates name it, e.g. `type MemoryLocker = StoreLocker<MemoryStore>`.
///
/// Cloning is cheap and shares everything.
pub struct StoreLocker<S: Store> {
    shared: Arc<Shared<S>>,
}

impl<S: Store> Clone for StoreLocker<S> {
    fn clone(&self) -> Self {
        StoreLocker {
            shared: self.shared.clone(),
        }
    }
}

impl<S: Store> fmt::Debug for StoreLocker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLocker")
            .field("store", &self.shared.store)
            .field("owner", &self.shared.owner)
            .field("refreshed_leases", &self.shared.background.len())
            .finish()
    }
}

impl<S: Store> Drop for StoreLocker<S> {
    fn drop(&mut self) {
        // Let the refresher notice if this was the last handle.
        self.shared.background.wake.notify_one();
    }
}

/// Counters of the background refresher, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshStats {
    /// [`Store::refresh`] calls made by the background task.
    pub calls: u64,
    /// Leases those calls renewed.
    pub renewed: u64,
    /// Leases found lost (refused, or past their deadline).
    pub lost: u64,
}

impl<S: Store> StoreLocker<S> {
    /// A locker over `store`, identified as `host:pid:random` in `info`.
    pub fn new(store: S) -> Self {
        Self::build(store, default_owner())
    }

    /// A locker over `store` with the given holder identity.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) if `owner` is too long or has
    /// control characters.
    pub fn with_owner(store: S, owner: impl Into<String>) -> Result<Self> {
        let owner = owner.into();
        validate_owner(&owner)?;
        Ok(Self::build(store, owner))
    }

    fn build(store: S, owner: String) -> Self {
        StoreLocker {
            shared: Arc::new_cyclic(|me| Shared {
                store,
                owner,
                background: Background::default(),
                me: me.clone(),
            }),
        }
    }

    /// The store behind this locker.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// The default holder identity.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// How many leases the background refresher is keeping alive.
    pub fn refreshed_leases(&self) -> usize {
        self.shared.background.len()
    }

    /// The refresher's counters.
    pub fn refresh_stats(&self) -> RefreshStats {
        let b = &self.shared.background;
        RefreshStats {
            calls: b.calls.load(Ordering::Relaxed),
            renewed: b.renewed.load(Ordering::Relaxed),
            lost: b.lost.load(Ordering::Relaxed),
        }
    }

    fn check(&self, resource: &str, options: &LockOptions) -> Result<()> {
        let caps = self.shared.store.capabilities();
        validate_resource(resource, caps.max_resource_len)?;
        options.validate(caps)
    }
}

fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

struct Shared<S: Store> {
    store: S,
    owner: String,
    background: Background,
    /// This value's own `Arc`, for `&self` methods that must start the task.
    me: Weak<Shared<S>>,
}

impl<S: Store> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("owner", &self.owner)
            .finish()
    }
}

/// A store call that must run to its end once started: if the caller drops
/// it midway, the rest of it runs on the locker's background task, and then
/// its key is released if the answer may have left a lease. The store may apply a request whose answer
/// nobody waited for; only once the answer is in can a release be ordered
/// after it, whatever connection or stream the release goes out on.
struct MustFinish<S: Store, T: Send + 'static> {
    call: Option<BoxFuture<'static, Result<T>>>,
    shared: Arc<Shared<S>>,
    resource: Arc<str>,
    key: LeaseKey,
    /// Whether an answer may have left a lease under `key` (then it is released).
    may_hold: fn(&Result<T>) -> bool,
    /// Told when the caller went away (queued acquires stop waiting).
    abandoned: Option<Abandoned>,
}

impl<S: Store, T: Send + 'static> Future for MustFinish<S, T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(Err(Error::store(
                "distlock",
                "store call polled after its end",
            )));
        };
        match call.as_mut().poll(cx) {
            Poll::Ready(answer) => {
                self.call = None;
                Poll::Ready(answer)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: Store, T: Send + 'static> Drop for MustFinish<S, T> {
    fn drop(&mut self) {
        // Finished (or never started): nothing to do. This is the common path,
        // and it costs nothing.
        let Some(call) = self.call.take() else {
            return;
        };
        if let Some(abandoned) = &self.abandoned {
            abandoned.abandon();
        }
        let shared = self.shared.clone();
        let (resource, key, may_hold) = (self.resource.clone(), self.key, self.may_hold);
        self.shared.background.push_job(Box::pin(async move {
            let answer = call.await;
            let unsure = matches!(&answer, Err(error) if error.is_transient());
            if unsure || may_hold(&answer) {
                shared.release_round(resource, key, unsure).await;
            }
        }));
        self.shared.ensure_background();
    }
}

/// How long `lock()` without a wait limit keeps retrying a store that fails
/// every attempt before it returns the fault.
const FAULT_PATIENCE: Duration = Duration::from_secs(30);

enum Attempt {
    Granted(Lock),
    Held(Option<Duration>),
}

impl<S: Store> Shared<S> {
    fn backend(&self) -> &'static str {
        self.store.capabilities().backend
    }

    /// Wrap a store call on `resource`/`key` so that a dropped caller leaves
    /// nothing behind (see [`MustFinish`]).
    fn must_finish<T: Send + 'static>(
        self: &Arc<Self>,
        resource: &Arc<str>,
        key: LeaseKey,
        call: BoxFuture<'static, Result<T>>,
        abandoned: Option<Abandoned>,
        may_hold: fn(&Result<T>) -> bool,
    ) -> MustFinish<S, T> {
        MustFinish {
            call: Some(call),
            shared: self.clone(),
            resource: resource.clone(),
            key,
            may_hold,
            abandoned,
        }
    }

    /// One acquire round trip.
    async fn attempt(self: &Arc<Self>, resource: &str, options: &LockOptions) -> Result<Attempt> {
        let key = LeaseKey::random();
        let name: Arc<str> = resource.into();
        let call = {
            let shared = self.clone();
            let name = name.clone();
            let owner = options.owner.clone();
            let data = options.data.clone();
            let (ttl, permits) = (options.ttl, options.permits);
            Box::pin(async move {
                let owner = owner.as_deref().unwrap_or(&shared.owner);
                let request = crate::AcquireRequest::new(&name, key, ttl, permits, owner, &data);
                shared.store.acquire(&request).await
            })
        };
        let call = self.must_finish(&name, key, call, None, |answer| {
            matches!(answer, Ok(Acquired::Granted(_)))
        });
        // The lease's TTL may start running at the store any time after this.
        let sent = Instant::now();
        let answer = round_trip(self.backend(), "acquire", resource, call, |a| match a {
            Acquired::Granted(_) => "granted",
            Acquired::Held { .. } => "held",
        })
        .await;
        match answer {
            Ok(Acquired::Granted(grant)) => {
                let valid_from = grant.valid_from.map_or(sent, |v| v.min(sent));
                Ok(Attempt::Granted(self.new_lock(
                    key,
                    grant.token,
                    valid_from,
                    name,
                    options,
                )))
            }
            Ok(Acquired::Held { retry_after }) => Ok(Attempt::Held(retry_after)),
            Err(error) => {
                // A request that may have been applied: its key is released
                // in the background, until no late arrival can hold it.
                if error.is_transient() {
                    self.queue_release(name, key, true);
                }
                Err(error)
            }
        }
    }

    fn new_lock(
        self: &Arc<Self>,
        key: LeaseKey,
        token: u64,
        valid_from: Instant,
        resource: Arc<str>,
        options: &LockOptions,
    ) -> Lock {
        let caps = self.store.capabilities();
        let interval = options.refresh_interval();
        let state = Arc::new(LeaseState::new(
            resource,
            key,
            token,
            options.ttl,
            caps.drift_margin(options.ttl),
            interval,
            valid_from,
        ));
        if interval.is_some() {
            if self.background.insert(state.clone()) {
                self.background.wake.notify_one();
            }
            self.ensure_background();
        }
        let owner: Arc<dyn LeaseOwner> = self.clone();
        Lock::new(state, options.data.clone(), owner)
    }

    /// Waiting acquire.
    async fn lock(self: &Arc<Self>, resource: &str, options: &LockOptions) -> Result<Lock> {
        let started = Instant::now();
        let once = options.wait_timeout == Some(Duration::ZERO);
        // `None`: no limit (a limit too far away to represent is none either).
        let deadline = options
            .wait_timeout
            .and_then(|wait| started.checked_add(wait));
        if !once && self.store.capabilities().queued_wait {
            return self.lock_queued(resource, options, started, deadline).await;
        }
        let push = self.store.capabilities().push_wakeup;
        let mut backoff = Backoff::for_waiting();
        // Armed wake-up for the next release, kept across fallback timeouts.
        let mut wakeup: Option<crate::Wakeup> = None;
        // A store fault while waiting is retried until the deadline (the
        // attempt's key is released in the background), or for
        // `FAULT_PATIENCE` of faults in a row without one; if the wait ends on
        // a fault, that error is the answer rather than `WaitTimeout`.
        let mut store_fault: Option<Error>;
        let mut faulty_since: Option<Instant> = None;
        loop {
            let retry_after = match self.attempt(resource, options).await {
                Ok(Attempt::Granted(lock)) => return Ok(lock),
                Ok(Attempt::Held(retry_after)) => {
                    store_fault = None;
                    faulty_since = None;
                    retry_after
                }
                Err(error @ (Error::Unavailable { .. } | Error::OutcomeUnknown { .. }))
                    if !once =>
                {
                    let since = *faulty_since.get_or_insert_with(Instant::now);
                    if deadline.is_none() && since.elapsed() >= FAULT_PATIENCE {
                        return Err(error);
                    }
                    tracing::debug!(%error, resource, "store fault while waiting; retrying");
                    store_fault = Some(error);
                    wakeup = None;
                    None
                }
                Err(error) => return Err(error),
            };
            let now = Instant::now();
            if once || deadline.is_some_and(|deadline| now >= deadline) {
                return Err(store_fault.take().unwrap_or_else(|| Error::WaitTimeout {
                    resource: resource.to_owned(),
                    waited: now - started,
                }));
            }
            if push && wakeup.is_none() && store_fault.is_none() {
                // Subscribe only once the resource is found held (an uncontended
                // lock() stays one round trip), then try again at once: a release
                // between the attempt and the subscription is not missed.
                match self.store.subscribe(resource).await {
                    Ok(Some(armed)) => {
                        wakeup = Some(armed);
                        continue;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::debug!(%error, resource, "subscribe failed; polling instead");
                    }
                }
            }
            let pause = backoff.pause(wakeup.is_some(), retry_after, now, deadline);
            match wakeup.as_mut() {
                Some(armed) => {
                    if tokio::time::timeout(pause, armed).await.is_ok() {
                        // Used up: subscribe again if the next attempt finds it held.
                        wakeup = None;
                    }
                }
                None => tokio::time::sleep(pause).await,
            }
        }
    }

    /// Waiting acquire through the store's own queue.
    async fn lock_queued(
        self: &Arc<Self>,
        resource: &str,
        options: &LockOptions,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<Lock> {
        let key = LeaseKey::random();
        let name: Arc<str> = resource.into();
        let abandoned = Abandoned::new();
        let call: BoxFuture<'static, Result<Option<Grant>>> = {
            let shared = self.clone();
            let name = name.clone();
            let owner = options.owner.clone();
            let data = options.data.clone();
            let (ttl, permits) = (options.ttl, options.permits);
            let abandoned = abandoned.clone();
            Box::pin(async move {
                let owner = owner.as_deref().unwrap_or(&shared.owner);
                let request = crate::AcquireRequest::new(&name, key, ttl, permits, owner, &data);
                shared
                    .store
                    .acquire_queued(&request, deadline, &abandoned)
                    .await
            })
        };
        // Abandoned, the store leaves its queue; whatever it answers then, the
        // key is released once the call has ended.
        let call = self.must_finish(&name, key, call, Some(abandoned), |_| true);
        let answer = round_trip(self.backend(), "acquire_queued", resource, call, |g| {
            if g.is_some() { "granted" } else { "timed out" }
        })
        .await;
        match answer {
            Ok(Some(grant)) => {
                // Without an anchor from the store, the only safe one is the start.
                let valid_from = grant.valid_from.unwrap_or(started);
                Ok(self.new_lock(key, grant.token, valid_from, name, options))
            }
            Ok(None) => Err(Error::WaitTimeout {
                resource: resource.to_owned(),
                waited: started.elapsed(),
            }),
            Err(error) => {
                // Whatever the error, a queue entry may remain: release the key.
                let unsure = error.is_transient();
                self.queue_release(name, key, unsure);
                Err(error)
            }
        }
    }

    /// Release `key` in the background; `unsure`: its acquire may still land,
    /// so "not held" is not believed at once.
    fn queue_release(self: &Arc<Self>, resource: Arc<str>, key: LeaseKey, unsure: bool) {
        self.background
            .push_job(Box::pin(self.clone().release_round(resource, key, unsure)));
        self.ensure_background();
    }

    /// Start the background task if it is not running, and wake it. Without a
    /// tokio runtime (a handle dropped after the runtime ended) nothing can
    /// run: queued releases then expire after their TTL.
    fn ensure_background(self: &Arc<Self>) {
        let bg = &self.background;
        if bg.running.load(Ordering::Acquire)
            || bg
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            bg.wake.notify_one();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(crate::refresher::run(self.clone()));
            }
            Err(_) => {
                bg.running.store(false, Ordering::Release);
                tracing::warn!(
                    backend = self.backend(),
                    "no tokio runtime: leases are not refreshed or released in the background"
                );
            }
        }
    }

    /// Renew `due` in one store call (the backend may split it) and apply the answers.
    async fn renew(self: Arc<Self>, due: Vec<Arc<LeaseState>>) {
        let requests: Vec<RefreshRequest<'_>> = due
            .iter()
            .map(|lease| RefreshRequest::new(&lease.resource, lease.key, lease.ttl))
            .collect();
        let label = if due.len() == 1 {
            due[0].resource.to_string()
        } else {
            format!("<{} leases>", due.len())
        };
        // No answer after the last deadline in the batch is no use to anyone.
        let give_up = due
            .iter()
            .filter_map(|lease| lease.deadline())
            .max()
            .unwrap_or_else(Instant::now);
        let sent = Instant::now();
        self.background.calls.fetch_add(1, Ordering::Relaxed);
        let call = round_trip(
            self.backend(),
            "refresh",
            &label,
            self.store.refresh(&requests),
            |_| "answered",
        );
        let answer = match tokio::time::timeout_at(give_up.into(), call).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::unavailable(
                self.backend(),
                "refresh got no answer before the leases' deadline",
            )),
        };
        let now = Instant::now();
        match answer {
            Ok(outcomes) if outcomes.len() == due.len() => {
                let mut renewed = 0;
                let mut lost = 0;
                for (lease, outcome) in due.iter().zip(outcomes) {
                    let held = outcome == Refreshed::Renewed && lease.confirm_refresh(sent);
                    if held {
                        renewed += 1;
                        lease.set_next_due(sent + lease.interval.unwrap_or(lease.ttl / 3));
                    } else {
                        if lease.mark_lost() {
                            lost += 1;
                            tracing::warn!(
                                backend = self.backend(),
                                resource = &*lease.resource,
                                token = lease.token,
                                "lock lost: the store refused the renewal"
                            );
                        }
                        self.background.remove(lease.key);
                    }
                }
                self.background
                    .renewed
                    .fetch_add(renewed, Ordering::Relaxed);
                self.background.lost.fetch_add(lost, Ordering::Relaxed);
            }
            other => {
                let error = match other {
                    Err(error) => error.to_string(),
                    Ok(outcomes) => format!(
                        "backend answered {} outcomes for {} leases",
                        outcomes.len(),
                        due.len()
                    ),
                };
                tracing::warn!(
                    backend = self.backend(),
                    leases = due.len(),
                    %error,
                    "refresh failed; retrying before the deadline"
                );
                for lease in &due {
                    let interval = lease.interval.unwrap_or(lease.ttl / 3);
                    let left = lease
                        .deadline()
                        .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                    let retry = (interval / 4).min(left / 2).max(Duration::from_millis(5));
                    lease.set_next_due(now + retry);
                }
            }
        }
        if self.background.requeue(&due) {
            self.background.wake.notify_one();
        }
    }

    /// Release a key nobody waits on (dropped handle, cancelled acquire).
    ///
    /// Transient errors are retried. With `unsure` (the acquire that took the
    /// key may not have reached the store yet: its answer never came), a "not
    /// held" is retried too, for a few seconds, so that an acquire applied
    /// after our first release is still undone.
    async fn release_round(self: Arc<Self>, resource: Arc<str>, key: LeaseKey, unsure: bool) {
        let mut pauses = RELEASE_RETRIES.iter();
        loop {
            let answer = round_trip(
                self.backend(),
                "release",
                &resource,
                self.store.release(&resource, key),
                |released| if *released { "released" } else { "not held" },
            )
            .await;
            let again = match &answer {
                Ok(true) => false,
                Ok(false) => unsure,
                Err(error) => error.is_transient(),
            };
            let pause = if again { pauses.next() } else { None };
            let Some(pause) = pause else {
                if let Err(error) = answer {
                    tracing::warn!(
                        backend = self.backend(),
                        resource = &*resource,
                        %error,
                        "background release failed; the lease expires after its TTL"
                    );
                }
                return;
            };
            tokio::time::sleep(*pause).await;
        }
    }
}

impl<S: Store> crate::refresher::Owner for Shared<S> {
    fn background(&self) -> &Background {
        &self.background
    }

    fn refresh_round(self: Arc<Self>, due: Vec<Arc<LeaseState>>) -> Job {
        Box::pin(self.renew(due))
    }
}

#[async_trait]
impl<S: Store> LeaseOwner for Shared<S> {
    async fn refresh_lease(&self, state: &Arc<LeaseState>) -> Result<()> {
        let request = [RefreshRequest::new(&state.resource, state.key, state.ttl)];
        let sent = Instant::now();
        let answer = round_trip(
            self.backend(),
            "refresh",
            &state.resource,
            self.store.refresh(&request),
            |_| "answered",
        )
        .await?;
        let lost = || Error::Lost {
            resource: state.resource.to_string(),
        };
        match answer.first() {
            Some(Refreshed::Renewed) if state.confirm_refresh(sent) => {
                if let Some(interval) = state.interval {
                    state.set_next_due(sent + interval);
                }
                Ok(())
            }
            Some(_) => {
                if state.mark_lost() {
                    self.background.lost.fetch_add(1, Ordering::Relaxed);
                }
                self.background.remove(state.key);
                Err(lost())
            }
            None => Err(Error::store(
                self.backend(),
                "refresh answered nothing for one lease",
            )),
        }
    }

    async fn release_lease(&self, state: &Arc<LeaseState>) -> Result<()> {
        state.mark_released();
        self.background.remove(state.key);
        let released = round_trip(
            self.backend(),
            "release",
            &state.resource,
            self.store.release(&state.resource, state.key),
            |released| if *released { "released" } else { "not held" },
        )
        .await;
        match released {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::not_held(&state.resource)),
            Err(error) => {
                // Unconfirmed: try again in the background (the lease expires
                // after its TTL at worst), and say so.
                if error.is_transient()
                    && let Some(me) = self.me.upgrade()
                {
                    me.queue_release(state.resource.clone(), state.key, false);
                }
                Err(error)
            }
        }
    }

    fn release_in_background(&self, state: &Arc<LeaseState>) {
        state.mark_released();
        self.background.remove(state.key);
        if let Some(me) = self.me.upgrade() {
            me.queue_release(state.resource.clone(), state.key, false);
        }
    }

    fn forget_lease(&self, state: &Arc<LeaseState>) {
        state.mark_released();
        self.background.remove(state.key);
    }
}

#[async_trait]
impl<S: Store> Handler for StoreLocker<S> {
    async fn try_lock(&self, resource: &str, options: &LockOptions) -> Result<Option<Lock>> {
        self.check(resource, options)?;
        match self.shared.attempt(resource, options).await? {
            Attempt::Granted(lock) => Ok(Some(lock)),
            Attempt::Held(_) => Ok(None),
        }
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<()> {
        validate_resource(resource, self.shared.store.capabilities().max_resource_len)?;
        if let Some(state) = self.shared.background.remove(key) {
            state.mark_released();
        }
        let released = round_trip(
            self.shared.backend(),
            "release",
            resource,
            self.shared.store.release(resource, key),
            |released| if *released { "released" } else { "not held" },
        )
        .await?;
        if released {
            Ok(())
        } else {
            Err(Error::not_held(resource))
        }
    }

    async fn refresh(&self, resource: &str, key: LeaseKey, ttl: Duration) -> Result<()> {
        let caps = self.shared.store.capabilities();
        validate_resource(resource, caps.max_resource_len)?;
        LockOptions::new()
            .with_ttl(ttl)
            .manual_refresh()
            .validate(caps)?;
        let request = [RefreshRequest::new(resource, key, ttl)];
        let answer = round_trip(
            self.shared.backend(),
            "refresh",
            resource,
            self.shared.store.refresh(&request),
            |_| "answered",
        )
        .await?;
        match answer.first() {
            Some(Refreshed::Renewed) => Ok(()),
            _ => Err(Error::not_held(resource)),
        }
    }

    async fn force_release(&self, resource: &str) -> Result<usize> {
        validate_resource(resource, self.shared.store.capabilities().max_resource_len)?;
        round_trip(
            self.shared.backend(),
            "evict",
            resource,
            self.shared.store.evict(resource),
            |_| "evicted",
        )
        .await
    }
}

#[async_trait]
impl<S: Store> Infoer for StoreLocker<S> {
    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        validate_resource(resource, self.shared.store.capabilities().max_resource_len)?;
        round_trip(
            self.shared.backend(),
            "info",
            resource,
            self.shared.store.info(resource),
            |info| if info.is_some() { "held" } else { "free" },
        )
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix, self.shared.store.capabilities().max_resource_len)?;
        round_trip(
            self.shared.backend(),
            "list",
            prefix,
            self.shared.store.list(prefix),
            |_| "listed",
        )
        .await
    }
}

#[async_trait]
impl<S: Store> Reader for StoreLocker<S> {
    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        validate_resource(resource, self.shared.store.capabilities().max_resource_len)?;
        round_trip(
            self.shared.backend(),
            "read",
            resource,
            self.shared.store.read(resource),
            |data| if data.is_some() { "held" } else { "free" },
        )
        .await
    }
}

#[async_trait]
impl<S: Store> Locker for StoreLocker<S> {
    async fn lock(&self, resource: &str, options: &LockOptions) -> Result<Lock> {
        self.check(resource, options)?;
        self.shared.lock(resource, options).await
    }

    fn capabilities(&self) -> &Capabilities {
        self.shared.store.capabilities()
    }

    fn refresh_stats(&self) -> Option<crate::RefreshStats> {
        Some(StoreLocker::refresh_stats(self))
    }
}
