//! # distlock-server
//!
//! A lock service: a gRPC front (`distlock.v1`, see `proto/`) over any distlock
//! backend, and the `distlock://` client backend that speaks to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use distlock_server::{Config, start};
//!
//! let server = start(Config::new("127.0.0.1:0".parse()?)).await?; // memory:// by default
//! let locker = distlock_server::connect(&server.url()).await?;
//! // … use `locker` like any other distlock Locker …
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Sessions and the disconnect grace
//!
//! A client keeps one `Session` stream per connection; each keepalive on it
//! renews every lease the client lists, so a client holding 1,000 locks sends
//! one message per refresh interval. When the stream ends or goes quiet, the
//! server stops renewing that session's leases and releases them according to
//! [`DisconnectGrace`]:
//!
//! - [`DisconnectGrace::LeaseExpiry`] (the default, safe): each lease is
//!   released when its TTL, counted from the server's receipt of its last
//!   renewal, runs out. The client counted the same TTL from *before* it sent
//!   that renewal, less a drift margin, so its lost signal has already fired:
//!   no two clients ever believe they hold the lock at once.
//! - [`DisconnectGrace::After`]`(d)`: released `d` after the disconnect, or at
//!   the lease's expiry if sooner. `After(ZERO)` is go-ldlm's behaviour: fast
//!   fail-over, but a client that is alive behind a broken connection may still
//!   believe it holds the lock until its own deadline.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod cli;
mod client;
mod config;
mod error;
mod lockey;
mod metrics;
mod server;
mod service;
mod state;

/// The generated protocol types and gRPC stubs (`distlock.v1`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("distlock.v1");
}

pub use client::{DEFAULT_PORT, DistlockConnector, GrpcStore, SCHEMES, connect, connect_store};
pub use config::{Config, DisconnectGrace, Limits, Password, TlsConfig};
pub use error::ClientError;
pub use lockey::SessionClient;
pub use server::{ServerHandle, StartError, start};

/// Every backend `--store` can name in this build (features `memory`,
/// `redis`, `postgres`, `etcd`), plus `distlock://` (a server in front of
/// another), with a hint naming the feature for the others.
pub fn registry() -> distlock_core::Registry {
    let registry = distlock_core::Registry::new()
        .with(distlock_core::NoopConnector)
        .with(DistlockConnector);
    #[cfg(feature = "memory")]
    let registry = registry.with(distlock_memory::MemoryConnector);
    #[cfg(feature = "redis")]
    let registry = registry.with(distlock_redis::RedisConnector);
    #[cfg(feature = "postgres")]
    let registry = registry.with(distlock_sql::SqlConnector);
    #[cfg(feature = "etcd")]
    let registry = registry.with(distlock_etcd::EtcdConnector);
    let missing: &[(&str, &'static [&'static str], bool)] = &[
        ("memory", &["memory"], cfg!(feature = "memory")),
        (
            "redis",
            &["redis", "rediss", "redis+unix"],
            cfg!(feature = "redis"),
        ),
        (
            "postgres",
            &["postgres", "postgresql"],
            cfg!(feature = "postgres"),
        ),
        ("etcd", &["etcd", "etcds"], cfg!(feature = "etcd")),
    ];
    missing.iter().filter(|(_, _, built)| !built).fold(
        registry,
        |registry, (feature, schemes, _)| {
            registry.with_hint(
                schemes,
                format!("turn on feature `{feature}` of the `distlock-server` crate"),
            )
        },
    )
}

/// The metadata key carrying the password.
pub const PASSWORD_HEADER: &str = "x-distlock-password";
/// The metadata key naming the session a request's leases belong to.
pub const SESSION_HEADER: &str = "x-distlock-session";
/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;
