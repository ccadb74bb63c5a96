//! Waiting in etcd's own queue: FIFO by create revision, each waiter woken by
//! its predecessor only.
//!
//! A waiter puts its key (one txn, which also tells its place), then:
//! - **mutex** (1 permit): it watches the newest key ahead of it for deletion,
//!   as etcd's `concurrency.Mutex` does; when that key goes, it re-checks and
//!   either holds or watches the next key ahead.
//! - **semaphore** (N permits): the *first* waiter (exactly N keys ahead, all
//!   holders) watches the resource's deletions, since any holder may leave; a
//!   waiter further back watches only its predecessor, for deletion or for the
//!   "touch" its predecessor makes when it is granted (the put that rewrites
//!   its record with the grant time), which is when this waiter becomes first.
//!   One release wakes one waiter.
//!
//! A waiter granted after waiting rewrites its record (one more round trip),
//! so that `info` reports the grant time, not the moment it queued.
//!
//! Every re-check is one txn that first compares our own key's create revision:
//! a waiter whose key vanished (its lease expired or was revoked while it
//! waited, the etcd#11456 case) never reports a grant.
//!
//! While it waits, the waiter keeps its lease alive (the locker holds nothing to
//! refresh it otherwise). At the deadline, or once the core says the wait was
//! abandoned (its `lock()` future was dropped), it deletes its key and returns
//! `None`; a write already sent (the join, a re-check, the grant's rewrite) is
//! always finished first, and the core releases the key after the call anyway.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use distlock_core::{Abandoned, AcquireRequest, Backoff, Error, Grant, Result};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, WatchFilterType,
    WatchOptions,
};

use crate::EtcdStore;
use crate::client::{first_range, revision_of};
use crate::error::{BACKEND, Op, is_lease_not_found, unreadable};
use crate::layout::Record;
use crate::lease::LeaseHandle;
use crate::wakeup::Watch;

/// Backoff after connection trouble while waiting: 50 ms doubling to 2 s.
fn trouble_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
}

/// Where a waiter stands after a check.
enum Place {
    /// Fewer than `permits` keys ahead.
    Granted,
    /// Wait for an event on `key` (a single key, or with `prefix` every key of
    /// the resource) after `revision`.
    Wait {
        key: Vec<u8>,
        prefix: bool,
        puts: bool,
        revision: i64,
    },
}

struct Waiter<'a> {
    store: &'a EtcdStore,
    request: &'a AcquireRequest<'a>,
    /// Set when nobody waits for this acquire any longer: leave the queue.
    abandoned: &'a Abandoned,
    prefix: Vec<u8>,
    key: Vec<u8>,
    lease: Arc<LeaseHandle>,
    own_revision: i64,
}

pub(crate) async fn acquire_queued(
    store: &EtcdStore,
    request: &AcquireRequest<'_>,
    deadline: Option<Instant>,
    abandoned: &Abandoned,
) -> Result<Option<Grant>> {
    let prefix = store.inner.layout.resource_prefix(request.resource);
    let key = store.inner.layout.lease_key(request.resource, request.key);
    let mut retried = false;
    let (waiter, mut place) = loop {
        let lease = store.lease_for(request.ttl).await?;
        match join(store, request, &prefix, &key, &lease).await {
            Ok((own_revision, place)) => {
                store.track(request.resource, request.key, lease.clone());
                let waiter = Waiter {
                    store,
                    request,
                    abandoned,
                    prefix: prefix.clone(),
                    key: key.clone(),
                    lease,
                    own_revision,
                };
                break (waiter, place);
            }
            Err(JoinError::Client(error)) if is_lease_not_found(&error) && !retried => {
                store.lease_gone(&lease);
                retried = true;
            }
            Err(JoinError::Client(error)) => {
                return Err(store.map_error(error, Op::Write("acquire"), request.resource));
            }
            Err(JoinError::Mismatch(existing)) => {
                store.release_key(request.resource, request.key).await?;
                return Err(Error::SizeMismatch {
                    resource: request.resource.to_owned(),
                    requested: request.permits,
                    existing,
                });
            }
            Err(JoinError::Other(error)) => return Err(error),
        }
    };
    let mut backoff = trouble_backoff();
    let mut waited = false;
    loop {
        match place {
            Place::Granted => {
                if waited {
                    waiter.stamp().await?;
                }
                return Ok(Some(waiter.grant()));
            }
            Place::Wait {
                ref key,
                prefix,
                puts,
                revision,
            } => {
                waited = true;
                if abandoned.is_abandoned() {
                    // Nobody waits for us: leave without opening a watch.
                    waiter.leave().await?;
                    return Ok(None);
                }
                let mut options = WatchOptions::new().with_start_revision(revision + 1);
                if prefix {
                    options = options.with_prefix();
                }
                if !puts {
                    options = options.with_filters([WatchFilterType::NoPut]);
                }
                let woken = waiter.wait(key.clone(), options, deadline).await;
                match woken {
                    Ok(true) => {}
                    Ok(false) => {
                        // Deadline: leave the queue.
                        waiter.leave().await?;
                        return Ok(None);
                    }
                    Err(error) if error.is_transient() => {
                        // Connection trouble: back off, then look again.
                        if waiter.sleep_until_or(deadline, backoff.next_pause()).await {
                            waiter.leave().await?;
                            return Ok(None);
                        }
                        match waiter.check().await {
                            Ok(next) => place = next,
                            Err(error) if error.is_transient() => {}
                            Err(error) => return Err(error),
                        }
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        loop {
            match waiter.check().await {
                Ok(next) => {
                    place = next;
                    backoff.reset();
                    break;
                }
                Err(error) if error.is_transient() => {
                    if waiter.sleep_until_or(deadline, backoff.next_pause()).await {
                        waiter.leave().await?;
                        return Ok(None);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

enum JoinError {
    Client(etcd_client::Error),
    Mismatch(u32),
    Other(Error),
}

impl From<etcd_client::Error> for JoinError {
    fn from(error: etcd_client::Error) -> Self {
        JoinError::Client(error)
    }
}

/// Put our key and learn our place, in one txn.
async fn join(
    store: &EtcdStore,
    request: &AcquireRequest<'_>,
    prefix: &[u8],
    key: &[u8],
    lease: &LeaseHandle,
) -> std::result::Result<(i64, Place), JoinError> {
    let value = Record::new(request.permits, request.owner, request.data).encode();
    let txn = Txn::new()
        .when([Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.to_vec(),
                value,
                Some(PutOptions::new().with_lease(lease.id)),
            ),
            TxnOp::get(
                prefix.to_vec(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Ascend)
                        .with_limit(1),
                ),
            ),
            TxnOp::get(
                prefix.to_vec(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Descend)
                        .with_limit(2)
                        .with_keys_only(),
                ),
            ),
        ]);
    let response = store.kv_txn(txn).await?;
    if !response.succeeded() {
        return Err(JoinError::Other(Error::store(
            BACKEND,
            "lease key already present in etcd",
        )));
    }
    let revision = revision_of(&response);
    let ranges: Vec<etcd_client::GetResponse> = response
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => Some(get),
            _ => None,
        })
        .collect();
    let (Some(first), Some(last)) = (ranges.first(), ranges.get(1)) else {
        return Err(JoinError::Other(Error::store(
            BACKEND,
            "txn answered without its ranges",
        )));
    };
    if let Some(oldest) = first.kvs().first()
        && oldest.create_revision() != revision
    {
        let existing = Record::decode(oldest.value())
            .map(|r| r.permits)
            .ok_or_else(|| JoinError::Other(unreadable(oldest.key())))?;
        if existing != request.permits {
            return Err(JoinError::Mismatch(existing));
        }
    }
    let ahead = first.count() - 1;
    let permits = i64::from(request.permits);
    let place = if ahead < permits {
        Place::Granted
    } else if permits > 1 && ahead == permits {
        Place::Wait {
            key: prefix.to_vec(),
            prefix: true,
            puts: false,
            revision,
        }
    } else {
        match last.kvs().get(1) {
            Some(predecessor) => Place::Wait {
                key: predecessor.key().to_vec(),
                prefix: false,
                puts: permits > 1,
                revision,
            },
            None => Place::Granted,
        }
    };
    Ok((revision, place))
}

impl Waiter<'_> {
    fn grant(&self) -> Grant {
        let token = u64::try_from(self.own_revision).unwrap_or(0);
        Grant::new(token, SystemTime::now() + self.lease.ttl())
            .with_valid_from(self.lease.confirmed())
    }

    fn lost(&self) -> Error {
        Error::Lost {
            resource: self.request.resource.to_owned(),
        }
    }

    /// Re-check our place; fails with [`Error::Lost`] if our key is gone.
    async fn check(&self) -> Result<Place> {
        self.store
            .inner
            .stats
            .queue_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let permits = i64::from(self.request.permits);
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                self.own_revision,
            )])
            .and_then([TxnOp::get(
                self.prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Descend)
                        .with_max_create_revision(self.own_revision - 1)
                        .with_limit(permits + 1)
                        .with_keys_only(),
                ),
            )]);
        let response = self.store.txn(txn, Op::Read, self.request.resource).await?;
        if !response.succeeded() {
            // Our key vanished while we waited (lease expired or revoked): never
            // report a grant for it (etcd#11456).
            self.store.untrack(self.request.resource, self.request.key);
            return Err(self.lost());
        }
        let revision = revision_of(&response);
        let ahead = first_range(&response)
            .map(|mut r| r.take_kvs())
            .unwrap_or_default();
        let count = i64::try_from(ahead.len()).unwrap_or(i64::MAX);
        Ok(if count < permits {
            Place::Granted
        } else if permits > 1 && count == permits {
            Place::Wait {
                key: self.prefix.clone(),
                prefix: true,
                puts: false,
                revision,
            }
        } else {
            Place::Wait {
                key: ahead[0].key().to_vec(),
                prefix: false,
                puts: permits > 1,
                revision,
            }
        })
    }

    /// Granted after a wait: rewrite our record with the grant time (the
    /// holder's `acquired_at`, not the moment it queued). The put is also the
    /// "touch" that tells a semaphore waiter behind us that it is first now
    /// (mutex waiters watch deletions only, so it wakes nobody there).
    async fn stamp(&self) -> Result<()> {
        let value =
            Record::new(self.request.permits, self.request.owner, self.request.data).encode();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                self.own_revision,
            )])
            .and_then([TxnOp::put(
                self.key.clone(),
                value,
                Some(PutOptions::new().with_ignore_lease()),
            )]);
        let response = self
            .store
            .txn(txn, Op::Write("acquire"), self.request.resource)
            .await?;
        if response.succeeded() {
            Ok(())
        } else {
            self.store.untrack(self.request.resource, self.request.key);
            Err(self.lost())
        }
    }

    /// Wait for an event on `key`, keeping our lease alive. `Ok(true)`: woken;
    /// `Ok(false)`: the deadline passed.
    async fn wait(
        &self,
        key: Vec<u8>,
        options: WatchOptions,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let mut watch = Watch::open(self.store, key, options, self.request.resource).await?;
        let every = (self.lease.ttl() / 3).max(Duration::from_millis(500));
        loop {
            let next_keep_alive = self.lease.confirmed() + every;
            let deadline_passed = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woken = watch.next_wake() => return woken.map(|()| true),
                () = deadline_passed => return Ok(false),
                () = self.abandoned.abandoned() => return Ok(false),
                () = tokio::time::sleep_until(next_keep_alive.into()) => {
                    if self.lease.age() >= every && !self.store.keep_alive(&self.lease).await? {
                        // The lease died: our key went with it.
                        self.store.untrack(self.request.resource, self.request.key);
                        return Err(self.lost());
                    }
                }
            }
        }
    }

    /// Sleep `pause`, or until the deadline: `true` if the deadline passed
    /// (or the wait was abandoned).
    async fn sleep_until_or(&self, deadline: Option<Instant>, pause: Duration) -> bool {
        let wake = Instant::now() + pause;
        let (at, ends) = match deadline {
            Some(at) if at <= wake => (at, true),
            _ => (wake, false),
        };
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => ends,
            () = self.abandoned.abandoned() => true,
        }
    }

    /// Leave the queue (deadline passed).
    async fn leave(&self) -> Result<()> {
        self.store
            .release_key(self.request.resource, self.request.key)
            .await
            .map(|_| ())
    }
}
