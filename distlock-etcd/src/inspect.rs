//! Views: who holds a resource, its data, the held resources.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use distlock_core::{Holder, Info, Result};
use etcd_client::{GetOptions, KeyValue};
use futures_util::future::join_all;

use crate::EtcdStore;
use crate::error::{Op, unreadable};
use crate::layout::Record;

impl EtcdStore {
    /// The current holders.
    pub(crate) async fn info_of(&self, resource: &str) -> Result<Option<Info>> {
        let prefix = self.inner.layout.resource_prefix(resource);
        let response = self
            .kv_get(prefix, Self::oldest_first())
            .await
            .map_err(|e| self.map_error(e, Op::Read, resource))?;
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
            .map_err(|e| self.map_error(e, Op::Read, resource))
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

    /// The oldest holder's data.
    pub(crate) async fn read_of(&self, resource: &str) -> Result<Option<Bytes>> {
        let prefix = self.inner.layout.resource_prefix(resource);
        let response = self
            .kv_get(prefix, Self::oldest_first().with_limit(1))
            .await
            .map_err(|e| self.map_error(e, Op::Read, resource))?;
        match response.kvs().first() {
            None => Ok(None),
            Some(kv) => Record::decode(kv.value())
                .map(|r| Some(r.data))
                .ok_or_else(|| unreadable(kv.key())),
        }
    }

    /// Held resources starting with `prefix`.
    pub(crate) async fn list_of(&self, prefix: &str) -> Result<Vec<String>> {
        let range = self.inner.layout.list_prefix(prefix);
        let response = self
            .kv_get(range, GetOptions::new().with_prefix().with_keys_only())
            .await
            .map_err(|e| self.map_error(e, Op::Read, prefix))?;
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
}
