//! One `tracing` span per store round trip: backend, operation, resource,
//! outcome and latency. Lease keys and credentials are never recorded.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use crate::Result;

/// Run one store call inside a `distlock.store` span at DEBUG level.
///
/// `outcome` names a successful answer (`granted`, `held`, `released`, …);
/// errors are recorded by their message. When no subscriber listens for the span,
/// this costs one disabled-callsite check and no clock read.
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
    if span.is_disabled() {
        return call.await;
    }
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("latency_us", latency_us);
    match &result {
        Ok(value) => {
            span.record("outcome", outcome(value));
        }
        Err(error) => {
            span.record("outcome", tracing::field::display(error));
        }
    }
    result
}
