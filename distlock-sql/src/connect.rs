//! Connecting: [`SqlStore::connect`] (a URL, through [`SqlConfig`]),
//! [`SqlStore::connect_with`], the `from_*_pool` constructors over a pool the
//! caller built, and [`SqlConnector`] for a [`Registry`](distlock_core::Registry).

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::{Connector, Locker, Result};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use futures_util::FutureExt;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use sqlx::ConnectOptions;
#[cfg(feature = "mysql")]
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
#[cfg(feature = "mysql")]
use sqlx::{AssertSqlSafe, Executor};
use url::Url;

#[cfg(feature = "cockroach")]
use crate::cockroach::COCKROACH;
#[cfg(feature = "sqlite")]
use crate::config::sqlite_memory;
use crate::config::{SCHEMES, SqlConfig};
use crate::dialect::Dialect;
#[cfg(any(feature = "mysql", feature = "sqlite"))]
use crate::error::Retry;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use crate::error::connect_error;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::error::connect_error_at;
use crate::layout::TableName;
#[cfg(feature = "mysql")]
use crate::mysql::{MyBackend, MySql};
#[cfg(feature = "postgres")]
use crate::postgres::{POSTGRES, PgBackend};
#[cfg(feature = "sqlite")]
use crate::sqlite::{LiteBackend, Sqlite};
use crate::store::SqlStore;

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// Open one connection before building the pool and report its failure as it
/// is: the pool retries a refused connection until its acquire timeout and
/// then says only "pool timed out".
async fn first_connection<O>(
    connect: &O,
    timeout: Duration,
    url: &str,
    backend: &'static str,
    endpoint: &str,
) -> Result<()>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    use sqlx::Connection;
    match tokio::time::timeout(timeout, connect.connect()).await {
        Ok(Ok(conn)) => {
            // The pool opens its own; a failed goodbye does not matter.
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(connect_error_at(url, backend, endpoint, error)),
        Err(_) => Err(connect_error_at(
            url,
            backend,
            endpoint,
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )),
        )),
    }
}

impl SqlStore {
    /// Connect to the database `url` names ([`SqlConfig::from_url`]) and
    /// create the lock tables unless the URL says `?migrate=false`.
    ///
    /// # Errors
    /// [`InvalidUrl`](distlock_core::Error::InvalidUrl) for a URL that cannot
    /// be used (the message never shows the password),
    /// [`Unavailable`](distlock_core::Error::Unavailable) when the server
    /// refuses the connection or does not answer (at once, with the cause: a
    /// [`ConnectError`](crate::ConnectError) naming `host:port`),
    /// [`Store`](distlock_core::Error::Store) when it refuses the login or the
    /// user may not create tables.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(SqlConfig::from_url(url)?).await
    }

    /// Connect as `config` says (and create the tables if
    /// [`SqlConfig::migrate`]).
    ///
    /// # Errors
    /// As [`SqlStore::connect`].
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
        allow(unreachable_code, unused_variables)
    )]
    pub async fn connect_with(config: SqlConfig) -> Result<Self> {
        let dialect = config.resolved_dialect()?;
        let url = config.url();
        let target = config.target();
        let backend = dialect.backend();
        let store: SqlStore = match dialect {
            #[cfg(feature = "postgres")]
            Dialect::Postgres | Dialect::Cockroach => {
                let mut connect = PgConnectOptions::from_str(target)
                    .map_err(|e| connect_error(url, backend, e))?;
                if dialect == Dialect::Cockroach
                    && Url::parse(target).ok().and_then(|u| u.port()).is_none()
                {
                    connect = connect.port(crate::config::COCKROACH_PORT);
                }
                // `?application_name=` reaches the server; `distlock` otherwise.
                if !has_query_option(target, "application_name") {
                    connect = connect.application_name("distlock");
                }
                if dialect == Dialect::Postgres {
                    // The server gives up a little before the client does, so a
                    // call that timed out was rolled back, not applied late.
                    connect = connect.options([(
                        "statement_timeout",
                        format!("{}ms", server_timeout(config.call_timeout).as_millis()),
                    )]);
                }
                let endpoint = crate::postgres::endpoint(&connect);
                first_connection(&connect, config.acquire_timeout, url, backend, &endpoint).await?;
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .test_before_acquire(false)
                    .before_acquire(ping_if_idle)
                    .connect_with(connect)
                    .await
                    .map_err(|e| connect_error_at(url, backend, &endpoint, e))?;
                Self::from_pg_pool(pool, dialect, config.table.clone())
            }
            #[cfg(feature = "mysql")]
            Dialect::MySql => {
                let connect = MySqlConnectOptions::from_str(target)
                    .map_err(|e| connect_error(url, backend, e))?;
                let endpoint = crate::mysql::endpoint(&connect);
                first_connection(&connect, config.acquire_timeout, url, backend, &endpoint).await?;
                let pool = mysql_pool_options(&config)
                    .connect_with(connect)
                    .await
                    .map_err(|e| connect_error_at(url, backend, &endpoint, e))?;
                Self::from_mysql_pool(pool, config.table.clone())
            }
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => {
                let connect = SqliteConnectOptions::from_str(target)
                    .map_err(|e| connect_error(url, backend, e))?;
                let memory = sqlite_memory(target);
                let connect = connect
                    .create_if_missing(true)
                    .journal_mode(if memory {
                        SqliteJournalMode::Memory
                    } else {
                        SqliteJournalMode::Wal
                    })
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .disable_statement_logging();
                let mut pool = SqlitePoolOptions::new()
                    .max_connections(config.max_connections)
                    .test_before_acquire(false)
                    .acquire_timeout(config.acquire_timeout.max(Duration::from_secs(10)));
                if memory {
                    // One private database per connection: keep exactly one.
                    pool = pool
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                let pool = pool
                    .connect_with(connect)
                    .await
                    .map_err(|e| connect_error(url, backend, e))?;
                Self::from_sqlite_pool(pool, config.table.clone())
            }
            // `parse` refused the dialects this build lacks.
            #[allow(unreachable_patterns)]
            other => {
                return Err(crate::error::invalid(
                    url,
                    format!("no {other} support in this build"),
                ));
            }
        };
        let store = store.with_call_timeout(config.call_timeout);
        if config.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// A store over an existing PostgreSQL or CockroachDB pool.
    #[cfg(feature = "postgres")]
    pub fn from_pg_pool(pool: PgPool, dialect: Dialect, table: TableName) -> Self {
        let flavour = match dialect {
            #[cfg(feature = "cockroach")]
            Dialect::Cockroach => COCKROACH,
            _ => POSTGRES,
        };
        let backend = PgBackend::new(pool, flavour, &table);
        SqlStore::build(table, Box::new(backend))
    }

    /// A store over an existing MySQL / MariaDB pool. Its connections should run
    /// with `time_zone = '+00:00'` (sqlx's default) and `READ COMMITTED`
    /// ([`mysql_pool_options`] sets both).
    #[cfg(feature = "mysql")]
    pub fn from_mysql_pool(pool: MySqlPool, table: TableName) -> Self {
        let backend = MyBackend {
            pool,
            sql: MySql::new(&table),
            retry: Retry::default(),
        };
        SqlStore::build(table, Box::new(backend))
    }

    /// A store over an existing SQLite pool (WAL mode and a busy timeout
    /// recommended, as [`SqlStore::connect`] sets).
    #[cfg(feature = "sqlite")]
    pub fn from_sqlite_pool(pool: SqlitePool, table: TableName) -> Self {
        let backend = LiteBackend {
            pool,
            sql: Sqlite::new(&table),
            retry: Retry::default(),
        };
        SqlStore::build(table, Box::new(backend))
    }
}

#[cfg(feature = "mysql")]
/// Pool options for MySQL / MariaDB as [`SqlStore::connect`] uses them: each
/// connection runs `READ COMMITTED` (no gap locks: acquires of different
/// resources never block each other) in UTC, and waits for a row lock at most
/// 90 % of the call timeout.
pub fn mysql_pool_options(options: &SqlConfig) -> MySqlPoolOptions {
    let lock_wait = server_timeout(options.call_timeout).as_secs().max(1);
    MySqlPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
        .after_connect(move |conn, _| {
            async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                conn.execute("SET time_zone = '+00:00'").await?;
                conn.execute(AssertSqlSafe(format!(
                    "SET SESSION innodb_lock_wait_timeout = {lock_wait}"
                )))
                .await?;
                Ok(())
            }
            .boxed()
        })
}

#[cfg(feature = "postgres")]
/// Whether the URL's query has option `name`.
fn has_query_option(url: &str, name: &str) -> bool {
    Url::parse(url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == name))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// The server-side bound on a statement: 90 % of the client's call timeout.
fn server_timeout(call_timeout: Duration) -> Duration {
    (call_timeout * 9 / 10).max(Duration::from_millis(1))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// How long a pooled connection may sit idle before it is pinged on its way
/// out of the pool.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// sqlx pings every connection it hands out (`test_before_acquire`): one
/// extra round trip per lock operation. Ping only connections idle long
/// enough to have been cut (server restart, proxy timeout); a connection found
/// dead later fails its statement, which the caller sees as a transient error
/// (and sqlx drops the connection).
fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    async move {
        if meta.idle_for >= PING_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(true)
    }
    .boxed()
}

/// Serves the SQL schemes through a [`Registry`](distlock_core::Registry).
///
/// Does exactly what [`SqlStore::connect`] does, tables included (add
/// `?migrate=false` when the user may not create tables).
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlConnector;

#[async_trait]
impl Connector for SqlConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let store = SqlStore::connect(url.as_str()).await?;
        Ok(Arc::new(store.locker()))
    }
}
