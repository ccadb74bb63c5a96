//! Clock skew does not decide who holds a lock: the database clock does.
//!
//! The client sends only durations (TTLs); every "now" is read by the SQL
//! (`clock_timestamp()`, `SYSDATE(6)`, `unixepoch('subsec')`). MySQL/MariaDB
//! lets a session move its own clock (`SET timestamp = …` changes `NOW()`),
//! which is exactly a client with a skewed clock: those clients must neither
//! steal a held lock (clock ahead) nor keep a lease past its real expiry
//! (clock behind). PostgreSQL sessions cannot move `clock_timestamp()`; there
//! the test checks that grant and expiry times are the server's.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::time::{Duration, Instant, SystemTime};

use distlock_core::{Handler, Infoer, LockOptions};
use distlock_sql::{SqlConfig, SqlStore, TableName, mysql_pool_options};
use futures_util::FutureExt;
use sqlx::{AssertSqlSafe, Executor};

fn options(url: &str) -> SqlConfig {
    SqlConfig::from_url(url)
        .unwrap()
        .with_table(TableName::new("clock_skew").unwrap())
        .with_max_connections(2)
}

/// A MySQL client whose session clock (`NOW()`) is `offset_s` seconds off.
async fn skewed_mysql(url: &str, offset_s: i64) -> SqlStore {
    let pool = mysql_pool_options(&options(url))
        .after_connect(move |conn, _| {
            async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                conn.execute("SET time_zone = '+00:00'").await?;
                conn.execute(AssertSqlSafe(format!(
                    "SET timestamp = UNIX_TIMESTAMP(SYSDATE(6)) + ({offset_s})"
                )))
                .await?;
                Ok(())
            }
            .boxed()
        })
        .connect(url)
        .await
        .expect("connect a skewed client");
    let skew: f64 = sqlx::query_scalar(
        "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) - UNIX_TIMESTAMP(SYSDATE(6)) AS DOUBLE)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        (skew - offset_s as f64).abs() < 5.0,
        "the session clock is {skew} s off, expected {offset_s}"
    );
    SqlStore::from_mysql_pool(pool, TableName::new("clock_skew").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_session_clock_skew_changes_nothing() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_MYSQL_URL") else {
        return;
    };
    let honest = SqlStore::connect_with(options(&url)).await.unwrap();
    honest.migrate().await.unwrap();
    let honest = honest.locker();
    let ahead = skewed_mysql(&url, 3600).await.locker();
    let behind = skewed_mysql(&url, -3600).await.locker();
    let r = format!("skew-{:08x}", fastrand::u32(..));

    // A client an hour ahead cannot take a lock held for 30 s.
    let held = honest
        .try_lock(
            &format!("{r}/a"),
            &LockOptions::new().with_ttl(Duration::from_secs(30)),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        ahead
            .try_lock(&format!("{r}/a"), &LockOptions::new())
            .await
            .unwrap()
            .is_none(),
        "a client with a clock one hour ahead stole a held lock"
    );
    held.release().await.unwrap();
    assert!(
        ahead
            .try_lock(&format!("{r}/a"), &LockOptions::new())
            .await
            .unwrap()
            .is_some()
    );

    // A client an hour behind holds a 500 ms lease for 500 ms, not an hour
    // longer, and no shorter either.
    let ttl = Duration::from_millis(500);
    let started = Instant::now();
    let lease = behind
        .try_lock(
            &format!("{r}/b"),
            &LockOptions::new().with_ttl(ttl).manual_refresh(),
        )
        .await
        .unwrap()
        .unwrap();
    let info = honest.info(&format!("{r}/b")).await.unwrap().unwrap();
    let expires = info.expire_time().unwrap();
    let gap = expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    assert!(
        gap <= ttl,
        "expiry is {gap:?} away: written with a skewed clock"
    );
    let taken = loop {
        if let Some(lock) = honest
            .try_lock(&format!("{r}/b"), &LockOptions::new().manual_refresh())
            .await
            .unwrap()
        {
            break lock;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        started.elapsed() >= ttl - Duration::from_millis(20),
        "expired early"
    );
    assert!(taken.token() > lease.token());
    assert!(lease.is_lost(), "the old holder's lost signal fired first");
}

#[tokio::test]
async fn postgres_times_are_the_servers() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let store = SqlStore::connect_with(options(&url)).await.unwrap();
    store.migrate().await.unwrap();
    let locker = store.locker();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let server_us = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let r = format!("skew-{:08x}", fastrand::u32(..));
    let before = server_us().await;
    let lock = locker
        .try_lock(&r, &LockOptions::new().with_ttl(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let after = server_us().await;
    let info = locker.info(&r).await.unwrap().unwrap();
    let micros = |t: SystemTime| {
        i64::try_from(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap()
    };
    let acquired = micros(info.lock_time().unwrap());
    let expires = micros(info.expire_time().unwrap());
    assert!(
        (before..=after).contains(&acquired),
        "grant time is the server's"
    );
    assert_eq!(
        expires - acquired,
        10_000_000,
        "expiry = server grant time + TTL"
    );
    lock.release().await.unwrap();
}
