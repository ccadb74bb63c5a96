//! Per-call options and the checks every backend shares.

use std::time::Duration;

use bytes::Bytes;

use crate::{Capabilities, Error, Result};

/// How long a grant lasts without refresh unless [`LockOptions::with_ttl`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The longest resource name any backend accepts, in bytes.
pub const MAX_RESOURCE_LEN: usize = 512;

/// The longest owner identity any backend accepts, in bytes.
pub const MAX_OWNER_LEN: usize = 256;

/// How a held lock is kept alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refresh {
    /// The locker's background task renews the lease every `interval`
    /// (default: a third of the TTL). All leases a locker holds are renewed
    /// together, in as few round trips as the store allows.
    Auto {
        /// Time between renewals; `None` means TTL / 3.
        interval: Option<Duration>,
    },
    /// Nothing renews the lease; call [`Lock::refresh`](crate::Lock::refresh)
    /// before the TTL runs out. The lost signal still fires at the deadline.
    Manual,
}

/// Options for one acquire. Build with [`LockOptions::new`] and the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use distlock_core::LockOptions;
///
/// let options = LockOptions::new()
///     .with_ttl(Duration::from_secs(10))
///     .with_wait_timeout(Duration::from_secs(5))
///     .with_data("job 42");
/// assert_eq!(options.permits, 1);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long the grant lasts without refresh. Default [`DEFAULT_TTL`]; must lie
    /// within the backend's [`Capabilities::min_ttl`]..=[`Capabilities::max_ttl`].
    pub ttl: Duration,
    /// How long [`Locker::lock`](crate::Locker::lock) waits for a held resource.
    /// `None` (the default) waits until granted, like `tokio::sync::Mutex::lock`
    /// (cancel by dropping the future); `Some(d)` gives up after `d` with
    /// [`WaitTimeout`](crate::Error::WaitTimeout); `Some(Duration::ZERO)` makes
    /// one attempt. [`Handler::try_lock`](crate::Handler::try_lock) is the one
    /// attempt that answers "held" with `Ok(None)`.
    pub wait_timeout: Option<Duration>,
    /// Who holds the lock, as shown by [`Infoer::info`](crate::Infoer::info).
    /// `None` uses the locker's identity.
    pub owner: Option<String>,
    /// Bytes stored with the grant, returned by [`Reader::read`](crate::Reader::read).
    pub data: Bytes,
    /// How many holders the resource admits at once: 1 (the default) is a mutex,
    /// N a counting semaphore. Every holder must ask for the same number.
    pub permits: u32,
    /// How the lease is kept alive. Default: [`Refresh::Auto`] every TTL / 3.
    pub refresh: Refresh,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: DEFAULT_TTL,
            wait_timeout: None,
            owner: None,
            data: Bytes::new(),
            permits: 1,
            refresh: Refresh::Auto { interval: None },
        }
    }
}

impl LockOptions {
    /// The defaults: 30 s TTL, auto refresh, `lock()` waits until granted, one
    /// permit, no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Wait up to `timeout` in [`Locker::lock`](crate::Locker::lock).
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }

    /// Wait without limit in [`Locker::lock`](crate::Locker::lock) (the default).
    pub fn wait_forever(mut self) -> Self {
        self.wait_timeout = None;
        self
    }

    /// Name the holder (shown by `info`).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Store bytes with the grant.
    pub fn with_data(mut self, data: impl Into<Bytes>) -> Self {
        self.data = data.into();
        self
    }

    /// Admit `permits` holders at once (a counting semaphore).
    pub fn with_permits(mut self, permits: u32) -> Self {
        self.permits = permits;
        self
    }

    /// Renew in the background every `interval`.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh = Refresh::Auto {
            interval: Some(interval),
        };
        self
    }

    /// Do not renew in the background; the caller calls `refresh()`.
    pub fn manual_refresh(mut self) -> Self {
        self.refresh = Refresh::Manual;
        self
    }

    /// The background refresh interval, if any.
    pub fn refresh_interval(&self) -> Option<Duration> {
        match self.refresh {
            Refresh::Auto { interval } => Some(interval.unwrap_or(self.ttl / 3)),
            Refresh::Manual => None,
        }
    }

    /// Check the options against a backend's limits. Every locker calls this before
    /// anything is sent; the error names the field and the accepted range.
    pub fn validate(&self, caps: &Capabilities) -> Result<()> {
        if self.ttl < caps.min_ttl {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{:?} is below the {} minimum of {:?}; ask for at least that",
                    self.ttl, caps.backend, caps.min_ttl
                ),
            ));
        }
        if self.ttl > caps.max_ttl {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{:?} is above the {} maximum of {:?}; use a shorter TTL and refresh",
                    self.ttl, caps.backend, caps.max_ttl
                ),
            ));
        }
        if self.permits == 0 || self.permits > caps.max_permits {
            return Err(Error::invalid(
                "permits",
                format!(
                    "{} is outside 1..={} ({}): 1 is a mutex, N admits N holders",
                    self.permits, caps.max_permits, caps.backend
                ),
            ));
        }
        if self.data.len() > caps.max_data_len {
            return Err(Error::invalid(
                "data",
                format!(
                    "{} bytes exceed the {} limit of {} bytes",
                    self.data.len(),
                    caps.backend,
                    caps.max_data_len
                ),
            ));
        }
        if let Some(owner) = &self.owner {
            validate_owner(owner)?;
        }
        if let Some(interval) = self.refresh_interval() {
            let usable = self.ttl.saturating_sub(caps.drift_margin(self.ttl));
            if interval.is_zero() || interval >= usable {
                return Err(Error::invalid(
                    "refresh interval",
                    format!(
                        "{interval:?} must be above zero and below the TTL less the drift \
                         margin ({usable:?}); TTL / 3 is a good choice"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Check a resource name: non-empty UTF-8 of at most `max_len` bytes
/// (never above [`MAX_RESOURCE_LEN`]), without control characters.
pub fn validate_resource(resource: &str, max_len: usize) -> Result<()> {
    let max_len = max_len.min(MAX_RESOURCE_LEN);
    if resource.is_empty() {
        return Err(Error::invalid(
            "resource",
            "the name is empty; name the thing being locked",
        ));
    }
    if resource.len() > max_len {
        return Err(Error::invalid(
            "resource",
            format!(
                "the name is {} bytes long; the limit is {max_len} bytes (hash long names)",
                resource.len()
            ),
        ));
    }
    if let Some((at, c)) = resource.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Error::invalid(
            "resource",
            format!(
                "control character {:?} at byte {at}; names must be printable text",
                c
            ),
        ));
    }
    Ok(())
}

/// Check a prefix given to `list`: like a resource name, but may be empty.
pub fn validate_prefix(prefix: &str, max_len: usize) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_resource(prefix, max_len).map_err(|e| match e {
        Error::InvalidArgument { reason, .. } => Error::InvalidArgument {
            what: "prefix",
            reason,
        },
        other => other,
    })
}

/// Check an owner identity: at most [`MAX_OWNER_LEN`] bytes, no control characters.
pub fn validate_owner(owner: &str) -> Result<()> {
    if owner.len() > MAX_OWNER_LEN {
        return Err(Error::invalid(
            "owner",
            format!(
                "{} bytes exceed the limit of {MAX_OWNER_LEN} bytes",
                owner.len()
            ),
        ));
    }
    if owner.chars().any(char::is_control) {
        return Err(Error::invalid(
            "owner",
            "contains a control character; use printable text",
        ));
    }
    Ok(())
}
