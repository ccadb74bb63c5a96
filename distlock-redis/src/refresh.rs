//! Refresh: a batch of leases in one pipeline of scripts.

use distlock_core::{RefreshRequest, Result};

use crate::RedisStore;
use crate::client::{evalsha, ms};
use crate::error::{is_noscript, unexpected};
use crate::layout::{self, Keys};
use crate::scripts::SCRIPTS;

/// Leases per refresh script: a batch of 10,000 becomes 20 scripts sent in one
/// pipeline (one round trip), and no script blocks the server for long (each
/// runs about 1 ms).
pub(crate) const REFRESH_CHUNK: usize = 500;

impl RedisStore {
    /// Renew leases given as (resource, key, ttl): one pipeline of scripts of
    /// [`REFRESH_CHUNK`] leases, one round trip.
    pub(crate) async fn refresh_raw(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let label = if leases.len() == 1 {
            leases[0].resource.to_owned()
        } else {
            format!("<{} leases>", leases.len())
        };
        // Which leases each script renews: any REFRESH_CHUNK of them on a
        // single server; on a cluster node, only leases of one hash slot.
        let mut order: Vec<usize> = (0..leases.len()).collect();
        let slots: Vec<u16> = if self.inner.cluster {
            let slots: Vec<u16> = leases
                .iter()
                .map(|l| {
                    layout::hash_slot(layout::main_key(self.namespace(), l.resource).as_bytes())
                })
                .collect();
            order.sort_by_key(|&i| slots[i]);
            slots
        } else {
            Vec::new()
        };
        let groups: Vec<&[usize]> = if self.inner.cluster {
            order
                .chunk_by(|&a, &b| slots[a] == slots[b])
                .flat_map(|group| group.chunks(REFRESH_CHUNK))
                .collect()
        } else {
            order.chunks(REFRESH_CHUNK).collect()
        };
        let mut pipe = redis::pipe();
        for group in &groups {
            let keys: Vec<Keys> = group
                .iter()
                .map(|&i| Keys::new(self.namespace(), leases[i].resource))
                .collect();
            let names: Vec<&str> = keys
                .iter()
                .flat_map(|k| [k.holders.as_str(), k.details.as_str()])
                .collect();
            let mut cmd = evalsha(&SCRIPTS.refresh, &names);
            for &i in *group {
                cmd.arg(leases[i].key.to_hex()).arg(ms(leases[i].ttl));
            }
            pipe.add_command(cmd);
        }
        let mut connection = self.inner.connection.clone();
        let replies: Vec<Vec<i64>> = match pipe.query_async(&mut connection).await {
            Err(error) if is_noscript(&error) => {
                // The server lost its scripts: load and send again (renewing
                // twice is harmless).
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(crate::scripts::REFRESH)
                    .exec_async(&mut connection)
                    .await
                    .map_err(|e| self.map_error(e, "refresh", &label, true))?;
                pipe.query_async(&mut connection).await
            }
            other => other,
        }
        .map_err(|e| self.map_error(e, "refresh", &label, true))?;
        let mut outcomes = vec![false; leases.len()];
        if replies.len() != groups.len()
            || replies.iter().zip(&groups).any(|(r, g)| r.len() != g.len())
        {
            return Err(unexpected("refresh", &replies.len()));
        }
        for (reply, group) in replies.iter().zip(&groups) {
            for (&renewed, &i) in reply.iter().zip(*group) {
                outcomes[i] = renewed == 1;
            }
        }
        Ok(outcomes)
    }
}
