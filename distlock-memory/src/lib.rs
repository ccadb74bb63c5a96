//! The in-process backend of distlock: locks shared by the tasks of one process.
//!
//! It is the embedded default (no server: what examples and tests use) and the
//! reference implementation of the [`Store`](distlock_core::Store) contract:
//! the same semantics as the networked backends (TTL, fencing tokens that never
//! go back, permits, data, push wake-up), at in-memory speed.
//!
//! ```
//! use distlock_core::{Handler, LockOptions};
//! use distlock_memory::MemoryStore;
//!
//! # async fn demo() -> distlock_core::Result<()> {
//! let locker = MemoryStore::new().locker();
//! let lock = locker.try_lock("invoice/42", &LockOptions::new()).await?.expect("free");
//! assert!(locker.try_lock("invoice/42", &LockOptions::new()).await?.is_none());
//! lock.release().await?;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! By URL, `memory://NAME` is a table shared by every store connected with
//! that name ([`MemoryStore::connect`], [`MemoryConnector`] for the registry);
//! `memory://` is the process-wide default table. An operator (or a test)
//! ends every lease of a resource with
//! [`Store::evict`](distlock_core::Store::evict): the next token is higher and
//! waiters are woken.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

// The files of every backend crate where they apply: `config.rs` (the
// table's name), `connect.rs`, `store.rs`. No `error.rs` (there is no client
// whose errors need mapping) and no `layout.rs` (no keys or rows: one map per
// shard, described in `store.rs`).
mod config;
mod connect;
mod store;

pub use config::{MemoryConfig, SCHEMES, URL_ENV};
pub use connect::MemoryConnector;
pub use store::MemoryStore;

/// A [`Locker`](distlock_core::Locker) over an in-process [`MemoryStore`].
pub type MemoryLocker = distlock_core::StoreLocker<MemoryStore>;
