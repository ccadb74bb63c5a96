//! A layer that records metrics through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): install any recorder (Prometheus exporter,
//! StatsD, …) in the program and wrap the locker in [`Metered`].
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `distlock_acquire_total` | counter | `backend`, `outcome` (`acquired`, `held`, `timeout`, `error`) [, `resource`] |
//! | `distlock_acquire_wait_seconds` | histogram | `backend`, `outcome` [, `resource`] |
//! | `distlock_hold_seconds` | histogram | `backend`, `end` (`released`, `lost`) [, `resource`] |
//! | `distlock_lost_total` | counter | `backend` [, `resource`] |
//! | `distlock_store_errors_total` | counter | `backend`, `operation`, `kind` (`unavailable`, `outcome_unknown`, `store`) |
//!
//! `held` is a [`Handler::try_lock`] that found the resource taken; `timeout` a
//! [`Locker::lock`] that gave up waiting. The `resource` label is off by
//! default (one series per lock name can be many):
//! [`Metered::with_resource_label`] turns it on.
//!
//! ```
//! use distlock_core::{NoopLocker, metrics::Metered};
//!
//! let locker = Metered::new(NoopLocker::noop());
//! Metered::<NoopLocker>::describe(); // optional: help texts for exporters
//! # let _ = locker;
//! ```
//!
//! Cost: a granted lock is watched by one small task that records its hold
//! time and whether it was lost (the core keeps no task per lock otherwise).

use std::time::{Duration, Instant};

use ::metrics::{Label, Unit, counter, describe_counter, describe_histogram, histogram};
use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Capabilities, Error, Handler, Info, Infoer, LeaseKey, Lock, LockOptions, Locker, Reader, Result,
};

/// Counter: acquire attempts by outcome.
pub const ACQUIRE_TOTAL: &str = "distlock_acquire_total";
/// Histogram: seconds spent in one acquire call, by outcome.
pub const ACQUIRE_WAIT_SECONDS: &str = "distlock_acquire_wait_seconds";
/// Histogram: seconds a granted lock was held, until released or lost.
pub const HOLD_SECONDS: &str = "distlock_hold_seconds";
/// Counter: granted locks that were lost.
pub const LOST_TOTAL: &str = "distlock_lost_total";
/// Counter: store faults by operation and kind.
pub const STORE_ERRORS_TOTAL: &str = "distlock_store_errors_total";

/// Records acquire outcomes, wait and hold times, lost locks and store errors
/// of any [`Locker`]; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Metered<L> {
    inner: L,
    resource_label: bool,
}

impl<L: Locker> Metered<L> {
    /// Wrap `inner`; no `resource` label.
    pub fn new(inner: L) -> Self {
        Metered {
            inner,
            resource_label: false,
        }
    }

    /// Add the `resource` label to the acquire, wait, hold and lost metrics.
    pub fn with_resource_label(mut self, on: bool) -> Self {
        self.resource_label = on;
        self
    }

    /// The wrapped locker.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Register the help texts and units of every metric with the installed
    /// recorder (call once after installing it; harmless to skip).
    pub fn describe() {
        describe_counter!(ACQUIRE_TOTAL, "Lock acquire attempts by outcome");
        describe_histogram!(
            ACQUIRE_WAIT_SECONDS,
            Unit::Seconds,
            "Time spent in one acquire call (waiting included)"
        );
        describe_histogram!(
            HOLD_SECONDS,
            Unit::Seconds,
            "Time a granted lock was held until released or lost"
        );
        describe_counter!(LOST_TOTAL, "Granted locks that were lost");
        describe_counter!(
            STORE_ERRORS_TOTAL,
            "Store faults (unavailable, outcome unknown, store error) by operation"
        );
    }

    fn backend(&self) -> &'static str {
        self.inner.capabilities().backend
    }

    fn labels(&self, resource: &str, extra: (&'static str, &'static str)) -> Vec<Label> {
        let mut labels = vec![
            Label::from_static_parts("backend", self.backend()),
            Label::from_static_parts(extra.0, extra.1),
        ];
        if self.resource_label {
            labels.push(Label::new("resource", resource.to_owned()));
        }
        labels
    }

    /// Count a store fault; other errors are the caller's, not the store's.
    fn store_error<T>(&self, operation: &'static str, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            let kind = match error {
                Error::Unavailable { .. } => "unavailable",
                Error::OutcomeUnknown { .. } => "outcome_unknown",
                Error::Store { .. } => "store",
                _ => return result,
            };
            counter!(
                STORE_ERRORS_TOTAL,
                "backend" => self.backend(),
                "operation" => operation,
                "kind" => kind
            )
            .increment(1);
        }
        result
    }

    /// Record one acquire call's outcome and, for a grant, watch the lock.
    fn acquired(
        &self,
        resource: &str,
        started: Instant,
        lock: Option<&Lock>,
        error: Option<&Error>,
    ) {
        let outcome = match (lock, error) {
            (Some(_), _) => "acquired",
            (None, None) => "held",
            (None, Some(Error::WaitTimeout { .. })) => "timeout",
            (None, Some(_)) => "error",
        };
        let labels = self.labels(resource, ("outcome", outcome));
        counter!(ACQUIRE_TOTAL, labels.clone()).increment(1);
        histogram!(ACQUIRE_WAIT_SECONDS, labels).record(started.elapsed().as_secs_f64());
        if let Some(lock) = lock {
            self.watch(resource, lock);
        }
    }

    /// Record the hold time and a loss when the lock ends.
    fn watch(&self, resource: &str, lock: &Lock) {
        let signal = lock.lost_signal();
        let granted = Instant::now();
        let backend = self.backend();
        let resource = self.resource_label.then(|| resource.to_owned());
        // Outside a runtime (cannot happen for a lock just granted) nothing is recorded.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            signal.lost().await;
            let held: Duration = signal.lost_at().map_or_else(
                || granted.elapsed(),
                |at| at.saturating_duration_since(granted),
            );
            let lost = signal.is_lost();
            let mut labels = vec![
                Label::from_static_parts("backend", backend),
                Label::from_static_parts("end", if lost { "lost" } else { "released" }),
            ];
            if let Some(resource) = &resource {
                labels.push(Label::new("resource", resource.clone()));
            }
            histogram!(HOLD_SECONDS, labels).record(held.as_secs_f64());
            if lost {
                let mut labels = vec![Label::from_static_parts("backend", backend)];
                if let Some(resource) = resource {
                    labels.push(Label::new("resource", resource));
                }
                counter!(LOST_TOTAL, labels).increment(1);
            }
        });
    }
}

#[async_trait]
impl<L: Locker> Handler for Metered<L> {
    async fn try_lock(&self, resource: &str, options: &LockOptions) -> Result<Option<Lock>> {
        let started = Instant::now();
        let result = self.store_error("acquire", self.inner.try_lock(resource, options).await);
        match &result {
            Ok(lock) => self.acquired(resource, started, lock.as_ref(), None),
            Err(error) => self.acquired(resource, started, None, Some(error)),
        }
        result
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<()> {
        self.store_error("release", self.inner.release(resource, key).await)
    }

    async fn refresh(&self, resource: &str, key: LeaseKey, ttl: Duration) -> Result<()> {
        self.store_error("refresh", self.inner.refresh(resource, key, ttl).await)
    }

    async fn force_release(&self, resource: &str) -> Result<usize> {
        self.store_error("evict", self.inner.force_release(resource).await)
    }
}

#[async_trait]
impl<L: Locker> Infoer for Metered<L> {
    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.store_error("info", self.inner.info(resource).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.store_error("list", self.inner.list(prefix).await)
    }
}

#[async_trait]
impl<L: Locker> Reader for Metered<L> {
    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.store_error("read", self.inner.read(resource).await)
    }
}

#[async_trait]
impl<L: Locker> Locker for Metered<L> {
    async fn lock(&self, resource: &str, options: &LockOptions) -> Result<Lock> {
        let started = Instant::now();
        let result = self.store_error("acquire", self.inner.lock(resource, options).await);
        match &result {
            Ok(lock) => self.acquired(resource, started, Some(lock), None),
            Err(error) => self.acquired(resource, started, None, Some(error)),
        }
        result
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
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use ::metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString,
    };

    use super::*;
    use crate::{AcquireRequest, Acquired, Grant, RefreshRequest, Refreshed, Store, StoreLocker};

    /// Counters and histogram samples by `name{label=value,…}` (labels sorted).
    #[derive(Debug, Default, Clone)]
    struct Seen {
        counters: Arc<Mutex<BTreeMap<String, u64>>>,
        histograms: Arc<Mutex<BTreeMap<String, Vec<f64>>>>,
    }

    impl Seen {
        fn counter(&self, key: &str) -> u64 {
            self.counters.lock().unwrap().get(key).copied().unwrap_or(0)
        }
        fn samples(&self, key: &str) -> Vec<f64> {
            self.histograms
                .lock()
                .unwrap()
                .get(key)
                .cloned()
                .unwrap_or_default()
        }
    }

    struct Handle {
        key: String,
        seen: Seen,
    }

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self
                .seen
                .counters
                .lock()
                .unwrap()
                .entry(self.key.clone())
                .or_default() += value;
        }
        fn absolute(&self, value: u64) {
            self.seen
                .counters
                .lock()
                .unwrap()
                .insert(self.key.clone(), value);
        }
    }

    impl HistogramFn for Handle {
        fn record(&self, value: f64) {
            self.seen
                .histograms
                .lock()
                .unwrap()
                .entry(self.key.clone())
                .or_default()
                .push(value);
        }
    }

    fn render(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    #[derive(Debug, Default)]
    struct TestRecorder(Seen);

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Handle {
                key: render(key),
                seen: self.0.clone(),
            }))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Handle {
                key: render(key),
                seen: self.0.clone(),
            }))
        }
    }

    /// Grants everything except `busy` (held), `down` (unavailable); refuses
    /// to renew `doomed`; `info` of `down` is a store error.
    #[derive(Debug)]
    struct Scripted(Capabilities);

    impl Store for Scripted {
        fn capabilities(&self) -> &Capabilities {
            &self.0
        }
        async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
            match request.resource {
                "busy" => Ok(Acquired::Held {
                    retry_after: Some(Duration::from_millis(5)),
                }),
                "down" => Err(Error::unavailable("scripted", "connection refused")),
                _ => Ok(Acquired::Granted(Grant::new(
                    1,
                    SystemTime::now() + request.ttl,
                ))),
            }
        }
        async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
            Ok(leases
                .iter()
                .map(|l| match l.resource {
                    "doomed" => Refreshed::NotHeld,
                    _ => Refreshed::Renewed,
                })
                .collect())
        }
        async fn release(&self, _: &str, _: LeaseKey) -> Result<bool> {
            Ok(true)
        }
        async fn info(&self, resource: &str) -> Result<Option<Info>> {
            match resource {
                "down" => Err(Error::store("scripted", "permission denied")),
                _ => Ok(None),
            }
        }
        async fn read(&self, _: &str) -> Result<Option<Bytes>> {
            Ok(None)
        }
        async fn list(&self, _: &str) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    fn scripted() -> StoreLocker<Scripted> {
        StoreLocker::new(Scripted(Capabilities::new("scripted")))
    }

    fn with_recorder(body: impl Future<Output = ()>) -> Seen {
        let recorder = TestRecorder::default();
        let seen = recorder.0.clone();
        ::metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body);
        });
        seen
    }

    /// Let the hold-time watchers run.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    #[test]
    fn records_outcomes_wait_and_hold_times_losses_and_store_errors() {
        let seen = with_recorder(async {
            let locker = Metered::new(scripted());
            let lock = locker.try_lock("free", &LockOptions::new()).await.unwrap();
            lock.unwrap().release().await.unwrap();
            assert!(
                locker
                    .try_lock("busy", &LockOptions::new())
                    .await
                    .unwrap()
                    .is_none()
            );
            let waiting = LockOptions::new().with_wait_timeout(Duration::from_millis(30));
            let error = locker.lock("busy", &waiting).await.unwrap_err();
            assert!(matches!(error, Error::WaitTimeout { .. }), "{error}");
            let once = LockOptions::new().with_wait_timeout(Duration::ZERO);
            let error = locker.lock("down", &once).await.unwrap_err();
            assert!(matches!(error, Error::Unavailable { .. }), "{error}");
            assert!(locker.info("down").await.is_err());
            assert!(
                locker.try_lock("", &LockOptions::new()).await.is_err(),
                "bad input: an error outcome, not a store error"
            );

            let short = LockOptions::new()
                .with_ttl(Duration::from_millis(90))
                .with_refresh_interval(Duration::from_millis(20));
            let doomed = locker.lock("doomed", &short).await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), doomed.lost())
                .await
                .expect("a refused refresh loses the lock");
            settle().await;
        });

        let b = "backend=scripted";
        assert_eq!(
            seen.counter(&format!("{ACQUIRE_TOTAL}{{{b},outcome=acquired}}")),
            2
        );
        assert_eq!(
            seen.counter(&format!("{ACQUIRE_TOTAL}{{{b},outcome=held}}")),
            1
        );
        assert_eq!(
            seen.counter(&format!("{ACQUIRE_TOTAL}{{{b},outcome=timeout}}")),
            1
        );
        assert_eq!(
            seen.counter(&format!("{ACQUIRE_TOTAL}{{{b},outcome=error}}")),
            2
        );
        let timeouts = seen.samples(&format!("{ACQUIRE_WAIT_SECONDS}{{{b},outcome=timeout}}"));
        assert_eq!(timeouts.len(), 1);
        assert!(timeouts[0] >= 0.025, "waited about 30 ms: {timeouts:?}");
        assert_eq!(
            seen.samples(&format!("{ACQUIRE_WAIT_SECONDS}{{{b},outcome=acquired}}"))
                .len(),
            2
        );
        assert_eq!(
            seen.samples(&format!("{HOLD_SECONDS}{{{b},end=released}}"))
                .len(),
            1
        );
        let lost = seen.samples(&format!("{HOLD_SECONDS}{{{b},end=lost}}"));
        assert_eq!(lost.len(), 1, "{:?}", seen.histograms);
        assert!(lost[0] < 5.0, "{lost:?}");
        assert_eq!(seen.counter(&format!("{LOST_TOTAL}{{{b}}}")), 1);
        assert_eq!(
            seen.counter(&format!(
                "{STORE_ERRORS_TOTAL}{{{b},kind=unavailable,operation=acquire}}"
            )),
            1
        );
        assert_eq!(
            seen.counter(&format!(
                "{STORE_ERRORS_TOTAL}{{{b},kind=store,operation=info}}"
            )),
            1
        );
        let store_errors: u64 = seen
            .counters
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(STORE_ERRORS_TOTAL))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(
            store_errors, 2,
            "invalid input and timeouts are not store errors"
        );
    }

    #[test]
    fn the_resource_label_is_opt_in() {
        let seen = with_recorder(async {
            let plain = Metered::new(scripted());
            drop(plain.try_lock("a", &LockOptions::new()).await.unwrap());
            let labelled = Metered::new(scripted()).with_resource_label(true);
            let lock = labelled.try_lock("b", &LockOptions::new()).await.unwrap();
            lock.unwrap().release().await.unwrap();
            settle().await;
        });
        let counters = seen.counters.lock().unwrap();
        assert!(
            counters.contains_key(&format!(
                "{ACQUIRE_TOTAL}{{backend=scripted,outcome=acquired}}"
            )),
            "{counters:?}"
        );
        assert!(
            counters.contains_key(&format!(
                "{ACQUIRE_TOTAL}{{backend=scripted,outcome=acquired,resource=b}}"
            )),
            "{counters:?}"
        );
        assert!(
            !counters.keys().any(|k| k.contains("resource=a")),
            "{counters:?}"
        );
        let histograms = seen.histograms.lock().unwrap();
        assert!(
            histograms.contains_key(&format!(
                "{HOLD_SECONDS}{{backend=scripted,end=released,resource=b}}"
            )),
            "{histograms:?}"
        );
    }
}
