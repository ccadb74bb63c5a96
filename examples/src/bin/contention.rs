//! N workers, one shared counter, one lock: prints proof that no update was
//! lost and that every writer's fencing token was higher than the last.
//!
//! `cargo run -p distlock-examples --bin contention -- [workers] [rounds]`

#![allow(clippy::expect_used)] // example programs stop with a message

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distlock::{LockOptions, Locker};

/// The guarded storage: accepts a write only with a token above the last one
/// it accepted (what a fenced database or object store does).
#[derive(Default)]
struct FencedCounter {
    value: u64,
    last_token: u64,
    rejected: u64,
}

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let mut args = std::env::args().skip(1);
    let workers: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);

    let counter = Arc::new(Mutex::new(FencedCounter::default()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        // Each worker is its own client, as separate processes would be.
        let locker = distlock_examples::connect().await?;
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let options = LockOptions::new()
                .with_ttl(Duration::from_secs(5))
                .with_wait_timeout(Duration::from_secs(60));
            for _ in 0..rounds {
                let lock = locker.lock("demo/counter", &options).await?;
                let seen = counter.lock().expect("counter").value;
                tokio::task::yield_now().await; // a window for a lost update
                {
                    let mut c = counter.lock().expect("counter");
                    if lock.token() > c.last_token {
                        c.last_token = lock.token();
                        c.value = seen + 1;
                    } else {
                        c.rejected += 1;
                    }
                }
                lock.release().await?;
            }
            Ok::<_, distlock::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("worker panicked")?;
    }
    let elapsed = started.elapsed();
    let c = counter.lock().expect("counter");
    let expected = workers * rounds;
    println!(
        "contention: workers={workers} rounds={rounds} counter={} expected={expected} \
         lost_updates={} stale_tokens_rejected={} last_token={} elapsed={elapsed:.2?} ({:.0} grants/s)",
        c.value,
        expected - c.value,
        c.rejected,
        c.last_token,
        expected as f64 / elapsed.as_secs_f64()
    );
    if c.value != expected || c.rejected != 0 {
        eprintln!("contention: FAILED: updates were lost or tokens went backwards");
        std::process::exit(1);
    }
    println!("contention: ok");
    Ok(())
}
