//! Waiting: blocking `lock()`, timeouts, cancellation, wake-ups and order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Fixture;
use super::support::{
    Ctx, SOON, cut_after, cycle_time, long, take, take_eventually, until_free, within,
};
use crate::{Error, LockOptions};

/// `lock()` waits while held and gets the resource after release.
pub async fn lock_waits_for_release(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wait");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let waiter = {
        let r = r.clone();
        tokio::spawn(async move { other.lock(&r, &long().with_wait_timeout(SOON * 3)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "lock() returned while the resource was held"
    );
    holder.release().await.expect("release");
    let lock = within("waiter acquires after release", SOON * 3, waiter)
        .await
        .expect("task")
        .expect("lock");
    assert!(lock.token() > 0);
    lock.release().await.expect("release");
}

/// A release wakes a waiter promptly: well before the holder's TTL would have
/// ended (a missed push, or a waiter sleeping until expiry, fails this).
pub async fn release_wakes_a_waiter_promptly(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wake");
    let options = LockOptions::new().with_ttl(Duration::from_secs(60));
    let holder = take(&*ctx.locker, &r, &options).await;
    let other = ctx.other().await;
    let waiter = {
        let r = r.clone();
        let options = options.clone().with_wait_timeout(Duration::from_secs(50));
        tokio::spawn(async move {
            let lock = other.lock(&r, &options).await;
            (lock, Instant::now())
        })
    };
    // Give the waiter time to start waiting (if it has not, it is granted at
    // once, and the case still holds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    holder.release().await.expect("release");
    let (lock, acquired) = within("waiter wakes", Duration::from_secs(55), waiter)
        .await
        .expect("task");
    let lock = lock.expect("lock");
    let handoff = acquired - released;
    assert!(
        handoff < Duration::from_secs(3),
        "waiter took {handoff:?} after release: it was not woken"
    );
    lock.release().await.expect("release");
}

/// `lock()` with a wait timeout gives up with `WaitTimeout` after about that long.
pub async fn lock_wait_times_out(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("wait-timeout");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let result = within(
        "wait timeout",
        SOON + wait,
        other.lock(&r, &long().with_wait_timeout(wait)),
    )
    .await;
    match result {
        Err(Error::WaitTimeout { waited, .. }) => {
            assert!(waited >= wait, "gave up after {waited:?}, before {wait:?}");
            assert!(started.elapsed() >= wait);
        }
        other => panic!("expected WaitTimeout, got {other:?}"),
    }
    assert!(!holder.is_lost());
    holder.release().await.expect("release");
}

/// `lock()` with a zero wait timeout makes one attempt.
pub async fn lock_with_zero_wait_timeout_tries_once(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("no-wait");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let once = long().with_wait_timeout(Duration::ZERO);
    match within("one attempt", SOON, other.lock(&r, &once)).await {
        Err(Error::WaitTimeout { .. }) => {}
        other => panic!("expected WaitTimeout at once, got {other:?}"),
    }
    holder.release().await.expect("release");
    let lock = other
        .lock(&r, &once)
        .await
        .expect("free now: one attempt succeeds");
    lock.release().await.expect("release");
}

/// `lock()` with default options waits until the holder lets go.
pub async fn lock_waits_until_granted_by_default(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("default-wait");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let waiter = {
        let (other, r) = (other.clone(), r.clone());
        tokio::spawn(async move { other.lock(&r, &long()).await })
    };
    // The waiter must still be waiting while the resource is held.
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if waiter.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "lock() with default options gave up while the resource was held"
    );
    holder.release().await.expect("release");
    let lock = within("granted after the release", SOON, waiter)
        .await
        .expect("task")
        .expect("lock() with default options");
    assert!(!lock.is_lost());
    lock.release().await.expect("release");
}

/// Dropping a waiting `lock()` future leaves no lease behind.
pub async fn cancelled_wait_leaves_no_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("cancel");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let other = ctx.other().await;
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        other.lock(&r, &long().wait_forever()),
    )
    .await;
    assert!(cancelled.is_err(), "lock() should still be waiting");
    holder.release().await.expect("release");
    let third = ctx.other().await;
    // Well before the cancelled request's 30 s TTL could have freed a leak.
    let lock = take_eventually(&*third, &r, &long(), SOON).await;
    lock.release().await.expect("release");
}

/// Dropping an unreleased `Lock` releases it in the background.
pub async fn dropped_lock_is_released_in_the_background(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("drop");
    let lock = take(&*ctx.locker, &r, &long()).await;
    drop(lock);
    let other = ctx.other().await;
    let again = within(
        "re-grant after drop (well before the 30 s TTL)",
        SOON,
        other.lock(&r, &long().with_wait_timeout(SOON)),
    )
    .await
    .expect("lock");
    again.release().await.expect("release");
}

/// Several waiters are all served, one at a time, tokens in grant order.
pub async fn waiters_are_all_served_in_turn(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let r = ctx.name("queue");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for _ in 0..4 {
        let locker = ctx.other().await;
        let r = r.clone();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let lock = locker
                .lock(&r, &long().with_wait_timeout(SOON * 3))
                .await
                .expect("waiter lock");
            order.lock().expect("order").push(lock.token());
            tokio::time::sleep(Duration::from_millis(10)).await;
            lock.release().await.expect("waiter release");
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    holder.release().await.expect("release");
    for waiter in waiters {
        within("every waiter served", SOON * 4, waiter)
            .await
            .expect("task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(order.len(), 4);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "tokens are not in grant order: {order:?}"
    );
}

/// Acquires dropped at random instants inside their round trip (try_lock, and
/// lock() on free and on held resources) leave no lease: every resource is
/// free again within a bound far below the 30 s TTL the leases would have.
pub async fn cancelled_acquires_leave_no_lease(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let span = cycle_time(&*ctx.locker, &ctx.name("cut/probe")).await;
    let held = ctx.name("cut/held");
    let holder = take(&*ctx.other().await, &held, &long()).await;
    let waiting = long().with_wait_timeout(SOON);
    let (mut cut, mut finished) = (0, 0);
    let mut names = Vec::new();
    for i in 0..150 {
        let r = ctx.name(&format!("cut/{i:03}"));
        let spin = span.mul_f64(fastrand::f64() * 1.5);
        let outcome = match i % 3 {
            0 => cut_after(ctx.locker.try_lock(&r, &long()), spin)
                .await
                .map(|answer| answer.expect("try_lock on a fresh resource")),
            1 => cut_after(ctx.locker.lock(&r, &waiting), spin)
                .await
                .map(|answer| Some(answer.expect("lock on a fresh resource"))),
            _ => {
                let spin = span.mul_f64(fastrand::f64() * 3.0);
                match cut_after(ctx.locker.lock(&held, &waiting), spin).await {
                    Some(answer) => panic!("lock() on a held resource returned {answer:?}"),
                    None => None,
                }
            }
        };
        match outcome {
            Some(Some(lock)) => {
                finished += 1;
                lock.release().await.expect("release");
            }
            Some(None) => panic!("try_lock found a fresh resource held"),
            None => cut += 1,
        }
        if i % 3 != 2 {
            names.push(r);
        }
    }
    holder.release().await.expect("release");
    names.push(held);
    let started = Instant::now();
    let other = ctx.other().await;
    for r in &names {
        until_free(&*other, r, SOON).await;
    }
    eprintln!(
        "{}: {cut} acquires cut inside their round trip ({finished} answered first); \
         every resource free {:?} after the last cut",
        ctx.caps().backend,
        started.elapsed()
    );
}

/// The semaphore form, with a long-lived holder on the same locker (the case
/// where a leaked permit rides a lease that stays alive): waits cut at random
/// points leave every permit as it was.
pub async fn cancelled_semaphore_waits_leave_every_permit(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    let span = cycle_time(&*ctx.locker, &ctx.name("cut/probe")).await;
    let r = ctx.name("cut/semaphore");
    let two = long().with_permits(2);
    let first = take(&*ctx.locker, &r, &two).await;
    let other = ctx.other().await;
    let second = take(&*other, &r, &two).await;
    let waiting = two.clone().with_wait_timeout(SOON);
    for _ in 0..60 {
        let spin = span.mul_f64(fastrand::f64() * 3.0);
        if let Some(answer) = cut_after(ctx.locker.lock(&r, &waiting), spin).await {
            panic!("a third holder of a 2-permit semaphore: {answer:?}");
        }
    }
    second.release().await.expect("release");
    let third = ctx.other().await;
    let again = take_eventually(&*third, &r, &two, SOON).await;
    let info = third.info(&r).await.expect("info").expect("held");
    assert_eq!(
        info.holders.len(),
        2,
        "exactly the long-lived holder and the new one hold permits"
    );
    assert!(!first.is_lost(), "the long-lived holder kept its permit");
    again.release().await.expect("release");
    first.release().await.expect("release");
    until_free(&*third, &r, SOON).await;
}

/// A backend that claims `push_wakeup` hands a released resource to a
/// waiter faster than polling could: the waiter has waited long enough for
/// its poll step to reach hundreds of milliseconds, and is still granted
/// within a fraction of that (median of five handoffs).
pub async fn push_wakeup_hands_off_faster_than_polling(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    if !ctx.caps().push_wakeup {
        return;
    }
    let other = ctx.other().await;
    let mut handoffs = Vec::new();
    for round in 0..5 {
        let r = ctx.name(&format!("push/{round}"));
        let holder = take(&*ctx.locker, &r, &long()).await;
        let waiter = {
            let (other, r) = (other.clone(), r.clone());
            tokio::spawn(async move {
                let lock = other.lock(&r, &long().with_wait_timeout(SOON * 3)).await;
                (lock, Instant::now())
            })
        };
        // Long enough that a polling waiter sleeps 250 ms or more per poll.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let released = Instant::now();
        holder.release().await.expect("release");
        let (lock, granted) = within("waiter granted", SOON * 3, waiter)
            .await
            .expect("task");
        handoffs.push(granted.saturating_duration_since(released));
        lock.expect("lock").release().await.expect("release");
    }
    handoffs.sort();
    let median = handoffs[handoffs.len() / 2];
    assert!(
        median < Duration::from_millis(150),
        "handoffs {handoffs:?}: median {median:?} is no faster than polling (push_wakeup claimed)"
    );
}

/// A backend that claims `queued_wait` serves waiters in the order they
/// started waiting.
pub async fn queued_wait_serves_waiters_in_order(fixture: &dyn Fixture) {
    let ctx = Ctx::new(fixture).await;
    if !ctx.caps().queued_wait {
        return;
    }
    let r = ctx.name("fifo");
    let holder = take(&*ctx.locker, &r, &long()).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let locker = ctx.other().await;
        let (r, order) = (r.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let lock = locker
                .lock(&r, &long().with_wait_timeout(SOON * 6))
                .await
                .expect("lock");
            order.lock().expect("order").push(i);
            lock.release().await.expect("release");
        }));
        // Not a guess at an outcome: waiters start in a known order.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    holder.release().await.expect("release");
    for waiter in waiters {
        within("every waiter served", SOON * 6, waiter)
            .await
            .expect("task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order,
        vec![0, 1, 2, 3],
        "waiters were not served in arrival order"
    );
}
