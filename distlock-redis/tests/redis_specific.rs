//! Redis-specific behaviour beyond the conformance suite: cluster key layout,
//! passwords, ACL users, unix sockets and TLS, script reload after
//! `SCRIPT FLUSH`, a server restart mid-lease, an unconfirmable release.
//!
//! Most tests start their own `redis-server` (installed by
//! `scripts/services up redis`, which also exports `DISTLOCK_REDIS_URL`: the
//! gate that makes CI fail rather than skip).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod support;

use std::time::{Duration, Instant};

use distlock_core::{Error, Handler, Infoer, LockOptions, Locker, Reader};
use distlock_redis::{RedisConfig, RedisStore, hash_slot};
use support::{RedisServer, TempDir, free_port, redis_available};

const SOON: Duration = Duration::from_secs(10);

fn namespace() -> String {
    format!("t{:08x}", fastrand::u32(..))
}

async fn within<T>(what: &str, bound: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not happen within {bound:?}"),
    }
}

/// Every key of a resource (mutex or semaphore) lives in the slot of its hash
/// tag, as a cluster-mode server computes it (`CLUSTER KEYSLOT`), and the
/// scripts run on a cluster-mode node: no `CROSSSLOT` error, even for a
/// refresh batch over many slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hash_tags_keep_a_resource_in_one_slot() {
    if !redis_available() {
        return;
    }
    let port = free_port();
    let dir = TempDir::new("cluster");
    let nodes = dir.path().join("nodes.conf").display().to_string();
    let server = RedisServer::start_on(
        port,
        &["--cluster-enabled", "yes", "--cluster-config-file", &nodes],
        true,
    )
    .await;
    let url = server.url();
    server.wait_ready(&url).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut admin)
        .await
        .unwrap();
    within("cluster state ok", SOON, async {
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut admin)
                .await
                .unwrap();
            if info.contains("cluster_state:ok") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let ns = namespace();
    let store = RedisStore::connect(&format!("{url}?namespace={ns}"))
        .await
        .unwrap();
    let locker = store.locker();
    let resources = ["plain", "jobs/42", "a}b", "{x}", "}{", "ünï/🔒"];
    let mut locks = Vec::new();
    for (i, resource) in resources.iter().enumerate() {
        let permits = if i % 2 == 0 { 1 } else { 3 };
        let options = LockOptions::new()
            .with_ttl(Duration::from_millis(600))
            .with_permits(permits)
            .with_data("d");
        locks.push(locker.try_lock(resource, &options).await.unwrap().unwrap());
    }
    // Every key the server holds for this namespace, grouped by resource.
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{{{ns}:*"))
            .query_async(&mut admin)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for (i, resource) in resources.iter().enumerate() {
        let main = format!("{{{ns}:{resource}}}");
        let mut expected = vec![main.clone(), format!("{main}:t")];
        if i % 2 == 1 {
            expected.push(format!("{main}:h"));
        }
        let main_slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&main)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(main_slot, hash_slot(main.as_bytes()), "{resource}: CRC16");
        for key in &expected {
            assert!(keys.contains(key), "{key} missing; keys: {keys:?}");
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut admin)
                .await
                .unwrap();
            assert_eq!(slot, main_slot, "{key} is not in {main}'s slot");
        }
    }
    assert_eq!(
        keys.len(),
        resources.len() * 2 + resources.len() / 2,
        "unexpected keys: {keys:?}"
    );
    // The background refresh renews all six (six slots) in one batch, and
    // every other script runs on the cluster node.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        locks.iter().all(|l| !l.is_lost()),
        "refresh on a cluster node"
    );
    assert!(locker.refresh_stats().renewed >= 6);
    assert_eq!(locker.list("").await.unwrap().len(), resources.len());
    assert!(locker.info("a}b").await.unwrap().is_some());
    assert_eq!(
        locker.read("plain").await.unwrap(),
        Some(bytes::Bytes::from("d"))
    );
    for lock in locks {
        lock.release().await.unwrap();
    }
    assert!(locker.list("").await.unwrap().is_empty());
}

/// `requirepass` and ACL users from the URL; a wrong password is a clear error
/// that never repeats it, and `Debug` never shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_acl_users_come_from_the_url() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start(&["--requirepass", "hunter2"]).await;
    let port = server.port;
    server
        .wait_ready(&format!("redis://:hunter2@127.0.0.1:{port}"))
        .await;

    let url = format!(
        "redis://:hunter2@127.0.0.1:{port}/0?namespace={}",
        namespace()
    );
    let store = RedisStore::connect(&url).await.expect("password URL");
    let debug = format!("{store:?} {:?} {:?}", store.config(), store.locker());
    assert!(!debug.contains("hunter2"), "{debug}");
    let lock = store
        .locker()
        .try_lock("p", &LockOptions::new())
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();

    // An ACL user with only the commands the scripts need.
    let mut admin = redis::Client::open(format!("redis://:hunter2@127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "locker", "on", ">s3cr3t-pw", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let acl = format!(
        "redis://locker:s3cr3t-pw@127.0.0.1:{port}?namespace={}",
        namespace()
    );
    let store = RedisStore::connect(&acl).await.expect("ACL user URL");
    assert!(!format!("{store:?}").contains("s3cr3t-pw"));
    let lock = store
        .locker()
        .try_lock("acl", &LockOptions::new())
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();
    // Also as query options.
    let query = format!("redis://127.0.0.1:{port}?user=locker&password=s3cr3t-pw");
    RedisStore::connect(&query).await.expect("?user=&password=");

    for wrong in [
        format!("redis://:wrong-hunter3@127.0.0.1:{port}"),
        format!("redis://locker:wrong-hunter3@127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{port}"),
    ] {
        match RedisStore::connect(&wrong).await {
            Err(error) => {
                let text = format!("{error} {error:?}");
                assert!(!text.contains("hunter3"), "password shown: {text}");
                assert!(
                    !error.is_transient(),
                    "a wrong password is permanent: {text}"
                );
                let shown = distlock_core::error_chain(&error);
                assert!(
                    shown.contains("redis://:PASSWORD@host")
                        && shown.contains("redis://USER:PASSWORD@host")
                        && shown.contains(&format!("127.0.0.1:{port}")),
                    "the message says how to give the password: {shown}"
                );
            }
            Ok(_) => panic!("{wrong}: connected with a wrong password"),
        }
    }
}

/// `redis+unix://` with a password as a query option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_url_works() {
    if !redis_available() {
        return;
    }
    let dir = TempDir::new("unix");
    let socket = dir.path().join("redis.sock").display().to_string();
    let server = RedisServer::start(&[
        "--unixsocket",
        &socket,
        "--unixsocketperm",
        "700",
        "--requirepass",
        "hunter2",
    ])
    .await;
    server
        .wait_ready(&format!("redis://:hunter2@127.0.0.1:{}", server.port))
        .await;
    let url = format!("redis+unix://{socket}?password=hunter2&db=3");
    let store = RedisStore::connect(&url).await.expect("unix socket");
    assert!(!format!("{store:?}").contains("hunter2"));
    let locker = store.locker();
    let lock = locker
        .try_lock("u", &LockOptions::new().with_data("via socket"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        locker.read("u").await.unwrap(),
        Some(bytes::Bytes::from("via socket"))
    );
    lock.release().await.unwrap();
}

/// `rediss://` against a TLS-only server with a certificate made here (rcgen):
/// trusted through `?ca=`, refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    if !redis_available() {
        return;
    }
    let dir = TempDir::new("tls");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "distlock test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let ca_file = write("ca.pem", ca.pem());
    let cert_file = write("server.pem", server_cert.pem());
    let key_file = write("server.key", server_key.serialize_pem());

    let port = free_port();
    let port_arg = port.to_string();
    let _server = RedisServer::start_on(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port_arg,
            "--tls-cert-file",
            &cert_file,
            "--tls-key-file",
            &key_file,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "hunter2",
        ],
        false,
    )
    .await;
    let url = format!(
        "rediss://:hunter2@127.0.0.1:{port}?ca={ca_file}&namespace={}",
        namespace()
    );
    let store = within("TLS server up", SOON, async {
        loop {
            match RedisStore::connect(&url).await {
                Ok(store) => return store,
                Err(error) if error.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("TLS connect: {error}"),
            }
        }
    })
    .await;
    assert!(store.config().is_tls());
    assert!(!format!("{store:?}").contains("hunter2"));
    let locker = store.locker();
    let lock = locker
        .lock("tls", &LockOptions::new().with_wait_timeout(SOON))
        .await
        .unwrap();
    assert!(locker.info("tls").await.unwrap().is_some());
    lock.release().await.unwrap();

    // Without the private CA, the server's certificate is not trusted.
    let untrusted = format!("rediss://:hunter2@127.0.0.1:{port}");
    match RedisStore::connect(&untrusted).await {
        Err(error) => assert!(!format!("{error:?}").contains("hunter2")),
        Ok(_) => panic!("connected to a server whose CA is not trusted"),
    }
}

/// The server forgets its scripts (`SCRIPT FLUSH`, as after a restart or a
/// failover): every operation loads them again on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_after_script_flush() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_REDIS_URL") else {
        return;
    };
    let url = format!("{url}?namespace={}", namespace());
    let store = RedisStore::connect(&url).await.unwrap();
    let locker = store.locker();
    let mut admin = redis::Client::open(url.split('?').next().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let flush = |admin: &mut redis::aio::MultiplexedConnection| {
        let mut admin = admin.clone();
        async move {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut admin)
                .await
                .unwrap();
        }
    };
    let manual = LockOptions::new().manual_refresh();
    flush(&mut admin).await;
    let mutex = locker.try_lock("m", &manual).await.unwrap().unwrap();
    flush(&mut admin).await;
    let semaphore = locker
        .try_lock("s", &manual.clone().with_permits(2))
        .await
        .unwrap()
        .unwrap();
    flush(&mut admin).await;
    mutex.refresh().await.expect("refresh after flush");
    flush(&mut admin).await;
    assert_eq!(locker.info("s").await.unwrap().unwrap().permits, 2);
    flush(&mut admin).await;
    mutex.release().await.expect("release after flush");
    // A batch of background refreshes (the pipelined path).
    let auto = LockOptions::new().with_ttl(Duration::from_millis(300));
    let mut many = Vec::new();
    for i in 0..50 {
        many.push(
            locker
                .try_lock(&format!("batch/{i}"), &auto)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for _ in 0..4 {
        flush(&mut admin).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        many.iter().all(|l| !l.is_lost()),
        "batched refresh after flush"
    );
    for lock in many {
        lock.release().await.unwrap();
    }
    flush(&mut admin).await;
    semaphore.release().await.unwrap();
}

/// The server restarts (empty) while a lease is held: the holder's `lost`
/// fires, a waiter is not stranded, and new acquires work once the client has
/// reconnected by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_lease() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start(&[]).await;
    let url = server.url();
    server.wait_ready(&url).await;
    let holder = RedisStore::connect(&url).await.unwrap().locker();
    let waiter = RedisStore::connect(&url).await.unwrap().locker();
    let ttl = Duration::from_millis(800);
    let lock = holder
        .try_lock("restart", &LockOptions::new().with_ttl(ttl))
        .await
        .unwrap()
        .unwrap();
    let first_token = lock.token();
    // The waiter waits through the restart. If the broken connection ends
    // its wait, that is a prompt transient error (an application retries).
    let waiting = tokio::spawn(async move {
        let options = LockOptions::new()
            .with_ttl(Duration::from_secs(30))
            .with_wait_timeout(Duration::from_secs(30));
        loop {
            match waiter.lock("restart", &options).await {
                Err(error) if error.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());

    server.restart();
    server.wait_ready(&url).await;
    // The lease is gone with the data: the next refresh is refused, or fails
    // until the deadline passes. Either way `lost` fires by the TTL.
    within("lost after the restart", SOON + ttl, lock.lost()).await;
    assert!(lock.is_lost());

    // The waiter gets the resource (woken by the broken pub/sub connection or
    // by its fallback timer), and its token is above the old one: the counter
    // was lost too, but it is seeded from the server clock.
    let second = within("waiter after restart", SOON * 3, waiting)
        .await
        .unwrap()
        .expect("waiter acquires after the restart");
    assert!(
        second.token() > first_token,
        "token {} after the restart is not above {first_token}",
        second.token()
    );
    second.release().await.unwrap();

    // The holder's client reconnected by itself.
    let again = within("acquire after reconnect", SOON, async {
        loop {
            match holder.try_lock("restart", &LockOptions::new()).await {
                Ok(Some(lock)) => return lock,
                Ok(None) => panic!("nobody should hold it"),
                Err(error) if error.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("after restart: {error}"),
            }
        }
    })
    .await;
    again.release().await.unwrap();
}

/// With the server gone, a release is an error that says the outcome is not
/// known (or the store unavailable), never a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_release_is_not_success() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start(&[]).await;
    let url = server.url();
    server.wait_ready(&url).await;
    let config = RedisConfig::from_url(&url)
        .unwrap()
        .with_response_timeout(Duration::from_millis(300))
        .with_connect_timeout(Duration::from_millis(300));
    let locker = RedisStore::connect_with(config).await.unwrap().locker();
    let lock = locker
        .try_lock("gone", &LockOptions::new().manual_refresh())
        .await
        .unwrap()
        .unwrap();
    server.kill();
    let started = Instant::now();
    match within("release without a server", SOON, lock.release()).await {
        Err(error @ (Error::OutcomeUnknown { .. } | Error::Unavailable { .. })) => {
            assert!(error.is_transient());
        }
        other => panic!("expected an unconfirmed release, got {other:?}"),
    }
    assert!(started.elapsed() < SOON);
    match locker.try_lock("gone", &LockOptions::new()).await {
        Err(error) => assert!(error.is_transient(), "{error}"),
        Ok(_) => panic!("a dead server answered"),
    }
}

/// A wake-up is armed when `subscribe` returns (a publish right after it is
/// not missed), and channels nobody waits on any more are unsubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_are_armed_and_idle_channels_unsubscribed() {
    use distlock_core::Store;
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_REDIS_URL") else {
        return;
    };
    let ns = namespace();
    let store = RedisStore::connect(&format!("{url}?namespace={ns}"))
        .await
        .unwrap();
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let count_channels = |admin: &redis::aio::MultiplexedConnection| {
        let mut admin = admin.clone();
        let pattern = format!("{{{ns}:*");
        async move {
            let channels: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg(pattern)
                .query_async(&mut admin)
                .await
                .unwrap();
            channels.len()
        }
    };
    for i in 0..300 {
        let resource = format!("w/{i}");
        let wakeup = store.subscribe(&resource).await.unwrap().expect("push");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{{{ns}:{resource}}}:w"))
            .arg("")
            .query_async(&mut admin)
            .await
            .unwrap();
        within("armed wake-up fires", SOON, wakeup).await;
    }
    within("idle channels unsubscribed", SOON * 2, async {
        while count_channels(&admin).await >= 300 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Namespaces never share locks: `P` + `x:y` and `P/x` + `y` are different
/// locks, and a namespace with the key separator `:` (`P:x` + `y` would be the
/// key of `P` + `x:y`) is refused before any I/O, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_do_not_collide() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_REDIS_URL") else {
        return;
    };
    let ns = namespace();
    let connect = |ns: String| {
        let url = url.clone();
        async move {
            RedisStore::connect(&format!("{url}?namespace={ns}"))
                .await
                .unwrap()
                .locker()
        }
    };
    let options = LockOptions::new().with_ttl(Duration::from_secs(10));

    // The colliding spelling is refused, naming the namespace and the reason.
    let colliding = format!("{ns}:x");
    match RedisStore::connect(&format!("{url}?namespace={colliding}")).await {
        Err(Error::InvalidUrl { reason, .. }) => {
            assert!(
                reason.contains(&colliding) && reason.contains("separates"),
                "{reason}"
            );
        }
        Err(other) => panic!("namespace `{colliding}`: expected InvalidUrl, got {other}"),
        Ok(_) => panic!("namespace `{colliding}` was accepted"),
    }
    let config = RedisConfig::from_url(&url).unwrap();
    assert!(matches!(
        config.with_namespace(colliding),
        Err(Error::InvalidArgument {
            what: "namespace",
            ..
        })
    ));

    // Neighbouring namespaces: each grants its own lock.
    let parent = connect(ns.clone()).await;
    let child = connect(format!("{ns}/x")).await;
    let in_parent = parent
        .try_lock("x:y", &options)
        .await
        .unwrap()
        .expect("free");
    let in_child = child
        .try_lock("y", &options)
        .await
        .unwrap()
        .expect("`y` in namespace P/x is not `x:y` in namespace P");
    let in_child_2 = child
        .try_lock("x:y", &options)
        .await
        .unwrap()
        .expect("`x:y` in namespace P/x is not `x:y` in namespace P");
    assert!(parent.list("").await.unwrap() == vec!["x:y".to_owned()]);
    let mut listed = child.list("").await.unwrap();
    listed.sort();
    assert_eq!(listed, ["x:y", "y"]);
    // The same namespace does share: another client is refused.
    let same = connect(ns.clone()).await;
    assert!(same.try_lock("x:y", &options).await.unwrap().is_none());
    for lock in [in_parent, in_child, in_child_2] {
        lock.release().await.unwrap();
    }
}

/// The texts of an error and its sources, outermost first.
fn chain(error: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// A closed port is `Unavailable` at once, naming the endpoint, with the
/// refusal in the error chain once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_at_once_naming_the_endpoint() {
    let port = free_port();
    let started = Instant::now();
    let error = RedisStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let links = chain(&error);
    // The core's line says what failed; the next names the endpoint.
    assert!(links[1].contains(&format!("127.0.0.1:{port}")), "{links:?}");
    assert!(
        !format!("{links:?} {error:?}").contains("hunter2"),
        "{links:?}"
    );
    // Every link adds something: none repeats the next.
    for pair in links.windows(2) {
        assert!(!pair[0].contains(&pair[1]), "repeated: {links:?}");
    }
    let refused = links
        .iter()
        .filter(|l| l.to_lowercase().contains("connection refused"))
        .count();
    assert_eq!(refused, 1, "{links:?}");
}

/// An eviction ends every lease at once, wakes a waiter at once (no wait for
/// the holder's TTL), and the next token is higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_wakes_waiters_and_fences() {
    use distlock_core::Store;
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_REDIS_URL") else {
        return;
    };
    let url = format!("{url}?namespace={}", namespace());
    let operator = RedisStore::connect(&url).await.unwrap();
    let holder = RedisStore::connect(&url).await.unwrap().locker();
    let long = LockOptions::new().with_ttl(Duration::from_secs(60));
    let held = holder.try_lock("e", &long).await.unwrap().unwrap();
    let waiter = RedisStore::connect(&url).await.unwrap().locker();
    let waiting = tokio::spawn(async move {
        let lock = waiter
            .lock("e", &LockOptions::new().with_wait_timeout(SOON))
            .await
            .unwrap();
        (Instant::now(), lock)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evicted = Instant::now();
    assert_eq!(operator.evict("e").await.unwrap(), 1);
    let (granted, lock) = within("waiter granted", SOON, waiting).await.unwrap();
    assert!(
        granted - evicted < Duration::from_secs(2),
        "{:?}",
        granted - evicted
    );
    assert!(lock.token() > held.token());
    lock.release().await.unwrap();
    assert_eq!(operator.evict("e").await.unwrap(), 0);
    // Semaphore leases are counted one by one.
    let three = LockOptions::new()
        .with_permits(3)
        .with_ttl(Duration::from_secs(2));
    let a = holder.try_lock("s", &three).await.unwrap().unwrap();
    let b = holder.try_lock("s", &three).await.unwrap().unwrap();
    assert_eq!(operator.evict("s").await.unwrap(), 2);
    within("evicted holders lost", SOON, async {
        a.lost().await;
        b.lost().await;
    })
    .await;
}
