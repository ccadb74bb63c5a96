//! Exit codes (sysexits-like) and the one-line error every failure prints.

use std::fmt;
use std::process::ExitCode;

use distlock::Error;

/// Success (or the command's own code, passed through by `lock`).
pub(crate) const OK: u8 = 0;
/// `info`/`read` of a free resource, `release` of a key that holds nothing.
pub(crate) const NOT_FOUND: u8 = 1;
/// Bad arguments: unknown option, invalid URL, name, TTL, key (EX_USAGE).
pub(crate) const USAGE: u8 = 64;
/// The store could not be reached or answered with an error (EX_UNAVAILABLE).
pub(crate) const UNAVAILABLE: u8 = 69;
/// A bug or an unexpected failure in distlock itself (EX_SOFTWARE).
pub(crate) const SOFTWARE: u8 = 70;
/// The lock is held by others: `--no-wait` found it taken or `--wait` ran out (EX_TEMPFAIL).
pub(crate) const HELD: u8 = 75;
/// The lock was lost while the command ran; the command was terminated.
pub(crate) const LOST: u8 = 79;
/// The command could not be executed (not executable), as in sh.
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// The command was not found, as in sh.
pub(crate) const NOT_FOUND_CMD: u8 = 127;

/// The exit codes, as shown by `--help`.
pub(crate) const HELP: &str = "\
Exit codes:
  0    success; `lock` passes the command's own exit code through
  1    `info`/`read`: the resource is free; `release`: the key holds nothing
  64   usage: bad option, URL, resource name, TTL or key
  69   store unavailable: cannot connect, or the store answered with an error
  70   internal error in distlock
  75   lock held by others: `--no-wait`, or `--wait` timed out
  79   lock lost while the command ran (the command was terminated)
  126  the command could not be executed; 127: the command was not found
  128+N  the command (or distlock while waiting) was ended by signal N (130: SIGINT)";

/// A failure: its exit code and a one-line message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code for a distlock error.
pub(crate) fn code_of(error: &Error) -> u8 {
    match error {
        Error::InvalidArgument { .. } | Error::InvalidUrl { .. } | Error::SizeMismatch { .. } => {
            USAGE
        }
        Error::Unavailable { .. } | Error::OutcomeUnknown { .. } | Error::Store { .. } => {
            UNAVAILABLE
        }
        Error::WaitTimeout { .. } => HELD,
        Error::Lost { .. } => LOST,
        Error::NotHeld { .. } => NOT_FOUND,
        _ => SOFTWARE,
    }
}

/// The error and its sources on one line.
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    distlock::error_chain(error)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let mut message = one_line(&error);
        match &error {
            Error::Unavailable { .. } => {
                message.push_str(" (is the store running and the URL right? try `distlock doctor`)")
            }
            Error::Store { .. } => message.push_str(" (try `distlock doctor`)"),
            _ => {}
        }
        Failure::new(code_of(&error), message)
    }
}

pub(crate) fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}
