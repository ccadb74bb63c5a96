//! The server's tables: leases it granted (by the client's key), sessions, and
//! watchers; and the logic of sessions ending.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use distlock_core::{Error, LeaseKey, Locker};
use tokio::sync::{Notify, watch};

use crate::config::{Config, DisconnectGrace};
use crate::metrics::Metrics;

pub(crate) type LeaseId = (String, LeaseKey);

/// A lease the server holds in the backend for a client.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// The backend's key (the server's own; the client's key names the entry).
    pub(crate) server_key: LeaseKey,
    pub(crate) token: u64,
    pub(crate) owner: String,
    pub(crate) ttl: Duration,
    /// TTL counted from when the server received the last grant or renewal:
    /// never earlier than the client's deadline, never later than the store's.
    pub(crate) expires: Instant,
    pub(crate) session: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) peer: String,
    pub(crate) leases: HashSet<LeaseId>,
    pub(crate) keepalives: u64,
    pub(crate) connected: bool,
    pub(crate) closed_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) leases: HashMap<LeaseId, Lease>,
    pub(crate) sessions: HashMap<u64, Session>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) locker: Arc<dyn Locker>,
    pub(crate) config: Config,
    tables: Mutex<Tables>,
    watchers: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    pub(crate) metrics: Metrics,
    pub(crate) draining: AtomicBool,
    pub(crate) shutdown: watch::Receiver<bool>,
    next_session: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Session ids are random so that one client cannot guess another's.
fn random_id() -> u64 {
    LeaseKey::random().as_u128() as u64 | 1
}

impl State {
    pub(crate) fn new(
        locker: Arc<dyn Locker>,
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        State {
            locker,
            config,
            tables: Mutex::default(),
            watchers: Mutex::default(),
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            shutdown,
            next_session: AtomicU64::new(0),
        }
    }

    pub(crate) fn tables(&self) -> MutexGuard<'_, Tables> {
        lock(&self.tables)
    }

    pub(crate) fn record_error(&self, error: &Error) {
        self.metrics.error(crate::error::kind_name(error));
    }

    // ---- sessions ----

    /// Open a session, or `None` when `max_sessions` are open.
    pub(crate) fn open_session(&self, peer: String) -> Option<u64> {
        let mut tables = self.tables();
        let open = tables.sessions.values().filter(|s| s.connected).count();
        if open >= self.config.limits.max_sessions {
            return None;
        }
        let _ = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut id = random_id();
        while tables.sessions.contains_key(&id) {
            id = random_id();
        }
        tables.sessions.insert(
            id,
            Session {
                id,
                peer,
                leases: HashSet::new(),
                keepalives: 0,
                connected: true,
                closed_at: None,
            },
        );
        Some(id)
    }

    /// The session named by a request, if it is open.
    pub(crate) fn live_session(&self, id: Option<u64>) -> Option<u64> {
        let id = id?;
        self.tables()
            .sessions
            .get(&id)
            .filter(|s| s.connected)
            .map(|s| s.id)
    }

    pub(crate) fn count_keepalive(&self, id: u64) {
        self.metrics.keepalives.fetch_add(1, Ordering::Relaxed);
        if let Some(session) = self.tables().sessions.get_mut(&id) {
            session.keepalives += 1;
        }
    }

    /// Keepalives a session sent (for tests and operators).
    pub(crate) fn session_keepalives(&self, id: u64) -> Option<u64> {
        self.tables().sessions.get(&id).map(|s| s.keepalives)
    }

    /// The session ended (stream closed or timed out): release its leases
    /// after the disconnect grace, in the background.
    pub(crate) fn close_session(self: &Arc<Self>, id: u64) {
        {
            let mut tables = self.tables();
            let Some(session) = tables.sessions.get_mut(&id) else {
                return;
            };
            if !session.connected {
                return;
            }
            session.connected = false;
            session.closed_at = Some(Instant::now());
            tracing::info!(
                session = format_args!("{id:016x}"),
                leases = session.leases.len(),
                grace = ?self.config.disconnect_grace,
                "session closed"
            );
        }
        let state = self.clone();
        tokio::spawn(async move { state.reap(id).await });
    }

    /// Release a closed session's leases as their grace runs out.
    async fn reap(self: Arc<Self>, id: u64) {
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            let mut next: Option<Instant> = None;
            {
                let mut guard = self.tables();
                let Tables { leases, sessions } = &mut *guard;
                let Some(session) = sessions.get_mut(&id) else {
                    return;
                };
                let closed_at = session.closed_at.unwrap_or(now);
                session.leases.retain(|lease_id| {
                    let Some(lease) = leases.get(lease_id) else {
                        return false;
                    };
                    if lease.session != Some(id) {
                        return false; // adopted by another session
                    }
                    let release_at = match self.config.disconnect_grace {
                        DisconnectGrace::LeaseExpiry => lease.expires,
                        DisconnectGrace::After(grace) => (closed_at + grace).min(lease.expires),
                    };
                    if release_at <= now {
                        if let Some(lease) = leases.remove(lease_id) {
                            due.push((lease_id.0.clone(), lease.server_key));
                        }
                        false
                    } else {
                        next = Some(next.map_or(release_at, |n| n.min(release_at)));
                        true
                    }
                });
                if session.leases.is_empty() {
                    sessions.remove(&id);
                }
            }
            for (resource, server_key) in due {
                tracing::debug!(%resource, "releasing the lease of a closed session");
                let _ = self.locker.release(&resource, server_key).await;
                self.metrics
                    .session_releases
                    .fetch_add(1, Ordering::Relaxed);
                self.wake(&resource);
            }
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => return,
            }
        }
    }

    // ---- leases ----

    /// Record a grant; `false` (nothing recorded) when the session is full.
    #[must_use]
    pub(crate) fn insert_lease(&self, id: LeaseId, lease: Lease) -> bool {
        let mut guard = self.tables();
        let Tables { leases, sessions } = &mut *guard;
        if let Some(session_id) = lease.session
            && let Some(session) = sessions.get_mut(&session_id)
        {
            if session.leases.len() >= self.config.limits.max_locks_per_session {
                return false;
            }
            session.leases.insert(id.clone());
        }
        leases.insert(id, lease);
        true
    }

    pub(crate) fn lease(&self, id: &LeaseId) -> Option<Lease> {
        self.tables().leases.get(id).cloned()
    }

    /// Forget a lease (released or found gone).
    pub(crate) fn remove_lease(&self, id: &LeaseId) -> Option<Lease> {
        let mut guard = self.tables();
        let lease = guard.leases.remove(id)?;
        if let Some(session) = lease.session.and_then(|s| guard.sessions.get_mut(&s)) {
            session.leases.remove(id);
        }
        Some(lease)
    }

    /// A renewal succeeded at `received`: extend, and move the lease to the
    /// renewing session if it has one.
    ///
    /// Returns `false` when the entry went away meanwhile (swept, reaped,
    /// force-released): its release is under way, so the lease is not held.
    #[must_use]
    pub(crate) fn renewed(
        &self,
        id: &LeaseId,
        ttl: Duration,
        received: Instant,
        session: Option<u64>,
    ) -> bool {
        let mut guard = self.tables();
        let Tables { leases, sessions } = &mut *guard;
        let Some(lease) = leases.get_mut(id) else {
            return false;
        };
        lease.expires = received + ttl;
        lease.ttl = ttl;
        if let Some(new) = session
            && lease.session != Some(new)
            && sessions.get(&new).is_some_and(|s| s.connected)
        {
            if let Some(old) = lease.session.and_then(|s| sessions.get_mut(&s)) {
                old.leases.remove(id);
            }
            if let Some(s) = sessions.get_mut(&new) {
                s.leases.insert(id.clone());
            }
            lease.session = Some(new);
        }
        true
    }

    /// Drop leases that nobody renewed past their TTL (sessionless ones, or
    /// manual-refresh leases a live session let lapse). The store has expired
    /// them already; the release is a courtesy that wakes watchers.
    pub(crate) async fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<(LeaseId, LeaseKey)> = {
            let mut guard = self.tables();
            let Tables { leases, sessions } = &mut *guard;
            let ids: Vec<LeaseId> = leases
                .iter()
                .filter(|(_, l)| l.expires + Duration::from_millis(50) < now)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| {
                    let lease = leases.remove(&id)?;
                    if let Some(s) = lease.session.and_then(|s| sessions.get_mut(&s)) {
                        s.leases.remove(&id);
                    }
                    Some((id, lease.server_key))
                })
                .collect()
        };
        for ((resource, _), server_key) in expired {
            let _ = self.locker.release(&resource, server_key).await;
            self.wake(&resource);
        }
    }

    /// End every lease of `resource` (an operator's call): those this server
    /// granted, and through the store's own force release (where it has one)
    /// any granted elsewhere; returns how many ended.
    pub(crate) async fn force_release(&self, resource: &str) -> u64 {
        let ids: Vec<LeaseId> = self
            .tables()
            .leases
            .keys()
            .filter(|(r, _)| r == resource)
            .cloned()
            .collect();
        let ours: Vec<_> = ids.iter().filter_map(|id| self.remove_lease(id)).collect();
        let released = match self.locker.force_release(resource).await {
            Ok(ended) => u64::try_from(ended).unwrap_or(u64::MAX),
            Err(_) => {
                let mut released = 0;
                for lease in ours {
                    if self
                        .locker
                        .release(resource, lease.server_key)
                        .await
                        .is_ok()
                    {
                        released += 1;
                    }
                }
                released
            }
        };
        self.wake(resource);
        self.metrics
            .force_releases
            .fetch_add(released, Ordering::Relaxed);
        released
    }

    // ---- watchers ----

    /// Register a watcher of `resource`; `None` when the per-resource limit is hit.
    pub(crate) fn watch(self: &Arc<Self>, resource: &str) -> Option<WatchGuard> {
        let mut watchers = lock(&self.watchers);
        let entry = watchers
            .entry(resource.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        if entry.1 >= self.config.limits.max_waiters_per_resource {
            return None;
        }
        entry.1 += 1;
        self.metrics.waiters.fetch_add(1, Ordering::Relaxed);
        Some(WatchGuard {
            state: self.clone(),
            resource: resource.to_owned(),
            notify: entry.0.clone(),
        })
    }

    /// `resource` may have become free: wake its watchers.
    pub(crate) fn wake(&self, resource: &str) {
        if let Some((notify, _)) = lock(&self.watchers).get(resource) {
            notify.notify_waiters();
        }
    }
}

/// A registered waiter; unregisters on drop.
#[derive(Debug)]
pub(crate) struct WatchGuard {
    state: Arc<State>,
    resource: String,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut watchers = lock(&self.state.watchers);
        if let Some(entry) = watchers.get_mut(&self.resource) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                watchers.remove(&self.resource);
            }
        }
        self.state.metrics.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}
