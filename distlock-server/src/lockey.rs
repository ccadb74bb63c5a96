//! LocKey's client API on top of the `distlock://` backend: connect once (a
//! session), acquire and release by name, and ask who holds a name.
//!
//! ```no_run
//! # async fn demo() -> distlock_core::Result<()> {
//! let session = distlock_server::SessionClient::connect("distlock://127.0.0.1:7420").await?;
//! session.acquire("files/report.pdf").await?;            // waits until granted
//! assert_eq!(
//!     session.check_acquire("files/report.pdf").await?.as_deref(),
//!     Some(session.owner()),
//! );
//! session.release("files/report.pdf").await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;

use distlock_core::{
    Error, Handler, Infoer, Lock, LockOptions, Locker, Result, StoreLocker, parse_url,
};
use tokio::sync::Mutex;

use crate::client::{GrpcStore, connect_store};

/// One connection to a lock server, holding locks by name (LocKey's
/// `Connect`/`Acquire`/`Release`/`CheckAcquire`). Locks are renewed by the
/// session's keepalives and released by the server if the session is lost.
pub struct SessionClient {
    locker: StoreLocker<GrpcStore>,
    owner: String,
    options: LockOptions,
    held: Mutex<HashMap<String, Lock>>,
}

impl fmt::Debug for SessionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionClient")
            .field("owner", &self.owner)
            .field("locker", &self.locker)
            .finish()
    }
}

impl SessionClient {
    /// Connect; the session's id is its owner name in `check_acquire`.
    ///
    /// # Errors
    /// As [`connect`](crate::connect).
    pub async fn connect(url: &str) -> Result<Self> {
        let store = connect_store(&parse_url(url)?).await?;
        let owner = match store.session_id().await {
            Some(id) => format!("session-{id}"),
            None => format!(
                "session-{:016x}",
                distlock_core::LeaseKey::random().as_u128() as u64
            ),
        };
        let locker = StoreLocker::with_owner(store, owner.clone())?;
        Ok(SessionClient {
            locker,
            owner,
            options: LockOptions::new(),
            held: Mutex::default(),
        })
    }

    /// Use these options (TTL, wait timeout, …) for later acquires.
    pub fn with_options(mut self, options: LockOptions) -> Self {
        self.options = options;
        self
    }

    /// This session's name, as `check_acquire` reports it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Take `name`, waiting while others hold it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if this session already holds `name`;
    /// otherwise as [`Locker::lock`].
    pub async fn acquire(&self, name: &str) -> Result<()> {
        let mut held = self.held.lock().await;
        if held.get(name).is_some_and(|lock| !lock.is_lost()) {
            return Err(Error::invalid(
                "resource",
                format!("`{name}` is already held by this session"),
            ));
        }
        let lock = self.locker.lock(name, &self.options).await?;
        held.insert(name.to_owned(), lock);
        Ok(())
    }

    /// Give `name` back.
    ///
    /// # Errors
    /// [`Error::NotHeld`] if this session does not hold it (or lost it).
    pub async fn release(&self, name: &str) -> Result<()> {
        let lock = self.held.lock().await.remove(name);
        match lock {
            Some(lock) => lock.release().await,
            None => Err(Error::not_held(name)),
        }
    }

    /// Who holds `name` (the oldest holder), or `None` if it is free.
    ///
    /// # Errors
    /// As [`Infoer::info`].
    pub async fn check_acquire(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .locker
            .info(name)
            .await?
            .and_then(|info| info.owner().map(str::to_owned)))
    }

    /// Release by key, for a lease handed over from elsewhere.
    ///
    /// # Errors
    /// As [`Handler::release`].
    pub async fn release_key(&self, name: &str, key: distlock_core::LeaseKey) -> Result<()> {
        self.locker.release(name, key).await
    }
}
