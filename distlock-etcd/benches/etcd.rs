//! etcd backend benchmark, in one run, interleaved so that machine noise hits
//! every side alike:
//!
//! - distlock `try_lock` + `release` (session lease, one txn + one delete);
//! - raw etcd-client: txn put-if-absent on a pre-granted lease + delete (the
//!   minimal same work);
//! - the peer way: etcd-client's lock RPC with a lease per cycle (grant + lock +
//!   unlock + revoke), and with one lease for all cycles;
//! - handoff (release → blocked waiter holds) for distlock and the lock RPC;
//! - throughput with 1 / 16 / 64 tasks on distinct keys and one hot key, and
//!   keep-alive requests per refresh interval while holding 10 / 1,000 /
//!   10,000 locks.
//!
//! `DISTLOCK_BENCH_DETAIL=1` instead splits the raw cycle's cost: distlock's
//! txn shape (range compare, longer key and value) and its connection options.
//!
//! `cargo bench -p distlock-etcd` (with `DISTLOCK_ETCD_URL` set) prints a table
//! and one line for scripts:
//! `bench etcd: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock_bench::{Latencies, Report, Tiers, cycle, handoff, handoff_with, interleave, op};
use distlock_core::{LockOptions, Locker};
use distlock_etcd::{EtcdConfig, EtcdStore};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockOptions as EtcdLock, PutOptions, Txn, TxnOp,
};

/// The raw client's cycle: txn put-if-absent on `lease` + delete.
async fn raw_cycle(client: &Client, lease: i64) {
    let mut kv = client.kv_client();
    let key = b"bench-raw/cycle".to_vec();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            b"owner".to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    assert!(kv.txn(txn).await.unwrap().succeeded());
    kv.delete(key, None).await.unwrap();
}

/// etcd-client's lock RPC, on `lease`, or (as peers use it) on a lease per cycle.
async fn peer_cycle(client: &Client, name: &str, lease: Option<i64>) {
    let mut client = client.clone();
    let own = match lease {
        Some(lease) => lease,
        None => client.lease_grant(30, None).await.unwrap().id(),
    };
    let locked = client
        .lock(name, Some(EtcdLock::new().with_lease(own)))
        .await
        .unwrap();
    client.unlock(locked.key().to_vec()).await.unwrap();
    if lease.is_none() {
        client.lease_revoke(own).await.unwrap();
    }
}

/// One put's latency: etcd's write latency on this machine.
async fn writes(client: &Client, samples: usize) -> Latencies {
    let mut kv = client.kv_client();
    let mut out = Latencies::new();
    for _ in 0..samples {
        let started = Instant::now();
        kv.put("bench-raw/write", "x", None).await.unwrap();
        out.record(started.elapsed());
    }
    out
}

/// Until a second key (the waiter's) is queued under `prefix`, then 2 ms (its
/// watch opens right after).
async fn queued(admin: &Client, prefix: &[u8]) {
    loop {
        let count = admin
            .kv_client()
            .get(
                prefix.to_vec(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap()
            .count();
        if count >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// The handoff with etcd-client's lock RPC (the server holds the waiter's call).
async fn peer_handoff(client: &Client, samples: usize) -> Latencies {
    let holder = client.clone();
    let lease = holder.clone().lease_grant(60, None).await.unwrap().id();
    let waiter_lease = holder.clone().lease_grant(60, None).await.unwrap().id();
    let name = "bench-peer/handoff";
    let holder = &holder;
    handoff_with(
        samples,
        || async move {
            let mut holder = holder.clone();
            let locked = holder
                .lock(name, Some(EtcdLock::new().with_lease(lease)))
                .await
                .ok()?;
            Some(async move {
                holder.unlock(locked.key().to_vec()).await.unwrap();
            })
        },
        || {
            let mut waiter = client.clone();
            async move {
                let locked = waiter
                    .lock(name, Some(EtcdLock::new().with_lease(waiter_lease)))
                    .await
                    .ok()?;
                let at = Instant::now();
                waiter.unlock(locked.key().to_vec()).await.unwrap();
                Some(at)
            }
        },
        || queued(client, name.as_bytes()),
    )
    .await
}

async fn new_locker(url: &str) -> Arc<dyn Locker> {
    Arc::new(EtcdStore::connect(url).await.unwrap().locker())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = distlock_bench::full_run();
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_ETCD_URL") else {
        return;
    };
    let (rounds, batch) = if full { (12, 150) } else { (2, 10) };
    if std::env::var_os("DISTLOCK_BENCH_DETAIL").is_some() {
        detail(&url, rounds, batch).await;
        return;
    }
    let config = EtcdConfig::from_url(&url).unwrap();
    let client = Client::connect(&config.endpoints, None).await.unwrap();
    let raw_lease = client.clone().lease_grant(60, None).await.unwrap().id();
    let peer_lease = client.clone().lease_grant(60, None).await.unwrap().id();
    let store = EtcdStore::connect(&url).await.unwrap();
    let locker = store.locker();
    let manual = LockOptions::new().manual_refresh();
    let auto = LockOptions::new();

    let timings = {
        let (locker, manual, auto, client) = (&locker, &manual, &auto, &client);
        let mut sides = [
            op(move || async move { assert!(cycle(locker, "bench/cycle", manual).await) }),
            op(move || async move { assert!(cycle(locker, "bench/cycle-auto", auto).await) }),
            op(move || raw_cycle(client, raw_lease)),
            op(move || peer_cycle(client, "bench-peer/cycle", None)),
            op(move || peer_cycle(client, "bench-peer/once", Some(peer_lease))),
        ];
        interleave(1, 5, &mut sides).await;
        interleave(rounds, batch, &mut sides).await
    };
    let [ours, ours_auto, raw, peer, peer_one_lease] = &timings[..] else {
        unreachable!()
    };

    let samples = if full { 200 } else { 5 };
    let write = writes(&client, samples * 2).await;
    let holder = EtcdStore::connect(&url).await.unwrap();
    let prefix = holder.resource_prefix("bench/handoff");
    let ours_handoff = handoff(
        &holder.locker(),
        new_locker(&url).await,
        "bench/handoff",
        samples,
        || queued(&client, &prefix),
    )
    .await;
    let peer_handoff = peer_handoff(&client, samples).await;

    let mut report = Report::new("etcd");
    let w = write.us(0.5);
    report
        .cycle(
            ours,
            raw,
            Some(("etcd-client lock RPC, grant + lock + unlock + revoke", peer)),
        )
        .timing("distlock, auto refresh", ours_auto, &[("raw", raw)])
        .timing(
            "etcd-client lock RPC, one lease for all cycles",
            peer_one_lease,
            &[("raw", raw)],
        )
        .ratio("distlock / lock RPC with one lease", ours, peer_one_lease)
        .row("etcd write (one put) p50 / p99", write.p50_p99())
        .handoff(
            &ours_handoff,
            &format!(
                "watch predecessor + re-check txn; {:.1} writes over one write",
                (ours_handoff.us(0.5) - w) / w
            ),
        )
        .row(
            "handoff p50 / p99, etcd lock RPC (server-side wait)",
            peer_handoff.p50_p99(),
        );

    let mut lockers = Vec::new();
    for _ in 0..4 {
        lockers.push(new_locker(&url).await);
    }
    // Locks whose TTL is the session's ride on its lease: one keep-alive each
    // interval, plus one existence txn per 128 locks.
    let ttl = if full {
        Duration::from_secs(3)
    } else {
        distlock_etcd::MIN_TTL
    };
    let tiers = Tiers::new(full)
        .with_ttl(ttl)
        .with_concurrency(64)
        .counting("refresh requests (keep-alives + existence txns)");
    let session = EtcdConfig::from_url(&url).unwrap().with_session_ttl(ttl);
    let holder = EtcdStore::connect_with(session).await.unwrap().locker();
    tiers
        .run(&mut report, &lockers, &holder, |l| {
            let stats = l.store().stats();
            stats.keep_alives + stats.key_checks
        })
        .await;

    println!(
        "etcd backend, {} (multi-thread runtime, 2 workers, {rounds} interleaved rounds of {batch} cycles per side)",
        if full { "full run" } else { "QUICK RUN" }
    );
    print!("{}", report.render());
}

/// Where the time goes (DISTLOCK_BENCH_DETAIL=1): raw cycles with distlock's
/// txn shape and with distlock's connection options.
async fn detail(url: &str, rounds: usize, batch: usize) {
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
        kv.delete(key, None).await.unwrap();
    };
    let (plain, tuned) = (&plain, &tuned);
    let mut sides = [
        op(move || raw_cycle(plain, lease)),
        op(move || raw_cycle(tuned, lease)),
        op(move || shaped(plain.clone())),
        op(move || shaped(tuned.clone())),
    ];
    let t = interleave(rounds, batch, &mut sides).await;
    println!(
        "detail: raw {:.0} µs, raw+our options {:.0} µs, our txn shape {:.0} µs, shape+options {:.0} µs",
        t[0].mean(),
        t[1].mean(),
        t[2].mean(),
        t[3].mean()
    );
}
