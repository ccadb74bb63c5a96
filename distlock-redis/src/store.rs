//! `impl Store for RedisStore`: each operation is one call into the module
//! that does it (`acquire`, `refresh`, `release`, `inspect`, `wakeup`).

use std::time::Duration;

use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Error, Grant, Info, LeaseKey, RefreshRequest,
    Refreshed, Result, Store, Wakeup,
};

use crate::RedisStore;
use crate::acquire::RawAcquired;
use crate::client::wall;
use crate::inspect::to_info;
use crate::layout;

impl Store for RedisStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        match self.acquire_raw(request).await? {
            RawAcquired::Granted { token, expires_ms } => {
                Ok(Acquired::Granted(Grant::new(token, wall(expires_ms))))
            }
            RawAcquired::Held { retry_after_ms } => Ok(Acquired::Held {
                retry_after: Some(Duration::from_millis(
                    u64::try_from(retry_after_ms).unwrap_or(0),
                )),
            }),
            RawAcquired::Mismatch { existing } => Err(Error::SizeMismatch {
                resource: request.resource.to_owned(),
                requested: request.permits,
                existing,
            }),
        }
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        Ok(self
            .refresh_raw(leases)
            .await?
            .into_iter()
            .map(|renewed| {
                if renewed {
                    Refreshed::Renewed
                } else {
                    Refreshed::NotHeld
                }
            })
            .collect())
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.release_raw(resource, key).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        Ok(self
            .info_raw(resource)
            .await?
            .and_then(|raw| to_info(resource, raw)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        Ok(self
            .info_raw(resource)
            .await?
            .and_then(|raw| raw.holders.into_iter().next().map(|h| h.data)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_raw(prefix).await
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        self.evict_raw(resource).await
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let channel = layout::channel(self.namespace(), resource);
        self.inner.subscriber.subscribe(&channel).await.map(Some)
    }
}
