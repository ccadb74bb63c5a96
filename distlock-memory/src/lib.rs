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
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod connect;
mod store;

pub use connect::{MemoryConnector, SCHEMES};
pub use store::MemoryStore;

/// A [`Locker`](distlock_core::Locker) over an in-process [`MemoryStore`].
pub type MemoryLocker = distlock_core::StoreLocker<MemoryStore>;
