//! Expiry and the lost signal: it fires before anyone else can be granted.

use std::time::{Duration, Instant};

use super::Fixture;
use super::support::{
    Ctx, SOON, assert_not_held, is_free, long, manual, take, take_eventually, within,
};
use crate::{Error, LockOptions};

/// Without refresh, a lease ends after its TTL and the resource is granted again.
pub async fn expired_lease_is_granted_again(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("expire");
    let first = take(&*ctx.locker, &r, &manual(ttl)).await;
    let other = ctx.other().await;
    assert!(
        other
            .try_lock(&r, &manual(ttl))
            .await
            .expect("try_lock")
            .is_none()
    );
    within("lost signal at the TTL", SOON + ttl, first.lost()).await;
    let second = take_eventually(&*other, &r, &manual(ttl), SOON + ttl * 3).await;
    assert!(second.token() > first.token());
    second.release().await.expect("release");
}

/// The safety rule: when another client is granted the resource, the old
/// holder's lost signal has already fired.
pub async fn lost_fires_before_anyone_else_is_granted(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("lost-before-regrant");
    let first = take(&*ctx.locker, &r, &manual(ttl)).await;
    let signal = first.lost_signal();
    let other = ctx.other().await;
    let second = take_eventually(&*other, &r, &manual(ttl), SOON + ttl * 3).await;
    assert!(
        signal.is_lost(),
        "another client was granted the resource before the first holder's lost signal fired"
    );
    assert!(second.token() > first.token());
    second.release().await.expect("release");
}

/// A lease deleted behind the holder's back fires `lost` at the next refresh.
pub async fn lost_fires_when_the_lease_is_deleted(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("deleted");
    let lock = take(&*ctx.locker, &r, &LockOptions::new().with_ttl(ttl)).await;
    ctx.fixture.expire(&r).await;
    within("lost after the lease was deleted", SOON + ttl, lock.lost()).await;
    assert!(lock.is_lost());
    assert!(lock.deadline().is_none());
    assert_not_held(lock.release().await, "release of a deleted lease");
}

/// `lost()` is ready at once when already lost; clones see the same signal.
pub async fn lost_signal_is_ready_at_once_and_clonable(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("lost-signal");
    let lock = take(&*ctx.locker, &r, &manual(ttl)).await;
    let signal = lock.lost_signal();
    let clone = signal.clone();
    let waiter = tokio::spawn(clone.into_future());
    assert!(!signal.is_lost());
    within("lost at the deadline", SOON + ttl, signal.lost()).await;
    within("lost in a spawned task", SOON, waiter)
        .await
        .expect("task");
    let started = Instant::now();
    lock.lost().await;
    signal.lost().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ready at once once lost"
    );
    assert!(lock.is_lost() && signal.is_lost() && !signal.is_released());
    match lock.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh of a lost lock: expected Lost, got {other:?}"),
    }
}

/// An operator (or any client) releasing a holder's key ends the lease: the
/// holder's lost signal fires by its next refresh, and nobody sees it held.
pub async fn release_by_key_from_another_client_fires_lost(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("released-by-key");
    let lock = take(&*ctx.locker, &r, &LockOptions::new().with_ttl(ttl)).await;
    let other = ctx.other().await;
    other
        .release(&r, lock.key())
        .await
        .expect("release by key from another client");
    let next = take(&*other, &r, &long()).await;
    assert!(next.token() > lock.token());
    // Refreshed every ttl/3: a backend that renews what it no longer holds
    // keeps the old holder alive forever and fails here.
    within(
        "the old holder's lost signal after a release by key",
        SOON + ttl,
        lock.lost(),
    )
    .await;
    assert!(lock.is_lost());
    match lock.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh after a release by key: expected Lost, got {other:?}"),
    }
    next.release().await.expect("release");
}

/// A manual refresh of a lease another client released by key is `Lost`.
pub async fn manual_refresh_after_release_by_key_is_lost(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("manual-released-by-key");
    let lock = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    let other = ctx.other().await;
    other.release(&r, lock.key()).await.expect("release by key");
    match lock.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh of a lease released by key: expected Lost, got {other:?}"),
    }
    assert!(lock.is_lost());
    assert!(is_free(&*other, &r, &long()).await);
}

/// Right after a TTL runs out every view agrees: once one of `info`, `read` or
/// `list` says free, the others do too, the old key cannot release, and
/// `try_lock` is granted.
pub async fn views_agree_right_after_expiry(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let prefix = ctx.name("agree/");
    let r = format!("{prefix}r");
    let lock = take(&*ctx.locker, &r, &manual(ttl).with_data("d")).await;
    let key = lock.detach();
    let other = ctx.other().await;
    let mut first_free: Option<&str> = None;
    within("the lease expired in every view", SOON + ttl * 3, async {
        // Expiry is final (nobody renews): views asked later may not say held
        // once an earlier one said free. Ask in a new order each round.
        for round in 0usize.. {
            let mut views = ["info", "read", "list"];
            fastrand::shuffle(&mut views);
            for view in views {
                let free = match view {
                    "info" => other.info(&r).await.expect("info").is_none(),
                    "read" => other.read(&r).await.expect("read").is_none(),
                    _ => !other.list(&prefix).await.expect("list").contains(&r),
                };
                match (first_free, free) {
                    (Some(said), false) => {
                        panic!("`{view}` saw the lease held after `{said}` said it expired")
                    }
                    (None, true) => first_free = Some(view),
                    _ => {}
                }
            }
            if first_free.is_some() && round > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
    .await;
    assert_not_held(
        other.release(&r, key).await,
        "release with the key of an expired lease that every view called free",
    );
    let next = take(&*other, &r, &long()).await;
    next.release().await.expect("release");
}

/// An operator's force release ends every lease of a resource without the
/// keys: the next grant's token is higher (the evicted holder is fenced) and
/// the evicted holder's lost signal fires by its next refresh.
pub async fn force_release_ends_every_lease_and_fences(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let ttl = ctx.short_ttl();
    let r = ctx.name("force");
    let two = LockOptions::new().with_ttl(ttl).with_permits(2);
    let first = take(&*ctx.locker, &r, &two).await;
    let other = ctx.other().await;
    let second = take(&*other, &r, &two).await;
    match other.force_release(&r).await {
        Err(Error::Unsupported { .. }) => {
            eprintln!("{}: force release not supported", ctx.caps().backend);
            return;
        }
        Err(error) => panic!("force release: {error}"),
        Ok(ended) => assert_eq!(ended, 2, "force release of a resource with two holders"),
    }
    let next = take(&*other, &r, &long().with_permits(2)).await;
    assert!(next.token() > first.token().max(second.token()));
    within("evicted holders' lost signals", SOON + ttl, async {
        first.lost().await;
        second.lost().await;
    })
    .await;
    next.release().await.expect("release");
    assert_eq!(
        other
            .force_release(&r)
            .await
            .expect("force release of a free resource"),
        0
    );
}
