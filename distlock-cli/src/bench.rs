//! `distlock bench`: cycle latency, handoff latency, throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distlock::{LockOptions, Locker};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::cli::BenchArgs;
use crate::exit::{self, Failure};
use crate::output::{Output, ms};
use crate::store;

fn bar(out: &Output, len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if out.quiet() || !out.terminal {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg:10} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// p50, p99, max of sorted samples.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    (
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or_default(),
    )
}

pub(crate) async fn run(url: Option<&str>, args: BenchArgs, out: &Output) -> Result<u8, Failure> {
    let url = store::resolve(url)?;
    let (locker, _) = store::connect(&url).await?;
    let backend = locker.capabilities().backend;
    let prefix = format!("distlock-bench/{}", std::process::id());
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(10).max(locker.capabilities().min_ttl))
        .with_wait_timeout(Duration::ZERO);

    // Cycle: lock + release, one after the other.
    let bar1 = bar(out, u64::from(args.cycles), "cycle");
    let mut cycles = Vec::with_capacity(args.cycles as usize);
    let resource = format!("{prefix}/cycle");
    for _ in 0..args.cycles {
        let started = Instant::now();
        let lock = locker.lock(&resource, &options).await?;
        lock.release().await?;
        cycles.push(started.elapsed());
        bar1.inc(1);
    }
    bar1.finish_and_clear();
    let (c50, c99, cmax) = percentiles(&mut cycles);

    // Handoff: a waiter is granted the lock its holder releases.
    let bar2 = bar(out, u64::from(args.handoffs), "handoff");
    let mut handoffs = Vec::with_capacity(args.handoffs as usize);
    let resource = format!("{prefix}/handoff");
    let waiting = options.clone().with_wait_timeout(Duration::from_secs(30));
    for _ in 0..args.handoffs {
        let held = locker.lock(&resource, &options).await?;
        let waiter = {
            let locker = Arc::clone(&locker);
            let resource = resource.clone();
            let waiting = waiting.clone();
            tokio::spawn(async move {
                let lock = locker.lock(&resource, &waiting).await?;
                let granted = Instant::now();
                lock.release().await?;
                Ok::<_, distlock::Error>(granted)
            })
        };
        // Let the waiter start waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let released = Instant::now();
        held.release().await?;
        let granted = waiter
            .await
            .map_err(|e| Failure::new(exit::SOFTWARE, e.to_string()))??;
        handoffs.push(granted.saturating_duration_since(released));
        bar2.inc(1);
    }
    bar2.finish_and_clear();
    let (h50, h99, hmax) = percentiles(&mut handoffs);

    // Throughput: independent cycles from concurrent tasks.
    let bar3 = bar(out, args.duration.as_millis() as u64, "throughput");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..args.concurrency.max(1) {
        let locker = Arc::clone(&locker);
        let options = options.clone();
        let done = Arc::clone(&done);
        let stop = Arc::clone(&stop);
        let resource = format!("{prefix}/throughput/{task}");
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let lock = locker.lock(&resource, &options).await?;
                lock.release().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, distlock::Error>(())
        }));
    }
    let started = Instant::now();
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar3.set_position(started.elapsed().as_millis() as u64);
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await
            .map_err(|e| Failure::new(exit::SOFTWARE, e.to_string()))??;
    }
    let elapsed = started.elapsed();
    bar3.finish_and_clear();
    let ops = done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();

    if args.json {
        let d = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{}",
            json!({
                "backend": backend,
                "cycle_ms": {"p50": d(c50), "p99": d(c99), "max": d(cmax), "n": cycles.len()},
                "handoff_ms": {"p50": d(h50), "p99": d(h99), "max": d(hmax), "n": handoffs.len()},
                "throughput": {"ops_per_s": ops, "concurrency": args.concurrency.max(1)},
            })
        );
    } else {
        println!("backend     {backend} ({})", distlock::redact_url(&url));
        println!(
            "cycle       p50 {}  p99 {}  max {}  ({} lock+release)",
            ms(c50),
            ms(c99),
            ms(cmax),
            cycles.len()
        );
        println!(
            "handoff     p50 {}  p99 {}  max {}  ({} release → waiter granted)",
            ms(h50),
            ms(h99),
            ms(hmax),
            handoffs.len()
        );
        println!(
            "throughput  {ops:.0} lock+release/s with {} tasks",
            args.concurrency.max(1)
        );
    }
    Ok(exit::OK)
}
