//! etcd client errors, mapped by meaning onto [`distlock_core::Error`].

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

/// Map a client error for an operation on `resource`.
///
/// - could not connect / no answer before sending: [`Error::Unavailable`];
/// - sent, then the connection broke, timed out or the leader changed: for
///   writes [`Error::OutcomeUnknown`], for reads [`Error::Unavailable`];
/// - permanent store errors (permission, authentication, bad request, space
///   quota): [`Error::Store`].
pub(crate) fn map(error: etcd_client::Error, op: Op, resource: &str) -> Error {
    use etcd_client::Error as E;
    let unknown = |error: etcd_client::Error| match op {
        Op::Read => Error::unavailable(BACKEND, error),
        Op::Write(operation) => Error::OutcomeUnknown {
            backend: BACKEND,
            operation,
            resource: resource.to_owned(),
            source: Box::new(error),
        },
    };
    match &error {
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) => {
            Error::unavailable(BACKEND, error)
        }
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
                        Error::unavailable(BACKEND, error)
                    }
                }
                1 | 2 | 4 | 10 | 13 => unknown(error),
                8 if status.message().contains("too many requests") => {
                    Error::unavailable(BACKEND, error)
                }
                _ => Error::store(BACKEND, error),
            }
        }
        E::WatchError(_) | E::LeaseKeepAliveError(_) | E::ElectError(_) | E::Internal(_) => {
            unknown(error)
        }
        _ => Error::store(BACKEND, error),
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
        assert!(matches!(map(other, Op::Read, "r"), Error::Store { .. }));
    }
}
