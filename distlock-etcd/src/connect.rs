//! Connecting: [`EtcdStore::connect`] by URL, [`EtcdStore::connect_with`] by
//! [`EtcdConfig`], and [`EtcdConnector`] serving `etcd://` and `etcds://` URLs
//! for the registry (the same as `EtcdStore::connect`).

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::{Capabilities, Connector, Error, Locker, Result};
use etcd_client::ConnectOptions;
use url::Url;

use crate::client::{Counters, Inner};
use crate::config::MIN_TTL;
use crate::error::BACKEND;
use crate::layout::Layout;
use crate::{EtcdConfig, EtcdStore, SCHEMES};

impl EtcdStore {
    /// Connect by URL (see [`EtcdConfig`] for the forms and options).
    ///
    /// # Errors
    /// As [`EtcdConfig::from_url`] and [`EtcdStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(EtcdConfig::from_url(url)?).await
    }

    /// Connect to the cluster and grant the session lease, so that the first
    /// acquire is one round trip and bad credentials show here.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an unusable configuration (bad TLS files, …),
    /// [`Error::Unavailable`] when no endpoint answers in time, [`Error::Store`]
    /// when etcd refuses (authentication failed, …).
    pub async fn connect_with(config: EtcdConfig) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: format!(
                "{}://{}",
                if config.tls { "etcds" } else { "etcd" },
                config.endpoints.join(",")
            ),
            reason,
        };
        config.validate().map_err(invalid)?;
        let mut options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout)
            // etcd refuses pings without a stream (GOAWAY "too many pings") and
            // more often than every 5 s.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false)
            // A partitioned member answers watches only with a leader.
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&config.user, config.password()) {
            options = options.with_user(user.clone(), password.to_owned());
        }
        let endpoints: Vec<String> = if config.tls {
            #[cfg(feature = "tls")]
            {
                options = options.with_tls(tls_options(&config).map_err(invalid)?);
            }
            config
                .endpoints
                .iter()
                .map(|e| format!("https://{e}"))
                .collect()
        } else {
            config
                .endpoints
                .iter()
                .map(|e| format!("http://{e}"))
                .collect()
        };
        let caps = Capabilities::new(BACKEND)
            .with_min_ttl(MIN_TTL)
            // etcd itself accepts leases of up to 9e9 s; the core's week is plenty.
            .with_max_ttl(Duration::from_secs(7 * 24 * 3600))
            .with_max_data_len(64 * 1024)
            .with_push_wakeup(true)
            .with_batch_refresh(true)
            .with_queued_wait(true)
            .with_clock_margin(Duration::from_millis(2));
        let store = EtcdStore {
            inner: Arc::new(Inner {
                clients: Mutex::new(vec![None; endpoints.len()]),
                current: AtomicUsize::new(0),
                options,
                endpoint_urls: endpoints,
                caps,
                layout: Layout::new(&config.prefix),
                config,
                session: Mutex::new(None),
                session_gate: tokio::sync::Mutex::new(()),
                keys: Mutex::new(HashMap::new()),
                spares: Mutex::new(HashMap::new()),
                stats: Counters::default(),
            }),
        };
        store.session().await?;
        Ok(store)
    }
}

/// Serves `etcd://` and `etcds://` (see [`EtcdConfig`] for the URL forms): each
/// `connect` is a new client with its own session lease, exactly as
/// [`EtcdStore::connect`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdConnector;

#[async_trait]
impl Connector for EtcdConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let config = EtcdConfig::from_parsed(url)?;
        let store = EtcdStore::connect_with(config).await?;
        Ok(Arc::new(store.locker()))
    }
}

#[cfg(feature = "tls")]
fn tls_options(config: &EtcdConfig) -> std::result::Result<etcd_client::TlsOptions, String> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    };
    let mut tls = TlsOptions::new().with_native_roots();
    if let Some(ca) = &config.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &config.client_cert {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(domain) = &config.domain {
        tls = tls.domain_name(domain.clone());
    }
    Ok(tls)
}
