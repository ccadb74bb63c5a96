//! The measurements every backend bench makes, the same way: uncontended cycle
//! against a raw client and a peer crate (interleaved in one run, so machine
//! noise hits all sides alike), handoff latency, throughput with 1 / 16 / 64
//! tasks on distinct keys and on one hot key, and refresh cost while holding
//! 10 / 1,000 / 10,000 locks. Percentiles come from HDR histograms.
//!
//! A bench binary builds a [`Report`], adds rows, and prints it: a markdown
//! table, then one line scripts read:
//! `bench BACKEND: cycle_us_p50=X raw_ratio=R peer_ratio=P handoff_us_p50=H refresh_requests_10k=Q`.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_core::{Handler, LockOptions, Locker, Store, StoreLocker};
use hdrhistogram::Histogram;

/// Latencies in nanoseconds, 1 ns ..= 100 s, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts.
        match Histogram::new_with_bounds(1, 100_000_000_000, 3) {
            Ok(h) => Latencies(h),
            Err(_) => unreachable_histogram(),
        }
    }

    /// Record one sample.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, 100_000_000_000);
        self.0.saturating_record(ns);
    }

    /// The `q` quantile (0.5 = median), in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// How many samples.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[allow(clippy::panic)] // only reachable if hdrhistogram rejects its documented bounds
fn unreachable_histogram() -> ! {
    panic!("hdrhistogram rejected constant bounds")
}

/// One timed operation of a contender, returning how long it took.
pub type Op<'a> = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = Duration> + 'a>> + 'a>;

/// Run every contender's op `batch` times, one contender after the other,
/// `rounds` times over (interleaved), and return each one's latencies.
pub async fn interleave(
    rounds: usize,
    batch: usize,
    contenders: &mut [(&str, Op<'_>)],
) -> Vec<Latencies> {
    let mut out = vec![Latencies::new(); contenders.len()];
    for _ in 0..rounds {
        for (i, (_, op)) in contenders.iter_mut().enumerate() {
            for _ in 0..batch {
                let d = op().await;
                out[i].record(d);
            }
        }
    }
    out
}

/// One `try_lock` + `release` of `resource`, timed.
pub async fn cycle(locker: &dyn Locker, resource: &str, options: &LockOptions) -> Duration {
    let started = Instant::now();
    let lock = locker.try_lock(resource, options).await;
    if let Ok(Some(lock)) = lock {
        let _ = lock.release().await;
    }
    started.elapsed()
}

/// Handoff: `holder` holds `resource`; a task waits in `waiter.lock()`; the time
/// from the holder's release call to the waiter holding.
pub async fn handoff(
    holder: Arc<dyn Locker>,
    waiter: Arc<dyn Locker>,
    resource: &str,
    samples: usize,
    settle: Duration,
) -> Latencies {
    let mut out = Latencies::new();
    let options = LockOptions::new().with_ttl(Duration::from_secs(30));
    for _ in 0..samples {
        let Ok(Some(lock)) = holder.try_lock(resource, &options).await else {
            continue;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = {
            let waiter = waiter.clone();
            let resource = resource.to_owned();
            let options = options.clone().with_wait_timeout(Duration::from_secs(30));
            tokio::spawn(async move {
                if let Ok(lock) = waiter.lock(&resource, &options).await {
                    let at = Instant::now();
                    let _ = tx.send(at);
                    let _ = lock.release().await;
                }
            })
        };
        // Let the waiter find the resource held and start waiting.
        tokio::time::sleep(settle).await;
        let released = Instant::now();
        let _ = lock.release().await;
        if let Ok(acquired) = rx.await {
            out.record(acquired.saturating_duration_since(released));
        }
        let _ = task.await;
    }
    out
}

/// Grants per second with `tasks` tasks for `duration`, each task with its own
/// locker from `lockers` (round robin), on distinct keys or on one hot key.
pub async fn throughput(
    lockers: &[Arc<dyn Locker>],
    tasks: usize,
    hot: bool,
    duration: Duration,
    prefix: &str,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let grants = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let locker = lockers[task % lockers.len().max(1)].clone();
        let resource = if hot {
            format!("{prefix}/hot")
        } else {
            format!("{prefix}/distinct/{task}")
        };
        let stop = stop.clone();
        let grants = grants.clone();
        handles.push(tokio::spawn(async move {
            let options = LockOptions::new()
                .with_ttl(Duration::from_secs(30))
                .with_wait_timeout(Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                if let Ok(lock) = locker.lock(&resource, &options).await {
                    grants.fetch_add(1, Ordering::Relaxed);
                    let _ = lock.release().await;
                }
                // An in-process store never makes a task wait: yield, or one
                // task would keep the others (and the clock) from running.
                tokio::task::yield_now().await;
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        let _ = handle.await;
    }
    grants.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Store calls the background refresher makes per refresh interval while
/// `locker` holds `count` locks with TTL `ttl` (auto refresh every TTL / 3).
pub async fn refresh_calls<S: Store>(
    locker: &StoreLocker<S>,
    count: usize,
    ttl: Duration,
    prefix: &str,
) -> Option<f64> {
    let options = LockOptions::new().with_ttl(ttl);
    let mut locks = Vec::with_capacity(count);
    for i in 0..count {
        match locker
            .try_lock(&format!("{prefix}/held/{i}"), &options)
            .await
        {
            Ok(Some(lock)) => locks.push(lock),
            _ => return None,
        }
    }
    // One interval to align the leases into one batch, then three measured.
    tokio::time::sleep(ttl / 3 + ttl / 6).await;
    let start = locker.refresh_stats();
    tokio::time::sleep(ttl).await;
    let end = locker.refresh_stats();
    let lost = locks.iter().filter(|l| l.is_lost()).count();
    for lock in locks {
        let _ = lock.release().await;
    }
    (lost == 0).then(|| (end.calls - start.calls) as f64 / 3.0)
}

/// A backend's bench results: a markdown table and the `bench` line.
#[derive(Debug, Default)]
pub struct Report {
    backend: String,
    rows: Vec<(String, String)>,
    cycle_us_p50: Option<f64>,
    raw_ratio: Option<f64>,
    peer_ratio: Option<f64>,
    handoff_us_p50: Option<f64>,
    refresh_requests_10k: Option<f64>,
}

fn field(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "na".to_owned(), |v| format!("{v:.digits$}"))
}

impl Report {
    /// A report for `backend`.
    pub fn new(backend: impl Into<String>) -> Self {
        Report {
            backend: backend.into(),
            ..Report::default()
        }
    }

    /// A free-form row.
    pub fn row(&mut self, measure: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.rows.push((measure.into(), value.into()));
        self
    }

    /// The headline: distlock's cycle against the raw client and (if any) the peer.
    pub fn cycle(
        &mut self,
        ours: &Latencies,
        raw: &Latencies,
        peer: Option<(&str, &Latencies)>,
    ) -> &mut Self {
        let (o50, o99) = (ours.us(0.5), ours.us(0.99));
        let (r50, r99) = (raw.us(0.5), raw.us(0.99));
        self.cycle_us_p50 = Some(o50);
        self.raw_ratio = Some(o50 / r50);
        self.row(
            "acquire + release cycle p50 / p99",
            format!("{o50:.1} / {o99:.1} µs"),
        );
        self.row(
            "raw client, same minimal work, p50 / p99",
            format!(
                "{r50:.1} / {r99:.1} µs (distlock / raw = {:.2}×)",
                o50 / r50
            ),
        );
        if let Some((name, peer)) = peer {
            let (p50, p99) = (peer.us(0.5), peer.us(0.99));
            self.peer_ratio = Some(o50 / p50);
            self.row(
                format!("{name} p50 / p99"),
                format!(
                    "{p50:.1} / {p99:.1} µs (distlock / {name} = {:.2}×)",
                    o50 / p50
                ),
            );
        }
        self
    }

    /// Handoff latency.
    pub fn handoff(&mut self, handoff: &Latencies, note: &str) -> &mut Self {
        self.handoff_us_p50 = Some(handoff.us(0.5));
        self.row(
            format!("handoff p50 / p99 ({note})"),
            format!("{:.1} / {:.1} µs", handoff.us(0.5), handoff.us(0.99)),
        );
        self
    }

    /// Set the headline figures directly (for benches that time batches rather
    /// than single operations, like the in-process one).
    pub fn headline(
        &mut self,
        cycle_us_p50: f64,
        raw_ratio: f64,
        peer_ratio: Option<f64>,
    ) -> &mut Self {
        self.cycle_us_p50 = Some(cycle_us_p50);
        self.raw_ratio = Some(raw_ratio);
        self.peer_ratio = peer_ratio;
        self
    }

    /// Set the handoff p50 directly (microseconds).
    pub fn handoff_p50(&mut self, us: f64) -> &mut Self {
        self.handoff_us_p50 = Some(us);
        self
    }

    /// Refresh calls per interval for 10,000 held locks.
    pub fn refresh_10k(&mut self, calls: Option<f64>) -> &mut Self {
        self.refresh_requests_10k = calls;
        self
    }

    /// The table and the `bench` line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} | value |", self.backend);
        let _ = writeln!(out, "|---|---|");
        for (measure, value) in &self.rows {
            let _ = writeln!(out, "| {measure} | {value} |");
        }
        let _ = writeln!(
            out,
            "bench {}: cycle_us_p50={} raw_ratio={} peer_ratio={} handoff_us_p50={} refresh_requests_10k={}",
            self.backend,
            field(self.cycle_us_p50, 2),
            field(self.raw_ratio, 2),
            field(self.peer_ratio, 2),
            field(self.handoff_us_p50, 1),
            field(self.refresh_requests_10k, 1),
        );
        out
    }
}

/// Whether the bench runs for real (`cargo bench` passes `--bench`) or as a
/// quick check (`cargo test --benches`).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}
