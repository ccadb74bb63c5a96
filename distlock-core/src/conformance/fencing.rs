//! Fencing tokens and lease keys: tokens only grow, stale or wrong keys do nothing.

use std::time::Duration;

use super::Fixture;
use super::support::{Ctx, SOON, assert_not_held, is_free, long, take, within};
use crate::{Error, LeaseKey};

/// Every grant's token is greater than the one before, across clients.
pub async fn tokens_strictly_increase_across_grants(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let other = ctx.other().await;
    let r = ctx.name("tokens");
    let mut last = 0;
    for round in 0..20 {
        let locker = if round % 2 == 0 { &ctx.locker } else { &other };
        let lock = take(&**locker, &r, &long()).await;
        assert!(
            lock.token() > last,
            "grant {round}: token {} is not above the previous {last}",
            lock.token()
        );
        last = lock.token();
        lock.release().await.expect("release");
    }
}

/// A grant after an expiry still gets a greater token.
pub async fn tokens_increase_after_expiry(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("expiry-token");
    let first = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    ctx.fixture.expire(&r).await;
    let other = ctx.other().await;
    let second = take(&*other, &r, &long()).await;
    assert!(
        second.token() > first.token(),
        "token {} after expiry is not above {}",
        second.token(),
        first.token()
    );
    second.release().await.expect("release");
    drop(first);
}

/// A lease that expired and was granted again cannot release the new holder.
pub async fn stale_key_cannot_release(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("stale-release");
    let stale = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    let stale_key = stale.key();
    ctx.fixture.expire(&r).await;
    let other = ctx.other().await;
    let holder = take(&*other, &r, &long()).await;
    assert_not_held(
        ctx.locker.release(&r, stale_key).await,
        "release by a stale key",
    );
    assert_not_held(stale.release().await, "Lock::release of a stale lease");
    let info = ctx
        .locker
        .info(&r)
        .await
        .expect("info")
        .expect("still held");
    assert_eq!(
        info.token(),
        Some(holder.token()),
        "the new holder must be untouched"
    );
    holder.release().await.expect("the new holder releases");
}

/// A lease that expired and was granted again cannot be refreshed.
pub async fn stale_key_cannot_refresh(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("stale-refresh");
    let stale = take(&*ctx.locker, &r, &long().manual_refresh()).await;
    ctx.fixture.expire(&r).await;
    let other = ctx.other().await;
    let holder = take(&*other, &r, &long()).await;
    match stale.refresh().await {
        Err(Error::Lost { .. }) => {}
        other => panic!("refresh of a stale lease: expected Lost, got {other:?}"),
    }
    assert!(stale.is_lost(), "a refused refresh fires the lost signal");
    within("lost signal after refused refresh", SOON, stale.lost()).await;
    assert_not_held(
        ctx.locker
            .refresh(&r, stale.key(), Duration::from_secs(30))
            .await,
        "Handler::refresh by a stale key",
    );
    assert!(
        !is_free(&*ctx.locker, &r, &long()).await,
        "the new holder still holds"
    );
    holder.release().await.expect("release");
}

/// A key that never held the resource can neither release nor refresh it.
pub async fn wrong_key_cannot_release_or_refresh(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wrong-key");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    assert_not_held(
        other.release(&r, LeaseKey::random()).await,
        "release by a wrong key",
    );
    assert_not_held(
        other
            .refresh(&r, LeaseKey::random(), Duration::from_secs(30))
            .await,
        "refresh by a wrong key",
    );
    assert_not_held(
        other
            .release(&ctx.name("never-locked"), LeaseKey::random())
            .await,
        "release of a resource nobody holds",
    );
    assert!(!lock.is_lost());
    assert!(
        !is_free(&*other, &r, &long()).await,
        "the holder is untouched"
    );
    lock.release().await.expect("release");
}

/// A key handed to another client releases the lease there.
pub async fn detached_lease_is_released_by_key_from_another_client(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("detached");
    let lock = take(&*ctx.locker, &r, &long()).await;
    let token = lock.token();
    let key = lock.detach();
    let other = ctx.other().await;
    let info = other
        .info(&r)
        .await
        .expect("info")
        .expect("a detached lease stays held");
    assert_eq!(info.token(), Some(token));
    other
        .release(&r, key)
        .await
        .expect("release by key from another client");
    assert!(is_free(&*other, &r, &long()).await);
}
