//! Many locks and many clients at once.

use futures_util::StreamExt;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use super::Fixture;
use super::support::{Ctx, SOON, long, take, within};
use crate::{Lock, Result};

/// A thousand locks held at once by one client, then released.
pub async fn thousand_locks_at_once(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let locker = &ctx.locker;
    let names: Vec<String> = (0..1000)
        .map(|i| ctx.name(&format!("many/{i:04}")))
        .collect();
    let locks: Vec<Lock> = within(
        "1,000 acquires",
        SOON * 6,
        futures_util::stream::iter(names.clone())
            .map(|name| {
                let locker = locker.clone();
                async move { take(&*locker, &name, &long()).await }
            })
            .buffer_unordered(32)
            .collect(),
    )
    .await;
    assert_eq!(locks.len(), 1000);
    let mut tokens: Vec<u64> = locks.iter().map(Lock::token).collect();
    tokens.sort_unstable();
    assert!(tokens[0] > 0);
    let listed = locker.list(&ctx.name("many/")).await.expect("list");
    assert_eq!(listed, names, "list shows all 1,000, sorted");
    let released: Vec<Result<()>> = within(
        "1,000 releases",
        SOON * 6,
        futures_util::stream::iter(locks)
            .map(Lock::release)
            .buffer_unordered(32)
            .collect(),
    )
    .await;
    assert!(
        released.iter().all(Result::is_ok),
        "every release confirmed"
    );
    assert!(
        locker
            .list(&ctx.name("many/"))
            .await
            .expect("list")
            .is_empty()
    );
}

/// Many clients increment one counter under the lock: no update is lost and the
/// tokens each writer presents only grow.
pub async fn contended_counter_has_no_lost_update(fixture: &dyn Fixture) {
    const TASKS: u64 = 6;
    const ROUNDS: u64 = 8;
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("counter");
    // (value, highest token seen)
    let counter = Arc::new(Mutex::new((0u64, 0u64)));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let locker = ctx.other().await;
        let r = r.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let lock = locker
                    .lock(&r, &long().with_wait_timeout(SOON * 6))
                    .await
                    .expect("lock");
                let read = counter.lock().expect("counter").0;
                // Widen the window in which a second holder would interleave.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                {
                    let mut guard = counter.lock().expect("counter");
                    assert!(
                        lock.token() > guard.1,
                        "token {} presented after {}: fencing would reject it",
                        lock.token(),
                        guard.1
                    );
                    *guard = (read + 1, lock.token());
                }
                lock.release().await.expect("release");
            }
        }));
    }
    for task in tasks {
        within("contended counter", SOON * 12, task)
            .await
            .expect("task");
    }
    let (value, _) = *counter.lock().expect("counter");
    assert_eq!(
        value,
        TASKS * ROUNDS,
        "lost updates: two holders overlapped"
    );
}
