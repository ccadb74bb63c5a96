//! Primary / secondary failover (go-ldlm's pattern): several replicas race for
//! one lock; the holder works as primary until its lock is lost, then a
//! secondary takes over. Here the primary "crashes" (stops refreshing) after a
//! while, and the run shows the lost signal firing before the next primary is
//! granted, with a higher fencing token.
//!
//! `cargo run -p distlock-examples --bin failover`

#![allow(clippy::expect_used)] // example programs stop with a message

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distlock::{LockOptions, Locker};

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    // 600 ms, or the backend's shortest TTL if that is longer (etcd: 2 s).
    let ttl = distlock_examples::connect()
        .await?
        .capabilities()
        .min_ttl
        .max(Duration::from_millis(600));
    let started = Instant::now();
    let events = Arc::new(Mutex::new(Vec::<(Duration, String)>::new()));
    let log = {
        let events = events.clone();
        move |line: String| {
            let at = started.elapsed();
            println!("{:>6} ms  {line}", at.as_millis());
            events.lock().expect("events").push((at, line));
        }
    };

    let mut replicas = Vec::new();
    for replica in 0..3u32 {
        let locker = distlock_examples::connect().await?;
        let log = log.clone();
        replicas.push(tokio::spawn(async move {
            // Replica 0 "hangs" after two TTLs as primary: it stops refreshing.
            let options = if replica == 0 {
                LockOptions::new().with_ttl(ttl).manual_refresh()
            } else {
                LockOptions::new().with_ttl(ttl)
            }
            .with_owner(format!("replica-{replica}"))
            .with_wait_timeout(Duration::from_secs(30));
            if replica != 0 {
                // Let replica 0 win the first election.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let lock = locker.lock("service/primary", &options).await?;
            log(format!(
                "replica-{replica}: became primary (token {})",
                lock.token()
            ));
            let work = async {
                loop {
                    if replica == 0 {
                        // Manual refresh for two TTLs, then a pause longer than the TTL.
                        for _ in 0..6 {
                            tokio::time::sleep(ttl / 3).await;
                            let _ = lock.refresh().await;
                        }
                        log("replica-0: paused (GC, stop-the-world, network)".into());
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            tokio::select! {
                _ = lock.lost() => {
                    log(format!("replica-{replica}: LOST primary role; stopped working"));
                }
                _ = work => {}
                _ = tokio::time::sleep(Duration::from_millis(1500)), if replica != 0 => {
                    log(format!("replica-{replica}: steps down cleanly"));
                    lock.release().await?;
                }
            }
            Ok::<_, distlock::Error>(())
        }));
    }
    for replica in replicas {
        replica.await.expect("replica panicked")?;
    }

    let events = events.lock().expect("events").clone();
    let lost_at = events
        .iter()
        .find(|(_, e)| e.starts_with("replica-0: LOST"))
        .map(|(t, _)| *t);
    let next_at = events
        .iter()
        .filter(|(_, e)| e.contains("became primary") && !e.starts_with("replica-0"))
        .map(|(t, _)| *t)
        .next();
    match (lost_at, next_at) {
        (Some(lost), Some(next)) if lost <= next => {
            println!(
                "failover: ok (old primary knew it was lost {:.0?} before the new one started)",
                next - lost
            );
            Ok(())
        }
        other => {
            eprintln!("failover: FAILED: lost/next primary = {other:?}");
            std::process::exit(1);
        }
    }
}
