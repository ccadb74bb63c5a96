//! Redis backend benchmark, against the same `redis-server`, in one run,
//! interleaved in shuffled order so that machine noise hits every side alike:
//!
//! - distlock `try_lock` + `release` (one script each), manual and auto refresh;
//! - **raw**: the client doing the minimal same work: `SET key token NX PX` +
//!   `EVALSHA` compare-and-delete, on one multiplexed connection;
//! - **script floor**: the same, but the `SET NX PX` inside a one-line script:
//!   the least any lock whose acquire is a script (fencing token, server time,
//!   data) can cost;
//! - the `rslock` crate (Redlock over one server): `lock` + `unlock`.
//!
//! Ratios are taken per round (same moment, same noise), then their median.
//! Then: the round trip (`PING`) hot and after 3 ms idle (the handoff's
//! situation), raw pub/sub delivery, the handoff (release → a blocked waiter of
//! another client holds) for distlock and rslock, and store calls per refresh
//! interval with 10,000 held locks.
//!
//! `cargo bench -p distlock-redis` with `DISTLOCK_REDIS_URL` set (from
//! `eval "$(scripts/services up redis)"`); without `--bench` (as
//! `cargo test --benches` runs it) a very short run. Prints one line for scripts:
//! `bench redis: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock_core::{Handler, LockOptions, Locker};
use distlock_redis::RedisStore;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;

const UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
else
  return 0
end
"#;

const FLOOR_LOCK: &str = r#"
return redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2])
"#;

/// The pause before a release in the handoff measurements (the waiter must be
/// waiting by then); the idle round trip is measured after the same pause.
const IDLE: Duration = Duration::from_millis(3);

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn median_ratio(ours: &[f64], theirs: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    percentile(&mut ratios, 0.5)
}

fn lock_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// µs per cycle over `batch` cycles.
async fn ours(locker: &dyn Locker, options: &LockOptions, batch: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..batch {
        let lock = locker
            .try_lock("bench/cycle", options)
            .await
            .unwrap()
            .expect("free");
        lock.release().await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

async fn raw(connection: &mut MultiplexedConnection, unlock: &redis::Script, batch: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..batch {
        let token = lock_token();
        let set: Option<String> = redis::cmd("SET")
            .arg("raw/bench/cycle")
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(connection)
            .await
            .unwrap();
        assert!(set.is_some(), "raw lock was held");
        let deleted: i64 = unlock
            .key("raw/bench/cycle")
            .arg(&token)
            .invoke_async(connection)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

async fn floor(
    connection: &mut MultiplexedConnection,
    lock: &redis::Script,
    unlock: &redis::Script,
    batch: u32,
) -> f64 {
    let started = Instant::now();
    for _ in 0..batch {
        let token = lock_token();
        let set: Option<String> = lock
            .key("floor/bench/cycle")
            .arg(&token)
            .arg(30_000)
            .invoke_async(connection)
            .await
            .unwrap();
        assert!(set.is_some(), "floor lock was held");
        let deleted: i64 = unlock
            .key("floor/bench/cycle")
            .arg(&token)
            .invoke_async(connection)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

async fn peer(manager: &rslock::LockManager, batch: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..batch {
        let lock = manager
            .lock("rslock/bench/cycle", Duration::from_secs(30))
            .await
            .expect("rslock lock");
        manager.unlock(&lock).await;
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

/// `PING` round trips in µs, back to back or each after `idle`.
async fn ping_us(
    connection: &mut MultiplexedConnection,
    samples: usize,
    idle: Option<Duration>,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        if let Some(idle) = idle {
            tokio::time::sleep(idle).await;
        }
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(connection).await.unwrap();
        out.push(started.elapsed().as_secs_f64() * 1e6);
    }
    out
}

/// `PUBLISH` sent → a plain redis-rs subscriber has the message, in µs.
async fn raw_pubsub_us(
    client: &redis::Client,
    connection: &mut MultiplexedConnection,
    samples: usize,
) -> Vec<f64> {
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("bench/raw-pubsub").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while messages.next().await.is_some() {
            if tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        tokio::time::sleep(IDLE).await;
        let sent = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench/raw-pubsub")
            .arg("")
            .query_async(connection)
            .await
            .unwrap();
        let received = rx.recv().await.unwrap();
        out.push(received.saturating_duration_since(sent).as_secs_f64() * 1e6);
    }
    reader.abort();
    out
}

/// Release → blocked waiter (another client) holds, in µs.
async fn handoff_us(url: &str, samples: usize) -> Vec<f64> {
    let holder = RedisStore::connect_url(url).await.unwrap().locker();
    let waiter = Arc::new(RedisStore::connect_url(url).await.unwrap().locker());
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let lock = holder
            .try_lock("bench/handoff", &options)
            .await
            .unwrap()
            .unwrap();
        let waiting = {
            let waiter = waiter.clone();
            let options = options.clone().wait_forever();
            tokio::spawn(async move {
                let lock = waiter.lock("bench/handoff", &options).await.unwrap();
                let at = Instant::now();
                lock.release().await.unwrap();
                at
            })
        };
        // Let the waiter reach its wait (subscribe, one attempt, sleep).
        tokio::time::sleep(IDLE).await;
        let released = Instant::now();
        lock.release().await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_secs_f64() * 1e6);
    }
    out
}

async fn peer_handoff_us(url: &str, samples: usize) -> Vec<f64> {
    let holder = rslock::LockManager::new(vec![url]);
    let waiter = rslock::LockManager::new(vec![url]);
    let ttl = Duration::from_secs(30);
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let lock = holder.lock("rslock/bench/handoff", ttl).await.unwrap();
        let waiting = {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                let lock = waiter
                    .acquire_no_guard("rslock/bench/handoff", ttl)
                    .await
                    .unwrap();
                let at = Instant::now();
                waiter.unlock(&lock).await;
                at
            })
        };
        tokio::time::sleep(IDLE).await;
        let released = Instant::now();
        holder.unlock(&lock).await;
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_secs_f64() * 1e6);
    }
    out
}

/// Store calls and leases renewed per refresh interval with `count` held locks.
async fn refresh_calls(url: &str, count: usize) -> (u64, u64) {
    let locker = RedisStore::connect_url(url).await.unwrap().locker();
    let ttl = Duration::from_secs(3);
    let options = LockOptions::new().with_ttl(ttl);
    let mut locks = Vec::with_capacity(count);
    for i in 0..count {
        locks.push(
            locker
                .try_lock(&format!("bench/refresh/{i}"), &options)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // Let the first rounds align the leases, then count three intervals (ttl/3 each).
    tokio::time::sleep(ttl).await;
    let start = locker.refresh_stats();
    tokio::time::sleep(ttl).await;
    let end = locker.refresh_stats();
    assert!(
        locks.iter().all(|l| !l.is_lost()),
        "a refreshed lock was lost"
    );
    for lock in locks {
        lock.release().await.unwrap();
    }
    (
        (end.calls - start.calls).div_ceil(3),
        (end.renewed - start.renewed).div_ceil(3),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let Some(url) = std::env::var("DISTLOCK_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        if std::env::var_os("CI").is_some() {
            panic!("DISTLOCK_REDIS_URL is not set: eval \"$(scripts/services up redis)\"");
        }
        eprintln!(
            "SKIPPED: the redis bench needs DISTLOCK_REDIS_URL (eval \"$(scripts/services up redis)\")"
        );
        return;
    };
    let (rounds, batch) = if quick { (2, 20) } else { (21, 400) };

    let store = RedisStore::connect_url(&url).await.unwrap();
    let locker = store.locker();
    let manual = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh();
    let auto = LockOptions::new().with_ttl(Duration::from_secs(30));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let unlock = redis::Script::new(UNLOCK);
    let floor_lock = redis::Script::new(FLOOR_LOCK);
    let manager = rslock::LockManager::new(vec![url.as_str()]);

    // Warm up every side (connections, script caches).
    ours(&locker, &manual, 20).await;
    raw(&mut connection, &unlock, 20).await;
    floor(&mut connection, &floor_lock, &unlock, 20).await;
    peer(&manager, 20).await;

    let mut sides: [Vec<f64>; 5] = Default::default();
    for _ in 0..rounds {
        let mut order = [0, 1, 2, 3, 4];
        fastrand::shuffle(&mut order);
        for side in order {
            let us = match side {
                0 => ours(&locker, &manual, batch).await,
                1 => ours(&locker, &auto, batch).await,
                2 => raw(&mut connection, &unlock, batch).await,
                3 => floor(&mut connection, &floor_lock, &unlock, batch).await,
                _ => peer(&manager, batch).await,
            };
            sides[side].push(us);
        }
    }
    let [mut a, mut a_auto, mut r, mut f, mut p] = sides;
    let raw_ratio = median_ratio(&a, &r);
    let auto_ratio = median_ratio(&a_auto, &r);
    let floor_ratio = median_ratio(&f, &r);
    let ours_floor = median_ratio(&a, &f);
    let peer_ratio = median_ratio(&a, &p);
    let peer_raw = median_ratio(&p, &r);
    let cycle = percentile(&mut a, 0.5);
    let cycle_auto = percentile(&mut a_auto, 0.5);
    let raw_cycle = percentile(&mut r, 0.5);
    let floor_cycle = percentile(&mut f, 0.5);
    let peer_cycle = percentile(&mut p, 0.5);

    let samples = if quick { 20 } else { 500 };
    let mut hot = ping_us(&mut connection, samples * 4, None).await;
    let mut idle = ping_us(&mut connection, samples, Some(IDLE)).await;
    let (rtt, idle_rtt) = (percentile(&mut hot, 0.5), percentile(&mut idle, 0.5));
    let mut pubsub = raw_pubsub_us(&client, &mut connection, samples).await;
    let pubsub50 = percentile(&mut pubsub, 0.5);
    let mut handoff = handoff_us(&url, samples).await;
    let (h50, h99) = (
        percentile(&mut handoff, 0.5),
        percentile(&mut handoff, 0.99),
    );
    let mut peer_handoff = peer_handoff_us(&url, if quick { 3 } else { 30 }).await;
    let (ph50, ph99) = (
        percentile(&mut peer_handoff, 0.5),
        percentile(&mut peer_handoff, 0.99),
    );
    let held = if quick { 1_000 } else { 10_000 };
    let (calls, renewed) = refresh_calls(&url, held).await;

    println!(
        "redis backend, {} (release build, current-thread runtime, {rounds} shuffled rounds of {batch} cycles, one redis-server)",
        if quick { "QUICK RUN" } else { "full run" }
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| cycle p50: distlock manual / auto refresh | {cycle:.1} / {cycle_auto:.1} µs |");
    println!(
        "| cycle p50: raw / script floor / rslock 0.10 | {raw_cycle:.1} / {floor_cycle:.1} / {peer_cycle:.1} µs |"
    );
    println!("| distlock / raw (manual, auto) | {raw_ratio:.3}×, {auto_ratio:.3}× |");
    println!(
        "| script floor / raw; distlock / script floor | {floor_ratio:.3}×; {ours_floor:.3}× |"
    );
    println!("| distlock / rslock; rslock / raw | {peer_ratio:.3}×; {peer_raw:.3}× |");
    println!("| PING p50 hot / after {IDLE:?} idle | {rtt:.1} / {idle_rtt:.1} µs |");
    println!("| raw pub/sub delivery p50 (PUBLISH sent → subscriber has it) | {pubsub50:.1} µs |");
    println!(
        "| handoff p50 / p99, distlock (release → waiter holds) | {h50:.1} / {h99:.1} µs = {:.2} idle RTT |",
        h50 / idle_rtt
    );
    println!("| handoff p50 / p99, rslock | {ph50:.0} / {ph99:.0} µs |");
    println!(
        "| refresh of {held} held locks | {calls} store calls per interval (each one round trip), {renewed} leases renewed |"
    );
    println!(
        "bench redis: cycle_us_p50={cycle:.1} raw_ratio={raw_ratio:.3} peer_ratio={peer_ratio:.3} handoff_us_p50={h50:.1} refresh_requests_10k={calls}"
    );
}
