//! SDK errors → [`distlock_core::Error`], by meaning.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
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
    /// `host:port` of the endpoint, for "unreachable" messages.
    pub(crate) endpoint: &'a str,
}

/// `host:port` of the endpoint a client talks to: the configured one, or
/// DynamoDB's regional endpoint.
pub(crate) fn endpoint_of(endpoint: Option<&str>, region: Option<&str>) -> String {
    if let Some(endpoint) = endpoint {
        return match url::Url::parse(endpoint) {
            Ok(url) => format!(
                "{}:{}",
                url.host_str().unwrap_or("?"),
                url.port_or_known_default().unwrap_or(443)
            ),
            Err(_) => distlock_core::redact_url(endpoint),
        };
    }
    match region {
        Some(region) => format!("dynamodb.{region}.amazonaws.com:443"),
        None => "dynamodb (no region)".to_owned(),
    }
}

/// A request that failed: names the operation and the endpoint; the SDK's
/// error is its `source()` (so it is not repeated here).
#[derive(Debug)]
struct RequestFailed {
    what: String,
    cause: Box<dyn StdError + Send + Sync>,
}

impl std::fmt::Display for RequestFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl StdError for RequestFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.cause)
    }
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

fn unknown(op: Op<'_>, failed: RequestFailed) -> Error {
    Error::OutcomeUnknown {
        backend: BACKEND,
        operation: op.name,
        resource: op.resource.to_owned(),
        source: Box::new(failed),
    }
}

/// Map an SDK error that is not an expected outcome (a failed condition is
/// handled by the caller before this). The error names the operation and the
/// endpoint (and, for a service error, its code and message); the SDK error
/// is kept as the source.
pub(crate) fn map_sdk<E, R>(op: Op<'_>, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(credentials) = credentials_failure(&error) {
        return credentials_error(op, credentials);
    }
    let failed = |error: SdkError<E, R>, detail: String| RequestFailed {
        what: format!("{} on {}{detail}", op.name, op.endpoint),
        cause: Box::new(error),
    };
    // Unreachable or unanswered: a write's outcome is unknown once sent.
    let lost = |error: SdkError<E, R>, sent: bool| {
        let failed = failed(error, String::new());
        if op.write && sent {
            unknown(op, failed)
        } else {
            Error::unavailable(BACKEND, failed)
        }
    };
    match &error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => lost(error, true),
        SdkError::DispatchFailure(failure) => {
            if failure.as_connector_error().is_some_and(|c| c.is_user()) {
                Error::store(BACKEND, failed(error, String::new()))
            } else {
                let sent = !never_sent(&error);
                lost(error, sent)
            }
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("").to_owned();
            let detail = format!(
                ": {}{}",
                if code.is_empty() { "error" } else { &code },
                service
                    .err()
                    .message()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            if code == "ResourceNotFoundException" {
                Error::store(
                    BACKEND,
                    format!(
                        "table `{}` does not exist (or is not active yet): create it with \
                         DynamoStore::create_table or the URL option create=true ({} on {})",
                        op.table, op.name, op.endpoint
                    ),
                )
            } else if is_transient_code(&code) {
                Error::unavailable(BACKEND, failed(error, detail))
            } else if is_unknown_outcome_code(&code) {
                if op.write {
                    unknown(op, failed(error, detail))
                } else {
                    Error::unavailable(BACKEND, failed(error, detail))
                }
            } else {
                Error::store(BACKEND, failed(error, detail))
            }
        }
        _ => Error::store(BACKEND, failed(error, String::new())),
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
            endpoint: "127.0.0.1:8000",
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
        let text = distlock_core::error_chain(&err);
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

    #[test]
    fn unreachable_names_the_endpoint_and_keeps_the_cause_as_source() {
        use aws_sdk_dynamodb::error::ConnectorError;
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        let op = Op {
            name: "info",
            resource: "r",
            write: false,
            table: "t",
            endpoint: &endpoint_of(Some("http://127.0.0.1:1"), None),
        };
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error: SdkError<GetItemError, ()> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let mapped = map_sdk(op, error);
        assert!(mapped.is_transient(), "{mapped:?}");
        let cause = mapped.source().expect("the request failure");
        assert_eq!(cause.to_string(), "info on 127.0.0.1:1");
        let sdk = cause.source().expect("the SDK error");
        assert!(!cause.to_string().contains(&sdk.to_string()), "{cause}");
        assert_eq!(
            endpoint_of(None, Some("eu-west-1")),
            "dynamodb.eu-west-1.amazonaws.com:443"
        );
        assert_eq!(endpoint_of(Some("https://h"), None), "h:443");
    }
}
