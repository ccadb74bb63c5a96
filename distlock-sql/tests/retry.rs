//! Serialization failures (SQLSTATE 40001) are retried: injected by a trigger
//! that raises 40001 on the token table for the next N statements, then for
//! real under `SERIALIZABLE` with many clients racing for one resource.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::time::Duration;

use distlock_core::{Error, Handler, Infoer, LockOptions};
use distlock_sql::{SqlConfig, SqlStore, TableName};
use sqlx::{AssertSqlSafe, PgPool};

async fn setup(url: &str) -> (SqlStore, PgPool, String) {
    let table = format!("retry_{:08x}", fastrand::u32(..));
    let store = SqlStore::connect_with(
        SqlConfig::from_url(url)
            .unwrap()
            .with_table(TableName::new(&table).unwrap()),
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    let admin = PgPool::connect(url).await.expect("admin connection");
    (store, admin, table)
}

/// Make the next `n` writes of the token table fail with SQLSTATE 40001.
async fn inject(admin: &PgPool, table: &str, n: u32) {
    for sql in [
        format!("DROP TRIGGER IF EXISTS {table}_inject ON {table}_tokens"),
        format!("DROP SEQUENCE IF EXISTS {table}_inject"),
        format!("CREATE SEQUENCE {table}_inject"),
        format!(
            "CREATE OR REPLACE FUNCTION {table}_inject() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF nextval('{table}_inject') <= {n} THEN \
             RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001'; \
             END IF; RETURN NEW; END $$"
        ),
        format!(
            "CREATE TRIGGER {table}_inject BEFORE INSERT OR UPDATE ON {table}_tokens \
             FOR EACH ROW EXECUTE FUNCTION {table}_inject()"
        ),
    ] {
        sqlx::query(AssertSqlSafe(sql))
            .execute(admin)
            .await
            .expect("inject");
    }
}

async fn cleanup(admin: &PgPool, table: &str) {
    for suffix in ["", "_tokens", "_jobs", "_inject"] {
        let kind = if suffix == "_inject" {
            "SEQUENCE"
        } else {
            "TABLE"
        };
        let _ = sqlx::query(AssertSqlSafe(format!(
            "DROP {kind} IF EXISTS {table}{suffix} CASCADE"
        )))
        .execute(admin)
        .await;
    }
    let _ = sqlx::query(AssertSqlSafe(format!(
        "DROP FUNCTION IF EXISTS {table}_inject()"
    )))
    .execute(admin)
    .await;
}

#[tokio::test]
async fn injected_40001_is_retried_until_it_succeeds() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let (store, admin, table) = setup(&url).await;
    let locker = store.locker();
    let options = LockOptions::new().manual_refresh();
    inject(&admin, &table, 3).await;
    let before = store.serialization_retries();
    let lock = locker
        .try_lock("job/a", &options)
        .await
        .expect("granted after the injected conflicts")
        .expect("free");
    assert_eq!(
        store.serialization_retries() - before,
        3,
        "three conflicts, three retries"
    );
    assert!(lock.token() > 0);
    lock.release().await.expect("release");
    cleanup(&admin, &table).await;
}

#[tokio::test]
async fn endless_40001_is_a_transient_error_and_holds_nothing() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let (store, admin, table) = setup(&url).await;
    let locker = store.locker();
    inject(&admin, &table, 1_000_000).await;
    let started = std::time::Instant::now();
    match locker.try_lock("job/b", &LockOptions::new()).await {
        Err(error @ Error::Unavailable { .. }) => {
            assert!(error.is_transient());
            assert!(chain(&error).contains("injected"), "{error}");
        }
        other => panic!("expected Unavailable after the retries ran out, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retries are bounded"
    );
    assert!(store.serialization_retries() >= 5);
    sqlx::query(AssertSqlSafe(format!(
        "DROP TRIGGER {table}_inject ON {table}_tokens"
    )))
    .execute(&admin)
    .await
    .unwrap();
    assert!(
        locker.info("job/b").await.unwrap().is_none(),
        "nothing was granted"
    );
    cleanup(&admin, &table).await;
}

/// Real conflicts: every transaction SERIALIZABLE, 16 clients on one resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_races_grant_exactly_one() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options=-c%20default_transaction_isolation%3Dserializable");
    let (store, admin, table) = setup(&url).await;
    let mut total_retries = 0;
    for round in 0..20 {
        let resource = format!("race/{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let locker = store.locker();
            let resource = resource.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                locker
                    .try_lock(&resource, &LockOptions::new().manual_refresh())
                    .await
                    .expect("try_lock")
                    .map(|lock| lock.detach())
            }));
        }
        let mut granted = 0;
        for task in tasks {
            granted += usize::from(task.await.unwrap().is_some());
        }
        assert_eq!(granted, 1, "round {round}");
        total_retries = store.serialization_retries();
    }
    eprintln!("serializable races: {total_retries} serialization failures retried");
    cleanup(&admin, &table).await;
}

/// The error and its causes, as a reporter walking `source()` shows them.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
