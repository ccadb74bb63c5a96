//! Leader election on top of the locker: campaign, observe, proclaim, resign.
//!
//! An election is a mutex named after the office: the leader is its holder
//! (the oldest key), candidates wait in etcd's FIFO queue, the proposal is the
//! lock's data, and leadership ends when the lock is released or lost. This is
//! what etcd's own `concurrency.Election` does, with distlock's lost signal and
//! fencing token (the leader's term) on top.
//!
//! ```no_run
//! use distlock_etcd::{Election, EtcdStore};
//!
//! # async fn demo() -> distlock_core::Result<()> {
//! let store = EtcdStore::connect("etcd://127.0.0.1:2379").await?;
//! let election = Election::new(store.locker(), "services/scheduler");
//! let leadership = election.campaign("10.0.0.7:8080").await?; // waits its turn
//! tokio::select! {
//!     _ = leadership.lost() => eprintln!("no longer leader: stop"),
//!     _ = lead(leadership.term()) => {}
//! }
//! leadership.resign().await
//! # }
//! # async fn lead(term: u64) {}
//! ```

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use distlock_core::{Error, Lock, LockOptions, Locker, Result};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};
use futures_util::Stream;

use crate::error::Op;
use crate::layout::Record;
use crate::wakeup::Watch;
use crate::{EtcdLocker, EtcdStore};

/// One office to elect a leader for. Cheap to clone.
#[derive(Clone)]
pub struct Election {
    locker: EtcdLocker,
    name: String,
    options: LockOptions,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("ttl", &self.options.ttl)
            .finish()
    }
}

/// The current leader, as any observer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's identity (the locker's owner).
    pub owner: String,
    /// What the leader proclaimed (its campaign proposal, or a later proclaim).
    pub value: Bytes,
    /// The leader's term: its fencing token, greater for every new leader.
    pub term: u64,
    /// When it became leader (its own clock).
    pub since: SystemTime,
}

/// Being the leader. Leadership ends with [`Leadership::resign`], when it is
/// dropped (resigned in the background), or when it is lost
/// ([`Leadership::lost`] fires: stop acting as leader).
#[derive(Debug)]
pub struct Leadership {
    lock: Lock,
    store: EtcdStore,
}

impl Election {
    /// An election for the office `name` (a resource name) through `locker`.
    /// Leadership lasts [`distlock_core::DEFAULT_TTL`] without refresh (renewed
    /// in the background; on the session lease by default).
    pub fn new(locker: EtcdLocker, name: impl Into<String>) -> Self {
        Election {
            locker,
            name: name.into(),
            options: LockOptions::new().wait_forever(),
        }
    }

    /// Use these lock options for campaigns (TTL, wait timeout, owner);
    /// `permits` is forced to 1 and `data` is the proposal.
    pub fn with_options(mut self, options: LockOptions) -> Self {
        self.options = options.with_permits(1);
        self
    }

    /// The office's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wait to become leader, proposing `value` (FIFO among candidates).
    ///
    /// # Errors
    /// [`WaitTimeout`](Error::WaitTimeout) if the options set a wait timeout
    /// and it passed; others as [`Locker::lock`].
    ///
    /// # Cancel safety
    /// Dropping the future withdraws the candidacy.
    pub async fn campaign(&self, value: impl Into<Bytes>) -> Result<Leadership> {
        let options = self.options.clone().with_data(value);
        let lock = self.locker.lock(&self.name, &options).await?;
        Ok(Leadership {
            lock,
            store: self.locker.store().clone(),
        })
    }

    /// The current leader, or `None` when the office is vacant (one round trip).
    ///
    /// # Errors
    /// [`Unavailable`](Error::Unavailable) if etcd does not answer.
    pub async fn leader(&self) -> Result<Option<Leader>> {
        leader_at(self.locker.store(), &self.name)
            .await
            .map(|(leader, _)| leader)
    }

    /// The leader now and after every change (a new leader, a proclaim, or the
    /// office falling vacant: `None`), pushed by an etcd watch. The stream ends
    /// only when dropped; an error item means etcd could not be asked (it goes
    /// on trying).
    pub fn observe(&self) -> impl Stream<Item = Result<Option<Leader>>> + Send + 'static {
        struct State {
            store: EtcdStore,
            name: String,
            last: Option<Option<(u64, Bytes)>>,
            watch: Option<Watch>,
        }
        let state = State {
            store: self.locker.store().clone(),
            name: self.name.clone(),
            last: None,
            watch: None,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(watch) = state.watch.as_mut()
                    && watch.next_wake().await.is_err()
                {
                    state.watch = None;
                }
                let (leader, revision) = match leader_at(&state.store, &state.name).await {
                    Ok(found) => found,
                    Err(error) => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        return Some((Err(error), state));
                    }
                };
                if state.watch.is_none() {
                    let prefix = state.store.resource_prefix(&state.name);
                    let options = WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1);
                    match Watch::open(&state.store, prefix, options, &state.name).await {
                        Ok(watch) => state.watch = Some(watch),
                        Err(error) => {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            return Some((Err(error), state));
                        }
                    }
                }
                let seen = leader.as_ref().map(|l| (l.term, l.value.clone()));
                if state.last.as_ref() != Some(&seen) {
                    state.last = Some(seen);
                    return Some((Ok(leader), state));
                }
            }
        })
    }
}

/// The oldest key of the office and the revision it was read at.
async fn leader_at(store: &EtcdStore, name: &str) -> Result<(Option<Leader>, i64)> {
    let prefix = store.resource_prefix(name);
    let response = store
        .kv_get(
            prefix,
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1),
        )
        .await
        .map_err(|e| store.map_error(e, Op::Read, name))?;
    let revision = response.header().map_or(0, |h| h.revision());
    let leader = match response.kvs().first() {
        None => None,
        Some(kv) => {
            let record =
                Record::decode(kv.value()).ok_or_else(|| crate::error::unreadable(kv.key()))?;
            Some(Leader {
                owner: record.owner.clone(),
                value: record.data.clone(),
                term: u64::try_from(kv.create_revision()).unwrap_or(0),
                since: record.acquired_at(),
            })
        }
    };
    Ok((leader, revision))
}

impl Leadership {
    /// The term: this leadership's fencing token.
    pub fn term(&self) -> u64 {
        self.lock.token()
    }

    /// The lock behind the leadership.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Completes when leadership is lost (or resigned).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lock.lost()
    }

    /// Replace the value observers see, if still leader (two round trips).
    ///
    /// # Errors
    /// [`Lost`](Error::Lost) if leadership is gone.
    pub async fn proclaim(&self, value: impl Into<Bytes>) -> Result<()> {
        let lost = || Error::Lost {
            resource: self.lock.resource().to_owned(),
        };
        if self.lock.is_lost() {
            return Err(lost());
        }
        let key = self.store.key_of(self.lock.resource(), self.lock.key());
        let resource = self.lock.resource();
        let current = self
            .store
            .kv_get(key.clone(), GetOptions::new())
            .await
            .map_err(|e| self.store.map_error(e, Op::Read, resource))?;
        let Some(kv) = current.kvs().first() else {
            return Err(lost());
        };
        let mut record =
            Record::decode(kv.value()).ok_or_else(|| crate::error::unreadable(kv.key()))?;
        record.data = value.into();
        let revision = i64::try_from(self.term()).unwrap_or(i64::MAX);
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(
                key,
                record.encode(),
                Some(PutOptions::new().with_ignore_lease()),
            )]);
        let response = self.store.txn(txn, Op::Write("proclaim"), resource).await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(lost())
        }
    }

    /// Step down: release the office to the next candidate.
    ///
    /// # Errors
    /// As [`Lock::release`].
    pub async fn resign(self) -> Result<()> {
        self.lock.release().await
    }
}

impl AsRef<Lock> for Leadership {
    fn as_ref(&self) -> &Lock {
        &self.lock
    }
}
