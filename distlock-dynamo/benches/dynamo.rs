//! DynamoDB backend benchmark, on the emulator `DISTLOCK_DYNAMO_URL` names
//! (`eval "$(scripts/services up dynamo)"`), in one run, interleaved:
//!
//! - acquire + release cycle: distlock vs the raw SDK doing the minimal same
//!   work (conditional `PutItem` + conditional `DeleteItem`) vs the
//!   `dynamodb-lease` crate (`try_acquire` + `release`);
//! - handoff: release → a waiting `lock()` holds (distlock polls with backoff;
//!   dynamodb-lease's `acquire` polls every `acquire_cooldown`, 1 s by default);
//! - heartbeat: requests one refresh of 1,000 held locks costs.
//!
//! `cargo bench -p distlock-dynamo` prints a table and one line for scripts:
//! `bench dynamodb: cycle_us_p50=… raw_ratio=… peer_ratio=… handoff_us_p50=… refresh_requests_10k=…`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use distlock_core::{Handler, LockOptions, Locker, RefreshRequest, Store};
use distlock_dynamo::{DynamoConfig, DynamoConnector, DynamoStore};

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn us(since: Instant) -> f64 {
    since.elapsed().as_nanos() as f64 / 1000.0
}

async fn ours(locker: &dyn Locker, options: &LockOptions, out: &mut Vec<f64>) {
    let started = Instant::now();
    let lock = locker
        .try_lock("bench/cycle", options)
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();
    out.push(us(started));
}

/// The minimal same work with the SDK: put if absent, delete if still ours.
async fn raw(client: &aws_sdk_dynamodb::Client, table: &str, out: &mut Vec<f64>) {
    let owner = format!("{:032x}", fastrand::u128(..));
    let started = Instant::now();
    client
        .put_item()
        .table_name(table)
        .item("id", AttributeValue::S("bench/raw".into()))
        .item("owner", AttributeValue::S(owner.clone()))
        .condition_expression("attribute_not_exists(id)")
        .send()
        .await
        .unwrap();
    client
        .delete_item()
        .table_name(table)
        .key("id", AttributeValue::S("bench/raw".into()))
        .condition_expression("#o = :o")
        .expression_attribute_names("#o", "owner")
        .expression_attribute_values(":o", AttributeValue::S(owner))
        .send()
        .await
        .unwrap();
    out.push(us(started));
}

async fn peer(client: &dynamodb_lease::Client, out: &mut Vec<f64>) {
    let started = Instant::now();
    let lease = client.try_acquire("bench/peer").await.unwrap().unwrap();
    lease.release().await.unwrap();
    out.push(us(started));
}

/// The table dynamodb-lease expects: hash key `key`, TTL on `lease_expiry`.
async fn peer_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("key")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("lease_expiry")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Release → the blocked waiter holds, in µs.
async fn handoff(holder: &dyn Locker, waiter: Arc<dyn Locker>, samples: usize) -> Vec<f64> {
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
        // Let the waiter reach its backoff (not a fresh first attempt).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let released = Instant::now();
        lock.release().await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_nanos() as f64 / 1000.0);
    }
    out
}

/// `waiter` is a separate client: within one client, dynamodb-lease hands a
/// lease over through a local mutex without asking the store.
async fn peer_handoff(
    client: &dynamodb_lease::Client,
    waiter: &dynamodb_lease::Client,
    samples: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let lease = client.try_acquire("bench/handoff").await.unwrap().unwrap();
        let waiting = {
            let client = waiter.clone();
            tokio::spawn(async move {
                let lease = client.acquire("bench/handoff").await.unwrap();
                let at = Instant::now();
                lease.release().await.unwrap();
                at
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let released = Instant::now();
        lease.release().await.unwrap();
        let acquired = waiting.await.unwrap();
        out.push(acquired.saturating_duration_since(released).as_nanos() as f64 / 1000.0);
    }
    out
}

/// Requests one `Store::refresh` of `count` held leases sends.
async fn refresh_requests(config: &DynamoConfig, count: usize) -> (u64, Duration) {
    let mut config = config.clone();
    config.table = format!("{}-refresh", config.table);
    // moto copies the whole table for every transaction: give it time.
    let config = config.with_attempt_timeout(Duration::from_secs(300));
    let store = DynamoStore::connect(config).await.unwrap();
    store.create_table().await.unwrap();
    let locker = store.locker();
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(3600))
        .manual_refresh();
    let mut locks = Vec::with_capacity(count);
    for i in 0..count {
        locks.push(
            locker
                .try_lock(&format!("held/{i:05}"), &options)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let requests: Vec<RefreshRequest<'_>> = locks
        .iter()
        .map(|l| RefreshRequest::new(l.resource(), l.key(), Duration::from_secs(3600)))
        .collect();
    let before = store.requests_sent();
    let started = Instant::now();
    let outcomes = store.refresh(&requests).await.unwrap();
    let took = started.elapsed();
    assert!(
        outcomes
            .iter()
            .all(|o| *o == distlock_core::Refreshed::Renewed)
    );
    let sent = store.requests_sent() - before;
    for lock in locks {
        lock.detach();
    }
    (sent, took)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let Ok(url) = std::env::var("DISTLOCK_DYNAMO_URL") else {
        println!(
            "bench dynamodb: SKIPPED: DISTLOCK_DYNAMO_URL is not set; run \
             `eval \"$(scripts/services up dynamo)\"` first"
        );
        return;
    };
    let (rounds, per_round) = if quick { (2, 3) } else { (12, 25) };
    let (mut config, _) =
        DynamoConnector::config_from_url(&url::Url::parse(&url).unwrap()).unwrap();
    config.table = format!("distlock-bench-{:08x}", fastrand::u32(..));
    let store = DynamoStore::connect(config.clone()).await.unwrap();
    store.create_table().await.unwrap();
    let locker = store.locker();
    let client = store.client().clone();
    let peer_table_name = format!("{}-peer", config.table);
    peer_table(&client, &peer_table_name).await;
    let peer_client = dynamodb_lease::Client::builder()
        .table_name(&peer_table_name)
        .lease_ttl_seconds(30)
        .build_and_check_db(client.clone())
        .await
        .unwrap();
    let manual = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh();

    // Warm up connections and the emulator's code paths.
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        ours(&locker, &manual, &mut a).await;
        raw(&client, &config.table, &mut b).await;
        peer(&peer_client, &mut c).await;
    }
    let (mut ours_us, mut raw_us, mut peer_us) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut order = [0, 1, 2];
        fastrand::shuffle(&mut order);
        for which in order {
            for _ in 0..per_round {
                match which {
                    0 => ours(&locker, &manual, &mut ours_us).await,
                    1 => raw(&client, &config.table, &mut raw_us).await,
                    _ => peer(&peer_client, &mut peer_us).await,
                }
            }
        }
        let _ = round;
    }
    let cycle = percentile(&mut ours_us, 0.5);
    let raw_cycle = percentile(&mut raw_us, 0.5);
    let peer_cycle = percentile(&mut peer_us, 0.5);
    let requests_per_cycle = {
        let before = store.requests_sent();
        let mut sink = Vec::new();
        ours(&locker, &manual, &mut sink).await;
        store.requests_sent() - before
    };

    let samples = if quick { 2 } else { 15 };
    let waiter: Arc<dyn Locker> =
        Arc::new(DynamoStore::connect(config.clone()).await.unwrap().locker());
    let mut ho = handoff(&locker, waiter, samples).await;
    let peer_waiter = dynamodb_lease::Client::builder()
        .table_name(&peer_table_name)
        .lease_ttl_seconds(30)
        .build_and_check_db(client.clone())
        .await
        .unwrap();
    let mut peer_ho = peer_handoff(&peer_client, &peer_waiter, if quick { 1 } else { 8 }).await;
    let (h50, h99) = (percentile(&mut ho, 0.5), percentile(&mut ho, 0.99));
    let p50 = percentile(&mut peer_ho, 0.5);

    let held = if quick { 200 } else { 1000 };
    let (refresh_sent, refresh_took) = refresh_requests(&config, held).await;

    println!(
        "dynamodb backend on {} ({}, {rounds} interleaved rounds of {per_round} cycles each)",
        config.endpoint.as_deref().unwrap_or("AWS"),
        if quick { "QUICK RUN" } else { "full run" }
    );
    println!("| measure | distlock | raw SDK put + delete | dynamodb-lease 0.22 |");
    println!("|---|---|---|---|");
    println!(
        "| try_lock + release (p50) | {:.0} µs ({requests_per_cycle} requests) | {:.0} µs (2 requests) | {:.0} µs (2 requests) |",
        cycle, raw_cycle, peer_cycle
    );
    println!(
        "| ratio | 1.00× | distlock / raw = {:.2}× | distlock / peer = {:.2}× |",
        cycle / raw_cycle,
        cycle / peer_cycle
    );
    println!(
        "| handoff p50 (p99) | {:.1} ms ({:.1} ms) | | {:.1} ms (acquire_cooldown 1 s) |",
        h50 / 1000.0,
        h99 / 1000.0,
        p50 / 1000.0
    );
    println!(
        "| refresh of {held} held locks | {refresh_sent} requests ({:.1} s on this emulator) | | one request per lease per extend period |",
        refresh_took.as_secs_f64()
    );
    let per_1k = refresh_sent as f64 * 1000.0 / held as f64;
    println!(
        "bench dynamodb: cycle_us_p50={cycle:.0} raw_ratio={:.2} peer_ratio={:.2} handoff_us_p50={h50:.0} refresh_requests_10k=na refresh_requests_1k={per_1k:.0}",
        cycle / raw_cycle,
        cycle / peer_cycle
    );
}
