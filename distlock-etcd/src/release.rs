//! Ending leases: release by lease key, and the operator's eviction of every
//! lease of a resource.

use distlock_core::{LeaseKey, Result};
use etcd_client::DeleteOptions;

use crate::EtcdStore;
use crate::client::kv_of;
use crate::error::Op;
use crate::layout::Record;

impl EtcdStore {
    /// Delete the key of `key` on `resource`: `Ok(true)` if it existed.
    pub(crate) async fn release_key(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let name = self.inner.layout.lease_key(resource, key);
        let lease = self.untrack(resource, key);
        // The key's name holds the 128-bit random lease key, so it names this
        // lease alone, forever: deleting by name is the compare-and-delete.
        let response = self
            .kv_delete(name)
            .await
            .map_err(|e| self.map_error(e, Op::Write("release"), resource))?;
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

    /// Delete every key of `resource` (holders and queued waiters) in one
    /// request. Tokens are create revisions, which only grow, so the next
    /// grant's token is higher. Returns how many holders' leases ended: the
    /// oldest `permits` keys deleted.
    pub(crate) async fn evict_all(&self, resource: &str) -> Result<usize> {
        let prefix = self.inner.layout.resource_prefix(resource);
        let response = self
            .retry(|client| {
                let (mut kv, prefix) = (kv_of(&client), prefix.clone());
                async move {
                    kv.delete(
                        prefix,
                        Some(DeleteOptions::new().with_prefix().with_prev_key()),
                    )
                    .await
                }
            })
            .await
            .map_err(|e| self.map_error(e, Op::Write("evict"), resource))?;
        let mut deleted = response.prev_kvs().to_vec();
        deleted.sort_by_key(etcd_client::KeyValue::create_revision);
        let Some(oldest) = deleted.first() else {
            return Ok(0);
        };
        let permits = Record::decode(oldest.value()).map_or(1, |r| r.permits);
        Ok(deleted
            .len()
            .min(usize::try_from(permits).unwrap_or(usize::MAX)))
    }
}
