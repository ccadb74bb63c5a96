//! [`EtcdStore`]: the [`Store`] trait on etcd v3 (txn, leases, watch).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use distlock_core::{
    Abandoned, AcquireRequest, Acquired, Capabilities, Error, Grant, Holder, Info, LeaseKey,
    RefreshRequest, Refreshed, Result, Store, StoreLocker, Wakeup,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, KeyValue, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchFilterType, WatchOptions,
};
use futures_util::future::join_all;

use crate::config::{EtcdConfig, MIN_TTL, ttl_secs};
use crate::error::{BACKEND, Op, is_lease_not_found, map, not_sent};
use crate::keys::{Layout, Record};
use crate::lease::LeaseHandle;

/// Largest response the client accepts: `info` and the waiting checks range
/// up to `permits` keys.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A lock store on an etcd v3 cluster. Cloning shares the connection and the
/// session: give each independent "client" its own [`EtcdStore::connect`].
///
/// See the [crate documentation](crate) for the design: one session lease per
/// store, one key per lease, create revisions as fencing tokens, FIFO waiting by
/// watching the predecessor.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// One client per endpoint, connected on first use; `current` is the one
    /// requests go to until it cannot be reached.
    clients: Mutex<Vec<Option<Arc<Client>>>>,
    current: AtomicUsize,
    /// Holds the password when one is set: never printed.
    options: ConnectOptions,
    endpoint_urls: Vec<String>,
    caps: Capabilities,
    pub(crate) layout: Layout,
    config: EtcdConfig,
    /// The current session lease (`None` before the first grant or after it died).
    session: Mutex<Option<Arc<LeaseHandle>>>,
    /// Serialises session grants and stale-session keep-alives.
    session_gate: tokio::sync::Mutex<()>,
    /// The lease each key this store granted hangs on, and its resource.
    keys: Mutex<HashMap<LeaseKey, Tracked>>,
    /// One unused per-lock lease per TTL, kept for the next acquire of that TTL.
    spares: Mutex<HashMap<i64, Arc<LeaseHandle>>>,
    pub(crate) stats: Counters,
}

/// A key this store granted: its resource and the lease it hangs on.
pub(crate) struct Tracked {
    resource: Box<str>,
    lease: Arc<LeaseHandle>,
}

/// Most operations in one txn: etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// Counters behind [`EtcdStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) grants: AtomicU64,
    pub(crate) keep_alives: AtomicU64,
    pub(crate) queue_checks: AtomicU64,
    pub(crate) key_checks: AtomicU64,
}

/// What a store has sent so far, for tests, benchmarks and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdStats {
    /// Lease grants (sessions and per-lock leases).
    pub grants: u64,
    /// Lease keep-alives (each one request on its own stream).
    pub keep_alives: u64,
    /// Re-checks of a waiter's place after a wake-up (one per wake-up: with
    /// FIFO wake-up, one per grant from the queue when nothing else happens).
    pub queue_checks: u64,
    /// Existence checks sent by refresh: txns of up to 128 key reads, so that a
    /// key deleted by another client (a release by key) is noticed.
    pub key_checks: u64,
}

fn kv_of(client: &Client) -> etcd_client::KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let session = locked(&self.inner.session).as_ref().map(|s| s.id);
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.config.endpoints)
            .field("prefix", &self.inner.config.prefix)
            .field("session", &session.map(|id| format!("{id:x}")))
            .field("tracked_keys", &locked(&self.inner.keys).len())
            .finish()
    }
}

/// What a move of a key to another lease found.
enum Moved {
    Done,
    /// The key is gone.
    Gone,
    /// The key hangs on this other lease.
    Elsewhere(i64),
}

/// What one acquire txn found.
pub(crate) enum TxnOutcome {
    /// Our key holds one of the first `permits` places.
    Granted { revision: i64 },
    /// Others hold every permit.
    Held,
}

impl EtcdStore {
    /// Connect to the cluster and grant the session lease, so that the first
    /// acquire is one round trip and bad credentials show here.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an unusable configuration (bad TLS files, …),
    /// [`Error::Unavailable`] when no endpoint answers in time, [`Error::Store`]
    /// when etcd refuses (authentication failed, …).
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: format!(
                "{}://{}",
                if config.tls { "etcds" } else { "etcd" },
                config.endpoints.join(",")
            ),
            reason,
        };
        config.validate().map_err(invalid)?;
        let mut options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout)
            // etcd refuses pings without a stream (GOAWAY "too many pings") and
            // more often than every 5 s.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false)
            // A partitioned member answers watches only with a leader.
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&config.user, config.password()) {
            options = options.with_user(user.clone(), password.to_owned());
        }
        let endpoints: Vec<String> = if config.tls {
            #[cfg(feature = "tls")]
            {
                options = options.with_tls(tls_options(&config).map_err(invalid)?);
            }
            config
                .endpoints
                .iter()
                .map(|e| format!("https://{e}"))
                .collect()
        } else {
            config
                .endpoints
                .iter()
                .map(|e| format!("http://{e}"))
                .collect()
        };
        let caps = Capabilities::new(BACKEND)
            .with_min_ttl(MIN_TTL)
            // etcd itself accepts leases of up to 9e9 s; the core's week is plenty.
            .with_max_ttl(Duration::from_secs(7 * 24 * 3600))
            .with_max_data_len(64 * 1024)
            .with_push_wakeup(true)
            .with_batch_refresh(true)
            .with_queued_wait(true)
            .with_clock_margin(Duration::from_millis(2));
        let store = EtcdStore {
            inner: Arc::new(Inner {
                clients: Mutex::new(vec![None; endpoints.len()]),
                current: AtomicUsize::new(0),
                options,
                endpoint_urls: endpoints,
                caps,
                layout: Layout::new(&config.prefix),
                config,
                session: Mutex::new(None),
                session_gate: tokio::sync::Mutex::new(()),
                keys: Mutex::new(HashMap::new()),
                spares: Mutex::new(HashMap::new()),
                stats: Counters::default(),
            }),
        };
        store.session().await?;
        Ok(store)
    }

    /// Connect by URL (see [`EtcdConfig`] for the forms).
    ///
    /// # Errors
    /// As [`EtcdConfig::from_url`] and [`EtcdStore::connect`].
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(EtcdConfig::from_url(url)?).await
    }

    /// A locker over this store (sharing its session).
    pub fn locker(&self) -> StoreLocker<EtcdStore> {
        StoreLocker::new(self.clone())
    }

    /// An etcd client of the endpoint this store uses now (for operations
    /// distlock does not wrap).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if no endpoint can be reached (with authentication
    /// on, logging in needs a live member).
    pub async fn client(&self) -> Result<Client> {
        self.retry(|client| async move { Ok(Client::clone(&client)) })
            .await
            .map_err(|e| map(e, Op::Read, ""))
    }

    /// The client of endpoint `index`, connecting it on first use.
    async fn client_at(
        &self,
        index: usize,
    ) -> std::result::Result<Arc<Client>, etcd_client::Error> {
        if let Some(client) = locked(&self.inner.clients).get(index).cloned().flatten() {
            return Ok(client);
        }
        let url = self
            .inner
            .endpoint_urls
            .get(index)
            .cloned()
            .unwrap_or_default();
        let client = Arc::new(Client::connect([url], Some(self.inner.options.clone())).await?);
        if let Some(slot) = locked(&self.inner.clients).get_mut(index) {
            *slot = Some(client.clone());
        }
        Ok(client)
    }

    /// Requests sent so far, by kind.
    pub fn stats(&self) -> EtcdStats {
        let c = &self.inner.stats;
        EtcdStats {
            grants: c.grants.load(Ordering::Relaxed),
            keep_alives: c.keep_alives.load(Ordering::Relaxed),
            queue_checks: c.queue_checks.load(Ordering::Relaxed),
            key_checks: c.key_checks.load(Ordering::Relaxed),
        }
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    /// The etcd ID of the current session lease, if one is alive.
    pub fn session_id(&self) -> Option<i64> {
        locked(&self.inner.session)
            .as_ref()
            .filter(|s| !s.is_dead())
            .map(|s| s.id)
    }

    /// The etcd key of a lease: `<prefix>/\0<resource>\0<lease key hex>`.
    pub fn key_of(&self, resource: &str, key: LeaseKey) -> Vec<u8> {
        self.inner.layout.lease_key(resource, key)
    }

    /// The prefix of every etcd key of `resource`.
    pub fn resource_prefix(&self, resource: &str) -> Vec<u8> {
        self.inner.layout.resource_prefix(resource)
    }

    // ----- leases -------------------------------------------------------------

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

    fn current_session(&self) -> Option<Arc<LeaseHandle>> {
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
            .map_err(|e| map(e, Op::Read, ""))?;
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
            Err(error) => Err(map(error, Op::Write("refresh"), "")),
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
    fn revoke_in_background(&self, lease: &Arc<LeaseHandle>) {
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

    pub(crate) fn track(&self, resource: &str, key: LeaseKey, lease: Arc<LeaseHandle>) {
        let tracked = Tracked {
            resource: resource.into(),
            lease,
        };
        locked(&self.inner.keys).insert(key, tracked);
    }

    /// Forget `key` if this store tracks it for `resource` (a key named with
    /// another resource is not that lease).
    pub(crate) fn untrack(&self, resource: &str, key: LeaseKey) -> Option<Arc<LeaseHandle>> {
        let mut keys = locked(&self.inner.keys);
        match keys.get(&key) {
            Some(tracked) if &*tracked.resource == resource => keys.remove(&key).map(|t| t.lease),
            _ => None,
        }
    }

    // ----- requests -------------------------------------------------------------

    pub(crate) async fn txn(&self, txn: Txn, op: Op, resource: &str) -> Result<TxnResponse> {
        self.kv_txn(txn).await.map_err(|e| map(e, op, resource))
    }

    /// Run `call` again while it fails before reaching etcd: the client spreads
    /// requests over the endpoints and does not skip one that is down, so a
    /// request routed to a dead member is sent again (to another one).
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        mut call: F,
    ) -> std::result::Result<T, etcd_client::Error>
    where
        F: FnMut(Arc<Client>) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let count = self.inner.endpoint_urls.len().max(1);
        let start = self.inner.current.load(Ordering::Relaxed);
        let mut last = None;
        for attempt in 0..count {
            let index = (start + attempt) % count;
            let outcome = match self.client_at(index).await {
                Ok(client) => call(client).await,
                Err(error) => Err(error),
            };
            match outcome {
                Err(error) if not_sent(&error) => last = Some(error),
                other => {
                    if attempt > 0 {
                        self.inner.current.store(index, Ordering::Relaxed);
                    }
                    return other;
                }
            }
        }
        Err(last.unwrap_or_else(|| etcd_client::Error::InvalidArgs("no endpoint".into())))
    }

    pub(crate) async fn kv_txn(
        &self,
        txn: Txn,
    ) -> std::result::Result<TxnResponse, etcd_client::Error> {
        self.retry(|client| {
            let (mut kv, txn) = (kv_of(&client), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
    }

    pub(crate) async fn kv_get(
        &self,
        key: Vec<u8>,
        options: GetOptions,
    ) -> std::result::Result<GetResponse, etcd_client::Error> {
        self.retry(|client| {
            let (mut kv, key, options) = (kv_of(&client), key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        })
        .await
    }

    pub(crate) async fn kv_delete(
        &self,
        key: Vec<u8>,
    ) -> std::result::Result<etcd_client::DeleteResponse, etcd_client::Error> {
        self.retry(|client| {
            let (mut kv, key) = (kv_of(&client), key.clone());
            async move { kv.delete(key, None).await }
        })
        .await
    }

    /// Range options for "every key of the resource, oldest first".
    fn oldest_first() -> GetOptions {
        GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
    }

    /// The permits of the oldest key's record, or a store error if it is not ours.
    fn permits_of(kv: &KeyValue) -> Result<u32> {
        Record::decode(kv.value())
            .map(|r| r.permits)
            .ok_or_else(|| unreadable(kv.key()))
    }

    /// One acquire txn on `lease`. Mutex: put only if the resource has no key
    /// (nothing to undo when held). Semaphore: put and count; undo when over.
    async fn acquire_txn(
        &self,
        request: &AcquireRequest<'_>,
        lease: &LeaseHandle,
    ) -> std::result::Result<TxnOutcome, etcd_client::Error> {
        let prefix = self.inner.layout.resource_prefix(request.resource);
        let key = self.inner.layout.lease_key(request.resource, request.key);
        let value = Record::new(request.permits, request.owner, request.data).encode();
        let put = TxnOp::put(
            key.clone(),
            value,
            Some(PutOptions::new().with_lease(lease.id)),
        );
        if request.permits == 1 {
            let txn = Txn::new()
                .when([Compare::create_revision(prefix.clone(), CompareOp::Equal, 0).with_prefix()])
                .and_then([put])
                .or_else([TxnOp::get(prefix, Some(Self::oldest_first().with_limit(1)))]);
            let response = self.kv_txn(txn).await?;
            if response.succeeded() {
                return Ok(TxnOutcome::Granted {
                    revision: revision_of(&response),
                });
            }
            let first = first_range(&response);
            if let Some(first) = first.as_ref().and_then(|r| r.kvs().first()) {
                let existing = Self::permits_of(first).map_err(to_client_error)?;
                if existing != 1 {
                    return Err(size_mismatch(request.resource, 1, existing));
                }
            }
            return Ok(TxnOutcome::Held);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                put,
                TxnOp::get(prefix, Some(Self::oldest_first().with_limit(1))),
            ]);
        let response = self.kv_txn(txn).await?;
        if !response.succeeded() {
            // Our random key already exists: only a replayed request does that.
            return Err(etcd_client::Error::InvalidArgs(
                "lease key already present".into(),
            ));
        }
        let revision = revision_of(&response);
        let range = first_range(&response);
        let count = range.as_ref().map_or(1, GetResponse::count);
        let existing = match range.as_ref().and_then(|r| r.kvs().first()) {
            Some(first) if first.create_revision() != revision => {
                Some(Self::permits_of(first).map_err(to_client_error)?)
            }
            _ => None,
        };
        let mismatch = existing.filter(|e| *e != request.permits);
        if mismatch.is_none() && count <= i64::from(request.permits) {
            return Ok(TxnOutcome::Granted { revision });
        }
        // Over the limit (or the wrong size): take our key back.
        self.kv_delete(key).await?;
        match mismatch {
            Some(existing) => Err(size_mismatch(request.resource, request.permits, existing)),
            None => Ok(TxnOutcome::Held),
        }
    }

    /// Delete the key of `key` on `resource`: `Ok(true)` if it existed.
    pub(crate) async fn release_key(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let name = self.inner.layout.lease_key(resource, key);
        let lease = self.untrack(resource, key);
        // The key's name holds the 128-bit random lease key, so it names this
        // lease alone, forever: deleting by name is the compare-and-delete.
        let response = self
            .kv_delete(name)
            .await
            .map_err(|e| map(e, Op::Write("release"), resource))?;
        let released = response.deleted() > 0;
        if let Some(lease) = lease
            && !lease.session
        {
            if released {
                self.keep_spare(lease);
            } else {
                lease.mark_dead();
            }
        }
        Ok(released)
    }

    /// Renew a batch of leases (see the crate docs, *Refresh*). In parallel:
    /// one keep-alive per distinct lease of the keys this store tracks, and
    /// txns of up to [`MAX_TXN_OPS`] key reads that check every key still
    /// exists on that lease (a key deleted by another client, a release by key,
    /// is `NotHeld` although its lease lives on). Keys of other clients (handed
    /// over by lease key) are found by the same reads, then their lease is kept
    /// alive. A TTL other than the lease's moves the key onto a lease of the
    /// new TTL.
    async fn refresh_batch(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let started = Instant::now();
        let mut answers = vec![Refreshed::NotHeld; leases.len()];
        let mut groups: HashMap<i64, (Arc<LeaseHandle>, Vec<usize>)> = HashMap::new();
        let mut moves: Vec<(usize, Arc<LeaseHandle>)> = Vec::new();
        let mut unknown = Vec::new();
        {
            let keys = locked(&self.inner.keys);
            for (index, request) in leases.iter().enumerate() {
                match keys.get(&request.key) {
                    // Named with another resource: not this lease (the read
                    // below finds no such key).
                    Some(tracked) if &*tracked.resource != request.resource => {
                        unknown.push(index);
                    }
                    Some(tracked) if tracked.lease.is_dead() => {}
                    Some(tracked) if ttl_secs(request.ttl) != tracked.lease.asked => {
                        moves.push((index, tracked.lease.clone()));
                    }
                    Some(tracked) => groups
                        .entry(tracked.lease.id)
                        .or_insert_with(|| (tracked.lease.clone(), Vec::new()))
                        .1
                        .push(index),
                    None => unknown.push(index),
                }
            }
        }
        let mut checked: Vec<usize> = groups
            .values()
            .flat_map(|(_, indices)| indices.iter().copied())
            .collect();
        checked.extend_from_slice(&unknown);
        let names: Vec<Vec<u8>> = checked
            .iter()
            .map(|&i| {
                self.inner
                    .layout
                    .lease_key(leases[i].resource, leases[i].key)
            })
            .collect();
        let (kept, found, moved) = tokio::join!(
            join_all(groups.values().map(|(lease, _)| self.keep_alive(lease))),
            self.leases_of(&names),
            join_all(
                moves
                    .iter()
                    .map(|(i, lease)| self.move_tracked(&leases[*i], lease, started))
            ),
        );
        let found: HashMap<usize, Option<i64>> = checked.into_iter().zip(found?).collect();
        let mut first_error = None;
        let mut foreign = Vec::new();
        for ((lease, indices), kept) in groups.values().zip(kept) {
            match kept {
                Ok(true) => {
                    for &i in indices {
                        match found.get(&i).copied().flatten() {
                            Some(id) if id == lease.id => answers[i] = Refreshed::Renewed,
                            None => {
                                // Deleted by another client (release by key).
                                if let Some(lease) = self.untrack(leases[i].resource, leases[i].key)
                                    && !lease.session
                                {
                                    self.keep_spare(lease);
                                }
                            }
                            Some(0) => answers[i] = Refreshed::Renewed,
                            Some(id) => {
                                // Moved to another lease by another client.
                                self.untrack(leases[i].resource, leases[i].key);
                                foreign.push((i, id));
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        for &i in &unknown {
            match found.get(&i).copied().flatten() {
                None => {}
                Some(0) => answers[i] = Refreshed::Renewed,
                Some(id) => foreign.push((i, id)),
            }
        }
        for ((i, _), moved) in moves.iter().zip(moved) {
            match moved {
                Ok(answer) => answers[*i] = answer,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let foreign_answers = join_all(
            foreign
                .iter()
                .map(|&(index, id)| self.refresh_foreign(&leases[index], id)),
        )
        .await;
        for (&(index, _), answer) in foreign.iter().zip(foreign_answers) {
            match answer {
                Ok(answer) => answers[index] = answer,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(answers),
        }
    }

    /// The lease each of `names` hangs on (`None`: no such key), read in txns
    /// of up to [`MAX_TXN_OPS`] gets, sent together.
    async fn leases_of(&self, names: &[Vec<u8>]) -> Result<Vec<Option<i64>>> {
        let chunks = join_all(names.chunks(MAX_TXN_OPS).map(|chunk| async move {
            self.inner.stats.key_checks.fetch_add(1, Ordering::Relaxed);
            let reads: Vec<TxnOp> = chunk
                .iter()
                .map(|name| TxnOp::get(name.clone(), Some(GetOptions::new().with_keys_only())))
                .collect();
            let response = self
                .kv_txn(Txn::new().and_then(reads))
                .await
                .map_err(|e| map(e, Op::Read, ""))?;
            let found: Vec<Option<i64>> = response
                .op_responses()
                .into_iter()
                .map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().map(KeyValue::lease),
                    _ => None,
                })
                .collect();
            if found.len() == chunk.len() {
                Ok(found)
            } else {
                Err(Error::store(
                    BACKEND,
                    "txn answered fewer reads than it was sent",
                ))
            }
        }))
        .await;
        let mut out = Vec::with_capacity(names.len());
        for chunk in chunks {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// Renew a tracked key with a TTL other than its lease's: keep the old
    /// lease alive first (an expired lease is never revived), then move the key
    /// onto a lease of the new TTL if it still hangs on the old one. A key that
    /// another client moved to a lease of its own is renewed as a foreign key.
    async fn move_tracked(
        &self,
        request: &RefreshRequest<'_>,
        old: &Arc<LeaseHandle>,
        started: Instant,
    ) -> Result<Refreshed> {
        let name = self.inner.layout.lease_key(request.resource, request.key);
        if !self.keep_alive(old).await? {
            return match self.leases_of(std::slice::from_ref(&name)).await?.first() {
                Some(Some(id)) if *id != old.id && *id != 0 => {
                    self.refresh_foreign(request, *id).await
                }
                _ => Ok(Refreshed::NotHeld),
            };
        }
        let mut retried = false;
        loop {
            let new = self.lease_for(request.ttl).await?;
            let moved = self.move_key(&name, old.id, &new).await;
            if !matches!(moved, Ok(Moved::Done)) && !new.session {
                self.keep_spare(new.clone());
            }
            match moved {
                Ok(Moved::Done) => {
                    self.track(request.resource, request.key, new.clone());
                    if !old.session {
                        self.keep_spare(old.clone());
                    }
                    // The new TTL must run from after the caller sent the
                    // refresh: renew a lease confirmed before that.
                    if new.confirmed() < started && !self.keep_alive(&new).await? {
                        return Ok(Refreshed::NotHeld);
                    }
                    return Ok(Refreshed::Renewed);
                }
                Ok(other) => {
                    self.untrack(request.resource, request.key);
                    if !old.session {
                        self.keep_spare(old.clone());
                    }
                    return match other {
                        Moved::Elsewhere(id) => self.refresh_foreign(request, id).await,
                        _ => Ok(Refreshed::NotHeld),
                    };
                }
                Err(error) if is_lease_not_found(&error) && !retried => {
                    self.lease_gone(&new);
                    retried = true;
                }
                Err(error) => return Err(map(error, Op::Write("refresh"), request.resource)),
            }
        }
    }

    /// Put `name` on lease `to` (value kept) if it hangs on lease `from`.
    async fn move_key(
        &self,
        name: &[u8],
        from: i64,
        to: &LeaseHandle,
    ) -> std::result::Result<Moved, etcd_client::Error> {
        let txn = Txn::new()
            .when([Compare::lease(name.to_vec(), CompareOp::Equal, from)])
            .and_then([TxnOp::put(
                name.to_vec(),
                Vec::new(),
                Some(PutOptions::new().with_ignore_value().with_lease(to.id)),
            )])
            .or_else([TxnOp::get(
                name.to_vec(),
                Some(GetOptions::new().with_keys_only()),
            )]);
        let response = self.kv_txn(txn).await?;
        if response.succeeded() {
            return Ok(Moved::Done);
        }
        Ok(
            match first_range(&response).and_then(|r| r.kvs().first().map(KeyValue::lease)) {
                Some(id) if id != 0 => Moved::Elsewhere(id),
                _ => Moved::Gone,
            },
        )
    }

    /// Renew a key this store does not track, found on lease `id`: keep that
    /// lease alive; another TTL than the lease's moves the key onto a lease of
    /// its own (never this store's session: it would live as long as that).
    async fn refresh_foreign(&self, request: &RefreshRequest<'_>, id: i64) -> Result<Refreshed> {
        self.inner.stats.keep_alives.fetch_add(1, Ordering::Relaxed);
        let (kept, granted) = tokio::join!(
            self.retry(|client| {
                let mut client = client.lease_client();
                async move { client.keep_alive(id).await }
            }),
            self.retry(|client| {
                let mut client = client.lease_client();
                async move { client.time_to_live(id, None).await }
            })
        );
        match kept {
            Ok(_) => {}
            Err(error) if is_lease_not_found(&error) => return Ok(Refreshed::NotHeld),
            Err(error) => return Err(map(error, Op::Write("refresh"), request.resource)),
        }
        let granted = granted
            .map_err(|e| map(e, Op::Write("refresh"), request.resource))?
            .granted_ttl();
        let secs = ttl_secs(request.ttl);
        if granted <= 0 {
            return Ok(Refreshed::NotHeld);
        }
        if granted == secs {
            return Ok(Refreshed::Renewed);
        }
        let new = self.grant(secs, false).await?;
        let name = self.inner.layout.lease_key(request.resource, request.key);
        let moved = self
            .move_key(&name, id, &new)
            .await
            .map_err(|e| map(e, Op::Write("refresh"), request.resource))?;
        Ok(if matches!(moved, Moved::Done) {
            Refreshed::Renewed
        } else {
            self.revoke_in_background(&new);
            Refreshed::NotHeld
        })
    }
}

/// Our own failures carried through a client error, mapped back in `acquire`.
fn to_client_error(error: Error) -> etcd_client::Error {
    etcd_client::Error::Internal(format!("{DISTLOCK_MARK}{error}"))
}

const DISTLOCK_MARK: &str = "distlock: ";

fn size_mismatch(resource: &str, requested: u32, existing: u32) -> etcd_client::Error {
    etcd_client::Error::Internal(format!(
        "{DISTLOCK_MARK}size-mismatch {existing} {requested} {resource}"
    ))
}

/// Undo [`size_mismatch`] and [`to_client_error`].
fn from_client_error(error: etcd_client::Error, resource: &str, operation: &'static str) -> Error {
    if let etcd_client::Error::Internal(message) = &error
        && let Some(rest) = message.strip_prefix(DISTLOCK_MARK)
    {
        if let Some(sizes) = rest.strip_prefix("size-mismatch ") {
            let mut parts = sizes.splitn(3, ' ');
            let existing = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let requested = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            return Error::SizeMismatch {
                resource: resource.to_owned(),
                requested,
                existing,
            };
        }
        return Error::store(BACKEND, rest.to_owned());
    }
    map(error, Op::Write(operation), resource)
}

pub(crate) fn unreadable(key: &[u8]) -> Error {
    Error::store(
        BACKEND,
        format!(
            "key `{}` under the lock prefix has a value distlock cannot read; \
             keep the prefix for distlock alone",
            String::from_utf8_lossy(key).replace('\0', "\\0")
        ),
    )
}

pub(crate) fn revision_of(response: &TxnResponse) -> i64 {
    response.header().map_or(0, |h| h.revision())
}

/// The first range answer of a txn.
pub(crate) fn first_range(response: &TxnResponse) -> Option<GetResponse> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => Some(get),
        _ => None,
    })
}

impl Store for EtcdStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let mut retried = false;
        loop {
            let lease = self.lease_for(request.ttl).await?;
            match self.acquire_txn(request, &lease).await {
                Ok(TxnOutcome::Granted { revision }) => {
                    self.track(request.resource, request.key, lease.clone());
                    let token = u64::try_from(revision).unwrap_or(0);
                    return Ok(Acquired::Granted(
                        Grant::new(token, SystemTime::now() + lease.ttl())
                            .with_valid_from(lease.confirmed()),
                    ));
                }
                Ok(TxnOutcome::Held) => {
                    if !lease.session {
                        self.keep_spare(lease);
                    }
                    return Ok(Acquired::Held { retry_after: None });
                }
                Err(error) if is_lease_not_found(&error) && !retried => {
                    // The session (or a spare) died behind our back: once more
                    // on a fresh lease.
                    self.lease_gone(&lease);
                    retried = true;
                }
                Err(error) => {
                    if !lease.session {
                        self.keep_spare(lease);
                    }
                    return Err(from_client_error(error, request.resource, "acquire"));
                }
            }
        }
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        self.refresh_batch(leases).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.release_key(resource, key).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        let prefix = self.inner.layout.resource_prefix(resource);
        let response = self
            .kv_get(prefix, Self::oldest_first())
            .await
            .map_err(|e| map(e, Op::Read, resource))?;
        let Some(first) = response.kvs().first() else {
            return Ok(None);
        };
        let permits = Self::permits_of(first)?;
        let holders: Vec<(&KeyValue, Record)> = response
            .kvs()
            .iter()
            .take(permits as usize)
            .filter_map(|kv| Record::decode(kv.value()).map(|r| (kv, r)))
            .collect();
        let mut lease_ids: Vec<i64> = holders.iter().map(|(kv, _)| kv.lease()).collect();
        lease_ids.sort_unstable();
        lease_ids.dedup();
        let now = SystemTime::now();
        let remaining = join_all(lease_ids.iter().map(|&id| async move {
            if id == 0 {
                return Ok((id, i64::MAX));
            }
            self.retry(|client| {
                let mut client = client.lease_client();
                async move { client.time_to_live(id, None).await }
            })
            .await
            .map(|r| (id, r.ttl()))
            .map_err(|e| map(e, Op::Read, resource))
        }))
        .await
        .into_iter()
        .collect::<Result<HashMap<i64, i64>>>()?;
        let holders: Vec<Holder> = holders
            .into_iter()
            .map(|(kv, record)| {
                // Held while the key exists, as every other view and the
                // acquire txn see it: a key whose lease ran out but that etcd
                // has not deleted yet (up to ~0.5 s) expires now.
                let ttl = remaining.get(&kv.lease()).copied().unwrap_or(0);
                let left = Duration::from_secs(u64::try_from(ttl.clamp(0, 1 << 40)).unwrap_or(0));
                Holder::new(
                    record.owner.clone(),
                    u64::try_from(kv.create_revision()).unwrap_or(0),
                    record.acquired_at(),
                    now + left,
                )
            })
            .collect();
        if holders.is_empty() {
            return Ok(None);
        }
        Ok(Some(Info::new(resource, permits, holders)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        let prefix = self.inner.layout.resource_prefix(resource);
        let response = self
            .kv_get(prefix, Self::oldest_first().with_limit(1))
            .await
            .map_err(|e| map(e, Op::Read, resource))?;
        match response.kvs().first() {
            None => Ok(None),
            Some(kv) => Record::decode(kv.value())
                .map(|r| Some(r.data))
                .ok_or_else(|| unreadable(kv.key())),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let range = self.inner.layout.list_prefix(prefix);
        let response = self
            .kv_get(range, GetOptions::new().with_prefix().with_keys_only())
            .await
            .map_err(|e| map(e, Op::Read, prefix))?;
        let mut names: Vec<String> = Vec::new();
        for kv in response.kvs() {
            if let Some(name) = self.inner.layout.resource_of(kv.key())
                && names.last().is_none_or(|last| last != name)
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let prefix = self.inner.layout.resource_prefix(resource);
        let options = WatchOptions::new()
            .with_prefix()
            .with_filters([WatchFilterType::NoPut]);
        let watch = crate::wait::Watch::open(self, prefix, options, resource).await?;
        Ok(Some(Box::pin(async move {
            let mut watch = watch;
            let _ = watch.next_wake().await;
        })))
    }

    async fn acquire_queued(
        &self,
        request: &AcquireRequest<'_>,
        deadline: Option<Instant>,
        abandoned: &Abandoned,
    ) -> Result<Option<Grant>> {
        crate::wait::acquire_queued(self, request, deadline, abandoned).await
    }
}

#[cfg(feature = "tls")]
fn tls_options(config: &EtcdConfig) -> std::result::Result<etcd_client::TlsOptions, String> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    };
    let mut tls = TlsOptions::new().with_native_roots();
    if let Some(ca) = &config.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &config.client_cert {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(domain) = &config.domain {
        tls = tls.domain_name(domain.clone());
    }
    Ok(tls)
}
