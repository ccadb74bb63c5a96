//! etcd backend benchmark, in one run, interleaved so that machine noise hits
//! every side alike:
//!
//! - distlock `try_lock` + `release` (session lease, one txn + one delete);
//! - raw etcd-client: txn put-if-absent on a pre-granted lease + delete (the
//!   minimal same work);
//! - the peer way: etcd-client's lock RPC with a lease per cycle (grant + lock +
//!   unlock + revoke), and with one lease for all cycles;
//! - handoff (release → blocked waiter holds) for distlock and the lock RPC;
//! - keep-alive requests per refresh interval for 10,000 held locks.
//!
//! `DISTLOCK_BENCH_DETAIL=1` instead splits the raw cycle's cost: distlock's
//! txn shape (range compare, longer key and value) and its connection options.
//!
//! `cargo bench -p distlock-etcd` (with `DISTLOCK_ETCD_URL` set) prints a table
//! and one line for scripts:
//! `bench etcd: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use distlock_core::{Handler, LockOptions, Locker};
use distlock_etcd::{EtcdConfig, EtcdStore};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockOptions as EtcdLock, PutOptions, Txn, TxnOp,
};
use futures_util::StreamExt;

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

async fn ours(locker: &dyn Locker, name: &str, options: &LockOptions, batch: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..batch {
        let lock = locker.try_lock(name, options).await.unwrap().unwrap();
        lock.release().await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

async fn raw(client: &Client, lease: i64, batch: u32) -> f64 {
    let mut kv = client.kv_client();
    let key = b"bench-raw/cycle".to_vec();
    let started = Instant::now();
    for _ in 0..batch {
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                b"owner".to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        assert!(kv.txn(txn).await.unwrap().succeeded());
        kv.delete(key.clone(), None).await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

/// etcd-client's lock RPC as peers use it: a lease per cycle.
async fn peer(client: &Client, batch: u32) -> f64 {
    let mut client = client.clone();
    let started = Instant::now();
    for _ in 0..batch {
        let lease = client.lease_grant(30, None).await.unwrap().id();
        let locked = client
            .lock("bench-peer/cycle", Some(EtcdLock::new().with_lease(lease)))
            .await
            .unwrap();
        client.unlock(locked.key().to_vec()).await.unwrap();
        client.lease_revoke(lease).await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

/// The lock RPC with one lease for all cycles (the cheapest use of it).
async fn peer_one_lease(client: &Client, lease: i64, batch: u32) -> f64 {
    let mut client = client.clone();
    let started = Instant::now();
    for _ in 0..batch {
        let locked = client
            .lock("bench-peer/once", Some(EtcdLock::new().with_lease(lease)))
            .await
            .unwrap();
        client.unlock(locked.key().to_vec()).await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
}

/// One put's latency: etcd's write latency on this machine.
async fn write_us(client: &Client, samples: usize) -> Vec<f64> {
    let mut kv = client.kv_client();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        kv.put("bench-raw/write", "x", None).await.unwrap();
        out.push(started.elapsed().as_secs_f64() * 1e6);
    }
    out
}

async fn queued(admin: &Client, prefix: &[u8]) -> i64 {
    admin
        .kv_client()
        .get(
            prefix.to_vec(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

/// Release → the blocked waiter (another client, queued in etcd) holds, in µs.
async fn handoff(url: &str, admin: &Client, samples: usize) -> Vec<f64> {
    let holder = EtcdStore::connect_url(url).await.unwrap();
    let waiter = EtcdStore::connect_url(url).await.unwrap().locker();
    let holder_locker = holder.locker();
    let name = "bench/handoff";
    let prefix = holder.resource_prefix(name);
    let options = LockOptions::new().manual_refresh();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let lock = holder_locker
            .try_lock(name, &options)
            .await
            .unwrap()
            .unwrap();
        let waiting = {
            let waiter = waiter.clone();
            let options = options.clone().wait_forever();
            tokio::spawn(async move {
                let lock = waiter.lock(name, &options).await.unwrap();
                let at = Instant::now();
                lock.release().await.unwrap();
                at
            })
        };
        // The waiter's key is in the queue (and its watch opens right after).
        while queued(admin, &prefix).await < 2 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        let released = Instant::now();
        lock.release().await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_secs_f64() * 1e6);
    }
    out
}

/// The same with etcd-client's lock RPC (the server holds the waiter's call).
async fn peer_handoff(client: &Client, samples: usize) -> Vec<f64> {
    let mut holder = client.clone();
    let lease = holder.lease_grant(60, None).await.unwrap().id();
    let waiter_lease = holder.lease_grant(60, None).await.unwrap().id();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let locked = holder
            .lock(
                "bench-peer/handoff",
                Some(EtcdLock::new().with_lease(lease)),
            )
            .await
            .unwrap();
        let waiting = {
            let mut waiter = client.clone();
            tokio::spawn(async move {
                let locked = waiter
                    .lock(
                        "bench-peer/handoff",
                        Some(EtcdLock::new().with_lease(waiter_lease)),
                    )
                    .await
                    .unwrap();
                let at = Instant::now();
                waiter.unlock(locked.key().to_vec()).await.unwrap();
                at
            })
        };
        while queued(client, b"bench-peer/handoff").await < 2 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        let released = Instant::now();
        holder.unlock(locked.key().to_vec()).await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_secs_f64() * 1e6);
    }
    out
}

/// Keep-alive requests and refresh rounds per interval with `count` held locks.
async fn refresh_requests(url: &str, count: usize) -> (u64, u64) {
    let ttl = Duration::from_secs(3);
    let config = EtcdConfig::from_url(url).unwrap().with_session_ttl(ttl);
    let store = EtcdStore::connect(config).await.unwrap();
    let locker = store.locker();
    let options = LockOptions::new().with_ttl(ttl);
    let locks: Vec<_> = futures_util::stream::iter(0..count)
        .map(|i| {
            let (locker, options) = (locker.clone(), options.clone());
            async move {
                locker
                    .try_lock(&format!("bench/held/{i:05}"), &options)
                    .await
                    .unwrap()
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // Let the first round align the leases, then count three intervals (1 s each).
    tokio::time::sleep(ttl / 2).await;
    let (calls, alive) = (locker.refresh_stats().calls, store.stats().keep_alives);
    tokio::time::sleep(ttl).await;
    let calls = locker.refresh_stats().calls - calls;
    let alive = store.stats().keep_alives - alive;
    assert!(
        locks.iter().all(|l| !l.is_lost()),
        "a refreshed lock was lost"
    );
    let _: Vec<_> = futures_util::stream::iter(locks)
        .map(distlock_core::Lock::release)
        .buffer_unordered(64)
        .collect()
        .await;
    (alive.div_ceil(3), calls.div_ceil(3))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_ETCD_URL") else {
        println!("bench etcd: skipped (DISTLOCK_ETCD_URL unset)");
        return;
    };
    let (rounds, batch) = if quick { (2, 10) } else { (12, 150) };
    if std::env::var_os("DISTLOCK_BENCH_DETAIL").is_some() {
        detail(&url, rounds, batch).await;
        return;
    }
    let config = EtcdConfig::from_url(&url).unwrap();
    let client = Client::connect(&config.endpoints, None).await.unwrap();
    let raw_lease = client.clone().lease_grant(60, None).await.unwrap().id();
    let peer_lease = client.clone().lease_grant(60, None).await.unwrap().id();
    let store = EtcdStore::connect_url(&url).await.unwrap();
    let locker = store.locker();
    let manual = LockOptions::new().manual_refresh();
    let auto = LockOptions::new();

    let (mut ours_m, mut ours_a, mut raws, mut peers, mut peers1) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Rotate the order each round.
        for step in 0..5 {
            match (step + round) % 5 {
                0 => ours_m.push(ours(&locker, "bench/cycle", &manual, batch).await),
                1 => ours_a.push(ours(&locker, "bench/cycle-auto", &auto, batch).await),
                2 => raws.push(raw(&client, raw_lease, batch).await),
                3 => peers.push(peer(&client, batch).await),
                _ => peers1.push(peer_one_lease(&client, peer_lease, batch).await),
            }
        }
    }
    let cycle = percentile(&mut ours_m, 0.5);
    let cycle_auto = percentile(&mut ours_a, 0.5);
    let raw_cycle = percentile(&mut raws, 0.5);
    let peer_cycle = percentile(&mut peers, 0.5);
    let peer1_cycle = percentile(&mut peers1, 0.5);

    let samples = if quick { 5 } else { 200 };
    let mut writes = write_us(&client, samples * 2).await;
    let mut ho = handoff(&url, &client, samples).await;
    let mut peer_ho = peer_handoff(&client, samples).await;
    let write = percentile(&mut writes, 0.5);
    let (h50, h99) = (percentile(&mut ho, 0.5), percentile(&mut ho, 0.99));
    let (p50, p99) = (
        percentile(&mut peer_ho, 0.5),
        percentile(&mut peer_ho, 0.99),
    );

    let held = if quick { 500 } else { 10_000 };
    let (keep_alives, rounds_per_interval) = refresh_requests(&url, held).await;

    println!(
        "etcd backend, {} ({rounds} interleaved rounds of {batch} cycles; p50 of round means)",
        if quick { "QUICK RUN" } else { "full run" }
    );
    println!("| measure | µs | vs raw txn + delete |");
    println!("|---|---|---|");
    println!("| raw etcd-client txn put-if-absent + delete | {raw_cycle:.0} | 1.00× |");
    println!(
        "| distlock try_lock + release, manual refresh | {cycle:.0} | {:.2}× |",
        cycle / raw_cycle
    );
    println!(
        "| distlock try_lock + release, auto refresh | {cycle_auto:.0} | {:.2}× |",
        cycle_auto / raw_cycle
    );
    println!(
        "| etcd-client lock RPC, grant + lock + unlock + revoke | {peer_cycle:.0} | {:.2}× (distlock / this = {:.2}×) |",
        peer_cycle / raw_cycle,
        cycle / peer_cycle
    );
    println!(
        "| etcd-client lock RPC, one lease for all cycles | {peer1_cycle:.0} | {:.2}× (distlock / this = {:.2}×) |",
        peer1_cycle / raw_cycle,
        cycle / peer1_cycle
    );
    println!("| etcd write (one put) p50 | {write:.0} | |");
    println!(
        "| handoff p50 / p99: distlock (watch predecessor + re-check txn) | {h50:.0} / {h99:.0} | {:.1} writes over one write |",
        (h50 - write) / write
    );
    println!("| handoff p50 / p99: etcd lock RPC (server-side wait) | {p50:.0} / {p99:.0} | |");
    println!(
        "| {held} held locks: keep-alive requests per interval | {keep_alives} ({rounds_per_interval} refresh rounds) | |"
    );
    println!(
        "bench etcd: cycle_us_p50={cycle:.0} raw_ratio={:.2} peer_ratio={:.2} handoff_us_p50={h50:.0} refresh_requests_10k={keep_alives}",
        cycle / raw_cycle,
        cycle / peer_cycle
    );
}

/// Where the time goes (DISTLOCK_BENCH_DETAIL=1): raw cycles with distlock's
/// txn shape and with distlock's connection options.
async fn detail(url: &str, rounds: usize, batch: u32) {
    use etcd_client::ConnectOptions;
    let config = EtcdConfig::from_url(url).unwrap();
    let plain = Client::connect(&config.endpoints, None).await.unwrap();
    let tuned = Client::connect(
        &config.endpoints,
        Some(
            ConnectOptions::new()
                .with_timeout(Duration::from_secs(5))
                .with_connect_timeout(Duration::from_secs(3))
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
                .with_keep_alive_while_idle(false)
                .with_require_leader(true),
        ),
    )
    .await
    .unwrap();
    let lease = plain.clone().lease_grant(60, None).await.unwrap().id();
    let shaped = |client: Client| async move {
        let mut kv = client.kv_client();
        let prefix = b"bench-shape/cycle\0".to_vec();
        let mut key = prefix.clone();
        key.extend_from_slice(b"0123456789abcdef0123456789abcdef");
        let started = Instant::now();
        for _ in 0..batch {
            let txn = Txn::new()
                .when([Compare::create_revision(prefix.clone(), CompareOp::Equal, 0).with_prefix()])
                .and_then([TxnOp::put(
                    key.clone(),
                    vec![1u8; 40],
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(
                    prefix.clone(),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(
                                etcd_client::SortTarget::Create,
                                etcd_client::SortOrder::Ascend,
                            )
                            .with_limit(1),
                    ),
                )]);
            assert!(kv.txn(txn).await.unwrap().succeeded());
            kv.delete(key.clone(), None).await.unwrap();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
    };
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(raw(&plain, lease, batch).await);
        b.push(raw(&tuned, lease, batch).await);
        c.push(shaped(plain.clone()).await);
        d.push(shaped(tuned.clone()).await);
    }
    println!(
        "detail: raw {:.0} µs, raw+our options {:.0} µs, our txn shape {:.0} µs, shape+options {:.0} µs",
        percentile(&mut a, 0.5),
        percentile(&mut b, 0.5),
        percentile(&mut c, 0.5),
        percentile(&mut d, 0.5)
    );
}
