//! The mutex fast path: a grant is one `PutItem` on a free item, a release one
//! `PutItem` that leaves the item free with its fence; items in other shapes
//! (user attributes added behind the lease) still release, keep what they
//! carry, and are acquired again with a greater token.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use distlock_core::{Handler, Infoer, LockOptions};
use distlock_dynamo::DynamoStore;

const SKEW: Duration = Duration::from_millis(250);

fn options() -> LockOptions {
    LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh()
}

/// The item of `resource` as the table has it (it stays after a release).
async fn stored(
    store: &DynamoStore,
    table: &str,
    hash_key: &str,
    resource: &str,
) -> HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(table)
        .key(hash_key, AttributeValue::S(resource.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the item stays after release")
}

#[tokio::test]
async fn a_mutex_cycle_is_one_request_each_way_and_leaves_the_fence() {
    let Some(url) = common::url() else { return };
    let config = common::config(&url, SKEW);
    let (table, hash_key) = (config.table.clone(), config.hash_key.clone());
    let store = common::store(config).await;
    let locker = store.locker();

    let mut last_token = 0;
    for round in 0..3 {
        let before = store.requests_sent();
        let lock = locker
            .try_lock("fast/one", &options())
            .await
            .unwrap()
            .expect("free");
        assert_eq!(store.requests_sent() - before, 1, "round {round}: acquire");
        assert!(lock.token() > last_token, "round {round}: tokens increase");
        last_token = lock.token();

        let before = store.requests_sent();
        lock.release().await.unwrap();
        assert_eq!(store.requests_sent() - before, 1, "round {round}: release");

        let item = stored(&store, &table, &hash_key, "fast/one").await;
        assert_eq!(
            item.get("dl_fence").and_then(|f| f.as_n().ok()),
            Some(&last_token.to_string()),
            "round {round}: the free item keeps the fence: {item:?}"
        );
        assert!(!item.contains_key("dl_holders"), "free: {item:?}");
    }
    assert!(locker.info("fast/one").await.unwrap().is_none());
    assert!(locker.list("fast/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_mutex_with_user_attributes_releases_by_entry_and_keeps_them() {
    let Some(url) = common::url() else { return };
    let config = common::config(&url, SKEW);
    let (table, hash_key) = (config.table.clone(), config.hash_key.clone());
    let store = common::store(config).await;
    let locker = store.locker();

    let lock = locker
        .try_lock("fast/attrs", &options())
        .await
        .unwrap()
        .expect("free");
    // User attributes arrive behind the lease (as the lease-pool API sets them).
    store
        .client()
        .update_item()
        .table_name(&table)
        .key(&hash_key, AttributeValue::S("fast/attrs".to_owned()))
        .update_expression("SET dl_attrs = :t, colour = :c")
        .expression_attribute_values(":t", AttributeValue::Bool(true))
        .expression_attribute_values(":c", AttributeValue::S("blue".to_owned()))
        .send()
        .await
        .unwrap();
    let first = lock.token();
    let before = store.requests_sent();
    lock.release().await.unwrap();
    assert_eq!(
        store.requests_sent() - before,
        2,
        "the put is refused, the entry is removed"
    );
    let item = stored(&store, &table, &hash_key, "fast/attrs").await;
    assert_eq!(
        item.get("colour")
            .and_then(|c| c.as_s().ok())
            .map(String::as_str),
        Some("blue"),
        "user attributes survive the release: {item:?}"
    );
    assert!(locker.info("fast/attrs").await.unwrap().is_none());

    let again = locker
        .try_lock("fast/attrs", &options())
        .await
        .unwrap()
        .expect("free again");
    assert!(again.token() > first);
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_release_by_key_from_another_client_still_ends_the_lease() {
    let Some(url) = common::url() else { return };
    let config = common::config(&url, SKEW);
    let store = common::store(config.clone()).await;
    let other = common::store(config).await;
    let lock = store
        .locker()
        .try_lock("fast/other", &options())
        .await
        .unwrap()
        .expect("free");
    // The other client never granted it, so it does not know the token.
    other
        .locker()
        .release("fast/other", lock.key())
        .await
        .expect("the lease ends");
    assert!(store.locker().info("fast/other").await.unwrap().is_none());
    let next = other
        .locker()
        .try_lock("fast/other", &options())
        .await
        .unwrap()
        .expect("free");
    assert!(next.token() > lock.token());
    next.release().await.unwrap();
    lock.detach();
}
