//! The whole conformance suite against the in-process backend.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::{Connector, Locker};
use distlock_memory::{MemoryConnector, MemoryStore};

struct MemoryFixture {
    store: MemoryStore,
}

#[async_trait]
impl Fixture for MemoryFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        Arc::new(self.store.locker())
    }

    async fn expire(&self, resource: &str) {
        self.store.expire(resource);
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

async fn fixture() -> Option<MemoryFixture> {
    Some(MemoryFixture {
        store: MemoryStore::new(),
    })
}

distlock_core::conformance_suite!(fixture());
