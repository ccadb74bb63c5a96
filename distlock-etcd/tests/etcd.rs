//! etcd-specific behaviour against the service (`DISTLOCK_ETCD_URL`): FIFO
//! wake-up without a herd, sessions, the etcd#11456 scenario, several
//! endpoints, keep-alive batching, leader election.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{admin, eventually, queue, service_url, unique};
use distlock_core::{Error, Handler, Infoer, LockOptions, Locker};
use distlock_etcd::{Election, EtcdConfig, EtcdStore};
use futures_util::StreamExt;

const SOON: Duration = Duration::from_secs(20);

fn long() -> LockOptions {
    LockOptions::new().with_ttl(Duration::from_secs(30))
}

/// Ten waiters queued one after the other are granted in that order, and each
/// release wakes exactly one waiter (one re-check per grant: no herd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_order_of_ten_waiters_one_wake_each() {
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let r = unique("fifo");
    let holder = EtcdStore::connect(&url).await.unwrap().locker();
    let held = holder.try_lock(&r, &long()).await.unwrap().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut stores = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = EtcdStore::connect(&url).await.unwrap();
        stores.push(store.clone());
        let locker = store.locker();
        let (r2, order) = (r.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let lock = locker
                .lock(&r2, &long().with_wait_timeout(SOON * 2))
                .await
                .expect("waiter granted");
            order.lock().unwrap().push((i, lock.token()));
            lock.release().await.expect("release");
        }));
        // Queue them in a known order: wait until this waiter's key is in etcd.
        eventually("waiter queued", SOON, || {
            let admin = admin.clone();
            let r = r.clone();
            async move { queue(&admin, &r).await.len() == i + 2 }
        })
        .await;
    }
    let checks_before: u64 = stores.iter().map(|s| s.stats().queue_checks).sum();
    held.release().await.unwrap();
    for task in tasks {
        tokio::time::timeout(SOON, task).await.unwrap().unwrap();
    }
    let order = order.lock().unwrap().clone();
    let indices: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..10).collect::<Vec<_>>(), "FIFO order");
    assert!(
        order.windows(2).all(|w| w[0].1 < w[1].1),
        "tokens grow: {order:?}"
    );
    let checks: u64 = stores.iter().map(|s| s.stats().queue_checks).sum::<u64>() - checks_before;
    assert_eq!(checks, 10, "each release woke exactly one waiter");
    assert!(queue(&admin, &r).await.is_empty(), "nothing left behind");
}

/// A semaphore of 2 with four waiters: holders leave in any order, waiters are
/// served first come first served, and a release wakes one waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_waiters_are_served_in_order() {
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let r = unique("sem");
    let options = long().with_permits(2);
    let store = EtcdStore::connect(&url).await.unwrap();
    let locker = store.locker();
    let a = locker.try_lock(&r, &options).await.unwrap().unwrap();
    let b = locker.try_lock(&r, &options).await.unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    for i in 0..4 {
        let locker = EtcdStore::connect(&url).await.unwrap().locker();
        let (r2, options, tx) = (r.clone(), options.clone(), tx.clone());
        held.push(tokio::spawn(async move {
            let lock = locker
                .lock(&r2, &options.with_wait_timeout(SOON * 2))
                .await
                .expect("granted");
            tx.send((i, lock.token())).unwrap();
            lock
        }));
        eventually("waiter queued", SOON, || {
            let admin = admin.clone();
            let r = r.clone();
            async move { queue(&admin, &r).await.len() == i + 3 }
        })
        .await;
    }
    // The older holder stays; the younger leaves: the first waiter gets in.
    b.release().await.unwrap();
    let (first, _) = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, 0);
    a.release().await.unwrap();
    let (second, _) = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, 1);
    let mut grants = Vec::new();
    for task in held.drain(..2) {
        grants.push(tokio::time::timeout(SOON, task).await.unwrap().unwrap());
    }
    // Waiter 1 (now a holder) leaves before waiter 0: waiter 2 is next.
    grants.pop().unwrap().release().await.unwrap();
    let (third, _) = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third, 2);
    grants.pop().unwrap().release().await.unwrap();
    let (fourth, _) = tokio::time::timeout(SOON, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fourth, 3);
    for task in held {
        let lock = tokio::time::timeout(SOON, task).await.unwrap().unwrap();
        lock.release().await.unwrap();
    }
    assert!(queue(&admin, &r).await.is_empty(), "nothing left behind");
}

/// Revoking the session lease behind the client's back fires `lost` on every
/// lock it carried, and frees them all for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_loss_fires_lost_on_all_its_locks() {
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let config = EtcdConfig::from_url(&url)
        .unwrap()
        .with_session_ttl(Duration::from_secs(3));
    let store = EtcdStore::connect_with(config).await.unwrap();
    let locker = store.locker();
    let options = LockOptions::new().with_ttl(Duration::from_secs(3));
    let base = unique("session");
    let mut locks = Vec::new();
    for i in 0..5 {
        locks.push(
            locker
                .try_lock(&format!("{base}/{i}"), &options)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let session = store.session_id().expect("a session");
    for lock in &locks {
        let kv = &queue(&admin, lock.resource()).await[0];
        assert_eq!(kv.lease(), session, "the lock hangs on the session");
    }
    // Outlive a few keep-alive intervals first.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(locks.iter().all(|l| !l.is_lost()));
    admin.clone().lease_revoke(session).await.unwrap();
    let revoked = Instant::now();
    for lock in &locks {
        tokio::time::timeout(SOON, lock.lost())
            .await
            .expect("lost fires");
    }
    assert!(revoked.elapsed() < Duration::from_secs(3), "within one TTL");
    let other = EtcdStore::connect(&url).await.unwrap().locker();
    for lock in &locks {
        let again = other.try_lock(lock.resource(), &long()).await.unwrap();
        assert!(again.is_some(), "freed by the session's end");
    }
    // The store grants a new session for the next lock.
    let fresh = locker
        .try_lock(&format!("{base}/fresh"), &options)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(store.session_id(), Some(session));
    fresh.release().await.unwrap();
}

/// etcd#11456: a waiter whose lease is revoked while it waits must never report
/// a grant, even when the holder then releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_whose_lease_is_revoked_never_reports_a_lock() {
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let r = unique("jepsen-11456");
    let holder = EtcdStore::connect(&url).await.unwrap().locker();
    let held = holder.try_lock(&r, &long()).await.unwrap().unwrap();
    let waiter_store = EtcdStore::connect(&url).await.unwrap();
    let waiter = {
        let locker = waiter_store.locker();
        let r = r.clone();
        tokio::spawn(async move { locker.lock(&r, &long().with_wait_timeout(SOON * 2)).await })
    };
    eventually("waiter queued", SOON, || {
        let admin = admin.clone();
        let r = r.clone();
        async move { queue(&admin, &r).await.len() == 2 }
    })
    .await;
    let waiting = queue(&admin, &r).await[1].clone();
    admin.clone().lease_revoke(waiting.lease()).await.unwrap();
    held.release().await.unwrap();
    let outcome = tokio::time::timeout(SOON, waiter).await.unwrap().unwrap();
    match outcome {
        Err(Error::Lost { .. }) => {}
        Ok(lock) => panic!("granted a lock whose key had vanished: {lock:?}"),
        Err(other) => panic!("expected Lost, got {other}"),
    }
    let third = EtcdStore::connect(&url).await.unwrap().locker();
    assert!(third.try_lock(&r, &long()).await.unwrap().is_some());
}

/// A URL naming a dead endpoint besides a live one works as the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_endpoints_with_one_down() {
    let Some(url) = service_url() else { return };
    let live = EtcdConfig::from_url(&url).unwrap().endpoints[0].clone();
    for form in [
        format!("etcd://127.0.0.1:1,{live}"),
        format!("etcd://{live}?endpoints=127.0.0.1:1"),
    ] {
        let store = tokio::time::timeout(SOON, EtcdStore::connect(&form))
            .await
            .expect("connect in time")
            .expect("connect with one endpoint down");
        assert_eq!(store.config().endpoints.len(), 2);
        let locker = store.locker();
        let r = unique("endpoints");
        for _ in 0..10 {
            let lock = locker.try_lock(&r, &long()).await.unwrap().unwrap();
            lock.refresh().await.unwrap();
            assert!(locker.info(&r).await.unwrap().is_some());
            lock.release().await.unwrap();
        }
        // Through the registry's URL parser too.
        if form.contains("?endpoints=") {
            let parsed = distlock_core::parse_url(&form).unwrap();
            let dyn_locker =
                distlock_core::Connector::connect(&distlock_etcd::EtcdConnector, &parsed)
                    .await
                    .unwrap();
            let lock = dyn_locker.try_lock(&r, &long()).await.unwrap().unwrap();
            lock.release().await.unwrap();
        }
    }
}

/// Many held locks on the session cost one keep-alive per refresh round, plus
/// one existence-read txn per 128 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_locks_are_kept_alive_by_one_request_per_interval() {
    let Some(url) = service_url() else { return };
    let config = EtcdConfig::from_url(&url)
        .unwrap()
        .with_session_ttl(Duration::from_secs(3));
    let store = EtcdStore::connect_with(config).await.unwrap();
    let locker = store.locker();
    let options = LockOptions::new().with_ttl(Duration::from_secs(3));
    let base = unique("many");
    let locks: Vec<_> = futures_util::stream::iter(0..2000)
        .map(|i| {
            let (locker, options, name) = (locker.clone(), options.clone(), format!("{base}/{i}"));
            async move { locker.try_lock(&name, &options).await.unwrap().unwrap() }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // Let the first round align the leases, then count three intervals (1 s each).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = store.stats();
    let calls = locker.refresh_stats().calls;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = locker.refresh_stats().calls - calls;
    let alive = store.stats().keep_alives - before.keep_alives;
    let checks = store.stats().key_checks - before.key_checks;
    assert!(locks.iter().all(|l| !l.is_lost()));
    assert!(
        (2..=5).contains(&calls),
        "refresh rounds in 3 intervals: {calls}"
    );
    assert_eq!(alive, calls, "one keep-alive per round for 2,000 locks");
    // Plus the existence reads: one txn per 128 keys of a round (2,000 / 128
    // rounds up to 16).
    assert!(
        (calls..=calls * 16).contains(&checks),
        "existence txns in {calls} rounds: {checks}"
    );
    let released: Vec<_> = futures_util::stream::iter(locks)
        .map(distlock_core::Lock::release)
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(released.iter().all(Result::is_ok));
}

/// Campaign, observe, proclaim and resign: candidates take office in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_campaign_observe_proclaim_resign() {
    let Some(url) = service_url() else { return };
    let office = unique("leader");
    let a = Election::new(EtcdStore::connect(&url).await.unwrap().locker(), &office);
    let b = Election::new(EtcdStore::connect(&url).await.unwrap().locker(), &office);
    let observer = Election::new(EtcdStore::connect(&url).await.unwrap().locker(), &office);
    let mut seen = Box::pin(observer.observe());
    let first = tokio::time::timeout(SOON, seen.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.is_none(), "vacant at first");
    let leader_a = a.campaign("a:1").await.unwrap();
    let now = tokio::time::timeout(SOON, seen.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(now.as_ref().map(|l| &l.value[..]), Some(&b"a:1"[..]));
    assert_eq!(now.as_ref().map(|l| l.term), Some(leader_a.term()));
    let candidate = {
        let b = b.clone();
        tokio::spawn(async move { b.campaign("b:1").await })
    };
    leader_a.proclaim("a:2").await.unwrap();
    let now = tokio::time::timeout(SOON, seen.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(now.map(|l| l.value), Some("a:2".into()));
    assert_eq!(
        b.leader().await.unwrap().map(|l| l.value),
        Some("a:2".into())
    );
    let term_a = leader_a.term();
    leader_a.resign().await.unwrap();
    let leader_b = tokio::time::timeout(SOON, candidate)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(leader_b.term() > term_a, "a new term for a new leader");
    // The observer may see the vacancy between the two; it ends on b.
    loop {
        let now = tokio::time::timeout(SOON, seen.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(leader) = now {
            assert_eq!(leader.value, "b:1");
            assert_eq!(leader.term, leader_b.term());
            break;
        }
    }
    leader_b.resign().await.unwrap();
}

/// The texts of an error and its sources, outermost first.
fn chain(error: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// A closed port is `Unavailable` at once, naming the endpoint, with the
/// refusal in the error chain once and no link repeating the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_at_once_naming_the_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = EtcdStore::connect(&format!("etcd://user:hunter2@127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let links = chain(&error);
    // The core's line says what failed; the next names the endpoint.
    assert!(links[1].contains(&format!("127.0.0.1:{port}")), "{links:?}");
    assert!(
        !format!("{links:?} {error:?}").contains("hunter2"),
        "{links:?}"
    );
    // Every link adds something: none repeats the next.
    for pair in links.windows(2) {
        assert!(!pair[0].contains(&pair[1]), "repeated: {links:?}");
    }
    let refused = links
        .iter()
        .filter(|l| l.to_lowercase().contains("connection refused"))
        .count();
    assert_eq!(refused, 1, "{links:?}");
}

/// An eviction counts the holders only, deletes the queued waiters' keys too
/// (their `lock()` ends with `Lost`), and the next grant's token is higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_ends_holders_and_the_queue() {
    use distlock_core::Store;
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let r = unique("evict");
    let operator = EtcdStore::connect(&url).await.unwrap();
    let holder = EtcdStore::connect(&url).await.unwrap().locker();
    let short = LockOptions::new().with_ttl(Duration::from_secs(3));
    let held = holder.try_lock(&r, &short).await.unwrap().unwrap();
    let waiter = EtcdStore::connect(&url).await.unwrap().locker();
    let r2 = r.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .lock(&r2, &long().with_wait_timeout(SOON * 2))
            .await
            .map(|lock| lock.token())
    });
    eventually("waiter queued", SOON, || {
        let admin = admin.clone();
        let r = r.clone();
        async move { queue(&admin, &r).await.len() == 2 }
    })
    .await;
    assert_eq!(operator.evict(&r).await.unwrap(), 1, "one holder");
    let waited = tokio::time::timeout(SOON, waiting).await.unwrap().unwrap();
    assert!(matches!(waited, Err(Error::Lost { .. })), "{waited:?}");
    tokio::time::timeout(SOON, held.lost()).await.unwrap();
    let next = holder.try_lock(&r, &long()).await.unwrap().unwrap();
    assert!(next.token() > held.token());
    next.release().await.unwrap();
    assert_eq!(operator.evict(&r).await.unwrap(), 0, "nothing left");
}
