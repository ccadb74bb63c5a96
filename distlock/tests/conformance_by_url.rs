//! The whole conformance suite through the front door, on every backend this
//! build has: each locker comes from `distlock::connect(URL)` (URLs from the
//! variables `scripts/services up` prints), and a lease is ended behind its
//! holder's back with the operator's `force_release`. A loud skip when a
//! variable is unset; with `CI` set, a failure.
#![cfg(feature = "conformance")]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code

use std::sync::Arc;

use distlock::Locker;
use distlock::conformance::{Fixture, service_url};

struct UrlFixture {
    url: String,
    /// Keeps a SQLite database file alive for the test.
    _dir: Option<tempfile::TempDir>,
}

#[async_trait::async_trait]
impl Fixture for UrlFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        distlock::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect: {}", distlock::error_chain(&e)))
    }

    async fn expire(&self, resource: &str) {
        self.locker()
            .await
            .force_release(resource)
            .await
            .unwrap_or_else(|e| panic!("force release: {}", distlock::error_chain(&e)));
    }
}

/// The store `var` names, through `distlock::connect`.
#[allow(dead_code)]
async fn from_env(var: &str) -> Option<UrlFixture> {
    let url = service_url(var)?;
    Some(UrlFixture { url, _dir: None })
}

#[cfg(feature = "redis")]
mod redis {
    distlock::conformance_suite!(super::from_env("DISTLOCK_REDIS_URL"));
}

#[cfg(feature = "postgres")]
mod postgres {
    distlock::conformance_suite!(super::from_env("DISTLOCK_POSTGRES_URL"));
}

#[cfg(feature = "mysql")]
mod mysql {
    distlock::conformance_suite!(super::from_env("DISTLOCK_MYSQL_URL"));
}

#[cfg(feature = "etcd")]
mod etcd {
    distlock::conformance_suite!(super::from_env("DISTLOCK_ETCD_URL"));
}

/// DynamoDB's whole suite runs in its own crate, with the emulator-tuned
/// settings it needs (the emulator serializes every request and copies a table
/// per transaction: a second copy of the suite beside the others makes its
/// renewals take longer than the TTLs the cases use). Here: the front door
/// reaches it, and a lock taken through it behaves.
#[cfg(feature = "dynamo")]
mod dynamo {
    use distlock::LockOptions;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_lock_inspect_and_force_release_through_the_facade() {
        let Some(url) = distlock::conformance::service_url("DISTLOCK_DYNAMO_URL") else {
            return;
        };
        let url = if url.contains("create=") {
            url
        } else {
            format!("{url}&create=true")
        };
        let locker = distlock::connect(&url).await.expect("connect");
        let other = distlock::connect(&url).await.expect("connect");
        let resource = format!("facade-{:016x}", fastrand::u64(..));
        let lock = locker
            .lock(&resource, &LockOptions::new())
            .await
            .expect("lock");
        assert!(
            other
                .try_lock(&resource, &LockOptions::new())
                .await
                .expect("try_lock")
                .is_none()
        );
        let info = other.info(&resource).await.expect("info").expect("held");
        assert_eq!(info.token(), Some(lock.token()));
        assert_eq!(
            other.force_release(&resource).await.expect("force release"),
            1
        );
        let next = other
            .try_lock(&resource, &LockOptions::new())
            .await
            .expect("try_lock")
            .expect("free after the force release");
        assert!(next.token() > lock.token());
        next.release().await.expect("release");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::UrlFixture;

    /// A database file of its own for each test.
    async fn fixture() -> Option<UrlFixture> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("locks.db").display());
        Some(UrlFixture {
            url,
            _dir: Some(dir),
        })
    }

    distlock::conformance_suite!(fixture());
}
