//! The whole conformance suite against a DynamoDB emulator
//! (`eval "$(scripts/services up dynamo)"` sets `DISTLOCK_DYNAMO_URL`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::conformance::Fixture;
use distlock_core::{Connector, Locker, Store};
use distlock_dynamo::{DynamoConfig, DynamoConnector, DynamoStore};

/// The skew allowance the suite runs with; the suite's shortest TTL is three
/// times it (the backend minimum). The lost signal fires one allowance before
/// the TTL and the refresh interval is a third of it, so a renewal has one
/// allowance to come back: 250 ms was too short for moto on a loaded machine
/// (`auto_refresh_keeps_the_lock_across_many_ttls` lost its lock), 500 ms
/// (TTL 1.5 s) gives it twice that.
const SKEW: Duration = Duration::from_millis(500);

struct DynamoFixture {
    config: DynamoConfig,
    admin: DynamoStore,
}

#[async_trait]
impl Fixture for DynamoFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        // A new client, as another process would have.
        let store = DynamoStore::connect_with(self.config.clone())
            .await
            .expect("connect");
        Arc::new(store.locker())
    }

    async fn expire(&self, resource: &str) {
        self.admin.evict(resource).await.expect("evict");
    }

    fn connector(&self) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(DynamoConnector))
    }

    fn bad_urls(&self) -> Vec<String> {
        [
            "dynamodb://user:hunter2@locks?region=us-east-1",
            "dynamodb://locks?region=us-east-1&endpoint=http://admin:hunter2@127.0.0.1:1",
            "dynamodb://locks:8000",
            "dynamodb://locks/extra/path",
            "dynamodb://",
            "dynamodb://no?region=us-east-1",
            "dynamodb://bad%20table",
            "dynamodb://locks?colour=blue",
            "dynamodb://locks?create=perhaps",
            "dynamodb://locks?clock_skew_ms=-5",
            "dynamodb://locks?region=us%20east",
            "dynamodb://locks?endpoint=ftp://127.0.0.1:1",
            "dynamodb://[::1",
        ]
        .map(String::from)
        .to_vec()
    }

    fn unreachable_url(&self) -> Option<String> {
        Some("dynamodb://distlock?region=us-east-1&endpoint=http://127.0.0.1:1".to_owned())
    }
}

async fn fixture() -> Option<DynamoFixture> {
    let url = common::url()?;
    // One request per renewal: moto's TransactWriteItems copies the whole table
    // (about 3 s for a 100-lease transaction on the 1,000-item table of
    // `thousand_locks_at_once`), is not thread-safe, and its rollback undoes
    // other clients' concurrent writes. Transactions are tested in
    // tests/heartbeat.rs, on tables where moto copes.
    let config = common::config(&url, SKEW).with_batch_refresh(false);
    let admin = common::store(config.clone()).await;
    Some(DynamoFixture { config, admin })
}

distlock_core::conformance_suite!(fixture());
