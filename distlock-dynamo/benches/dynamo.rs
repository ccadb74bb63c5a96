//! DynamoDB backend benchmark, on the emulator `DISTLOCK_DYNAMO_URL` names
//! (`eval "$(scripts/services up dynamo)"`), in one run, interleaved:
//!
//! - acquire + release cycle: distlock vs the raw SDK doing the minimal same
//!   work (conditional `PutItem` + conditional `DeleteItem`) vs the
//!   `dynamodb-lease` crate (`try_acquire` + `release`);
//! - handoff: release → a waiting `lock()` holds (distlock polls with backoff;
//!   dynamodb-lease's `acquire` polls every `acquire_cooldown`, 1 s by default);
//! - throughput with 1 / 16 / 64 tasks on distinct keys and one hot key;
//! - requests per refresh interval while holding 10 / 100 locks (auto
//!   refresh), and 1,000 (the heartbeat: one refresh round of all of them,
//!   timed: the emulator takes tens of seconds, longer than auto refresh can
//!   wait); 10,000 would take it many minutes a round: reported `na`.
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
use distlock_bench::{Report, Tiers, cycle, handoff, handoff_with, interleave, op, pause};
use distlock_core::{Handler, LockOptions, Locker, RefreshRequest, Store};
use distlock_dynamo::{DynamoConfig, DynamoStore};

/// The minimal same work with the SDK: put if absent, delete if still ours.
async fn raw(client: &aws_sdk_dynamodb::Client, table: &str) {
    let owner = format!("{:032x}", fastrand::u128(..));
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
}

async fn peer(client: &dynamodb_lease::Client) {
    let lease = client.try_acquire("bench/peer").await.unwrap().unwrap();
    lease.release().await.unwrap();
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

/// dynamodb-lease's handoff. `waiter` is a separate client: within one
/// client, dynamodb-lease hands a lease over through a local mutex without
/// asking the store.
async fn peer_handoff(
    client: &dynamodb_lease::Client,
    waiter: &dynamodb_lease::Client,
    samples: usize,
) -> distlock_bench::Latencies {
    handoff_with(
        samples,
        || async {
            let lease = client.try_acquire("bench/handoff").await.ok()??;
            Some(async move { lease.release().await.unwrap() })
        },
        || {
            let waiter = waiter.clone();
            async move {
                let lease = waiter.acquire("bench/handoff").await.ok()?;
                let at = Instant::now();
                lease.release().await.unwrap();
                Some(at)
            }
        },
        pause(SETTLE),
    )
    .await
}

/// Let a waiter reach its backoff (not a fresh first attempt).
const SETTLE: Duration = Duration::from_millis(300);

/// Requests one `Store::refresh` of `count` held leases sends (a heartbeat).
async fn heartbeat(config: &DynamoConfig, count: usize) -> (u64, Duration) {
    let mut config = config.clone();
    config.table = format!("{}-refresh", config.table);
    // moto copies the whole table for every transaction: give it time.
    let config = config.with_attempt_timeout(Duration::from_secs(300));
    let store = DynamoStore::connect_with(config.with_create_table(true))
        .await
        .unwrap();
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
    let full = distlock_bench::full_run();
    // moto takes ~9 ms a cycle: fewer samples than the other backends.
    let (rounds, batch) = if full { (12, 25) } else { (2, 3) };
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_DYNAMO_URL") else {
        return;
    };
    let mut config = DynamoConfig::from_url(&url).unwrap();
    config.table = format!("distlock-bench-{:08x}", fastrand::u32(..));
    let store = DynamoStore::connect_with(config.clone().with_create_table(true))
        .await
        .unwrap();
    let locker = store.locker();
    let client = store.client().clone();
    let peer_table_name = format!("{}-peer", config.table);
    peer_table(&client, &peer_table_name).await;
    let peer_client = |client: aws_sdk_dynamodb::Client| {
        dynamodb_lease::Client::builder()
            .table_name(&peer_table_name)
            .lease_ttl_seconds(30)
            .build_and_check_db(client)
    };
    let peer_client = peer_client(client.clone()).await.unwrap();
    let manual = LockOptions::new()
        .with_ttl(Duration::from_secs(30))
        .manual_refresh();

    let timings = {
        let (locker, manual, client, table) = (&locker, &manual, &client, &config.table);
        let peer_client = &peer_client;
        let mut sides = [
            op(move || async move { assert!(cycle(locker, "bench/cycle", manual).await) }),
            op(move || raw(client, table)),
            op(move || peer(peer_client)),
        ];
        // Warm up connections and the emulator's code paths.
        interleave(1, 3, &mut sides).await;
        interleave(rounds, batch, &mut sides).await
    };
    let [ours, raw, peer] = &timings[..] else {
        unreachable!()
    };
    let requests_per_cycle = {
        let before = store.requests_sent();
        assert!(cycle(&locker, "bench/cycle", &manual).await);
        store.requests_sent() - before
    };

    let samples = if full { 15 } else { 2 };
    let waiter: Arc<dyn Locker> = Arc::new(
        DynamoStore::connect_with(config.clone())
            .await
            .unwrap()
            .locker(),
    );
    let ours_handoff = handoff(&locker, waiter, "bench/handoff", samples, pause(SETTLE)).await;
    let peer_waiter = dynamodb_lease::Client::builder()
        .table_name(&peer_table_name)
        .lease_ttl_seconds(30)
        .build_and_check_db(client.clone())
        .await
        .unwrap();
    let peer_handoff = peer_handoff(&peer_client, &peer_waiter, if full { 8 } else { 1 }).await;

    let held = if full { 1000 } else { 50 };
    let (heartbeat_sent, heartbeat_took) = heartbeat(&config, held).await;

    let mut report = Report::new("dynamodb");
    report
        .cycle(
            ours,
            raw,
            Some(("dynamodb-lease 0.22 try_acquire + release", peer)),
        )
        .row(
            "requests per cycle: distlock / raw / dynamodb-lease",
            format!("{requests_per_cycle} / 2 / 2"),
        )
        .handoff(
            &ours_handoff,
            "release → waiter of another client holds; polling with backoff",
        )
        .row(
            "handoff p50 / p99, dynamodb-lease (acquire_cooldown 1 s)",
            peer_handoff.p50_p99(),
        );

    // The tiers' locks live in a table of their own; moto copies the table
    // for every transaction: give each request time.
    let mut tiers_config = config
        .clone()
        .with_attempt_timeout(Duration::from_secs(300));
    tiers_config.table = format!("{}-tiers", config.table);
    let tiers_store = DynamoStore::connect_with(tiers_config.clone().with_create_table(true))
        .await
        .unwrap();
    let mut lockers: Vec<Arc<dyn Locker>> = Vec::new();
    for _ in 0..4 {
        lockers.push(Arc::new(
            DynamoStore::connect_with(tiers_config.clone())
                .await
                .unwrap()
                .locker(),
        ));
    }
    let holder = tiers_store.locker();
    // DynamoDB's shortest TTL is 3 s (three times the clock skew allowed).
    let mut tiers = Tiers::new(full)
        .counting("requests")
        .with_ttl(Duration::from_secs(3));
    if full {
        // The emulator renews 100 leases (one transaction) in about a second
        // on a small table, and 1,000 in tens of seconds: auto refresh keeps
        // up to 100 here; 1,000 is one refresh round timed directly below.
        tiers = tiers
            .with_duration(Duration::from_millis(500))
            .with_held(&[10, 100])
            .with_ttl(Duration::from_secs(15));
    }
    tiers
        .run(&mut report, &lockers, &holder, |l| {
            l.store().requests_sent()
        })
        .await;
    report.row(
        format!("refresh: requests per interval holding {held} locks (heartbeat: one refresh round of all, timed)"),
        format!(
            "{heartbeat_sent} ({:.1} s on this emulator; dynamodb-lease: one request per lease per extend period)",
            heartbeat_took.as_secs_f64()
        ),
    );
    if full {
        report.row(
            "refresh: requests per interval holding 10000 locks",
            "na: 100 expected (100 leases per transaction), but one round would take this emulator many minutes",
        );
    }
    // moto keeps every table in memory: leave it as it was.
    for table in [
        &config.table,
        &peer_table_name,
        &tiers_config.table,
        &format!("{}-refresh", config.table),
    ] {
        let _ = client
            .delete_table()
            .table_name(table.as_str())
            .send()
            .await;
    }

    println!(
        "dynamodb backend on {} ({}, multi-thread runtime, 2 workers, {rounds} interleaved rounds of {batch} cycles per side)",
        config.endpoint.as_deref().unwrap_or("AWS"),
        if full { "full run" } else { "QUICK RUN" }
    );
    print!("{}", report.render());
}
