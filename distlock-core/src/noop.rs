//! A store that grants everything: for tests and for running code that needs a
//! [`Locker`](crate::Locker) where no exclusion is wanted (seed 002's `NoopLocker`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use url::Url;

use crate::{
    AcquireRequest, Acquired, Capabilities, Connector, Grant, Info, LeaseKey, Locker,
    RefreshRequest, Refreshed, Result, Store, StoreLocker,
};

/// Grants every request at once, with increasing tokens; holds nothing.
/// **Provides no mutual exclusion.**
#[derive(Debug)]
pub struct NoopStore {
    caps: Capabilities,
    tokens: AtomicU64,
}

impl Default for NoopStore {
    fn default() -> Self {
        NoopStore {
            caps: Capabilities::new("noop").with_batch_refresh(true),
            tokens: AtomicU64::new(0),
        }
    }
}

/// A [`Locker`] that grants everything (no mutual exclusion).
pub type NoopLocker = StoreLocker<NoopStore>;

impl NoopLocker {
    /// A locker that grants everything.
    pub fn noop() -> Self {
        StoreLocker::new(NoopStore::default())
    }
}

impl Store for NoopStore {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Acquired::Granted(Grant::new(
            token,
            SystemTime::now() + request.ttl,
        )))
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        Ok(vec![Refreshed::Renewed; leases.len()])
    }

    async fn release(&self, _resource: &str, _key: LeaseKey) -> Result<bool> {
        Ok(true)
    }

    async fn info(&self, _resource: &str) -> Result<Option<Info>> {
        Ok(None)
    }

    async fn read(&self, _resource: &str) -> Result<Option<Bytes>> {
        Ok(None)
    }

    async fn list(&self, _prefix: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Serves `noop://`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopConnector;

#[async_trait]
impl Connector for NoopConnector {
    fn schemes(&self) -> &'static [&'static str] {
        &["noop"]
    }

    async fn connect(&self, _url: &Url) -> Result<Arc<dyn Locker>> {
        Ok(Arc::new(NoopLocker::noop()))
    }
}
