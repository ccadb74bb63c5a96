//! Acquire without waiting: one txn.

use std::time::SystemTime;

use distlock_core::{AcquireRequest, Acquired, Error, Grant, Result};
use etcd_client::{Compare, CompareOp, GetResponse, PutOptions, Txn, TxnOp};

use crate::EtcdStore;
use crate::client::{first_range, revision_of};
use crate::error::{BACKEND, Op, is_lease_not_found};
use crate::layout::Record;
use crate::lease::LeaseHandle;

/// What one acquire txn found.
pub(crate) enum TxnOutcome {
    /// Our key holds one of the first `permits` places.
    Granted { revision: i64 },
    /// Others hold every permit.
    Held,
}

impl EtcdStore {
    /// Acquire without waiting: one txn on the lease of the TTL (again on a
    /// fresh lease if that one died behind our back).
    pub(crate) async fn acquire_now(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
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
                    return Err(from_client_error(self, error, request.resource, "acquire"));
                }
            }
        }
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
fn from_client_error(
    store: &EtcdStore,
    error: etcd_client::Error,
    resource: &str,
    operation: &'static str,
) -> Error {
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
    store.map_error(error, Op::Write(operation), resource)
}
