//! The cases. Each takes a [`Fixture`], works under a random prefix, and panics
//! with a message naming the broken promise.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::Fixture;
use crate::{Capabilities, Error, LeaseKey, Lock, LockOptions, Locker, Result, parse_url};

/// The bound on anything that should happen "soon": generous, since CI
/// machines are slow; the cases wait on events, never on this.
const SOON: Duration = Duration::from_secs(10);

struct Ctx<'a> {
    fixture: &'a dyn Fixture,
    prefix: String,
    locker: Arc<dyn Locker>,
}

impl<'a> Ctx<'a> {
    async fn new(fixture: &'a dyn Fixture) -> Ctx<'a> {
        Ctx {
            fixture,
            prefix: format!("conformance-{:016x}/", fastrand::u64(..)),
            locker: fixture.locker().await,
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn caps(&self) -> Capabilities {
        self.locker.capabilities().clone()
    }

    /// The shortest TTL the cases use: the backend minimum, but at least 300 ms
    /// so that scheduling noise does not decide outcomes.
    fn short_ttl(&self) -> Duration {
        self.caps().min_ttl.max(Duration::from_millis(300))
    }

    async fn other(&self) -> Arc<dyn Locker> {
        self.fixture.locker().await
    }
}

fn long() -> LockOptions {
    LockOptions::new().with_ttl(Duration::from_secs(30))
}

fn manual(ttl: Duration) -> LockOptions {
    LockOptions::new().with_ttl(ttl).manual_refresh()
}

async fn take(locker: &dyn Locker, resource: &str, options: &LockOptions) -> Lock {
    match locker.try_lock(resource, options).await {
        Ok(Some(lock)) => lock,
        Ok(None) => panic!("`{resource}` should be free, but try_lock found it held"),
        Err(e) => panic!("try_lock(`{resource}`) failed: {e}"),
    }
}

async fn is_free(locker: &dyn Locker, resource: &str, options: &LockOptions) -> bool {
    match locker.try_lock(resource, options).await {
        Ok(Some(lock)) => {
            lock.release().await.expect("releasing a probe lock");
            true
        }
        Ok(None) => false,
        Err(e) => panic!("try_lock(`{resource}`) failed: {e}"),
    }
}

async fn within<T>(what: &str, bound: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not happen within {bound:?}"),
    }
}

/// Poll with `try_lock` until granted (bounded).
async fn take_eventually(
    locker: &dyn Locker,
    resource: &str,
    options: &LockOptions,
    bound: Duration,
) -> Lock {
    within(&format!("`{resource}` granted again"), bound, async {
        loop {
            match locker.try_lock(resource, options).await {
                Ok(Some(lock)) => return lock,
                Ok(None) => tokio::time::sleep(Duration::from_millis(2)).await,
                Err(e) => panic!("try_lock(`{resource}`) failed: {e}"),
            }
        }
    })
    .await
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, what: &str, context: &str) {
    match result {
        Err(Error::InvalidArgument { what: got, reason }) => {
            assert_eq!(got, what, "{context}: wrong argument named ({reason})");
            assert!(
                !reason.is_empty(),
                "{context}: the message must say what to fix"
            );
        }
        other => panic!("{context}: expected InvalidArgument({what}), got {other:?}"),
    }
}

#[track_caller]
fn assert_not_held<T: std::fmt::Debug>(result: Result<T>, context: &str) {
    match result {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("{context}: expected NotHeld, got {other:?}"),
    }
}

/// A free resource is granted, with a handle that describes it.
pub async fn try_lock_grants_a_free_resource(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("free");
    let started = Instant::now();
    let lock = take(&*ctx.locker, &r, &long().with_data("payload")).await;
    assert_eq!(lock.resource(), r);
    assert!(lock.token() > 0, "tokens start above zero");
    assert_eq!(lock.data(), &Bytes::from("payload"));
    assert_eq!(lock.ttl(), Duration::from_secs(30));
    assert!(!lock.is_lost());
    let deadline = lock.deadline().expect("a fresh lock has a deadline");
    assert!(deadline > Instant::now(), "deadline is in the future");
    assert!(
        deadline <= started + Duration::from_secs(30),
        "the deadline cannot be later than the TTL after the request was sent"
    );
    lock.release().await.expect("release");
}

/// A held resource is an ordinary `None`, for other clients and for the holder's own.
pub async fn try_lock_on_a_held_resource_returns_none(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("held");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    assert!(
        other
            .try_lock(&r, &long())
            .await
            .expect("try_lock")
            .is_none()
    );
    assert!(
        ctx.locker
            .try_lock(&r, &long())
            .await
            .expect("try_lock")
            .is_none()
    );
    lock.release().await.expect("release");
}

/// Release makes the resource free for the next client.
pub async fn release_frees_the_resource(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("release");
    let lock = take(&*ctx.locker, &r, &long()).await;
    lock.release().await.expect("release");
    let other = ctx.other().await;
    let again = take(&*other, &r, &long()).await;
    again.release().await.expect("release");
}

/// Locks on different names are independent.
pub async fn independent_resources_do_not_interfere(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let a = take(&*ctx.locker, &ctx.name("a"), &long()).await;
    let b = take(&*ctx.locker, &ctx.name("b"), &long()).await;
    let ab = take(&*ctx.locker, &ctx.name("a/b"), &long()).await;
    a.release().await.expect("release a");
    b.release().await.expect("release b");
    ab.release().await.expect("release a/b");
}

/// Every grant's token is greater than the one before, across clients.
pub async fn tokens_strictly_increase_across_grants(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let other = ctx.other().await;
    let r = ctx.name("tokens");
    let mut last = 0;
    for round in 0..20 {
        let locker = if round % 2 == 0 { &ctx.locker } else { &other };
        let lock = take(&**locker, &r, &long()).await;
        assert!(
            lock.token() > last,
            "grant {round}: token {} is not above the previous {last}",
            lock.token()
        );
        last = lock.token();
        lock.release().await.expect("release");
    }
}

/// A grant after an expiry still gets a greater token.
pub async fn tokens_increase_after_expiry(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("expiry-token");
    let first = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    ctx.fixture.expire(&r).await;
    let other = ctx.other().await;
    let second = take(&*other, &r, &long()).await;
    assert!(
        second.token() > first.token(),
        "token {} after expiry is not above {}",
        second.token(),
        first.token()
    );
    second.release().await.expect("release");
    drop(first);
}

/// A lease that expired and was granted again cannot release the new holder.
pub async fn stale_key_cannot_release(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("stale-release");
    let stale = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    let stale_key = stale.key();
    ctx.fixture.expire(&r).await;
    let other = ctx.other().await;
    let holder = take(&*other, &r, &long()).await;
    assert_not_held(
        ctx.locker.release(&r, stale_key).await,
        "release by a stale key",
    );
    assert_not_held(stale.release().await, "Lock::release of a stale lease");
    let info = ctx
        .locker
        .info(&r)
        .await
        .expect("info")
        .expect("still held");
    assert_eq!(
        info.token(),
        Some(holder.token()),
        "the new holder must be untouched"
    );
    holder.release().await.expect("the new holder releases");
}

/// A lease that expired and was granted again cannot be refreshed.
pub async fn stale_key_cannot_refresh(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("stale-refresh");
    let stale = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    ctx.fixture.expire(&r).await;
    let other = ctx.other().await;
    let holder = take(&*other, &r, &long()).await;
    match stale.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh of a stale lease: expected Lost, got {other:?}"),
    }
    assert!(stale.is_lost(), "a refused refresh fires the lost signal");
    within("lost signal after refused refresh", SOON, stale.lost()).await;
    assert_not_held(
        ctx.locker
            .refresh(&r, stale.key(), Duration::from_secs(30))
            .await,
        "Handler::refresh by a stale key",
    );
    assert!(
        !is_free(&*ctx.locker, &r, &long()).await,
        "the new holder still holds"
    );
    holder.release().await.expect("release");
}

/// A key that never held the resource can neither release nor refresh it.
pub async fn wrong_key_cannot_release_or_refresh(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wrong-key");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    assert_not_held(
        other.release(&r, LeaseKey::random()).await,
        "release by a wrong key",
    );
    assert_not_held(
        other
            .refresh(&r, LeaseKey::random(), Duration::from_secs(30))
            .await,
        "refresh by a wrong key",
    );
    assert_not_held(
        other
            .release(&ctx.name("never-locked"), LeaseKey::random())
            .await,
        "release of a resource nobody holds",
    );
    assert!(!lock.is_lost());
    assert!(
        !is_free(&*other, &r, &long()).await,
        "the holder is untouched"
    );
    lock.release().await.expect("release");
}

/// Releasing twice: the second is `NotHeld`.
pub async fn double_release_is_not_held(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("double-release");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let key = lock.key();
    lock.release().await.expect("first release");
    assert_not_held(ctx.locker.release(&r, key).await, "second release");
}

/// A key handed to another client releases the lease there.
pub async fn detached_lease_is_released_by_key_from_another_client(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("detached");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let token = lock.token();
    let key = lock.detach();
    let other = ctx.other().await;
    let info = other
        .info(&r)
        .await
        .expect("info")
        .expect("a detached lease stays held");
    assert_eq!(info.token(), Some(token));
    other
        .release(&r, key)
        .await
        .expect("release by key from another client");
    assert!(is_free(&*other, &r, &long()).await);
}

/// `Handler::refresh` by key renews a lease for the given TTL.
pub async fn handler_refresh_by_key_extends_the_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("refresh-by-key");
    let lock = take(&*ctx.locker, &r, &manual(ttl)).await;
    let key = lock.detach();
    let other = ctx.other().await;
    let started = Instant::now();
    while started.elapsed() < ttl * 2 {
        other
            .refresh(&r, key, ttl)
            .await
            .expect("refresh by key of a held lease");
        assert!(
            !is_free(&*other, &r, &manual(ttl)).await,
            "refreshed lease expired"
        );
        tokio::time::sleep(ttl / 4).await;
    }
    other.release(&r, key).await.expect("release by key");
}

/// Without refresh, a lease ends after its TTL and the resource is granted again.
pub async fn expired_lease_is_granted_again(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("expire");
    let first = take(&*ctx.locker, &r, &manual(ttl)).await;
    let other = ctx.other().await;
    assert!(
        other
            .try_lock(&r, &manual(ttl))
            .await
            .expect("try_lock")
            .is_none()
    );
    within("lost signal at the TTL", SOON + ttl, first.lost()).await;
    let second = take_eventually(&*other, &r, &manual(ttl), SOON + ttl * 3).await;
    assert!(second.token() > first.token());
    second.release().await.expect("release");
}

/// The safety rule: when another client is granted the resource, the old
/// holder's lost signal has already fired.
pub async fn lost_fires_before_anyone_else_is_granted(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("lost-before-regrant");
    let first = take(&*ctx.locker, &r, &manual(ttl)).await;
    let signal = first.lost_signal();
    let other = ctx.other().await;
    let second = take_eventually(&*other, &r, &manual(ttl), SOON + ttl * 3).await;
    assert!(
        signal.is_lost(),
        "another client was granted the resource before the first holder's lost signal fired"
    );
    assert!(second.token() > first.token());
    second.release().await.expect("release");
}

/// A lease deleted behind the holder's back fires `lost` at the next refresh.
pub async fn lost_fires_when_the_lease_is_deleted(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("deleted");
    let lock = take(&*ctx.locker, &r, &LockOptions::new().with_ttl(ttl)).await;
    ctx.fixture.expire(&r).await;
    within("lost after the lease was deleted", SOON + ttl, lock.lost()).await;
    assert!(lock.is_lost());
    assert!(lock.deadline().is_none());
    assert_not_held(lock.release().await, "release of a deleted lease");
}

/// `lost()` is ready at once when already lost; clones see the same signal.
pub async fn lost_signal_is_ready_at_once_and_clonable(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("lost-signal");
    let lock = take(&*ctx.locker, &r, &manual(ttl)).await;
    let signal = lock.lost_signal();
    let clone = signal.clone();
    let waiter = tokio::spawn(clone.into_future());
    assert!(!signal.is_lost());
    within("lost at the deadline", SOON + ttl, signal.lost()).await;
    within("lost in a spawned task", SOON, waiter)
        .await
        .expect("task");
    let started = Instant::now();
    lock.lost().await;
    signal.lost().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ready at once once lost"
    );
    assert!(lock.is_lost() && signal.is_lost() && !signal.is_released());
    match lock.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh of a lost lock: expected Lost, got {other:?}"),
    }
}

/// Background refresh keeps the lock for many TTLs.
pub async fn auto_refresh_keeps_the_lock_across_many_ttls(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("auto-refresh");
    let lock = take(&*ctx.locker, &r, &LockOptions::new().with_ttl(ttl)).await;
    let other = ctx.other().await;
    // The point of this case is time passing: four TTLs.
    let until = Instant::now() + ttl * 4;
    while Instant::now() < until {
        tokio::time::sleep(ttl / 2).await;
        assert!(!lock.is_lost(), "auto-refreshed lock was lost");
        assert!(
            other
                .try_lock(&r, &LockOptions::new().with_ttl(ttl))
                .await
                .expect("try_lock")
                .is_none(),
            "another client was granted an auto-refreshed lock"
        );
    }
    let info = other.info(&r).await.expect("info").expect("held");
    assert_eq!(info.token(), Some(lock.token()));
    lock.release().await.expect("release");
}

/// `refresh()` by hand extends a manual lease past its first TTL.
pub async fn manual_refresh_extends_the_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("manual-refresh");
    let lock = take(&*ctx.locker, &r, &manual(ttl)).await;
    let other = ctx.other().await;
    let first_deadline = lock.deadline().expect("deadline");
    for _ in 0..4 {
        tokio::time::sleep(ttl / 3).await;
        lock.refresh().await.expect("refresh");
    }
    assert!(
        lock.deadline().expect("deadline") > first_deadline,
        "refresh moves the deadline"
    );
    assert!(!lock.is_lost());
    assert!(!is_free(&*other, &r, &manual(ttl)).await);
    lock.release().await.expect("release");
}

/// `lock()` waits while held and gets the resource after release.
pub async fn lock_waits_for_release(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wait");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let waiter = {
        let r = r.clone();
        tokio::spawn(async move { other.lock(&r, &long().with_wait_timeout(SOON * 3)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "lock() returned while the resource was held"
    );
    holder.release().await.expect("release");
    let lock = within("waiter acquires after release", SOON * 3, waiter)
        .await
        .expect("task")
        .expect("lock");
    assert!(lock.token() > 0);
    lock.release().await.expect("release");
}

/// A release wakes a waiter promptly: well before the holder's TTL would have
/// ended (a missed push, or a waiter sleeping until expiry, fails this).
pub async fn release_wakes_a_waiter_promptly(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wake");
    let options = LockOptions::new().with_ttl(Duration::from_secs(60));
    let holder = take(&*ctx.locker, &r, &options).await;
    let other = ctx.other().await;
    let waiter = {
        let r = r.clone();
        let options = options.clone().with_wait_timeout(Duration::from_secs(50));
        tokio::spawn(async move {
            let lock = other.lock(&r, &options).await;
            (lock, Instant::now())
        })
    };
    // Give the waiter time to start waiting (if it has not, it is granted at
    // once, and the case still holds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    holder.release().await.expect("release");
    let (lock, acquired) = within("waiter wakes", Duration::from_secs(55), waiter)
        .await
        .expect("task");
    let lock = lock.expect("lock");
    let handoff = acquired - released;
    assert!(
        handoff < Duration::from_secs(3),
        "waiter took {handoff:?} after release: it was not woken"
    );
    lock.release().await.expect("release");
}

/// `lock()` with a wait timeout gives up with `WaitTimeout` after about that long.
pub async fn lock_wait_times_out(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wait-timeout");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let result = within(
        "wait timeout",
        SOON + wait,
        other.lock(&r, &long().with_wait_timeout(wait)),
    )
    .await;
    match result {
        Err(Error::WaitTimeout { waited, .. }) => {
            assert!(waited >= wait, "gave up after {waited:?}, before {wait:?}");
            assert!(started.elapsed() >= wait);
        }
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
    assert!(!holder.is_lost());
    holder.release().await.expect("release");
}

/// `lock()` with a zero wait timeout makes one attempt.
pub async fn lock_with_zero_wait_timeout_tries_once(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("no-wait");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let once = long().with_wait_timeout(Duration::ZERO);
    match within("one attempt", SOON, other.lock(&r, &once)).await {
        Err(Error::WaitTimeout { .. }) => {}
        other => panic!("expected WaitTimeout at once, got {other:?}"),
    }
    holder.release().await.expect("release");
    let lock = other
        .lock(&r, &once)
        .await
        .expect("free now: one attempt succeeds");
    lock.release().await.expect("release");
}

/// `lock()` with default options waits until the holder lets go.
pub async fn lock_waits_until_granted_by_default(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("default-wait");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let waiter = {
        let (other, r) = (other.clone(), r.clone());
        tokio::spawn(async move { other.lock(&r, &long()).await })
    };
    // The waiter must still be waiting while the resource is held.
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if waiter.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "lock() with default options gave up while the resource was held"
    );
    holder.release().await.expect("release");
    let lock = within("granted after the release", SOON, waiter)
        .await
        .expect("task")
        .expect("lock() with default options");
    assert!(!lock.is_lost());
    lock.release().await.expect("release");
}

/// Dropping a waiting `lock()` future leaves no lease behind.
pub async fn cancelled_wait_leaves_no_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("cancel");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        other.lock(&r, &long().wait_forever()),
    )
    .await;
    assert!(cancelled.is_err(), "lock() should still be waiting");
    holder.release().await.expect("release");
    let third = ctx.other().await;
    // Well before the cancelled request's 30 s TTL could have freed a leak.
    let lock = take_eventually(&*third, &r, &long(), SOON).await;
    lock.release().await.expect("release");
}

/// Dropping an unreleased `Lock` releases it in the background.
pub async fn dropped_lock_is_released_in_the_background(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("drop");
    let lock = take(&*ctx.locker, &r, &long()).await;
    drop(lock);
    let other = ctx.other().await;
    let again = within(
        "re-grant after drop (well before the 30 s TTL)",
        SOON,
        other.lock(&r, &long().with_wait_timeout(SOON)),
    )
    .await
    .expect("lock");
    again.release().await.expect("release");
}

/// Several waiters are all served, one at a time, tokens in grant order.
pub async fn waiters_are_all_served_in_turn(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("queue");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for _ in 0..4 {
        let locker = ctx.other().await;
        let r = r.clone();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let lock = locker
                .lock(&r, &long().with_wait_timeout(SOON * 3))
                .await
                .expect("waiter lock");
            order.lock().expect("order").push(lock.token());
            tokio::time::sleep(Duration::from_millis(10)).await;
            lock.release().await.expect("waiter release");
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    holder.release().await.expect("release");
    for waiter in waiters {
        within("every waiter served", SOON * 4, waiter)
            .await
            .expect("task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(order.len(), 4);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "tokens are not in grant order: {order:?}"
    );
}

/// A resource with N permits admits N holders, and no more.
pub async fn permits_admit_that_many_holders(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("permits");
    let options = long().with_permits(3);
    let mut locks = Vec::new();
    for _ in 0..3 {
        let locker = ctx.other().await;
        locks.push(take(&*locker, &r, &options).await);
    }
    let tokens: Vec<u64> = locks.iter().map(Lock::token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
    assert!(
        ctx.locker
            .try_lock(&r, &options)
            .await
            .expect("try_lock")
            .is_none()
    );
    let info = ctx.locker.info(&r).await.expect("info").expect("held");
    assert_eq!(info.permits, 3);
    assert_eq!(info.holders.len(), 3);
    for lock in locks {
        lock.release().await.expect("release");
    }
}

/// Asking for another size while held is `SizeMismatch`.
pub async fn permits_size_mismatch_is_an_error(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("size-mismatch");
    let lock = take(&*ctx.locker, &r, &long().with_permits(3)).await;
    let other = ctx.other().await;
    match other.try_lock(&r, &long().with_permits(2)).await {
        Err(Error::SizeMismatch {
            requested,
            existing,
            ..
        }) => {
            assert_eq!((requested, existing), (2, 3));
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    match other.lock(&r, &long().with_wait_timeout(SOON)).await {
        Err(Error::SizeMismatch { .. }) => {}
        other => panic!("lock(): expected SizeMismatch at once, got {other:?}"),
    }
    lock.release().await.expect("release");
}

/// Releasing one of N permits lets one more holder in.
pub async fn permits_release_frees_one_slot(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("permit-slot");
    let options = long().with_permits(2);
    let a = take(&*ctx.locker, &r, &options).await;
    let b = take(&*ctx.locker, &r, &options).await;
    let other = ctx.other().await;
    assert!(
        other
            .try_lock(&r, &options)
            .await
            .expect("try_lock")
            .is_none()
    );
    a.release().await.expect("release");
    let c = take(&*other, &r, &options).await;
    assert!(
        other
            .try_lock(&r, &options)
            .await
            .expect("try_lock")
            .is_none()
    );
    b.release().await.expect("release");
    c.release().await.expect("release");
}

/// Once nobody holds it, a resource may be taken with another size.
pub async fn permits_may_change_once_free(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("resize");
    let a = take(&*ctx.locker, &r, &long().with_permits(3)).await;
    a.release().await.expect("release");
    let b = take(&*ctx.locker, &r, &long()).await;
    let info = ctx.locker.info(&r).await.expect("info").expect("held");
    assert_eq!(info.permits, 1);
    b.release().await.expect("release");
}

/// `info` names the holder, its token and times.
pub async fn info_reports_the_holder(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("info");
    let before = std::time::SystemTime::now();
    let lock = take(&*ctx.locker, &r, &long().with_owner("alice@host-1")).await;
    let other = ctx.other().await;
    let info = other.info(&r).await.expect("info").expect("held");
    assert_eq!(info.resource, r);
    assert_eq!(info.owner(), Some("alice@host-1"));
    assert_eq!(info.token(), Some(lock.token()));
    assert_eq!(info.permits, 1);
    let locked = info.lock_time().expect("lock time");
    let expires = info.expire_time().expect("expire time");
    let slack = Duration::from_secs(5);
    assert!(
        locked + slack >= before,
        "lock time {locked:?} is before the request"
    );
    let lease = expires
        .duration_since(locked)
        .expect("expiry after lock time");
    assert!(
        lease <= Duration::from_secs(30) + slack && lease + slack >= Duration::from_secs(30),
        "expiry is {lease:?} after lock time, expected about the 30 s TTL"
    );
    lock.release().await.expect("release");
    assert!(
        other.info(&r).await.expect("info").is_none(),
        "free after release"
    );
}

/// `info` of a free resource is `None`.
pub async fn info_of_a_free_resource_is_none(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    assert!(
        ctx.locker
            .info(&ctx.name("nobody"))
            .await
            .expect("info")
            .is_none()
    );
}

/// `read` returns the data stored at acquire, `None` when free.
pub async fn read_returns_the_data(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("read");
    let data = Bytes::from_static(b"\x00binary\xffdata");
    let lock = take(&*ctx.locker, &r, &long().with_data(data.clone())).await;
    let other = ctx.other().await;
    assert_eq!(other.read(&r).await.expect("read"), Some(data));
    lock.release().await.expect("release");
    assert_eq!(other.read(&r).await.expect("read"), None);
    let empty = take(&*ctx.locker, &r, &long()).await;
    assert_eq!(other.read(&r).await.expect("read"), Some(Bytes::new()));
    empty.release().await.expect("release");
}

/// `list` returns held resources under a prefix, sorted.
pub async fn list_finds_held_resources_by_prefix(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let a = take(&*ctx.locker, &ctx.name("jobs/a"), &long()).await;
    let b = take(&*ctx.locker, &ctx.name("jobs/b"), &long()).await;
    let c = take(&*ctx.locker, &ctx.name("other/c"), &long()).await;
    let listed = ctx.locker.list(&ctx.name("jobs/")).await.expect("list");
    assert_eq!(listed, vec![ctx.name("jobs/a"), ctx.name("jobs/b")]);
    a.release().await.expect("release");
    let listed = ctx.locker.list(&ctx.name("jobs/")).await.expect("list");
    assert_eq!(listed, vec![ctx.name("jobs/b")]);
    let all = ctx.locker.list(&ctx.prefix).await.expect("list");
    assert_eq!(all, vec![ctx.name("jobs/b"), ctx.name("other/c")]);
    b.release().await.expect("release");
    c.release().await.expect("release");
    assert!(ctx.locker.list(&ctx.prefix).await.expect("list").is_empty());
}

/// A thousand locks held at once by one client, then released.
pub async fn thousand_locks_at_once(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let locker = &ctx.locker;
    let names: Vec<String> = (0..1000)
        .map(|i| ctx.name(&format!("many/{i:04}")))
        .collect();
    let locks: Vec<Lock> = within(
        "1,000 acquires",
        SOON * 6,
        futures_util::stream::iter(names.clone())
            .map(|name| {
                let locker = locker.clone();
                async move { take(&*locker, &name, &long()).await }
            })
            .buffer_unordered(32)
            .collect(),
    )
    .await;
    assert_eq!(locks.len(), 1000);
    let mut tokens: Vec<u64> = locks.iter().map(Lock::token).collect();
    tokens.sort_unstable();
    assert!(tokens[0] > 0);
    let listed = locker.list(&ctx.name("many/")).await.expect("list");
    assert_eq!(listed, names, "list shows all 1,000, sorted");
    let released: Vec<Result<()>> = within(
        "1,000 releases",
        SOON * 6,
        futures_util::stream::iter(locks)
            .map(Lock::release)
            .buffer_unordered(32)
            .collect(),
    )
    .await;
    assert!(
        released.iter().all(Result::is_ok),
        "every release confirmed"
    );
    assert!(
        locker
            .list(&ctx.name("many/"))
            .await
            .expect("list")
            .is_empty()
    );
}

/// Many clients increment one counter under the lock: no update is lost and the
/// tokens each writer presents only grow.
pub async fn contended_counter_has_no_lost_update(fixture: &dyn Fixture) {
    const TASKS: u64 = 6;
    const ROUNDS: u64 = 8;
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("counter");
    // (value, highest token seen)
    let counter = Arc::new(Mutex::new((0u64, 0u64)));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let locker = ctx.other().await;
        let r = r.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let lock = locker
                    .lock(&r, &long().with_wait_timeout(SOON * 6))
                    .await
                    .expect("lock");
                let read = counter.lock().expect("counter").0;
                // Widen the window in which a second holder would interleave.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                {
                    let mut guard = counter.lock().expect("counter");
                    assert!(
                        lock.token() > guard.1,
                        "token {} presented after {}: fencing would reject it",
                        lock.token(),
                        guard.1
                    );
                    *guard = (read + 1, lock.token());
                }
                lock.release().await.expect("release");
            }
        }));
    }
    for task in tasks {
        within("contended counter", SOON * 12, task)
            .await
            .expect("task");
    }
    let (value, _) = *counter.lock().expect("counter");
    assert_eq!(
        value,
        TASKS * ROUNDS,
        "lost updates: two holders overlapped"
    );
}

/// Everything works through `Box<dyn Locker>` wrapping an `Arc<dyn Locker>`.
pub async fn works_through_box_dyn_locker(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let boxed: Box<dyn Locker> = Box::new(ctx.locker.clone());
    let r = ctx.name("boxed");
    let lock = boxed
        .lock(&r, &long().with_wait_timeout(SOON))
        .await
        .expect("lock through Box<dyn Locker>");
    assert!(
        boxed
            .try_lock(&r, &long())
            .await
            .expect("try_lock")
            .is_none()
    );
    assert!(boxed.info(&r).await.expect("info").is_some());
    assert_eq!(boxed.list(&r).await.expect("list"), vec![r.clone()]);
    lock.release().await.expect("release");
    assert!(boxed.read(&r).await.expect("read").is_none());
}

/// Bad names are `InvalidArgument("resource")` on every call, before any I/O.
pub async fn invalid_resource_names_are_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let locker = &ctx.locker;
    let too_long = "x".repeat(ctx.caps().max_resource_len + 1);
    for bad in ["", too_long.as_str(), "nul\0inside", "new\nline", "\u{7f}"] {
        let context = format!("resource {:?}", bad.get(..20).unwrap_or(bad));
        assert_invalid(locker.try_lock(bad, &long()).await, "resource", &context);
        assert_invalid(
            locker.lock(bad, &long().with_wait_timeout(SOON)).await,
            "resource",
            &context,
        );
        assert_invalid(locker.info(bad).await, "resource", &context);
        assert_invalid(locker.read(bad).await, "resource", &context);
        assert_invalid(
            locker.release(bad, LeaseKey::random()).await,
            "resource",
            &context,
        );
        assert_invalid(
            locker
                .refresh(bad, LeaseKey::random(), Duration::from_secs(30))
                .await,
            "resource",
            &context,
        );
    }
    assert_invalid(locker.list("bad\0prefix").await, "prefix", "list prefix");
    // The longest valid name works.
    let longest = format!(
        "{}{}",
        ctx.prefix,
        "y".repeat(ctx.caps().max_resource_len - ctx.prefix.len())
    );
    let lock = take(&**locker, &longest, &long()).await;
    lock.release().await.expect("release");
    let unicode = ctx.name("ünïcødé/ロック/🔒");
    let lock = take(&**locker, &unicode, &long()).await;
    assert_eq!(
        locker.list(&ctx.prefix).await.expect("list"),
        vec![unicode.clone()]
    );
    lock.release().await.expect("release");
}

/// TTLs below the backend's minimum or above its maximum are rejected.
pub async fn ttl_out_of_range_is_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let caps = ctx.caps();
    let r = ctx.name("ttl");
    for ttl in [
        Duration::ZERO,
        caps.min_ttl / 2,
        caps.max_ttl + Duration::from_secs(1),
        Duration::MAX,
    ] {
        let options = LockOptions::new().with_ttl(ttl);
        assert_invalid(
            ctx.locker.try_lock(&r, &options).await,
            "ttl",
            &format!("ttl {ttl:?}"),
        );
        assert_invalid(
            ctx.locker.refresh(&r, LeaseKey::random(), ttl).await,
            "ttl",
            &format!("refresh ttl {ttl:?}"),
        );
    }
    let lock = take(
        &*ctx.locker,
        &r,
        &manual(caps.min_ttl.max(Duration::from_millis(300))),
    )
    .await;
    lock.release().await.expect("release");
}

/// Zero permits, or more than the backend allows, are rejected.
pub async fn zero_or_too_many_permits_are_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("permits-bad");
    let max = ctx.caps().max_permits;
    for permits in [0, max.saturating_add(1)] {
        if permits == max && max == u32::MAX {
            continue;
        }
        assert_invalid(
            ctx.locker.try_lock(&r, &long().with_permits(permits)).await,
            "permits",
            &format!("{permits} permits"),
        );
    }
}

/// Data above the backend's limit is rejected; at the limit it is kept whole.
pub async fn oversized_data_is_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("data");
    let max = ctx.caps().max_data_len;
    let too_big = Bytes::from(vec![7u8; max + 1]);
    assert_invalid(
        ctx.locker.try_lock(&r, &long().with_data(too_big)).await,
        "data",
        "data",
    );
    let biggest = Bytes::from(vec![7u8; max.min(64 * 1024)]);
    let lock = take(&*ctx.locker, &r, &long().with_data(biggest.clone())).await;
    assert_eq!(ctx.locker.read(&r).await.expect("read"), Some(biggest));
    lock.release().await.expect("release");
}

/// A refresh interval of zero, or not shorter than the TTL, is rejected.
pub async fn refresh_interval_must_fit_in_the_ttl(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("interval");
    let ttl = Duration::from_secs(30);
    for interval in [Duration::ZERO, ttl, ttl * 2] {
        let options = LockOptions::new()
            .with_ttl(ttl)
            .with_refresh_interval(interval);
        assert_invalid(
            ctx.locker.try_lock(&r, &options).await,
            "refresh interval",
            &format!("interval {interval:?}"),
        );
    }
}

/// Owner identities that are too long or have control characters are rejected.
pub async fn bad_owner_is_rejected(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("owner");
    for owner in ["x".repeat(crate::MAX_OWNER_LEN + 1), "tab\there".to_owned()] {
        assert_invalid(
            ctx.locker.try_lock(&r, &long().with_owner(owner)).await,
            "owner",
            "owner",
        );
    }
}

/// A burst of bad requests against a held lock changes nothing about it.
pub async fn bad_input_loses_nothing(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("intact");
    let lock = take(
        &*ctx.locker,
        &r,
        &long().with_data("mine").with_owner("owner-a"),
    )
    .await;
    let other = ctx.other().await;
    let _ = other.try_lock(&r, &long().with_permits(2)).await;
    let _ = other
        .try_lock(&r, &LockOptions::new().with_ttl(Duration::ZERO))
        .await;
    let _ = other.release(&r, LeaseKey::random()).await;
    let _ = other
        .refresh(&r, LeaseKey::random(), Duration::from_secs(1))
        .await;
    let _ = other
        .lock(&r, &long().with_permits(0).with_wait_timeout(SOON))
        .await;
    assert!(!lock.is_lost());
    let info = other.info(&r).await.expect("info").expect("still held");
    assert_eq!(info.token(), Some(lock.token()));
    assert_eq!(info.owner(), Some("owner-a"));
    assert_eq!(
        other.read(&r).await.expect("read"),
        Some(Bytes::from("mine"))
    );
    lock.release()
        .await
        .expect("the holder's release still works");
}

/// Malformed URLs are `InvalidUrl`, and the message never shows a password.
pub async fn bad_urls_are_rejected(fixture: &dyn Fixture) {
    let (Some(connector), urls) = (fixture.connector(), fixture.bad_urls()) else {
        eprintln!("bad_urls_are_rejected: this fixture has no connector; nothing to check");
        return;
    };
    assert!(
        !urls.is_empty(),
        "a fixture with a connector must list bad URLs"
    );
    for url in urls {
        let parsed = match parse_url(&url) {
            Ok(parsed) => parsed,
            Err(Error::InvalidUrl { url: shown, .. }) => {
                assert!(!shown.contains("hunter2"), "password shown in {shown}");
                continue;
            }
            Err(other) => panic!("{url}: expected InvalidUrl, got {other}"),
        };
        match within("connect to a bad URL", SOON, connector.connect(&parsed)).await {
            Err(error @ Error::InvalidUrl { .. }) => {
                let text = format!("{error} {error:?}");
                assert!(!text.contains("hunter2"), "password shown in `{text}`");
            }
            Err(other) => panic!("{url}: expected InvalidUrl, got {other}"),
            Ok(_) => panic!("{url}: a bad URL was accepted"),
        }
    }
}

/// An unreachable store is a transient error within bounded time, never a grant.
pub async fn unreachable_store_is_a_transient_error(fixture: &dyn Fixture) {
    let (Some(connector), Some(url)) = (fixture.connector(), fixture.unreachable_url()) else {
        eprintln!("unreachable_store_is_a_transient_error: not applicable to this backend");
        return;
    };
    let parsed = parse_url(&url).expect("the fixture's unreachable URL parses");
    let outcome = within("an answer from an unreachable store", SOON * 6, async {
        let locker = connector.connect(&parsed).await?;
        locker
            .try_lock("conformance/unreachable", &long())
            .await
            .map(|lock| lock.is_some())
    })
    .await;
    match outcome {
        Err(error) => assert!(
            error.is_transient(),
            "expected a transient error, got {error}"
        ),
        Ok(granted) => panic!("an unreachable store answered (granted: {granted})"),
    }
}

/// A random name: printable ASCII with the characters stores treat specially
/// (`%`, `_`, `*`, `{`, `}`, `/`, `\\`, `'`, `"`), Unicode, sometimes a control
/// character, sometimes at or past the length limit.
fn random_name(rng: &mut fastrand::Rng, max_len: usize) -> String {
    const SPECIAL: &[char] = &[
        '%', '_', '*', '?', '[', ']', '{', '}', '/', '\\', '\'', '"', ':', ' ', '.', '-', 'é', 'ß',
        'ロ', '🔒', '\u{200b}', '\u{feff}',
    ];
    let len = match rng.u8(..10) {
        0 => 0,
        1 => max_len + rng.usize(1..8),
        2 => max_len,
        _ => rng.usize(1..24),
    };
    let mut name = String::new();
    while name.len() < len {
        let c = match rng.u8(..20) {
            0 => char::from(rng.u8(0..32)),
            1..=6 => SPECIAL[rng.usize(..SPECIAL.len())],
            _ => rng.alphanumeric(),
        };
        if name.len() + c.len_utf8() > len && len <= max_len {
            break;
        }
        name.push(c);
    }
    name
}

/// Property test: random names, TTLs, permits and data sizes always get a
/// typed answer (no panic, no hang); valid ones work and free what they take;
/// a lock held throughout is untouched by all of it. (Random URLs are only
/// parsed, never connected to: a random host name would mean a DNS query.)
pub async fn random_input_gets_typed_answers_and_loses_nothing(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let caps = ctx.caps();
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let guard_name = ctx.name("guard");
    let guard = take(&*ctx.locker, &guard_name, &long().with_data("guarded")).await;
    let max_name = caps.max_resource_len - ctx.prefix.len();
    for round in 0..60 {
        let suffix = random_name(&mut rng, max_name);
        let resource = format!("{}{suffix}", ctx.prefix);
        let name_ok = crate::validate_resource(&resource, caps.max_resource_len).is_ok();
        let ttl = match rng.u8(..6) {
            0 => Duration::from_millis(rng.u64(0..=1000)),
            1 => caps.max_ttl + Duration::from_secs(rng.u64(1..1000)),
            _ => caps.min_ttl.max(Duration::from_secs(1)) + Duration::from_millis(rng.u64(0..5000)),
        };
        let permits = match rng.u8(..6) {
            0 => 0,
            1 => caps.max_permits.saturating_add(1),
            _ => rng.u32(1..4),
        };
        let data = Bytes::from(vec![b'd'; rng.usize(0..256)]);
        let options = LockOptions::new()
            .with_ttl(ttl)
            .with_permits(permits)
            .with_data(data);
        let options_ok = options.validate(&caps).is_ok();
        let context =
            format!("seed {seed} round {round}: {resource:?} ttl {ttl:?} permits {permits}");
        let answer = within(&context, SOON, ctx.locker.try_lock(&resource, &options)).await;
        match answer {
            Ok(Some(lock)) => {
                assert!(name_ok && options_ok, "{context}: bad input was granted");
                assert_eq!(
                    ctx.locker.read(&resource).await.expect("read"),
                    Some(options.data.clone()),
                    "{context}"
                );
                lock.release()
                    .await
                    .unwrap_or_else(|e| panic!("{context}: release: {e}"));
                assert!(
                    ctx.locker.info(&resource).await.expect("info").is_none(),
                    "{context}: still held after release"
                );
            }
            Ok(None) => panic!("{context}: a fresh name was found held"),
            Err(Error::InvalidArgument { .. }) => {
                assert!(
                    !(name_ok && options_ok),
                    "{context}: valid input refused as invalid"
                );
            }
            Err(other) => panic!("{context}: unexpected error {other}"),
        }
        // Every read-only call answers with a value or a typed error.
        let _ = within(&context, SOON, ctx.locker.info(&resource)).await;
        let _ = within(&context, SOON, ctx.locker.list(&resource)).await;
        let _ = within(
            &context,
            SOON,
            ctx.locker.release(&resource, LeaseKey::random()),
        )
        .await;
    }
    // URLs: parsing random text never panics and never echoes a password.
    for _ in 0..200 {
        let url = format!("x://u:hunter2@{}", random_name(&mut rng, 60));
        if let Err(error) = parse_url(&url) {
            assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
        }
    }
    assert!(!guard.is_lost(), "the guarded lock was lost");
    let info = ctx
        .locker
        .info(&guard_name)
        .await
        .expect("info")
        .expect("guard held");
    assert_eq!(info.token(), Some(guard.token()));
    assert_eq!(
        ctx.locker.read(&guard_name).await.expect("read"),
        Some(Bytes::from("guarded"))
    );
    guard.release().await.expect("release");
}

/// Poll `future` for about `spin` (yielding between polls so the runtime's
/// I/O makes progress), then drop it unless it finished first: a cut at a
/// chosen instant inside a round trip, finer than any timer.
async fn cut_after<F: Future>(future: F, spin: Duration) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let stop = Instant::now() + spin;
    loop {
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(output) = polled {
            return Some(output);
        }
        if Instant::now() >= stop {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

/// The slowest of a few uncontended try_lock + release cycles: cuts are
/// spread over this span.
async fn cycle_time(locker: &dyn Locker, resource: &str) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let lock = take(locker, resource, &long()).await;
        slowest = slowest.max(started.elapsed());
        lock.release().await.expect("release");
    }
    slowest
}

/// Wait until nobody holds `resource` (by `info`, which changes nothing).
async fn until_free(locker: &dyn Locker, resource: &str, bound: Duration) {
    within(
        &format!("`{resource}` free again with no holder left"),
        bound,
        async {
            while locker.info(resource).await.expect("info").is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
}

/// Acquires dropped at random instants inside their round trip (try_lock, and
/// lock() on free and on held resources) leave no lease: every resource is
/// free again within a bound far below the 30 s TTL the leases would have.
pub async fn cancelled_acquires_leave_no_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let span = cycle_time(&*ctx.locker, &ctx.name("cut/probe")).await;
    let held = ctx.name("cut/held");
    let holder = take(&*ctx.other().await, &held, &long()).await;
    let waiting = long().with_wait_timeout(SOON);
    let (mut cut, mut finished) = (0, 0);
    let mut names = Vec::new();
    for i in 0..150 {
        let r = ctx.name(&format!("cut/{i:03}"));
        let spin = span.mul_f64(fastrand::f64() * 1.5);
        let outcome = match i % 3 {
            0 => cut_after(ctx.locker.try_lock(&r, &long()), spin)
                .await
                .map(|answer| answer.expect("try_lock on a fresh resource")),
            1 => cut_after(ctx.locker.lock(&r, &waiting), spin)
                .await
                .map(|answer| Some(answer.expect("lock on a fresh resource"))),
            _ => {
                let spin = span.mul_f64(fastrand::f64() * 3.0);
                match cut_after(ctx.locker.lock(&held, &waiting), spin).await {
                    Some(answer) => panic!("lock() on a held resource returned {answer:?}"),
                    None => None,
                }
            }
        };
        match outcome {
            Some(Some(lock)) => {
                finished += 1;
                lock.release().await.expect("release");
            }
            Some(None) => panic!("try_lock found a fresh resource held"),
            None => cut += 1,
        }
        if i % 3 != 2 {
            names.push(r);
        }
    }
    holder.release().await.expect("release");
    names.push(held);
    let started = Instant::now();
    let other = ctx.other().await;
    for r in &names {
        until_free(&*other, r, SOON).await;
    }
    eprintln!(
        "{}: {cut} acquires cut inside their round trip ({finished} answered first); \
         every resource free {:?} after the last cut",
        ctx.caps().backend,
        started.elapsed()
    );
}

/// The semaphore form, with a long-lived holder on the same locker (the case
/// where a leaked permit rides a lease that stays alive): waits cut at random
/// points leave every permit as it was.
pub async fn cancelled_semaphore_waits_leave_every_permit(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let span = cycle_time(&*ctx.locker, &ctx.name("cut/probe")).await;
    let r = ctx.name("cut/semaphore");
    let two = long().with_permits(2);
    let first = take(&*ctx.locker, &r, &two).await;
    let other = ctx.other().await;
    let second = take(&*other, &r, &two).await;
    let waiting = two.clone().with_wait_timeout(SOON);
    for _ in 0..60 {
        let spin = span.mul_f64(fastrand::f64() * 3.0);
        if let Some(answer) = cut_after(ctx.locker.lock(&r, &waiting), spin).await {
            panic!("a third holder of a 2-permit semaphore: {answer:?}");
        }
    }
    second.release().await.expect("release");
    let third = ctx.other().await;
    let again = take_eventually(&*third, &r, &two, SOON).await;
    let info = third.info(&r).await.expect("info").expect("held");
    assert_eq!(
        info.holders.len(),
        2,
        "exactly the long-lived holder and the new one hold permits"
    );
    assert!(!first.is_lost(), "the long-lived holder kept its permit");
    again.release().await.expect("release");
    first.release().await.expect("release");
    until_free(&*third, &r, SOON).await;
}

/// An operator (or any client) releasing a holder's key ends the lease: the
/// holder's lost signal fires by its next refresh, and nobody sees it held.
pub async fn release_by_key_from_another_client_fires_lost(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("released-by-key");
    let lock = take(&*ctx.locker, &r, &LockOptions::new().with_ttl(ttl)).await;
    let other = ctx.other().await;
    other
        .release(&r, lock.key())
        .await
        .expect("release by key from another client");
    let next = take(&*other, &r, &long()).await;
    assert!(next.token() > lock.token());
    // Refreshed every ttl/3: a backend that renews what it no longer holds
    // keeps the old holder alive forever and fails here.
    within(
        "the old holder's lost signal after a release by key",
        SOON + ttl,
        lock.lost(),
    )
    .await;
    assert!(lock.is_lost());
    match lock.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh after a release by key: expected Lost, got {other:?}"),
    }
    next.release().await.expect("release");
}

/// A manual refresh of a lease another client released by key is `Lost`.
pub async fn manual_refresh_after_release_by_key_is_lost(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("manual-released-by-key");
    let lock = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    let other = ctx.other().await;
    other.release(&r, lock.key()).await.expect("release by key");
    match lock.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh of a lease released by key: expected Lost, got {other:?}"),
    }
    assert!(lock.is_lost());
    assert!(is_free(&*other, &r, &long()).await);
}

/// A lease key names one lease of one resource: refresh or release of another
/// resource with it is `NotHeld`, and the lease it names is untouched.
pub async fn refresh_with_another_resources_key_is_not_held(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = Duration::from_secs(30);
    let (a, b) = (ctx.name("key-of-a"), ctx.name("key-of-b"));
    let lock_a = take(&*ctx.locker, &a, &manual(ttl)).await;
    let lock_b = take(&*ctx.locker, &b, &manual(ttl)).await;
    let other = ctx.other().await;
    assert_not_held(
        other.refresh(&b, lock_a.key(), ttl).await,
        "refresh of `b` with the key of `a`",
    );
    assert_not_held(
        other.release(&b, lock_a.key()).await,
        "release of `b` with the key of `a`",
    );
    let unused = ctx.name("key-of-nothing");
    assert_not_held(
        other.refresh(&unused, lock_a.key(), ttl).await,
        "refresh of a free resource with the key of `a`",
    );
    assert!(!is_free(&*other, &a, &long()).await, "`a` is still held");
    assert!(!is_free(&*other, &b, &long()).await, "`b` is still held");
    lock_a.refresh().await.expect("`a` still renews");
    lock_b.release().await.expect("release");
    lock_a.release().await.expect("release");
}

/// Right after a TTL runs out every view agrees: once one of `info`, `read` or
/// `list` says free, the others do too, the old key cannot release, and
/// `try_lock` is granted.
pub async fn views_agree_right_after_expiry(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let prefix = ctx.name("agree/");
    let r = format!("{prefix}r");
    let lock = take(&*ctx.locker, &r, &manual(ttl).with_data("d")).await;
    let key = lock.detach();
    let other = ctx.other().await;
    let mut first_free: Option<&str> = None;
    within("the lease expired in every view", SOON + ttl * 3, async {
        // Expiry is final (nobody renews): views asked later may not say held
        // once an earlier one said free. Ask in a new order each round.
        for round in 0usize.. {
            let mut views = ["info", "read", "list"];
            fastrand::shuffle(&mut views);
            for view in views {
                let free = match view {
                    "info" => other.info(&r).await.expect("info").is_none(),
                    "read" => other.read(&r).await.expect("read").is_none(),
                    _ => !other
                        .list(&prefix)
                        .await
                        .expect("list")
                        .iter()
                        .any(|n| *n == r),
                };
                match (first_free, free) {
                    (Some(said), false) => {
                        panic!("`{view}` saw the lease held after `{said}` said it expired")
                    }
                    (None, true) => first_free = Some(view),
                    _ => {}
                }
            }
            if first_free.is_some() && round > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
    .await;
    assert_not_held(
        other.release(&r, key).await,
        "release with the key of an expired lease that every view called free",
    );
    let next = take(&*other, &r, &long()).await;
    next.release().await.expect("release");
}

/// The lock time of a grant made after a wait is the grant, not the moment
/// the waiter started waiting.
pub async fn lock_time_is_the_grant_after_a_wait(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("lock-time");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let waiter = {
        let other = other.clone();
        let r = r.clone();
        tokio::spawn(async move { other.lock(&r, &long().with_wait_timeout(SOON * 3)).await })
    };
    // Not a guess at an outcome: a gap between queueing and the grant that a
    // lock time taken at queueing would show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let released_at = std::time::SystemTime::now();
    holder.release().await.expect("release");
    let lock = within("waiter granted", SOON, waiter)
        .await
        .expect("task")
        .expect("lock");
    let info = other.info(&r).await.expect("info").expect("held");
    let lock_time = info.lock_time().expect("lock time");
    let slack = Duration::from_millis(500) + ctx.caps().clock_margin;
    assert!(
        lock_time + slack >= released_at,
        "lock time {lock_time:?} is before the previous holder released ({released_at:?})"
    );
    lock.release().await.expect("release");
}
