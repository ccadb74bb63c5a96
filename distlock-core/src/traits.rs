//! The user-facing traits: what a program that takes locks calls.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Capabilities, LeaseKey, Lock, LockOptions, Result};

/// Take and give back locks.
///
/// # Contract
/// - [`Handler::try_lock`] makes exactly one attempt and never waits; a resource
///   held by others is `Ok(None)`, not an error.
/// - A granted [`Lock`] carries a fencing token greater than every earlier
///   token of that resource.
/// - Invalid arguments fail with [`Error::InvalidArgument`](crate::Error::InvalidArgument)
///   before anything is sent.
#[async_trait]
pub trait Handler: Debug + Send + Sync {
    /// Try once to take `resource`.
    ///
    /// # Errors
    /// [`SizeMismatch`](crate::Error::SizeMismatch) if the resource is held with
    /// another number of permits; [`Unavailable`](crate::Error::Unavailable) if the
    /// store cannot be reached (nothing is held then: a lease the store may have
    /// granted is released in the background).
    ///
    /// # Cancel safety
    /// Dropping the future leaves no lease behind: if the request was sent, its
    /// key is released in the background.
    async fn try_lock(&self, resource: &str, options: &LockOptions) -> Result<Option<Lock>>;

    /// Release a lease by its key, for keys handed over from another process
    /// ([`Lock::release`] is the usual way).
    ///
    /// # Errors
    /// [`NotHeld`](crate::Error::NotHeld) if the key does not hold the resource
    /// (already released, expired, or wrong key); the holder is left untouched.
    async fn release(&self, resource: &str, key: LeaseKey) -> Result<()>;

    /// Renew a lease by its key for another `ttl` (go-ldlm's `RefreshLock`).
    ///
    /// # Errors
    /// [`NotHeld`](crate::Error::NotHeld) if the key does not hold the resource.
    async fn refresh(&self, resource: &str, key: LeaseKey, ttl: Duration) -> Result<()>;

    /// An operator's force release: end every lease of `resource` without the
    /// holders' keys. The next grant's token is higher, so evicted holders are
    /// fenced; they see `lost` at their next refresh. Returns how many leases
    /// ended (0: it was free).
    ///
    /// # Errors
    /// [`Unsupported`](crate::Error::Unsupported) where the backend cannot.
    async fn force_release(&self, resource: &str) -> Result<usize> {
        let _ = resource;
        Err(crate::Error::Unsupported {
            backend: "this locker",
            operation: "force release",
        })
    }
}

/// Ask who holds what.
#[async_trait]
pub trait Infoer: Debug + Send + Sync {
    /// The current holders of `resource`, or `None` when it is free.
    async fn info(&self, resource: &str) -> Result<Option<Info>>;

    /// Held resources whose names start with `prefix` (empty: all), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Read the data stored with a lock.
#[async_trait]
pub trait Reader: Debug + Send + Sync {
    /// The bytes the (oldest) current holder stored at acquire, or `None` when the
    /// resource is free.
    async fn read(&self, resource: &str) -> Result<Option<Bytes>>;
}

/// Everything: take, wait for, inspect and release locks. Object safe: use it as
/// `Arc<dyn Locker>` to pick the backend at run time.
#[async_trait]
pub trait Locker: Handler + Infoer + Reader {
    /// Take `resource`, waiting while others hold it: until granted by default,
    /// or up to [`LockOptions::wait_timeout`] (`Duration::ZERO`: one attempt).
    /// Cancel the wait by dropping the future.
    ///
    /// Waiting never spins: backends that can push wake waiters on release; the
    /// others poll with jittered backoff, never sleeping past the holder's expiry.
    ///
    /// # Errors
    /// [`WaitTimeout`](crate::Error::WaitTimeout) when the wait ends without a
    /// grant; otherwise as [`Handler::try_lock`].
    ///
    /// # Cancel safety
    /// Dropping the future leaves no lease behind.
    async fn lock(&self, resource: &str, options: &LockOptions) -> Result<Lock>;

    /// The backend's limits and features.
    fn capabilities(&self) -> &Capabilities;

    /// The background refresher's counters, where the locker has one (every
    /// [`StoreLocker`](crate::StoreLocker) does); wrappers pass it through.
    fn refresh_stats(&self) -> Option<crate::RefreshStats> {
        None
    }
}

/// Who holds a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Info {
    /// The resource.
    pub resource: String,
    /// The permits the resource is used with.
    pub permits: u32,
    /// Current holders, oldest grant first (never empty).
    pub holders: Vec<Holder>,
}

impl Info {
    /// Build an `Info`; holders are sorted oldest first.
    pub fn new(resource: impl Into<String>, permits: u32, mut holders: Vec<Holder>) -> Self {
        holders.sort_by_key(|h| h.token);
        Info {
            resource: resource.into(),
            permits,
            holders,
        }
    }

    fn first(&self) -> Option<&Holder> {
        self.holders.first()
    }

    /// When the oldest current grant was made.
    pub fn lock_time(&self) -> Option<SystemTime> {
        self.first().map(|h| h.acquired_at)
    }

    /// When the oldest current grant expires unless refreshed.
    pub fn expire_time(&self) -> Option<SystemTime> {
        self.first().map(|h| h.expires_at)
    }

    /// Who holds the oldest current grant.
    pub fn owner(&self) -> Option<&str> {
        self.first().map(|h| h.owner.as_str())
    }

    /// The highest fencing token among current holders.
    pub fn token(&self) -> Option<u64> {
        self.holders.iter().map(|h| h.token).max()
    }
}

/// One current grant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's identity.
    pub owner: String,
    /// The grant's fencing token.
    pub token: u64,
    /// When the grant was made (store clock).
    pub acquired_at: SystemTime,
    /// When it expires unless refreshed (store clock).
    pub expires_at: SystemTime,
}

impl Holder {
    /// Build a `Holder`.
    pub fn new(
        owner: impl Into<String>,
        token: u64,
        acquired_at: SystemTime,
        expires_at: SystemTime,
    ) -> Self {
        Holder {
            owner: owner.into(),
            token,
            acquired_at,
            expires_at,
        }
    }
}

/// `Arc<L>` and `Box<L>` are lockers too, so wrappers and `dyn` compose.
macro_rules! forward_through {
    ($($pointer:ident)::+) => {
        #[async_trait]
        impl<T: Handler + ?Sized> Handler for $($pointer)::+<T> {
            async fn try_lock(&self, resource: &str, options: &LockOptions) -> Result<Option<Lock>> {
                (**self).try_lock(resource, options).await
            }
            async fn release(&self, resource: &str, key: LeaseKey) -> Result<()> {
                (**self).release(resource, key).await
            }
            async fn refresh(&self, resource: &str, key: LeaseKey, ttl: Duration) -> Result<()> {
                (**self).refresh(resource, key, ttl).await
            }
            async fn force_release(&self, resource: &str) -> Result<usize> {
                (**self).force_release(resource).await
            }
        }

        #[async_trait]
        impl<T: Infoer + ?Sized> Infoer for $($pointer)::+<T> {
            async fn info(&self, resource: &str) -> Result<Option<Info>> {
                (**self).info(resource).await
            }
            async fn list(&self, prefix: &str) -> Result<Vec<String>> {
                (**self).list(prefix).await
            }
        }

        #[async_trait]
        impl<T: Reader + ?Sized> Reader for $($pointer)::+<T> {
            async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
                (**self).read(resource).await
            }
        }

        #[async_trait]
        impl<T: Locker + ?Sized> Locker for $($pointer)::+<T> {
            async fn lock(&self, resource: &str, options: &LockOptions) -> Result<Lock> {
                (**self).lock(resource, options).await
            }
            fn capabilities(&self) -> &Capabilities {
                (**self).capabilities()
            }
            fn refresh_stats(&self) -> Option<crate::RefreshStats> {
                (**self).refresh_stats()
            }
        }
    };
}

forward_through!(std::sync::Arc);
forward_through!(Box);
