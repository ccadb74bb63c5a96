//! The fixture shared by the SQL conformance suites.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::{Connector, Locker, Store};
use distlock_sql::{SqlConfig, SqlConnector, SqlStore, TableName};

pub struct SqlFixture {
    pub url: String,
    pub config: SqlConfig,
    pub store: SqlStore,
    pub bad_urls: Vec<String>,
    pub unreachable: Option<String>,
    /// Keeps a SQLite file alive.
    pub _dir: Option<tempfile::TempDir>,
}

impl SqlFixture {
    /// Connect, migrate the table, and describe the URLs to check.
    pub async fn connect(url: &str, table: &str) -> SqlFixture {
        // Small pools: the suite opens a new client (pool) for every locker.
        let config = SqlConfig::from_url(url)
            .expect("a test URL")
            .with_table(TableName::new(table).expect("table name"))
            .with_max_connections(4);
        let store = SqlStore::connect_with(config.clone())
            .await
            .unwrap_or_else(|e| panic!("connect to the {table} test database: {e}"));
        store.migrate().await.expect("migrate");
        let scheme = url.split("://").next().unwrap_or("postgres").to_owned();
        let bad_urls = vec![
            format!("{scheme}://user:hunter2@127.0.0.1:1/db?table=Bad-Name"),
            format!("{scheme}://user:hunter2@127.0.0.1:1/db?table=x;drop"),
            format!("{scheme}://user:hunter2@127.0.0.1:1/db?max_connections=lots"),
            format!("{scheme}://user:hunter2@127.0.0.1:1/db?migrate=perhaps"),
            format!("{scheme}://user:hunter2@[::1"),
        ];
        let unreachable = Some(format!("{scheme}://user:hunter2@127.0.0.1:1/db"));
        SqlFixture {
            url: url.to_owned(),
            config,
            store,
            bad_urls,
            unreachable,
            _dir: None,
        }
    }

    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> SqlFixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/locks.db", dir.path().display());
        let mut fixture = Self::connect(&url, "distlock").await;
        fixture.bad_urls = vec![
            format!("sqlite://{}/x.db?table=Bad-Name", dir.path().display()),
            format!("sqlite://{}/x.db?migrate=perhaps", dir.path().display()),
            format!(
                "sqlite://{}/x.db?dialect=cockroach&password=hunter2",
                dir.path().display()
            ),
        ];
        fixture.unreachable = None;
        fixture._dir = Some(dir);
        fixture
    }
}

#[async_trait]
impl Fixture for SqlFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        let store = SqlStore::connect_with(self.config.clone())
            .await
            .expect("connect a new client");
        Arc::new(store.locker())
    }

    async fn expire(&self, resource: &str) {
        // The operator's force release: the one hook that ends leases behind
        // their holders' backs.
        Store::evict(&self.store, resource).await.expect("evict");
    }

    fn connector(&self) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(SqlConnector))
    }

    fn bad_urls(&self) -> Vec<String> {
        self.bad_urls.clone()
    }

    fn unreachable_url(&self) -> Option<String> {
        self.unreachable.clone()
    }
}
