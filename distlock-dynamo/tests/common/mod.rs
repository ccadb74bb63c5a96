//! What the test files share: the emulator's URL, fresh tables, a fault proxy.
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::time::Duration;

pub(crate) mod proxy;

use distlock_dynamo::{DynamoConfig, DynamoStore};

/// `DISTLOCK_DYNAMO_URL` (loud skip locally, panic under CI), with the
/// credentials `scripts/services up dynamo` exports next to it: without them
/// the test fails at once with one line naming the variables, instead of
/// every request failing through the whole AWS credential chain (profile
/// files, SSO, instance metadata).
pub(crate) fn url() -> Option<String> {
    let url = distlock_core::conformance::service_url("DISTLOCK_DYNAMO_URL")?;
    let missing: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .into_iter()
        .filter(|var| std::env::var_os(var).is_none_or(|v| v.is_empty()))
        .collect();
    if !missing.is_empty() && std::env::var_os("AWS_PROFILE").is_none() {
        panic!(
            "DISTLOCK_DYNAMO_URL is set but {} {} not: set them as `scripts/services up dynamo` \
             prints (eval \"$(scripts/services up dynamo)\"; any values work with the emulator)",
            missing.join(" and "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
    Some(url)
}

/// A fresh table name. Each test gets its own table: moto's
/// `TransactWriteItems` deep-copies the whole table for its rollback (slow on
/// big tables), is not thread-safe (HTTP 500 under concurrent writes) and a
/// rollback restores the whole table, undoing other clients' concurrent writes.
/// Separate tables keep one test's transactions from touching another's items.
pub(crate) fn table() -> String {
    format!(
        "distlock-test-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// The config the URL names, on a fresh table, with `skew` as the clock-skew
/// allowance.
pub(crate) fn config(url: &str, skew: Duration) -> DynamoConfig {
    let mut config = DynamoConfig::from_url(url).expect("DISTLOCK_DYNAMO_URL is a dynamodb:// URL");
    config.table = table();
    config.with_clock_skew(skew)
}

/// A store on the config's table (created if needed).
pub(crate) async fn store(config: DynamoConfig) -> DynamoStore {
    DynamoStore::connect_with(config.with_create_table(true))
        .await
        .expect("connect (creating the table)")
}
