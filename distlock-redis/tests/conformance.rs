//! The whole conformance suite against a real `redis-server`
//! (`eval "$(scripts/services up redis)"` exports `DISTLOCK_REDIS_URL`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::{Fixture, service_url};
use distlock_core::{Connector, Locker, Store};
use distlock_redis::{RedisConnector, RedisStore};

struct RedisFixture {
    url: String,
    /// The operator's connection, for `expire` (an eviction).
    admin: RedisStore,
}

#[async_trait]
impl Fixture for RedisFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        let store = RedisStore::connect(&self.url)
            .await
            .expect("connect to DISTLOCK_REDIS_URL");
        Arc::new(store.locker())
    }

    async fn expire(&self, resource: &str) {
        self.admin.evict(resource).await.expect("evict the leases");
    }

    fn connector(&self) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(RedisConnector))
    }

    fn bad_urls(&self) -> Vec<String> {
        [
            "redis://:hunter2@",
            "redis://user:hunter2@127.0.0.1:6379/notadb",
            "redis://user:hunter2@127.0.0.1:6379?nope=1",
            "redis://user:hunter2@127.0.0.1:6379#insecure",
            "rediss://user:hunter2@127.0.0.1:6379?ca=/nonexistent/ca.pem",
            "redis://127.0.0.1:6379?namespace=has%20space",
            "redis+unix://",
            "redis+unix://host:6379/redis.sock",
            "redis://[::1",
        ]
        .map(String::from)
        .to_vec()
    }

    fn unreachable_url(&self) -> Option<String> {
        Some("redis://127.0.0.1:1".to_owned())
    }
}

async fn fixture() -> Option<RedisFixture> {
    let url = service_url("DISTLOCK_REDIS_URL")?;
    let admin = RedisStore::connect(&url)
        .await
        .expect("connect to DISTLOCK_REDIS_URL");
    Some(RedisFixture { url, admin })
}

distlock_core::conformance_suite!(fixture());
