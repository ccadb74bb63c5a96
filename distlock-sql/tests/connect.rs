//! Connecting: the URL's `application_name` reaches PostgreSQL, and a refused
//! connection is reported at once, with its cause and the server's address
//! (never the password), instead of a "pool timed out" after the acquire timeout.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::error::Error as _;
use std::time::{Duration, Instant};

use distlock_core::{Error, Handler, LockOptions};
use distlock_sql::SqlStore;
use sqlx::Connection;

/// Clients of PostgreSQL named `name` (pg_stat_activity, seen from another session).
async fn clients_named(url: &str, name: &str) -> i64 {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_application_name_from_the_url_reaches_the_server() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let name = format!("distlock-app-{:08x}", fastrand::u32(..));
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = SqlStore::connect(&format!("{url}{sep}application_name={name}"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // The pool keeps the connection it used.
    let lock = store
        .locker()
        .try_lock(&name, &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap();
    assert!(
        clients_named(&url, &name).await >= 1,
        "no connection of the store is named `{name}`"
    );
    lock.release().await.unwrap();
    store.close().await;

    // Without the option: `distlock`.
    let store = SqlStore::connect(&url).await.unwrap();
    assert!(clients_named(&url, "distlock").await >= 1);
    store.close().await;
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Every message of an error and its sources.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(" | ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

async fn refused_at_once(scheme: &str) {
    let port = closed_port();
    let url = format!("{scheme}://user:hunter2@127.0.0.1:{port}/db");
    let started = Instant::now();
    let error = match SqlStore::connect(&url).await {
        Ok(_) => panic!("{scheme}: connected to a closed port"),
        Err(error) => error,
    };
    let took = started.elapsed();
    let text = chain(&error);
    assert!(
        matches!(error, Error::Unavailable { .. }),
        "{scheme}: {error:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "{scheme}: took {took:?} to report {text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("refused"),
        "{scheme}: the cause is missing: {text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "{scheme}: the server is not named: {text}"
    );
    assert!(!text.contains("hunter2"), "{scheme}: {text}");
    assert!(
        !format!("{error:?}").contains("hunter2"),
        "{scheme}: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refused_connection_is_reported_at_once_with_its_cause() {
    refused_at_once("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_refused_connection_is_reported_at_once_with_its_cause() {
    refused_at_once("mysql").await;
}
