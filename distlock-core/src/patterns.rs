//! Patterns built on any [`Locker`]: a lease pool (seed 003's `ObtainLease` and
//! `WaitUntilLeaseObtained`) and leader failover (go-ldlm's primary/secondary).

use std::time::{Duration, Instant};

use crate::{Error, Lock, LockOptions, Locker, Result};

/// Take any one free resource of `pool`, trying them in random order so that
/// contenders spread over the pool. `Ok(None)` when every one is held.
///
/// # Errors
/// The first error that is not "held" (invalid name, store unavailable, …).
pub async fn obtain_any<L, R>(locker: &L, pool: &[R], options: &LockOptions) -> Result<Option<Lock>>
where
    L: Locker + ?Sized,
    R: AsRef<str>,
{
    if pool.is_empty() {
        return Err(Error::invalid(
            "pool",
            "the pool is empty; name at least one resource",
        ));
    }
    let mut order: Vec<usize> = (0..pool.len()).collect();
    fastrand::shuffle(&mut order);
    for index in order {
        if let Some(lock) = locker.try_lock(pool[index].as_ref(), options).await? {
            return Ok(Some(lock));
        }
    }
    Ok(None)
}

/// Keep trying [`obtain_any`] every `period` (jittered) until a resource is
/// obtained, or `options.wait_timeout` runs out (`None`: forever, as the seed's
/// `WaitUntilLeaseObtained`).
///
/// # Errors
/// [`WaitTimeout`](Error::WaitTimeout) naming the first pool member; other
/// errors as [`obtain_any`].
///
/// # Cancel safety
/// Dropping the future leaves no lease behind.
pub async fn wait_until_obtained<L, R>(
    locker: &L,
    pool: &[R],
    options: &LockOptions,
    period: Duration,
) -> Result<Lock>
where
    L: Locker + ?Sized,
    R: AsRef<str>,
{
    let started = Instant::now();
    let deadline = options.wait_timeout.and_then(|w| started.checked_add(w));
    loop {
        if let Some(lock) = obtain_any(locker, pool, options).await? {
            return Ok(lock);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::WaitTimeout {
                resource: pool
                    .first()
                    .map(|r| r.as_ref().to_owned())
                    .unwrap_or_default(),
                waited: now - started,
            });
        }
        let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(2);
        let mut pause = Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2));
        if let Some(deadline) = deadline {
            pause = pause.min(deadline - now);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Run `work` only while holding `resource`: wait for it, run, and stop the work
/// the moment the lock is lost (primary / secondary failover). Returns
/// `Ok(Some(output))` if the work finished while the lock was held (the lock is
/// then released), `Ok(None)` if the lock was lost first (the work was dropped).
///
/// # Errors
/// As [`Locker::lock`], or the release error after the work finished.
pub async fn while_holding<L, F, T>(
    locker: &L,
    resource: &str,
    options: &LockOptions,
    work: impl FnOnce(u64) -> F,
) -> Result<Option<T>>
where
    L: Locker + ?Sized,
    F: std::future::Future<Output = T>,
{
    let lock = locker.lock(resource, options).await?;
    let lost = lock.lost();
    tokio::select! {
        output = work(lock.token()) => {
            lock.release().await?;
            Ok(Some(output))
        }
        _ = lost => Ok(None),
    }
}
