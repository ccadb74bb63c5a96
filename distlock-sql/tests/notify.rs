//! PostgreSQL LISTEN/NOTIFY waiters: a subscription is armed when
//! `subscribe` returns, a release wakes it, and a dropped LISTEN connection
//! wakes everyone (then the listener reconnects).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::time::Duration;

use distlock_core::{Handler, LockOptions, Store};
use distlock_sql::{SqlConfig, SqlStore, TableName};

const SOON: Duration = Duration::from_secs(10);

async fn store(url: &str, table: &str) -> SqlStore {
    let store = SqlStore::connect_with(
        SqlConfig::from_url(url)
            .unwrap()
            .with_table(TableName::new(table).unwrap())
            .with_max_connections(2),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_subscription_armed_on_return() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let holder = store(&url, "notify_wake").await;
    let waiter = store(&url, "notify_wake").await;
    assert!(waiter.capabilities().push_wakeup);
    let r = format!("notify-{:08x}", fastrand::u32(..));
    let lock = holder
        .locker()
        .try_lock(&r, &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap();
    for round in 0..5 {
        let other = format!("{r}-other");
        let wakeup = waiter.subscribe(&r).await.unwrap().expect("push wake-up");
        let unrelated = waiter
            .subscribe(&other)
            .await
            .unwrap()
            .expect("push wake-up");
        // Nothing is awaited between subscribe and release: the subscription
        // must already be armed.
        if round == 4 {
            lock.release().await.unwrap();
        } else {
            let relock = holder
                .locker()
                .try_lock(
                    &format!("{r}-{round}"),
                    &LockOptions::new().manual_refresh(),
                )
                .await
                .unwrap()
                .unwrap();
            relock.release().await.unwrap();
            // A release of another resource does not wake this one.
            assert!(
                tokio::time::timeout(Duration::from_millis(100), wakeup)
                    .await
                    .is_err(),
                "woken by another resource's release"
            );
            drop(unrelated);
            continue;
        }
        tokio::time::timeout(SOON, wakeup)
            .await
            .expect("the release woke the waiter");
        drop(unrelated);
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_wakes_waiters_and_reconnects() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let holder = store(&url, "notify_lost").await;
    let waiter = store(&url, "notify_lost").await;
    let r = format!("notify-{:08x}", fastrand::u32(..));
    let wakeup = waiter.subscribe(&r).await.unwrap().expect("push wake-up");
    // Kill every LISTEN connection on this table's channel (this test's and
    // any other's: they all reconnect).
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN \"notify_lost\"' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "found the LISTEN connection");
    tokio::time::timeout(SOON, wakeup)
        .await
        .expect("waiters are woken when the LISTEN connection drops");
    // After reconnecting, releases wake waiters again.
    let lock = holder
        .locker()
        .try_lock(&r, &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap();
    let wakeup = tokio::time::timeout(SOON, waiter.subscribe(&r))
        .await
        .expect("subscribe after a reconnect")
        .unwrap()
        .expect("push wake-up");
    lock.release().await.unwrap();
    tokio::time::timeout(SOON, wakeup)
        .await
        .expect("woken after the reconnect");
}
