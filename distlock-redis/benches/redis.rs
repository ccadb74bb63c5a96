//! Redis backend benchmark, against the same `redis-server`, in one run,
//! interleaved (the order rotating each round) so that machine noise hits
//! every side alike:
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
//! another client holds) for distlock and rslock, throughput with 1 / 16 / 64
//! tasks on distinct keys and one hot key, and store calls per refresh interval
//! while holding 10 / 1,000 / 10,000 locks.
//!
//! `cargo bench -p distlock-redis` with `DISTLOCK_REDIS_URL` set (from
//! `eval "$(scripts/services up redis)"`); without `--bench` (as
//! `cargo test --benches` runs it) a very short run. Prints one line for scripts:
//! `bench redis: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock_bench::{
    Latencies, Report, Tiers, cycle, handoff, handoff_with, interleave, op, pause,
};
use distlock_core::{LockOptions, Locker};
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

fn lock_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The raw client's cycle: `SET NX PX` (as a command, or inside the one-line
/// `lock` script for the script floor) + the compare-and-delete script.
async fn raw_cycle(
    mut connection: MultiplexedConnection,
    key: &str,
    lock: Option<&redis::Script>,
    unlock: &redis::Script,
) {
    let token = lock_token();
    let set: Option<String> = match lock {
        None => redis::cmd("SET")
            .arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut connection)
            .await
            .unwrap(),
        Some(script) => script
            .key(key)
            .arg(&token)
            .arg(30_000)
            .invoke_async(&mut connection)
            .await
            .unwrap(),
    };
    assert!(set.is_some(), "{key} was held");
    let deleted: i64 = unlock
        .key(key)
        .arg(&token)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

/// `PING` round trips, back to back or each after `idle`.
async fn ping(
    connection: &mut MultiplexedConnection,
    samples: usize,
    idle: Option<Duration>,
) -> Latencies {
    let mut out = Latencies::new();
    for _ in 0..samples {
        if let Some(idle) = idle {
            tokio::time::sleep(idle).await;
        }
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(connection).await.unwrap();
        out.record(started.elapsed());
    }
    out
}

/// `PUBLISH` sent → a plain redis-rs subscriber has the message.
async fn raw_pubsub(
    client: &redis::Client,
    connection: &mut MultiplexedConnection,
    samples: usize,
) -> Latencies {
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
    let mut out = Latencies::new();
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
        out.record(received.saturating_duration_since(sent));
    }
    reader.abort();
    out
}

/// rslock's handoff: release → a blocked `acquire_no_guard` of another manager holds.
async fn peer_handoff(url: &str, samples: usize) -> Latencies {
    let holder = rslock::LockManager::new(vec![url]);
    let waiter = rslock::LockManager::new(vec![url]);
    let ttl = Duration::from_secs(30);
    let holder = &holder;
    handoff_with(
        samples,
        || async move {
            let lock = holder.lock("rslock/bench/handoff", ttl).await.ok()?;
            Some(async move { holder.unlock(&lock).await })
        },
        || {
            let waiter = waiter.clone();
            async move {
                let lock = waiter
                    .acquire_no_guard("rslock/bench/handoff", ttl)
                    .await
                    .ok()?;
                let at = Instant::now();
                waiter.unlock(&lock).await;
                Some(at)
            }
        },
        pause(IDLE),
    )
    .await
}

async fn new_locker(url: &str) -> Arc<dyn Locker> {
    Arc::new(RedisStore::connect(url).await.unwrap().locker())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = distlock_bench::full_run();
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_REDIS_URL") else {
        return;
    };
    let (rounds, batch) = if full { (21, 400) } else { (2, 20) };

    let store = RedisStore::connect(&url).await.unwrap();
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

    let timings = {
        let (locker, manual, auto) = (&locker, &manual, &auto);
        let (conn, unlock, floor_lock, manager) = (&connection, &unlock, &floor_lock, &manager);
        let mut sides = [
            op(move || async move { assert!(cycle(locker, "bench/cycle", manual).await) }),
            op(move || async move { assert!(cycle(locker, "bench/cycle-auto", auto).await) }),
            op(move || raw_cycle(conn.clone(), "raw/bench/cycle", None, unlock)),
            op(move || raw_cycle(conn.clone(), "floor/bench/cycle", Some(floor_lock), unlock)),
            op(move || async move {
                let lock = manager
                    .lock("rslock/bench/cycle", Duration::from_secs(30))
                    .await
                    .expect("rslock lock");
                manager.unlock(&lock).await;
            }),
        ];
        // Warm up every side (connections, script caches).
        interleave(1, 20, &mut sides).await;
        interleave(rounds, batch, &mut sides).await
    };
    let [ours, ours_auto, raw, floor, peer] = &timings[..] else {
        unreachable!()
    };

    let samples = if full { 500 } else { 20 };
    let hot = ping(&mut connection, samples * 4, None).await;
    let idle = ping(&mut connection, samples, Some(IDLE)).await;
    let idle_rtt = idle.us(0.5);
    let pubsub = raw_pubsub(&client, &mut connection, samples).await;
    let waiter = new_locker(&url).await;
    let holder = new_locker(&url).await;
    let ours_handoff = handoff(&*holder, waiter, "bench/handoff", samples, pause(IDLE)).await;
    let peer_handoff = peer_handoff(&url, if full { 30 } else { 3 }).await;

    let mut report = Report::new("redis");
    report
        .cycle(ours, raw, Some(("rslock 0.10 lock + unlock", peer)))
        .timing(
            "script floor: SET NX PX inside a script + compare-and-delete",
            floor,
            &[("raw", raw)],
        )
        .ratio("distlock / script floor", ours, floor)
        .timing("distlock, auto refresh", ours_auto, &[("raw", raw)])
        .row(
            format!("PING p50 hot / after {IDLE:?} idle"),
            format!("{:.1} / {idle_rtt:.1} µs", hot.us(0.5)),
        )
        .row(
            "raw pub/sub delivery p50 / p99 (PUBLISH sent → subscriber has it)",
            pubsub.p50_p99(),
        )
        .handoff(
            &ours_handoff,
            &format!(
                "release → waiter of another client holds; {:.2} idle RTT",
                ours_handoff.us(0.5) / idle_rtt
            ),
        )
        .row("handoff p50 / p99, rslock", peer_handoff.p50_p99());

    let lockers = [
        new_locker(&url).await,
        new_locker(&url).await,
        new_locker(&url).await,
        new_locker(&url).await,
    ];
    let holder = RedisStore::connect(&url).await.unwrap().locker();
    Tiers::new(full)
        .counting("store calls (one round trip each)")
        .run(&mut report, &lockers, &holder, |l| l.refresh_stats().calls)
        .await;

    println!(
        "redis backend, {} (current-thread runtime, {rounds} interleaved rounds of {batch} cycles per side, one redis-server)",
        if full { "full run" } else { "QUICK RUN" }
    );
    print!("{}", report.render());
}
