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

#[cfg(feature = "dynamo")]
mod dynamo {
    use super::UrlFixture;

    /// A table of its own for each test, created on connect (`create=true`):
    /// the emulator copies a table for every transaction, so a small table
    /// keeps renewals quick while the other suites run.
    async fn fixture() -> Option<UrlFixture> {
        let url = distlock::conformance::service_url("DISTLOCK_DYNAMO_URL")?;
        let (_, rest) = url.split_once("://").expect("a dynamodb:// URL");
        let query = rest.split_once('?').map_or("", |(_, query)| query);
        let table = format!("facade-{:016x}", fastrand::u64(..));
        let mut url = format!("dynamodb://{table}?{query}");
        if !url.contains("create=") {
            url.push_str("&create=true");
        }
        Some(UrlFixture { url, _dir: None })
    }

    distlock::conformance_suite!(fixture());
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
