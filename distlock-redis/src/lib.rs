//! The Redis backend of distlock.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod connect;
mod keys;
mod pubsub;
mod quorum;
mod scripts;
mod store;

pub use config::{DEFAULT_NAMESPACE, RedisConfig, SCHEMES};
pub use connect::RedisConnector;
pub use keys::hash_slot;
pub use quorum::QuorumStore;
pub use store::RedisStore;

/// A [`Locker`](distlock_core::Locker) over one Redis server.
pub type RedisLocker = distlock_core::StoreLocker<RedisStore>;

/// A [`Locker`](distlock_core::Locker) over a Redlock quorum of servers.
pub type QuorumLocker = distlock_core::StoreLocker<QuorumStore>;
