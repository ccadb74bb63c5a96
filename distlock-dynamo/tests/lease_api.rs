//! The lease-pool API: acquire-or-renew by lessee, pools with N contenders
//! and M items, waiting, heartbeats that report loss, paginated listing, extra
//! attributes.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlock_core::{Handler, Infoer, LockOptions, Store, patterns};
use distlock_dynamo::aws_sdk_dynamodb;
use distlock_dynamo::aws_sdk_dynamodb::config::retry::RetryConfig;
use distlock_dynamo::aws_sdk_dynamodb::types::AttributeValue;
use distlock_dynamo::lease_api::{LeaseError, LeaseRequest, LeaseStore};
use distlock_dynamo::{DynamoConfig, DynamoStore};

const SKEW: Duration = Duration::from_millis(250);

async fn setup() -> Option<DynamoConfig> {
    let url = common::url()?;
    let config = common::config(&url, SKEW);
    common::store(config.clone()).await;
    Some(config)
}

async fn leases(config: &DynamoConfig) -> LeaseStore {
    LeaseStore::new(DynamoStore::connect_with(config.clone()).await.unwrap())
}

fn request(lessee: &str, duration: Duration) -> LeaseRequest {
    LeaseRequest::new(lessee, duration)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_acquires_renews_and_refuses_others() {
    let Some(config) = setup().await else { return };
    let a = leases(&config).await;
    let b = leases(&config).await;
    let ten = Duration::from_secs(10);
    let first = a.lease("job-1", &request("worker-a", ten)).await.unwrap();
    assert_eq!(first.lease_id, "job-1");
    assert_eq!(first.request.lessee_id(), "worker-a");
    assert!(first.until > std::time::SystemTime::now());
    match b.lease("job-1", &request("worker-b", ten)).await {
        Err(LeaseError::NotObtained { lease_id }) => assert_eq!(lease_id, "job-1"),
        other => panic!("expected NotObtained, got {other:?}"),
    }
    // The same lessee, even from another client (a restarted process), renews.
    let before = b.store().requests_sent();
    let renewed = b.lease("job-1", &request("worker-a", ten)).await.unwrap();
    assert_eq!(
        b.store().requests_sent() - before,
        1,
        "a renewal is one request"
    );
    assert_eq!(renewed.token, first.token, "a renewal keeps the token");
    assert!(renewed.until >= first.until);
    b.release(renewed).await.unwrap();
    let next = b.lease("job-1", &request("worker-b", ten)).await.unwrap();
    assert!(next.token > first.token);
    b.release(next).await.unwrap();
    match a.release(first).await {
        Err(LeaseError::Lost { .. }) => {}
        other => panic!("releasing a lease given up already: expected Lost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lease_input_is_rejected() {
    let Some(config) = setup().await else { return };
    let store = leases(&config).await;
    let ok = request("w", Duration::from_secs(10));
    for (id, req) in [
        ("", ok.clone()),
        ("id", request("", Duration::from_secs(10))),
        ("id", request("w", Duration::from_millis(1))),
        ("id", request("tab\there", Duration::from_secs(10))),
    ] {
        match store.lease(id, &req).await {
            Err(LeaseError::Store(distlock_core::Error::InvalidArgument { .. })) => {}
            other => panic!("{id:?} {req:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    let mut reserved = HashMap::new();
    reserved.insert("dl_holders".to_owned(), AttributeValue::S("x".into()));
    assert!(
        store
            .lease_with_attributes("id", &ok, &reserved)
            .await
            .is_err()
    );
    assert!(store.add_leases(&["id"], &reserved).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_attributes_are_kept_and_returned() {
    let Some(config) = setup().await else { return };
    let store = leases(&config).await;
    let mut shard = HashMap::new();
    shard.insert("shard".to_owned(), AttributeValue::S("eu-1".into()));
    assert_eq!(store.add_leases(&["s-1", "s-2"], &shard).await.unwrap(), 2);
    assert_eq!(
        store.add_leases(&["s-1"], &shard).await.unwrap(),
        0,
        "exists"
    );
    let ten = Duration::from_secs(10);
    let lease = store.lease("s-1", &request("w", ten)).await.unwrap();
    assert_eq!(
        lease.attributes, shard,
        "the pool item's attributes come back"
    );
    // The Locker API on the same item keeps them too.
    let locker = store.store().locker();
    let lock = locker
        .try_lock("s-2", &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();
    let again = store.lease("s-2", &request("w", ten)).await.unwrap();
    assert_eq!(
        again.attributes, shard,
        "a lock on the item did not drop them"
    );
    // Setting attributes with the lease.
    let mut more = HashMap::new();
    more.insert("progress".to_owned(), AttributeValue::N("42".into()));
    let updated = store
        .lease_with_attributes("s-1", &request("w", ten), &more)
        .await
        .unwrap();
    assert_eq!(updated.attributes.len(), 2);
    assert_eq!(
        updated.attributes.get("progress"),
        Some(&AttributeValue::N("42".into()))
    );
    store.release(updated).await.unwrap();
    store.release(again).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_lease_ids_pages_through_the_table() {
    let Some(config) = setup().await else { return };
    // Three items per page: 20 items take seven pages.
    let store = leases(&config.clone().with_scan_page_size(3))
        .await
        .with_prefix("pool/")
        .unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("pool/{i:02}")).collect();
    store.add_leases(&ids, &HashMap::new()).await.unwrap();
    store
        .store()
        .locker()
        .try_lock("elsewhere", &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap()
        .detach();
    let before = store.store().requests_sent();
    assert_eq!(store.list_lease_ids().await.unwrap(), ids);
    assert!(
        store.store().requests_sent() - before >= 7,
        "listing took several pages"
    );
    let all = LeaseStore::new(store.store().clone());
    assert_eq!(all.list_lease_ids().await.unwrap().len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obtain_lease_spreads_n_contenders_over_m_items() {
    const ITEMS: usize = 5;
    const CONTENDERS: usize = 8;
    let Some(config) = setup().await else { return };
    let pool_store = leases(&config).await.with_prefix("workers/").unwrap();
    let ids: Vec<String> = (0..ITEMS).map(|i| format!("workers/{i}")).collect();
    pool_store.add_leases(&ids, &HashMap::new()).await.unwrap();
    let held = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for c in 0..CONTENDERS {
        let store = leases(&config).await.with_prefix("workers/").unwrap();
        let held = held.clone();
        tasks.push(tokio::spawn(async move {
            let req = request(&format!("contender-{c}"), Duration::from_secs(10));
            match store.obtain_lease(&req).await {
                Ok(lease) => {
                    assert!(
                        held.lock().unwrap().insert(lease.lease_id.clone()),
                        "{} obtained twice",
                        lease.lease_id
                    );
                    Some((store, lease))
                }
                Err(LeaseError::NotObtained { .. }) => None,
                Err(other) => panic!("obtain_lease: {other}"),
            }
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(won) = task.await.unwrap() {
            winners.push(won);
        }
    }
    assert_eq!(
        winners.len(),
        ITEMS,
        "every item taken once, the rest refused"
    );
    // A waiter gets the first item given back.
    let waiter = leases(&config).await.with_prefix("workers/").unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .wait_until_lease_obtained(
                &request("late", Duration::from_secs(10)),
                Duration::from_millis(50),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the pool is full");
    let (store, lease) = winners.pop().unwrap();
    let freed = lease.lease_id.clone();
    store.release(lease).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter is served")
        .unwrap()
        .unwrap();
    assert_eq!(got.lease_id, freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_pool_patterns_work_over_the_dynamo_locker() {
    const ITEMS: usize = 4;
    const CONTENDERS: usize = 7;
    let Some(config) = setup().await else { return };
    let pool: Vec<String> = (0..ITEMS).map(|i| format!("slots/{i}")).collect();
    let options = LockOptions::new().with_ttl(Duration::from_secs(10));
    let mut tasks = Vec::new();
    for _ in 0..CONTENDERS {
        let locker = DynamoStore::connect_with(config.clone())
            .await
            .unwrap()
            .locker();
        let pool = pool.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            patterns::obtain_any(&locker, &pool, &options)
                .await
                .unwrap()
                .map(|lock| (locker, lock))
        }));
    }
    let mut locks = Vec::new();
    for task in tasks {
        if let Some(won) = task.await.unwrap() {
            locks.push(won);
        }
    }
    assert_eq!(locks.len(), ITEMS);
    let names: HashSet<_> = locks.iter().map(|(_, l)| l.resource().to_owned()).collect();
    assert_eq!(names.len(), ITEMS, "no slot granted twice");
    let waiter = DynamoStore::connect_with(config.clone())
        .await
        .unwrap()
        .locker();
    let started = Instant::now();
    let waiting = {
        let pool = pool.clone();
        let options = options.clone().with_wait_timeout(Duration::from_secs(10));
        tokio::spawn(async move {
            patterns::wait_until_obtained(&waiter, &pool, &options, Duration::from_millis(50))
                .await
                .map(|lock| (waiter, lock))
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, first) = locks.pop().unwrap();
    let freed = first.resource().to_owned();
    first.release().await.unwrap();
    let (waiter, lock) = waiting.await.unwrap().unwrap();
    assert_eq!(lock.resource(), freed);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(waiter.info(&freed).await.unwrap().is_some());
    lock.release().await.unwrap();
    for (_, lock) in locks {
        lock.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_renews_until_the_lease_is_taken_away() {
    let Some(config) = setup().await else { return };
    let store = leases(&config).await;
    // Generous against a loaded machine and a serialized emulator: a renewal
    // must land within a duration, every 400 ms.
    let duration = Duration::from_secs(3);
    let mut lease = store
        .lease("hb", &request("worker", duration))
        .await
        .unwrap();
    let first_until = lease.until;
    let admin = DynamoStore::connect_with(config.clone()).await.unwrap();
    let beat = {
        let store = store.clone();
        tokio::spawn(async move {
            let result = store
                .heartbeat(&mut lease, Duration::from_millis(400))
                .await;
            (result, lease)
        })
    };
    // Renewed past several durations: nobody else gets it.
    let other = leases(&config).await;
    let until = Instant::now() + duration * 2;
    while Instant::now() < until {
        assert!(matches!(
            other.lease("hb", &request("thief", duration)).await,
            Err(LeaseError::NotObtained { .. })
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!beat.is_finished(), "heartbeat still running");
    // An operator removes the lease: the next heartbeat reports it lost.
    admin.evict("hb").await.unwrap();
    let (result, lease) = tokio::time::timeout(Duration::from_secs(10), beat)
        .await
        .expect("heartbeat ends")
        .unwrap();
    match result {
        Err(LeaseError::Lost { lease_id }) => assert_eq!(lease_id, "hb"),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(lease.until > first_until, "renewals moved `until`");
    // A heartbeat never re-acquires: the lease is free for others now.
    let thief = other
        .lease("hb", &request("thief", duration))
        .await
        .unwrap();
    assert!(thief.token > lease.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_reports_loss_when_renewals_stop_reaching_the_store() {
    let Some(config) = setup().await else { return };
    // Through a dead endpoint, with one attempt: every renewal fails
    // transiently; the heartbeat gives up at the lease's deadline.
    let store = leases(&config).await;
    // Generous against a loaded machine and a serialized emulator: a renewal
    // must land within a duration, every 400 ms.
    let duration = Duration::from_secs(3);
    let mut lease = store
        .lease("cut", &request("worker", duration))
        .await
        .unwrap();
    // connect_with would check the table through the dead endpoint: build the
    // store over a client configured by hand (it sends nothing).
    let dead = store
        .store()
        .client()
        .config()
        .to_builder()
        .endpoint_url("http://127.0.0.1:1")
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    let cut = LeaseStore::new(
        DynamoStore::from_client(&aws_sdk_dynamodb::Client::from_conf(dead), config.clone())
            .unwrap(),
    );
    let deadline = lease.deadline();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        cut.heartbeat(&mut lease, Duration::from_millis(200)),
    )
    .await
    .expect("heartbeat ends");
    assert!(matches!(result, Err(LeaseError::Lost { .. })), "{result:?}");
    assert!(Instant::now() >= deadline, "not before the deadline");
}
