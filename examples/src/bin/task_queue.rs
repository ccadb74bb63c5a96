//! Task locking over a queue: several workers race over the same list of task
//! ids; a worker runs a task only if `try_lock("tasks/ID")` grants it, and
//! skips tasks another worker holds. Under the lock it checks the task's
//! "done" record (a lock alone cannot tell a task finished and released from
//! one never started), runs it, records it done, releases. The run checks that
//! every task was processed exactly once.
//!
//! `cargo run -p distlock-examples --bin task_queue -- [workers] [tasks]` (memory), or
//! `DISTLOCK_URL=redis://127.0.0.1:6379 cargo run -p distlock-examples --features redis --bin task_queue`
//! (`--features postgres` with `DISTLOCK_URL=postgres://…` for PostgreSQL).

#![allow(clippy::expect_used)] // example programs stop with a message

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use distlock::{Handler, LockOptions};
use distlock_examples::ensure;

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let mut args = std::env::args().skip(1);
    let workers: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let tasks: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let run = std::process::id();

    // The shared queue (every worker sees every id) and the results table.
    let queue: Arc<Vec<u32>> = Arc::new((1..=tasks).collect());
    let done = Arc::new(Mutex::new(HashMap::<u32, Vec<u32>>::new())); // task -> workers that ran it

    let mut handles = Vec::new();
    for worker in 0..workers {
        let locker = distlock_examples::connect().await?; // one client per worker
        let (queue, done) = (queue.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let options = LockOptions::new()
                .with_ttl(Duration::from_secs(10))
                .with_owner(format!("worker-{worker}"));
            let (mut ran, mut held, mut finished) = (0, 0, 0);
            for &task in queue.iter() {
                let Some(lock) = locker.try_lock(&format!("examples/tasks/{run}/{task}"), &options).await?
                else {
                    held += 1; // another worker is on it
                    continue;
                };
                if done.lock().expect("done").contains_key(&task) {
                    lock.release().await?; // finished by someone before us
                    finished += 1;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(work_ms(task))).await; // the work
                done.lock().expect("done").entry(task).or_default().push(worker);
                lock.release().await?;
                ran += 1;
            }
            println!("worker-{worker}: ran {ran} tasks; skipped {held} held by others, {finished} already done");
            Ok::<_, distlock::Error>(())
        }));
    }
    for handle in handles {
        handle.await.expect("worker panicked")?;
    }

    let done = done.lock().expect("done");
    for task in queue.iter() {
        let runs = done.get(task).map_or(0, Vec::len);
        ensure(
            "task_queue",
            runs == 1,
            format!("task {task} ran {runs} times ({:?})", done.get(task)),
        );
    }
    println!(
        "task_queue: ok ({tasks} tasks, {workers} racing workers, every task processed exactly once)"
    );
    Ok(())
}

/// A task's pretend duration: 5 to 30 ms, varying by task.
fn work_ms(task: u32) -> u64 {
    5 + u64::from(task * 7 % 26)
}
