//! `memory://` URLs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use distlock_core::{Connector, Error, Locker, Result, StoreLocker, redact_url};
use url::Url;

use crate::MemoryStore;

/// The schemes this crate serves.
pub const SCHEMES: &[&str] = &["memory"];

/// Serves `memory://` (the process-wide default table) and `memory://NAME` (a
/// named table): lockers connected to the same URL share one table, like
/// clients of one server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryConnector;

fn named(name: &str) -> MemoryStore {
    static TABLES: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
    TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name.to_owned())
        .or_default()
        .clone()
}

#[async_trait]
impl Connector for MemoryConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: redact_url(url.as_str()),
            reason: reason.to_owned(),
        };
        if !SCHEMES.contains(&url.scheme()) {
            return Err(invalid("the memory backend serves memory:// only"));
        }
        if url.password().is_some() || !url.username().is_empty() || url.port().is_some() {
            return Err(invalid(
                "memory:// takes no user, password or port; use memory:// or memory://NAME",
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(invalid(
                "memory:// takes no path or options; use memory:// or memory://NAME",
            ));
        }
        let name = url.host_str().unwrap_or("");
        Ok(Arc::new(StoreLocker::new(named(name))))
    }
}
