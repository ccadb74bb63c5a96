//! The measurements every backend bench makes, the same way: uncontended cycle
//! against a raw client and a peer crate (interleaved in one run, so machine
//! noise hits all sides alike), handoff latency, throughput with 1 / 16 / 64
//! tasks on distinct keys and on one hot key, and refresh cost while holding
//! 10 / 1,000 / 10,000 locks. Percentiles come from HDR histograms.
//!
//! A bench binary times its contenders with [`interleave`] (per-operation
//! latencies in a [`Latencies`] histogram, plus one mean per round: ratios are
//! taken per round, where both sides saw the same machine, then their median,
//! [`median_ratio`]), measures [`handoff`] (or [`handoff_with`] for a peer
//! crate), runs the [`Tiers`], and prints a [`Report`]: a markdown table, then
//! one line scripts read:
//! `bench BACKEND: cycle_us_p50=X raw_ratio=R peer_ratio=P handoff_us_p50=H refresh_requests_10k=Q`.
//!
//! Run without `--bench` (as `cargo test --benches` does), a bench should do a
//! very short run: see [`full_run`] and [`Tiers::new`].
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock_core::{Handler, LockOptions, Locker, Store, StoreLocker};
use futures_util::StreamExt;
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

    /// Record one sample (clamped to the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, 100_000_000_000);
        self.0.saturating_record(ns);
    }

    /// The `q` quantile (0.5 = median), in microseconds; 0 when empty.
    pub fn us(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// `"p50 / p99 µs"`, one decimal.
    pub fn p50_p99(&self) -> String {
        format!("{:.1} / {:.1} µs", self.us(0.5), self.us(0.99))
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

/// The `q` quantile (0.5 = median) of `samples`, nearest rank; NaN when empty.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().saturating_sub(1);
    let rank = (last as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}

/// The median of the per-round ratios `ours[i] / theirs[i]`: each ratio compares
/// two measurements taken at the same moment, so machine drift cancels out.
pub fn median_ratio(ours: &[f64], theirs: &[f64]) -> f64 {
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    percentile(&ratios, 0.5)
}

/// One contender's timings from [`interleave`].
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Every operation's latency.
    pub ops: Latencies,
    /// The mean operation latency of each round, in microseconds.
    pub rounds: Vec<f64>,
}

impl Timings {
    /// Median operation latency, µs (from the histogram).
    pub fn p50(&self) -> f64 {
        self.ops.us(0.5)
    }

    /// 99th percentile operation latency, µs.
    pub fn p99(&self) -> f64 {
        self.ops.us(0.99)
    }

    /// Median of the round means, µs.
    pub fn mean(&self) -> f64 {
        percentile(&self.rounds, 0.5)
    }

    /// `self / base`, as the median of per-round ratios.
    pub fn ratio(&self, base: &Timings) -> f64 {
        median_ratio(&self.rounds, &base.rounds)
    }
}

/// One operation of a contender; [`interleave`] times each call. Build with [`op`].
pub type Op<'a> = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// Box `f` (called once per operation) as an [`Op`].
pub fn op<'a, F, Fut>(mut f: F) -> Op<'a>
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = ()> + 'a,
{
    Box::new(move || Box::pin(f()))
}

/// Run every contender's op `batch` times, one contender after the other,
/// `rounds` times over (interleaved; the order rotates each round so that no
/// contender always runs first), and return each one's [`Timings`] in the
/// contenders' order. Time each op individually: meant for operations of
/// microseconds or more (an in-process cycle is better timed per batch).
pub async fn interleave(rounds: usize, batch: usize, contenders: &mut [Op<'_>]) -> Vec<Timings> {
    let n = contenders.len();
    let mut out = vec![Timings::default(); n];
    for round in 0..rounds {
        for step in 0..n {
            let i = (round + step) % n;
            let mut total = Duration::ZERO;
            for _ in 0..batch {
                let started = Instant::now();
                (contenders[i])().await;
                let took = started.elapsed();
                out[i].ops.record(took);
                total += took;
            }
            out[i]
                .rounds
                .push(total.as_secs_f64() * 1e6 / batch.max(1) as f64);
        }
    }
    out
}

/// One `try_lock` + `release` of `resource`; whether both succeeded.
pub async fn cycle(locker: &dyn Locker, resource: &str, options: &LockOptions) -> bool {
    match locker.try_lock(resource, options).await {
        Ok(Some(lock)) => lock.release().await.is_ok(),
        _ => false,
    }
}

/// A `settle` for [`handoff`]: sleep `pause` (time for the waiter to reach its
/// wait: subscribe, try once, start sleeping).
pub fn pause(pause: Duration) -> impl FnMut() -> tokio::time::Sleep {
    move || tokio::time::sleep(pause)
}

/// Handoff for any lock API, `samples` times: `hold()` takes the lock and
/// returns the (not yet started) future that releases it, or `None` if it
/// could not; `wait()` is spawned and must block until it holds, note the
/// instant, release and return that instant; `settle()` runs between the two
/// (the waiter must be waiting when the holder releases). Records the time
/// from the release call to the waiter holding. Samples where a side failed
/// are left out: compare [`Latencies::len`] with `samples`.
pub async fn handoff_with<H, HF, R, W, WF, S, SF>(
    samples: usize,
    mut hold: H,
    mut wait: W,
    mut settle: S,
) -> Latencies
where
    H: FnMut() -> HF,
    HF: Future<Output = Option<R>>,
    R: Future<Output = ()>,
    W: FnMut() -> WF,
    WF: Future<Output = Option<Instant>> + Send + 'static,
    S: FnMut() -> SF,
    SF: Future<Output = ()>,
{
    let mut out = Latencies::new();
    for _ in 0..samples {
        let Some(release) = hold().await else {
            continue;
        };
        let waiting = tokio::spawn(wait());
        settle().await;
        let released = Instant::now();
        release.await;
        if let Ok(Some(acquired)) = waiting.await {
            out.record(acquired.saturating_duration_since(released));
        }
    }
    out
}

/// Handoff between two distlock lockers (use two clients of the store):
/// `holder` holds `resource` (manual refresh, 30 s TTL); a task waits in
/// `waiter.lock()` (for at most 30 s); `settle` runs (see [`pause`]); the
/// time from the holder's release call to the waiter holding.
pub async fn handoff<S, SF>(
    holder: &dyn Locker,
    waiter: Arc<dyn Locker>,
    resource: &str,
    samples: usize,
    settle: S,
) -> Latencies
where
    S: FnMut() -> SF,
    SF: Future<Output = ()>,
{
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh();
    let waiting = options.clone().with_wait_timeout(Duration::from_secs(30));
    let options = &options;
    handoff_with(
        samples,
        move || async move {
            match holder.try_lock(resource, options).await {
                Ok(Some(lock)) => Some(async move {
                    let _ = lock.release().await;
                }),
                _ => None,
            }
        },
        || {
            let (waiter, options, resource) =
                (waiter.clone(), waiting.clone(), resource.to_owned());
            async move {
                let lock = waiter.lock(&resource, &options).await.ok()?;
                let at = Instant::now();
                let _ = lock.release().await;
                Some(at)
            }
        },
        settle,
    )
    .await
}

/// Grants per second with `tasks` tasks for `duration`, each task with its own
/// locker from `lockers` (round robin), on distinct keys or on one hot key.
/// Each task loops `lock` (5 s wait timeout) + `release`; grants after the
/// clock stops (while tasks finish their last wait) are not counted.
pub async fn throughput(
    lockers: &[Arc<dyn Locker>],
    tasks: usize,
    hot: bool,
    duration: Duration,
    prefix: &str,
) -> f64 {
    if lockers.is_empty() {
        return 0.0;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let grants = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let locker = lockers[task % lockers.len()].clone();
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
                    if !stop.load(Ordering::Relaxed) {
                        grants.fetch_add(1, Ordering::Relaxed);
                    }
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
    let elapsed = started.elapsed();
    let counted = grants.load(Ordering::Relaxed);
    for handle in handles {
        let _ = handle.await;
    }
    counted as f64 / elapsed.as_secs_f64()
}

/// Store requests per refresh interval (TTL / 3) while `locker` holds `count`
/// locks with TTL `ttl`, counted by `requests` (for instance
/// `|l| l.refresh_stats().calls`, or a backend's own request counter).
/// Takes the locks `concurrency` at a time, lets one interval align them into
/// one batch, counts over three intervals, then releases them. An error names
/// what went wrong (a lock not granted, or lost while held).
pub async fn refresh_requests<S: Store>(
    locker: &StoreLocker<S>,
    count: usize,
    ttl: Duration,
    concurrency: usize,
    prefix: &str,
    requests: impl Fn(&StoreLocker<S>) -> u64,
) -> Result<f64, String> {
    let options = LockOptions::new().with_ttl(ttl);
    let options = &options;
    let taken: Vec<_> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            locker
                .try_lock(&format!("{prefix}/held/{i:05}"), options)
                .await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut locks = Vec::with_capacity(count);
    let mut refused = None;
    for outcome in taken {
        match outcome {
            Ok(Some(lock)) => locks.push(lock),
            Ok(None) => refused = Some("a lock was held by someone else".to_owned()),
            Err(e) => refused = Some(format!("a try_lock failed: {e}")),
        }
    }
    let measured = match refused {
        Some(why) => Err(why),
        None => {
            tokio::time::sleep(ttl / 3 + ttl / 6).await;
            let start = requests(locker);
            tokio::time::sleep(ttl).await;
            let end = requests(locker);
            let lost = locks.iter().filter(|l| l.is_lost()).count();
            if lost == 0 {
                Ok(end.saturating_sub(start) as f64 / 3.0)
            } else {
                let stats = locker.refresh_stats();
                Err(format!(
                    "{lost} lock(s) lost while held ({} refresh calls had renewed {} leases and found {} lost)",
                    stats.calls, stats.renewed, stats.lost
                ))
            }
        }
    };
    futures_util::stream::iter(locks)
        .map(|lock| async move {
            let _ = lock.release().await;
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
    measured
}

/// [`refresh_requests`] counting the background refresher's
/// [`Store::refresh`] calls.
pub async fn refresh_calls<S: Store>(
    locker: &StoreLocker<S>,
    count: usize,
    ttl: Duration,
    prefix: &str,
) -> Result<f64, String> {
    refresh_requests(locker, count, ttl, 16, prefix, |l| l.refresh_stats().calls).await
}

/// The throughput and refresh tiers, with the same rows on every backend.
/// Build with [`Tiers::new`], adjust with the `with_*` methods, then [`Tiers::run`].
#[derive(Debug, Clone)]
pub struct Tiers {
    duration: Duration,
    tasks: Vec<usize>,
    held: Vec<usize>,
    ttl: Duration,
    concurrency: usize,
    counting: String,
    prefix: String,
}

impl Tiers {
    /// The tiers when `full` ([`full_run`]): 1 s of throughput with
    /// 1 / 16 / 64 tasks, refresh holding 10 / 1,000 / 10,000 locks with a 3 s
    /// TTL. Otherwise a check that runs in seconds: 100 ms with 1 / 16 tasks,
    /// 10 locks held with a 600 ms TTL.
    pub fn new(full: bool) -> Self {
        let (duration, tasks, held, ttl) = if full {
            let held = vec![10, 1_000, 10_000];
            let ttl = Duration::from_secs(3);
            (Duration::from_secs(1), vec![1, 16, 64], held, ttl)
        } else {
            let ttl = Duration::from_millis(600);
            (Duration::from_millis(100), vec![1, 16], vec![10], ttl)
        };
        Tiers {
            duration,
            tasks,
            held,
            ttl,
            concurrency: 16,
            counting: "store calls".to_owned(),
            prefix: "bench/tiers".to_owned(),
        }
    }

    /// How long each throughput figure runs.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The task counts for throughput.
    pub fn with_tasks(mut self, tasks: &[usize]) -> Self {
        self.tasks = tasks.to_vec();
        self
    }

    /// The held-lock counts for the refresh cost.
    pub fn with_held(mut self, held: &[usize]) -> Self {
        self.held = held.to_vec();
        self
    }

    /// The TTL of held locks (they are refreshed every TTL / 3); a refresh
    /// tier takes 1.5 TTL plus the time to take and release the locks.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many `try_lock`s / `release`s run at once while taking and
    /// dropping held locks (16 by default).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// What the refresh counter counts, for the row label ("store calls" by default).
    pub fn counting(mut self, what: impl Into<String>) -> Self {
        self.counting = what.into();
        self
    }

    /// The prefix of every resource name the tiers use (`bench/tiers` by default).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Measure throughput on `lockers` (distinct keys, then one hot key, per
    /// task count) and refresh cost on `holder` counted by `requests` (see
    /// [`refresh_requests`]), adding one row per tier to `report` and, where
    /// 10,000 locks were held, its `refresh_requests_10k`. Each locker cycles
    /// once first, to open its connection.
    pub async fn run<S: Store>(
        &self,
        report: &mut Report,
        lockers: &[Arc<dyn Locker>],
        holder: &StoreLocker<S>,
        requests: impl Fn(&StoreLocker<S>) -> u64,
    ) {
        let prefix = &self.prefix;
        let warm = LockOptions::new().manual_refresh();
        for locker in lockers {
            cycle(&**locker, &format!("{prefix}/warm"), &warm).await;
        }
        for &tasks in &self.tasks {
            let distinct = throughput(lockers, tasks, false, self.duration, prefix).await;
            let hot = throughput(lockers, tasks, true, self.duration, prefix).await;
            report.row(
                format!("throughput, {tasks} tasks: distinct keys / one hot key"),
                format!("{distinct:.0} / {hot:.0} grants/s"),
            );
        }
        let ttl = self.ttl;
        for &count in &self.held {
            let started = Instant::now();
            let measured =
                refresh_requests(holder, count, ttl, self.concurrency, prefix, &requests).await;
            report.row(
                format!(
                    "refresh: {} per interval ({} ms) holding {count} locks",
                    self.counting,
                    (ttl / 3).as_millis()
                ),
                match &measured {
                    Ok(n) => format!(
                        "{n:.1} ({:.0} s to take, hold and release)",
                        started.elapsed().as_secs_f64()
                    ),
                    Err(why) => format!("na: {why}"),
                },
            );
            if count == 10_000 {
                report.refresh_10k(measured.ok());
            }
        }
    }
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
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| "na".to_owned(), |v| format!("{v:.digits$}"))
}

impl Report {
    /// A report for `backend` (the name in the `bench` line).
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

    /// A row for one contender of [`interleave`]: p50 / p99, and its ratio to
    /// each of `versus` (median of per-round ratios).
    pub fn timing(
        &mut self,
        measure: impl Into<String>,
        timings: &Timings,
        versus: &[(&str, &Timings)],
    ) -> &mut Self {
        let mut value = format!("{:.1} / {:.1} µs", timings.p50(), timings.p99());
        for (i, (name, base)) in versus.iter().enumerate() {
            let sep = if i == 0 { " (" } else { ", " };
            let _ = write!(value, "{sep}/ {name} = {:.3}×", timings.ratio(base));
        }
        if !versus.is_empty() {
            value.push(')');
        }
        self.row(measure, value)
    }

    /// A row with `ours / base` (median of per-round ratios).
    pub fn ratio(
        &mut self,
        measure: impl Into<String>,
        ours: &Timings,
        base: &Timings,
    ) -> &mut Self {
        self.row(measure, format!("{:.3}×", ours.ratio(base)))
    }

    /// The headline: distlock's cycle against the raw client and (if any) the
    /// peer, with a row each (p50 / p99, per-round ratios).
    pub fn cycle(
        &mut self,
        ours: &Timings,
        raw: &Timings,
        peer: Option<(&str, &Timings)>,
    ) -> &mut Self {
        self.cycle_us_p50 = Some(ours.p50());
        self.raw_ratio = Some(ours.ratio(raw));
        self.peer_ratio = peer.map(|(_, p)| ours.ratio(p));
        let mut versus = vec![("raw", raw)];
        versus.extend(peer);
        self.timing("distlock try_lock + release, p50 / p99", ours, &versus);
        self.timing("raw client, same minimal work, p50 / p99", raw, &[]);
        if let Some((name, peer)) = peer {
            self.timing(format!("{name}, p50 / p99"), peer, &[("raw", raw)]);
        }
        self
    }

    /// Handoff latency: a row (p50 / p99, with `note`) and the headline p50.
    pub fn handoff(&mut self, handoff: &Latencies, note: &str) -> &mut Self {
        self.handoff_us_p50 = (!handoff.is_empty()).then(|| handoff.us(0.5));
        self.row(
            format!("handoff p50 / p99 ({note})"),
            format!("{} ({} samples)", handoff.p50_p99(), handoff.len()),
        );
        self
    }

    /// Set the headline figures directly (for benches that time batches rather
    /// than single operations, like the in-process one).
    pub fn headline(
        &mut self,
        cycle_us_p50: f64,
        raw_ratio: Option<f64>,
        peer_ratio: Option<f64>,
    ) -> &mut Self {
        self.cycle_us_p50 = Some(cycle_us_p50);
        self.raw_ratio = raw_ratio;
        self.peer_ratio = peer_ratio;
        self
    }

    /// Set the handoff p50 directly (microseconds).
    pub fn handoff_p50(&mut self, us: f64) -> &mut Self {
        self.handoff_us_p50 = Some(us);
        self
    }

    /// Store requests per refresh interval for 10,000 held locks ([`Tiers::run`]
    /// sets it).
    pub fn refresh_10k(&mut self, requests: Option<f64>) -> &mut Self {
        self.refresh_requests_10k = requests;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    #[test]
    fn percentile_is_nearest_rank_and_nan_when_empty() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 1.0), 4.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn median_ratio_pairs_rounds() {
        // Drift doubles both sides in round 2: the per-round ratio stays 2.
        assert_eq!(median_ratio(&[2.0, 4.0, 2.0], &[1.0, 2.0, 1.0]), 2.0);
    }

    #[tokio::test]
    async fn interleave_times_every_contender_each_round() {
        let mut calls = [0u32; 2];
        let (a, b) = calls.split_at_mut(1);
        let timings = {
            let mut sides = [
                op(|| {
                    a[0] += 1;
                    async {}
                }),
                op(|| {
                    b[0] += 1;
                    async {}
                }),
            ];
            interleave(3, 4, &mut sides).await
        };
        assert_eq!(calls, [12, 12]);
        assert!(
            timings
                .iter()
                .all(|t| t.ops.len() == 12 && t.rounds.len() == 3)
        );
    }

    #[test]
    fn report_line_says_na_for_what_was_not_measured() {
        let mut report = Report::new("x");
        report.headline(1.234, None, Some(f64::NAN)).row("a", "b");
        let out = report.render();
        assert!(out.contains("| a | b |"));
        assert!(out.ends_with(
            "bench x: cycle_us_p50=1.23 raw_ratio=na peer_ratio=na handoff_us_p50=na refresh_requests_10k=na\n"
        ));
    }
}
