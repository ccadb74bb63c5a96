//! Locker wrappers for cross-cutting behaviour (tower-style layers): wrap any
//! [`Locker`] and get a `Locker` back, so they stack and the conformance suite
//! runs through them.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Capabilities, Handler, Info, Infoer, LeaseKey, Lock, LockOptions, Locker, Reader, Result,
};

/// Retries calls that failed with a transient store error
/// ([`Error::Unavailable`](crate::Error::Unavailable) or
/// [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown)), with doubling,
/// jittered pauses. Never retries "held", `WaitTimeout`, `NotHeld` or bad input.
///
/// Retrying an acquire whose outcome is unknown is safe: the first attempt's
/// key is released in the background by the locker, and the retry uses a new key.
/// A release whose outcome is unknown is retried by key; if the first attempt
/// did land, the retry answers `NotHeld`, which this layer reports as success
/// only for that retry.
#[derive(Debug, Clone)]
pub struct Retrying<L> {
    inner: L,
    attempts: u32,
    first_pause: Duration,
}

impl<L: Locker> Retrying<L> {
    /// Up to 3 attempts, pausing 50 ms then 100 ms.
    pub fn new(inner: L) -> Self {
        Retrying {
            inner,
            attempts: 3,
            first_pause: Duration::from_millis(50),
        }
    }

    /// Set the number of attempts (at least 1) and the first pause.
    pub fn with_policy(mut self, attempts: u32, first_pause: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_pause = first_pause;
        self
    }

    /// The wrapped locker.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let mut pause = self.first_pause;
        let mut attempt = 1;
        loop {
            match call(attempt).await {
                Err(error) if attempt < self.attempts && is_store_fault(&error) => {
                    tracing::debug!(%error, attempt, "transient store error; retrying");
                    let nanos = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
                    tokio::time::sleep(Duration::from_nanos(
                        nanos / 2 + fastrand::u64(0..=nanos / 2),
                    ))
                    .await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn is_store_fault(error: &crate::Error) -> bool {
    matches!(
        error,
        crate::Error::Unavailable { .. } | crate::Error::OutcomeUnknown { .. }
    )
}

#[async_trait]
impl<L: Locker> Handler for Retrying<L> {
    async fn try_lock(&self, resource: &str, options: &LockOptions) -> Result<Option<Lock>> {
        self.retry(|_| self.inner.try_lock(resource, options)).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<()> {
        let mut unknown = false;
        let result = self
            .retry(|attempt| {
                if attempt > 1 {
                    unknown = true;
                }
                self.inner.release(resource, key)
            })
            .await;
        match result {
            // The earlier attempt whose outcome was unknown did release it.
            Err(crate::Error::NotHeld { .. }) if unknown => Ok(()),
            other => other,
        }
    }

    async fn refresh(&self, resource: &str, key: LeaseKey, ttl: Duration) -> Result<()> {
        self.retry(|_| self.inner.refresh(resource, key, ttl)).await
    }

    async fn force_release(&self, resource: &str) -> Result<usize> {
        self.retry(|_| self.inner.force_release(resource)).await
    }
}

#[async_trait]
impl<L: Locker> Infoer for Retrying<L> {
    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.retry(|_| self.inner.info(resource)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.retry(|_| self.inner.list(prefix)).await
    }
}

#[async_trait]
impl<L: Locker> Reader for Retrying<L> {
    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.retry(|_| self.inner.read(resource)).await
    }
}

#[async_trait]
impl<L: Locker> Locker for Retrying<L> {
    async fn lock(&self, resource: &str, options: &LockOptions) -> Result<Lock> {
        self.retry(|_| self.inner.lock(resource, options)).await
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn refresh_stats(&self) -> Option<crate::RefreshStats> {
        self.inner.refresh_stats()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::{
        AcquireRequest, Acquired, Error, NoopStore, RefreshRequest, Refreshed, Store, StoreLocker,
    };

    /// Fails the first `failures` acquires with `Unavailable`, then grants.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: NoopStore,
        failures: u32,
        calls: AtomicU32,
        mismatch: bool,
    }

    impl Store for Flaky {
        fn capabilities(&self) -> &Capabilities {
            self.inner.capabilities()
        }
        async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.mismatch {
                return Err(Error::SizeMismatch {
                    resource: request.resource.into(),
                    requested: 1,
                    existing: 2,
                });
            }
            if call < self.failures {
                return Err(Error::unavailable("flaky", "connection refused"));
            }
            self.inner.acquire(request).await
        }
        async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
            self.inner.refresh(leases).await
        }
        async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
            self.inner.release(resource, key).await
        }
        async fn info(&self, resource: &str) -> Result<Option<Info>> {
            self.inner.info(resource).await
        }
        async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
            self.inner.read(resource).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix).await
        }
    }

    fn flaky(failures: u32, mismatch: bool) -> StoreLocker<Flaky> {
        StoreLocker::new(Flaky {
            failures,
            mismatch,
            ..Flaky::default()
        })
    }

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_policy() {
        let fast = Duration::from_millis(1);
        let layered = Retrying::new(flaky(2, false)).with_policy(3, fast);
        let lock = layered.try_lock("r", &LockOptions::new()).await.unwrap();
        assert!(lock.is_some(), "third attempt succeeds");
        assert_eq!(layered.inner().store().calls.load(Ordering::SeqCst), 3);

        let layered = Retrying::new(flaky(2, false)).with_policy(2, fast);
        let error = layered
            .try_lock("r", &LockOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        assert_eq!(layered.inner().store().calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let layered = Retrying::new(flaky(0, true)).with_policy(5, Duration::from_millis(1));
        let error = layered
            .try_lock("r", &LockOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::SizeMismatch { .. }), "{error}");
        assert_eq!(layered.inner().store().calls.load(Ordering::SeqCst), 1);
        let error = layered.try_lock("", &LockOptions::new()).await.unwrap_err();
        assert!(matches!(error, Error::InvalidArgument { .. }), "{error}");
        assert_eq!(
            layered.inner().store().calls.load(Ordering::SeqCst),
            1,
            "bad input never reaches the store"
        );
    }

    #[tokio::test]
    async fn waiting_lock_rides_out_store_faults_until_its_deadline() {
        use crate::Locker as _;
        let locker = flaky(2, false);
        let options = LockOptions::new().with_wait_timeout(Duration::from_secs(10));
        let lock = locker
            .lock("r", &options)
            .await
            .expect("granted after two faults");
        assert_eq!(locker.store().calls.load(Ordering::SeqCst), 3);
        lock.release().await.unwrap();

        let down = flaky(u32::MAX, false);
        let options = LockOptions::new().with_wait_timeout(Duration::from_millis(100));
        let error = down.lock("r", &options).await.unwrap_err();
        assert!(
            matches!(error, Error::Unavailable { .. }),
            "the fault, not a timeout: {error}"
        );
        assert!(
            down.store().calls.load(Ordering::SeqCst) > 1,
            "retried while waiting"
        );

        let once = flaky(1, false);
        let options = LockOptions::new().with_wait_timeout(Duration::ZERO);
        let error = once.lock("r", &options).await.unwrap_err();
        assert!(
            matches!(error, Error::Unavailable { .. }),
            "no wait: one attempt: {error}"
        );
    }
}
