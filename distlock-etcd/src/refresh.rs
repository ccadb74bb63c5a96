//! Renewing leases: a batch at a time (see the crate docs, *Refresh*).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use distlock_core::{Error, RefreshRequest, Refreshed, Result};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use futures_util::future::join_all;

use crate::EtcdStore;
use crate::client::{first_range, locked};
use crate::config::ttl_secs;
use crate::error::{BACKEND, Op, is_lease_not_found};
use crate::lease::LeaseHandle;

/// Most operations in one txn: etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// What a move of a key to another lease found.
enum Moved {
    Done,
    /// The key is gone.
    Gone,
    /// The key hangs on this other lease.
    Elsewhere(i64),
}

impl EtcdStore {
    /// Renew a batch of leases (see the crate docs, *Refresh*). In parallel:
    /// one keep-alive per distinct lease of the keys this store tracks, and
    /// txns of up to [`MAX_TXN_OPS`] key reads that check every key still
    /// exists on that lease (a key deleted by another client, a release by key,
    /// is `NotHeld` although its lease lives on). Keys of other clients (handed
    /// over by lease key) are found by the same reads, then their lease is kept
    /// alive. A TTL other than the lease's moves the key onto a lease of the
    /// new TTL.
    pub(crate) async fn refresh_batch(
        &self,
        leases: &[RefreshRequest<'_>],
    ) -> Result<Vec<Refreshed>> {
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
                .map_err(|e| self.map_error(e, Op::Read, ""))?;
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
                Err(error) => {
                    return Err(self.map_error(error, Op::Write("refresh"), request.resource));
                }
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
            Err(error) => {
                return Err(self.map_error(error, Op::Write("refresh"), request.resource));
            }
        }
        let granted = granted
            .map_err(|e| self.map_error(e, Op::Write("refresh"), request.resource))?
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
            .map_err(|e| self.map_error(e, Op::Write("refresh"), request.resource))?;
        Ok(if matches!(moved, Moved::Done) {
            Refreshed::Renewed
        } else {
            self.revoke_in_background(&new);
            Refreshed::NotHeld
        })
    }
}
