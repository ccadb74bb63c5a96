//! SDK errors → [`distlock_core::Error`], by meaning.

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use distlock_core::Error;

pub(crate) const BACKEND: &str = "dynamodb";

/// What a request was, for the error it may become.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    /// `acquire`, `refresh`, `release`, or a read (`info`, `list`, …).
    pub(crate) name: &'static str,
    /// The resource (or a label for a batch).
    pub(crate) resource: &'a str,
    /// Whether the request changes the item: a write whose answer was lost has an
    /// unknown outcome, a read has none.
    pub(crate) write: bool,
    /// The table, for "table missing" messages.
    pub(crate) table: &'a str,
}

/// Service error codes that say "not done, try later".
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TransactionConflictException"
            | "TransactionInProgressException"
            | "LimitExceededException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
    )
}

/// Service error codes whose write may or may not have been applied.
fn is_unknown_outcome_code(code: &str) -> bool {
    matches!(code, "InternalServerError" | "InternalFailure")
}

/// Whether a dispatch failure happened before any byte was sent (the
/// connection could not be opened).
fn never_sent(error: &(dyn StdError + 'static)) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | NetworkUnreachable | HostUnreachable
            ) {
                return true;
            }
        }
        // hyper-util marks failures to connect as "client error (Connect)".
        if e.to_string().contains("(Connect)") {
            return true;
        }
        next = e.source();
    }
    false
}

fn unknown(op: Op<'_>, message: String) -> Error {
    Error::OutcomeUnknown {
        backend: BACKEND,
        operation: op.name,
        resource: op.resource.to_owned(),
        source: message.into(),
    }
}

/// Map an SDK error that is not an expected outcome (a failed condition is
/// handled by the caller before this).
pub(crate) fn map_sdk<E, R>(op: Op<'_>, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = format!("{} failed: {}", op.name, DisplayErrorContext(&error));
    match &error {
        SdkError::ConstructionFailure(_) => Error::store(BACKEND, message),
        SdkError::TimeoutError(_) => {
            if op.write {
                unknown(op, message)
            } else {
                Error::unavailable(BACKEND, message)
            }
        }
        SdkError::DispatchFailure(failure) => {
            let sent = !never_sent(&error);
            let user = failure.as_connector_error().is_some_and(|c| c.is_user());
            if user {
                Error::store(BACKEND, message)
            } else if op.write && sent {
                unknown(op, message)
            } else {
                Error::unavailable(BACKEND, message)
            }
        }
        SdkError::ResponseError(_) => {
            if op.write {
                unknown(op, message)
            } else {
                Error::unavailable(BACKEND, message)
            }
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if code == "ResourceNotFoundException" {
                Error::store(
                    BACKEND,
                    format!(
                        "table `{}` does not exist (or is not active yet): create it with \
                         DynamoStore::create_table or the URL option create=true ({message})",
                        op.table
                    ),
                )
            } else if is_transient_code(code) {
                Error::unavailable(BACKEND, message)
            } else if is_unknown_outcome_code(code) {
                if op.write {
                    unknown(op, message)
                } else {
                    Error::unavailable(BACKEND, message)
                }
            } else {
                Error::store(BACKEND, message)
            }
        }
        _ => Error::store(BACKEND, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connections_were_never_sent() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(never_sent(&refused));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!never_sent(&reset));
    }
}
