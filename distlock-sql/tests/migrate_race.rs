//! `migrate()` raced by several processes (this test binary re-run as
//! children) and by several tasks with pools of their own, on a table that does
//! not exist yet: every call succeeds, the schema is created once, and it is
//! idempotent afterwards (tokens keep growing across a second migrate).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::time::Duration;

use distlock_core::{Handler, LockOptions};
use distlock_sql::{SqlConfig, SqlStore, TableName};

const CHILD_URL: &str = "DISTLOCK_MIGRATE_CHILD_URL";
const CHILD_TABLE: &str = "DISTLOCK_MIGRATE_CHILD_TABLE";

async fn store(url: &str, table: &str) -> SqlStore {
    SqlStore::connect_with(
        SqlConfig::from_url(url)
            .unwrap()
            .with_table(TableName::new(table).unwrap())
            .with_max_connections(2),
    )
    .await
    .expect("connect")
}

/// Run in a child process by `race`: one `migrate()` and exit.
#[tokio::test]
#[ignore = "run as a child process by the migrate race tests"]
async fn child_migrate() {
    let (Ok(url), Ok(table)) = (std::env::var(CHILD_URL), std::env::var(CHILD_TABLE)) else {
        return;
    };
    store(&url, &table)
        .await
        .migrate()
        .await
        .expect("child migrate");
}

async fn race(url: &str) {
    let table = format!("migrate_{:08x}", fastrand::u32(..));
    // Processes.
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args(["--exact", "child_migrate", "--ignored", "--quiet"])
                .env(CHILD_URL, url)
                .env(CHILD_TABLE, &table)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a child process")
        })
        .collect();
    // Tasks with pools of their own, at the same time.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store(url, &table).await;
        tasks.push(tokio::spawn(async move { store.migrate().await }));
    }
    for task in tasks {
        task.await.unwrap().expect("concurrent migrate");
    }
    for child in children {
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("child finished")
            .expect("child ran");
        assert!(
            status.status.success(),
            "a child's migrate failed: {}{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let store = store(url, &table).await;
    let locker = store.locker();
    let options = LockOptions::new().manual_refresh();
    let first = locker.try_lock("r", &options).await.unwrap().unwrap();
    let first_token = first.token();
    first.release().await.unwrap();
    store.migrate().await.expect("migrate again");
    let second = locker.try_lock("r", &options).await.unwrap().unwrap();
    assert!(
        second.token() > first_token,
        "a second migrate kept the tokens"
    );
    second.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrate_race() {
    if let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") {
        race(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_migrate_race() {
    if let Some(url) = distlock_core::conformance::service_url("DISTLOCK_MYSQL_URL") {
        race(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrate_race() {
    let dir = tempfile::tempdir().unwrap();
    race(&format!("sqlite://{}/race.db", dir.path().display())).await;
}
