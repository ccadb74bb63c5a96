//! The one place where redis-rs errors become [`distlock_core::Error`]s.
//!
//! Every mapped error names the server (`host:port` or the socket path, never
//! the password) and keeps the client's error as its `source`. The text of a
//! mapped error says where and what to do; the client's own words are only in
//! `source()`, so an error chain printer shows each fact once.

use std::error::Error as StdError;
use std::fmt;

use distlock_core::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub(crate) const BACKEND: &str = "redis";

/// What went wrong where, with the client's error as the source.
#[derive(Debug)]
pub(crate) struct AtServer {
    /// What happened, phrased for the user (`cannot connect to`, …).
    what: &'static str,
    /// `host:port` or the socket path.
    endpoint: String,
    /// What to do about it, if anything can be said.
    hint: Option<&'static str>,
    source: RedisError,
}

impl AtServer {
    pub(crate) fn new(what: &'static str, endpoint: &str, source: RedisError) -> Self {
        AtServer {
            what,
            endpoint: endpoint.to_owned(),
            hint: None,
            source,
        }
    }

    fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

impl fmt::Display for AtServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.what, self.endpoint)?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl StdError for AtServer {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        // redis-rs prints its inner error as its own text and also returns it
        // as its source: skip the links that only repeat the text above them.
        let mut error: &(dyn StdError + 'static) = &self.source;
        while let Some(inner) = error.source() {
            if inner.to_string() != error.to_string() {
                break;
            }
            error = inner;
        }
        Some(error)
    }
}

const CREDENTIALS_HINT: &str = "give the password in the URL as redis://:PASSWORD@host \
                                (or redis://USER:PASSWORD@host for an ACL user)";

/// The server refused our credentials, or wants some and got none.
fn is_auth_error(error: &RedisError) -> bool {
    if error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        return true;
    }
    // A pipeline's error has no code of its own: its text holds its items'.
    let text = error.to_string();
    text.contains("NOAUTH") || text.contains("WRONGPASS")
}

/// Map a failure to connect (or to load the scripts right after).
pub(crate) fn connect_error(error: RedisError, endpoint: &str) -> Error {
    if is_auth_error(&error) {
        return Error::store(
            BACKEND,
            AtServer::new("authentication refused by", endpoint, error).with_hint(CREDENTIALS_HINT),
        );
    }
    if error.is_io_error() || error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading) {
        Error::unavailable(BACKEND, AtServer::new("cannot connect to", endpoint, error))
    } else {
        Error::store(BACKEND, AtServer::new("refused by", endpoint, error))
    }
}

/// Map a command's error by meaning. `write`: the command changes state, so a
/// connection lost after sending leaves its outcome unknown.
pub(crate) fn map_error(
    error: RedisError,
    endpoint: &str,
    operation: &'static str,
    resource: &str,
    write: bool,
) -> Error {
    if is_auth_error(&error) {
        return Error::store(
            BACKEND,
            AtServer::new("authentication refused by", endpoint, error).with_hint(CREDENTIALS_HINT),
        );
    }
    if error.is_connection_refusal() {
        return Error::unavailable(BACKEND, AtServer::new("cannot connect to", endpoint, error));
    }
    match error.kind() {
        // Refused by the server before anything was written (loading, a
        // replica after a failover, a cluster in transition): try again later.
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        ) => Error::unavailable(BACKEND, AtServer::new("not ready:", endpoint, error)),
        ErrorKind::Io | ErrorKind::Parse if write => Error::OutcomeUnknown {
            backend: BACKEND,
            operation,
            resource: resource.to_owned(),
            source: Box::new(AtServer::new("no answer from", endpoint, error)),
        },
        ErrorKind::Io | ErrorKind::Parse => {
            Error::unavailable(BACKEND, AtServer::new("no answer from", endpoint, error))
        }
        _ => Error::store(BACKEND, AtServer::new("refused by", endpoint, error)),
    }
}

/// A reply the scripts never give: something else uses the namespace.
pub(crate) fn unexpected(what: &str, value: &impl fmt::Debug) -> Error {
    Error::store(
        BACKEND,
        format!("unexpected reply to {what}: {value:?} (is the namespace used by something else?)"),
    )
}

/// The server lost its script cache (`SCRIPT FLUSH`, a restart).
pub(crate) fn is_noscript(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chain(error: &dyn StdError) -> Vec<String> {
        let mut out = vec![error.to_string()];
        let mut next = error.source();
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }

    #[test]
    fn a_refused_password_says_how_to_give_one() {
        let error = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        let mapped = connect_error(error, "127.0.0.1:6379");
        assert!(!mapped.is_transient());
        let text = distlock_core::error_chain(&mapped);
        assert!(text.contains("redis://:PASSWORD@host"), "{text}");
        assert!(text.contains("127.0.0.1:6379"), "{text}");
    }

    #[test]
    fn the_chain_shows_the_client_error_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let mapped = connect_error(RedisError::from(io), "127.0.0.1:1");
        assert!(mapped.is_transient());
        let Error::Unavailable { source, .. } = &mapped else {
            panic!("{mapped:?}");
        };
        let links = chain(source.as_ref());
        assert_eq!(links[0], "cannot connect to 127.0.0.1:1");
        let refused = links
            .iter()
            .filter(|l| l.contains("Connection refused"))
            .count();
        assert_eq!(refused, 1, "{links:?}");
    }
}
