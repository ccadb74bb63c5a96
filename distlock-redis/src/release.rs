//! Ending leases: release by lease key, and the operator's eviction.

use distlock_core::{LeaseKey, Result};

use crate::RedisStore;
use crate::layout::Keys;
use crate::scripts::SCRIPTS;

impl RedisStore {
    pub(crate) async fn release_raw(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let keys = Keys::new(self.namespace(), resource);
        let hex = key.to_hex();
        let released: i64 = self
            .run(
                &SCRIPTS.release,
                crate::scripts::RELEASE,
                &[&keys.holders, &keys.details],
                |cmd| {
                    cmd.arg(&hex);
                },
            )
            .await
            .map_err(|e| self.map_error(e, "release", resource, true))?;
        Ok(released == 1)
    }

    /// End every lease of `resource` (see [`Store::evict`]): one script.
    pub(crate) async fn evict_raw(&self, resource: &str) -> Result<usize> {
        let keys = Keys::new(self.namespace(), resource);
        let ended: i64 = self
            .run(
                &SCRIPTS.evict,
                crate::scripts::EVICT,
                &[&keys.holders, &keys.details],
                |_| {},
            )
            .await
            .map_err(|e| self.map_error(e, "evict", resource, true))?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }
}
