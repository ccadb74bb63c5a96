//! Connecting: [`RedisStore::connect`] by URL, [`RedisStore::connect_with`] by
//! [`RedisConfig`], and [`RedisConnector`] serving `redis://`, `rediss://` and
//! `redis+unix://` URLs for the registry (the same as `RedisStore::connect`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::{Connector, Locker, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use url::Url;

use crate::error::connect_error;
use crate::{RedisConfig, RedisStore, SCHEMES};

impl RedisStore {
    /// Connect by URL (see [`RedisConfig`] for the forms and options) and load
    /// the scripts.
    ///
    /// # Errors
    /// As [`RedisConfig::from_url`] and [`RedisStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(RedisConfig::from_url(url)?).await
    }

    /// Connect to the server `config` names and load the scripts.
    ///
    /// # Errors
    /// [`Unavailable`](distlock_core::Error::Unavailable) naming the server if
    /// it cannot be reached, [`Store`](distlock_core::Error::Store) if it
    /// refuses us (a wrong or missing password: the message says how to give
    /// one; no permission for `EVALSHA`),
    /// [`InvalidUrl`](distlock_core::Error::InvalidUrl) if the TLS files are
    /// unusable.
    pub async fn connect_with(config: RedisConfig) -> Result<Self> {
        let endpoint = config.endpoint();
        let client = config.client(true)?;
        let mut connection = ConnectionManager::new_with_config(client, manager_config(&config))
            .await
            .map_err(|e| connect_error(e, &endpoint))?;
        let mut load = redis::pipe();
        for code in [
            crate::scripts::ACQUIRE,
            crate::scripts::REFRESH,
            crate::scripts::RELEASE,
            crate::scripts::INFO,
            crate::scripts::RAISE,
            crate::scripts::EVICT,
        ] {
            load.cmd("SCRIPT").arg("LOAD").arg(code).ignore();
        }
        load.exec_async(&mut connection)
            .await
            .map_err(|e| connect_error(e, &endpoint))?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await
            .map_err(|e| connect_error(e, &endpoint))?;
        let cluster = info.contains("cluster_enabled:1");
        Ok(Self::build(config, connection, cluster))
    }

    /// A store that connects on first use (quorum members that are down when
    /// the quorum starts).
    pub(crate) fn connect_lazy(config: RedisConfig) -> Result<Self> {
        let client = config.client(true)?;
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config(&config))
            .map_err(|e| connect_error(e, &config.endpoint()))?;
        Ok(Self::build(config, connection, false))
    }
}

fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    // Reconnect at once, then back off (at most ~1.2 s of retries before a
    // command fails; the next command starts over).
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_response_timeout(Some(config.response_timeout()))
        .set_number_of_retries(3)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
}

/// Serves `redis://`, `rediss://` (TLS) and `redis+unix://`: each `connect` is a
/// new [`RedisStore`] (its own connections) and locker, exactly as
/// [`RedisStore::connect`]. See [`RedisConfig`] for the URL forms and options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisConnector;

#[async_trait]
impl Connector for RedisConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let config = RedisConfig::from_parsed(url)?;
        Ok(Arc::new(RedisStore::connect_with(config).await?.locker()))
    }
}
