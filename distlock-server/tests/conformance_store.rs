//! The conformance suite through a server in front of a real store: Redis
//! from `DISTLOCK_REDIS_URL` (what `scripts/services up` prints), or any store
//! of this build from `DISTLOCK_SERVER_STORE_URL`. A loud skip without them;
//! with `CI` set, a failure. Leases are ended behind their holders' backs with
//! the admin force release.
#![cfg(feature = "redis")]
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
    let url = match std::env::var("DISTLOCK_SERVER_STORE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => distlock_core::conformance::service_url("DISTLOCK_REDIS_URL")?,
    };
    let config = Config::new("127.0.0.1:0".parse().unwrap()).with_store(url);
    let server = distlock_server::start(config)
        .await
        .expect("server over the store");
    Some(StoreFixture { server })
}

distlock_core::conformance_suite!(fixture());
