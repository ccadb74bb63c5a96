//! The conformance suite through a server in front of a real store:
//! `DISTLOCK_SERVER_STORE_URL=redis://… cargo test -p distlock-server --features redis
//! --test conformance_store` (skipped when the variable is unset). Leases are
//! ended behind their holders' backs with the admin force release.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::Locker;
use distlock_core::conformance::Fixture;
use distlock_server::{Config, ServerHandle};

struct StoreFixture {
    server: ServerHandle,
}

#[async_trait]
impl Fixture for StoreFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        distlock_server::connect(&self.server.url())
            .await
            .expect("client connects")
    }

    async fn expire(&self, resource: &str) {
        self.server.force_release(resource).await;
    }
}

async fn fixture() -> Option<StoreFixture> {
    let Ok(url) = std::env::var("DISTLOCK_SERVER_STORE_URL") else {
        eprintln!("SKIPPED: set DISTLOCK_SERVER_STORE_URL (and the backend's feature) to run");
        return None;
    };
    let config = Config::new("127.0.0.1:0".parse().unwrap()).with_store(url);
    let server = distlock_server::start(config)
        .await
        .expect("server over the store");
    Some(StoreFixture { server })
}

distlock_core::conformance_suite!(fixture());
