//! Two clients whose wall clocks differ (a `SkewedClock` injected into one
//! store). With allowance `A`, the holder's lost signal fires `A` before its TTL
//! and a taker waits `A` past the stored expiry, so "lost fires before anyone
//! else is granted" holds for skews up to `2A`; past that it does not, as
//! documented.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::time::{Duration, Instant};

use distlock_core::{Handler, Lock, LockOptions};
use distlock_dynamo::{Clock, DynamoStore, SkewedClock, SystemClock};

/// The skew allowance `A`.
const A: Duration = Duration::from_millis(300);
const TTL: Duration = Duration::from_millis(1500);

struct Takeover {
    /// Whether the holder's lost signal had fired when the taker was granted.
    lost_first: bool,
    /// Time from the holder's grant to the taker's.
    after: Duration,
    first: Lock,
    second: Lock,
}

/// The holder (clock `holder`) takes the resource without refreshing; the
/// taker (clock `taker`) polls until it is granted.
async fn takeover(holder: impl Clock, taker: impl Clock) -> Option<Takeover> {
    let url = common::url()?;
    let config = common::config(&url, A);
    common::store(config.clone()).await;
    let holder = DynamoStore::connect_with(config.clone().with_clock(holder))
        .await
        .unwrap()
        .locker();
    let taker = DynamoStore::connect_with(config.with_clock(taker))
        .await
        .unwrap()
        .locker();
    let options = LockOptions::new().with_ttl(TTL).manual_refresh();
    let granted = Instant::now();
    let first = holder.try_lock("skewed", &options).await.unwrap().unwrap();
    let signal = first.lost_signal();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the taker was never granted");
        if let Some(second) = taker.try_lock("skewed", &options).await.unwrap() {
            let lost_first = signal.is_lost();
            assert!(second.token() > first.token(), "tokens still increase");
            return Some(Takeover {
                lost_first,
                after: granted.elapsed(),
                first,
                second,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn finish(t: Takeover) {
    t.second.release().await.unwrap();
    drop(t.first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taker_ahead_by_the_allowance_waits_for_the_lost_signal() {
    let Some(t) = takeover(SystemClock, SkewedClock::ahead(A)).await else {
        return;
    };
    assert!(
        t.lost_first,
        "granted {:?} after the holder, before its lost signal",
        t.after
    );
    finish(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_behind_by_one_and_a_half_allowances_is_still_safe() {
    // Same as a taker ahead: the holder's early lost signal covers the rest.
    let Some(t) = takeover(SkewedClock::behind(A * 3 / 2), SystemClock).await else {
        return;
    };
    assert!(
        t.lost_first,
        "granted {:?} after the holder, before its lost signal",
        t.after
    );
    finish(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skew_far_beyond_the_allowance_breaks_the_guarantee() {
    // A taker 4 A ahead sees the lease expired 3 A early: it is granted while
    // the holder still trusts its lease. This is the documented limit, shown.
    let Some(t) = takeover(SystemClock, SkewedClock::ahead(A * 4)).await else {
        return;
    };
    assert!(
        !t.lost_first,
        "expected an overlap past the allowance (granted after {:?})",
        t.after
    );
    assert!(t.after < TTL, "granted {:?} after the holder", t.after);
    finish(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taker_behind_waits_longer() {
    let Some(t) = takeover(SystemClock, SkewedClock::behind(A)).await else {
        return;
    };
    assert!(t.lost_first);
    // Its clock reaches expiry + A only at TTL + 2 A of real time.
    assert!(
        t.after >= TTL + A * 2 - Duration::from_millis(100),
        "granted after {:?}",
        t.after
    );
    finish(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_lease_holds_against_a_skewed_taker() {
    let Some(url) = common::url() else {
        return;
    };
    let config = common::config(&url, A);
    common::store(config.clone()).await;
    let holder = DynamoStore::connect_with(config.clone().with_clock(SkewedClock::behind(A)))
        .await
        .unwrap()
        .locker();
    let taker = DynamoStore::connect_with(config.with_clock(SkewedClock::ahead(A)))
        .await
        .unwrap()
        .locker();
    let lock = holder
        .try_lock("refreshed", &LockOptions::new().with_ttl(TTL))
        .await
        .unwrap()
        .unwrap();
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        let probe = taker
            .try_lock("refreshed", &LockOptions::new().with_ttl(TTL))
            .await
            .unwrap();
        assert!(probe.is_none(), "a skewed taker got a refreshed lease");
        assert!(!lock.is_lost());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.release().await.unwrap();
}
