//! Job locks (seed 002) against PostgreSQL, MariaDB and SQLite: every
//! behaviour of the seed, each its own test per database.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::time::{Duration, Instant};

use distlock_core::Error;
use distlock_sql::{JobError, JobLocks, SqlConfig, SqlStore, TableName};

const LONG: Duration = Duration::from_secs(60);

struct Ctx {
    jobs: JobLocks<SqlStore>,
    component: String,
    _dir: Option<tempfile::TempDir>,
}

async fn connect(url: &str, dir: Option<tempfile::TempDir>) -> Ctx {
    let options = SqlConfig::from_url(url)
        .unwrap()
        .with_table(TableName::new("jobs_test").unwrap())
        .with_max_connections(4);
    let store = SqlStore::connect_with(options).await.expect("connect");
    store.migrate().await.expect("migrate");
    Ctx {
        jobs: JobLocks::new(store),
        component: format!("billing-{:08x}", fastrand::u32(..)),
        _dir: dir,
    }
}

async fn postgres() -> Option<Ctx> {
    let url = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL")?;
    Some(connect(&url, None).await)
}

async fn mysql() -> Option<Ctx> {
    let url = distlock_core::conformance::service_url("DISTLOCK_MYSQL_URL")?;
    Some(connect(&url, None).await)
}

async fn sqlite() -> Option<Ctx> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/jobs.db", dir.path().display());
    Some(connect(&url, Some(dir)).await)
}

fn unauthorised(result: Result<impl std::fmt::Debug, JobError>, context: &str) {
    match result {
        Err(JobError::Unauthorised { .. }) => {}
        other => panic!("{context}: expected Unauthorised, got {other:?}"),
    }
}

/// A free job is locked, with a token that grows on every lock.
async fn lock_grants_a_free_job_with_growing_tokens(ctx: Ctx) {
    let c = &ctx.component;
    let first = ctx
        .jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    ctx.jobs
        .unlock(c, "pod-1", "invoices", "run-1")
        .await
        .unwrap();
    let second = ctx
        .jobs
        .lock(c, "pod-2", "invoices", "run-2", LONG)
        .await
        .unwrap();
    assert!(second.token > first.token);
    assert!(second.expires_at > first.expires_at - LONG);
}

/// Another instance of the component is `Unauthorised` while the job is held.
async fn another_component_instance_is_unauthorised(ctx: Ctx) {
    let c = &ctx.component;
    ctx.jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    match ctx.jobs.lock(c, "pod-2", "invoices", "run-9", LONG).await {
        Err(JobError::Unauthorised {
            holder: Some(h), ..
        }) => {
            assert_eq!(
                (h.component_id.as_str(), h.job_id.as_str()),
                ("pod-1", "run-1")
            );
        }
        other => panic!("expected Unauthorised naming pod-1, got {other:?}"),
    }
    // Another run of the same instance is refused too: one execution at a time.
    unauthorised(
        ctx.jobs.lock(c, "pod-1", "invoices", "run-2", LONG).await,
        "second run of the same instance",
    );
    // Other jobs of the component are independent.
    ctx.jobs
        .lock(c, "pod-2", "reports", "run-9", LONG)
        .await
        .unwrap();
}

/// The owner locking again extends its lock (new token, later expiry).
async fn the_owner_may_lock_again(ctx: Ctx) {
    let c = &ctx.component;
    let a = ctx
        .jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    let b = ctx
        .jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    assert!(b.token > a.token);
    assert!(b.expires_at >= a.expires_at);
}

/// A lock that ran past its max duration is taken over by another instance.
async fn an_expired_lock_is_taken_over(ctx: Ctx) {
    let c = &ctx.component;
    let max = Duration::from_millis(300);
    let first = ctx
        .jobs
        .lock(c, "pod-1", "invoices", "run-1", max)
        .await
        .unwrap();
    let started = Instant::now();
    let second = loop {
        match ctx.jobs.lock(c, "pod-2", "invoices", "run-2", LONG).await {
            Ok(lease) => break lease,
            Err(JobError::Unauthorised { .. }) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never taken over"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert!(
        started.elapsed() >= max - Duration::from_millis(50),
        "taken over too early"
    );
    assert!(second.token > first.token);
    // The old owner cannot unlock the new owner's lock.
    unauthorised(
        ctx.jobs.unlock(c, "pod-1", "invoices", "run-1").await,
        "stale owner unlocking",
    );
}

/// Unlock frees the job for another instance; unlocking a free job is a no-op.
async fn unlock_frees_the_job(ctx: Ctx) {
    let c = &ctx.component;
    ctx.jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    ctx.jobs
        .unlock(c, "pod-1", "invoices", "run-1")
        .await
        .unwrap();
    ctx.jobs
        .unlock(c, "pod-1", "invoices", "run-1")
        .await
        .unwrap();
    ctx.jobs
        .unlock(c, "pod-3", "never-locked", "run-0")
        .await
        .unwrap();
    ctx.jobs
        .lock(c, "pod-2", "invoices", "run-2", LONG)
        .await
        .unwrap();
    assert_eq!(
        ctx.jobs
            .status(c, "invoices")
            .await
            .unwrap()
            .holder
            .map(|h| h.component_id),
        Some("pod-2".to_owned())
    );
}

/// Only the owner may unlock: anyone else is `Unauthorised` and the lock stays.
async fn unlock_by_another_is_unauthorised(ctx: Ctx) {
    let c = &ctx.component;
    ctx.jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    unauthorised(
        ctx.jobs.unlock(c, "pod-2", "invoices", "run-1").await,
        "other instance",
    );
    unauthorised(
        ctx.jobs.unlock(c, "pod-1", "invoices", "run-2").await,
        "other run",
    );
    unauthorised(
        ctx.jobs.lock(c, "pod-2", "invoices", "run-2", LONG).await,
        "still held",
    );
}

/// A disabled job refuses every lock with `Disabled`, even for its owner.
async fn a_disabled_job_refuses_locks(ctx: Ctx) {
    let c = &ctx.component;
    ctx.jobs.disable(c, "invoices").await.unwrap();
    for (id, run) in [("pod-1", "run-1"), ("pod-2", "run-2")] {
        match ctx.jobs.lock(c, id, "invoices", run, LONG).await {
            Err(JobError::Disabled { component, job }) => {
                assert_eq!((component.as_str(), job.as_str()), (c.as_str(), "invoices"));
            }
            other => panic!("expected Disabled, got {other:?}"),
        }
    }
    assert!(!ctx.jobs.status(c, "invoices").await.unwrap().enabled);
    // Disabling one job leaves the others alone.
    ctx.jobs
        .lock(c, "pod-1", "reports", "run-1", LONG)
        .await
        .unwrap();
}

/// A job can be unlocked while disabled, and enabled again afterwards.
async fn unlock_works_while_disabled_and_enable_restores(ctx: Ctx) {
    let c = &ctx.component;
    ctx.jobs
        .lock(c, "pod-1", "invoices", "run-1", LONG)
        .await
        .unwrap();
    ctx.jobs.disable(c, "invoices").await.unwrap();
    let status = ctx.jobs.status(c, "invoices").await.unwrap();
    assert!(
        !status.enabled && status.holder.is_some(),
        "the owner keeps its lock"
    );
    ctx.jobs
        .unlock(c, "pod-1", "invoices", "run-1")
        .await
        .unwrap();
    assert!(matches!(
        ctx.jobs.lock(c, "pod-1", "invoices", "run-2", LONG).await,
        Err(JobError::Disabled { .. })
    ));
    ctx.jobs.enable(c, "invoices").await.unwrap();
    ctx.jobs
        .lock(c, "pod-2", "invoices", "run-3", LONG)
        .await
        .unwrap();
    let status = ctx.jobs.status(c, "invoices").await.unwrap();
    assert!(status.enabled);
    assert_eq!(status.holder.map(|h| h.job_id), Some("run-3".to_owned()));
}

/// Many instances race for one job: exactly one wins.
async fn racing_instances_one_wins(ctx: Ctx) {
    let c = ctx.component.clone();
    let jobs = std::sync::Arc::new(ctx.jobs);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let jobs = jobs.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            jobs.lock(&c, &format!("pod-{i}"), "invoices", "run", LONG)
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(JobError::Unauthorised { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(won, 1);
}

/// Bad names and durations are `InvalidArgument`, before any I/O.
async fn bad_input_is_rejected(ctx: Ctx) {
    let c = &ctx.component;
    let long = "x".repeat(300);
    for (component, id, job, run, max) in [
        ("", "pod", "job", "run", LONG),
        (c.as_str(), "", "job", "run", LONG),
        (c.as_str(), "pod", long.as_str(), "run", LONG),
        (c.as_str(), "pod", "job", "ru\nn", LONG),
        (c.as_str(), "pod", "job", "run", Duration::ZERO),
        (c.as_str(), "pod", "job", "run", Duration::MAX),
    ] {
        match ctx.jobs.lock(component, id, job, run, max).await {
            Err(JobError::Store(Error::InvalidArgument { .. })) => {}
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(matches!(
        ctx.jobs.disable("", "job").await,
        Err(JobError::Store(Error::InvalidArgument { .. }))
    ));
}

macro_rules! per_database {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(ctx) = super::postgres().await {
                        super::$case(ctx).await;
                    }
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(ctx) = super::mysql().await {
                        super::$case(ctx).await;
                    }
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(ctx) = super::sqlite().await {
                        super::$case(ctx).await;
                    }
                }
            )*
        }
    };
}

per_database!(
    lock_grants_a_free_job_with_growing_tokens,
    another_component_instance_is_unauthorised,
    the_owner_may_lock_again,
    an_expired_lock_is_taken_over,
    unlock_frees_the_job,
    unlock_by_another_is_unauthorised,
    a_disabled_job_refuses_locks,
    unlock_works_while_disabled_and_enable_restores,
    racing_instances_one_wins,
    bad_input_is_rejected,
);
