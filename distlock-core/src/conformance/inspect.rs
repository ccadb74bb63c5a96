//! Looking without taking: `info`, `read`, `list`.

use std::time::Duration;

use bytes::Bytes;

use super::Fixture;
use super::support::{Ctx, SOON, long, take, within};

/// `info` names the holder, its token and times.
pub async fn info_reports_the_holder(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("info");
    let before = std::time::SystemTime::now();
    let lock = take(&*ctx.locker, &r, &long().with_owner("alice@host-1")).await;
    let other = ctx.other().await;
    let info = other.info(&r).await.expect("info").expect("held");
    assert_eq!(info.resource, r);
    assert_eq!(info.owner(), Some("alice@host-1"));
    assert_eq!(info.token(), Some(lock.token()));
    assert_eq!(info.permits, 1);
    let locked = info.lock_time().expect("lock time");
    let expires = info.expire_time().expect("expire time");
    let slack = Duration::from_secs(5);
    assert!(
        locked + slack >= before,
        "lock time {locked:?} is before the request"
    );
    let lease = expires
        .duration_since(locked)
        .expect("expiry after lock time");
    assert!(
        lease <= Duration::from_secs(30) + slack && lease + slack >= Duration::from_secs(30),
        "expiry is {lease:?} after lock time, expected about the 30 s TTL"
    );
    lock.release().await.expect("release");
    assert!(
        other.info(&r).await.expect("info").is_none(),
        "free after release"
    );
}

/// `info` of a free resource is `None`.
pub async fn info_of_a_free_resource_is_none(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    assert!(
        ctx.locker
            .info(&ctx.name("nobody"))
            .await
            .expect("info")
            .is_none()
    );
}

/// `read` returns the data stored at acquire, `None` when free.
pub async fn read_returns_the_data(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("read");
    let data = Bytes::from_static(b"\x00binary\xffdata");
    let lock = take(&*ctx.locker, &r, &long().with_data(data.clone())).await;
    let other = ctx.other().await;
    assert_eq!(other.read(&r).await.expect("read"), Some(data));
    lock.release().await.expect("release");
    assert_eq!(other.read(&r).await.expect("read"), None);
    let empty = take(&*ctx.locker, &r, &long()).await;
    assert_eq!(other.read(&r).await.expect("read"), Some(Bytes::new()));
    empty.release().await.expect("release");
}

/// `list` returns held resources under a prefix, sorted.
pub async fn list_finds_held_resources_by_prefix(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let a = take(&*ctx.locker, &ctx.name("jobs/a"), &long()).await;
    let b = take(&*ctx.locker, &ctx.name("jobs/b"), &long()).await;
    let c = take(&*ctx.locker, &ctx.name("other/c"), &long()).await;
    let listed = ctx.locker.list(&ctx.name("jobs/")).await.expect("list");
    assert_eq!(listed, vec![ctx.name("jobs/a"), ctx.name("jobs/b")]);
    a.release().await.expect("release");
    let listed = ctx.locker.list(&ctx.name("jobs/")).await.expect("list");
    assert_eq!(listed, vec![ctx.name("jobs/b")]);
    let all = ctx.locker.list(&ctx.prefix).await.expect("list");
    assert_eq!(all, vec![ctx.name("jobs/b"), ctx.name("other/c")]);
    b.release().await.expect("release");
    c.release().await.expect("release");
    assert!(ctx.locker.list(&ctx.prefix).await.expect("list").is_empty());
}

/// The lock time of a grant made after a wait is the grant, not the moment
/// the waiter started waiting.
pub async fn lock_time_is_the_grant_after_a_wait(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("lock-time");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let waiter = {
        let other = other.clone();
        let r = r.clone();
        tokio::spawn(async move { other.lock(&r, &long().with_wait_timeout(SOON * 3)).await })
    };
    // Not a guess at an outcome: a gap between queueing and the grant that a
    // lock time taken at queueing would show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let released_at = std::time::SystemTime::now();
    holder.release().await.expect("release");
    let lock = within("waiter granted", SOON, waiter)
        .await
        .expect("task")
        .expect("lock");
    let info = other.info(&r).await.expect("info").expect("held");
    let lock_time = info.lock_time().expect("lock time");
    let slack = Duration::from_millis(500) + ctx.caps().clock_margin;
    assert!(
        lock_time + slack >= released_at,
        "lock time {lock_time:?} is before the previous holder released ({released_at:?})"
    );
    lock.release().await.expect("release");
}
