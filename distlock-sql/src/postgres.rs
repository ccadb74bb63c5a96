//! PostgreSQL: the SQL of the lock tables, and how each store call runs it.
//!
//! Acquire is **one statement, one round trip** (a CTE):
//!
//! 1. `live`/`snap`: read the resource's unexpired slots and its token row from
//!    the statement's snapshot; choose the lowest free slot below `permits`;
//!    note a size mismatch and the first expiry;
//! 2. `tok`: only if the snapshot allows a grant, bump the resource's token row
//!    with a **compare-and-set** on the token seen in the snapshot (`ON CONFLICT
//!    … DO UPDATE … WHERE last_token = <snapshot>`). Row locking re-reads the
//!    latest row version, so the bump fails if any grant committed after the
//!    snapshot was taken: every grant bumps that row first, so a successful
//!    bump proves the snapshot's view of the slots is current;
//! 3. `granted`: write the lease into the chosen slot with `INSERT … ON
//!    CONFLICT (resource, slot) DO UPDATE … WHERE the slot is free or expired …
//!    RETURNING`. Again judged on the latest row version: a refresh that
//!    committed after the snapshot still wins.
//!
//! A compare-and-set that lost (another grant came first) answers "raced" and
//! the store retries at once with a new snapshot (bounded), so `READ
//! COMMITTED`, `REPEATABLE READ` and `SERIALIZABLE` are all correct (the last
//! two turn the same races into SQLSTATE 40001, retried with backoff).
//!
//! Time is `clock_timestamp()` (the server's wall clock at evaluation, not the
//! transaction start), stored as microseconds since the Unix epoch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Grant, Holder, Info, LeaseKey, RefreshRequest, Refreshed, Result,
    Wakeup,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row};

use crate::dialect::{Dialect, SqlBackend};
use crate::error::{Fail, Op, Retry, host_port, map};
use crate::layout::{TableName, like_prefix};
use crate::notify::Listener;
use crate::rows::{JobKey, JobOutcome, JobState, micros_to_time, ttl_micros};

/// `host:port` (or the socket path) of a PostgreSQL connection.
pub(crate) fn endpoint(connect: &PgConnectOptions) -> String {
    match connect.get_socket() {
        Some(path) => path.display().to_string(),
        None => host_port(connect.get_host(), connect.get_port()),
    }
}

/// How often one acquire retries at once after losing a race to a concurrent
/// grant (the compare-and-set of the token row), before answering "held".
const RACE_RETRIES: usize = 8;

/// The server's clock in microseconds since the Unix epoch.
pub(crate) const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::int8";

/// Every statement of one table and flavour (PostgreSQL or CockroachDB).
#[derive(Debug)]
pub(crate) struct PgSql {
    pub(crate) migrate: Vec<String>,
    pub(crate) acquire: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) refresh: Arc<str>,
    pub(crate) info: Arc<str>,
    pub(crate) read: Arc<str>,
    pub(crate) list: Arc<str>,
    pub(crate) evict: Arc<str>,
    pub(crate) job_lock: Arc<str>,
    pub(crate) job_unlock: Arc<str>,
    pub(crate) job_enable: Arc<str>,
    pub(crate) job_status: Arc<str>,
}

impl PgSql {
    /// Every statement by name (migration statements first).
    pub(crate) fn named(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .migrate
            .iter()
            .map(|m| ("migrate", m.clone()))
            .collect();
        out.extend([
            ("acquire", self.acquire.to_string()),
            ("release", self.release.to_string()),
            ("refresh", self.refresh.to_string()),
            ("info", self.info.to_string()),
            ("read", self.read.to_string()),
            ("list", self.list.to_string()),
            ("evict", self.evict.to_string()),
            ("job_lock", self.job_lock.to_string()),
            ("job_unlock", self.job_unlock.to_string()),
            ("job_enable", self.job_enable.to_string()),
            ("job_status", self.job_status.to_string()),
        ]);
        out
    }
}

/// Flavour switches between PostgreSQL and CockroachDB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flavour {
    /// The dialect served.
    pub(crate) dialect: Dialect,
    /// `COLLATE "C"` on names (PostgreSQL: byte order for `list`; CockroachDB
    /// strings already sort by bytes).
    pub(crate) collate: &'static str,
    /// `AS MATERIALIZED` for CTEs read more than once.
    pub(crate) materialized: &'static str,
    /// Release notifies waiters (`pg_notify`).
    pub(crate) notify: bool,
    /// Migration serialised by `pg_advisory_xact_lock`.
    pub(crate) advisory_lock: bool,
}

pub(crate) const POSTGRES: Flavour = Flavour {
    dialect: Dialect::Postgres,
    collate: " COLLATE \"C\"",
    materialized: " MATERIALIZED",
    notify: true,
    advisory_lock: true,
};

impl PgSql {
    pub(crate) fn new(table: &TableName, flavour: Flavour) -> Self {
        let t = table.as_str();
        let tokens = table.with("_tokens");
        let jobs = table.with("_jobs");
        let c = flavour.collate;
        let m = flavour.materialized;
        let now = NOW_US;
        let mut migrate = Vec::new();
        if flavour.advisory_lock {
            // Two processes migrating at once: CREATE TABLE IF NOT EXISTS alone
            // races on the catalog (duplicate pg_type). Serialise on a lock
            // named after the table, held until this transaction commits.
            migrate.push(format!(
                "SELECT pg_advisory_xact_lock(hashtext('distlock-migrate:{t}'))"
            ));
        }
        migrate.push(format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n\
             \x20 resource TEXT{c} NOT NULL,\n\
             \x20 slot INT4 NOT NULL,\n\
             \x20 permits INT4 NOT NULL,\n\
             \x20 token INT8 NOT NULL,\n\
             \x20 lease_key BYTEA,\n\
             \x20 owner TEXT NOT NULL DEFAULT '',\n\
             \x20 data BYTEA NOT NULL DEFAULT ''::BYTEA,\n\
             \x20 acquired_us INT8 NOT NULL,\n\
             \x20 expires_us INT8 NOT NULL,\n\
             \x20 PRIMARY KEY (resource, slot)\n)"
        ));
        migrate.push(format!(
            "CREATE TABLE IF NOT EXISTS {tokens} (\n\
             \x20 resource TEXT{c} NOT NULL PRIMARY KEY,\n\
             \x20 last_token INT8 NOT NULL\n)"
        ));
        migrate.push(format!(
            "CREATE TABLE IF NOT EXISTS {jobs} (\n\
             \x20 component TEXT{c} NOT NULL,\n\
             \x20 job TEXT{c} NOT NULL,\n\
             \x20 enabled BOOL NOT NULL DEFAULT TRUE,\n\
             \x20 component_id TEXT,\n\
             \x20 job_id TEXT,\n\
             \x20 token INT8 NOT NULL DEFAULT 0,\n\
             \x20 locked_us INT8 NOT NULL DEFAULT 0,\n\
             \x20 expires_us INT8 NOT NULL DEFAULT 0,\n\
             \x20 PRIMARY KEY (component, job)\n)"
        ));

        // $1 resource, $2 permits, $3 key, $4 owner, $5 data, $6 ttl µs
        let acquire = format!(
            "WITH live AS{m} (\n\
             \x20 SELECT slot, permits, expires_us FROM {t}\n\
             \x20 WHERE resource = $1 AND lease_key IS NOT NULL AND expires_us > {now}\n\
             ), snap AS{m} (\n\
             \x20 SELECT\n\
             \x20   (SELECT last_token FROM {tokens} WHERE resource = $1) AS last_token,\n\
             \x20   (SELECT count(*) FROM live) AS held,\n\
             \x20   (SELECT max(permits) FROM live WHERE permits <> $2) AS other_permits,\n\
             \x20   (SELECT min(expires_us) FROM live) AS first_expiry,\n\
             \x20   (SELECT s FROM generate_series(0, $2 - 1) AS s\n\
             \x20    WHERE s NOT IN (SELECT slot FROM live) ORDER BY s LIMIT 1) AS free_slot\n\
             ), tok AS (\n\
             \x20 INSERT INTO {tokens} AS c (resource, last_token)\n\
             \x20 SELECT $1, 1 FROM snap WHERE snap.other_permits IS NULL AND snap.free_slot IS NOT NULL\n\
             \x20 ON CONFLICT (resource) DO UPDATE SET last_token = c.last_token + 1\n\
             \x20 WHERE c.last_token = (SELECT last_token FROM snap)\n\
             \x20 RETURNING c.last_token\n\
             ), granted AS (\n\
             \x20 INSERT INTO {t} AS l (resource, slot, permits, token, lease_key, owner, data, acquired_us, expires_us)\n\
             \x20 SELECT $1, snap.free_slot, $2, tok.last_token, $3, $4, $5, n.now_us, n.now_us + $6\n\
             \x20 FROM tok, snap, (SELECT {now} AS now_us) AS n\n\
             \x20 ON CONFLICT (resource, slot) DO UPDATE SET permits = excluded.permits, token = excluded.token,\n\
             \x20   lease_key = excluded.lease_key, owner = excluded.owner, data = excluded.data,\n\
             \x20   acquired_us = excluded.acquired_us, expires_us = excluded.expires_us\n\
             \x20 WHERE l.lease_key IS NULL OR l.expires_us <= excluded.acquired_us\n\
             \x20 RETURNING l.token, l.expires_us\n\
             )\n\
             SELECT (SELECT token FROM granted) AS token, (SELECT expires_us FROM granted) AS expires_us,\n\
             \x20 snap.free_slot, snap.other_permits, snap.first_expiry, {now} AS now_us\n\
             FROM snap"
        );

        // $1 resource, $2 key, $3 channel
        let release = if flavour.notify {
            format!(
                "WITH rel AS (\n\
                 \x20 UPDATE {t} SET lease_key = NULL, owner = '', data = ''::BYTEA, expires_us = {now}\n\
                 \x20 WHERE resource = $1 AND lease_key = $2 AND expires_us > {now}\n\
                 \x20 RETURNING resource\n\
                 )\n\
                 SELECT count(*) AS released FROM rel WHERE pg_notify($3, rel.resource)::TEXT = ''"
            )
        } else {
            format!(
                "WITH rel AS (\n\
                 \x20 UPDATE {t} SET lease_key = NULL, owner = '', data = ''::BYTEA, expires_us = {now}\n\
                 \x20 WHERE resource = $1 AND lease_key = $2 AND expires_us > {now}\n\
                 \x20 RETURNING resource\n\
                 )\n\
                 SELECT count(*) AS released FROM rel"
            )
        };

        // $1 resources, $2 keys, $3 ttls µs: all leases in one statement.
        let refresh = format!(
            "UPDATE {t} AS l SET expires_us = {now} + r.ttl_us\n\
             FROM unnest($1::TEXT[], $2::BYTEA[], $3::INT8[]) AS r(resource, lease_key, ttl_us)\n\
             WHERE l.resource = r.resource AND l.lease_key = r.lease_key AND l.expires_us > {now}\n\
             RETURNING l.lease_key"
        );

        let live = format!("lease_key IS NOT NULL AND expires_us > {now}");
        let info = format!(
            "SELECT permits, token, owner, acquired_us, expires_us FROM {t}\n\
             WHERE resource = $1 AND {live} ORDER BY token"
        );
        let read =
            format!("SELECT data FROM {t} WHERE resource = $1 AND {live} ORDER BY token LIMIT 1");
        let list = format!(
            "SELECT DISTINCT resource FROM {t} WHERE resource LIKE $1 ESCAPE '!' AND {live}\n\
             ORDER BY resource"
        );
        // $1 resource, $2 channel: every live lease, waiters woken as by release.
        let evicted = format!(
            "WITH ev AS (\n\
             \x20 UPDATE {t} SET lease_key = NULL, owner = '', data = ''::BYTEA, expires_us = {now}\n\
             \x20 WHERE resource = $1 AND {live}\n\
             \x20 RETURNING resource\n\
             )\n\
             SELECT count(*) AS evicted FROM ev"
        );
        let evict = if flavour.notify {
            format!("{evicted} WHERE pg_notify($2, ev.resource)::TEXT = ''")
        } else {
            evicted
        };

        // $1 component, $2 job, $3 component id, $4 job id, $5 max duration µs
        let job_lock = format!(
            "WITH cur AS (\n\
             \x20 SELECT enabled, component_id, job_id, expires_us FROM {jobs} WHERE component = $1 AND job = $2\n\
             ), up AS (\n\
             \x20 INSERT INTO {jobs} AS j (component, job, enabled, component_id, job_id, token, locked_us, expires_us)\n\
             \x20 SELECT $1, $2, TRUE, $3, $4, 1, n.now_us, n.now_us + $5 FROM (SELECT {now} AS now_us) AS n\n\
             \x20 ON CONFLICT (component, job) DO UPDATE SET component_id = excluded.component_id,\n\
             \x20   job_id = excluded.job_id, token = j.token + 1, locked_us = excluded.locked_us,\n\
             \x20   expires_us = excluded.expires_us\n\
             \x20 WHERE j.enabled AND (j.component_id IS NULL OR j.expires_us <= excluded.locked_us\n\
             \x20   OR (j.component_id = excluded.component_id AND j.job_id = excluded.job_id))\n\
             \x20 RETURNING j.token, j.expires_us\n\
             )\n\
             SELECT (SELECT token FROM up) AS token, (SELECT expires_us FROM up) AS expires_us,\n\
             \x20 cur.enabled, cur.component_id, cur.job_id, cur.expires_us AS cur_expires_us, {now} AS now_us\n\
             FROM (SELECT 1) AS one LEFT JOIN cur ON TRUE"
        );
        // $1 component, $2 job, $3 component id, $4 job id
        let job_unlock = format!(
            "WITH cur AS (\n\
             \x20 SELECT enabled, component_id, job_id, expires_us FROM {jobs} WHERE component = $1 AND job = $2\n\
             ), up AS (\n\
             \x20 UPDATE {jobs} SET component_id = NULL, job_id = NULL, expires_us = {now}\n\
             \x20 WHERE component = $1 AND job = $2 AND component_id = $3 AND job_id = $4\n\
             \x20 RETURNING token\n\
             )\n\
             SELECT (SELECT token FROM up) AS token, NULL::INT8 AS expires_us,\n\
             \x20 cur.enabled, cur.component_id, cur.job_id, cur.expires_us AS cur_expires_us, {now} AS now_us\n\
             FROM (SELECT 1) AS one LEFT JOIN cur ON TRUE"
        );
        // $1 component, $2 job, $3 enabled
        let job_enable = format!(
            "INSERT INTO {jobs} AS j (component, job, enabled) VALUES ($1, $2, $3)\n\
             ON CONFLICT (component, job) DO UPDATE SET enabled = excluded.enabled"
        );
        let job_status = format!(
            "SELECT NULL::INT8 AS token, NULL::INT8 AS expires_us, enabled, component_id, job_id,\n\
             \x20 expires_us AS cur_expires_us, {now} AS now_us\n\
             FROM (SELECT 1) AS one LEFT JOIN {jobs} ON component = $1 AND job = $2"
        );

        PgSql {
            migrate,
            acquire: acquire.into(),
            release: release.into(),
            refresh: refresh.into(),
            info: info.into(),
            read: read.into(),
            list: list.into(),
            evict: evict.into(),
            job_lock: job_lock.into(),
            job_unlock: job_unlock.into(),
            job_enable: job_enable.into(),
            job_status: job_status.into(),
        }
    }
}

fn q(sql: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    // Safe: built by `PgSql::new` from constants and a validated `TableName`.
    AssertSqlSafe(sql.clone())
}

/// The PostgreSQL / CockroachDB side of a [`SqlStore`](crate::SqlStore).
#[derive(Debug)]
pub(crate) struct PgBackend {
    pub(crate) pool: PgPool,
    pub(crate) sql: PgSql,
    pub(crate) dialect: Dialect,
    pub(crate) retry: Retry,
    /// NOTIFY channel (the table name); `None` on CockroachDB.
    pub(crate) channel: Option<String>,
    /// PostgreSQL only: the LISTEN connection that wakes waiters.
    pub(crate) listener: Option<Listener>,
}

impl PgBackend {
    /// A backend of `flavour` ([`POSTGRES`], with push wake-ups, or
    /// CockroachDB's) over `pool`.
    pub(crate) fn new(pool: PgPool, flavour: Flavour, table: &TableName) -> Self {
        let dialect = flavour.dialect;
        let sql = PgSql::new(table, flavour);
        let channel = flavour.notify.then(|| table.as_str().to_owned());
        let listener = channel
            .as_ref()
            .map(|channel| Listener::new(pool.clone(), channel.clone()));
        PgBackend {
            pool,
            sql,
            dialect,
            retry: Retry::default(),
            channel,
            listener,
        }
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.stop();
        }
    }
}

enum AcquireRow {
    Done(Acquired),
    SizeMismatch(u32),
    Raced,
}

impl PgBackend {
    /// A pooled connection; failing here means nothing was sent.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, Fail> {
        self.pool.acquire().await.map_err(Fail::Connect)
    }
    fn backend(&self) -> &'static str {
        self.dialect.backend()
    }
}

#[async_trait]
impl SqlBackend for PgBackend {
    fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn statements(&self) -> Vec<(&'static str, String)> {
        self.sql.named()
    }

    fn serialization_retries(&self) -> u64 {
        self.retry.count()
    }

    fn push_wakeup(&self) -> bool {
        self.listener.is_some()
    }

    fn endpoint(&self) -> String {
        endpoint(&self.pool.connect_options())
    }

    async fn close(&self) {
        if let Some(listener) = &self.listener {
            listener.stop();
        }
        self.pool.close().await;
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        match &self.listener {
            Some(listener) => listener.subscribe(resource).await.map(Some),
            None => Ok(None),
        }
    }

    async fn migrate(&self) -> Result<()> {
        let op = Op::write(self.backend(), "migrate");
        self.retry
            .run(|| async {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
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
        let AcquireRequest {
            resource,
            key,
            ttl,
            permits,
            owner,
            data,
            ..
        } = *request;
        let op = Op::write(self.backend(), "acquire");
        let key = key.as_u128().to_be_bytes();
        let permits_i = i32::try_from(permits).unwrap_or(i32::MAX);
        let ttl_us = ttl_micros(ttl);
        for _ in 0..RACE_RETRIES {
            let row = self
                .retry
                .run(|| async {
                    let mut conn = self.conn().await?;
                    sqlx::query(q(&self.sql.acquire))
                        .bind(resource)
                        .bind(permits_i)
                        .bind(&key[..])
                        .bind(owner)
                        .bind(&data[..])
                        .bind(ttl_us)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(Fail::from)
                })
                .await
                .map_err(|e| map(op, resource, e))?;
            match decode_acquire(&row).map_err(|e| map(op, resource, e))? {
                AcquireRow::Done(answer) => return Ok(answer),
                AcquireRow::SizeMismatch(existing) => {
                    return Err(distlock_core::Error::SizeMismatch {
                        resource: resource.to_owned(),
                        requested: permits,
                        existing,
                    });
                }
                AcquireRow::Raced => continue,
            }
        }
        // Others kept winning the races: held for now, try again soon.
        Ok(Acquired::Held {
            retry_after: Some(Duration::from_millis(1)),
        })
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let op = Op::write(self.backend(), "release");
        let key = key.as_u128().to_be_bytes();
        let channel = self.channel.as_deref().unwrap_or("");
        let released: i64 = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                let query = sqlx::query_scalar(q(&self.sql.release))
                    .bind(resource)
                    .bind(&key[..]);
                let query = if self.channel.is_some() {
                    query.bind(channel)
                } else {
                    query
                };
                query.fetch_one(&mut *conn).await.map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(released > 0)
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let op = Op::write(self.backend(), "refresh");
        let label = leases.first().map_or("", |l| l.resource);
        let resources: Vec<&str> = leases.iter().map(|l| l.resource).collect();
        let keys: Vec<Vec<u8>> = leases
            .iter()
            .map(|l| l.key.as_u128().to_be_bytes().to_vec())
            .collect();
        let ttls: Vec<i64> = leases.iter().map(|l| ttl_micros(l.ttl)).collect();
        let renewed: Vec<Vec<u8>> = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query_scalar(q(&self.sql.refresh))
                    .bind(&resources)
                    .bind(&keys)
                    .bind(&ttls)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, label, e))?;
        Ok(crate::rows::outcomes(leases, &renewed))
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        let op = Op::read(self.backend(), "info");
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
        let op = Op::read(self.backend(), "read");
        let data: Option<Vec<u8>> = sqlx::query_scalar(q(&self.sql.read))
            .bind(resource)
            .fetch_optional(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(data.map(Bytes::from))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let op = Op::read(self.backend(), "list");
        sqlx::query_scalar(q(&self.sql.list))
            .bind(like_prefix(prefix))
            .fetch_all(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, prefix, e))
    }

    async fn evict(&self, resource: &str) -> Result<u64> {
        let op = Op::write(self.backend(), "evict");
        let evicted: i64 = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                let query = sqlx::query_scalar(q(&self.sql.evict)).bind(resource);
                let query = match &self.channel {
                    Some(channel) => query.bind(channel.as_str()),
                    None => query,
                };
                query.fetch_one(&mut *conn).await.map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, resource, e))?;
        Ok(u64::try_from(evicted).unwrap_or(0))
    }

    async fn job_lock(&self, job: &JobKey<'_>, max: Duration) -> Result<JobOutcome> {
        let op = Op::write(self.backend(), "job lock");
        let row = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query(q(&self.sql.job_lock))
                    .bind(job.component)
                    .bind(job.job)
                    .bind(job.component_id)
                    .bind(job.job_id)
                    .bind(ttl_micros(max))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, job.job, e))?;
        decode_job(&row).map_err(|e| map(op, job.job, e))
    }

    async fn job_unlock(&self, job: &JobKey<'_>) -> Result<JobOutcome> {
        let op = Op::write(self.backend(), "job unlock");
        let row = self
            .retry
            .run(|| async {
                let mut conn = self.conn().await?;
                sqlx::query(q(&self.sql.job_unlock))
                    .bind(job.component)
                    .bind(job.job)
                    .bind(job.component_id)
                    .bind(job.job_id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(Fail::from)
            })
            .await
            .map_err(|e| map(op, job.job, e))?;
        decode_job(&row).map_err(|e| map(op, job.job, e))
    }

    async fn job_enable(&self, component: &str, job: &str, enabled: bool) -> Result<()> {
        let op = Op::write(self.backend(), "job enable");
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
        let op = Op::read(self.backend(), "job status");
        let row = sqlx::query(q(&self.sql.job_status))
            .bind(component)
            .bind(job)
            .fetch_one(&mut *self.conn().await.map_err(|e| map(op, "", e))?)
            .await
            .map_err(|e| map(op, job, e))?;
        decode_job(&row).map_err(|e| map(op, job, e))
    }
}

fn decode_acquire(row: &PgRow) -> Result<AcquireRow, sqlx::Error> {
    let token: Option<i64> = row.try_get("token")?;
    let expires_us: Option<i64> = row.try_get("expires_us")?;
    let free_slot: Option<i32> = row.try_get("free_slot")?;
    let other_permits: Option<i32> = row.try_get("other_permits")?;
    let first_expiry: Option<i64> = row.try_get("first_expiry")?;
    let now_us: i64 = row.try_get("now_us")?;
    Ok(match (token, expires_us, other_permits, free_slot) {
        (Some(token), Some(expires), _, _) => AcquireRow::Done(Acquired::Granted(Grant::new(
            u64::try_from(token).unwrap_or(0),
            micros_to_time(expires),
        ))),
        (_, _, Some(existing), _) => AcquireRow::SizeMismatch(u32::try_from(existing).unwrap_or(0)),
        (_, _, None, Some(_)) => AcquireRow::Raced,
        _ => AcquireRow::Done(Acquired::Held {
            retry_after: first_expiry.map(|e| {
                Duration::from_micros(u64::try_from(e.saturating_sub(now_us)).unwrap_or(0))
            }),
        }),
    })
}

fn decode_holder(row: &PgRow) -> Result<(u32, Holder), sqlx::Error> {
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

fn decode_job(row: &PgRow) -> Result<JobOutcome, sqlx::Error> {
    let token: Option<i64> = row.try_get("token")?;
    let expires_us: Option<i64> = row.try_get("expires_us")?;
    let enabled: Option<bool> = row.try_get("enabled")?;
    let component_id: Option<String> = row.try_get("component_id")?;
    let job_id: Option<String> = row.try_get("job_id")?;
    let cur_expires: Option<i64> = row.try_get("cur_expires_us")?;
    let now_us: i64 = row.try_get("now_us")?;
    Ok(JobOutcome {
        token: token.map(|t| u64::try_from(t).unwrap_or(0)),
        expires_at: expires_us.map(micros_to_time),
        state: enabled.map(|enabled| JobState {
            enabled,
            holder: match (component_id, job_id) {
                (Some(c), Some(j)) if cur_expires.unwrap_or(0) > now_us => {
                    Some((c, j, micros_to_time(cur_expires.unwrap_or(0))))
                }
                _ => None,
            },
        }),
    })
}
