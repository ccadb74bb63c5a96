//! SQL backend benchmark, one run, interleaved rounds so that machine noise
//! hits every side alike:
//!
//! - PostgreSQL acquire + release (distlock `try_lock` + `release`) against raw
//!   sqlx running the **same two statements** on the same pool, and against
//!   sqlx's `PgAdvisoryLock` (a different guarantee: connection-bound, no
//!   commit, no TTL, no token);
//! - handoff p50 on PostgreSQL (release → blocked waiter holds, LISTEN/NOTIFY),
//!   with the server round trip (`SELECT 1`) for scale;
//! - statements per refresh interval for 10,000 held locks;
//! - MySQL/MariaDB and SQLite cycles (no raw comparison).
//!
//! `cargo bench -p distlock-sql` (needs `DISTLOCK_POSTGRES_URL`, optionally
//! `DISTLOCK_MYSQL_URL`); without `--bench` (as `cargo test --benches` runs it)
//! it does a very short run. Prints one line for scripts:
//! `bench postgres: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock_core::{Handler, LeaseKey, LockOptions, Locker};
use distlock_sql::{SqlOptions, SqlStore, TableName};
use futures_util::StreamExt;
use sqlx::postgres::{PgAdvisoryLock, PgPool};
use sqlx::{AssertSqlSafe, PgConnection};

fn p(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn options() -> SqlOptions {
    SqlOptions::new().with_table(TableName::new("bench").unwrap())
}

/// µs per try_lock + release.
async fn cycle_us(locker: &dyn Locker, batch: u32) -> f64 {
    let options = LockOptions::new().manual_refresh();
    let started = Instant::now();
    for _ in 0..batch {
        let lock = locker
            .try_lock("bench/cycle", &options)
            .await
            .unwrap()
            .unwrap();
        lock.release().await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

/// The same two statements with plain sqlx.
async fn raw_cycle_us(pool: &PgPool, acquire: &str, release: &str, batch: u32) -> f64 {
    let acquire: Arc<str> = acquire.into();
    let release: Arc<str> = release.into();
    let started = Instant::now();
    for _ in 0..batch {
        let key = LeaseKey::random().as_u128().to_be_bytes();
        let row: (Option<i64>,) = sqlx::query_as(AssertSqlSafe(acquire.clone()))
            .bind("bench/raw")
            .bind(1i32)
            .bind(&key[..])
            .bind("raw")
            .bind(&b""[..])
            .bind(30_000_000i64)
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(row.0.is_some(), "raw acquire granted");
        let released: i64 = sqlx::query_scalar(AssertSqlSafe(release.clone()))
            .bind("bench/raw")
            .bind(&key[..])
            .bind("bench")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(released, 1);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

/// sqlx's advisory lock: try_acquire + release_now on a pooled connection.
async fn advisory_cycle_us(pool: &PgPool, batch: u32) -> f64 {
    let lock = PgAdvisoryLock::new("bench/advisory");
    let started = Instant::now();
    for _ in 0..batch {
        let conn = pool.acquire().await.unwrap();
        let guard = match lock.try_acquire(conn).await.unwrap() {
            sqlx::Either::Left(guard) => guard,
            sqlx::Either::Right(_) => panic!("advisory lock held"),
        };
        let _conn: sqlx::pool::PoolConnection<sqlx::Postgres> = guard.release_now().await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

async fn rtt_us(pool: &PgPool, samples: usize) -> f64 {
    let mut conn = pool.acquire().await.unwrap();
    let conn: &mut PgConnection = &mut conn;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let _: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        out.push(started.elapsed().as_secs_f64() * 1e6);
    }
    p(&mut out, 0.5)
}

/// Release → blocked waiter (another client) holds, in µs.
async fn handoff_us(url: &str, samples: usize) -> Vec<f64> {
    let holder = SqlStore::connect_with(url, options())
        .await
        .unwrap()
        .locker();
    let waiter = Arc::new(
        SqlStore::connect_with(url, options())
            .await
            .unwrap()
            .locker(),
    );
    let options = LockOptions::new().manual_refresh();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let lock = holder
            .try_lock("bench/handoff", &options)
            .await
            .unwrap()
            .unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let waiting = {
            let waiter = waiter.clone();
            let options = options.clone().with_wait_timeout(Duration::from_secs(30));
            tokio::spawn(async move {
                let _ = ready_tx.send(());
                let lock = waiter.lock("bench/handoff", &options).await.unwrap();
                let at = Instant::now();
                lock.release().await.unwrap();
                at
            })
        };
        ready_rx.await.unwrap();
        // Let the waiter subscribe, try once and start sleeping.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let released = Instant::now();
        lock.release().await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_secs_f64() * 1e6);
    }
    out
}

/// Store calls (= statements on PostgreSQL) per refresh interval for `count` held locks.
async fn refresh_statements(url: &str, count: usize) -> (u64, u64) {
    let store = SqlStore::connect_with(url, options().with_max_connections(16))
        .await
        .unwrap();
    let locker = Arc::new(store.locker());
    let ttl = Duration::from_secs(6);
    let options = LockOptions::new().with_ttl(ttl);
    let locks: Vec<_> = futures_util::stream::iter(0..count)
        .map(|i| {
            let locker = locker.clone();
            let options = options.clone();
            async move {
                locker
                    .try_lock(&format!("bench/held/{i:05}"), &options)
                    .await
                    .unwrap()
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Let the first round align the leases, then count three intervals.
    tokio::time::sleep(ttl / 2).await;
    let start = locker.refresh_stats();
    tokio::time::sleep(ttl).await;
    let end = locker.refresh_stats();
    assert!(
        locks.iter().all(|l| !l.is_lost()),
        "a refreshed lock was lost"
    );
    futures_util::stream::iter(locks)
        .map(|l| l.release())
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    (
        (end.calls - start.calls).div_ceil(3),
        (end.renewed - start.renewed).div_ceil(3),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 2 } else { 15 };
    let batch: u32 = if quick { 20 } else { 200 };
    println!(
        "sql backend, {} ({rounds} interleaved rounds of {batch} cycles)",
        if quick { "QUICK RUN" } else { "full run" }
    );

    // SQLite: always available.
    let dir = tempfile::tempdir().unwrap();
    let lite = SqlStore::connect_with(
        &format!("sqlite://{}/bench.db", dir.path().display()),
        options(),
    )
    .await
    .unwrap();
    lite.migrate().await.unwrap();
    let lite_locker = lite.locker();
    let mut lite_cycles = Vec::new();
    for _ in 0..rounds {
        lite_cycles.push(cycle_us(&lite_locker, batch).await);
    }
    let lite_p50 = p(&mut lite_cycles, 0.5);
    println!("| SQLite (file, WAL) try_lock + release p50 | {lite_p50:.0} µs |");

    if let Ok(url) = std::env::var("DISTLOCK_MYSQL_URL") {
        let my = SqlStore::connect_with(&url, options()).await.unwrap();
        my.migrate().await.unwrap();
        let my_locker = my.locker();
        let mut cycles = Vec::new();
        for _ in 0..rounds {
            cycles.push(cycle_us(&my_locker, batch).await);
        }
        println!(
            "| MariaDB try_lock + release p50 (transaction: 5 + 1 round trips) | {:.0} µs |",
            p(&mut cycles, 0.5)
        );
    } else {
        println!("SKIPPED MariaDB cycle: DISTLOCK_MYSQL_URL is not set");
    }

    let Ok(url) = std::env::var("DISTLOCK_POSTGRES_URL") else {
        println!("SKIPPED PostgreSQL figures: DISTLOCK_POSTGRES_URL is not set");
        println!(
            "bench postgres: cycle_us_p50=na raw_ratio=na peer_ratio=na handoff_us_p50=na refresh_requests_10k=na"
        );
        return;
    };
    let store = SqlStore::connect_with(&url, options()).await.unwrap();
    store.migrate().await.unwrap();
    let statements = store.statements();
    let sql = |name: &str| {
        statements
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
            .unwrap()
    };
    let (acquire, release) = (sql("acquire"), sql("release"));
    let locker = store.locker();
    // The minimal client: no ping before each statement (the store pings only
    // connections idle for seconds).
    let raw_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    // Warm both paths (prepared statements, connections).
    cycle_us(&locker, 5).await;
    raw_cycle_us(&raw_pool, &acquire, &release, 5).await;
    advisory_cycle_us(&raw_pool, 5).await;

    let (mut ours, mut raw, mut advisory) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Rotate the order so no side always runs first.
        for side in 0..3 {
            match (round + side) % 3 {
                0 => ours.push(cycle_us(&locker, batch).await),
                1 => raw.push(raw_cycle_us(&raw_pool, &acquire, &release, batch).await),
                _ => advisory.push(advisory_cycle_us(&raw_pool, batch).await),
            }
        }
    }
    let (ours, raw, advisory) = (p(&mut ours, 0.5), p(&mut raw, 0.5), p(&mut advisory, 0.5));
    let rtt = rtt_us(&raw_pool, if quick { 50 } else { 2000 }).await;

    let mut handoff = handoff_us(&url, if quick { 10 } else { 300 }).await;
    let (h50, h99) = (p(&mut handoff, 0.5), p(&mut handoff, 0.99));

    let held = if quick { 500 } else { 10_000 };
    let (calls, renewed) = refresh_statements(&url, held).await;

    println!(
        "| measure (PostgreSQL) | distlock | raw sqlx, same statements | sqlx PgAdvisoryLock |"
    );
    println!("|---|---|---|---|");
    println!(
        "| try_lock + release p50 | {ours:.0} µs | {raw:.0} µs ({:.2}×) | {advisory:.0} µs ({:.2}×) |",
        ours / raw,
        ours / advisory
    );
    // A lock statement's round trip (it commits a write), from the raw cycle.
    let statement_rtt = raw / 2.0;
    println!(
        "| handoff p50 / p99 (LISTEN/NOTIFY) | {h50:.0} / {h99:.0} µs | 2 RTT + 100 µs = {:.0} µs with a lock statement's RTT ({statement_rtt:.0} µs), {:.0} µs with `SELECT 1`'s ({rtt:.0} µs) | |",
        2.0 * statement_rtt + 100.0,
        2.0 * rtt + 100.0
    );
    println!(
        "| refresh of {held} held locks | {calls} statement(s) per interval ({renewed} leases renewed) | | |"
    );
    println!(
        "bench postgres: cycle_us_p50={ours:.0} raw_ratio={:.2} peer_ratio={:.2} handoff_us_p50={h50:.0} refresh_requests_10k={}",
        ours / raw,
        ours / advisory,
        if held == 10_000 {
            calls.to_string()
        } else {
            "na".to_owned()
        }
    );
}
