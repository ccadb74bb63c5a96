//! The databases served, and the one internal trait every dialect implements
//! ([`SqlBackend`]): the store and the job locks call it and nothing else.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Info, LeaseKey, RefreshRequest, Refreshed, Result, Wakeup,
};

use crate::rows::{JobKey, JobOutcome};

/// A database flavour: decides the SQL this crate emits.
///
/// Every dialect uses the same three tables (see the crate docs); what differs
/// is how one acquire is expressed:
///
/// | dialect | acquire | clock |
/// |---|---|---|
/// | [`Postgres`](Dialect::Postgres) | one statement (CTE: snapshot, compare-and-set of the token row, `INSERT … ON CONFLICT … DO UPDATE … WHERE free … RETURNING`) | `clock_timestamp()` |
/// | [`Cockroach`](Dialect::Cockroach) | the same statement, 40001 retried | `clock_timestamp()` |
/// | [`MySql`](Dialect::MySql) | one transaction: locking read, decide, write, commit | `SYSDATE(6)` |
/// | [`Sqlite`](Dialect::Sqlite) | one `BEGIN IMMEDIATE` transaction (single writer) | `unixepoch('subsec')` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL 12 or later.
    Postgres,
    /// CockroachDB (PostgreSQL wire protocol, always `SERIALIZABLE`, no
    /// advisory locks, no LISTEN/NOTIFY).
    Cockroach,
    /// MySQL 8.0.4+ or MariaDB 10.6+ (`JSON_TABLE`).
    MySql,
    /// SQLite 3.42+ (bundled), a file shared by the processes of one host.
    Sqlite,
}

impl Dialect {
    /// The backend name used in errors, traces and [`Capabilities`](distlock_core::Capabilities).
    pub fn backend(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Cockroach => "cockroach",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend())
    }
}

/// One dialect's side of a [`SqlStore`](crate::SqlStore): each store call,
/// job lock call and maintenance call, run in that dialect's SQL. Implemented
/// by the PostgreSQL backend (PostgreSQL and CockroachDB), MySQL and SQLite;
/// MySQL and SQLite share their transactions through [`crate::txn`].
#[async_trait]
pub(crate) trait SqlBackend: fmt::Debug + Send + Sync + 'static {
    /// The flavour served.
    fn dialect(&self) -> Dialect;
    /// Every statement by name (migration statements first).
    fn statements(&self) -> Vec<(&'static str, String)>;
    /// The server (`host:port`, socket path or SQLite file) errors name.
    fn endpoint(&self) -> String;
    /// Serialization failures retried so far.
    fn serialization_retries(&self) -> u64;
    /// The store can push wake-ups ([`SqlBackend::subscribe`]).
    fn push_wakeup(&self) -> bool {
        false
    }
    /// Close the pool (and any push connection).
    async fn close(&self);
    /// Create the tables if missing.
    async fn migrate(&self) -> Result<()>;
    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired>;
    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool>;
    /// Renew a non-empty batch.
    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>>;
    async fn info(&self, resource: &str) -> Result<Option<Info>>;
    async fn read(&self, resource: &str) -> Result<Option<Bytes>>;
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// End every live lease of `resource`, keeping its token row.
    async fn evict(&self, resource: &str) -> Result<u64>;
    /// A wake-up for the next release of `resource`, if the store can push.
    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let _ = resource;
        Ok(None)
    }
    async fn job_lock(&self, job: &JobKey<'_>, max: Duration) -> Result<JobOutcome>;
    async fn job_unlock(&self, job: &JobKey<'_>) -> Result<JobOutcome>;
    async fn job_enable(&self, component: &str, job: &str, enabled: bool) -> Result<()>;
    async fn job_status(&self, component: &str, job: &str) -> Result<JobOutcome>;
}
