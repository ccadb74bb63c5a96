//! # distlock
//!
//! Distributed locks, leases and semaphores over the store you already run,
//! with fencing tokens and a lost signal on every backend. This is the crate
//! to depend on: it re-exports the whole API and picks backends by feature
//! and by URL.
//!
//! ```toml
//! [dependencies]
//! distlock = { version = "0.1", features = ["redis", "postgres"] }
//! ```
//!
//! ```
//! # async fn demo() -> distlock::Result<()> {
//! use std::time::Duration;
//! use distlock::LockOptions;
//!
//! // `memory://` is built in by default; `redis://…`, `postgres://…` with their features.
//! let locker = distlock::connect("memory://").await?;
//! let options = LockOptions::new().with_ttl(Duration::from_secs(30));
//! let lock = locker.lock("reports/nightly", &options).await?; // waits until granted
//! println!("holding with fencing token {}", lock.token());
//! lock.release().await?;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! | feature | URL schemes | crate |
//! |---|---|---|
//! | `memory` (default) | `memory://[name]` | [`memory`] |
//! | `redis` | `redis://`, `rediss://`, `redis+unix://` | `redis` |
//! | `etcd` | `etcd://`, `etcds://` | `etcd` |
//! | `postgres`, `mysql`, `sqlite`, `cockroach` | `postgres://`, `mysql://`, `sqlite://`, `cockroach://` | `sql` |
//! | `dynamo` | `dynamodb://TABLE?region=…` | `dynamo` |
//! | `server` | `distlock://[:PASSWORD@]HOST[:PORT]`, `distlocks://…` (TLS): a distlock lock server | `server` |
//! | `full` | all of the above | |
//!
//! A URL whose backend is not built in is an [`Error::InvalidUrl`] that names
//! the feature to turn on.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

use std::sync::Arc;

pub use distlock_core::*;

#[cfg(feature = "memory")]
pub use distlock_memory as memory;

#[cfg(feature = "redis")]
pub use distlock_redis as redis;

#[cfg(feature = "etcd")]
pub use distlock_etcd as etcd;

#[cfg(any(
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "cockroach"
))]
pub use distlock_sql as sql;

#[cfg(feature = "dynamo")]
pub use distlock_dynamo as dynamo;

#[cfg(feature = "server")]
pub use distlock_server as server;

/// Every backend this crate knows: its feature and URL schemes.
pub const BACKENDS: &[(&str, &[&str])] = &[
    ("memory", &["memory"]),
    ("redis", &["redis", "rediss", "redis+unix"]),
    ("etcd", &["etcd", "etcds"]),
    ("postgres", &["postgres", "postgresql"]),
    ("mysql", &["mysql", "mariadb"]),
    ("sqlite", &["sqlite"]),
    ("cockroach", &["cockroach", "cockroachdb"]),
    ("dynamo", &["dynamodb"]),
    ("server", &["distlock", "distlocks"]),
];

/// Whether `feature` was turned on in this build.
fn built(feature: &str) -> bool {
    let on = [
        ("memory", cfg!(feature = "memory")),
        ("redis", cfg!(feature = "redis")),
        ("etcd", cfg!(feature = "etcd")),
        ("postgres", cfg!(feature = "postgres")),
        ("mysql", cfg!(feature = "mysql")),
        ("sqlite", cfg!(feature = "sqlite")),
        ("cockroach", cfg!(feature = "cockroach")),
        ("dynamo", cfg!(feature = "dynamo")),
        ("server", cfg!(feature = "server")),
    ];
    on.iter().any(|(name, built)| *name == feature && *built)
}

/// Every backend compiled into this build (plus `noop://`, which grants
/// everything: for tests), and a hint naming the feature for the others.
pub fn registry() -> Registry {
    let registry = Registry::new().with(NoopConnector);
    #[cfg(feature = "memory")]
    let registry = registry.with(distlock_memory::MemoryConnector);
    #[cfg(feature = "redis")]
    let registry = registry.with(distlock_redis::RedisConnector);
    #[cfg(feature = "etcd")]
    let registry = registry.with(distlock_etcd::EtcdConnector);
    #[cfg(any(
        feature = "postgres",
        feature = "mysql",
        feature = "sqlite",
        feature = "cockroach"
    ))]
    let registry = registry.with(distlock_sql::SqlConnector);
    #[cfg(feature = "dynamo")]
    let registry = registry.with(distlock_dynamo::DynamoConnector);
    #[cfg(feature = "server")]
    let registry = registry.with(distlock_server::DistlockConnector);
    BACKENDS.iter().filter(|(feature, _)| !built(feature)).fold(
        registry,
        |registry, (feature, schemes)| {
            registry.with_hint(
                schemes,
                format!("turn on feature `{feature}` of the `distlock` crate"),
            )
        },
    )
}

/// Connect to the store `url` names, with every backend of this build.
///
/// # Errors
/// [`Error::InvalidUrl`] for a URL that does not parse, names a backend this
/// build lacks (the message names the feature) or that the backend rejects;
/// [`Error::Unavailable`] when the store does not answer.
pub async fn connect(url: &str) -> Result<Arc<dyn Locker>> {
    registry().connect(url).await
}
