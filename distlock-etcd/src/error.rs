//! etcd client errors, mapped by meaning onto [`distlock_core::Error`].

use std::error::Error as StdError;
use std::fmt;

use distlock_core::Error;

pub(crate) const BACKEND: &str = "etcd";

/// Whether the call changes the store (its outcome matters if the answer is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A read: any failure to answer is "unavailable".
    Read,
    /// A write (`acquire`, `refresh`, `release`): a failure after sending means
    /// the outcome is unknown.
    Write(&'static str),
}

/// etcd's answer to a put on a lease it no longer has.
pub(crate) fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() as i32 == tonic_code::NOT_FOUND
                && status.message().contains("lease not found")
        }
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

/// The request never reached etcd (no connection to the endpoint it was
/// routed to): retrying it elsewhere is safe, even for a write.
pub(crate) fn not_sent(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() as i32 == 14 && !status.message().starts_with("etcdserver:")
        }
        _ => false,
    }
}

/// gRPC codes by number (tonic is not a direct dependency).
mod tonic_code {
    pub(super) const NOT_FOUND: i32 = 5;
}

fn code_of(status: &etcd_client::Error) -> Option<i32> {
    match status {
        etcd_client::Error::GRpcStatus(status) => Some(status.code() as i32),
        _ => None,
    }
}

/// A client error and the endpoint(s) it came from. Its text says where and
/// what happened; the client's own words are only in `source()`, so an error
/// chain printer shows each fact once.
pub(crate) struct AtEndpoint {
    what: &'static str,
    endpoint: String,
    /// The client error's chain, each distinct text once.
    cause: Link,
    /// The client error itself, for `Debug`.
    client: etcd_client::Error,
}

impl AtEndpoint {
    fn new(what: &'static str, endpoint: &str, client: etcd_client::Error) -> Self {
        AtEndpoint {
            what,
            endpoint: endpoint.to_owned(),
            cause: Link::chain_of(&client),
            client,
        }
    }
}

impl fmt::Debug for AtEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtEndpoint")
            .field("what", &self.what)
            .field("endpoint", &self.endpoint)
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Display for AtEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.what, self.endpoint)
    }
}

impl StdError for AtEndpoint {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.cause)
    }
}

/// One link of a client error's chain, as text. etcd-client prints its cause
/// inside its own text (a gRPC status prints its whole source chain) and the
/// transport layers below repeat themselves; these links keep each distinct
/// text once, down to the operating system's words ("Connection refused").
#[derive(Debug)]
pub(crate) struct Link {
    text: String,
    next: Option<Box<Link>>,
}

impl Link {
    fn chain_of(error: &etcd_client::Error) -> Link {
        use etcd_client::Error as E;
        let mut texts: Vec<String> = Vec::new();
        let mut next: Option<&(dyn StdError + 'static)> = match error {
            E::GRpcStatus(status) => match status.source() {
                Some(inner) => Some(inner),
                None => {
                    texts.push(format!("{} ({:?})", status.message(), status.code()));
                    None
                }
            },
            E::TransportError(e) => Some(e),
            E::IoError(e) => Some(e),
            other => {
                texts.push(other.to_string());
                None
            }
        };
        while let Some(error) = next {
            let text = error.to_string();
            if texts.last() != Some(&text) {
                texts.push(text);
            }
            next = error.source();
        }
        let mut link: Option<Box<Link>> = None;
        for text in texts.into_iter().rev() {
            link = Some(Box::new(Link { text, next: link }));
        }
        link.map_or_else(
            || Link {
                text: error.to_string(),
                next: None,
            },
            |l| *l,
        )
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl StdError for Link {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.next.as_deref().map(|l| l as &(dyn StdError + 'static))
    }
}

/// Map a client error for an operation on `resource`, sent to `endpoint`
/// (`host:port`, or the list of them when every one was tried).
///
/// - could not connect / no answer before sending: [`Error::Unavailable`];
/// - sent, then the connection broke, timed out or the leader changed: for
///   writes [`Error::OutcomeUnknown`], for reads [`Error::Unavailable`];
/// - permanent store errors (permission, authentication, bad request, space
///   quota): [`Error::Store`].
pub(crate) fn map(error: etcd_client::Error, endpoint: &str, op: Op, resource: &str) -> Error {
    use etcd_client::Error as E;
    let at =
        |what: &'static str, source: etcd_client::Error| AtEndpoint::new(what, endpoint, source);
    let unknown = |error: etcd_client::Error| match op {
        Op::Read => Error::unavailable(BACKEND, at("no answer from", error)),
        Op::Write(operation) => Error::OutcomeUnknown {
            backend: BACKEND,
            operation,
            resource: resource.to_owned(),
            source: Box::new(at("no confirmed answer from", error)),
        },
    };
    let unavailable = |error| Error::unavailable(BACKEND, at("cannot reach", error));
    let refused = |error| Error::store(BACKEND, at("refused by", error));
    match &error {
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) => unavailable(error),
        E::GRpcStatus(status) => {
            // Codes: 1 Cancelled, 2 Unknown, 4 DeadlineExceeded, 8 ResourceExhausted,
            // 10 Aborted, 13 Internal, 14 Unavailable.
            match code_of(&error).unwrap_or(2) {
                14 => {
                    // etcd's own "request timed out" / "leader changed" answers come
                    // after the request was proposed; a refused connection before it.
                    if status.message().starts_with("etcdserver:") {
                        unknown(error)
                    } else {
                        unavailable(error)
                    }
                }
                1 | 2 | 4 | 10 | 13 => unknown(error),
                8 if status.message().contains("too many requests") => unavailable(error),
                _ => refused(error),
            }
        }
        E::WatchError(_) | E::LeaseKeepAliveError(_) | E::ElectError(_) | E::Internal(_) => {
            unknown(error)
        }
        _ => refused(error),
    }
}

/// A value under the lock prefix that distlock did not write.
pub(crate) fn unreadable(key: &[u8]) -> Error {
    Error::store(
        BACKEND,
        format!(
            "key `{}` under the lock prefix has a value distlock cannot read; \
             keep the prefix for distlock alone",
            String::from_utf8_lossy(key).replace('\0', "\\0")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_not_found_is_recognised() {
        let error = etcd_client::Error::LeaseKeepAliveError("lease not found".into());
        assert!(is_lease_not_found(&error));
        let other = etcd_client::Error::InvalidArgs("x".into());
        assert!(!is_lease_not_found(&other));
        assert!(matches!(
            map(other, "h:1", Op::Read, "r"),
            Error::Store { .. }
        ));
    }
}
