//! Semaphores: N permits admit N holders.

use super::Fixture;
use super::support::{Ctx, SOON, long, take};
use crate::{Error, Lock};

/// A resource with N permits admits N holders, and no more.
pub async fn permits_admit_that_many_holders(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("permits");
    let options = long().with_permits(3);
    let mut locks = Vec::new();
    for _ in 0..3 {
        let locker = ctx.other().await;
        locks.push(take(&*locker, &r, &options).await);
    }
    let tokens: Vec<u64> = locks.iter().map(Lock::token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
    assert!(
        ctx.locker
            .try_lock(&r, &options)
            .await
            .expect("try_lock")
            .is_none()
    );
    let info = ctx.locker.info(&r).await.expect("info").expect("held");
    assert_eq!(info.permits, 3);
    assert_eq!(info.holders.len(), 3);
    for lock in locks {
        lock.release().await.expect("release");
    }
}

/// Asking for another size while held is `SizeMismatch`.
pub async fn permits_size_mismatch_is_an_error(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("size-mismatch");
    let lock = take(&*ctx.locker, &r, &long().with_permits(3)).await;
    let other = ctx.other().await;
    match other.try_lock(&r, &long().with_permits(2)).await {
        Err(Error::SizeMismatch {
            requested,
            existing,
            ..
        }) => {
            assert_eq!((requested, existing), (2, 3));
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    match other.lock(&r, &long().with_wait_timeout(SOON)).await {
        Err(Error::SizeMismatch { .. }) => {}
        other => panic!("lock(): expected SizeMismatch at once, got {other:?}"),
    }
    lock.release().await.expect("release");
}

/// Releasing one of N permits lets one more holder in.
pub async fn permits_release_frees_one_slot(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("permit-slot");
    let options = long().with_permits(2);
    let a = take(&*ctx.locker, &r, &options).await;
    let b = take(&*ctx.locker, &r, &options).await;
    let other = ctx.other().await;
    assert!(
        other
            .try_lock(&r, &options)
            .await
            .expect("try_lock")
            .is_none()
    );
    a.release().await.expect("release");
    let c = take(&*other, &r, &options).await;
    assert!(
        other
            .try_lock(&r, &options)
            .await
            .expect("try_lock")
            .is_none()
    );
    b.release().await.expect("release");
    c.release().await.expect("release");
}

/// Once nobody holds it, a resource may be taken with another size.
pub async fn permits_may_change_once_free(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("resize");
    let a = take(&*ctx.locker, &r, &long().with_permits(3)).await;
    a.release().await.expect("release");
    let b = take(&*ctx.locker, &r, &long()).await;
    let info = ctx.locker.info(&r).await.expect("info").expect("held");
    assert_eq!(info.permits, 1);
    b.release().await.expect("release");
}
