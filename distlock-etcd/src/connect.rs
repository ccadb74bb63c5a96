//! `etcd://` and `etcds://` URLs.

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::{Connector, Locker, Result};
use url::Url;

use crate::{EtcdConfig, EtcdStore, SCHEMES};

/// Serves `etcd://` and `etcds://` (see [`EtcdConfig`] for the URL forms): each
/// `connect` is a new client with its own session lease.
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdConnector;

#[async_trait]
impl Connector for EtcdConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let config = EtcdConfig::from_parsed(url)?;
        let store = EtcdStore::connect(config).await?;
        Ok(Arc::new(store.locker()))
    }
}
