//! Correctness findings of the outside tests, against the service
//! (`DISTLOCK_ETCD_URL`): a release by key from another client is noticed at
//! the next refresh; refresh checks the resource; every view agrees after an
//! expiry; a grant after a wait reports the grant time; refresh with another
//! TTL applies it; nested prefixes are distinct; cancelled semaphore waits
//! leave no permit behind.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use common::{admin, eventually, queue, service_url, unique};
use distlock_core::{Error, Handler, Infoer, LockOptions, Locker, Reader};
use distlock_etcd::{EtcdConfig, EtcdStore};

/// A bound that a loaded 2-core machine meets: `n` refresh intervals + 2 s.
fn within(interval: Duration, n: u32) -> Duration {
    interval * n + Duration::from_secs(2)
}

async fn lease_of(admin: &etcd_client::Client, resource: &str) -> (i64, i64) {
    let kvs = queue(admin, resource).await;
    let kv = kvs.first().expect("the key exists");
    (kv.lease(), kv.create_revision())
}

async fn granted_ttl(admin: &etcd_client::Client, lease: i64) -> i64 {
    admin
        .clone()
        .lease_time_to_live(lease, None)
        .await
        .expect("time to live")
        .granted_ttl()
}

/// Item 1: B deletes A's key by lease key; C is granted; A (auto refresh on
/// the session) must see `lost` by its next refresh, and a manual lock's
/// `refresh()` must fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_by_key_from_another_client_is_noticed_at_next_refresh() {
    let Some(url) = service_url() else { return };
    let interval = Duration::from_secs(2);
    let a = EtcdStore::connect(&url).await.unwrap();
    let b = EtcdStore::connect(&url).await.unwrap().locker();
    let c = EtcdStore::connect(&url).await.unwrap().locker();
    let r = unique("release-by-key");
    // Default TTL: the key hangs on A's session lease.
    let held = a
        .locker()
        .try_lock(&r, &LockOptions::new().with_refresh_interval(interval))
        .await
        .unwrap()
        .unwrap();
    // Others on the same session keep it alive: the session is not what ends.
    let other = a
        .locker()
        .try_lock(
            &unique("bystander"),
            &LockOptions::new().with_refresh_interval(interval),
        )
        .await
        .unwrap()
        .unwrap();
    b.release(&r, held.key()).await.unwrap();
    let granted = c.try_lock(&r, &LockOptions::new()).await.unwrap();
    assert!(granted.is_some(), "C is granted after the release by key");
    let bound = within(interval, 2);
    tokio::time::timeout(bound, held.lost())
        .await
        .unwrap_or_else(|_| panic!("A not lost within {bound:?}"));
    assert!(held.is_lost());
    assert!(!other.is_lost(), "the session's other lock is unaffected");
    assert!(held.refresh().await.is_err());
    // Manual refresh path: one lease, through Lock::refresh.
    let r2 = unique("release-by-key-manual");
    let manual = a
        .locker()
        .try_lock(&r2, &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap();
    manual.refresh().await.expect("held: refresh works");
    b.release(&r2, manual.key()).await.unwrap();
    let refreshed = manual.refresh().await;
    assert!(
        matches!(refreshed, Err(Error::Lost { .. } | Error::NotHeld { .. })),
        "manual refresh after a release by key: {refreshed:?}"
    );
    assert!(manual.is_lost());
    // The session still renews its own locks in one keep-alive per interval
    // plus one existence txn per 128 keys.
    let before = a.stats();
    tokio::time::sleep(interval * 2).await;
    let after = a.stats();
    assert!(after.keep_alives > before.keep_alives, "still refreshed");
    assert!(!other.is_lost());
    other.release().await.unwrap();
    granted.unwrap().release().await.unwrap();
}

/// Item 2: a key refreshed under another resource is not held there, on the
/// store that granted it and on another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_another_resources_key_is_not_held() {
    let Some(url) = service_url() else { return };
    let store = EtcdStore::connect(&url).await.unwrap();
    let locker = store.locker();
    let stranger = EtcdStore::connect(&url).await.unwrap().locker();
    let (r1, r2) = (unique("refresh-r1"), unique("refresh-r2"));
    let manual = LockOptions::new().manual_refresh();
    let l1 = locker.try_lock(&r1, &manual).await.unwrap().unwrap();
    let l2 = locker.try_lock(&r2, &manual).await.unwrap().unwrap();
    let ttl = Duration::from_secs(30);
    for handler in [&locker, &stranger] {
        let wrong = handler.refresh(&r2, l1.key(), ttl).await;
        assert!(
            matches!(wrong, Err(Error::NotHeld { .. })),
            "another resource's key: {wrong:?}"
        );
        handler.refresh(&r1, l1.key(), ttl).await.expect("own key");
        // A release named with the wrong resource leaves the lock alone.
        assert!(handler.release(&r2, l1.key()).await.is_err());
    }
    l1.refresh().await.expect("l1 is still held and tracked");
    assert!(!l1.is_lost());
    l1.release().await.unwrap();
    l2.release().await.unwrap();
}

/// Item 3: after a TTL runs out, `info`, `read`, `list`, `try_lock` and the old
/// holder's `release` agree at every instant: held while the key exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_agree_after_expiry() {
    let Some(url) = service_url() else { return };
    let holder = EtcdStore::connect(&url).await.unwrap().locker();
    let viewer = EtcdStore::connect(&url).await.unwrap().locker();
    let r = unique("views");
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(2))
        .manual_refresh()
        .with_data("d");
    let held = holder.try_lock(&r, &options).await.unwrap().unwrap();
    let old = held.token();
    let key = held.key();
    let _ = held.detach();
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "never freed");
        let before = viewer.info(&r).await.unwrap();
        let read = viewer.read(&r).await.unwrap();
        let listed = viewer.list(&r).await.unwrap().contains(&r);
        let after = viewer.info(&r).await.unwrap();
        let old_after = after
            .as_ref()
            .is_some_and(|i| i.holders.iter().any(|h| h.token == old));
        if old_after {
            // Held by the old holder throughout: every view says so.
            assert!(before.is_some(), "info said free, then held");
            assert!(read.is_some(), "info held but read free");
            assert!(listed, "info held but list free");
        }
        if before.is_none() {
            // Free from the first look on.
            assert!(read.is_none(), "info free but read held");
            assert!(!listed, "info free but list held");
            break;
        }
        if !old_after {
            continue; // changed in between: look again
        }
        let expiry = after.unwrap().holders[0].expires_at;
        assert!(
            expiry <= SystemTime::now() + Duration::from_secs(3),
            "expiry in range"
        );
    }
    // Free everywhere now: try_lock is granted and the old key releases nothing.
    let next = viewer
        .try_lock(&r, &LockOptions::new())
        .await
        .unwrap()
        .expect("free after expiry");
    assert!(matches!(
        holder.release(&r, key).await,
        Err(Error::NotHeld { .. })
    ));
    next.release().await.unwrap();
}

/// Item 3, the instant around the deletion: while a key whose lease ran out
/// still exists, `try_lock` and `info` agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_lock_and_info_agree_around_expiry() {
    let Some(url) = service_url() else { return };
    let holder = EtcdStore::connect(&url).await.unwrap().locker();
    let viewer = EtcdStore::connect(&url).await.unwrap().locker();
    let r = unique("views-try");
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(2))
        .manual_refresh();
    let held = holder.try_lock(&r, &options).await.unwrap().unwrap();
    let old = held.token();
    let _ = held.detach();
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "never freed");
        let info = viewer.info(&r).await.unwrap();
        match viewer.try_lock(&r, &LockOptions::new()).await.unwrap() {
            Some(lock) => {
                lock.release().await.unwrap();
                break;
            }
            None => {
                // Held: info must not have said free just before (the key can
                // only go away, never come back).
                assert!(info.is_some(), "info said free but try_lock found it held");
                assert_eq!(info.unwrap().holders[0].token, old);
            }
        }
    }
}

/// Item 4: a grant after a wait reports the grant time as `acquired_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_time_of_a_grant_after_a_wait_is_the_grant() {
    let Some(url) = service_url() else { return };
    for permits in [1, 2] {
        let options = LockOptions::new().with_permits(permits);
        let r = unique(&format!("lock-time-{permits}"));
        let holders = EtcdStore::connect(&url).await.unwrap().locker();
        let mut held = Vec::new();
        for _ in 0..permits {
            held.push(holders.try_lock(&r, &options).await.unwrap().unwrap());
        }
        let waiter = EtcdStore::connect(&url).await.unwrap().locker();
        let r2 = r.clone();
        let waiting = tokio::spawn(async move {
            waiter
                .lock(&r2, &options.with_wait_timeout(Duration::from_secs(30)))
                .await
        });
        let admin = admin(&url).await;
        let expected = usize::try_from(permits).unwrap() + 1;
        eventually("waiter queued", Duration::from_secs(20), || {
            let (admin, r) = (admin.clone(), r.clone());
            async move { queue(&admin, &r).await.len() == expected }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let released_at = SystemTime::now();
        held.remove(0).release().await.unwrap();
        let lock = tokio::time::timeout(Duration::from_secs(20), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let info = holders.info(&r).await.unwrap().unwrap();
        let mine = info
            .holders
            .iter()
            .find(|h| h.token == lock.token())
            .expect("the waiter holds");
        assert!(
            mine.acquired_at + Duration::from_millis(20) >= released_at,
            "permits {permits}: acquired_at {:?} is before the release at {released_at:?}",
            mine.acquired_at
        );
        lock.release().await.unwrap();
        for lock in held {
            lock.release().await.unwrap();
        }
    }
}

/// Item 5: refresh with another TTL applies it (longer and shorter, on a
/// per-lock lease and onto the session), keeps the token, and answers
/// `NotHeld` once the lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_another_ttl_applies_it() {
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let store = EtcdStore::connect(&url).await.unwrap();
    let locker = store.locker();
    let stranger = EtcdStore::connect(&url).await.unwrap().locker();
    let r = unique("refresh-ttl");
    let lock = locker
        .try_lock(
            &r,
            &LockOptions::new()
                .with_ttl(Duration::from_secs(6))
                .manual_refresh(),
        )
        .await
        .unwrap()
        .unwrap();
    let (first, revision) = lease_of(&admin, &r).await;
    assert_eq!(granted_ttl(&admin, first).await, 6);
    for (handler, secs) in [(&locker, 12_i64), (&locker, 3), (&locker, 30)] {
        handler
            .refresh(&r, lock.key(), Duration::from_secs(secs.unsigned_abs()))
            .await
            .unwrap_or_else(|e| panic!("refresh to {secs} s: {e}"));
        let (lease, rev) = lease_of(&admin, &r).await;
        assert_eq!(rev, revision, "same key, same token");
        assert_eq!(granted_ttl(&admin, lease).await, secs, "new TTL applied");
        let left = admin
            .clone()
            .lease_time_to_live(lease, None)
            .await
            .unwrap()
            .ttl();
        assert!(left > secs - 3, "renewed: {left} s left of {secs}");
    }
    assert_eq!(
        lease_of(&admin, &r).await.0,
        store.session_id().unwrap(),
        "the session's TTL puts the key on the session"
    );
    // Another client moves it; the owner still refreshes it after that.
    stranger
        .refresh(&r, lock.key(), Duration::from_secs(9))
        .await
        .unwrap();
    assert_eq!(granted_ttl(&admin, lease_of(&admin, &r).await.0).await, 9);
    // Back to its own TTL, as the lock's own refresh asks.
    lock.refresh().await.unwrap();
    assert_eq!(granted_ttl(&admin, lease_of(&admin, &r).await.0).await, 6);
    lock.release().await.unwrap();

    // Gone (expired): NotHeld for any TTL, never InvalidArgument.
    let short = locker
        .try_lock(
            &r,
            &LockOptions::new()
                .with_ttl(Duration::from_secs(2))
                .manual_refresh(),
        )
        .await
        .unwrap()
        .unwrap();
    let key = short.key();
    let _ = short.detach();
    eventually("key expired", Duration::from_secs(20), || {
        let (admin, r) = (admin.clone(), r.clone());
        async move { queue(&admin, &r).await.is_empty() }
    })
    .await;
    for secs in [1_u64, 2, 10, 30] {
        let ttl = Duration::from_secs(secs.max(2));
        for handler in [&locker, &stranger] {
            let answer = handler.refresh(&r, key, ttl).await;
            assert!(
                matches!(answer, Err(Error::NotHeld { .. })),
                "expired, {ttl:?}: {answer:?}"
            );
        }
    }
}

/// Item 6: prefix `a/x` with resource `y` is not prefix `a` with resource `x/y`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_prefixes_are_different_locks() {
    let Some(url) = service_url() else { return };
    let base = unique("nest").replace('/', "-");
    let outer_config = EtcdConfig::from_url(&url)
        .unwrap()
        .with_prefix(base.clone());
    let inner_config = EtcdConfig::from_url(&url)
        .unwrap()
        .with_prefix(format!("{base}/x"));
    let outer = EtcdStore::connect_with(outer_config)
        .await
        .unwrap()
        .locker();
    let inner = EtcdStore::connect_with(inner_config)
        .await
        .unwrap()
        .locker();
    let a = inner
        .try_lock("y", &LockOptions::new())
        .await
        .unwrap()
        .expect("free");
    let b = outer
        .try_lock("x/y", &LockOptions::new())
        .await
        .unwrap()
        .expect("a different lock: free too");
    assert_ne!(a.token(), b.token());
    assert_eq!(outer.list("").await.unwrap(), vec!["x/y".to_owned()]);
    assert_eq!(inner.list("").await.unwrap(), vec!["y".to_owned()]);
    assert_eq!(outer.info("x/y").await.unwrap().unwrap().holders.len(), 1);
    a.release().await.unwrap();
    assert!(outer.info("x/y").await.unwrap().is_some(), "still held");
    b.release().await.unwrap();
}

/// Item 7: a waiter on the holder's own locker, cancelled at random points a
/// hundred times, leaves no key behind: once the other holder releases, a
/// permit is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_semaphore_waits_leave_no_orphan_permit() {
    let Some(url) = service_url() else { return };
    let admin = admin(&url).await;
    let r = unique("orphan-permit");
    let options = LockOptions::new().with_permits(2);
    let locker = EtcdStore::connect(&url).await.unwrap().locker();
    let other = EtcdStore::connect(&url).await.unwrap().locker();
    let third = EtcdStore::connect(&url).await.unwrap().locker();
    let mine = locker.try_lock(&r, &options).await.unwrap().unwrap();
    let theirs = other.try_lock(&r, &options).await.unwrap().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        | 1;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let waiting = options.clone().with_wait_timeout(Duration::from_secs(10));
    for _ in 0..100 {
        let spin = Duration::from_micros(u64::from(random() % 30_000));
        let stop = Instant::now() + spin;
        let mut future = pin!(locker.lock(&r, &waiting));
        loop {
            let done = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
            if let Poll::Ready(answer) = done {
                if let Ok(lock) = answer {
                    lock.release().await.unwrap();
                }
                break;
            }
            if Instant::now() > stop {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    theirs.release().await.unwrap();
    let granted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(lock) = third.try_lock(&r, &options).await.unwrap() {
                return lock;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("no permit free: orphan keys remain");
    });
    eventually("only the two holders left", Duration::from_secs(10), || {
        let (admin, r) = (admin.clone(), r.clone());
        async move { queue(&admin, &r).await.len() == 2 }
    })
    .await;
    assert!(!mine.is_lost());
    granted.release().await.unwrap();
    mine.release().await.unwrap();
}
