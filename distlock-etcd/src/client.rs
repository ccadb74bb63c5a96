//! [`EtcdStore`] itself: its clients (one per endpoint), the keys it tracks,
//! its counters, and the request plumbing every operation uses.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use distlock_core::{Capabilities, Error, LeaseKey, Result, StoreLocker};
use etcd_client::{
    Client, ConnectOptions, GetOptions, GetResponse, KeyValue, SortOrder, SortTarget, Txn,
    TxnOpResponse, TxnResponse,
};

use crate::config::EtcdConfig;
use crate::error::{Op, map, not_sent, unreadable};
use crate::layout::{Layout, Record};
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
    pub(crate) clients: Mutex<Vec<Option<Arc<Client>>>>,
    pub(crate) current: AtomicUsize,
    /// Holds the password when one is set: never printed.
    pub(crate) options: ConnectOptions,
    pub(crate) endpoint_urls: Vec<String>,
    pub(crate) caps: Capabilities,
    pub(crate) layout: Layout,
    pub(crate) config: EtcdConfig,
    /// The current session lease (`None` before the first grant or after it died).
    pub(crate) session: Mutex<Option<Arc<LeaseHandle>>>,
    /// Serialises session grants and stale-session keep-alives.
    pub(crate) session_gate: tokio::sync::Mutex<()>,
    /// The lease each key this store granted hangs on, and its resource.
    pub(crate) keys: Mutex<HashMap<LeaseKey, Tracked>>,
    /// One unused per-lock lease per TTL, kept for the next acquire of that TTL.
    pub(crate) spares: Mutex<HashMap<i64, Arc<LeaseHandle>>>,
    pub(crate) stats: Counters,
}

/// A key this store granted: its resource and the lease it hangs on.
pub(crate) struct Tracked {
    pub(crate) resource: Box<str>,
    pub(crate) lease: Arc<LeaseHandle>,
}

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

pub(crate) fn kv_of(client: &Client) -> etcd_client::KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
}

pub(crate) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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

impl EtcdStore {
    /// Map a client error (see [`crate::error::map`]), naming the endpoints.
    pub(crate) fn map_error(&self, error: etcd_client::Error, op: Op, resource: &str) -> Error {
        map(error, &self.inner.config.endpoints.join(","), op, resource)
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
            .map_err(|e| self.map_error(e, Op::Read, ""))
    }

    /// The client of endpoint `index`, connecting it on first use.
    pub(crate) async fn client_at(
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

    pub(crate) async fn txn(&self, txn: Txn, op: Op, resource: &str) -> Result<TxnResponse> {
        self.kv_txn(txn)
            .await
            .map_err(|e| self.map_error(e, op, resource))
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
    pub(crate) fn oldest_first() -> GetOptions {
        GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
    }

    /// The permits of the oldest key's record, or a store error if it is not ours.
    pub(crate) fn permits_of(kv: &KeyValue) -> Result<u32> {
        Record::decode(kv.value())
            .map(|r| r.permits)
            .ok_or_else(|| unreadable(kv.key()))
    }
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
