//! Batched heartbeats: `TransactWriteItems` of up to 100 renewals, failed
//! conditions found through `CancellationReasons`, one transaction per item.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::time::Duration;

use distlock_core::{Handler, Lock, LockOptions, RefreshRequest, Refreshed, Store};
use distlock_dynamo::DynamoStore;
use futures_util::StreamExt;

const SKEW: Duration = Duration::from_millis(250);

async fn hold(store: &DynamoStore, names: &[String], options: &LockOptions) -> Vec<Lock> {
    let locker = store.locker();
    futures_util::stream::iter(names.to_vec())
        .map(|name| {
            let locker = locker.clone();
            let options = options.clone();
            async move { locker.try_lock(&name, &options).await.unwrap().unwrap() }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresh_sends_one_transaction_per_hundred_leases() {
    const HELD: usize = 150;
    let Some(url) = common::url() else { return };
    let config = common::config(&url, SKEW);
    let store = common::store(config).await;
    // Long enough that moto (which copies the table for every transaction)
    // keeps up; the interval is a third of it.
    let ttl = Duration::from_secs(12);
    let locker = store.locker();
    let options = LockOptions::new().with_ttl(ttl);
    let names: Vec<String> = (0..HELD).map(|i| format!("held/{i:03}")).collect();
    let mut locks = Vec::new();
    for name in &names {
        locks.push(locker.try_lock(name, &options).await.unwrap().unwrap());
    }
    // Let the first round align the leases, then count three intervals.
    tokio::time::sleep(ttl / 2).await;
    let (before, requests) = (locker.refresh_stats(), store.requests_sent());
    tokio::time::sleep(ttl).await;
    let after = locker.refresh_stats();
    let calls = after.calls - before.calls;
    let renewed = after.renewed - before.renewed;
    let requests = store.requests_sent() - requests;
    assert!(
        locks.iter().all(|l| !l.is_lost()),
        "a refreshed lock was lost: {:?}, {} lost, {calls} calls, {requests} requests",
        locker.refresh_stats(),
        locks.iter().filter(|l| l.is_lost()).count()
    );
    // Each refresh round sends one transaction per 100 of its leases (at most
    // 2 for 150), never one request per lease. How many rounds fall in the
    // window depends on the scheduler (a loaded machine delays and splits
    // them), so bound requests by the rounds and leases counted, not by the
    // clock. One round may straddle each end of the window: its requests
    // counted without its call, or the other way round.
    let per_round = HELD.div_ceil(100) as u64;
    assert!(
        calls >= 1 && requests <= (calls + 1) * per_round,
        "{requests} requests in {calls} refresh rounds ({renewed} renewals) for {HELD} leases: \
         more than {per_round} transactions per round"
    );
    assert!(
        renewed >= 10 * requests.saturating_sub(per_round),
        "{requests} requests for {renewed} renewals in {calls} rounds: not batched"
    );
    assert!(
        locker.refresh_stats().renewed >= HELD as u64 * 2,
        "{:?}",
        locker.refresh_stats()
    );
    let released: Vec<_> = futures_util::stream::iter(locks)
        .map(Lock::release)
        .buffer_unordered(16)
        .collect()
        .await;
    // Still held at the end: no release finds its lease gone. On an emulator
    // swamped by other suites a release may go unconfirmed (a transient
    // error: it is released again in the background), which is no loss.
    let gone: Vec<_> = released
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| !e.is_transient())
        .collect();
    assert!(gone.is_empty(), "releases refused: {gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transaction_names_the_leases_that_are_gone() {
    const HELD: usize = 150;
    let Some(url) = common::url() else { return };
    let config = common::config(&url, SKEW);
    let store = common::store(config).await;
    let names: Vec<String> = (0..HELD).map(|i| format!("r/{i:03}")).collect();
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh();
    let locks = hold(&store, &names, &options).await;
    // An operator ends three leases, in both transactions' halves.
    let gone = ["r/007", "r/099", "r/140"];
    for name in gone {
        store.evict(name).await.unwrap();
    }
    let requests: Vec<RefreshRequest<'_>> = locks
        .iter()
        .map(|l| RefreshRequest::new(l.resource(), l.key(), Duration::from_secs(30)))
        .collect();
    let before = store.requests_sent();
    let outcomes = store.refresh(&requests).await.unwrap();
    let sent = store.requests_sent() - before;
    for (lock, outcome) in locks.iter().zip(&outcomes) {
        let expected = if gone.contains(&lock.resource()) {
            Refreshed::NotHeld
        } else {
            Refreshed::Renewed
        };
        assert_eq!(*outcome, expected, "{}", lock.resource());
    }
    assert!(
        sent <= 4,
        "two transactions, cancelled, then the rest again: {sent} requests"
    );
    for lock in locks {
        let gone = gone.contains(&lock.resource());
        assert_eq!(lock.release().await.is_ok(), !gone);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_of_one_resource_go_to_separate_transactions() {
    let Some(url) = common::url() else { return };
    let store = common::store(common::config(&url, SKEW)).await;
    let locker = store.locker();
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .with_permits(3)
        .manual_refresh();
    let mut locks = Vec::new();
    for _ in 0..3 {
        locks.push(locker.try_lock("sem", &options).await.unwrap().unwrap());
    }
    for name in ["a", "b"] {
        locks.push(
            locker
                .try_lock(name, &options.clone().with_permits(1))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let requests: Vec<RefreshRequest<'_>> = locks
        .iter()
        .map(|l| RefreshRequest::new(l.resource(), l.key(), Duration::from_secs(30)))
        .collect();
    let before = store.requests_sent();
    let outcomes = store.refresh(&requests).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Refreshed::Renewed),
        "{outcomes:?}"
    );
    assert_eq!(
        store.requests_sent() - before,
        3,
        "a transaction may touch an item once: 3 + 1 + 1"
    );
    for lock in locks {
        lock.release().await.unwrap();
    }
}
