//! SDK errors → [`distlock_core::Error`], by meaning.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
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

/// The credentials failure behind an error, if that is what it is (the
/// request was never sent).
fn credentials_failure<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e CredentialsError> {
    let mut next: Option<&'e (dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(credentials) = e.downcast_ref::<CredentialsError>() {
            return Some(credentials);
        }
        next = e.source();
    }
    None
}

/// One line for a request that could not be signed: the SDK's own report
/// lists every provider of the credential chain (hundreds of lines).
fn credentials_error(op: Op<'_>, error: &CredentialsError) -> Error {
    let message = format!(
        "{} was not sent: no AWS credentials ({error}); set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (any values for an emulator), or AWS_PROFILE, or run with a role",
        op.name
    );
    match error {
        CredentialsError::ProviderTimedOut(_) => Error::unavailable(BACKEND, message),
        _ => Error::store(BACKEND, message),
    }
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
    if let Some(credentials) = credentials_failure(&error) {
        return credentials_error(op, credentials);
    }
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
    fn a_credentials_failure_is_one_line_and_never_an_unknown_outcome() {
        let op = Op {
            name: "acquire",
            resource: "r",
            write: true,
            table: "t",
        };
        #[derive(Debug)]
        struct Dispatch(CredentialsError);
        impl std::fmt::Display for Dispatch {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl StdError for Dispatch {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let chain = Dispatch(CredentialsError::provider_error(
            "profile file not found\nIMDS: request forbidden\n(300 more lines)",
        ));
        let found = credentials_failure(&chain).expect("found in the chain");
        let err = credentials_error(op, found);
        assert!(matches!(err, Error::Store { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
        let timed_out = CredentialsError::provider_timed_out(std::time::Duration::from_secs(5));
        assert!(credentials_error(op, &timed_out).is_transient());
        assert!(credentials_failure(&std::io::Error::other("x")).is_none());
    }

    #[test]
    fn refused_connections_were_never_sent() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(never_sent(&refused));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!never_sent(&reset));
    }
}
