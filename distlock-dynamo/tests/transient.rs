//! Throttling, server errors and broken connections, injected by a proxy in
//! front of the emulator: retried where that is safe, and reported by meaning.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::time::Duration;

use common::proxy::{Fault, Proxy};
use distlock_core::{Error, Handler, Infoer, LockOptions, RefreshRequest, Refreshed, Store};
use distlock_dynamo::{DynamoConfig, DynamoStore};

const SKEW: Duration = Duration::from_millis(250);

/// A store on a fresh table, reached through a fault-injecting proxy.
async fn proxied(attempts: u32) -> Option<(Proxy, DynamoStore, DynamoConfig)> {
    let url = common::url()?;
    let direct = common::config(&url, SKEW);
    common::store(direct.clone()).await;
    let upstream = url::Url::parse(
        direct
            .endpoint
            .as_deref()
            .expect("the URL names an endpoint"),
    )
    .unwrap()
    .socket_addrs(|| None)
    .unwrap()[0];
    let proxy = Proxy::start(upstream).await;
    let config = direct
        .clone()
        .with_endpoint(proxy.endpoint())
        .with_max_attempts(attempts);
    let store = DynamoStore::connect_with(config).await.expect("connect");
    Some((proxy, store, direct))
}

fn options() -> LockOptions {
    LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_and_dropped_connections_are_retried() {
    let Some((proxy, store, _)) = proxied(4).await else {
        return;
    };
    let locker = store.locker();
    let before = proxy.seen();
    proxy.inject(&[
        Fault::Throttle,
        Fault::ServerError,
        Fault::DropBeforeForward,
    ]);
    let lock = locker
        .try_lock("retried", &options())
        .await
        .expect("retried until it went through")
        .expect("free");
    assert_eq!(
        proxy.seen() - before,
        4,
        "three faults, then the real request"
    );
    assert_eq!(proxy.pending(), 0);

    // A renewal and a release go through faults too.
    proxy.inject(&[Fault::ServerError]);
    let renewed = store
        .refresh(&[RefreshRequest::new(
            "retried",
            lock.key(),
            Duration::from_secs(30),
        )])
        .await
        .expect("refresh retried");
    assert_eq!(renewed, vec![Refreshed::Renewed]);
    proxy.inject(&[Fault::Throttle, Fault::DropBeforeForward]);
    lock.release().await.expect("release retried");
    assert!(locker.info("retried").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_acquire_whose_answer_was_lost_is_still_granted_once() {
    let Some((proxy, store, direct)) = proxied(3).await else {
        return;
    };
    let locker = store.locker();
    // The put reaches the store and is applied; its answer is lost; the SDK
    // retries, the condition fails, and the failure shows our own lease.
    let forwarded = proxy.forwarded.load(std::sync::atomic::Ordering::SeqCst);
    proxy.inject(&[Fault::DropAfterForward]);
    let lock = locker
        .try_lock("lost-answer", &options())
        .await
        .expect("acquire")
        .expect("granted, not 'held by someone' (that someone is us)");
    assert_eq!(
        proxy.forwarded.load(std::sync::atomic::Ordering::SeqCst) - forwarded,
        2
    );
    let other = DynamoStore::connect_with(direct).await.unwrap().locker();
    let info = other.info("lost-answer").await.unwrap().expect("held");
    assert_eq!(info.holders.len(), 1, "one grant, not two");
    assert_eq!(info.token(), Some(lock.token()));
    assert!(
        other
            .try_lock("lost-answer", &options())
            .await
            .unwrap()
            .is_none()
    );
    lock.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_release_whose_answer_was_lost_is_outcome_unknown() {
    let Some((proxy, store, _)) = proxied(3).await else {
        return;
    };
    let locker = store.locker();
    let lock = locker
        .try_lock("lost-release", &options())
        .await
        .unwrap()
        .unwrap();
    proxy.inject(&[Fault::DropAfterForward]);
    match lock.release().await {
        Err(error @ Error::OutcomeUnknown { .. }) => assert!(error.is_transient()),
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert!(
        locker.info("lost-release").await.unwrap().is_none(),
        "the release was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_past_the_attempts_is_a_transient_error() {
    let Some((proxy, store, _)) = proxied(2).await else {
        return;
    };
    let locker = store.locker();
    let before = proxy.seen_of("PutItem");
    proxy.inject(&[Fault::Throttle; 2]);
    match locker.try_lock("throttled", &options()).await {
        Err(error @ Error::Unavailable { .. }) => {
            assert!(error.is_transient());
            assert!(
                distlock_core::error_chain(&error).contains("ProvisionedThroughputExceeded"),
                "{error}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // (A throttled request may have been applied as far as the locker knows:
    // it releases the key in the background, an UpdateItem not counted here.)
    assert_eq!(proxy.seen_of("PutItem") - before, 2, "max_attempts = 2");
    // Nothing was applied: the resource is free.
    let lock = locker.try_lock("throttled", &options()).await.unwrap();
    lock.expect("free").release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_not_retried() {
    let Some((proxy, store, _)) = proxied(3).await else {
        return;
    };
    let mut config = store.config().clone();
    config.table = "no-such-table".into();
    // The table check of connect_with would catch it: build the store over the
    // proxied client without it.
    let missing = DynamoStore::from_client(store.client(), config).unwrap();
    let before = proxy.seen();
    match missing.locker().try_lock("x", &options()).await {
        Err(error @ Error::Store { .. }) => {
            assert!(!error.is_transient());
            let text = distlock_core::error_chain(&error);
            assert!(text.contains("create_table"), "{text}");
        }
        other => panic!("expected a Store error, got {other:?}"),
    }
    assert_eq!(proxy.seen() - before, 1, "not retried");
    match missing.check_table().await {
        Err(Error::Store { .. }) => {}
        other => panic!("check_table: expected a Store error, got {other:?}"),
    }
}
