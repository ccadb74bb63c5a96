//! The leases keys hang on: the store's session lease and per-lock leases of
//! other TTLs, with their keep-alives and spares.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use distlock_core::{Error, Result};

use crate::EtcdStore;
use crate::client::locked;
use crate::config::ttl_secs;
use crate::error::{BACKEND, Op, is_lease_not_found};
use crate::lease::LeaseHandle;

impl EtcdStore {
    /// The session lease, granting a new one if it died, or keeping it alive
    /// first when half its TTL passed unconfirmed (after an idle spell).
    pub(crate) async fn session(&self) -> Result<Arc<LeaseHandle>> {
        let secs = self.inner.config.session_secs();
        let margin = Duration::from_secs(u64::try_from(secs / 2).unwrap_or(0));
        if let Some(session) = self.current_session()
            && session.usable(margin)
        {
            return Ok(session);
        }
        let _gate = self.inner.session_gate.lock().await;
        if let Some(session) = self.current_session() {
            if session.usable(margin) {
                return Ok(session);
            }
            if !session.is_dead() && self.keep_alive(&session).await? {
                return Ok(session);
            }
        }
        let session = self.grant(secs, true).await?;
        *locked(&self.inner.session) = Some(session.clone());
        Ok(session)
    }

    pub(crate) fn current_session(&self) -> Option<Arc<LeaseHandle>> {
        locked(&self.inner.session)
            .as_ref()
            .filter(|s| !s.is_dead())
            .cloned()
    }

    /// Grant a lease of `secs` seconds.
    pub(crate) async fn grant(&self, secs: i64, session: bool) -> Result<Arc<LeaseHandle>> {
        let sent = Instant::now();
        self.inner.stats.grants.fetch_add(1, Ordering::Relaxed);
        let response = self
            .retry(|client| {
                let mut lease = client.lease_client();
                async move { lease.grant(secs, None).await }
            })
            .await
            .map_err(|e| self.map_error(e, Op::Read, ""))?;
        if !response.error().is_empty() {
            return Err(Error::store(
                BACKEND,
                format!("lease grant refused: {}", response.error()),
            ));
        }
        Ok(Arc::new(LeaseHandle::new(
            response.id(),
            response.ttl().max(secs),
            secs,
            session,
            sent,
        )))
    }

    /// One keep-alive of `lease`: `Ok(true)` renewed, `Ok(false)` gone (marked dead).
    pub(crate) async fn keep_alive(&self, lease: &Arc<LeaseHandle>) -> Result<bool> {
        let sent = Instant::now();
        self.inner.stats.keep_alives.fetch_add(1, Ordering::Relaxed);
        // A fresh stream per keep-alive: one request, one answer, and a dropped
        // future cannot leave an answer behind for the next caller.
        let id = lease.id;
        let kept = self
            .retry(|client| {
                let mut client = client.lease_client();
                async move { client.keep_alive(id).await }
            })
            .await;
        match kept {
            Ok(_) => {
                lease.confirm(sent);
                Ok(true)
            }
            Err(error) if is_lease_not_found(&error) => {
                self.lease_gone(lease);
                Ok(false)
            }
            Err(error) => Err(self.map_error(error, Op::Write("refresh"), "")),
        }
    }

    /// `lease` is gone: forget it and the keys hanging on it.
    pub(crate) fn lease_gone(&self, lease: &Arc<LeaseHandle>) {
        lease.mark_dead();
        if lease.session {
            let mut session = locked(&self.inner.session);
            if session.as_ref().is_some_and(|s| s.id == lease.id) {
                *session = None;
            }
        }
        locked(&self.inner.keys).retain(|_, t| t.lease.id != lease.id);
        locked(&self.inner.spares).retain(|_, l| l.id != lease.id);
    }

    /// The lease a new lock of `ttl` hangs on: the session if `ttl` rounds to its
    /// seconds, otherwise a spare or newly granted per-lock lease.
    pub(crate) async fn lease_for(&self, ttl: Duration) -> Result<Arc<LeaseHandle>> {
        let secs = ttl_secs(ttl);
        if secs == self.inner.config.session_secs() {
            return self.session().await;
        }
        let spare = locked(&self.inner.spares).remove(&secs);
        if let Some(spare) = spare {
            if spare.usable(spare.ttl() / 2) {
                return Ok(spare);
            }
            self.revoke_in_background(&spare);
        }
        self.grant(secs, false).await
    }

    /// Keep an unused per-lock lease for the next acquire of its TTL.
    pub(crate) fn keep_spare(&self, lease: Arc<LeaseHandle>) {
        if lease.session || !lease.usable(lease.ttl() / 2) {
            if !lease.session {
                self.revoke_in_background(&lease);
            }
            return;
        }
        let displaced = locked(&self.inner.spares).insert(lease.secs, lease);
        if let Some(old) = displaced {
            self.revoke_in_background(&old);
        }
    }

    /// Revoke a per-lock lease nobody uses, without waiting (it would expire anyway).
    pub(crate) fn revoke_in_background(&self, lease: &Arc<LeaseHandle>) {
        lease.mark_dead();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.clone();
            let id = lease.id;
            runtime.spawn(async move {
                let _ = store
                    .retry(|client| {
                        let mut client = client.lease_client();
                        async move { client.revoke(id).await }
                    })
                    .await;
            });
        }
    }
}
