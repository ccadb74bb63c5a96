//! The conformance suite through the facade (no direct `distlock-core`
//! dependency), on the memory backend.
#![cfg(all(feature = "conformance", feature = "memory"))]
#![allow(clippy::expect_used)] // test code

use std::sync::Arc;

use distlock::Locker;
use distlock::conformance::Fixture;
use distlock::memory::MemoryStore;

struct Memory(MemoryStore);

#[async_trait::async_trait]
impl Fixture for Memory {
    async fn locker(&self) -> Arc<dyn Locker> {
        Arc::new(self.0.locker())
    }

    async fn expire(&self, resource: &str) {
        distlock::Store::evict(&self.0, resource)
            .await
            .expect("evict");
    }
}

distlock::conformance_suite!(async { Some(Memory(MemoryStore::new())) });
