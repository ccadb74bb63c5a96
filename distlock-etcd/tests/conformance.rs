//! The whole conformance suite against a real etcd (`DISTLOCK_ETCD_URL`, started
//! by `eval "$(scripts/services up etcd)"`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::{Connector, Locker};
use distlock_etcd::{EtcdConfig, EtcdConnector, EtcdStore};
use etcd_client::{Client, GetOptions};

struct EtcdFixture {
    url: String,
    admin: Client,
    prefix: String,
}

#[async_trait]
impl Fixture for EtcdFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        let store = EtcdStore::connect_url(&self.url)
            .await
            .expect("connect to etcd");
        Arc::new(store.locker())
    }

    /// Revoke the lease of every key of `resource`, as an operator would
    /// (`etcdctl lease revoke`): the holders' keys vanish with it.
    async fn expire(&self, resource: &str) {
        // `<prefix>/ NUL <resource> NUL`: every key of the resource.
        let mut prefix = format!("{}/\0{resource}", self.prefix.trim_end_matches('/')).into_bytes();
        prefix.push(0);
        let mut admin = self.admin.clone();
        let found = admin
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .expect("range the resource");
        for kv in found.kvs() {
            if kv.lease() != 0 {
                let _ = admin.lease_revoke(kv.lease()).await;
            }
        }
        admin
            .delete(
                prefix,
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
            .expect("delete leftovers");
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
    let config = EtcdConfig::from_url(&url).expect("DISTLOCK_ETCD_URL parses");
    let admin = Client::connect(&config.endpoints, None)
        .await
        .expect("admin client");
    Some(EtcdFixture {
        url,
        admin,
        prefix: config.prefix.clone(),
    })
}

distlock_core::conformance_suite!(fixture());
