//! Helpers the cases share; public so that a backend's own tests can use them (not a stable API).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Fixture;
use crate::{Capabilities, Error, Lock, LockOptions, Locker, Result};

/// The bound on anything that should happen "soon": generous, since CI
/// machines are slow; the cases wait on events, never on this.
pub const SOON: Duration = Duration::from_secs(10);

/// One case's context: the fixture, a random prefix, a locker.
pub struct Ctx<'a> {
    /// The backend's fixture.
    pub fixture: &'a dyn Fixture,
    /// A random prefix: every name of the case starts with it.
    pub prefix: String,
    /// A client of the store.
    pub locker: Arc<dyn Locker>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("prefix", &self.prefix).finish()
    }
}

impl<'a> Ctx<'a> {
    /// A context with a fresh prefix and locker.
    pub async fn new(fixture: &'a dyn Fixture) -> Ctx<'a> {
        Ctx {
            fixture,
            prefix: format!("conformance-{:016x}/", fastrand::u64(..)),
            locker: fixture.locker().await,
        }
    }

    /// `prefix` + `suffix`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The backend's capabilities.
    pub fn caps(&self) -> Capabilities {
        self.locker.capabilities().clone()
    }

    /// The shortest TTL the cases use: the backend minimum, but at least 300 ms
    /// so that scheduling noise does not decide outcomes.
    pub fn short_ttl(&self) -> Duration {
        self.caps().min_ttl.max(Duration::from_millis(300))
    }

    /// The TTL of cases where a lease must survive renewals: twice the short
    /// TTL and at least a second, so that a renewal sent every third of it
    /// has room to come back on a loaded machine (the promise is about
    /// renewing, not about how fast the store answers).
    pub fn held_ttl(&self) -> Duration {
        (self.short_ttl() * 2).max(Duration::from_secs(1))
    }

    /// Another client of the same store.
    pub async fn other(&self) -> Arc<dyn Locker> {
        self.fixture.locker().await
    }
}

/// 30 s TTL, auto refresh.
pub fn long() -> LockOptions {
    LockOptions::new().with_ttl(Duration::from_secs(30))
}

/// `ttl`, manual refresh.
pub fn manual(ttl: Duration) -> LockOptions {
    LockOptions::new().with_ttl(ttl).manual_refresh()
}

/// `try_lock` that must be granted.
pub async fn take(locker: &dyn Locker, resource: &str, options: &LockOptions) -> Lock {
    match locker.try_lock(resource, options).await {
        Ok(Some(lock)) => lock,
        Ok(None) => panic!("`{resource}` should be free, but try_lock found it held"),
        Err(e) => panic!("try_lock(`{resource}`) failed: {e}"),
    }
}

/// Whether a `try_lock` is granted now (the probe lock is released).
pub async fn is_free(locker: &dyn Locker, resource: &str, options: &LockOptions) -> bool {
    match locker.try_lock(resource, options).await {
        Ok(Some(lock)) => {
            lock.release().await.expect("releasing a probe lock");
            true
        }
        Ok(None) => false,
        Err(e) => panic!("try_lock(`{resource}`) failed: {e}"),
    }
}

/// `future`, or a panic naming `what` after `bound`.
pub async fn within<T>(what: &str, bound: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not happen within {bound:?}"),
    }
}

/// Poll with `try_lock` until granted (bounded).
pub async fn take_eventually(
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

/// `InvalidArgument` naming `what`, with a message.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, what: &str, context: &str) {
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

/// `NotHeld`.
#[track_caller]
pub fn assert_not_held<T: std::fmt::Debug>(result: Result<T>, context: &str) {
    match result {
        Err(Error::NotHeld { .. }) => {}
        other => panic!("{context}: expected NotHeld, got {other:?}"),
    }
}

/// Poll `future` for about `spin` (yielding between polls so the runtime's
/// I/O makes progress), then drop it unless it finished first: a cut at a
/// chosen instant inside a round trip, finer than any timer.
pub async fn cut_after<F: Future>(future: F, spin: Duration) -> Option<F::Output> {
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
pub async fn cycle_time(locker: &dyn Locker, resource: &str) -> Duration {
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
pub async fn until_free(locker: &dyn Locker, resource: &str, bound: Duration) {
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
