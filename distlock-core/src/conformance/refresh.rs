//! Renewing leases: by hand, in the background, by key, in batches.

use std::time::{Duration, Instant};

use super::Fixture;
use super::support::{Ctx, assert_not_held, is_free, long, manual, take};
use crate::LockOptions;

/// `Handler::refresh` by key renews a lease for the given TTL.
pub async fn handler_refresh_by_key_extends_the_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.held_ttl();
    let r = ctx.name("refresh-by-key");
    let lock = take(&*ctx.locker, &r, &manual(ttl)).await;
    let key = lock.detach();
    let other = ctx.other().await;
    let started = Instant::now();
    while started.elapsed() < ttl * 2 {
        other
            .refresh(&r, key, ttl)
            .await
            .expect("refresh by key of a held lease");
        assert!(
            !is_free(&*other, &r, &manual(ttl)).await,
            "refreshed lease expired"
        );
        tokio::time::sleep(ttl / 4).await;
    }
    other.release(&r, key).await.expect("release by key");
}

/// Background refresh keeps the lock for many TTLs.
pub async fn auto_refresh_keeps_the_lock_across_many_ttls(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.held_ttl();
    let r = ctx.name("auto-refresh");
    let lock = take(&*ctx.locker, &r, &LockOptions::new().with_ttl(ttl)).await;
    let other = ctx.other().await;
    // The point of this case is time passing: four TTLs.
    let until = Instant::now() + ttl * 4;
    while Instant::now() < until {
        tokio::time::sleep(ttl / 2).await;
        assert!(!lock.is_lost(), "auto-refreshed lock was lost");
        assert!(
            other
                .try_lock(&r, &LockOptions::new().with_ttl(ttl))
                .await
                .expect("try_lock")
                .is_none(),
            "another client was granted an auto-refreshed lock"
        );
    }
    let info = other.info(&r).await.expect("info").expect("held");
    assert_eq!(info.token(), Some(lock.token()));
    lock.release().await.expect("release");
}

/// `refresh()` by hand extends a manual lease past its first TTL.
pub async fn manual_refresh_extends_the_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.held_ttl();
    let r = ctx.name("manual-refresh");
    let lock = take(&*ctx.locker, &r, &manual(ttl)).await;
    let other = ctx.other().await;
    let first_deadline = lock.deadline().expect("deadline");
    for _ in 0..4 {
        tokio::time::sleep(ttl / 3).await;
        lock.refresh().await.expect("refresh");
    }
    assert!(
        lock.deadline().expect("deadline") > first_deadline,
        "refresh moves the deadline"
    );
    assert!(!lock.is_lost());
    assert!(!is_free(&*other, &r, &manual(ttl)).await);
    lock.release().await.expect("release");
}

/// A lease key names one lease of one resource: refresh or release of another
/// resource with it is `NotHeld`, and the lease it names is untouched.
pub async fn refresh_with_another_resources_key_is_not_held(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = Duration::from_secs(30);
    let (a, b) = (ctx.name("key-of-a"), ctx.name("key-of-b"));
    let lock_a = take(&*ctx.locker, &a, &manual(ttl)).await;
    let lock_b = take(&*ctx.locker, &b, &manual(ttl)).await;
    let other = ctx.other().await;
    assert_not_held(
        other.refresh(&b, lock_a.key(), ttl).await,
        "refresh of `b` with the key of `a`",
    );
    assert_not_held(
        other.release(&b, lock_a.key()).await,
        "release of `b` with the key of `a`",
    );
    let unused = ctx.name("key-of-nothing");
    assert_not_held(
        other.refresh(&unused, lock_a.key(), ttl).await,
        "refresh of a free resource with the key of `a`",
    );
    assert!(!is_free(&*other, &a, &long()).await, "`a` is still held");
    assert!(!is_free(&*other, &b, &long()).await, "`b` is still held");
    lock_a.refresh().await.expect("`a` still renews");
    lock_b.release().await.expect("release");
    lock_a.release().await.expect("release");
}

/// A backend that claims `batch_refresh` renews many leases in a bounded
/// number of store calls: 200 auto-refreshed locks cost a few refresh calls
/// per interval, not one per lock.
pub async fn batch_refresh_renews_many_leases_in_few_calls(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    if !ctx.caps().batch_refresh {
        return;
    }
    assert!(
        ctx.locker.refresh_stats().is_some(),
        "a backend that claims batch_refresh reports no refresh_stats()"
    );
    let ttl = ctx.held_ttl().max(Duration::from_millis(1500));
    let options = LockOptions::new().with_ttl(ttl);
    let mut locks = Vec::new();
    for i in 0..200 {
        locks.push(take(&*ctx.locker, &ctx.name(&format!("batch/{i:03}")), &options).await);
    }
    let taken = ctx.locker.refresh_stats().expect("stats");
    let interval = ttl / 3;
    let rounds = 4;
    tokio::time::sleep(interval * rounds).await;
    let end = ctx.locker.refresh_stats().expect("stats");
    assert!(locks.iter().all(|lock| !lock.is_lost()), "a lock was lost");
    let renewed = end.renewed - taken.renewed;
    assert!(
        renewed >= 200,
        "the refresher renewed {renewed} leases over {rounds} intervals of 200 locks"
    );
    let calls = end.calls - taken.calls;
    // One call per interval once the leases share a batch; a few more while
    // they merge (and a loaded machine may split a round).
    assert!(
        calls <= u64::from(rounds) * 4,
        "{calls} refresh calls over {rounds} intervals for 200 locks (batching claimed)"
    );
    for lock in locks {
        lock.release().await.expect("release");
    }
}
