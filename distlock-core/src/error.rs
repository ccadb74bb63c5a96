//! The one error type of distlock, grouped by meaning.

use std::time::Duration;

/// A boxed error from a store client, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong, by meaning rather than by backend.
///
/// "The resource is held by someone else" is *not* an error: [`Handler::try_lock`]
/// returns `Ok(None)` for it. Each variant's message says what to fix.
/// [`Error::is_transient`] tells a retry loop whether trying again can help.
///
/// [`Handler::try_lock`]: crate::Handler::try_lock
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was rejected before anything was sent to the store.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument at fault (`resource`, `ttl`, `permits`, …).
        what: &'static str,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },

    /// A URL naming a store could not be used.
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The lease key does not hold the resource (never did, was released, or
    /// expired and was perhaps granted to someone else).
    #[error("lease on `{resource}` is not held by this key (released, expired or never granted)")]
    NotHeld {
        /// The resource named in the call.
        resource: String,
    },

    /// The lock was lost before this call: its deadline passed without a confirmed
    /// refresh, or the store refused a refresh.
    #[error("lock on `{resource}` was lost; stop using it and acquire it again")]
    Lost {
        /// The resource of the lost lock.
        resource: String,
    },

    /// [`Locker::lock`](crate::Locker::lock) gave up waiting.
    #[error("timed out after {waited:?} waiting for `{resource}`")]
    WaitTimeout {
        /// The resource waited for.
        resource: String,
        /// How long the call waited.
        waited: Duration,
    },

    /// The resource is in use with a different number of permits.
    #[error(
        "`{resource}` is in use with {existing} permit(s) but {requested} were requested; \
         every holder must ask for the same size"
    )]
    SizeMismatch {
        /// The resource.
        resource: String,
        /// The permits this call asked for.
        requested: u32,
        /// The permits the current holders use.
        existing: u32,
    },

    /// The store could not be reached or did not answer in time. Transient.
    /// The cause (naming the endpoint) is the [`source`](std::error::Error::source);
    /// [`error_chain`](crate::error_chain) prints both.
    #[error("{backend} store unavailable")]
    Unavailable {
        /// The backend's name (`redis`, `postgres`, …).
        backend: &'static str,
        /// The client error.
        #[source]
        source: BoxError,
    },

    /// The request reached the store but its outcome could not be confirmed (the
    /// connection broke after sending). The operation may or may not have happened.
    #[error("{backend}: outcome of {operation} on `{resource}` is unknown")]
    OutcomeUnknown {
        /// The backend's name.
        backend: &'static str,
        /// `acquire`, `refresh` or `release`.
        operation: &'static str,
        /// The resource.
        resource: String,
        /// The client error.
        #[source]
        source: BoxError,
    },

    /// The store answered with an error that retrying will not fix (schema missing,
    /// permission denied, corrupt record, …).
    #[error("{backend} store error")]
    Store {
        /// The backend's name.
        backend: &'static str,
        /// The store's error.
        #[source]
        source: BoxError,
    },

    /// The backend cannot do this operation.
    #[error("{backend} does not support {operation}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked.
        operation: &'static str,
    },
}

impl Error {
    /// Whether retrying the same call later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::OutcomeUnknown { .. } | Error::WaitTimeout { .. }
        )
    }

    /// Build an [`Error::InvalidArgument`].
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }

    /// Build an [`Error::Unavailable`] from any client error.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            backend,
            source: source.into(),
        }
    }

    /// Build an [`Error::Store`] from any store error.
    pub fn store(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Store {
            backend,
            source: source.into(),
        }
    }

    /// Build an [`Error::NotHeld`].
    pub fn not_held(resource: &str) -> Self {
        Error::NotHeld {
            resource: resource.to_owned(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes, each said once: `message: cause: cause`. A cause
/// whose text is already in the line (a wrapper that repeats its source) is
/// skipped. For logs and command-line tools; `Display` says only the error's
/// own part.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn display_says_its_own_part_and_the_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = Error::Unavailable {
            backend: "redis",
            source: Box::new(io),
        };
        assert_eq!(error.to_string(), "redis store unavailable");
        let source = std::error::Error::source(&error).expect("the cause is kept");
        assert_eq!(source.to_string(), "connection refused");
        assert_eq!(
            error_chain(&error),
            "redis store unavailable: connection refused"
        );
    }
}
