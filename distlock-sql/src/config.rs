//! [`SqlConfig`]: how a [`SqlStore`](crate::SqlStore) connects, read from a
//! URL (`postgres://`, `postgresql://`, `cockroach://`, `mysql://`,
//! `mariadb://`, `sqlite://`) or from the environment.

use std::fmt;
use std::time::Duration;

use distlock_core::{Error, Result, UrlOptions, redact_url};

use crate::dialect::Dialect;
use crate::error::invalid;
use crate::layout::TableName;
use crate::store::DEFAULT_CALL_TIMEOUT;

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

/// The environment variable [`SqlConfig::from_env`] reads.
pub const URL_ENV: &str = "DISTLOCK_SQL_URL";

/// The URL options this crate reads; every other option goes to sqlx.
const OPTIONS: [&str; 4] = ["table", "dialect", "max_connections", "migrate"];

/// How a [`SqlStore`](crate::SqlStore) connects: the database URL and these
/// settings. Defaults: table [`DEFAULT_TABLE`](crate::DEFAULT_TABLE), 10
/// connections, 5 s to get one, 30 s per call, the tables created on connect,
/// dialect from the URL scheme.
///
/// URL options (`?table=…&dialect=…&max_connections=…&migrate=…`) set these
/// (each at most once; booleans `true`/`false`, `1`/`0`, `yes`/`no`,
/// `on`/`off`). The driver's own options go to sqlx (`sslmode`,
/// `sslrootcert`, `application_name` (PostgreSQL; default `distlock`),
/// `options`, `socket`, `charset`, SQLite's `mode`, …); any other option is
/// refused, naming it. The `with_*` builders override what the URL set.
///
/// The URL must name the server (`host`, or `?socket=` for MySQL) and, for
/// SQLite, the database file (`sqlite:///abs/path.db`, `sqlite://rel.db`) or
/// `sqlite::memory:`; a URL without is refused before any I/O. `Debug` never
/// shows the password.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqlConfig {
    /// The URL as given (may hold a password).
    url: String,
    /// The URL for sqlx: our options removed, the scheme sqlx knows.
    target: String,
    /// The dialect of the URL's scheme.
    scheme: Dialect,
    /// Base name of the lock tables.
    pub table: TableName,
    /// Pool size.
    pub max_connections: u32,
    /// How long a call waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Force a dialect (`Cockroach` for a `postgres://` URL); `None`: from the scheme.
    pub dialect: Option<Dialect>,
    /// Create the tables on connect ([`SqlStore::migrate`](crate::SqlStore::migrate));
    /// default `true`, `?migrate=false` when the user may not create tables.
    pub migrate: bool,
    /// Longest one store call may take before it fails (as
    /// [`OutcomeUnknown`](Error::OutcomeUnknown) for writes, [`Unavailable`](Error::Unavailable)
    /// for reads): a server that accepts connections but never answers must
    /// not hang callers.
    pub call_timeout: Duration,
}

impl fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConfig")
            .field("url", &redact_url(&self.url))
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("dialect", &self.dialect)
            .field("migrate", &self.migrate)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl SqlConfig {
    /// Read a URL and its options.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) (password hidden) for an unknown
    /// scheme, a dialect this build lacks, a bad or repeated option, or a URL
    /// that names no server (no database file for SQLite).
    pub fn from_url(url: &str) -> Result<Self> {
        parse(url)
    }

    /// Read the URL in `DISTLOCK_SQL_URL` ([`URL_ENV`]).
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) when the variable is unset
    /// or not Unicode; otherwise as [`SqlConfig::from_url`].
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(URL_ENV).map_err(|e| {
            Error::invalid(
                URL_ENV,
                format!("{e}; set it to a postgres://, mysql://, sqlite:// or cockroach:// URL"),
            )
        })?;
        Self::from_url(&url)
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

    /// Force a dialect (only `Cockroach` on a `postgres://` URL changes
    /// anything; another dialect than the scheme's fails on connect).
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = Some(dialect);
        self
    }

    /// Set the longest time one store call may take.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Create the tables on connect, or not.
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The URL as given (for error messages: pass through [`redact_url`]).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL for sqlx.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The dialect served: the scheme's, or the one forced if it fits.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) if the forced dialect does not fit
    /// the scheme or is not compiled in.
    pub(crate) fn resolved_dialect(&self) -> Result<Dialect> {
        let dialect = match (self.scheme, self.dialect) {
            (Dialect::Postgres, Some(d @ (Dialect::Postgres | Dialect::Cockroach))) => d,
            (d, None) => d,
            (d, Some(forced)) if d == forced => d,
            (d, Some(forced)) => {
                return Err(invalid(
                    &self.url,
                    format!("dialect `{forced}` does not fit a {d} URL"),
                ));
            }
        };
        if let Some(feature) = missing_feature(dialect) {
            return Err(invalid(
                &self.url,
                format!(
                    "this build of distlock-sql has no {dialect} support; enable its `{feature}` feature"
                ),
            ));
        }
        Ok(dialect)
    }
}

fn dialect_named(name: &str) -> Option<Dialect> {
    match name {
        "postgres" | "postgresql" => Some(Dialect::Postgres),
        "cockroach" | "cockroachdb" => Some(Dialect::Cockroach),
        "mysql" | "mariadb" => Some(Dialect::MySql),
        "sqlite" => Some(Dialect::Sqlite),
        _ => None,
    }
}

/// Split our own options off a URL; the rest is for sqlx.
fn parse(url: &str) -> Result<SqlConfig> {
    let mut parsed = distlock_core::parse_url(url)?;
    let Some(scheme) = dialect_named(parsed.scheme()) else {
        return Err(invalid(
            url,
            format!(
                "scheme `{}` is not SQL; use one of {}",
                parsed.scheme(),
                SCHEMES.join(", ")
            ),
        ));
    };
    let mut options = UrlOptions::parse(&parsed)?;
    let table = match options.take("table") {
        Some(name) => TableName::new(&name).map_err(|e| invalid(url, e.to_string()))?,
        None => TableName::default(),
    };
    let dialect = match options.take("dialect") {
        None => None,
        Some(name) => match dialect_named(&name) {
            Some(d @ (Dialect::Postgres | Dialect::Cockroach)) => Some(d),
            _ => {
                return Err(invalid(
                    url,
                    format!("dialect `{name}` is unknown here; use postgres or cockroach"),
                ));
            }
        },
    };
    let max_connections = match options.take_parsed::<u32>("max_connections", "1..=1000")? {
        None => 10,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(invalid(url, "max_connections must be 1..=1000")),
    };
    let migrate = options.take_bool("migrate")?.unwrap_or(true);
    // Every other option is sqlx's.
    let rest: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| !OPTIONS.contains(&&**k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    let config = SqlConfig {
        url: url.to_owned(),
        target: String::new(),
        scheme,
        table,
        max_connections,
        acquire_timeout: Duration::from_secs(5),
        dialect,
        migrate,
        call_timeout: DEFAULT_CALL_TIMEOUT,
    };
    let dialect = config.resolved_dialect()?;
    // The rest must be options the driver reads: a misspelt one is an error,
    // not silently ignored.
    let driver = driver_options(dialect);
    for name in driver {
        let _ = options.take(name);
    }
    let known: Vec<&str> = OPTIONS.iter().chain(driver).copied().collect();
    options.finish(&known)?;
    let sqlx_scheme = match dialect {
        Dialect::Postgres | Dialect::Cockroach => "postgres",
        Dialect::MySql => "mysql",
        Dialect::Sqlite => "sqlite",
    };
    let mut target = parsed.to_string();
    if parsed.scheme() != sqlx_scheme
        && let Some((_, after)) = target.split_once(':')
    {
        target = format!("{sqlx_scheme}:{after}");
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
    if dialect == Dialect::Sqlite && sqlite_database(&target).is_empty() && !sqlite_memory(&target)
    {
        return Err(invalid(
            url,
            "name the database file: sqlite:///absolute/path.db or sqlite://relative.db \
             (sqlite::memory: for a private in-memory database); without one every \
             pooled connection would open its own empty database",
        ));
    }
    Ok(SqlConfig { target, ..config })
}

/// The URL options sqlx reads for `dialect` (passed on to it).
fn driver_options(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Postgres | Dialect::Cockroach => &[
            "sslmode",
            "ssl-mode",
            "sslrootcert",
            "ssl-root-cert",
            "ssl-ca",
            "sslcert",
            "ssl-cert",
            "sslkey",
            "ssl-key",
            "statement-cache-capacity",
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "application_name",
            "options",
        ],
        Dialect::MySql => &[
            "sslmode",
            "ssl-mode",
            "sslca",
            "ssl-ca",
            "sslcert",
            "ssl-cert",
            "sslkey",
            "ssl-key",
            "charset",
            "collation",
            "statement-cache-capacity",
            "socket",
            "timezone",
            "time-zone",
        ],
        Dialect::Sqlite => &["mode", "cache", "immutable", "vfs"],
    }
}

/// The cargo feature `dialect` needs, when this build lacks it.
fn missing_feature(dialect: Dialect) -> Option<&'static str> {
    let (feature, compiled) = match dialect {
        Dialect::Postgres => ("postgres", cfg!(feature = "postgres")),
        Dialect::Cockroach => ("cockroach", cfg!(feature = "cockroach")),
        Dialect::MySql => ("mysql", cfg!(feature = "mysql")),
        Dialect::Sqlite => ("sqlite", cfg!(feature = "sqlite")),
    };
    (!compiled).then_some(feature)
}

/// The database part of a SQLite URL as sqlx reads it (`sqlite://` or
/// `sqlite:` stripped, up to the query).
pub(crate) fn sqlite_database(target: &str) -> &str {
    let rest = target
        .strip_prefix("sqlite://")
        .or_else(|| target.strip_prefix("sqlite:"))
        .unwrap_or(target);
    rest.split('?').next().unwrap_or("")
}

/// Whether a SQLite URL names an in-memory database (`:memory:` or `mode=memory`).
pub(crate) fn sqlite_memory(target: &str) -> bool {
    sqlite_database(target) == ":memory:"
        || target.split_once('?').is_some_and(|(_, query)| {
            url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "mode" && v == "memory")
        })
}

#[cfg(all(
    test,
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite",
    feature = "cockroach"
))]
mod tests {
    use super::*;

    fn split(url: &str) -> Result<(Dialect, String, SqlConfig)> {
        let config = parse(url)?;
        Ok((
            config.resolved_dialect()?,
            config.target().to_owned(),
            config,
        ))
    }

    #[test]
    fn urls_pick_the_dialect_and_keep_sqlx_options() {
        let (d, t, o) = split("postgres://u:p@h:5/db?table=app.locks&sslmode=require").unwrap();
        assert_eq!(d, Dialect::Postgres);
        assert_eq!(o.table.as_str(), "app.locks");
        assert_eq!(t, "postgres://u:p@h:5/db?sslmode=require");
        let (d, t, _) = split("cockroach://root@h/defaultdb").unwrap();
        assert_eq!(d, Dialect::Cockroach);
        assert_eq!(t, "postgres://root@h/defaultdb");
        let (d, _, _) = split("postgresql://h/db?dialect=cockroach").unwrap();
        assert_eq!(d, Dialect::Cockroach);
        let (d, t, _) = split("mariadb://u@h/db").unwrap();
        assert_eq!((d, t.as_str()), (Dialect::MySql, "mysql://u@h/db"));
        let (d, t, o) = split("sqlite:///tmp/x.db?migrate=true").unwrap();
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
            match split(bad) {
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
            assert!(split(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn bad_urls_are_invalid_and_redacted() {
        for bad in [
            "postgres://u:hunter2@h/db?table=Bad-Name",
            "postgres://u:hunter2@h/db?dialect=oracle",
            "mysql://u:hunter2@h/db?dialect=cockroach",
            "mysql://u:hunter2@h/db?max_connections=0",
            "sqlite:///x.db?migrate=maybe",
            "sqlite:///x.db?table=a&table=b",
            "postgres://u:hunter2@h/db?tabel=x",
            "mysql://u:hunter2@h/db?sslmod=required",
            "redis://u:hunter2@h",
        ] {
            match split(bad) {
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

    #[test]
    fn tables_are_created_on_connect_unless_the_url_says_not() {
        assert!(split("postgres://h/db").unwrap().2.migrate);
        assert!(!split("postgres://h/db?migrate=false").unwrap().2.migrate);
        assert!(!split("postgres://h/db?migrate=off").unwrap().2.migrate);
    }

    #[test]
    fn debug_hides_the_password() {
        let config = SqlConfig::from_url("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn from_env_without_the_variable_says_which_one() {
        if std::env::var_os(URL_ENV).is_some() {
            return;
        }
        match SqlConfig::from_env() {
            Err(Error::InvalidArgument { what, .. }) => assert_eq!(what, URL_ENV),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
}
