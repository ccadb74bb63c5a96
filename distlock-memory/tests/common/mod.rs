//! The memory backend's conformance fixture, shared by the suite runs.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::layer::Retrying;
use distlock_core::metrics::Metered;
use distlock_core::{Connector, Locker, Store};
use distlock_memory::{MemoryConnector, MemoryStore};

/// Which layer wraps every locker of the fixture.
#[derive(Clone, Copy)]
pub(crate) enum Layer {
    None,
    Retrying,
    Metered,
}

/// Lockers over one shared in-process table, optionally behind a layer.
pub(crate) struct MemoryFixture {
    pub(crate) store: MemoryStore,
    pub(crate) layer: Layer,
}

#[async_trait]
impl Fixture for MemoryFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        match self.layer {
            Layer::None => Arc::new(self.store.locker()),
            Layer::Retrying => Arc::new(Retrying::new(self.store.locker())),
            Layer::Metered => Arc::new(Metered::new(self.store.locker()).with_resource_label(true)),
        }
    }

    async fn expire(&self, resource: &str) {
        self.store.evict(resource).await.expect("evict");
    }

    fn connector(&self) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(MemoryConnector))
    }

    fn bad_urls(&self) -> Vec<String> {
        [
            "memory://user:hunter2@table",
            "memory://table/with/path",
            "memory://table:6379",
            "memory://table?size=3",
            "memory://[::1",
        ]
        .map(String::from)
        .to_vec()
    }
}
