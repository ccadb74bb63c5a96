//! Sharded in-process lease table.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Error, Grant, Holder, Info, LeaseKey, RefreshRequest,
    Refreshed, Result, Store, StoreLocker, Wakeup,
};
use tokio::sync::Notify;

/// Shards: enough that two cores (or sixty-four) rarely meet on one mutex.
const SHARDS: usize = 64;
/// A shard sweeps out free entries after as many acquires as it has entries
/// (at least this many): amortised O(1) per acquire, and free entries never
/// outnumber the live ones by much.
const MIN_SWEEP_INTERVAL: usize = 64;

/// An in-process lease table. Cloning shares the table (like two connections to
/// one server): give each "client" its own [`MemoryLocker`](crate::MemoryLocker)
/// over a clone.
///
/// Expiry is judged by the process's monotonic clock. Tokens come from a counter
/// per shard, so they only grow for a resource even after its entry is dropped.
/// Waiters are woken in FIFO order, one per released permit.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    caps: Capabilities,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// The wall-clock time at `base`: wall times are derived from the monotonic
    /// clock, so that `info` needs no second clock read per grant.
    base: (Instant, SystemTime),
}

#[derive(Default)]
struct Shard {
    /// Free entries stay until a sweep, so a busy name is not re-allocated on
    /// every grant.
    entries: HashMap<Box<str>, Entry, foldhash::fast::RandomState>,
    last_token: u64,
    ops: usize,
}

struct Entry {
    permits: u32,
    holders: Vec<Lease>,
    /// Waiters of this resource; created by the first subscriber.
    wake: Option<Arc<Notify>>,
}

struct Lease {
    key: LeaseKey,
    token: u64,
    owner: Box<str>,
    data: Bytes,
    acquired: Instant,
    expires: Instant,
}

impl Entry {
    fn drop_expired(&mut self, now: Instant) {
        self.holders.retain(|lease| lease.expires > now);
    }

    /// Nobody holds it and nobody waits: the entry can go.
    fn is_unused(&self) -> bool {
        self.holders.is_empty() && self.wake.as_ref().is_none_or(|w| Arc::strong_count(w) == 1)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("resources", &self.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty table.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                caps: Capabilities::new("memory")
                    .with_min_ttl(Duration::from_millis(10))
                    .with_push_wakeup(true)
                    .with_batch_refresh(true)
                    .with_clock_margin(Duration::ZERO)
                    .with_max_data_len(1 << 20),
                hasher: foldhash::fast::RandomState::default(),
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                base: (Instant::now(), SystemTime::now()),
            }),
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        let (base, base_wall) = self.inner.base;
        base_wall + at.saturating_duration_since(base)
    }

    fn shard(&self, resource: &str) -> MutexGuard<'_, Shard> {
        let index = (self.inner.hasher.hash_one(resource) as usize) % SHARDS;
        self.inner.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many resources are held now.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.inner
            .shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                shard
                    .entries
                    .values()
                    .filter(|e| e.holders.iter().any(|l| l.expires > now))
                    .count()
            })
            .sum()
    }

    /// Whether no resource is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A locker over this table.
    pub fn locker(&self) -> StoreLocker<MemoryStore> {
        StoreLocker::new(self.clone())
    }
}

impl Store for MemoryStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let now = Instant::now();
        let mut shard = self.shard(request.resource);
        shard.ops += 1;
        if shard.ops >= shard.entries.len().max(MIN_SWEEP_INTERVAL) {
            shard.ops = 0;
            shard.entries.retain(|_, entry| {
                entry.drop_expired(now);
                !entry.is_unused()
            });
        }
        let Shard {
            entries,
            last_token,
            ..
        } = &mut *shard;
        let entry = match entries.get_mut(request.resource) {
            Some(entry) => entry,
            None => entries.entry(request.resource.into()).or_insert(Entry {
                permits: request.permits,
                holders: Vec::with_capacity(1),
                wake: None,
            }),
        };
        entry.drop_expired(now);
        if entry.holders.is_empty() {
            entry.permits = request.permits;
        } else if entry.permits != request.permits {
            return Err(Error::SizeMismatch {
                resource: request.resource.to_owned(),
                requested: request.permits,
                existing: entry.permits,
            });
        }
        if entry.holders.len() >= entry.permits as usize {
            let soonest = entry.holders.iter().map(|l| l.expires).min();
            return Ok(Acquired::Held {
                retry_after: soonest.map(|at| at.saturating_duration_since(now)),
            });
        }
        *last_token += 1;
        let token = *last_token;
        entry.holders.push(Lease {
            key: request.key,
            token,
            owner: request.owner.into(),
            data: request.data.clone(),
            acquired: now,
            expires: now + request.ttl,
        });
        Ok(Acquired::Granted(Grant::new(
            token,
            self.wall(now + request.ttl),
        )))
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let now = Instant::now();
        Ok(leases
            .iter()
            .map(|request| {
                let mut shard = self.shard(request.resource);
                let lease = shard.entries.get_mut(request.resource).and_then(|entry| {
                    entry
                        .holders
                        .iter_mut()
                        .find(|l| l.key == request.key && l.expires > now)
                });
                match lease {
                    Some(lease) => {
                        lease.expires = now + request.ttl;
                        Refreshed::Renewed
                    }
                    None => Refreshed::NotHeld,
                }
            })
            .collect())
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let now = Instant::now();
        let mut shard = self.shard(resource);
        let Some(entry) = shard.entries.get_mut(resource) else {
            return Ok(false);
        };
        entry.drop_expired(now);
        let Some(index) = entry.holders.iter().position(|l| l.key == key) else {
            return Ok(false);
        };
        entry.holders.swap_remove(index);
        if let Some(wake) = &entry.wake {
            wake.notify_one();
        }
        Ok(true)
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        let now = Instant::now();
        let mut shard = self.shard(resource);
        let Some(entry) = shard.entries.get_mut(resource) else {
            return Ok(None);
        };
        entry.drop_expired(now);
        if entry.holders.is_empty() {
            return Ok(None);
        }
        let holders = entry
            .holders
            .iter()
            .map(|l| {
                Holder::new(
                    &*l.owner,
                    l.token,
                    self.wall(l.acquired),
                    self.wall(l.expires),
                )
            })
            .collect();
        Ok(Some(Info::new(resource, entry.permits, holders)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        let now = Instant::now();
        let shard = self.shard(resource);
        Ok(shard.entries.get(resource).and_then(|entry| {
            entry
                .holders
                .iter()
                .filter(|l| l.expires > now)
                .min_by_key(|l| l.token)
                .map(|l| l.data.clone())
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let now = Instant::now();
        let mut names: Vec<String> = self
            .inner
            .shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard
                    .entries
                    .iter()
                    .filter(|(name, entry)| {
                        name.starts_with(prefix) && entry.holders.iter().any(|l| l.expires > now)
                    })
                    .map(|(name, _)| name.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        let now = Instant::now();
        let mut shard = self.shard(resource);
        let Some(entry) = shard.entries.get_mut(resource) else {
            return Ok(0);
        };
        entry.drop_expired(now);
        let ended = entry.holders.len();
        entry.holders.clear();
        if let Some(wake) = &entry.wake {
            wake.notify_waiters();
        }
        if entry.is_unused() {
            shard.entries.remove(resource);
        }
        Ok(ended)
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let notify = {
            let mut shard = self.shard(resource);
            let entry = shard
                .entries
                .entry(resource.into())
                .or_insert_with(|| Entry {
                    permits: 1,
                    holders: Vec::new(),
                    wake: None,
                });
            entry.wake.get_or_insert_with(Default::default).clone()
        };
        let mut notified = Box::pin(notify.notified_owned());
        // Armed now: a release from here on completes it.
        notified.as_mut().enable();
        Ok(Some(notified))
    }
}
