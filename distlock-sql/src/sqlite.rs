//! SQLite: the SQL of the lock tables, and how each store call runs it.
//!
//! SQLite has one writer at a time per database file. Acquire is one `BEGIN
//! IMMEDIATE` transaction (it takes the write lock first, so the read and the
//! writes that follow see and change the same state): read the resource's
//! slots and token, decide in Rust, write, commit. All of it runs inside the
//! process (no network round trip). Release and refresh are single statements
//! with `RETURNING`; refresh covers the whole batch through `json_each(?)`.
//!
//! The clock is `unixepoch('subsec')`: the host's clock, shared by every
//! process that opens the file (SQLite is not meant for files shared across
//! hosts over a network file system).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Holder, Info, LeaseKey, RefreshRequest, Refreshed, Result,
};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use crate::dialect::{Dialect, SqlBackend};
use crate::error::{Fail, Op, Retry, map};
use crate::layout::{TableName, refresh_json};
use crate::rows::{JobKey, JobOutcome, JobRow, JobWrite, SlotRow, micros_to_time, outcomes};
use crate::txn::{self, LockingTx, SlotWrite, Slots, Tx};

/// The host clock in microseconds since the Unix epoch (millisecond resolution).
pub(crate) const NOW_US: &str = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)";

const BACKEND: &str = "sqlite";

/// Every statement of one table.
#[derive(Debug)]
pub(crate) struct Sqlite {
    pub(crate) migrate: Vec<String>,
    pub(crate) read_slots: Arc<str>,
    pub(crate) write_slot: Arc<str>,
    pub(crate) write_token: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) refresh: Arc<str>,
    pub(crate) info: Arc<str>,
    pub(crate) read: Arc<str>,
    pub(crate) list: Arc<str>,
    pub(crate) evict: Arc<str>,
    pub(crate) job_create: Arc<str>,
    pub(crate) job_read: Arc<str>,
    pub(crate) job_write: Arc<str>,
    pub(crate) job_enable: Arc<str>,
}

impl Sqlite {
    /// Every statement by name (migration statements first).
    pub(crate) fn named(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .migrate
            .iter()
            .map(|m| ("migrate", m.clone()))
            .collect();
        out.extend([
            ("read_slots", self.read_slots.to_string()),
            ("write_slot", self.write_slot.to_string()),
            ("write_token", self.write_token.to_string()),
            ("release", self.release.to_string()),
            ("refresh", self.refresh.to_string()),
            ("info", self.info.to_string()),
            ("read", self.read.to_string()),
            ("list", self.list.to_string()),
            ("evict", self.evict.to_string()),
            ("job_create", self.job_create.to_string()),
            ("job_read", self.job_read.to_string()),
            ("job_write", self.job_write.to_string()),
            ("job_enable", self.job_enable.to_string()),
        ]);
        out
    }
}

impl Sqlite {
    pub(crate) fn new(table: &TableName) -> Self {
        let t = table.as_str();
        let tokens = table.with("_tokens");
        let jobs = table.with("_jobs");
        let now = NOW_US;
        let migrate = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\n\
                 \x20 resource TEXT NOT NULL,\n\
                 \x20 slot INTEGER NOT NULL,\n\
                 \x20 permits INTEGER NOT NULL,\n\
                 \x20 token INTEGER NOT NULL,\n\
                 \x20 lease_key BLOB,\n\
                 \x20 owner TEXT NOT NULL DEFAULT '',\n\
                 \x20 data BLOB NOT NULL DEFAULT x'',\n\
                 \x20 acquired_us INTEGER NOT NULL,\n\
                 \x20 expires_us INTEGER NOT NULL,\n\
                 \x20 PRIMARY KEY (resource, slot)\n) WITHOUT ROWID"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {tokens} (\n\
                 \x20 resource TEXT NOT NULL PRIMARY KEY,\n\
                 \x20 last_token INTEGER NOT NULL\n) WITHOUT ROWID"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {jobs} (\n\
                 \x20 component TEXT NOT NULL,\n\
                 \x20 job TEXT NOT NULL,\n\
                 \x20 enabled INTEGER NOT NULL DEFAULT 1,\n\
                 \x20 component_id TEXT,\n\
                 \x20 job_id TEXT,\n\
                 \x20 token INTEGER NOT NULL DEFAULT 0,\n\
                 \x20 locked_us INTEGER NOT NULL DEFAULT 0,\n\
                 \x20 expires_us INTEGER NOT NULL DEFAULT 0,\n\
                 \x20 PRIMARY KEY (component, job)\n) WITHOUT ROWID"
            ),
        ];
        let live = format!("lease_key IS NOT NULL AND expires_us > {now}");
        Sqlite {
            migrate,
            read_slots: format!(
                "SELECT s.slot, s.permits, (s.lease_key IS NOT NULL AND s.expires_us > {now}) AS live,\n\
                 \x20 s.expires_us, (SELECT last_token FROM {tokens} WHERE resource = ?1) AS last_token,\n\
                 \x20 {now} AS now_us\n\
                 FROM (SELECT 1) AS one LEFT JOIN {t} AS s ON s.resource = ?1"
            )
            .into(),
            write_slot: format!(
                "INSERT INTO {t} (resource, slot, permits, token, lease_key, owner, data, acquired_us, expires_us)\n\
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)\n\
                 ON CONFLICT (resource, slot) DO UPDATE SET permits = excluded.permits,\n\
                 \x20 token = excluded.token, lease_key = excluded.lease_key, owner = excluded.owner,\n\
                 \x20 data = excluded.data, acquired_us = excluded.acquired_us, expires_us = excluded.expires_us"
            )
            .into(),
            write_token: format!(
                "INSERT INTO {tokens} (resource, last_token) VALUES (?1, ?2)\n\
                 ON CONFLICT (resource) DO UPDATE SET last_token = excluded.last_token"
            )
            .into(),
            release: format!(
                "UPDATE {t} SET lease_key = NULL, owner = '', data = x'', expires_us = {now}\n\
                 WHERE resource = ?1 AND lease_key = ?2 AND expires_us > {now}\n\
                 RETURNING slot"
            )
            .into(),
            refresh: format!(
                "UPDATE {t} AS l SET expires_us = {now} + r.ttl\n\
                 FROM (SELECT json_extract(value, '$.r') AS resource,\n\
                 \x20       unhex(json_extract(value, '$.k')) AS k,\n\
                 \x20       json_extract(value, '$.t') AS ttl\n\
                 \x20     FROM json_each(?1)) AS r\n\
                 WHERE l.resource = r.resource AND l.lease_key = r.k AND l.expires_us > {now}\n\
                 RETURNING lease_key"
            )
            .into(),
            info: format!(
                "SELECT permits, token, owner, acquired_us, expires_us FROM {t}\n\
                 WHERE resource = ?1 AND {live} ORDER BY token"
            )
            .into(),
            read: format!(
                "SELECT data FROM {t} WHERE resource = ?1 AND {live} ORDER BY token LIMIT 1"
            )
            .into(),
            // SQLite's LIKE ignores ASCII case: compare the prefix exactly.
            list: format!(
                "SELECT DISTINCT resource FROM {t}\n\
                 WHERE substr(resource, 1, length(?1)) = ?1 AND {live} ORDER BY resource"
            )
            .into(),
            evict: format!(
                "UPDATE {t} SET lease_key = NULL, owner = '', data = x'', expires_us = {now}\n\
                 WHERE resource = ?1 AND {live}"
            )
            .into(),
            job_create: format!("INSERT OR IGNORE INTO {jobs} (component, job) VALUES (?1, ?2)")
                .into(),
            job_read: format!(
                "SELECT enabled, component_id, job_id, token, expires_us, {now} AS now_us\n\
                 FROM {jobs} WHERE component = ?1 AND job = ?2"
            )
            .into(),
            job_write: format!(
                "UPDATE {jobs} SET component_id = ?1, job_id = ?2, token = ?3, locked_us = ?4,\n\
                 \x20 expires_us = ?5 WHERE component = ?6 AND job = ?7"
            )
            .into(),
            job_enable: format!(
                "INSERT INTO {jobs} (component, job, enabled) VALUES (?1, ?2, ?3)\n\
                 ON CONFLICT (component, job) DO UPDATE SET enabled = excluded.enabled"
            )
            .into(),
        }
    }
}

fn q(sql: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    // Safe: built by `Sqlite::new` from constants and a validated `TableName`.
    AssertSqlSafe(sql.clone())
}

/// The SQLite side of a [`SqlStore`](crate::SqlStore).
#[derive(Debug)]
pub(crate) struct LiteBackend {
    pub(crate) pool: SqlitePool,
    pub(crate) sql: Sqlite,
    pub(crate) retry: Retry,
}

impl LiteBackend {
    /// A pooled connection; failing here means nothing was sent.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, Fail> {
        self.pool.acquire().await.map_err(Fail::Connect)
    }
}

#[async_trait]
impl LockingTx for LiteBackend {
    type Db = sqlx::Sqlite;
    const BACKEND: &'static str = BACKEND;
    /// Take the write lock first: the reads and writes that follow see and
    /// change the same state.
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn retry(&self) -> &Retry {
        &self.retry
    }

    async fn read_slots(&self, tx: &mut Tx<Self>, resource: &str) -> Result<Slots, sqlx::Error> {
        let rows = sqlx::query(q(&self.sql.read_slots))
            .bind(resource)
            .fetch_all(&mut **tx)
            .await?;
        decode_slots(&rows)
    }

    async fn write_grant(
        &self,
        tx: &mut Tx<Self>,
        grant: &SlotWrite<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(q(&self.sql.write_slot))
            .bind(grant.resource)
            .bind(grant.slot)
            .bind(i64::from(grant.permits))
            .bind(grant.token)
            .bind(grant.key)
            .bind(grant.owner)
            .bind(grant.data)
            .bind(grant.acquired_us)
            .bind(grant.expires_us)
            .execute(&mut **tx)
            .await?;
        sqlx::query(q(&self.sql.write_token))
            .bind(grant.resource)
            .bind(grant.token)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn read_job(
        &self,
        tx: &mut Tx<Self>,
        job: &JobKey<'_>,
        create: bool,
    ) -> Result<(Option<JobRow>, i64), sqlx::Error> {
        if create {
            sqlx::query(q(&self.sql.job_create))
                .bind(job.component)
                .bind(job.job)
                .execute(&mut **tx)
                .await?;
        }
        let row = sqlx::query(q(&self.sql.job_read))
            .bind(job.component)
            .bind(job.job)
            .fetch_optional(&mut **tx)
            .await?;
        match &row {
            Some(row) => decode_job(row).map(|(r, now)| (Some(r), now)),
            None => Ok((None, 0)),
        }
    }

    async fn write_job(
        &self,
        tx: &mut Tx<Self>,
        job: &JobKey<'_>,
        w: &JobWrite,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(q(&self.sql.job_write))
            .bind(w.component_id.as_deref())
            .bind(w.job_id.as_deref())
            .bind(w.token)
            .bind(w.locked_us)
            .bind(w.expires_us)
            .bind(job.component)
            .bind(job.job)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SqlBackend for LiteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn statements(&self) -> Vec<(&'static str, String)> {
        self.sql.named()
    }

    fn serialization_retries(&self) -> u64 {
        self.retry.count()
    }

    fn endpoint(&self) -> String {
        self.pool
            .connect_options()
            .get_filename()
            .display()
            .to_string()
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let op = Op::write(BACKEND, "migrate");
        self.retry
            .run(|| async {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
                for statement in &self.sql.migrate {
                    sqlx::query(AssertSqlSafe(statement.as_str()))
                        .execute(&mut *tx)
                        .await?;
                }
                Ok(tx.commit().await?)
            })
            .await
            .map_err(|e| map(op, "", e))
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        txn::acquire(self, request).await
    }

    async fn job_lock(&self, job: &JobKey<'_>, max: Duration) -> Result<JobOutcome> {
        txn::job_change(self, job, Some(max)).await
    }

    async fn job_unlock(&self, job: &JobKey<'_>) -> Result<JobOutcome> {
        txn::job_change(self, job, None).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let op = Op::write(BACKEND, "release");
        let key = key.as_u128().to_be_bytes();
        let released: Option<i64> = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query_scalar(q(&self.sql.release))
                    .bind(resource)
                    .bind(&key[..])
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(released.is_some())
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let op = Op::write(BACKEND, "refresh");
        let label = leases.first().map_or("", |l| l.resource);
        let json = refresh_json(leases);
        let renewed: Vec<Vec<u8>> = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query_scalar(q(&self.sql.refresh))
                    .bind(&json)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, label, e))?;
        Ok(outcomes(leases, &renewed))
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        let op = Op::read(BACKEND, "info");
        let rows = sqlx::query(q(&self.sql.info))
            .bind(resource)
            .fetch_all(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, resource, e))?;
        let mut permits = 0;
        let mut holders = Vec::with_capacity(rows.len());
        for row in &rows {
            let (p, holder) = decode_holder(row).map_err(|e| map(op, resource, e))?;
            permits = p;
            holders.push(holder);
        }
        Ok((!holders.is_empty()).then(|| Info::new(resource, permits, holders)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        let op = Op::read(BACKEND, "read");
        let data: Option<Vec<u8>> = sqlx::query_scalar(q(&self.sql.read))
            .bind(resource)
            .fetch_optional(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(data.map(Bytes::from))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let op = Op::read(BACKEND, "list");
        sqlx::query_scalar(q(&self.sql.list))
            .bind(prefix)
            .fetch_all(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, prefix, e))
    }

    async fn evict(&self, resource: &str) -> Result<u64> {
        let op = Op::write(BACKEND, "evict");
        self.retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query(q(&self.sql.evict))
                    .bind(resource)
                    .execute(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| map(op, resource, e))
    }

    async fn job_enable(&self, component: &str, job: &str, enabled: bool) -> Result<()> {
        let op = Op::write(BACKEND, "job enable");
        self.retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query(q(&self.sql.job_enable))
                    .bind(component)
                    .bind(job)
                    .bind(enabled)
                    .execute(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map(|_| ())
            .map_err(|e| map(op, job, e))
    }

    async fn job_status(&self, component: &str, job: &str) -> Result<JobOutcome> {
        let op = Op::read(BACKEND, "job status");
        let row = sqlx::query(q(&self.sql.job_read))
            .bind(component)
            .bind(job)
            .fetch_optional(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, job, e))?;
        let (current, now_us) = match &row {
            Some(row) => {
                let (r, n) = decode_job(row).map_err(|e| map(op, job, e))?;
                (Some(r), n)
            }
            None => (None, 0),
        };
        Ok(JobOutcome::status(current.as_ref(), now_us))
    }
}

fn decode_slots(rows: &[SqliteRow]) -> Result<Slots, sqlx::Error> {
    let mut slots = Vec::with_capacity(rows.len());
    let mut last_token = 0;
    let mut now_us = 0;
    for row in rows {
        let token: Option<i64> = row.try_get("last_token")?;
        last_token = token.unwrap_or(0);
        now_us = row.try_get("now_us")?;
        let slot: Option<i32> = row.try_get("slot")?;
        if let Some(slot) = slot {
            let live: Option<i64> = row.try_get("live")?;
            slots.push(SlotRow {
                slot,
                permits: row.try_get("permits")?,
                live: live.unwrap_or(0) != 0,
                expires_us: row.try_get("expires_us")?,
            });
        }
    }
    Ok(Slots {
        slots,
        last_token,
        now_us,
    })
}

fn decode_holder(row: &SqliteRow) -> Result<(u32, Holder), sqlx::Error> {
    let permits: i64 = row.try_get("permits")?;
    let token: i64 = row.try_get("token")?;
    let owner: String = row.try_get("owner")?;
    let acquired: i64 = row.try_get("acquired_us")?;
    let expires: i64 = row.try_get("expires_us")?;
    Ok((
        u32::try_from(permits).unwrap_or(0),
        Holder::new(
            owner,
            u64::try_from(token).unwrap_or(0),
            micros_to_time(acquired),
            micros_to_time(expires),
        ),
    ))
}

fn decode_job(row: &SqliteRow) -> Result<(JobRow, i64), sqlx::Error> {
    Ok((
        JobRow {
            enabled: row.try_get("enabled")?,
            component_id: row.try_get("component_id")?,
            job_id: row.try_get("job_id")?,
            token: row.try_get("token")?,
            expires_us: row.try_get("expires_us")?,
        },
        row.try_get("now_us")?,
    ))
}
