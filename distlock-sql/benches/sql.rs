//! SQL backend benchmark, one run, interleaved rounds so that machine noise
//! hits every side alike, one report per database (PostgreSQL, MySQL/MariaDB,
//! SQLite):
//!
//! - PostgreSQL acquire + release (distlock `try_lock` + `release`) against raw
//!   sqlx running the **same two statements** on the same pool, and against
//!   sqlx's `PgAdvisoryLock` (a different guarantee: connection-bound, no
//!   commit, no TTL, no token), with the server round trip (`SELECT 1`) for
//!   scale;
//! - MySQL/MariaDB and SQLite cycles (no raw comparison: their acquire is a
//!   transaction of several statements);
//! - on each: handoff (release → blocked waiter of another client holds;
//!   LISTEN/NOTIFY on PostgreSQL, polling elsewhere), throughput with 1 / 16 /
//!   64 tasks on distinct keys and one hot key, and store calls per refresh
//!   interval while holding 10 / 1,000 / 10,000 locks.
//!
//! `cargo bench -p distlock-sql` (with `DISTLOCK_POSTGRES_URL` and
//! `DISTLOCK_MYSQL_URL` set; a database whose URL is missing is skipped);
//! without `--bench` (as `cargo test --benches` runs it) a very short run.
//! Prints a table and one line per database for scripts:
//! `bench postgres: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
//! (likewise `bench mysql:`, `bench sqlite:`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock_bench::{Latencies, Report, Tiers, Timings, cycle, handoff, interleave, op, pause};
use distlock_core::{LeaseKey, LockOptions, Locker};
use distlock_sql::{SqlConfig, SqlStore, TableName};
use sqlx::postgres::{PgAdvisoryLock, PgPool};
use sqlx::{AssertSqlSafe, PgConnection};

fn options(url: &str) -> SqlConfig {
    SqlConfig::from_url(url)
        .unwrap()
        .with_table(TableName::new("bench").unwrap())
}

async fn connect(config: SqlConfig) -> SqlStore {
    SqlStore::connect_with(config).await.unwrap()
}

/// The same two statements as distlock's cycle, with plain sqlx.
async fn raw_cycle(pool: &PgPool, acquire: Arc<str>, release: Arc<str>) {
    let key = LeaseKey::random().as_u128().to_be_bytes();
    let row: (Option<i64>,) = sqlx::query_as(AssertSqlSafe(acquire))
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
    let released: i64 = sqlx::query_scalar(AssertSqlSafe(release))
        .bind("bench/raw")
        .bind(&key[..])
        .bind("bench")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(released, 1);
}

/// sqlx's advisory lock: try_acquire + release_now on a pooled connection.
async fn advisory_cycle(pool: &PgPool, lock: &PgAdvisoryLock) {
    let conn = pool.acquire().await.unwrap();
    let guard = match lock.try_acquire(conn).await.unwrap() {
        sqlx::Either::Left(guard) => guard,
        sqlx::Either::Right(_) => panic!("advisory lock held"),
    };
    let _conn: sqlx::pool::PoolConnection<sqlx::Postgres> = guard.release_now().await.unwrap();
}

async fn rtt(pool: &PgPool, samples: usize) -> Latencies {
    let mut conn = pool.acquire().await.unwrap();
    let conn: &mut PgConnection = &mut conn;
    let mut out = Latencies::new();
    for _ in 0..samples {
        let started = Instant::now();
        let _: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        out.record(started.elapsed());
    }
    out
}

/// What the PostgreSQL section adds: raw sqlx with the same statements, sqlx's
/// advisory lock, and the round trip, on a pool of its own.
struct PgExtra {
    timings: [Timings; 2],
    rtt: Latencies,
}

async fn pg_extra(
    store: &SqlStore,
    url: &str,
    locker: &dyn Locker,
    rounds: usize,
    batch: usize,
    full: bool,
) -> (Timings, PgExtra) {
    let statements = store.statements();
    let sql = |name: &str| -> Arc<str> {
        statements
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.as_str().into())
            .unwrap()
    };
    let (acquire, release) = (sql("acquire"), sql("release"));
    // The minimal client: no ping before each statement (the store pings only
    // connections idle for seconds).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect(url)
        .await
        .unwrap();
    let advisory = PgAdvisoryLock::new("bench/advisory");
    let manual = LockOptions::new().manual_refresh();
    let (pool_ref, advisory, manual) = (&pool, &advisory, &manual);
    let mut sides = [
        op(move || async move { assert!(cycle(locker, "bench/cycle", manual).await) }),
        op(move || raw_cycle(pool_ref, acquire.clone(), release.clone())),
        op(move || advisory_cycle(pool_ref, advisory)),
    ];
    // Warm every path (prepared statements, connections).
    interleave(1, 5, &mut sides).await;
    let [ours, raw, advisory] = interleave(rounds, batch, &mut sides)
        .await
        .try_into()
        .unwrap();
    let rtt = rtt(&pool, if full { 2000 } else { 50 }).await;
    (
        ours,
        PgExtra {
            timings: [raw, advisory],
            rtt,
        },
    )
}

/// One database: cycle (and on PostgreSQL raw and advisory), handoff, tiers.
async fn section(name: &str, url: &str, full: bool) -> Report {
    let (rounds, batch) = if full { (15, 200) } else { (2, 20) };
    let store = connect(options(url)).await;
    store.migrate().await.unwrap();
    let locker = store.locker();
    let mut report = Report::new(name);
    if name == "postgres" {
        let (ours, extra) = pg_extra(&store, url, &locker, rounds, batch, full).await;
        let [raw, advisory] = &extra.timings;
        report.cycle(
            &ours,
            raw,
            Some((
                "sqlx PgAdvisoryLock (connection-bound, no TTL, no token)",
                advisory,
            )),
        );
        report.row("SELECT 1 round trip p50 / p99", extra.rtt.p50_p99());
        // A lock statement's round trip (it commits a write), from the raw cycle.
        let statement = raw.p50() / 2.0;
        report.row(
            "handoff goal, 2 RTT + 100 µs",
            format!(
                "{:.0} µs with a lock statement's RTT ({statement:.0} µs), {:.0} µs with SELECT 1's ({:.0} µs)",
                2.0 * statement + 100.0,
                2.0 * extra.rtt.us(0.5) + 100.0,
                extra.rtt.us(0.5)
            ),
        );
    } else {
        let manual = LockOptions::new().manual_refresh();
        let (l, m) = (&locker, &manual);
        let mut sides = [op(move || async move {
            assert!(cycle(l, "bench/cycle", m).await)
        })];
        interleave(1, 5, &mut sides).await;
        let [ours] = interleave(rounds, batch, &mut sides)
            .await
            .try_into()
            .unwrap();
        report.headline(ours.p50(), None, None).timing(
            "distlock try_lock + release, p50 / p99 (a transaction)",
            &ours,
            &[],
        );
    }

    let holder = connect(options(url)).await.locker();
    let waiter: Arc<dyn Locker> = Arc::new(connect(options(url)).await.locker());
    let samples = if full { 300 } else { 10 };
    // Let the waiter subscribe, try once and start sleeping.
    let measured = handoff(
        &holder,
        waiter,
        "bench/handoff",
        samples,
        pause(Duration::from_millis(5)),
    )
    .await;
    let how = if name == "postgres" {
        "LISTEN/NOTIFY"
    } else {
        "polling with backoff"
    };
    report.handoff(
        &measured,
        &format!("release → waiter of another client holds; {how}"),
    );

    let mut lockers: Vec<Arc<dyn Locker>> = Vec::new();
    for _ in 0..4 {
        lockers.push(Arc::new(connect(options(url)).await.locker()));
    }
    let holder = connect(options(url).with_max_connections(16))
        .await
        .locker();
    Tiers::new(full)
        .with_ttl(if full {
            Duration::from_secs(6)
        } else {
            Duration::from_millis(600)
        })
        .counting("statements")
        .with_prefix(format!("bench/tiers/{name}"))
        .run(&mut report, &lockers, &holder, |l| l.refresh_stats().calls)
        .await;
    report
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = distlock_bench::full_run();
    println!(
        "sql backend, {} (multi-thread runtime, 2 workers)",
        if full { "full run" } else { "QUICK RUN" }
    );
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
    let postgres = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL");
    let mysql = distlock_core::conformance::service_url("DISTLOCK_MYSQL_URL");
    for (name, url) in [
        ("postgres", postgres),
        ("mysql", mysql),
        ("sqlite", Some(sqlite)),
    ] {
        let Some(url) = url else {
            println!("SKIPPED {name}: its URL is not set");
            continue;
        };
        let started = Instant::now();
        let report = section(name, &url, full).await;
        print!("{}", report.render());
        println!("({name}: {:.0} s)", started.elapsed().as_secs_f64());
    }
}
