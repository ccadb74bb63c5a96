//! What the example programs share: picking the backend from `DISTLOCK_URL`.
//!
//! Every example runs on whichever backend the URL names (default `memory://`),
//! among those this build has (features `memory`, `redis`, `etcd`, `postgres`,
//! `mysql`, `sqlite`, `dynamo`, `full`). Each finishes on its own in a few
//! seconds and exits non-zero if the property it demonstrates is broken.
//!
//! | program | shows |
//! |---|---|
//! | `quickstart` | take a lock, use its fencing token, release it |
//! | `contention` | N workers, one fenced counter: no lost update |
//! | `failover` | primary / secondary failover through the lost signal |
//! | `leader_election` | candidates campaign for leadership; the leader watches `lost()`, resigns, hands off |
//! | `task_queue` | task locking: racing workers process every queued task exactly once |
//! | `resource_limit` | a semaphore (`with_permits(3)`): at most 3 of 10 workers inside at once |
//! | `job_locks` | job locks by component and job, max duration, disable / enable (feature `sqlite`) |
//! | `lease_pool` | lease pools: obtain any free member, wait for one, release |
//! | `fenced_writes` | a storage that rejects a paused holder's late write by its fencing token |
//!
//! `cargo run -p distlock-examples --bin NAME` runs one on the memory backend;
//! `DISTLOCK_URL=redis://127.0.0.1:6379 cargo run -p distlock-examples --features redis --bin NAME`
//! on Redis (`--features postgres` with `DISTLOCK_URL=postgres://…` on PostgreSQL).
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

/// Stop the program with exit status 1 and a `PROGRAM: FAILED: …` line unless
/// `ok`: how the examples report a broken invariant to CI.
pub fn ensure(program: &str, ok: bool, what: impl std::fmt::Display) {
    if !ok {
        fail(program, what);
    }
}

/// Stop the program with exit status 1 and a `PROGRAM: FAILED: …` line.
pub fn fail(program: &str, what: impl std::fmt::Display) -> ! {
    eprintln!("{program}: FAILED: {what}");
    std::process::exit(1);
}

/// What the programs' `main` returns: a failure prints its message and its
/// causes in plain words (`Display`), not `Debug`.
pub type Outcome = std::result::Result<(), Failure>;

/// An error on its way out of `main`.
pub struct Failure(Box<dyn std::error::Error + Send + Sync + 'static>);

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(Box::new(error))
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", distlock::error_chain(&*self.0))
    }
}
