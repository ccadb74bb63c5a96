//! Redlock quorum mode ([`QuorumStore`]).
//!
//! - The whole conformance suite through a quorum of three "servers" that are
//!   three namespaces of the shared `DISTLOCK_REDIS_URL` server (independent
//!   key spaces: the quorum logic is what is tested).
//! - Three real `redis-server` processes, one then two killed.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::conformance::{Fixture, service_url};
use distlock_core::{Handler, Infoer, LockOptions, Locker, Store};
use distlock_redis::{QuorumStore, RedisConfig};
use support::{RedisServer, redis_available};

const SOON: Duration = Duration::from_secs(10);

struct QuorumFixture {
    urls: Vec<String>,
    /// The operator's quorum, for `expire` (an eviction).
    admin: QuorumStore,
}

#[async_trait]
impl Fixture for QuorumFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        let store = QuorumStore::connect_urls(&self.urls)
            .await
            .expect("connect the quorum");
        Arc::new(store.locker())
    }

    async fn expire(&self, resource: &str) {
        self.admin.evict(resource).await.expect("evict the leases");
    }
}

async fn fixture() -> Option<QuorumFixture> {
    let url = service_url("DISTLOCK_REDIS_URL")?;
    let urls: Vec<String> = ["q1", "q2", "q3"]
        .iter()
        .map(|ns| format!("{url}?namespace=quorum-{ns}"))
        .collect();
    let admin = QuorumStore::connect_urls(&urls)
        .await
        .expect("connect the quorum");
    Some(QuorumFixture { urls, admin })
}

mod conformance {
    use super::fixture;
    distlock_core::conformance_suite!(fixture());
}

async fn within<T>(what: &str, bound: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not happen within {bound:?}"),
    }
}

/// Three servers: with one killed the quorum still grants, renews and
/// releases, tokens keep increasing; with two killed it refuses (a transient
/// error, never a grant) and a held lock is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_survives_one_dead_server_but_not_two() {
    if !redis_available() {
        return;
    }
    let mut servers = Vec::new();
    for _ in 0..3 {
        let server = RedisServer::start(&[]).await;
        server.wait_ready(&server.url()).await;
        servers.push(server);
    }
    let configs: Vec<RedisConfig> = servers
        .iter()
        .map(|s| {
            RedisConfig::from_url(&s.url())
                .unwrap()
                .with_connect_timeout(Duration::from_millis(300))
                .with_response_timeout(Duration::from_millis(300))
        })
        .collect();
    let quorum = QuorumStore::connect(configs.clone()).await.unwrap();
    assert_eq!(quorum.majority(), 2);
    let locker = quorum.locker();
    let other = QuorumStore::connect(configs.clone())
        .await
        .unwrap()
        .locker();
    let ttl = Duration::from_millis(900);
    let auto = LockOptions::new().with_ttl(ttl);

    let first = locker.try_lock("q", &auto).await.unwrap().unwrap();
    assert!(other.try_lock("q", &auto).await.unwrap().is_none());
    let info = other.info("q").await.unwrap().expect("held on a majority");
    assert_eq!(info.token(), Some(first.token()));
    let mut last = first.token();
    first.release().await.unwrap();

    // One server down: everything still works on the other two.
    servers[0].kill();
    let held = locker.try_lock("q", &auto).await.unwrap().expect("2 of 3");
    assert!(held.token() > last, "token {} after {last}", held.token());
    last = held.token();
    assert!(other.try_lock("q", &auto).await.unwrap().is_none());
    // Auto refresh keeps it across several TTLs with one server dead.
    tokio::time::sleep(ttl * 3).await;
    assert!(!held.is_lost(), "renewed by 2 of 3");
    assert!(other.try_lock("q", &auto).await.unwrap().is_none());
    held.release().await.unwrap();
    // Waiting works: the wake-up comes from the live servers.
    let holder = locker.try_lock("q", &auto).await.unwrap().unwrap();
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .lock(
                    "q",
                    &LockOptions::new().with_ttl(ttl).with_wait_timeout(SOON),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(holder.token() > last);
    last = holder.token();
    holder.release().await.unwrap();
    let next = within("waiter with one server dead", SOON * 2, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(next.token() > last);

    // Two down: the held lock cannot be renewed and is lost; no grant.
    servers[1].kill();
    within("lost without a majority", SOON + ttl, next.lost()).await;
    match other.try_lock("q", &auto).await {
        Err(error) => assert!(error.is_transient(), "{error}"),
        Ok(granted) => panic!("granted without a majority: {:?}", granted.is_some()),
    }
    // A quorum cannot even start with one of three servers.
    match QuorumStore::connect(configs).await {
        Err(error) => assert!(error.is_transient(), "{error}"),
        Ok(_) => panic!("a quorum started with one of three servers"),
    }
}
