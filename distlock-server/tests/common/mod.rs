//! An in-process server over a memory store, and clients of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::{Connector, Locker};
use distlock_memory::MemoryStore;
use distlock_server::{Config, DistlockConnector, ServerHandle};

pub(crate) struct ServerFixture {
    pub(crate) store: MemoryStore,
    pub(crate) server: ServerHandle,
}

impl ServerFixture {
    pub(crate) async fn start(config: Config) -> Self {
        let store = MemoryStore::new();
        let server = distlock_server::start(config.with_locker(Arc::new(store.locker())))
            .await
            .expect("server starts");
        ServerFixture { store, server }
    }

    pub(crate) async fn new() -> Self {
        Self::start(Config::new("127.0.0.1:0".parse().unwrap())).await
    }
}

#[async_trait]
impl Fixture for ServerFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        distlock_server::connect(&self.server.url())
            .await
            .expect("client connects")
    }

    async fn expire(&self, resource: &str) {
        distlock_core::Store::evict(&self.store, resource)
            .await
            .expect("evict");
    }

    fn connector(&self) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(DistlockConnector))
    }

    fn bad_urls(&self) -> Vec<String> {
        let addr = self.server.local_addr();
        [
            format!("distlock://user:hunter2@{addr}"),
            format!("distlock://:hunter2@{addr}/path"),
            format!("distlock://{addr}?password=hunter2"),
            format!("distlock://{addr}#frag"),
            "distlock://:hunter2@[::1".to_owned(),
            "distlock:///no-host".to_owned(),
        ]
        .to_vec()
    }

    fn unreachable_url(&self) -> Option<String> {
        // A port that was just free: bind it, note it, let it go.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let addr = listener.local_addr().ok()?;
        drop(listener);
        Some(format!("distlock://{addr}"))
    }
}
