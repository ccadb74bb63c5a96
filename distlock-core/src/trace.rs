//! One `tracing` span and one DEBUG event per store round trip: backend,
//! operation, resource, outcome and latency. Lease keys and credentials are
//! never recorded.
//!
//! `RUST_LOG=distlock=debug` shows the events (target `distlock::store`) with
//! any `fmt` subscriber, no span-event configuration needed.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use crate::Result;

/// Run one store call inside a `distlock.store` span at DEBUG level, and
/// emit a DEBUG event when it ends.
///
/// `outcome` names a successful answer (`granted`, `held`, `released`, …);
/// errors are recorded by their message. When nobody listens, this costs two
/// disabled-callsite checks and no clock read.
pub(crate) async fn round_trip<T, F>(
    backend: &'static str,
    operation: &'static str,
    resource: &str,
    call: F,
    outcome: impl FnOnce(&T) -> &'static str,
) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    let span = tracing::debug_span!(
        "distlock.store",
        backend,
        operation,
        resource,
        outcome = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );
    let event = tracing::enabled!(target: "distlock::store", tracing::Level::DEBUG);
    if span.is_disabled() && !event {
        return call.await;
    }
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("latency_us", latency_us);
    match &result {
        Ok(value) => {
            let outcome = outcome(value);
            span.record("outcome", outcome);
            tracing::debug!(
                target: "distlock::store",
                backend,
                operation,
                resource,
                outcome,
                latency_us,
                "store round trip"
            );
        }
        Err(error) => {
            span.record("outcome", tracing::field::display(error));
            tracing::debug!(
                target: "distlock::store",
                backend,
                operation,
                resource,
                outcome = "error",
                %error,
                latency_us,
                "store round trip"
            );
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::round_trip;

    /// Counts `distlock::store` events at DEBUG; spans are ignored.
    struct Events(Arc<AtomicUsize>);

    impl Subscriber for Events {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            !metadata.is_span()
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if event.metadata().target() == "distlock::store" {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn one_event_per_round_trip_without_span_configuration() {
        let count = Arc::new(AtomicUsize::new(0));
        let subscriber = Events(count.clone());
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let ok = round_trip("test", "acquire", "r", async { Ok(1) }, |_| "granted");
                assert_eq!(ok.await.unwrap(), 1);
                let failed: crate::Result<u8> = round_trip(
                    "test",
                    "release",
                    "r",
                    async { Err(crate::Error::unavailable("test", "down")) },
                    |_| "released",
                )
                .await;
                assert!(failed.is_err());
            });
        });
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
