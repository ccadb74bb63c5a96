//! Memory backend benchmark: distlock against the minimal in-process
//! equivalent (a `tokio::sync::Mutex` per name in a map), in one run,
//! interleaved so that machine noise hits both sides alike.
//!
//! `cargo bench -p distlock-memory` prints a table (with throughput and refresh
//! cost from the shared kit, `distlock-bench`) and the `bench memory:` line.
#![allow(unsafe_code)] // the counting allocator below
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlock_bench::{Latencies, Tiers, median_ratio, pause, percentile};
use distlock_core::{Handler, LockOptions, Locker};
use distlock_memory::MemoryStore;

/// Counts live heap bytes, to report what a held lock costs.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: u32 = 20_000;
const ROUNDS: usize = 15;

/// The minimal work distlock's cycle does, without leases: find the name's
/// mutex in a shared map, take it, give it back.
#[derive(Default)]
struct RawMap {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl RawMap {
    fn cycle(&self, name: &str) {
        let mutex = {
            let mut map = self.map.lock().unwrap();
            match map.get(name) {
                Some(m) => m.clone(),
                None => map.entry(name.to_owned()).or_default().clone(),
            }
        };
        let guard = mutex.try_lock_owned().expect("uncontended");
        drop(guard);
    }
}

async fn cycle_ns(locker: &dyn Locker, options: &LockOptions) -> f64 {
    let started = Instant::now();
    for _ in 0..BATCH {
        let lock = locker
            .try_lock("bench/cycle", options)
            .await
            .unwrap()
            .unwrap();
        lock.release().await.unwrap();
    }
    started.elapsed().as_nanos() as f64 / f64::from(BATCH)
}

fn raw_ns(raw: &RawMap) -> f64 {
    let started = Instant::now();
    for _ in 0..BATCH {
        raw.cycle("bench/cycle");
    }
    started.elapsed().as_nanos() as f64 / f64::from(BATCH)
}

/// Release → blocked waiter holds: distlock, and a `tokio::sync::Mutex`.
async fn handoffs(samples: usize) -> (Latencies, Latencies) {
    // Let the waiter reach its wait (it subscribes, tries, and sleeps).
    let settle = Duration::from_micros(200);
    let store = MemoryStore::new();
    let holder = store.locker();
    let waiter: Arc<dyn Locker> = Arc::new(store.locker());
    let ours =
        distlock_bench::handoff(&holder, waiter, "bench/handoff", samples, pause(settle)).await;
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let raw = distlock_bench::handoff_with(
        samples,
        || async {
            let guard = mutex.clone().lock_owned().await;
            Some(async move { drop(guard) })
        },
        || {
            let mutex = mutex.clone();
            async move {
                let _guard = mutex.lock().await;
                Some(Instant::now())
            }
        },
        pause(settle),
    )
    .await;
    (ours, raw)
}

async fn bytes_per_lock(count: usize, options: &LockOptions) -> f64 {
    let store = MemoryStore::new();
    let locker = store.locker();
    let names: Vec<String> = (0..count).map(|i| format!("bench/held/{i:06}")).collect();
    let mut locks = Vec::with_capacity(count);
    let before = LIVE.load(Ordering::Relaxed);
    for name in &names {
        locks.push(locker.try_lock(name, options).await.unwrap().unwrap());
    }
    let after = LIVE.load(Ordering::Relaxed);
    for lock in locks {
        lock.release().await.unwrap();
    }
    (after - before) as f64 / count as f64
}

/// Take `count` auto-refreshed locks one after another on a multi-thread
/// runtime (the refresher runs beside the caller, as in a service): mean cost
/// per acquire and the slowest single acquire, in µs.
fn acquire_while_holding(count: usize) -> (f64, f64) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let locker = MemoryStore::new().locker();
            let options = LockOptions::new().with_ttl(Duration::from_secs(60));
            let names: Vec<String> = (0..count).map(|i| format!("bench/many/{i:06}")).collect();
            let mut locks = Vec::with_capacity(count);
            let mut slowest = Duration::ZERO;
            let started = Instant::now();
            for name in &names {
                let one = Instant::now();
                locks.push(locker.try_lock(name, &options).await.unwrap().unwrap());
                slowest = slowest.max(one.elapsed());
            }
            let mean = started.elapsed().as_secs_f64() * 1e6 / count as f64;
            assert_eq!(locker.refreshed_leases(), count);
            for lock in locks {
                lock.release().await.unwrap();
            }
            (mean, slowest.as_secs_f64() * 1e6)
        })
    })
    .join()
    .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = distlock_bench::full_run();
    let rounds = if full { ROUNDS } else { 2 };

    let store = MemoryStore::new();
    let locker = store.locker();
    let raw = RawMap::default();
    let manual = LockOptions::new().manual_refresh();
    let auto = LockOptions::new();

    let (mut ours, mut ours_auto, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        theirs.push(raw_ns(&raw));
        ours.push(cycle_ns(&locker, &manual).await);
        ours_auto.push(cycle_ns(&locker, &auto).await);
    }
    let cycle = percentile(&ours, 0.5);
    let cycle_auto = percentile(&ours_auto, 0.5);
    let raw_cycle = percentile(&theirs, 0.5);
    let raw_ratio = median_ratio(&ours, &theirs);
    let auto_ratio = median_ratio(&ours_auto, &theirs);

    let samples = if full { 2000 } else { 50 };
    let (handoff, raw_handoff) = handoffs(samples).await;
    let h50 = handoff.us(0.5);

    let held = if full { 100_000 } else { 1_000 };
    let bytes_manual = bytes_per_lock(held, &manual).await;
    let bytes_auto = bytes_per_lock(held, &auto).await;

    let many = if full {
        [10_000, 100_000]
    } else {
        [1_000, 10_000]
    };
    let at_many: Vec<(f64, f64)> = many.iter().map(|&n| acquire_while_holding(n)).collect();

    let mut report = distlock_bench::Report::new("memory");
    report
        .headline(cycle / 1000.0, Some(raw_ratio), None)
        .row(
            "try_lock + release, manual refresh (batch p50)",
            format!(
                "{cycle:.0} ns (tokio::sync::Mutex in a map: {raw_cycle:.0} ns, {raw_ratio:.2}×)"
            ),
        )
        .row(
            "try_lock + release, auto refresh (batch p50)",
            format!("{cycle_auto:.0} ns ({auto_ratio:.2}× the mutex map)"),
        )
        .row(
            "handoff p50 / p99 (release → waiter holds; push wake-up)",
            format!(
                "{} (tokio::sync::Mutex: {})",
                handoff.p50_p99(),
                raw_handoff.p50_p99()
            ),
        )
        .row(
            format!("heap per held lock ({held} held), manual / auto refresh"),
            format!("{bytes_manual:.0} / {bytes_auto:.0} B"),
        );
    for (n, (mean, slowest)) in many.iter().zip(&at_many) {
        report.row(
            format!("try_lock while holding up to {n} auto-refreshed locks: mean / slowest"),
            format!("{mean:.2} / {slowest:.0} µs"),
        );
    }

    let lockers: Vec<Arc<dyn Locker>> = (0..4)
        .map(|_| Arc::new(store.locker()) as Arc<dyn Locker>)
        .collect();
    Tiers::new(full)
        .with_ttl(Duration::from_millis(600))
        .run(&mut report, &lockers, &locker, |l| l.refresh_stats().calls)
        .await;
    report.handoff_p50(h50);
    println!(
        "memory backend, {} run, current-thread runtime",
        if full { "full" } else { "QUICK" }
    );
    print!("{}", report.render());
    // The memory line also carries the figures its own goals are stated in.
    let (small, large) = (at_many[0], at_many[1]);
    println!(
        "bench memory-detail: cycle_ns_p50={cycle:.0} mutex_map_ratio={raw_ratio:.2} handoff_us_p50={h50:.1} bytes_per_lock={bytes_auto:.0} acquire_us_holding_{}={:.2} acquire_us_holding_{}={:.2} slowest_acquire_us={:.0}",
        many[0],
        small.0,
        many[1],
        large.0,
        small.1.max(large.1)
    );
}
