//! MySQL / MariaDB: the SQL of the lock tables, and how each store call runs it.
//!
//! MySQL has no `RETURNING` (MariaDB has it for `INSERT`, not for `ON
//! DUPLICATE KEY UPDATE`), and with `CLIENT_FOUND_ROWS` the affected-row count
//! of `INSERT … ON DUPLICATE KEY UPDATE` cannot tell "granted" from "held".
//! So acquire is one short transaction in which the client decides from rows
//! it has **locked**:
//!
//! 1. `SELECT … FROM NAME_tokens LEFT JOIN NAME … FOR UPDATE`: locks the
//!    resource's token row (serialising all acquires of the resource) and its
//!    slot rows (a concurrent refresh or release waits), reading their latest
//!    committed versions and the server clock (`SYSDATE(6)`, the real time, not
//!    `NOW()`, which a session can set with `SET timestamp`);
//! 2. the decision (free slot, size mismatch, first expiry) in Rust, from
//!    exactly those rows;
//! 3. on a grant, write the slot and the token row, then `COMMIT`; otherwise
//!    `ROLLBACK`.
//!
//! Five round trips for a grant (`BEGIN`, read, two writes, `COMMIT`), three for
//! "held". Deadlocks (SQLSTATE 40001) retry the whole transaction. Release is
//! one `UPDATE … WHERE lease_key = ? AND expires_us > now`: the key is 128
//! random bits, so the row count *matched by that condition* is exactly "this
//! key held an unexpired lease" (the `SET` always changes the key, so matched
//! and changed rows agree with or without `CLIENT_FOUND_ROWS`).
//! Refresh is one `UPDATE … JOIN JSON_TABLE(?)` for the whole batch. Its row
//! count is the number of leases whose `WHERE` (key held, unexpired) matched;
//! keys are unique, so when it equals the batch size every lease was renewed
//! (the usual case: one statement). Otherwise one `SELECT` of the keys still
//! live tells which (a key live after the update was live at it, so renewed).
//! A smaller count is never taken as a "no": only the keys decide.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Holder, Info, LeaseKey, RefreshRequest, Refreshed, Result,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, Row};

use crate::dialect::{Dialect, SqlBackend};
use crate::error::{Fail, Op, Retry, host_port, map};
use crate::layout::{TableName, like_prefix, refresh_json};
use crate::rows::{JobKey, JobOutcome, JobRow, JobWrite, SlotRow, micros_to_time, outcomes};
use crate::txn::{self, LockingTx, SlotWrite, Slots, Tx};

/// The server's real clock in microseconds since the Unix epoch. Sessions
/// run with `time_zone = '+00:00'`, so the conversion has no DST gap.
pub(crate) const NOW_US: &str = "CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)";

const BACKEND: &str = "mysql";

/// `host:port` (or the socket path) of a MySQL connection.
pub(crate) fn endpoint(connect: &MySqlConnectOptions) -> String {
    match connect.get_socket() {
        Some(path) => path.display().to_string(),
        None => host_port(connect.get_host(), connect.get_port()),
    }
}

/// Every statement of one table.
#[derive(Debug)]
pub(crate) struct MySql {
    pub(crate) migrate: Vec<String>,
    pub(crate) lock_name: String,
    pub(crate) read_slots: Arc<str>,
    pub(crate) create_tokens: Arc<str>,
    pub(crate) write_slot: Arc<str>,
    pub(crate) write_token: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) refresh: Arc<str>,
    pub(crate) refreshed: Arc<str>,
    pub(crate) info: Arc<str>,
    pub(crate) read: Arc<str>,
    pub(crate) list: Arc<str>,
    pub(crate) evict: Arc<str>,
    pub(crate) job_create: Arc<str>,
    pub(crate) job_read: Arc<str>,
    pub(crate) job_write: Arc<str>,
    pub(crate) job_enable: Arc<str>,
    pub(crate) job_status: Arc<str>,
}

impl MySql {
    /// Every statement by name (migration statements first).
    pub(crate) fn named(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .migrate
            .iter()
            .map(|m| ("migrate", m.clone()))
            .collect();
        out.extend([
            ("read_slots", self.read_slots.to_string()),
            ("create_tokens", self.create_tokens.to_string()),
            ("write_slot", self.write_slot.to_string()),
            ("write_token", self.write_token.to_string()),
            ("release", self.release.to_string()),
            ("refresh", self.refresh.to_string()),
            ("refreshed", self.refreshed.to_string()),
            ("info", self.info.to_string()),
            ("read", self.read.to_string()),
            ("list", self.list.to_string()),
            ("evict", self.evict.to_string()),
            ("job_create", self.job_create.to_string()),
            ("job_read", self.job_read.to_string()),
            ("job_write", self.job_write.to_string()),
            ("job_enable", self.job_enable.to_string()),
            ("job_status", self.job_status.to_string()),
        ]);
        out
    }
}

impl MySql {
    pub(crate) fn new(table: &TableName) -> Self {
        let t = table.as_str();
        let tokens = table.with("_tokens");
        let jobs = table.with("_jobs");
        let now = NOW_US;
        let migrate = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\n\
                 \x20 resource VARBINARY(512) NOT NULL,\n\
                 \x20 slot INT NOT NULL,\n\
                 \x20 permits INT NOT NULL,\n\
                 \x20 token BIGINT NOT NULL,\n\
                 \x20 lease_key BINARY(16) NULL,\n\
                 \x20 owner VARCHAR(256) CHARACTER SET utf8mb4 NOT NULL,\n\
                 \x20 data MEDIUMBLOB NOT NULL,\n\
                 \x20 acquired_us BIGINT NOT NULL,\n\
                 \x20 expires_us BIGINT NOT NULL,\n\
                 \x20 PRIMARY KEY (resource, slot)\n) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {tokens} (\n\
                 \x20 resource VARBINARY(512) NOT NULL PRIMARY KEY,\n\
                 \x20 last_token BIGINT NOT NULL\n) ENGINE=InnoDB"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {jobs} (\n\
                 \x20 component VARBINARY(255) NOT NULL,\n\
                 \x20 job VARBINARY(255) NOT NULL,\n\
                 \x20 enabled BOOLEAN NOT NULL DEFAULT TRUE,\n\
                 \x20 component_id VARCHAR(255) CHARACTER SET utf8mb4 NULL,\n\
                 \x20 job_id VARCHAR(255) CHARACTER SET utf8mb4 NULL,\n\
                 \x20 token BIGINT NOT NULL DEFAULT 0,\n\
                 \x20 locked_us BIGINT NOT NULL DEFAULT 0,\n\
                 \x20 expires_us BIGINT NOT NULL DEFAULT 0,\n\
                 \x20 PRIMARY KEY (component, job)\n) ENGINE=InnoDB"
            ),
        ];
        let live = format!("lease_key IS NOT NULL AND expires_us > {now}");
        let json = "JSON_TABLE(?, '$[*]' COLUMNS (\n\
                    \x20 resource VARCHAR(512) CHARACTER SET utf8mb4 PATH '$.r',\n\
                    \x20 k CHAR(32) PATH '$.k',\n\
                    \x20 ttl BIGINT PATH '$.t')) AS r";
        MySql {
            migrate,
            lock_name: format!("distlock-migrate:{t}"),
            read_slots: format!(
                "SELECT s.slot, s.permits, (s.lease_key IS NOT NULL AND s.expires_us > {now}) AS live,\n\
                 \x20 s.expires_us, t.last_token, {now} AS now_us\n\
                 FROM {tokens} AS t LEFT JOIN {t} AS s ON s.resource = t.resource\n\
                 WHERE t.resource = ? FOR UPDATE"
            )
            .into(),
            create_tokens: format!(
                "INSERT IGNORE INTO {tokens} (resource, last_token) VALUES (?, 0)"
            )
            .into(),
            write_slot: format!(
                "INSERT INTO {t} (resource, slot, permits, token, lease_key, owner, data, acquired_us, expires_us)\n\
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)\n\
                 ON DUPLICATE KEY UPDATE permits = VALUES(permits), token = VALUES(token),\n\
                 \x20 lease_key = VALUES(lease_key), owner = VALUES(owner), data = VALUES(data),\n\
                 \x20 acquired_us = VALUES(acquired_us), expires_us = VALUES(expires_us)"
            )
            .into(),
            write_token: format!("UPDATE {tokens} SET last_token = ? WHERE resource = ?").into(),
            release: format!(
                "UPDATE {t} SET lease_key = NULL, owner = '', data = '', expires_us = {now}\n\
                 WHERE resource = ? AND lease_key = ? AND expires_us > {now}"
            )
            .into(),
            refresh: format!(
                "UPDATE {t} AS l JOIN {json} ON l.resource = r.resource AND l.lease_key = UNHEX(r.k)\n\
                 SET l.expires_us = {now} + r.ttl WHERE l.expires_us > {now}"
            )
            .into(),
            refreshed: format!(
                "SELECT l.lease_key FROM {t} AS l JOIN {json}\n\
                 \x20 ON l.resource = r.resource AND l.lease_key = UNHEX(r.k)\n\
                 WHERE l.expires_us > {now}"
            )
            .into(),
            info: format!(
                "SELECT permits, token, owner, acquired_us, expires_us FROM {t}\n\
                 WHERE resource = ? AND {live} ORDER BY token"
            )
            .into(),
            read: format!("SELECT data FROM {t} WHERE resource = ? AND {live} ORDER BY token LIMIT 1")
                .into(),
            list: format!(
                "SELECT DISTINCT resource FROM {t} WHERE resource LIKE ? ESCAPE '!' AND {live}\n\
                 ORDER BY resource"
            )
            .into(),
            evict: format!(
                "UPDATE {t} SET lease_key = NULL, owner = '', data = '', expires_us = {now}\n\
                 WHERE resource = ? AND {live}"
            )
            .into(),
            job_create: format!("INSERT IGNORE INTO {jobs} (component, job) VALUES (?, ?)").into(),
            job_read: format!(
                "SELECT enabled, component_id, job_id, token, expires_us, {now} AS now_us\n\
                 FROM {jobs} WHERE component = ? AND job = ? FOR UPDATE"
            )
            .into(),
            job_write: format!(
                "UPDATE {jobs} SET component_id = ?, job_id = ?, token = ?, locked_us = ?, expires_us = ?\n\
                 WHERE component = ? AND job = ?"
            )
            .into(),
            job_enable: format!(
                "INSERT INTO {jobs} (component, job, enabled) VALUES (?, ?, ?)\n\
                 ON DUPLICATE KEY UPDATE enabled = VALUES(enabled)"
            )
            .into(),
            job_status: format!(
                "SELECT enabled, component_id, job_id, token, expires_us, {now} AS now_us\n\
                 FROM {jobs} WHERE component = ? AND job = ?"
            )
            .into(),
        }
    }
}

fn q(sql: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    // Safe: built by `MySql::new` from constants and a validated `TableName`.
    AssertSqlSafe(sql.clone())
}

/// The MySQL / MariaDB side of a [`SqlStore`](crate::SqlStore).
#[derive(Debug)]
pub(crate) struct MyBackend {
    pub(crate) pool: MySqlPool,
    pub(crate) sql: MySql,
    pub(crate) retry: Retry,
}

impl MyBackend {
    /// A pooled connection; failing here means nothing was sent.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::MySql>, Fail> {
        self.pool.acquire().await.map_err(Fail::Connect)
    }
}

#[async_trait]
impl LockingTx for MyBackend {
    type Db = sqlx::MySql;
    const BACKEND: &'static str = BACKEND;
    const BEGIN: Option<&'static str> = None;

    fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    fn retry(&self) -> &Retry {
        &self.retry
    }

    async fn read_slots(&self, tx: &mut Tx<Self>, resource: &str) -> Result<Slots, sqlx::Error> {
        let mut rows = sqlx::query(q(&self.sql.read_slots))
            .bind(resource)
            .fetch_all(&mut **tx)
            .await?;
        if rows.is_empty() {
            // No token row yet: create it, then lock it like any other.
            sqlx::query(q(&self.sql.create_tokens))
                .bind(resource)
                .execute(&mut **tx)
                .await?;
            rows = sqlx::query(q(&self.sql.read_slots))
                .bind(resource)
                .fetch_all(&mut **tx)
                .await?;
        }
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
            .bind(i32::try_from(grant.permits).unwrap_or(i32::MAX))
            .bind(grant.token)
            .bind(grant.key)
            .bind(grant.owner)
            .bind(grant.data)
            .bind(grant.acquired_us)
            .bind(grant.expires_us)
            .execute(&mut **tx)
            .await?;
        sqlx::query(q(&self.sql.write_token))
            .bind(grant.token)
            .bind(grant.resource)
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
impl SqlBackend for MyBackend {
    fn dialect(&self) -> Dialect {
        Dialect::MySql
    }

    fn statements(&self) -> Vec<(&'static str, String)> {
        self.sql.named()
    }

    fn serialization_retries(&self) -> u64 {
        self.retry.count()
    }

    fn endpoint(&self) -> String {
        endpoint(&self.pool.connect_options())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let op = Op::write(BACKEND, "migrate");
        let run = async {
            let mut conn = self.pool.acquire().await?;
            // CREATE TABLE IF NOT EXISTS is atomic in InnoDB, but a named lock
            // keeps racing processes from interleaving the three statements.
            let _: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 30)")
                .bind(&self.sql.lock_name)
                .fetch_one(&mut *conn)
                .await?;
            let mut result = Ok(());
            for statement in &self.sql.migrate {
                if let Err(e) = sqlx::query(AssertSqlSafe(statement.as_str()))
                    .execute(&mut *conn)
                    .await
                {
                    result = Err(e);
                    break;
                }
            }
            let _: Option<i64> = sqlx::query_scalar("SELECT RELEASE_LOCK(?)")
                .bind(&self.sql.lock_name)
                .fetch_one(&mut *conn)
                .await?;
            result
        };
        run.await.map_err(|e| map(op, "", e))
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
        let done = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query(q(&self.sql.release))
                    .bind(resource)
                    .bind(&key[..])
                    .execute(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let op = Op::write(BACKEND, "refresh");
        let label = leases.first().map_or("", |l| l.resource);
        let json = refresh_json(leases);
        let renewed: Option<Vec<Vec<u8>>> = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                let matched = sqlx::query(q(&self.sql.refresh))
                    .bind(&json)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if usize::try_from(matched).is_ok_and(|m| m == leases.len()) {
                    // Every lease matched the WHERE (key held, unexpired): all renewed.
                    return Ok(None);
                }
                Ok(Some(
                    sqlx::query_scalar(q(&self.sql.refreshed))
                        .bind(&json)
                        .fetch_all(&mut *conn)
                        .await?,
                ))
            })
            .await
            .map_err(|e| map(op, label, e))?;
        Ok(match renewed {
            None => vec![Refreshed::Renewed; leases.len()],
            Some(renewed) => outcomes(leases, &renewed),
        })
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
        // VARBINARY (exact, byte-ordered names) comes back as bytes.
        let names: Vec<Vec<u8>> = sqlx::query_scalar(q(&self.sql.list))
            .bind(like_prefix(prefix))
            .fetch_all(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, prefix, e))?;
        names
            .into_iter()
            .map(|name| {
                String::from_utf8(name).map_err(|e| {
                    distlock_core::Error::store(BACKEND, format!("resource name not UTF-8: {e}"))
                })
            })
            .collect()
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
        let row = sqlx::query(q(&self.sql.job_status))
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

fn decode_slots(rows: &[MySqlRow]) -> Result<Slots, sqlx::Error> {
    let mut slots = Vec::with_capacity(rows.len());
    let mut last_token = 0;
    let mut now_us = 0;
    for row in rows {
        last_token = row.try_get("last_token")?;
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

fn decode_holder(row: &MySqlRow) -> Result<(u32, Holder), sqlx::Error> {
    let permits: i32 = row.try_get("permits")?;
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

fn decode_job(row: &MySqlRow) -> Result<(JobRow, i64), sqlx::Error> {
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
