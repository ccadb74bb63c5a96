//! Leader election: several candidates campaign for one leadership lock. The
//! leader works while watching `lock.lost()`, then resigns; the next candidate
//! takes over. The run checks that there is never more than one leader at a
//! time and that each new leader's fencing token is higher than the last.
//!
//! `cargo run -p distlock-examples --bin leader_election` (memory), or
//! `DISTLOCK_URL=redis://127.0.0.1:6379 cargo run -p distlock-examples --features redis --bin leader_election`
//! (`--features postgres` with `DISTLOCK_URL=postgres://…` for PostgreSQL).

#![allow(clippy::expect_used)] // example programs stop with a message

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlock::{LockOptions, Locker};
use distlock_examples::ensure;

const CANDIDATES: u32 = 3;
const TERM_TICKS: u32 = 4; // work rounds before a leader resigns

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let resource = format!("examples/leader/{}", std::process::id());
    let started = Instant::now();
    let leaders = Arc::new(AtomicU32::new(0)); // leaders right now
    let terms = Arc::new(Mutex::new(Vec::<(u32, u64)>::new())); // (candidate, token)

    let mut candidates = Vec::new();
    for id in 0..CANDIDATES {
        // Each candidate is its own client, as separate processes would be.
        let locker = distlock_examples::connect().await?;
        let ttl = locker.capabilities().min_ttl.max(Duration::from_secs(1));
        let (resource, leaders, terms) = (resource.clone(), leaders.clone(), terms.clone());
        candidates.push(tokio::spawn(async move {
            let options = LockOptions::new()
                .with_ttl(ttl) // renewed in the background while we lead
                .with_owner(format!("candidate-{id}"))
                .with_wait_timeout(Duration::from_secs(30));
            let lock = locker.lock(&resource, &options).await?;
            let at = started.elapsed().as_millis();
            let others = leaders.fetch_add(1, Ordering::SeqCst);
            println!(
                "{at:>5} ms  candidate-{id}: elected leader (token {})",
                lock.token()
            );
            ensure(
                "leader_election",
                others == 0,
                format!("{} leaders at once", others + 1),
            );
            terms.lock().expect("terms").push((id, lock.token()));

            let work = async {
                for tick in 1..=TERM_TICKS {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    println!("         candidate-{id}: leading, work round {tick}/{TERM_TICKS}");
                }
            };
            tokio::select! {
                _ = lock.lost() => {
                    leaders.fetch_sub(1, Ordering::SeqCst);
                    println!("         candidate-{id}: leadership LOST, stepped down");
                }
                _ = work => {
                    // Step down before giving the lock back: nobody else can be
                    // elected until the release, so there is no overlap.
                    leaders.fetch_sub(1, Ordering::SeqCst);
                    lock.release().await?;
                    let at = started.elapsed().as_millis();
                    println!("{at:>5} ms  candidate-{id}: resigned, handing off");
                }
            }
            Ok::<_, distlock::Error>(())
        }));
    }
    for candidate in candidates {
        candidate.await.expect("candidate panicked")?;
    }

    let terms = terms.lock().expect("terms").clone();
    ensure(
        "leader_election",
        terms.len() == CANDIDATES as usize,
        format!("{} of {CANDIDATES} candidates led", terms.len()),
    );
    ensure(
        "leader_election",
        terms.windows(2).all(|w| w[0].1 < w[1].1),
        format!("tokens did not increase from leader to leader: {terms:?}"),
    );
    let order: Vec<String> = terms
        .iter()
        .map(|(id, t)| format!("candidate-{id} ({t})"))
        .collect();
    println!(
        "leader_election: ok ({} handoffs, one leader at a time: {})",
        terms.len() - 1,
        order.join(" -> ")
    );
    Ok(())
}
