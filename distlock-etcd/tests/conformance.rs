//! The whole conformance suite against a real etcd (`DISTLOCK_ETCD_URL`, started
//! by `eval "$(scripts/services up etcd)"`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::{Connector, Locker, Store};
use distlock_etcd::{EtcdConnector, EtcdStore};

struct EtcdFixture {
    url: String,
    /// The operator's store, for `expire`.
    admin: EtcdStore,
}

#[async_trait]
impl Fixture for EtcdFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        let store = EtcdStore::connect(&self.url)
            .await
            .expect("connect to etcd");
        Arc::new(store.locker())
    }

    /// An operator's eviction: every key of the resource deleted at once.
    async fn expire(&self, resource: &str) {
        self.admin.evict(resource).await.expect("evict the leases");
    }

    fn connector(&self) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(EtcdConnector))
    }

    fn bad_urls(&self) -> Vec<String> {
        [
            "etcd://user:hunter2@127.0.0.1:2379?bogus=1",
            "etcd://:hunter2@127.0.0.1:2379",
            "etcd://user:hunter2@127.0.0.1:2379#fragment",
            "etcd://user@127.0.0.1:2379",
            "etcd://127.0.0.1:2379?session_ttl=1s",
            "etcd://127.0.0.1:2379?timeout=soon",
            "etcd://127.0.0.1:2379?ca=/etc/ca.pem",
            "etcds://user:hunter2@127.0.0.1:2379?ca=/nonexistent/ca.pem",
            "etcd://user:hunter2@127.0.0.1:1,127.0.0.1:x",
            "etcd://user:hunter2@[::1",
            "redis://user:hunter2@127.0.0.1:2379",
        ]
        .map(String::from)
        .to_vec()
    }

    fn unreachable_url(&self) -> Option<String> {
        Some("etcd://127.0.0.1:1".to_owned())
    }
}

async fn fixture() -> Option<EtcdFixture> {
    let url = distlock_core::conformance::service_url("DISTLOCK_ETCD_URL")?;
    let admin = EtcdStore::connect(&url)
        .await
        .expect("connect to DISTLOCK_ETCD_URL");
    Some(EtcdFixture { url, admin })
}

distlock_core::conformance_suite!(fixture());
