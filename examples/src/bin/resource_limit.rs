//! Resource limiting with a semaphore: a resource that admits 3 users at once
//! (`LockOptions::with_permits(3)`), 10 workers wanting it. Each worker waits
//! for a permit, uses the resource briefly, gives the permit back. The run
//! checks that never more than 3 were inside at once and that all finished.
//!
//! `cargo run -p distlock-examples --bin resource_limit` (memory), or
//! `DISTLOCK_URL=redis://127.0.0.1:6379 cargo run -p distlock-examples --features redis --bin resource_limit`
//! (`--features postgres` with `DISTLOCK_URL=postgres://…` for PostgreSQL).

#![allow(clippy::expect_used)] // example programs stop with a message

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use distlock::{LockOptions, Locker};
use distlock_examples::ensure;

const PERMITS: u32 = 3;
const WORKERS: u32 = 10;

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let resource = format!("examples/limit/{}/db-connections", std::process::id());
    let started = Instant::now();
    let inside = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicU32::new(0));

    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let locker = distlock_examples::connect().await?; // one client per worker
        let (resource, inside, most, finished) = (
            resource.clone(),
            inside.clone(),
            most.clone(),
            finished.clone(),
        );
        workers.push(tokio::spawn(async move {
            let options = LockOptions::new()
                .with_permits(PERMITS) // every holder asks for the same number
                .with_ttl(Duration::from_secs(10))
                .with_owner(format!("worker-{worker}"))
                .with_wait_timeout(Duration::from_secs(30));
            let permit = locker.lock(&resource, &options).await?;
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            println!(
                "{:>5} ms  worker-{worker}: got a permit, {now} of {PERMITS} in use",
                started.elapsed().as_millis()
            );
            ensure(
                "resource_limit",
                now <= PERMITS,
                format!("{now} workers inside at once"),
            );
            tokio::time::sleep(Duration::from_millis(150)).await; // use the resource
            inside.fetch_sub(1, Ordering::SeqCst); // leave before giving the permit back
            permit.release().await?;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, distlock::Error>(())
        }));
    }
    for worker in workers {
        worker.await.expect("worker panicked")?;
    }

    let (most, finished) = (most.load(Ordering::SeqCst), finished.load(Ordering::SeqCst));
    ensure(
        "resource_limit",
        most <= PERMITS,
        format!("{most} inside at once"),
    );
    ensure(
        "resource_limit",
        finished == WORKERS,
        format!("{finished} of {WORKERS} finished"),
    );
    println!(
        "resource_limit: ok ({WORKERS} workers finished in {:.1?}, at most {most} of {PERMITS} inside at once)",
        started.elapsed()
    );
    Ok(())
}
