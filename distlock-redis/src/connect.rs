//! `redis://`, `rediss://` and `redis+unix://` URLs.

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::{Connector, Locker, Result};
use url::Url;

use crate::{RedisConfig, RedisStore, SCHEMES};

/// Serves `redis://`, `rediss://` (TLS) and `redis+unix://`: each `connect` is a
/// new [`RedisStore`] (its own connections) and locker. See [`RedisConfig`] for
/// the URL forms and options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisConnector;

#[async_trait]
impl Connector for RedisConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let config = RedisConfig::from_parsed(url)?;
        Ok(Arc::new(RedisStore::connect(config).await?.locker()))
    }
}
