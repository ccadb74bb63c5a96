#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod connect;
mod error;
pub mod layer;
mod lease_key;
mod lock;
mod locker;
#[cfg(feature = "metrics")]
pub mod metrics;
mod noop;
mod options;
pub mod patterns;
mod refresher;
mod store;
mod trace;
mod traits;
mod url_options;
mod wait;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use connect::{Connector, Registry, parse_url, redact_url};
pub use error::{BoxError, Error, Result, error_chain};
pub use lease_key::LeaseKey;
pub use lock::{Lock, LostSignal};
pub use locker::{RefreshStats, StoreLocker};
pub use noop::{NoopConnector, NoopLocker, NoopStore};
pub use options::{
    DEFAULT_TTL, LockOptions, MAX_OWNER_LEN, MAX_RESOURCE_LEN, Refresh, validate_owner,
    validate_prefix, validate_resource,
};
pub use store::{
    Abandoned, AcquireRequest, Acquired, Capabilities, Grant, RefreshRequest, Refreshed, Store,
    Wakeup,
};
pub use traits::{Handler, Holder, Info, Infoer, Locker, Reader};
pub use url_options::UrlOptions;
pub use wait::Backoff;
