//! `impl Store for EtcdStore`: each operation is one call into the module
//! that does it (`acquire`, `refresh`, `release`, `inspect`, `queue`,
//! `wakeup`).

use std::time::Instant;

use bytes::Bytes;
use distlock_core::{
    Abandoned, AcquireRequest, Acquired, Capabilities, Grant, Info, LeaseKey, RefreshRequest,
    Refreshed, Result, Store, Wakeup,
};

use crate::EtcdStore;

impl Store for EtcdStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        self.acquire_now(request).await
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        self.refresh_batch(leases).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.release_key(resource, key).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.info_of(resource).await
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.read_of(resource).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_of(prefix).await
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        self.evict_all(resource).await
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        crate::wakeup::next_release(self, resource).await.map(Some)
    }

    async fn acquire_queued(
        &self,
        request: &AcquireRequest<'_>,
        deadline: Option<Instant>,
        abandoned: &Abandoned,
    ) -> Result<Option<Grant>> {
        crate::queue::acquire_queued(self, request, deadline, abandoned).await
    }
}
