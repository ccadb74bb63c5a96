//! Taking and giving back: grants, "held" answers, independence.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Fixture;
use super::support::{Ctx, SOON, assert_not_held, long, take};
use crate::Locker;

/// A free resource is granted, with a handle that describes it.
pub async fn try_lock_grants_a_free_resource(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("free");
    let started = Instant::now();
    let lock = take(&*ctx.locker, &r, &long().with_data("payload")).await;
    assert_eq!(lock.resource(), r);
    assert!(lock.token() > 0, "tokens start above zero");
    assert_eq!(lock.data(), &Bytes::from("payload"));
    assert_eq!(lock.ttl(), Duration::from_secs(30));
    assert!(!lock.is_lost());
    let deadline = lock.deadline().expect("a fresh lock has a deadline");
    assert!(deadline > Instant::now(), "deadline is in the future");
    assert!(
        deadline <= started + Duration::from_secs(30),
        "the deadline cannot be later than the TTL after the request was sent"
    );
    lock.release().await.expect("release");
}

/// A held resource is an ordinary `None`, for other clients and for the holder's own.
pub async fn try_lock_on_a_held_resource_returns_none(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("held");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    assert!(
        other
            .try_lock(&r, &long())
            .await
            .expect("try_lock")
            .is_none()
    );
    assert!(
        ctx.locker
            .try_lock(&r, &long())
            .await
            .expect("try_lock")
            .is_none()
    );
    lock.release().await.expect("release");
}

/// Release makes the resource free for the next client.
pub async fn release_frees_the_resource(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("release");
    let lock = take(&*ctx.locker, &r, &long()).await;
    lock.release().await.expect("release");
    let other = ctx.other().await;
    let again = take(&*other, &r, &long()).await;
    again.release().await.expect("release");
}

/// Locks on different names are independent.
pub async fn independent_resources_do_not_interfere(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let a = take(&*ctx.locker, &ctx.name("a"), &long()).await;
    let b = take(&*ctx.locker, &ctx.name("b"), &long()).await;
    let ab = take(&*ctx.locker, &ctx.name("a/b"), &long()).await;
    a.release().await.expect("release a");
    b.release().await.expect("release b");
    ab.release().await.expect("release a/b");
}

/// Releasing twice: the second is `NotHeld`.
pub async fn double_release_is_not_held(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("double-release");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let key = lock.key();
    lock.release().await.expect("first release");
    assert_not_held(ctx.locker.release(&r, key).await, "second release");
}

/// Everything works through `Box<dyn Locker>` wrapping an `Arc<dyn Locker>`.
pub async fn works_through_box_dyn_locker(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let boxed: Box<dyn Locker> = Box::new(ctx.locker.clone());
    let r = ctx.name("boxed");
    let lock = boxed
        .lock(&r, &long().with_wait_timeout(SOON))
        .await
        .expect("lock through Box<dyn Locker>");
    assert!(
        boxed
            .try_lock(&r, &long())
            .await
            .expect("try_lock")
            .is_none()
    );
    assert!(boxed.info(&r).await.expect("info").is_some());
    assert_eq!(boxed.list(&r).await.expect("list"), vec![r.clone()]);
    lock.release().await.expect("release");
    assert!(boxed.read(&r).await.expect("read").is_none());
}
