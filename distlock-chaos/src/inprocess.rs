//! In-process runs (the memory backend): holders are tasks with their own
//! locker over one shared table; faults are injected where a process boundary
//! would be: a gate that stops a holder dead (pause), a store wrapper that
//! cuts a holder off (partition), delays its calls, loses a response after the
//! store applied it (unknown outcome), or never lets anything through again
//! (kill: the holder's lease is left to expire, as after a crash).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock::memory::MemoryStore;
use distlock::{
    AcquireRequest, Acquired, Capabilities, Error, Info, LeaseKey, LockOptions, Locker,
    RefreshRequest, Refreshed, Result, Store, StoreLocker, Wakeup,
};
use tokio::sync::watch;

use crate::fence::Fence;
use crate::history::{Event, Fault, History, Kind, instant_ns, now_ns};
use crate::{RESOURCE, RunConfig};

/// The faults one holder's "network" can suffer.
#[derive(Debug, Default)]
struct Link {
    /// Every call fails as if the store were unreachable.
    partitioned: AtomicBool,
    /// The process is dead: nothing reaches the store, ever again.
    dead: AtomicBool,
    /// The next acquire or release is applied, then its answer is lost.
    lose_next_answer: AtomicBool,
    /// Added to every call, in milliseconds.
    delay_ms: AtomicU64,
    /// The holder stalls (a stop-the-world pause) right after its next
    /// "am I still holding?" check, before it writes: Kleppmann's scenario.
    stall_before_write: AtomicBool,
}

/// The memory store seen through a holder's faulty link.
#[derive(Debug)]
struct Linked {
    store: MemoryStore,
    link: Arc<Link>,
}

impl Linked {
    async fn cross(&self) -> Result<()> {
        let delay = self.link.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.link.partitioned.load(Ordering::Relaxed) || self.link.dead.load(Ordering::Relaxed) {
            return Err(Error::unavailable("memory", "chaos: link cut"));
        }
        Ok(())
    }

    fn answer_lost(&self, operation: &'static str, resource: &str) -> Option<Error> {
        self.link
            .lose_next_answer
            .swap(false, Ordering::Relaxed)
            .then(|| Error::OutcomeUnknown {
                backend: "memory",
                operation,
                resource: resource.to_owned(),
                source: "chaos: answer lost after the store applied it".into(),
            })
    }
}

impl Store for Linked {
    fn capabilities(&self) -> &Capabilities {
        self.store.capabilities()
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        self.cross().await?;
        let answer = self.store.acquire(request).await?;
        match self.answer_lost("acquire", request.resource) {
            Some(error) => Err(error),
            None => Ok(answer),
        }
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        self.cross().await?;
        self.store.refresh(leases).await
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.cross().await?;
        let released = self.store.release(resource, key).await?;
        match self.answer_lost("release", resource) {
            Some(error) => Err(error),
            None => Ok(released),
        }
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.cross().await?;
        self.store.info(resource).await
    }

    async fn read(&self, resource: &str) -> Result<Option<bytes::Bytes>> {
        self.cross().await?;
        self.store.read(resource).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.cross().await?;
        self.store.list(prefix).await
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        self.cross().await?;
        self.store.subscribe(resource).await
    }
}

/// One holder's handles, kept by the harness.
struct HolderSlot {
    id: u32,
    link: Arc<Link>,
    paused: watch::Sender<bool>,
    holding: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Wait while the holder is paused (a stopped process does nothing).
async fn wait_running(paused: &mut watch::Receiver<bool>) {
    let _ = paused.wait_for(|p| !*p).await;
}

/// A holder: take the lock, write to the fenced resource a few times while
/// holding it (refreshing by hand, so a pause stops refresh too), release.
#[allow(clippy::too_many_arguments)]
async fn holder(
    id: u32,
    locker: StoreLocker<Linked>,
    link: Arc<Link>,
    ttl: Duration,
    fence: Fence,
    mut paused: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    holding: Arc<AtomicU64>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
) {
    let record = |kind, token, at| {
        let _ = events.send(Event {
            kind,
            holder: id,
            token,
            at,
        });
    };
    let options = LockOptions::new()
        .with_ttl(ttl)
        .manual_refresh()
        .with_wait_timeout(ttl * 4);
    while !*stop.borrow() {
        wait_running(&mut paused).await;
        let lock = tokio::select! {
            lock = locker.lock(RESOURCE, &options) => lock,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(lock) = lock else {
            tokio::time::sleep(ttl / 10).await;
            continue;
        };
        let token = lock.token();
        holding.store(token, Ordering::SeqCst);
        record(Kind::Grant, token, now_ns());
        let mut refreshed = Instant::now();
        for _ in 0..6 {
            wait_running(&mut paused).await;
            if refreshed.elapsed() >= ttl / 3 {
                let sent = Instant::now();
                if lock.refresh().await.is_ok() {
                    refreshed = sent;
                }
            }
            if lock.is_lost() {
                break;
            }
            // The classic hazard: a pause between the check and the write.
            wait_running(&mut paused).await;
            if link.stall_before_write.swap(false, Ordering::SeqCst) {
                tokio::time::sleep(ttl * 3 / 2).await;
            }
            fence.write(id, token);
            tokio::time::sleep(ttl / 8).await;
        }
        holding.store(0, Ordering::SeqCst);
        // A paused holder does nothing until it runs again; then it finds out
        // whether it is releasing a live lock or a lost one.
        wait_running(&mut paused).await;
        if let Some(lost_at) = lock.lost_at() {
            record(Kind::Lost, token, instant_ns(lost_at));
            drop(lock);
        } else {
            record(Kind::Release, token, now_ns());
            let _ = lock.release().await;
        }
    }
}

/// Run `config` against one in-process table; return what happened.
pub(crate) async fn run(config: &RunConfig, fenced: bool) -> History {
    let store = MemoryStore::new();
    let fence = Fence::new(fenced);
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let spawn = |id: u32| {
        let link = Arc::new(Link::default());
        let locker = StoreLocker::new(Linked {
            store: store.clone(),
            link: link.clone(),
        });
        let (paused_tx, paused_rx) = watch::channel(false);
        let holding = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(holder(
            id,
            locker,
            link.clone(),
            config.ttl,
            fence.clone(),
            paused_rx,
            stop_rx.clone(),
            holding.clone(),
            events_tx.clone(),
        ));
        HolderSlot {
            id,
            link,
            paused: paused_tx,
            holding,
            task,
        }
    };
    let mut holders: Vec<HolderSlot> = (0..config.holders).map(spawn).collect();
    let mut next_id = config.holders;
    let mut faults = Vec::new();
    let ttl = config.ttl;
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(config.seed);

    while started.elapsed() < config.duration {
        tokio::time::sleep(ttl * 2).await;
        let kind = [
            "pause",
            "partition",
            "kill",
            "gc_pause_before_write",
            "unknown_outcome",
            "delay",
        ][rng.usize(..6)];
        // Aim at whoever holds the lock now, so that faults hit a holder.
        let index = holders
            .iter()
            .position(|h| h.holding.load(Ordering::SeqCst) != 0)
            .unwrap_or_else(|| rng.usize(..holders.len()));
        let at = now_ns();
        let target = &holders[index];
        match kind {
            "pause" => {
                let _ = target.paused.send(true);
                tokio::time::sleep(ttl * 3 / 2).await;
                let _ = target.paused.send(false);
            }
            "partition" => {
                target.link.partitioned.store(true, Ordering::SeqCst);
                tokio::time::sleep(ttl * 3 / 2).await;
                target.link.partitioned.store(false, Ordering::SeqCst);
            }
            "kill" => {
                let slot = holders.swap_remove(index);
                slot.link.dead.store(true, Ordering::SeqCst);
                slot.task.abort();
                let _ = slot.task.await;
                // Stamped once it is dead: a grant it saw after the fault was
                // chosen must end here, not stay open.
                let _ = events_tx.send(Event {
                    kind: Kind::Kill,
                    holder: slot.id,
                    token: slot.holding.load(Ordering::SeqCst),
                    at: now_ns(),
                });
                holders.push(spawn(next_id));
                next_id += 1;
            }
            "gc_pause_before_write" => {
                target.link.stall_before_write.store(true, Ordering::SeqCst);
                tokio::time::sleep(ttl * 2).await;
            }
            "unknown_outcome" => {
                target.link.lose_next_answer.store(true, Ordering::SeqCst);
            }
            _ => {
                target.link.delay_ms.store(
                    u64::try_from((ttl / 4).as_millis()).unwrap_or(100),
                    Ordering::SeqCst,
                );
                tokio::time::sleep(ttl).await;
                target.link.delay_ms.store(0, Ordering::SeqCst);
            }
        }
        faults.push(Fault {
            kind,
            at,
            forces_loss: matches!(kind, "pause" | "partition" | "gc_pause_before_write"),
        });
    }

    // Wind down: heal everything, let holders finish and release.
    let _ = stop_tx.send(true);
    for slot in &holders {
        let _ = slot.paused.send(false);
        slot.link.partitioned.store(false, Ordering::SeqCst);
        slot.link.delay_ms.store(0, Ordering::SeqCst);
        slot.link.lose_next_answer.store(false, Ordering::SeqCst);
        slot.link.stall_before_write.store(false, Ordering::SeqCst);
    }
    for slot in holders {
        let _ = slot.task.await;
    }
    drop(events_tx);
    let run_end = now_ns();
    let mut history = History {
        writes: fence.writes(),
        faults,
        ..History::default()
    };
    while let Some(event) = events_rx.recv().await {
        history.events.push(event);
    }
    // Leases of killed holders expire after their TTL; then nothing may be held
    // and no background task may be left. A release whose acquire's answer was
    // lost is retried for a few seconds (the acquire may still land), so the
    // lockers' tasks get that long to finish: looked at until clean, or until
    // that bound has passed.
    tokio::time::sleep(ttl * 2).await;
    let give_up = Instant::now() + Duration::from_secs(6);
    history.leaks = loop {
        let held = store.len() as u64;
        let tasks_left = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            .saturating_sub(tasks_before) as u64;
        if held + tasks_left == 0 || Instant::now() >= give_up {
            break held + tasks_left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    history
        .events
        .retain(|e| e.at <= run_end || e.kind != Kind::Grant);
    history
}
