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

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

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

/// Release → blocked waiter holds, in µs.
async fn handoff_us(samples: usize) -> Vec<f64> {
    let store = MemoryStore::new();
    let holder = store.locker();
    let waiter = Arc::new(store.locker());
    let options = LockOptions::new().manual_refresh();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let lock = holder
            .try_lock("bench/handoff", &options)
            .await
            .unwrap()
            .unwrap();
        let waiting = {
            let waiter = waiter.clone();
            let options = options.clone().wait_forever();
            tokio::spawn(async move {
                let lock = waiter.lock("bench/handoff", &options).await.unwrap();
                let at = Instant::now();
                lock.release().await.unwrap();
                at
            })
        };
        // Let the waiter reach its wait (it subscribes, tries, and sleeps).
        tokio::time::sleep(Duration::from_micros(200)).await;
        let released = Instant::now();
        lock.release().await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_nanos() as f64 / 1000.0);
    }
    out
}

async fn raw_handoff_us(samples: usize) -> Vec<f64> {
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let guard = mutex.clone().lock_owned().await;
        let waiting = {
            let mutex = mutex.clone();
            tokio::spawn(async move {
                let _guard = mutex.lock().await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_micros(200)).await;
        let released = Instant::now();
        drop(guard);
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_nanos() as f64 / 1000.0);
    }
    out
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
    let cycle = percentile(&mut ours, 0.5);
    let cycle_auto = percentile(&mut ours_auto, 0.5);
    let raw_cycle = percentile(&mut theirs, 0.5);

    let samples = if full { 2000 } else { 50 };
    let mut handoff = handoff_us(samples).await;
    let mut raw_handoff = raw_handoff_us(samples).await;
    let (h50, h99) = (
        percentile(&mut handoff, 0.5),
        percentile(&mut handoff, 0.99),
    );
    let (r50, r99) = (
        percentile(&mut raw_handoff, 0.5),
        percentile(&mut raw_handoff, 0.99),
    );

    let held = if full { 100_000 } else { 1_000 };
    let bytes_manual = bytes_per_lock(held, &manual).await;
    let bytes_auto = bytes_per_lock(held, &auto).await;

    let mut report = distlock_bench::Report::new("memory");
    report
        .headline(cycle / 1000.0, cycle / raw_cycle, None)
        .row(
            "try_lock + release, manual refresh (batch p50)",
            format!(
                "{cycle:.0} ns (tokio::sync::Mutex in a map: {raw_cycle:.0} ns, {:.2}×)",
                cycle / raw_cycle
            ),
        )
        .row(
            "try_lock + release, auto refresh (batch p50)",
            format!(
                "{cycle_auto:.0} ns ({:.2}× the mutex map)",
                cycle_auto / raw_cycle
            ),
        )
        .row(
            "handoff p50 / p99 (release → waiter holds; push wake-up)",
            format!("{h50:.1} / {h99:.1} µs (tokio::sync::Mutex: {r50:.1} / {r99:.1} µs)"),
        )
        .row(
            format!("heap per held lock ({held} held), manual / auto refresh"),
            format!("{bytes_manual:.0} / {bytes_auto:.0} B"),
        );

    let duration = if full {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(100)
    };
    let lockers: Vec<Arc<dyn Locker>> = (0..4)
        .map(|_| Arc::new(store.locker()) as Arc<dyn Locker>)
        .collect();
    for tasks in [1, 16, 64] {
        let distinct =
            distlock_bench::throughput(&lockers, tasks, false, duration, "bench/tp").await;
        let hot = distlock_bench::throughput(&lockers, tasks, true, duration, "bench/tp").await;
        report.row(
            format!("throughput, {tasks} tasks: distinct keys / one hot key"),
            format!("{distinct:.0} / {hot:.0} grants/s"),
        );
    }
    let mut refresh_10k = None;
    for count in [10, 1_000, 10_000] {
        let calls = distlock_bench::refresh_calls(
            &locker,
            count,
            Duration::from_millis(600),
            "bench/refresh",
        )
        .await;
        report.row(
            format!("refresh: store calls per interval holding {count} locks"),
            calls.map_or("a lock was lost".to_owned(), |c| format!("{c:.1}")),
        );
        if count == 10_000 {
            refresh_10k = calls;
        }
    }
    report.refresh_10k(refresh_10k);
    report.handoff_p50(h50);
    println!(
        "memory backend, {} run, current-thread runtime",
        if full { "full" } else { "QUICK" }
    );
    print!("{}", report.render());
    // The memory line also carries the figures its own goals are stated in.
    println!(
        "bench memory-detail: cycle_ns_p50={cycle:.0} mutex_map_ratio={:.2} handoff_us_p50={h50:.1} bytes_per_lock={bytes_auto:.0}",
        cycle / raw_cycle
    );
}
