//! URLs and options: `postgres://`, `postgresql://`, `cockroach://`,
//! `mysql://`, `mariadb://`, `sqlite://`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::{Connector, Error, Locker, Result, redact_url};
use futures_util::FutureExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor};
use url::Url;

use crate::cockroach::COCKROACH;
use crate::dialect::{Dialect, TableName};
use crate::error::Retry;
use crate::mysql::{MyBackend, MySql};
use crate::postgres::{POSTGRES, PgBackend, PgSql};
use crate::sqlite::{LiteBackend, Sqlite};
use crate::store::{Backend, SqlStore};

/// The schemes this crate serves.
pub const SCHEMES: &[&str] = &[
    "postgres",
    "postgresql",
    "cockroach",
    "cockroachdb",
    "mysql",
    "mariadb",
    "sqlite",
];

/// CockroachDB's default SQL port, used for `cockroach://` URLs without one.
pub const COCKROACH_PORT: u16 = 26257;

/// How a [`SqlStore`] connects. Defaults: table [`DEFAULT_TABLE`](crate::DEFAULT_TABLE),
/// 10 connections, 5 s to get one, 30 s per call, dialect from the URL scheme.
///
/// URL options (`?table=…&dialect=…&max_connections=…&migrate=…`) override
/// these; every other option goes to sqlx (`sslmode`, `sslrootcert`,
/// `application_name` (PostgreSQL; default `distlock`), `socket`, …).
///
/// The URL must name the server (`host`, or `?socket=` for MySQL) and, for
/// SQLite, the database file (`sqlite:///abs/path.db`, `sqlite://rel.db`) or
/// `sqlite::memory:`; a URL without is refused before any I/O.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Base name of the lock tables.
    pub table: TableName,
    /// Pool size.
    pub max_connections: u32,
    /// How long a call waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Force a dialect (`Cockroach` for a `postgres://` URL); `None`: from the scheme.
    pub dialect: Option<Dialect>,
    /// Run [`SqlStore::migrate`] after connecting.
    pub migrate: bool,
    /// Longest one store call may take before it fails (as
    /// [`OutcomeUnknown`](Error::OutcomeUnknown) for writes, [`Unavailable`](Error::Unavailable)
    /// for reads): a server that accepts connections but never answers must
    /// not hang callers.
    pub call_timeout: Duration,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            table: TableName::default(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            dialect: None,
            migrate: false,
            call_timeout: crate::store::DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlOptions")
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("dialect", &self.dialect)
            .field("migrate", &self.migrate)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl SqlOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use another table base name.
    pub fn with_table(mut self, table: TableName) -> Self {
        self.table = table;
        self
    }

    /// Set the pool size (at least 1).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Set how long a call waits for a connection.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Force a dialect.
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = Some(dialect);
        self
    }

    /// Set the longest time one store call may take.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Run [`SqlStore::migrate`] after connecting.
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: redact_url(url),
        reason: reason.into(),
    }
}

/// Split our own options off a URL; the rest is for sqlx.
fn parse(url: &str, mut options: SqlOptions) -> Result<(Dialect, String, SqlOptions)> {
    let mut parsed = distlock_core::parse_url(url)?;
    let scheme_dialect = match parsed.scheme() {
        "postgres" | "postgresql" => Dialect::Postgres,
        "cockroach" | "cockroachdb" => Dialect::Cockroach,
        "mysql" | "mariadb" => Dialect::MySql,
        "sqlite" => Dialect::Sqlite,
        other => {
            return Err(invalid(
                url,
                format!(
                    "scheme `{other}` is not SQL; use one of {}",
                    SCHEMES.join(", ")
                ),
            ));
        }
    };
    let mut rest: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match &*k {
            "table" => {
                options.table = TableName::new(&v).map_err(|e| invalid(url, e.to_string()))?
            }
            "dialect" => {
                options.dialect = Some(match &*v {
                    "postgres" | "postgresql" => Dialect::Postgres,
                    "cockroach" | "cockroachdb" => Dialect::Cockroach,
                    _ => {
                        return Err(invalid(
                            url,
                            format!("dialect `{v}` is unknown here; use postgres or cockroach"),
                        ));
                    }
                })
            }
            "max_connections" => {
                options.max_connections =
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| invalid(url, "max_connections must be 1..=1000"))?
            }
            "migrate" => {
                options.migrate = match &*v {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(invalid(url, "migrate must be true or false")),
                }
            }
            _ => rest.push((k.into_owned(), v.into_owned())),
        }
    }
    let dialect = match (scheme_dialect, options.dialect) {
        (Dialect::Postgres, Some(d @ (Dialect::Postgres | Dialect::Cockroach))) => d,
        (d, None) => d,
        (d, Some(forced)) if d == forced => d,
        (d, Some(forced)) => {
            return Err(invalid(
                url,
                format!("dialect `{forced}` does not fit a {d} URL"),
            ));
        }
    };
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    let target = match dialect {
        Dialect::Postgres | Dialect::Cockroach => "postgres",
        Dialect::MySql => "mysql",
        Dialect::Sqlite => "sqlite",
    };
    let mut text = parsed.to_string();
    if parsed.scheme() != target
        && let Some((_, after)) = text.split_once(':')
    {
        text = format!("{target}:{after}");
    }
    let has_host = parsed.host_str().is_some_and(|h| !h.is_empty());
    if matches!(dialect, Dialect::Postgres | Dialect::Cockroach) && !has_host {
        return Err(invalid(
            url,
            "name the server: scheme://[user[:password]@]host[:port]/database",
        ));
    }
    if dialect == Dialect::MySql
        && !has_host
        && !parsed
            .query_pairs()
            .any(|(k, v)| k == "socket" && !v.is_empty())
    {
        return Err(invalid(
            url,
            "name the server: mysql://[user[:password]@]host[:port]/database \
             (or ?socket=/path/to/mysqld.sock)",
        ));
    }
    if dialect == Dialect::Sqlite && sqlite_database(&text).is_empty() && !sqlite_memory(&text) {
        return Err(invalid(
            url,
            "name the database file: sqlite:///absolute/path.db or sqlite://relative.db \
             (sqlite::memory: for a private in-memory database); without one every \
             pooled connection would open its own empty database",
        ));
    }
    Ok((dialect, text, options))
}

/// The database part of a SQLite URL as sqlx reads it (`sqlite://` or
/// `sqlite:` stripped, up to the query).
fn sqlite_database(target: &str) -> &str {
    let rest = target
        .strip_prefix("sqlite://")
        .or_else(|| target.strip_prefix("sqlite:"))
        .unwrap_or(target);
    rest.split('?').next().unwrap_or("")
}

/// Whether a SQLite URL names an in-memory database (`:memory:` or `mode=memory`).
fn sqlite_memory(target: &str) -> bool {
    sqlite_database(target) == ":memory:"
        || target.split_once('?').is_some_and(|(_, query)| {
            url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "mode" && v == "memory")
        })
}

fn connect_error(url: &str, backend: &'static str, error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::Configuration(e) => invalid(url, e.to_string()),
        sqlx::Error::Database(db) => Error::store(backend, db.to_string()),
        other => Error::unavailable(backend, other),
    }
}

/// A connection to `endpoint` that could not be opened: the cause as the
/// client saw it (`Connection refused`, a TLS or login failure, no answer).
/// Names the server, never the user's password.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {endpoint}: {source}")]
pub struct ConnectError {
    /// `host:port` or the socket path.
    pub endpoint: String,
    /// The client's error.
    #[source]
    pub source: sqlx::Error,
}

/// A connect error naming the server: a refused or broken connection (or no
/// answer) is [`Unavailable`](Error::Unavailable), a login or database the
/// server refused is [`Store`](Error::Store), a bad option is
/// [`InvalidUrl`](Error::InvalidUrl).
fn connect_error_at(url: &str, backend: &'static str, endpoint: &str, error: sqlx::Error) -> Error {
    let error = ConnectError {
        endpoint: endpoint.to_owned(),
        source: error,
    };
    match &error.source {
        sqlx::Error::Configuration(e) => invalid(url, format!("{}: {e}", error.endpoint)),
        sqlx::Error::Database(_) => Error::store(backend, error),
        _ => Error::unavailable(backend, error),
    }
}

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

/// `host:port` (or the socket path) of a PostgreSQL connection.
fn pg_endpoint(connect: &PgConnectOptions) -> String {
    match connect.get_socket() {
        Some(path) => path.display().to_string(),
        None => host_port(connect.get_host(), connect.get_port()),
    }
}

/// `host:port` (or the socket path) of a MySQL connection.
fn mysql_endpoint(connect: &MySqlConnectOptions) -> String {
    match connect.get_socket() {
        Some(path) => path.display().to_string(),
        None => host_port(connect.get_host(), connect.get_port()),
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl SqlStore {
    /// Connect to the database `url` names, with [`SqlOptions`] from its query.
    /// Does not create tables: call [`SqlStore::migrate`] (or add `?migrate=true`).
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) for a URL that cannot be used (the
    /// message never shows the password), [`Unavailable`](Error::Unavailable)
    /// when the server refuses the connection or does not answer (at once, with
    /// the cause: a [`ConnectError`] naming `host:port`), [`Store`](Error::Store)
    /// when it refuses the login.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, SqlOptions::default()).await
    }

    /// Connect with options (URL options override them).
    ///
    /// # Errors
    /// As [`SqlStore::connect`].
    pub async fn connect_with(url: &str, options: SqlOptions) -> Result<Self> {
        let (dialect, target, options) = parse(url, options)?;
        let backend = dialect.backend();
        let store = match dialect {
            Dialect::Postgres | Dialect::Cockroach => {
                let mut connect = PgConnectOptions::from_str(&target)
                    .map_err(|e| connect_error(url, backend, e))?;
                if dialect == Dialect::Cockroach
                    && Url::parse(&target).ok().and_then(|u| u.port()).is_none()
                {
                    connect = connect.port(COCKROACH_PORT);
                }
                // `?application_name=` reaches the server; `distlock` otherwise.
                if !has_query_option(&target, "application_name") {
                    connect = connect.application_name("distlock");
                }
                if dialect == Dialect::Postgres {
                    // The server gives up a little before the client does, so a
                    // call that timed out was rolled back, not applied late.
                    connect = connect.options([(
                        "statement_timeout",
                        format!("{}ms", server_timeout(options.call_timeout).as_millis()),
                    )]);
                }
                let endpoint = pg_endpoint(&connect);
                first_connection(&connect, options.acquire_timeout, url, backend, &endpoint)
                    .await?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .test_before_acquire(false)
                    .before_acquire(ping_if_idle)
                    .connect_with(connect)
                    .await
                    .map_err(|e| connect_error_at(url, backend, &endpoint, e))?;
                Self::from_pg_pool(pool, dialect, options.table.clone())
            }
            Dialect::MySql => {
                let connect = MySqlConnectOptions::from_str(&target)
                    .map_err(|e| connect_error(url, backend, e))?;
                let endpoint = mysql_endpoint(&connect);
                first_connection(&connect, options.acquire_timeout, url, backend, &endpoint)
                    .await?;
                let pool = mysql_pool_options(&options)
                    .connect_with(connect)
                    .await
                    .map_err(|e| connect_error_at(url, backend, &endpoint, e))?;
                Self::from_mysql_pool(pool, options.table.clone())
            }
            Dialect::Sqlite => {
                let connect = SqliteConnectOptions::from_str(&target)
                    .map_err(|e| connect_error(url, backend, e))?;
                let memory = target.contains(":memory:") || target.contains("mode=memory");
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
                    .max_connections(options.max_connections)
                    .test_before_acquire(false)
                    .acquire_timeout(options.acquire_timeout.max(Duration::from_secs(10)));
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
                Self::from_sqlite_pool(pool, options.table.clone())
            }
        };
        let store = store.with_call_timeout(options.call_timeout);
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// A store over an existing PostgreSQL or CockroachDB pool.
    pub fn from_pg_pool(pool: PgPool, dialect: Dialect, table: TableName) -> Self {
        let (dialect, sql, channel) = match dialect {
            Dialect::Cockroach => (Dialect::Cockroach, PgSql::new(&table, COCKROACH), None),
            _ => (
                Dialect::Postgres,
                PgSql::new(&table, POSTGRES),
                Some(table.as_str().to_owned()),
            ),
        };
        let backend = Backend::Pg(PgBackend {
            pool,
            sql,
            dialect,
            retry: Retry::default(),
            channel,
        });
        SqlStore::build(dialect, table, backend)
    }

    /// A store over an existing MySQL / MariaDB pool. Its connections should run
    /// with `time_zone = '+00:00'` (sqlx's default) and `READ COMMITTED`
    /// ([`mysql_pool_options`] sets both).
    pub fn from_mysql_pool(pool: MySqlPool, table: TableName) -> Self {
        let backend = Backend::MySql(MyBackend {
            pool,
            sql: MySql::new(&table),
            retry: Retry::default(),
        });
        SqlStore::build(Dialect::MySql, table, backend)
    }

    /// A store over an existing SQLite pool (WAL mode and a busy timeout
    /// recommended, as [`SqlStore::connect`] sets).
    pub fn from_sqlite_pool(pool: SqlitePool, table: TableName) -> Self {
        let backend = Backend::Sqlite(LiteBackend {
            pool,
            sql: Sqlite::new(&table),
            retry: Retry::default(),
        });
        SqlStore::build(Dialect::Sqlite, table, backend)
    }
}

/// Pool options for MySQL / MariaDB as [`SqlStore::connect`] uses them: each
/// connection runs `READ COMMITTED` (no gap locks: acquires of different
/// resources never block each other) in UTC, and waits for a row lock at most
/// 90 % of the call timeout.
pub fn mysql_pool_options(options: &SqlOptions) -> MySqlPoolOptions {
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

/// Whether the URL's query has option `name`.
fn has_query_option(url: &str, name: &str) -> bool {
    Url::parse(url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == name))
}

/// The server-side bound on a statement: 90 % of the client's call timeout.
fn server_timeout(call_timeout: Duration) -> Duration {
    (call_timeout * 9 / 10).max(Duration::from_millis(1))
}

/// How long a pooled connection may sit idle before it is pinged on its way
/// out of the pool.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

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
/// Unlike [`SqlStore::connect`], it runs [`SqlStore::migrate`] after
/// connecting (a program picking its store by URL has no other place to do
/// it); add `?migrate=false` when the user may not create tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlConnector;

#[async_trait]
impl Connector for SqlConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let store =
            SqlStore::connect_with(url.as_str(), SqlOptions::default().with_migrate(true)).await?;
        Ok(Arc::new(store.locker()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_dialect_and_keep_sqlx_options() {
        let (d, t, o) = parse(
            "postgres://u:p@h:5/db?table=app.locks&sslmode=require",
            SqlOptions::default(),
        )
        .unwrap();
        assert_eq!(d, Dialect::Postgres);
        assert_eq!(o.table.as_str(), "app.locks");
        assert_eq!(t, "postgres://u:p@h:5/db?sslmode=require");
        let (d, t, _) = parse("cockroach://root@h/defaultdb", SqlOptions::default()).unwrap();
        assert_eq!(d, Dialect::Cockroach);
        assert_eq!(t, "postgres://root@h/defaultdb");
        let (d, _, _) =
            parse("postgresql://h/db?dialect=cockroach", SqlOptions::default()).unwrap();
        assert_eq!(d, Dialect::Cockroach);
        let (d, t, _) = parse("mariadb://u@h/db", SqlOptions::default()).unwrap();
        assert_eq!((d, t.as_str()), (Dialect::MySql, "mysql://u@h/db"));
        let (d, t, o) = parse("sqlite:///tmp/x.db?migrate=true", SqlOptions::default()).unwrap();
        assert_eq!(
            (d, t.as_str(), o.migrate),
            (Dialect::Sqlite, "sqlite:///tmp/x.db", true)
        );
    }

    #[test]
    fn a_url_without_a_server_or_a_database_file_is_refused_at_parse_time() {
        for (bad, says) in [
            ("sqlite://", "database file"),
            ("sqlite:", "database file"),
            ("sqlite://?migrate=true", "database file"),
            ("sqlite://?cache=private", "database file"),
            ("mysql://", "name the server"),
            ("mysql://u:hunter2@/db", "host"),
            ("mariadb:///db?socket=", "name the server"),
            ("postgres:///db", "name the server"),
        ] {
            match parse(bad, SqlOptions::default()) {
                Err(Error::InvalidUrl { url, reason }) => {
                    assert!(reason.contains(says), "{bad}: {reason}");
                    assert!(
                        !url.contains("hunter2") && !reason.contains("hunter2"),
                        "{bad}"
                    );
                }
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
        for good in [
            "sqlite::memory:",
            "sqlite://?mode=memory",
            "sqlite://relative.db",
            "sqlite:///tmp/x.db",
            "mysql://u@h/db",
            "mysql:///db?socket=/run/mysqld/mysqld.sock",
        ] {
            assert!(parse(good, SqlOptions::default()).is_ok(), "{good}");
        }
    }

    #[test]
    fn connect_errors_name_the_server_not_the_password() {
        let refused = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        let err = connect_error_at("postgres://u:hunter2@h:1/db", "postgres", "h:1", refused);
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        let text = distlock_core::error_chain(&err);
        assert!(text.contains("h:1") && text.contains("refused"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(host_port("::1", 5432), "[::1]:5432");
        assert_eq!(host_port("db", 5432), "db:5432");
    }

    #[test]
    fn bad_urls_are_invalid_and_redacted() {
        for bad in [
            "postgres://u:hunter2@h/db?table=Bad-Name",
            "postgres://u:hunter2@h/db?dialect=oracle",
            "mysql://u:hunter2@h/db?dialect=cockroach",
            "mysql://u:hunter2@h/db?max_connections=0",
            "sqlite:///x.db?migrate=maybe",
            "redis://u:hunter2@h",
        ] {
            match parse(bad, SqlOptions::default()) {
                Err(Error::InvalidUrl { url, reason }) => {
                    assert!(
                        !url.contains("hunter2") && !reason.contains("hunter2"),
                        "{bad}"
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
