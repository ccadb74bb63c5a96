//! A lease pool: interchangeable resources (here three build agents), each a
//! named lease. A worker takes any free member with
//! `distlock::patterns::obtain_any`; when all are taken, it waits with
//! `wait_until_obtained` until one is released. The run checks that holders
//! always got different members and that the waiter got the freed one.
//!
//! `cargo run -p distlock-examples --bin lease_pool` (memory), or
//! `DISTLOCK_URL=redis://127.0.0.1:6379 cargo run -p distlock-examples --features redis --bin lease_pool`
//! (`--features postgres` with `DISTLOCK_URL=postgres://…` for PostgreSQL).

use std::time::{Duration, Instant};

use distlock::LockOptions;
use distlock::patterns::{obtain_any, wait_until_obtained};
use distlock_examples::{ensure, fail};

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let run = std::process::id();
    let pool: Vec<String> = ["agent-a", "agent-b", "agent-c"]
        .iter()
        .map(|name| format!("examples/pool/{run}/{name}"))
        .collect();
    let short = |lease: &str| lease.rsplit('/').next().unwrap_or(lease).to_owned();
    let options = |who: &str| {
        LockOptions::new()
            .with_ttl(Duration::from_secs(10))
            .with_owner(who.to_owned())
            .with_wait_timeout(Duration::from_secs(10))
    };

    // Three workers, each its own client, fill the pool.
    let mut held = Vec::new();
    for worker in 1..=3 {
        let locker = distlock_examples::connect().await?;
        let who = format!("worker-{worker}");
        let Some(lease) = obtain_any(&*locker, &pool, &options(&who)).await? else {
            fail(
                "lease_pool",
                format!("{who} found no free member of a pool with a free one"),
            );
        };
        println!(
            "{who}: obtained {} (token {})",
            short(lease.resource()),
            lease.token()
        );
        held.push(lease);
    }
    let mut names: Vec<&str> = held.iter().map(|l| l.resource()).collect();
    names.sort_unstable();
    names.dedup();
    ensure(
        "lease_pool",
        names.len() == 3,
        "two workers got the same member",
    );

    // A fourth finds the pool full, then waits while worker-1 finishes.
    let locker = distlock_examples::connect().await?;
    let none = obtain_any(&*locker, &pool, &options("worker-4")).await?;
    ensure(
        "lease_pool",
        none.is_none(),
        "worker-4 got a member of a full pool",
    );
    println!("worker-4: pool full, waiting for a member");
    let first = held.remove(0);
    let freed = first.resource().to_owned();
    let started = Instant::now();
    let wait = options("worker-4");
    let (waited, released) = tokio::join!(
        wait_until_obtained(&*locker, &pool, &wait, Duration::from_millis(50)),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            println!("worker-1: done with {}, released it", short(&freed));
            first.release().await
        }
    );
    released?;
    let lease = waited?;
    println!(
        "worker-4: obtained {} after {:.0?} (token {})",
        short(lease.resource()),
        started.elapsed(),
        lease.token()
    );
    ensure(
        "lease_pool",
        lease.resource() == freed,
        "worker-4 got a member someone still held",
    );

    lease.release().await?;
    for lease in held {
        lease.release().await?;
    }
    println!(
        "lease_pool: ok (3 workers held 3 different members; the waiter got the one released)"
    );
    Ok(())
}
