//! The locker's one background task: renews every auto-refresh lease in
//! batches, finishes store calls whose caller went away, and releases leases
//! nobody holds any more.
//!
//! Leases wait in a min-heap ordered by when they are due, beside a map by key
//! for removal; taking, renewing or dropping a lease is O(log N) whatever the
//! number held, and a round touches only the leases it renews. Removed leases
//! leave their heap entry behind until it surfaces (or the heap is rebuilt once
//! it holds twice as many entries as there are leases).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;

use crate::LeaseKey;
use crate::lock::LeaseState;

/// Lease keys are random already: hash them by their low bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 ^= value as u64;
    }
}

type LeaseMap = HashMap<LeaseKey, Arc<LeaseState>, BuildHasherDefault<KeyHasher>>;

pub(crate) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lease's place in the renewal queue.
struct Due {
    at: Instant,
    lease: Arc<LeaseState>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must come first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}

/// The auto-refresh leases: by key, and by due time.
#[derive(Default)]
struct Leases {
    by_key: LeaseMap,
    queue: BinaryHeap<Due>,
}

impl Leases {
    fn push(&mut self, lease: Arc<LeaseState>) {
        self.queue.push(Due {
            at: lease.next_due(),
            lease,
        });
    }

    /// Rebuild the queue from the live leases once removed ones dominate it.
    fn compact(&mut self) {
        if self.queue.len() <= 2 * self.by_key.len() + 64 {
            return;
        }
        let queue = self
            .by_key
            .values()
            .filter(|lease| !lease.in_flight.load(Ordering::Acquire))
            .map(|lease| Due {
                at: lease.next_due(),
                lease: lease.clone(),
            })
            .collect();
        self.queue = queue;
    }
}

/// A unit of background work.
pub(crate) type Job = BoxFuture<'static, ()>;

/// What the locker's one background task works on.
#[derive(Default)]
pub(crate) struct Background {
    leases: Mutex<Leases>,
    /// Work handed over by callers: releases, store calls to finish.
    jobs: Mutex<Vec<Job>>,
    pub(crate) wake: Notify,
    /// Encoded instant the task will next look at the queue (0: now/unknown).
    planned: AtomicU64,
    /// The task is alive.
    pub(crate) running: AtomicBool,
    pub(crate) calls: AtomicU64,
    pub(crate) renewed: AtomicU64,
    pub(crate) lost: AtomicU64,
}

impl Background {
    pub(crate) fn len(&self) -> usize {
        locked(&self.leases).by_key.len()
    }

    pub(crate) fn is_idle(&self) -> bool {
        locked(&self.leases).by_key.is_empty() && locked(&self.jobs).is_empty()
    }

    /// Start renewing `lease`. Returns whether the task must look at the queue
    /// sooner than it planned.
    pub(crate) fn insert(&self, lease: Arc<LeaseState>) -> bool {
        let at = crate::lock::encode(lease.next_due());
        let mut leases = locked(&self.leases);
        leases.by_key.insert(lease.key, lease.clone());
        leases.push(lease);
        let planned = self.planned.load(Ordering::Acquire);
        planned == 0 || at < planned
    }

    pub(crate) fn remove(&self, key: LeaseKey) -> Option<Arc<LeaseState>> {
        let mut leases = locked(&self.leases);
        let removed = leases.by_key.remove(&key);
        if removed.is_some() {
            leases.compact();
        }
        removed
    }

    pub(crate) fn push_job(&self, job: Job) {
        locked(&self.jobs).push(job);
    }

    fn take_jobs(&self) -> Vec<Job> {
        std::mem::take(&mut *locked(&self.jobs))
    }

    /// Leases due for renewal (marked in flight, out of the queue), and when
    /// the next one is due.
    ///
    /// A lease due within half of its interval is renewed with the one that
    /// is due now (a little early), so leases taken at different moments fall
    /// into one batch after a round or two and stay there: one store call per
    /// interval.
    pub(crate) fn take_due(&self, now: Instant) -> (Vec<Arc<LeaseState>>, Option<Instant>) {
        let mut due = Vec::new();
        let mut lost = 0;
        let mut leases = locked(&self.leases);
        let next = loop {
            let Some(top) = leases.queue.peek() else {
                break None;
            };
            let lease = &top.lease;
            let current = leases
                .by_key
                .get(&lease.key)
                .is_some_and(|held| Arc::ptr_eq(held, lease));
            if !current {
                leases.queue.pop();
                continue;
            }
            if !lease.is_live() {
                if lease.mark_lost() || !lease.is_released() {
                    lost += 1;
                }
                let key = lease.key;
                leases.queue.pop();
                leases.by_key.remove(&key);
                continue;
            }
            let due_at = lease.next_due();
            if due_at != top.at {
                // Renewed by hand meanwhile: back in at its new time.
                if let Some(entry) = leases.queue.pop() {
                    leases.push(entry.lease);
                }
                continue;
            }
            let interval = lease.interval.unwrap_or(lease.ttl / 3);
            if due_at > now + interval / 2 {
                break Some(due_at);
            }
            if let Some(entry) = leases.queue.pop() {
                entry.lease.in_flight.store(true, Ordering::Release);
                due.push(entry.lease);
            }
        };
        // Under the lock: an insert after this sees the new plan.
        self.planned.store(
            next.map_or(u64::MAX, crate::lock::encode),
            Ordering::Release,
        );
        drop(leases);
        self.lost.fetch_add(lost, Ordering::Relaxed);
        (due, next)
    }

    /// A round for `due` ended: put the leases still held back in the queue.
    pub(crate) fn requeue(&self, due: &[Arc<LeaseState>]) -> bool {
        let mut earliest = u64::MAX;
        let mut leases = locked(&self.leases);
        for lease in due {
            lease.in_flight.store(false, Ordering::Release);
            let current = leases
                .by_key
                .get(&lease.key)
                .is_some_and(|held| Arc::ptr_eq(held, lease));
            if current {
                earliest = earliest.min(crate::lock::encode(lease.next_due()));
                leases.push(lease.clone());
            }
        }
        earliest < self.planned.load(Ordering::Acquire)
    }

    /// Forget the plan: the task looks at the queue when it next runs.
    fn replan(&self) {
        self.planned.store(0, Ordering::Release);
    }
}

/// What the background task needs from its locker.
pub(crate) trait Owner: Send + Sync + 'static {
    fn background(&self) -> &Background;
    /// Renew `due` in one store call and apply the answers.
    fn refresh_round(self: Arc<Self>, due: Vec<Arc<LeaseState>>) -> Job;
}

/// The locker's one background task. Exits when the locker, every lock and
/// every queued job are gone.
pub(crate) async fn run<O: Owner>(owner: Arc<O>) {
    let mut rounds: FuturesUnordered<Job> = FuturesUnordered::new();
    loop {
        let bg = owner.background();
        let wake = bg.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();

        rounds.extend(bg.take_jobs());
        let now = Instant::now();
        let (due, next_due) = bg.take_due(now);
        if !due.is_empty() {
            rounds.push(owner.clone().refresh_round(due));
        }

        if rounds.is_empty() && Arc::strong_count(&owner) == 1 && bg.is_idle() {
            bg.running.store(false, Ordering::Release);
            bg.replan();
            // Someone may have queued work just before we stopped: take it back
            // unless a new task already did.
            if bg.is_idle()
                || bg
                    .running
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return;
            }
            continue;
        }

        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wake => {}
            _ = sleep => {}
            Some(()) = rounds.next(), if !rounds.is_empty() => {}
        }
    }
}

/// Pauses between tries of a release whose acquire may still land: the store
/// may apply an acquire sent on another connection after our release, so a
/// "not held" is believed only once these have passed.
pub(crate) const RELEASE_RETRIES: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
    Duration::from_millis(3200),
];
