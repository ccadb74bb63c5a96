//! [`SqlStore`]: the [`Store`] over any of the four dialects.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Info, LeaseKey, RefreshRequest, Refreshed, Result,
    Store, StoreLocker, Wakeup,
};

use crate::dialect::{Dialect, SqlBackend};
use crate::layout::TableName;

/// Default longest time one store call may take ([`SqlConfig::call_timeout`](crate::SqlConfig::call_timeout)).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest TTL: a lease must outlive a few round trips to a loaded server.
pub const MIN_TTL: Duration = Duration::from_millis(100);

/// A lock table in a SQL database: PostgreSQL, CockroachDB, MySQL/MariaDB or
/// SQLite. Cloning shares the connection pool; give each "client" its own
/// locker with [`SqlStore::locker`].
///
/// Build one with [`SqlStore::connect`] (which creates the tables unless
/// `?migrate=false`) or the `from_*_pool` constructors (then call
/// [`SqlStore::migrate`] once per database: idempotent, safe to race), then
/// take locks through [`SqlStore::locker`].
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) caps: Capabilities,
    pub(crate) table: TableName,
    /// The server, named by unavailability errors.
    pub(crate) endpoint: String,
    /// The dialect's side: every call goes through it.
    pub(crate) backend: Box<dyn SqlBackend>,
    /// Longest one store call may take (a server that accepts connections but
    /// never answers must not hang a caller).
    pub(crate) call_timeout: Duration,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL or options: they may carry a password.
        f.debug_struct("SqlStore")
            .field("dialect", &self.inner.backend.dialect())
            .field("table", &self.inner.table.as_str())
            .finish_non_exhaustive()
    }
}

/// A [`Locker`](distlock_core::Locker) over a [`SqlStore`].
pub type SqlLocker = StoreLocker<SqlStore>;

impl SqlStore {
    pub(crate) fn build(table: TableName, backend: Box<dyn SqlBackend>) -> Self {
        let caps = Capabilities::new(backend.dialect().backend())
            .with_min_ttl(MIN_TTL)
            .with_push_wakeup(backend.push_wakeup())
            .with_batch_refresh(true);
        SqlStore {
            inner: Arc::new(Inner {
                caps,
                table,
                endpoint: backend.endpoint(),
                backend,
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
            Ok(answer) => answer.map_err(|e| self.at_endpoint(e)),
            Err(_) => {
                let message = format!(
                    "no answer within {:?} (the server accepted the connection but did not reply)",
                    self.inner.call_timeout
                );
                let backend = self.inner.caps.backend;
                Err(if writes {
                    distlock_core::Error::OutcomeUnknown {
                        backend,
                        operation,
                        resource: resource.to_owned(),
                        source: message.into(),
                    }
                } else {
                    self.at_endpoint(distlock_core::Error::unavailable(backend, message))
                })
            }
        }
    }

    /// Name the server in an [`Unavailable`](distlock_core::Error::Unavailable) error.
    pub(crate) fn at_endpoint(&self, error: distlock_core::Error) -> distlock_core::Error {
        crate::error::at_endpoint(error, &self.inner.endpoint)
    }

    /// A new locker (a "client") over this store, sharing its pool.
    pub fn locker(&self) -> SqlLocker {
        StoreLocker::new(self.clone())
    }

    /// The database flavour.
    pub fn dialect(&self) -> Dialect {
        self.inner.backend.dialect()
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
    /// [`SqlStore::connect`] runs it unless the URL says `?migrate=false`.
    ///
    /// # Errors
    /// [`Store`](distlock_core::Error::Store) if the user may not create
    /// tables; [`Unavailable`](distlock_core::Error::Unavailable) if the
    /// database cannot be reached.
    pub async fn migrate(&self) -> Result<()> {
        let migrated = self.inner.backend.migrate().await;
        migrated.map_err(|e| self.at_endpoint(e))
    }

    /// Serialization failures (SQLSTATE 40001, deadlocks) retried so far by
    /// this store.
    pub fn serialization_retries(&self) -> u64 {
        self.inner.backend.serialization_retries()
    }

    /// The SQL this store runs, by name (`acquire`, `release`, `refresh`, …), in
    /// the order a reviewer would read them. The parameters are positional;
    /// see each dialect's module docs. Nothing here carries a secret.
    pub fn statements(&self) -> Vec<(&'static str, String)> {
        self.inner.backend.statements()
    }

    /// Close the pool (and the LISTEN connection); calls after this fail with
    /// [`Unavailable`](distlock_core::Error::Unavailable).
    pub async fn close(&self) {
        self.inner.backend.close().await;
    }
}

impl Store for SqlStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, r: &AcquireRequest<'_>) -> Result<Acquired> {
        self.bounded("acquire", r.resource, true, self.inner.backend.acquire(r))
            .await
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let Some(first) = leases.first() else {
            return Ok(Vec::new());
        };
        let renew = self.inner.backend.refresh(leases);
        self.bounded("refresh", first.resource, true, renew).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.bounded(
            "release",
            resource,
            true,
            self.inner.backend.release(resource, key),
        )
        .await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.bounded("info", resource, false, self.inner.backend.info(resource))
            .await
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.bounded("read", resource, false, self.inner.backend.read(resource))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.bounded("list", prefix, false, self.inner.backend.list(prefix))
            .await
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        let evicted = self
            .bounded("evict", resource, true, self.inner.backend.evict(resource))
            .await?;
        Ok(usize::try_from(evicted).unwrap_or(usize::MAX))
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let armed = self.inner.backend.subscribe(resource).await;
        armed.map_err(|e| self.at_endpoint(e))
    }
}
