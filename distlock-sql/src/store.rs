//! [`SqlStore`]: the [`Store`] over any of the four dialects.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Info, LeaseKey, RefreshRequest, Refreshed, Result,
    Store, StoreLocker, Wakeup,
};

use crate::dialect::{Dialect, TableName};
use crate::mysql::MyBackend;
use crate::notify::Listener;
use crate::postgres::PgBackend;
use crate::sqlite::LiteBackend;

/// How often one acquire retries at once after losing a race to a concurrent
/// grant (PostgreSQL/CockroachDB compare-and-set), before answering "held".
pub(crate) const RACE_RETRIES: usize = 8;

/// Default longest time one store call may take ([`SqlOptions::call_timeout`](crate::SqlOptions::call_timeout)).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest TTL: a lease must outlive a few round trips to a loaded server.
pub const MIN_TTL: Duration = Duration::from_millis(100);

/// A lock table in a SQL database: PostgreSQL, CockroachDB, MySQL/MariaDB or
/// SQLite. Cloning shares the connection pool; give each "client" its own
/// locker with [`SqlStore::locker`].
///
/// Build one with [`SqlStore::connect`] (or the `from_*_pool` constructors),
/// call [`SqlStore::migrate`] once per database (idempotent, safe to race),
/// then take locks through [`SqlStore::locker`].
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) caps: Capabilities,
    pub(crate) table: TableName,
    pub(crate) dialect: Dialect,
    pub(crate) backend: Backend,
    /// PostgreSQL only: the LISTEN connection that wakes waiters.
    pub(crate) listener: Option<Listener>,
    /// Longest one store call may take (a server that accepts connections but
    /// never answers must not hang a caller).
    pub(crate) call_timeout: Duration,
}

pub(crate) enum Backend {
    Pg(PgBackend),
    MySql(MyBackend),
    Sqlite(LiteBackend),
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL or options: they may carry a password.
        f.debug_struct("SqlStore")
            .field("dialect", &self.inner.dialect)
            .field("table", &self.inner.table.as_str())
            .finish_non_exhaustive()
    }
}

/// A [`Locker`](distlock_core::Locker) over a [`SqlStore`].
pub type SqlLocker = StoreLocker<SqlStore>;

impl SqlStore {
    pub(crate) fn build(dialect: Dialect, table: TableName, backend: Backend) -> Self {
        let push = matches!(&backend, Backend::Pg(pg) if pg.channel.is_some());
        let caps = Capabilities::new(dialect.backend())
            .with_min_ttl(MIN_TTL)
            .with_push_wakeup(push)
            .with_batch_refresh(true);
        let listener = match &backend {
            Backend::Pg(pg) => pg
                .channel
                .as_ref()
                .map(|channel| Listener::new(pg.pool.clone(), channel.clone())),
            _ => None,
        };
        SqlStore {
            inner: Arc::new(Inner {
                caps,
                table,
                dialect,
                backend,
                listener,
                call_timeout: DEFAULT_CALL_TIMEOUT,
            }),
        }
    }

    /// The same store with another bound on each call (default
    /// [`DEFAULT_CALL_TIMEOUT`]); only before the store is shared.
    pub(crate) fn with_call_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.call_timeout = timeout;
        }
        self
    }

    /// Run one store call within the call timeout.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        resource: &str,
        writes: bool,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.call_timeout, call).await {
            Ok(answer) => answer,
            Err(_) => {
                let message = format!(
                    "no answer within {:?} (the server accepted the connection but did not reply)",
                    self.inner.call_timeout
                );
                let backend = self.inner.dialect.backend();
                Err(if writes {
                    distlock_core::Error::OutcomeUnknown {
                        backend,
                        operation,
                        resource: resource.to_owned(),
                        source: message.into(),
                    }
                } else {
                    distlock_core::Error::unavailable(backend, message)
                })
            }
        }
    }

    /// A new locker (a "client") over this store, sharing its pool.
    pub fn locker(&self) -> SqlLocker {
        StoreLocker::new(self.clone())
    }

    /// The database flavour.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The table base name.
    pub fn table(&self) -> &TableName {
        &self.inner.table
    }

    /// Create the lock tables if they do not exist: `NAME`, `NAME_tokens` and
    /// `NAME_jobs`. Idempotent, and safe when several processes call it at
    /// once (PostgreSQL: serialised by an advisory lock; MySQL: `GET_LOCK`;
    /// SQLite: `BEGIN IMMEDIATE`; CockroachDB: `IF NOT EXISTS`, conflicts
    /// retried). Existing rows, and so fencing tokens, are never touched.
    ///
    /// # Errors
    /// [`Store`](distlock_core::Error::Store) if the user may not create
    /// tables; [`Unavailable`](distlock_core::Error::Unavailable) if the
    /// database cannot be reached.
    pub async fn migrate(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Pg(b) => b.migrate().await,
            Backend::MySql(b) => b.migrate().await,
            Backend::Sqlite(b) => b.migrate().await,
        }
    }

    /// End every lease of `resource` now, as an operator would, without
    /// telling holders or waiters (their next refresh fails; waiters poll or
    /// wait for the holder's expiry). The token counter is kept. Returns how
    /// many leases ended. The conformance suite uses this.
    ///
    /// # Errors
    /// As [`Store::release`].
    pub async fn expire(&self, resource: &str) -> Result<u64> {
        match &self.inner.backend {
            Backend::Pg(b) => b.expire(resource).await,
            Backend::MySql(b) => b.expire(resource).await,
            Backend::Sqlite(b) => b.expire(resource).await,
        }
    }

    /// Serialization failures (SQLSTATE 40001, deadlocks) retried so far by
    /// this store.
    pub fn serialization_retries(&self) -> u64 {
        match &self.inner.backend {
            Backend::Pg(b) => b.retry.count(),
            Backend::MySql(b) => b.retry.count(),
            Backend::Sqlite(b) => b.retry.count(),
        }
    }

    /// The SQL this store runs, by name (`acquire`, `release`, `refresh`, …), in
    /// the order a reviewer would read them. The parameters are positional;
    /// see each dialect's module docs. Nothing here carries a secret.
    pub fn statements(&self) -> Vec<(&'static str, String)> {
        match &self.inner.backend {
            Backend::Pg(b) => b.sql.named(),
            Backend::MySql(b) => b.sql.named(),
            Backend::Sqlite(b) => b.sql.named(),
        }
    }

    /// Close the pool (and the LISTEN connection); calls after this fail with
    /// [`Unavailable`](distlock_core::Error::Unavailable).
    pub async fn close(&self) {
        if let Some(listener) = &self.inner.listener {
            listener.stop();
        }
        match &self.inner.backend {
            Backend::Pg(b) => b.pool.close().await,
            Backend::MySql(b) => b.pool.close().await,
            Backend::Sqlite(b) => b.pool.close().await,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.stop();
        }
    }
}

impl Store for SqlStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, r: &AcquireRequest<'_>) -> Result<Acquired> {
        self.bounded("acquire", r.resource, true, self.acquire_now(r))
            .await
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let label = leases.first().map_or("", |l| l.resource);
        self.bounded("refresh", label, true, self.refresh_now(leases))
            .await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.bounded("release", resource, true, self.release_now(resource, key))
            .await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.bounded("info", resource, false, self.info_now(resource))
            .await
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.bounded("read", resource, false, self.read_now(resource))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.bounded("list", prefix, false, self.list_now(prefix))
            .await
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        match &self.inner.listener {
            Some(listener) => listener.subscribe(resource).await.map(Some),
            None => Ok(None),
        }
    }
}

impl SqlStore {
    async fn acquire_now(&self, r: &AcquireRequest<'_>) -> Result<Acquired> {
        match &self.inner.backend {
            Backend::Pg(b) => {
                b.acquire(r.resource, r.key, r.ttl, r.permits, r.owner, r.data)
                    .await
            }
            Backend::MySql(b) => {
                b.acquire(r.resource, r.key, r.ttl, r.permits, r.owner, r.data)
                    .await
            }
            Backend::Sqlite(b) => {
                b.acquire(r.resource, r.key, r.ttl, r.permits, r.owner, r.data)
                    .await
            }
        }
    }

    async fn refresh_now(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        match &self.inner.backend {
            Backend::Pg(b) => b.refresh(leases).await,
            Backend::MySql(b) => b.refresh(leases).await,
            Backend::Sqlite(b) => b.refresh(leases).await,
        }
    }

    async fn release_now(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        match &self.inner.backend {
            Backend::Pg(b) => b.release(resource, key).await,
            Backend::MySql(b) => b.release(resource, key).await,
            Backend::Sqlite(b) => b.release(resource, key).await,
        }
    }

    async fn info_now(&self, resource: &str) -> Result<Option<Info>> {
        match &self.inner.backend {
            Backend::Pg(b) => b.info(resource).await,
            Backend::MySql(b) => b.info(resource).await,
            Backend::Sqlite(b) => b.info(resource).await,
        }
    }

    async fn read_now(&self, resource: &str) -> Result<Option<Bytes>> {
        match &self.inner.backend {
            Backend::Pg(b) => b.read(resource).await,
            Backend::MySql(b) => b.read(resource).await,
            Backend::Sqlite(b) => b.read(resource).await,
        }
    }

    async fn list_now(&self, prefix: &str) -> Result<Vec<String>> {
        match &self.inner.backend {
            Backend::Pg(b) => b.list(prefix).await,
            Backend::MySql(b) => b.list(prefix).await,
            Backend::Sqlite(b) => b.list(prefix).await,
        }
    }
}

/// A TTL in whole microseconds (validated TTLs fit easily).
pub(crate) fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX)
}

/// Microseconds since the Unix epoch (database clock) as a `SystemTime`.
pub(crate) fn micros_to_time(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// One outcome per request, in order, from the keys the database renewed.
pub(crate) fn outcomes(leases: &[RefreshRequest<'_>], renewed: &[Vec<u8>]) -> Vec<Refreshed> {
    let renewed: std::collections::HashSet<u128> = renewed
        .iter()
        .filter_map(|k| <[u8; 16]>::try_from(k.as_slice()).ok())
        .map(u128::from_be_bytes)
        .collect();
    leases
        .iter()
        .map(|l| {
            if renewed.contains(&l.key.as_u128()) {
                Refreshed::Renewed
            } else {
                Refreshed::NotHeld
            }
        })
        .collect()
}

/// The decision of one acquire from the resource's slots as read under lock
/// (MySQL and SQLite decide in the client, inside their transaction).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write the lease into this slot.
    Grant { slot: i32 },
    /// The resource is in use with another number of permits.
    Mismatch { existing: u32 },
    /// All permits are taken; the first ends in this long.
    Held { retry_after: Option<Duration> },
}

/// One slot row, as read under lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotRow {
    pub(crate) slot: i32,
    pub(crate) permits: i32,
    /// Holds an unexpired lease.
    pub(crate) live: bool,
    pub(crate) expires_us: i64,
}

pub(crate) fn decide(slots: &[SlotRow], permits: u32, now_us: i64) -> Decision {
    let live: Vec<&SlotRow> = slots.iter().filter(|s| s.live).collect();
    let permits_i = i64::from(permits);
    if let Some(other) = live.iter().find(|s| i64::from(s.permits) != permits_i) {
        return Decision::Mismatch {
            existing: u32::try_from(other.permits).unwrap_or(0),
        };
    }
    let free = (0..permits_i)
        .find(|slot| !live.iter().any(|s| i64::from(s.slot) == *slot))
        .and_then(|slot| i32::try_from(slot).ok());
    match free {
        Some(slot) => Decision::Grant { slot },
        None => Decision::Held {
            retry_after: live.iter().map(|s| s.expires_us).min().map(|first| {
                Duration::from_micros(u64::try_from(first.saturating_sub(now_us)).unwrap_or(0))
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(slot: i32, permits: i32, live: bool, expires_us: i64) -> SlotRow {
        SlotRow {
            slot,
            permits,
            live,
            expires_us,
        }
    }

    #[test]
    fn decide_takes_the_lowest_free_slot() {
        assert_eq!(decide(&[], 1, 0), Decision::Grant { slot: 0 });
        let rows = [
            row(0, 3, true, 50),
            row(1, 3, false, 10),
            row(2, 3, true, 40),
        ];
        assert_eq!(decide(&rows, 3, 0), Decision::Grant { slot: 1 });
        let rows = [row(0, 2, true, 50), row(1, 2, true, 40)];
        assert_eq!(
            decide(&rows, 2, 10),
            Decision::Held {
                retry_after: Some(Duration::from_micros(30))
            }
        );
    }

    #[test]
    fn decide_reports_a_size_mismatch_only_while_held() {
        let rows = [row(0, 3, true, 50)];
        assert_eq!(decide(&rows, 1, 0), Decision::Mismatch { existing: 3 });
        let rows = [row(0, 3, false, 50), row(2, 3, false, 50)];
        assert_eq!(decide(&rows, 1, 0), Decision::Grant { slot: 0 });
    }
}
