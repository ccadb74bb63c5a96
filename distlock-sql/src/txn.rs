//! The transactions of the dialects that decide in the client (MySQL/MariaDB
//! and SQLite), written once: open a transaction that locks what it reads,
//! read the rows, decide with [`crate::rows`], write, commit (or roll back
//! when nothing changes). Each dialect supplies only its statements
//! ([`LockingTx`]): how a transaction begins, and how the rows are read and
//! written.
//!
//! - acquire: read the resource's token row and slot rows under lock, take
//!   the lowest free slot (or answer "held" / a size mismatch), write the
//!   slot and the bumped token row;
//! - job lock / unlock: read the job row under lock (creating it for a lock),
//!   decide, write it back.
//!
//! Serialization failures (deadlocks, SQLSTATE 40001) retry the whole
//! transaction through [`Retry`].

use async_trait::async_trait;
use distlock_core::{AcquireRequest, Acquired, Grant, Result};
use sqlx::{Database, Pool, SqlSafeStr, Transaction};

use crate::error::{Fail, Op, Retry, map};
use crate::rows::{
    Decision, JobKey, JobOutcome, JobRow, JobWrite, SlotRow, decide, decide_lock, decide_unlock,
    micros_to_time, ttl_micros,
};

/// A transaction of the dialect's database.
pub(crate) type Tx<D> = Transaction<'static, <D as LockingTx>::Db>;

/// The resource's rows as read under lock.
#[derive(Debug)]
pub(crate) struct Slots {
    pub(crate) slots: Vec<SlotRow>,
    /// The resource's fencing counter (0 if it never had one).
    pub(crate) last_token: i64,
    /// The database clock, microseconds since the Unix epoch.
    pub(crate) now_us: i64,
}

/// The lease an acquire writes.
#[derive(Debug)]
pub(crate) struct SlotWrite<'a> {
    pub(crate) resource: &'a str,
    pub(crate) slot: i32,
    pub(crate) permits: u32,
    pub(crate) token: i64,
    pub(crate) key: &'a [u8],
    pub(crate) owner: &'a str,
    pub(crate) data: &'a [u8],
    pub(crate) acquired_us: i64,
    pub(crate) expires_us: i64,
}

/// The statements one dialect runs inside its transactions.
#[async_trait]
pub(crate) trait LockingTx: Send + Sync {
    /// The sqlx database.
    type Db: Database;
    /// The backend name (errors, traces).
    const BACKEND: &'static str;
    /// The statement that opens a transaction (`None`: the driver's `BEGIN`).
    const BEGIN: Option<&'static str>;

    fn pool(&self) -> &Pool<Self::Db>;
    fn retry(&self) -> &Retry;
    /// Read (and lock) the resource's token and slot rows.
    async fn read_slots(&self, tx: &mut Tx<Self>, resource: &str) -> Result<Slots, sqlx::Error>;
    /// Write a granted lease and the resource's new token.
    async fn write_grant(
        &self,
        tx: &mut Tx<Self>,
        grant: &SlotWrite<'_>,
    ) -> Result<(), sqlx::Error>;
    /// Read (and lock) a job row, creating it first when `create`; with the
    /// database clock.
    async fn read_job(
        &self,
        tx: &mut Tx<Self>,
        job: &JobKey<'_>,
        create: bool,
    ) -> Result<(Option<JobRow>, i64), sqlx::Error>;
    /// Write a job row back.
    async fn write_job(
        &self,
        tx: &mut Tx<Self>,
        job: &JobKey<'_>,
        write: &JobWrite,
    ) -> Result<(), sqlx::Error>;
}

/// Open a transaction on a pooled connection; failing to get the connection
/// means nothing was sent.
async fn begin<D: LockingTx + ?Sized>(dialect: &D) -> Result<Tx<D>, Fail> {
    let conn = dialect.pool().acquire().await.map_err(Fail::Connect)?;
    let statement = D::BEGIN.map(|s| sqlx::AssertSqlSafe(s).into_sql_str());
    Ok(Transaction::begin(conn, statement).await?)
}

enum Step {
    Done(Acquired),
    Mismatch(u32),
}

/// One acquire: read under lock, decide, write, commit.
pub(crate) async fn acquire<D: LockingTx>(dialect: &D, r: &AcquireRequest<'_>) -> Result<Acquired> {
    let op = Op::write(D::BACKEND, "acquire");
    let key = r.key.as_u128().to_be_bytes();
    let ttl_us = ttl_micros(r.ttl);
    let step = dialect
        .retry()
        .run(|| async {
            let mut tx = begin(dialect).await?;
            let read = dialect.read_slots(&mut tx, r.resource).await?;
            match decide(&read.slots, r.permits, read.now_us) {
                Decision::Grant { slot } => {
                    let token = read.last_token + 1;
                    let expires_us = read.now_us.saturating_add(ttl_us);
                    let write = SlotWrite {
                        resource: r.resource,
                        slot,
                        permits: r.permits,
                        token,
                        key: &key,
                        owner: r.owner,
                        data: r.data,
                        acquired_us: read.now_us,
                        expires_us,
                    };
                    dialect.write_grant(&mut tx, &write).await?;
                    tx.commit().await?;
                    Ok(Step::Done(Acquired::Granted(Grant::new(
                        u64::try_from(token).unwrap_or(0),
                        micros_to_time(expires_us),
                    ))))
                }
                Decision::Mismatch { existing } => {
                    tx.rollback().await?;
                    Ok(Step::Mismatch(existing))
                }
                Decision::Held { retry_after } => {
                    tx.rollback().await?;
                    Ok(Step::Done(Acquired::Held { retry_after }))
                }
            }
        })
        .await
        .map_err(|e| map(op, r.resource, e))?;
    match step {
        Step::Done(answer) => Ok(answer),
        Step::Mismatch(existing) => Err(distlock_core::Error::SizeMismatch {
            resource: r.resource.to_owned(),
            requested: r.permits,
            existing,
        }),
    }
}

/// Lock (`Some(max)`) or unlock (`None`) a job in one transaction.
pub(crate) async fn job_change<D: LockingTx>(
    dialect: &D,
    job: &JobKey<'_>,
    max: Option<std::time::Duration>,
) -> Result<JobOutcome> {
    let op = Op::write(
        D::BACKEND,
        if max.is_some() {
            "job lock"
        } else {
            "job unlock"
        },
    );
    dialect
        .retry()
        .run(|| async {
            let mut tx = begin(dialect).await?;
            let (current, now_us) = dialect.read_job(&mut tx, job, max.is_some()).await?;
            let (outcome, write) = match max {
                Some(max) => decide_lock(current.as_ref(), job, now_us, ttl_micros(max)),
                None => decide_unlock(current.as_ref(), job, now_us),
            };
            if let Some(w) = write {
                dialect.write_job(&mut tx, job, &w).await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(outcome)
        })
        .await
        .map_err(|e| map(op, job.job, e))
}
