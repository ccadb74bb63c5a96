//! The lease-pool API: lessees, acquire-or-renew, pools, heartbeats,
//! listing, extra attributes. Its shape follows the Go lease-pool API
//! (`LockStore` / `Locker`) many services already use:
//!
//! | Go lease-pool API | here |
//! |---|---|
//! | `LeaseRequest` interface (`LesseeID`, `LeaseDuration`) | [`LeaseRequest`] |
//! | `Lease` (`LeaseID`, `AttributeValues`, `Request`, `Until`) | [`Lease`] (plus its fencing token and a local deadline) |
//! | `LockStore.Lease` (acquire or renew) | [`LeaseStore::lease`], [`LeaseStore::lease_with_attributes`] |
//! | `LockStore.ListLeaseIDs` | [`LeaseStore::list_lease_ids`] (paginated `Scan`) |
//! | `Locker.ObtainLease` | [`LeaseStore::obtain_lease`] (the table's items are the pool), [`LeaseStore::obtain_lease_from`] |
//! | `Locker.WaitUntilLeaseObtained` | [`LeaseStore::wait_until_lease_obtained`], [`LeaseStore::wait_until_lease_obtained_from`] |
//! | `Locker.Heartbeat` → `LeaseLostError` | [`LeaseStore::heartbeat`] → [`LeaseError::Lost`] |
//! | `LeaseNotObtainedError` | [`LeaseError::NotObtained`] |
//! | (none) | [`LeaseStore::release`], [`LeaseStore::add_leases`] (create pool items) |
//!
//! As in the Go API, a lease is held by a **lessee id**: asking again with the
//! same id renews instead of failing, even from a restarted process. The lease
//! key is therefore derived from the lease id and the lessee id (not random):
//! anyone who knows a lessee id can renew or release its leases, so use
//! unguessable lessee ids if that matters. Leases live in the same items, with
//! the same fencing tokens and clock rule, as the [`Locker`](distlock_core::Locker)
//! API; they are mutexes (one lessee per lease id).
//!
//! For pools with [`Lock`](distlock_core::Lock) handles (background refresh,
//! lost signal) use [`distlock_core::patterns::obtain_any`] and
//! [`distlock_core::patterns::wait_until_obtained`] over a
//! [`DynamoLocker`](crate::DynamoLocker) instead.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use distlock_core::{
    Error, LeaseKey, LockOptions, Store, validate_owner, validate_prefix, validate_resource,
};

use crate::DynamoStore;
use crate::error::{BACKEND, Op, map_sdk};
use crate::layout::{self, Snapshot};
use crate::store::{Outcome, Want};

/// Why a lease call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Someone else holds the lease (or every lease of the pool): the Go API's
    /// `LeaseNotObtainedError`. An ordinary outcome; try again later.
    #[error("lease `{lease_id}` not obtained: held by another lessee")]
    NotObtained {
        /// The lease id, or a description of the pool.
        lease_id: String,
    },
    /// The lease was lost: a renewal was refused, or its deadline passed
    /// without a confirmed renewal (the Go API's `LeaseLostError`). Stop the work
    /// it guarded.
    #[error("lease `{lease_id}` lost; stop using it")]
    Lost {
        /// The lease id.
        lease_id: String,
    },
    /// Bad input or a store error (see [`Error::is_transient`]).
    #[error(transparent)]
    Store(#[from] Error),
}

impl LeaseError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::NotObtained { .. } => true,
            LeaseError::Lost { .. } => false,
            LeaseError::Store(error) => error.is_transient(),
        }
    }
}

/// `Result` with [`LeaseError`].
pub type LeaseResult<T> = std::result::Result<T, LeaseError>;

/// Who asks for a lease and for how long (the Go API's `LeaseRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    lessee_id: String,
    duration: Duration,
}

impl LeaseRequest {
    /// A request by `lessee_id` for `duration`.
    pub fn new(lessee_id: impl Into<String>, duration: Duration) -> Self {
        LeaseRequest {
            lessee_id: lessee_id.into(),
            duration,
        }
    }

    /// The lessee: one lease id is held by one lessee at a time.
    pub fn lessee_id(&self) -> &str {
        &self.lessee_id
    }

    /// How long each grant or renewal lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// A held lease (the Go API's `Lease`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Lease {
    /// The lease's id: the item's hash key.
    pub lease_id: String,
    /// The item's other attributes (not the hash key, not `dl_*`).
    pub attributes: HashMap<String, AttributeValue>,
    /// The request that obtained or last renewed it.
    pub request: LeaseRequest,
    /// When the lease expires unless renewed (this client's clock).
    pub until: SystemTime,
    /// The fencing token of this grant: renewals keep it, a new grant has a
    /// greater one.
    pub token: u64,
    deadline: Instant,
    key: LeaseKey,
}

impl Lease {
    /// The local instant after which the lease must be treated as lost: from
    /// just before the granting (or renewing) request was sent, the duration
    /// less the drift margin and the clock-skew allowance.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_lost(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The lease key (also usable with [`Handler::release`](distlock_core::Handler::release)).
    pub fn key(&self) -> LeaseKey {
        self.key
    }
}

/// The Go API's `LockStore` and `Locker` in one: leases on a DynamoDB table.
///
/// Cheap to clone. [`LeaseStore::with_prefix`] confines the pool operations
/// ([`list_lease_ids`](LeaseStore::list_lease_ids),
/// [`obtain_lease`](LeaseStore::obtain_lease)) to ids with a prefix, so a table
/// can hold several pools and [`Locker`](distlock_core::Locker) resources too.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    store: DynamoStore,
    prefix: String,
}

/// Lease keys of lessees: FNV-1a (128 bits) of the lease id and lessee id.
fn lessee_key(lease_id: &str, lessee_id: &str) -> LeaseKey {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for byte in b"distlock-lease\0"
        .iter()
        .chain(lease_id.as_bytes())
        .chain(b"\0")
        .chain(lessee_id.as_bytes())
    {
        hash ^= u128::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    LeaseKey::from_u128(hash)
}

impl LeaseStore {
    /// Leases on `store`'s table.
    pub fn new(store: DynamoStore) -> Self {
        LeaseStore {
            store,
            prefix: String::new(),
        }
    }

    /// Confine pool operations to lease ids starting with `prefix`.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) for a prefix with control characters.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> LeaseResult<Self> {
        let prefix = prefix.into();
        validate_prefix(&prefix, self.store.capabilities().max_resource_len)?;
        self.prefix = prefix;
        Ok(self)
    }

    /// The store underneath.
    pub fn store(&self) -> &DynamoStore {
        &self.store
    }

    fn check(&self, lease_id: &str, request: &LeaseRequest) -> LeaseResult<()> {
        let caps = self.store.capabilities();
        validate_resource(lease_id, caps.max_resource_len)?;
        validate_owner(&request.lessee_id)?;
        if request.lessee_id.is_empty() {
            return Err(Error::invalid("lessee id", "the lessee id is empty").into());
        }
        LockOptions::new()
            .with_ttl(request.duration)
            .manual_refresh()
            .validate(caps)?;
        Ok(())
    }

    fn check_attributes(&self, attributes: &HashMap<String, AttributeValue>) -> LeaseResult<()> {
        for name in attributes.keys() {
            if layout::is_reserved(name) || name == &self.store.config().hash_key || name.is_empty()
            {
                return Err(Error::invalid(
                    "attribute",
                    format!(
                        "`{name}` cannot be an extra attribute (the hash key and names \
                         starting with `dl_` are the lease's own)"
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    fn deadline(&self, sent: Instant, duration: Duration) -> Instant {
        sent + duration.saturating_sub(self.store.capabilities().drift_margin(duration))
    }

    #[allow(clippy::too_many_arguments)]
    fn build_lease(
        &self,
        lease_id: &str,
        request: &LeaseRequest,
        key: LeaseKey,
        token: u64,
        expires_ms: i64,
        item: Option<HashMap<String, AttributeValue>>,
        sent: Instant,
    ) -> LeaseResult<Lease> {
        let attributes = match item {
            Some(item) => Snapshot::parse(Some(item), &self.store.config().hash_key)?.extra,
            None => HashMap::new(),
        };
        Ok(Lease {
            lease_id: lease_id.to_owned(),
            attributes,
            request: request.clone(),
            until: layout::from_millis(expires_ms),
            token,
            deadline: self.deadline(sent, request.duration),
            key,
        })
    }

    /// Acquire `lease_id` for `request`'s lessee, or renew it if that lessee
    /// holds it already (the Go API's `Lease`). A renewal is one request; a new
    /// grant two (the failed renewal returns the item, then one conditional write).
    ///
    /// # Errors
    /// [`LeaseError::NotObtained`] if another lessee holds it;
    /// [`LeaseError::Store`] for bad input or store errors.
    ///
    /// # Cancel safety
    /// If dropped after sending, the lease may be held; asking again with the
    /// same lessee id finds and renews it.
    pub async fn lease(&self, lease_id: &str, request: &LeaseRequest) -> LeaseResult<Lease> {
        self.lease_inner(lease_id, request, None).await
    }

    /// [`LeaseStore::lease`], also setting `attributes` on the item (the Go API's
    /// extra attribute values; returned in [`Lease::attributes`]).
    ///
    /// # Errors
    /// As [`LeaseStore::lease`]; [`InvalidArgument`](Error::InvalidArgument) for
    /// an attribute named like the hash key or starting with `dl_`.
    pub async fn lease_with_attributes(
        &self,
        lease_id: &str,
        request: &LeaseRequest,
        attributes: &HashMap<String, AttributeValue>,
    ) -> LeaseResult<Lease> {
        self.check_attributes(attributes)?;
        self.lease_inner(lease_id, request, Some(attributes)).await
    }

    async fn lease_inner(
        &self,
        lease_id: &str,
        request: &LeaseRequest,
        extra: Option<&HashMap<String, AttributeValue>>,
    ) -> LeaseResult<Lease> {
        self.check(lease_id, request)?;
        let key = lessee_key(lease_id, &request.lessee_id);
        let hex = key.to_hex();
        let sent = Instant::now();
        // Renew first: the common call of a lessee that holds the lease.
        let old = match self
            .store
            .refresh_one(lease_id, &hex, request.duration, extra, true)
            .await
        {
            Ok(item) => {
                let snapshot = Snapshot::parse(item.clone(), &self.store.config().hash_key)?;
                let Some(mine) = snapshot.holder(&hex) else {
                    return Err(Error::store(BACKEND, "renewed lease missing from the item").into());
                };
                return self.build_lease(
                    lease_id,
                    request,
                    key,
                    mine.token,
                    mine.expires_ms,
                    item,
                    sent,
                );
            }
            Err(crate::store::WriteError::Condition(old)) => old,
            Err(crate::store::WriteError::Other(error)) => return Err(error.into()),
        };
        let data = Bytes::new();
        let want = Want {
            resource: lease_id,
            key: hex,
            ttl: request.duration,
            permits: 1,
            owner: &request.lessee_id,
            data: &data,
            extra,
            want_item: true,
        };
        match self.store.decide_rounds(&want, old).await? {
            Outcome::Granted {
                token,
                expires_ms,
                item,
            } => self.build_lease(lease_id, request, key, token, expires_ms, item, sent),
            Outcome::Held { .. } => Err(LeaseError::NotObtained {
                lease_id: lease_id.to_owned(),
            }),
        }
    }

    /// Give the lease back.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] if it was no longer held by this lessee.
    pub async fn release(&self, lease: Lease) -> LeaseResult<()> {
        if self.store.release(&lease.lease_id, lease.key).await? {
            Ok(())
        } else {
            Err(LeaseError::Lost {
                lease_id: lease.lease_id,
            })
        }
    }

    /// Renew `lease` every `every` until it is lost (the Go API's `Heartbeat`).
    /// Never returns `Ok`: it returns [`LeaseError::Lost`] when a renewal is
    /// refused or the lease's deadline passes without a confirmed renewal
    /// (transient errors are retried until then), or a permanent store error.
    /// `lease` is updated after every renewal. It never re-acquires a lost lease.
    ///
    /// # Errors
    /// As above; [`InvalidArgument`](Error::InvalidArgument) if `every` is zero
    /// or not shorter than the time the lease is trusted.
    ///
    /// # Cancel safety
    /// Drop the future to stop renewing; the lease then expires (or release it).
    pub async fn heartbeat(&self, lease: &mut Lease, every: Duration) -> LeaseResult<Infallible> {
        let usable = lease.request.duration.saturating_sub(
            self.store
                .capabilities()
                .drift_margin(lease.request.duration),
        );
        if every.is_zero() || every >= usable {
            return Err(Error::invalid(
                "heartbeat period",
                format!("{every:?} must be above zero and below {usable:?}"),
            )
            .into());
        }
        let lost = |lease: &Lease| LeaseError::Lost {
            lease_id: lease.lease_id.clone(),
        };
        let mut next = Instant::now() + every;
        loop {
            tokio::time::sleep_until(next.min(lease.deadline).into()).await;
            if lease.is_lost() {
                return Err(lost(lease));
            }
            let sent = Instant::now();
            let answer = self
                .store
                .refresh_one(
                    &lease.lease_id,
                    &lease.key.to_hex(),
                    lease.request.duration,
                    None,
                    false,
                )
                .await;
            match answer {
                Ok(_) => {
                    let now_ms = self.store.now_ms();
                    lease.until = layout::from_millis(
                        now_ms.saturating_add(layout::duration_ms(lease.request.duration)),
                    );
                    if lease.is_lost() {
                        return Err(lost(lease));
                    }
                    lease.deadline = self
                        .deadline(sent, lease.request.duration)
                        .max(lease.deadline);
                    next = sent + every;
                }
                Err(crate::store::WriteError::Condition(_)) => return Err(lost(lease)),
                Err(crate::store::WriteError::Other(error)) if error.is_transient() => {
                    let left = lease.deadline.saturating_duration_since(Instant::now());
                    let retry = (every / 4).min(left / 2).max(Duration::from_millis(5));
                    tracing::warn!(
                        backend = BACKEND,
                        lease_id = &*lease.lease_id,
                        %error,
                        "heartbeat failed; retrying before the deadline"
                    );
                    next = Instant::now() + retry;
                }
                Err(crate::store::WriteError::Other(error)) => return Err(error.into()),
            }
        }
    }

    /// Every lease id in the table under the prefix, held or free, sorted (the
    /// Go API's `ListLeaseIDs`): a consistent `Scan`, page by page, projecting
    /// only the hash key.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_lease_ids(&self) -> LeaseResult<Vec<String>> {
        Ok(self.store.scan_ids(&self.prefix, false).await?)
    }

    /// Create free lease items (a pool) with `attributes`, skipping ids that
    /// exist. Returns how many were created. One conditional `PutItem` each.
    ///
    /// # Errors
    /// Bad ids or attribute names; store errors.
    pub async fn add_leases<R: AsRef<str>>(
        &self,
        ids: &[R],
        attributes: &HashMap<String, AttributeValue>,
    ) -> LeaseResult<usize> {
        self.check_attributes(attributes)?;
        let caps = self.store.capabilities();
        let hash_key = &self.store.config().hash_key;
        let mut created = 0;
        for id in ids {
            let id = id.as_ref();
            validate_resource(id, caps.max_resource_len)?;
            let mut item = attributes.clone();
            item.insert(hash_key.clone(), AttributeValue::S(id.to_owned()));
            if !attributes.is_empty() {
                // Keeps the mutex fast path (a whole-item put) off this item.
                item.insert(layout::ATTRS.to_owned(), AttributeValue::Bool(true));
            }
            let answer = self
                .store
                .client()
                .put_item()
                .table_name(&self.store.config().table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", hash_key)
                .send()
                .await;
            match answer {
                Ok(_) => created += 1,
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => {
                    let op = Op {
                        name: "add lease",
                        resource: id,
                        write: true,
                        table: &self.store.config().table,
                        endpoint: self.store.endpoint(),
                    };
                    return Err(map_sdk(op, e).into());
                }
            }
        }
        Ok(created)
    }

    /// Obtain any one lease of the table's items under the prefix (the Go API's
    /// `ObtainLease`: the items are the pool), trying them in random order.
    ///
    /// # Errors
    /// [`LeaseError::NotObtained`] if every one is held by others (or there are
    /// none); other errors as [`LeaseStore::lease`].
    pub async fn obtain_lease(&self, request: &LeaseRequest) -> LeaseResult<Lease> {
        let pool = self.list_lease_ids().await?;
        self.obtain_lease_from(&pool, request).await
    }

    /// Obtain any one lease of `pool`, trying them in random order so that
    /// contenders spread over the pool (as [`distlock_core::patterns::obtain_any`]).
    /// A lease of the pool that this lessee holds already is renewed and returned.
    ///
    /// # Errors
    /// As [`LeaseStore::obtain_lease`].
    pub async fn obtain_lease_from<R: AsRef<str>>(
        &self,
        pool: &[R],
        request: &LeaseRequest,
    ) -> LeaseResult<Lease> {
        let mut order: Vec<usize> = (0..pool.len()).collect();
        fastrand::shuffle(&mut order);
        for index in order {
            match self.lease(pool[index].as_ref(), request).await {
                Ok(lease) => return Ok(lease),
                Err(LeaseError::NotObtained { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Err(LeaseError::NotObtained {
            lease_id: format!("<any of {} leases>", pool.len()),
        })
    }

    /// Keep trying [`LeaseStore::obtain_lease`] every `period` (jittered) until a
    /// lease is obtained (the Go API's `WaitUntilLeaseObtained`). Transient store
    /// errors are retried too.
    ///
    /// # Errors
    /// Only permanent errors (bad input, missing table, …).
    ///
    /// # Cancel safety
    /// Drop the future to stop waiting; a lease obtained by a request in flight
    /// stays with this lessee id (ask again to find it).
    pub async fn wait_until_lease_obtained(
        &self,
        request: &LeaseRequest,
        period: Duration,
    ) -> LeaseResult<Lease> {
        loop {
            match self.obtain_lease(request).await {
                Ok(lease) => return Ok(lease),
                Err(error) if error.is_transient() => pause(period).await,
                Err(error) => return Err(error),
            }
        }
    }

    /// [`LeaseStore::wait_until_lease_obtained`] over a given pool.
    ///
    /// # Errors
    /// As [`LeaseStore::wait_until_lease_obtained`].
    pub async fn wait_until_lease_obtained_from<R: AsRef<str>>(
        &self,
        pool: &[R],
        request: &LeaseRequest,
        period: Duration,
    ) -> LeaseResult<Lease> {
        loop {
            match self.obtain_lease_from(pool, request).await {
                Ok(lease) => return Ok(lease),
                Err(error) if error.is_transient() => pause(period).await,
                Err(error) => return Err(error),
            }
        }
    }
}

/// Sleep between half and all of `period` (at least a millisecond): the
/// workspace's jittered backoff with a constant step.
async fn pause(period: Duration) {
    let period = period.max(Duration::from_millis(1));
    tokio::time::sleep(distlock_core::Backoff::new(period, period).next_pause()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lessee_keys_are_stable_and_distinct() {
        let a = lessee_key("lease-1", "worker-a");
        assert_eq!(a, lessee_key("lease-1", "worker-a"));
        assert_ne!(a, lessee_key("lease-1", "worker-b"));
        assert_ne!(a, lessee_key("lease-2", "worker-a"));
        assert_ne!(lessee_key("ab", "c"), lessee_key("a", "bc"));
        // Pinned: a lease stored by this version must be found by the next.
        assert_eq!(
            lessee_key("x", "y").to_hex(),
            "7e952a9145d4d17b3ab5a01ee3bbfeba"
        );
    }
}
