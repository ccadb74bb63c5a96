//! Connecting: [`DynamoStore::connect`] (a URL), [`DynamoStore::connect_with`]
//! (a [`DynamoConfig`]), and the registry's [`DynamoConnector`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Region, SharedHttpClient};
use distlock_core::{Connector, Error, Locker, Result, StoreLocker};
use url::Url;

use crate::config::SCHEMES;
use crate::{DynamoConfig, DynamoStore};

impl DynamoStore {
    /// Connect to the table a `dynamodb://TABLE?…` URL names (see
    /// [`DynamoConfig::from_url`]): [`DynamoStore::connect_with`] its config.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) for a bad URL; otherwise as
    /// [`DynamoStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self> {
        let config = DynamoConfig::from_url(url)?;
        let shown = crate::config::shown_str(url);
        Self::connect_with(config)
            .await
            .map_err(|error| match error {
                Error::InvalidArgument { what, reason } => Error::InvalidUrl {
                    url: shown,
                    reason: format!("{what}: {reason}"),
                },
                other => other,
            })
    }

    /// Build a client from `config` and the AWS config chain, then create the
    /// table ([`DynamoConfig::create_table`]: [`DynamoStore::create_table`]) or
    /// check it ([`DynamoStore::check_table`], one `DescribeTable`), so a
    /// missing table or an unreachable endpoint is reported here.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) naming the bad config field,
    /// or `region` when neither the config nor the AWS chain names a region;
    /// the table check's errors.
    pub async fn connect_with(config: DynamoConfig) -> Result<Self> {
        let create = config.create_table;
        let store = Self::client_for(config).await?;
        if create {
            store.create_table().await?;
        } else {
            store.check_table().await?;
        }
        Ok(store)
    }

    /// The store over a client built from `config` and the AWS chain; sends
    /// nothing.
    async fn client_for(config: DynamoConfig) -> Result<Self> {
        config.validate()?;
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(config.max_attempts)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(2));
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_attempt_timeout(config.attempt_timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client())
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::invalid(
                "region",
                "no AWS region: set it in the config (?region= in the URL) or AWS_REGION",
            ));
        }
        let client_config = aws_sdk_dynamodb::config::Builder::from(&sdk).build();
        Self::from_client_config(client_config, config)
    }

    /// Use an SDK client you configured yourself (its region, endpoint,
    /// credentials, retry and timeouts win over the config's). Sends nothing:
    /// call [`DynamoStore::check_table`] or [`DynamoStore::create_table`] to
    /// find out early whether the table is there.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) naming the bad config field.
    pub fn from_client(client: &Client, config: DynamoConfig) -> Result<Self> {
        config.validate()?;
        Self::from_client_config(client.config().to_builder().build(), config)
    }
}

/// The SDK's HTTP client: hyper on rustls with `ring` (the workspace's TLS;
/// the SDK's default client would build aws-lc). Certificates are verified
/// against the platform's trusted roots, as with the SDK's default client;
/// plain `http://` endpoints (emulators) work too.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Serves `dynamodb://TABLE?region=R&endpoint=URL&…` (options: see
/// [`DynamoConfig::from_url`]) exactly as [`DynamoStore::connect`] does.
///
/// Credentials never go in the URL: they come from the AWS chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, roles). Connecting
/// checks the table (one `DescribeTable`), or creates it with `create=true`,
/// so a missing table or unreachable endpoint is reported here.
#[derive(Debug, Clone, Copy, Default)]
pub struct DynamoConnector;

#[async_trait]
impl Connector for DynamoConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let store = DynamoStore::connect(url.as_str()).await?;
        Ok(Arc::new(StoreLocker::new(store)))
    }
}
