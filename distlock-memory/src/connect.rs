//! Connecting: [`MemoryStore::connect`] (a URL), [`MemoryStore::connect_with`]
//! (a [`MemoryConfig`]), and the registry's [`MemoryConnector`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use distlock_core::{Connector, Locker, Result, StoreLocker};
use url::Url;

use crate::config::SCHEMES;
use crate::{MemoryConfig, MemoryStore};

impl MemoryStore {
    /// The table a `memory://` or `memory://NAME` URL names (see
    /// [`MemoryConfig::from_url`]): [`MemoryStore::connect_with`] its config.
    ///
    /// # Errors
    /// [`InvalidUrl`](distlock_core::Error::InvalidUrl) for a bad URL.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(MemoryConfig::from_url(url)?).await
    }

    /// The process's table named [`MemoryConfig::name`], created on first
    /// use: every store connected with one name shares that table.
    /// ([`MemoryStore::new`] is a private table of its own.)
    ///
    /// # Errors
    /// None today; a `Result` like every backend's `connect_with`.
    pub async fn connect_with(config: MemoryConfig) -> Result<Self> {
        Ok(named(&config.name))
    }
}

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

/// Serves `memory://` (the process-wide default table) and `memory://NAME` (a
/// named table) exactly as [`MemoryStore::connect`] does: lockers connected to
/// the same URL share one table, like clients of one server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryConnector;

#[async_trait]
impl Connector for MemoryConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let store = MemoryStore::connect(url.as_str()).await?;
        Ok(Arc::new(StoreLocker::new(store)))
    }
}
