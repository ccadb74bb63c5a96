//! A server that accepts a call but does not answer (here: a row lock held by
//! another transaction) fails the call within the call timeout, as a transient
//! error, and leaves no late grant behind (the server gives up first).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::time::{Duration, Instant};

use distlock_core::{Handler, Infoer, LockOptions};
use distlock_sql::{SqlConfig, SqlStore, TableName};
use sqlx::{AssertSqlSafe, Connection};

/// Hold a row lock from another transaction until the returned sender fires.
async fn hold(url: &str, sql: String) -> tokio::sync::oneshot::Sender<()> {
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let url = url.to_owned();
    tokio::spawn(async move {
        if url.starts_with("mysql") {
            let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.await;
            tx.rollback().await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.await;
            tx.rollback().await.unwrap();
        }
    });
    locked_rx.await.unwrap();
    release_tx
}

async fn blocked_acquire_times_out(url: &str) {
    let table = "timeouts";
    let store = SqlStore::connect_with(
        SqlConfig::from_url(url)
            .unwrap()
            .with_table(TableName::new(table).unwrap())
            .with_call_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let locker = store.locker();
    let r = format!("slow-{:08x}", fastrand::u32(..));
    let options = LockOptions::new().manual_refresh();
    // Create the token row, then hold its lock from another transaction.
    locker
        .try_lock(&r, &options)
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
    let release = hold(
        url,
        format!("SELECT 1 FROM {table}_tokens WHERE resource = '{r}' FOR UPDATE"),
    )
    .await;
    let started = Instant::now();
    let error = locker.try_lock(&r, &options).await.expect_err("blocked");
    let waited = started.elapsed();
    assert!(error.is_transient(), "{error}");
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
    release.send(()).unwrap();
    // Nothing was granted late: the resource is free.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        locker.info(&r).await.unwrap().is_none(),
        "a late grant was left behind"
    );
    locker
        .try_lock(&r, &options)
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blocked_call_times_out() {
    if let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") {
        blocked_acquire_times_out(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_blocked_call_times_out() {
    if let Some(url) = distlock_core::conformance::service_url("DISTLOCK_MYSQL_URL") {
        blocked_acquire_times_out(&url).await;
    }
}
