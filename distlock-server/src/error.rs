//! Errors on the wire: distlock's [`Error`] as a gRPC status with an encoded
//! [`ErrorDetail`], and back.

use std::time::Duration;

use distlock_core::Error;
use prost::Message;
use tonic::{Code, Status};

use crate::proto::ErrorDetail;
use crate::proto::error_detail::Kind;

/// The backend name a client reports.
pub(crate) const BACKEND: &str = "distlock";

/// What the server refused, as the source of an [`Error::Store`] (downcast it)
/// or [`Error::Unavailable`] on the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The password was missing or wrong.
    #[error(
        "the lock server refused the password (set it in the URL: distlock://:PASSWORD@host:port)"
    )]
    Unauthenticated,
    /// A server limit was hit.
    #[error("server limit `{limit}` reached: {reason}")]
    LimitExceeded {
        /// Which limit (`max_sessions`, `max_locks_per_session`, …).
        limit: String,
        /// The server's message.
        reason: String,
    },
    /// The server is shutting down and grants nothing new.
    #[error("the lock server is draining for shutdown")]
    Draining,
    /// The server answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Any other refusal.
    #[error("server error ({code}): {message}")]
    Server {
        /// The gRPC code.
        code: String,
        /// The message.
        message: String,
    },
}

fn detail(kind: Kind) -> ErrorDetail {
    ErrorDetail {
        kind: kind as i32,
        ..ErrorDetail::default()
    }
}

fn status(code: Code, message: String, detail: ErrorDetail) -> Status {
    Status::with_details(code, message, detail.encode_to_vec().into())
}

/// A server-side limit hit.
pub(crate) fn limit(limit: &str, reason: String) -> Status {
    let mut d = detail(Kind::Limit);
    d.what = limit.to_owned();
    d.reason = reason.clone();
    status(
        Code::ResourceExhausted,
        format!("limit `{limit}`: {reason}"),
        d,
    )
}

/// Bad input caught by the server itself.
pub(crate) fn invalid(what: &str, reason: impl Into<String>) -> Status {
    let reason = reason.into();
    let mut d = detail(Kind::InvalidArgument);
    d.what = what.to_owned();
    d.reason = reason.clone();
    status(
        Code::InvalidArgument,
        format!("invalid {what}: {reason}"),
        d,
    )
}

/// The server is draining.
pub(crate) fn draining() -> Status {
    status(
        Code::Unavailable,
        "the server is draining for shutdown".to_owned(),
        detail(Kind::Draining),
    )
}

/// Wrong or missing password.
pub(crate) fn unauthenticated() -> Status {
    status(
        Code::Unauthenticated,
        "missing or wrong password".to_owned(),
        detail(Kind::Unauthenticated),
    )
}

/// The name of an error kind, for metrics.
pub(crate) fn kind_name(error: &Error) -> &'static str {
    match error {
        Error::InvalidArgument { .. } => "invalid_argument",
        Error::InvalidUrl { .. } => "invalid_url",
        Error::NotHeld { .. } => "not_held",
        Error::Lost { .. } => "lost",
        Error::WaitTimeout { .. } => "wait_timeout",
        Error::SizeMismatch { .. } => "size_mismatch",
        Error::Unavailable { .. } => "unavailable",
        Error::OutcomeUnknown { .. } => "outcome_unknown",
        Error::Store { .. } => "store",
        Error::Unsupported { .. } => "unsupported",
        _ => "other",
    }
}

/// A backend error as the status the client decodes.
pub(crate) fn to_status(error: &Error) -> Status {
    let message = error.to_string();
    let (code, d) = match error {
        Error::InvalidArgument { what, reason } => {
            let mut d = detail(Kind::InvalidArgument);
            d.what = (*what).to_owned();
            d.reason = reason.clone();
            (Code::InvalidArgument, d)
        }
        Error::NotHeld { resource } => {
            let mut d = detail(Kind::NotHeld);
            d.resource = resource.clone();
            (Code::NotFound, d)
        }
        Error::Lost { resource } => {
            let mut d = detail(Kind::Lost);
            d.resource = resource.clone();
            (Code::FailedPrecondition, d)
        }
        Error::WaitTimeout { resource, waited } => {
            let mut d = detail(Kind::WaitTimeout);
            d.resource = resource.clone();
            d.waited_ms = waited.as_millis() as u64;
            (Code::DeadlineExceeded, d)
        }
        Error::SizeMismatch {
            resource,
            requested,
            existing,
        } => {
            let mut d = detail(Kind::SizeMismatch);
            d.resource = resource.clone();
            d.requested = *requested;
            d.existing = *existing;
            (Code::FailedPrecondition, d)
        }
        Error::Unavailable { backend, .. } => {
            let mut d = detail(Kind::Unavailable);
            d.backend = (*backend).to_owned();
            (Code::Unavailable, d)
        }
        Error::OutcomeUnknown {
            backend, resource, ..
        } => {
            let mut d = detail(Kind::OutcomeUnknown);
            d.backend = (*backend).to_owned();
            d.resource = resource.clone();
            (Code::Unavailable, d)
        }
        Error::Unsupported { backend, operation } => {
            let mut d = detail(Kind::Unsupported);
            d.backend = (*backend).to_owned();
            d.what = (*operation).to_owned();
            (Code::Unimplemented, d)
        }
        Error::Store { backend, .. } => {
            let mut d = detail(Kind::Store);
            d.backend = (*backend).to_owned();
            (Code::Internal, d)
        }
        _ => (Code::Internal, detail(Kind::Store)),
    };
    let mut d = d;
    if d.reason.is_empty() {
        d.reason = message.clone();
    }
    status(code, message, d)
}

/// The `&'static str` the core uses for an argument's name.
fn argument_name(what: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "resource",
        "prefix",
        "ttl",
        "permits",
        "data",
        "owner",
        "lease key",
        "refresh interval",
        "wait timeout",
        "key",
    ];
    NAMES
        .iter()
        .copied()
        .find(|n| *n == what)
        .unwrap_or("argument")
}

/// What the client was doing, to say whether a broken call may have happened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// A write whose outcome matters (`acquire`, `refresh`, `release`).
    Write(&'static str, &'a str),
    /// A read: a failure changed nothing.
    Read,
}

/// A status from the server (or the transport) as the client's error.
pub(crate) fn from_status(status: &Status, op: Op<'_>) -> Error {
    if let Ok(d) = ErrorDetail::decode(status.details())
        && let Ok(kind) = Kind::try_from(d.kind)
        && kind != Kind::Unspecified
    {
        return match kind {
            Kind::InvalidArgument => Error::invalid(argument_name(&d.what), d.reason),
            Kind::NotHeld => Error::not_held(&d.resource),
            Kind::Lost => Error::Lost {
                resource: d.resource,
            },
            Kind::SizeMismatch => Error::SizeMismatch {
                resource: d.resource,
                requested: d.requested,
                existing: d.existing,
            },
            Kind::WaitTimeout => Error::WaitTimeout {
                resource: d.resource,
                waited: Duration::from_millis(d.waited_ms),
            },
            Kind::Unavailable => Error::unavailable(BACKEND, status.message().to_owned()),
            Kind::OutcomeUnknown | Kind::Unspecified => unknown(status, op),
            Kind::Store => Error::store(BACKEND, status.message().to_owned()),
            Kind::Unsupported => Error::Unsupported {
                backend: BACKEND,
                operation: "this operation",
            },
            Kind::Limit => Error::store(
                BACKEND,
                ClientError::LimitExceeded {
                    limit: d.what,
                    reason: d.reason,
                },
            ),
            Kind::Unauthenticated => Error::store(BACKEND, ClientError::Unauthenticated),
            Kind::Draining => Error::unavailable(BACKEND, ClientError::Draining),
        };
    }
    match status.code() {
        Code::Unauthenticated => Error::store(BACKEND, ClientError::Unauthenticated),
        // tonic's own refusal of an oversized message.
        Code::ResourceExhausted | Code::OutOfRange => Error::store(
            BACKEND,
            ClientError::LimitExceeded {
                limit: "max_message_bytes".to_owned(),
                reason: status.message().to_owned(),
            },
        ),
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal => unknown(status, op),
        code => Error::store(
            BACKEND,
            ClientError::Server {
                code: format!("{code:?}"),
                message: status.message().to_owned(),
            },
        ),
    }
}

fn unknown(status: &Status, op: Op<'_>) -> Error {
    let source = format!("{:?}: {}", status.code(), status.message());
    match op {
        Op::Write(operation, resource) => Error::OutcomeUnknown {
            backend: BACKEND,
            operation,
            resource: resource.to_owned(),
            source: source.into(),
        },
        Op::Read => Error::unavailable(BACKEND, source),
    }
}
