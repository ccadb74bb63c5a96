//! Mapping sqlx errors to [`distlock_core::Error`] by meaning, and the retry
//! of serialization failures.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use distlock_core::{Backoff, Error, redact_url};

/// SQLSTATE of a serialization failure (PostgreSQL under `SERIALIZABLE`,
/// CockroachDB always, MySQL/MariaDB deadlocks).
pub(crate) const SERIALIZATION_FAILURE: &str = "40001";
/// SQLSTATE of a detected deadlock (PostgreSQL).
const DEADLOCK_DETECTED: &str = "40P01";

/// Which call failed: decides whether a broken connection leaves the outcome
/// unknown (a write) or simply unavailable (a read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) backend: &'static str,
    pub(crate) name: &'static str,
    /// The call changes the store (acquire, refresh, release, job writes).
    pub(crate) writes: bool,
}

impl Op {
    pub(crate) fn read(backend: &'static str, name: &'static str) -> Self {
        Op {
            backend,
            name,
            writes: false,
        }
    }

    pub(crate) fn write(backend: &'static str, name: &'static str) -> Self {
        Op {
            backend,
            name,
            writes: true,
        }
    }
}

/// A failed call, split by phase: getting a connection (nothing was sent) or
/// running statements on it.
#[derive(Debug)]
pub(crate) enum Fail {
    /// No connection could be had: nothing was sent.
    Connect(sqlx::Error),
    /// A statement failed (it may have been applied).
    Run(sqlx::Error),
}

impl From<sqlx::Error> for Fail {
    fn from(error: sqlx::Error) -> Self {
        Fail::Run(error)
    }
}

/// Whether the error is a serialization conflict that a retry of the same
/// statement (or transaction) resolves.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED)
        ),
        _ => false,
    }
}

/// Map an error of a call that already had a connection.
///
/// - no connection could be had (pool timeout, connect refused): `Unavailable`;
/// - the connection broke while the request was out: `OutcomeUnknown` for
///   writes, `Unavailable` for reads;
/// - serialization conflicts that outlived the retries: `Unavailable` (transient);
/// - any other answer from the server (missing table, permission): `Store`.
pub(crate) fn map(op: Op, resource: &str, error: impl Into<Fail>) -> Error {
    use sqlx::Error as E;
    let error = match error.into() {
        Fail::Connect(error) => return Error::unavailable(op.backend, error),
        Fail::Run(error) => error,
    };
    match error {
        E::PoolTimedOut | E::PoolClosed | E::Tls(_) | E::WorkerCrashed => {
            Error::unavailable(op.backend, error)
        }
        E::Io(_) | E::Protocol(_) | E::BeginFailed => {
            if op.writes {
                Error::OutcomeUnknown {
                    backend: op.backend,
                    operation: op.name,
                    resource: resource.to_owned(),
                    source: Box::new(error),
                }
            } else {
                Error::unavailable(op.backend, error)
            }
        }
        E::Database(ref db) => {
            let code = db.code();
            match code.as_deref() {
                Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED) => {
                    Error::unavailable(op.backend, error)
                }
                // statement_timeout: the statement was rolled back.
                Some("57014") => Error::unavailable(op.backend, error),
                // MySQL 1205 (HY000): the statement was rolled back.
                _ if db.message().contains("Lock wait timeout exceeded") => {
                    Error::unavailable(op.backend, error)
                }
                // Connection exceptions, operator intervention (shutdown), lock
                // wait timeouts (MySQL 1205 is HY000; PostgreSQL 55P03).
                Some(code)
                    if code.starts_with("08") || code.starts_with("57") || code == "55P03" =>
                {
                    if op.writes {
                        Error::OutcomeUnknown {
                            backend: op.backend,
                            operation: op.name,
                            resource: resource.to_owned(),
                            source: Box::new(error),
                        }
                    } else {
                        Error::unavailable(op.backend, error)
                    }
                }
                // PostgreSQL undefined_table, MySQL ER_NO_SUCH_TABLE, SQLite "no such table".
                Some("42P01" | "42S02") => Error::store(
                    op.backend,
                    format!(
                        "{}; call SqlStore::migrate() once to create the lock tables",
                        db
                    ),
                ),
                _ if db.message().contains("no such table") => Error::store(
                    op.backend,
                    format!(
                        "{}; call SqlStore::migrate() once to create the lock tables",
                        db
                    ),
                ),
                _ if db.message().contains("database is locked") => {
                    Error::unavailable(op.backend, error)
                }
                _ => Error::store(op.backend, error),
            }
        }
        other => Error::store(op.backend, other),
    }
}

// ---- connecting -----------------------------------------------------------

/// An [`InvalidUrl`](Error::InvalidUrl) error about `url` (password hidden).
pub(crate) fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: redact_url(url),
        reason: reason.into(),
    }
}

/// A failure to open the pool, by meaning: a bad option is
/// [`InvalidUrl`](Error::InvalidUrl), a refusal by the server
/// [`Store`](Error::Store), anything else [`Unavailable`](Error::Unavailable).
pub(crate) fn connect_error(url: &str, backend: &'static str, error: sqlx::Error) -> Error {
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
#[error("cannot connect to {endpoint}")]
pub struct ConnectError {
    /// `host:port` or the socket path.
    pub endpoint: String,
    /// The client's error.
    #[source]
    pub source: sqlx::Error,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// A connect error naming the server: a refused or broken connection (or no
/// answer) is [`Unavailable`](Error::Unavailable), a login or database the
/// server refused is [`Store`](Error::Store), a bad option is
/// [`InvalidUrl`](Error::InvalidUrl).
pub(crate) fn connect_error_at(
    url: &str,
    backend: &'static str,
    endpoint: &str,
    error: sqlx::Error,
) -> Error {
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

/// `host:port`, the IPv6 host in brackets.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The server a failed call was for, with the client's error as the source:
/// what [`Unavailable`](Error::Unavailable) errors of a store call carry.
#[derive(Debug, thiserror::Error)]
#[error("server {endpoint}")]
pub(crate) struct AtEndpoint {
    /// `host:port`, the socket path, or the SQLite file.
    pub(crate) endpoint: String,
    #[source]
    pub(crate) source: distlock_core::BoxError,
}

/// An [`Unavailable`](Error::Unavailable) error names the server it could
/// not reach; other errors pass unchanged.
pub(crate) fn at_endpoint(error: Error, endpoint: &str) -> Error {
    match error {
        Error::Unavailable { backend, source } => Error::Unavailable {
            backend,
            source: Box::new(AtEndpoint {
                endpoint: endpoint.to_owned(),
                source,
            }),
        },
        other => other,
    }
}

/// Retries of serialization failures (SQLSTATE 40001): exponential backoff with
/// jitter, bounded in count. Shared by every dialect (CockroachDB needs it on any
/// contention; PostgreSQL under `SERIALIZABLE`; MySQL deadlocks use the same code).
#[derive(Debug)]
pub(crate) struct Retry {
    /// Attempts in all (the first plus retries).
    pub(crate) attempts: u32,
    /// First pause of the jittered [`Backoff`]; doubled each time.
    pub(crate) first_pause: Duration,
    /// Longest pause.
    pub(crate) max_pause: Duration,
    /// Retries made so far (for tests and benchmarks).
    pub(crate) retries: AtomicU64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 12,
            first_pause: Duration::from_millis(1),
            max_pause: Duration::from_millis(200),
            retries: AtomicU64::new(0),
        }
    }
}

impl Retry {
    /// Run `attempt` until it succeeds, fails with a non-retryable error, or the
    /// attempts run out (the last error is returned).
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, Fail>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let mut backoff = Backoff::new(self.first_pause, self.max_pause);
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(Fail::Run(error)) if is_retryable(&error) && tries < self.attempts => {
                    tries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, tries, "serialization conflict; retrying");
                    tokio::time::sleep(backoff.next_pause()).await;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_name_the_server_not_the_password() {
        let refused = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        let err = connect_error_at("postgres://u:hunter2@h:1/db", "postgres", "h:1", refused);
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        assert!(text.contains("h:1") && text.contains("refused"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        // The message names the server; the cause is the source, not repeated.
        let Error::Unavailable { source, .. } = &err else {
            unreachable!()
        };
        assert_eq!(source.to_string(), "cannot connect to h:1");
        assert_eq!(host_port("::1", 5432), "[::1]:5432");
        assert_eq!(host_port("db", 5432), "db:5432");
    }

    #[test]
    fn unavailable_errors_name_the_server_and_keep_the_cause() {
        let err = at_endpoint(Error::unavailable("mysql", "pool timed out"), "db:3306");
        let Error::Unavailable { source, .. } = &err else {
            unreachable!()
        };
        assert_eq!(source.to_string(), "server db:3306");
        let cause = source.source().map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("pool timed out"));
        // Other errors pass unchanged.
        let err = at_endpoint(Error::store("mysql", "denied"), "db:3306");
        assert!(matches!(err, Error::Store { .. }));
    }
}
