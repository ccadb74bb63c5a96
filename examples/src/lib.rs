//! What the example programs share: picking the backend from `DISTLOCK_URL`.
//!
//! Every example runs on whichever backend the URL names (default `memory://`),
//! among those this build has (features `memory`, `redis`, `etcd`, `postgres`,
//! `mysql`, `sqlite`, `dynamo`, `full`).
//!
//! The project README follows; its code is compiled as this crate's doc tests.
#![doc = include_str!("../../README.md")]
// Example programs stop with a message on the first surprise.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use distlock::{Locker, Result};

/// The URL from `DISTLOCK_URL`, or `memory://`.
pub fn url() -> String {
    std::env::var("DISTLOCK_URL").unwrap_or_else(|_| "memory://".to_owned())
}

/// Connect to the store `DISTLOCK_URL` names (through [`distlock::connect`]);
/// set `RUST_LOG=distlock=debug` to see one event per store round trip.
pub async fn connect() -> Result<Arc<dyn Locker>> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    distlock::connect(&url()).await
}
