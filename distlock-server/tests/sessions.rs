//! Sessions: a client that disconnects loses its locks after the grace, its
//! lost signal first; one keepalive per interval however many locks are held.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerFixture;
use distlock_core::{Handler, LockOptions, Locker, StoreLocker};
use distlock_server::{Config, DisconnectGrace};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP forwarder to the server that can be cut, as a network failure would.
struct Proxy {
    addr: SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            tasks,
            accept,
        }
    }

    /// Close every connection and stop accepting.
    fn cut(&self) {
        self.accept.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

async fn wait_until(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_client_loses_its_locks_after_grace_and_its_lost_signal_fires_first() {
    let fixture = ServerFixture::start(config()).await;
    let server = &fixture.server;
    let proxy = Proxy::start(server.local_addr()).await;
    let first = distlock_server::connect(&format!("distlock://{}", proxy.addr))
        .await
        .unwrap();
    let second = distlock_server::connect(&server.url()).await.unwrap();
    let ttl = Duration::from_millis(1500);
    let options = LockOptions::new().with_ttl(ttl);
    let lock = first
        .try_lock("disconnect/a", &options)
        .await
        .unwrap()
        .unwrap();
    let first_token = lock.token();
    wait_until("both sessions open", Duration::from_secs(10), || {
        server.open_sessions() == 2
    })
    .await;

    // Another client waits for the resource; then the first one's network dies.
    let waiter = {
        let second = second.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let lock = second.lock("disconnect/a", &options).await.unwrap();
            (Instant::now(), lock)
        })
    };
    // Let at least one refresh travel, so the lease runs from a keepalive.
    tokio::time::sleep(ttl / 2).await;
    let cut_at = Instant::now();
    proxy.cut();

    wait_until(
        "the server notices the disconnect",
        Duration::from_secs(20),
        || server.open_sessions() == 1,
    )
    .await;
    let (granted_at, regrant) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiter is granted after the grace")
        .unwrap();
    assert!(regrant.token() > first_token, "a higher fencing token");
    tokio::time::timeout(Duration::from_secs(10), lock.lost())
        .await
        .expect("the disconnected holder's lost signal fires");
    let lost_at = lock.lost_at().expect("lost");
    assert!(
        lost_at <= granted_at,
        "the old holder's lost signal must fire before the regrant: lost {:?} after the cut, \
         regranted {:?} after the cut",
        lost_at - cut_at,
        granted_at - cut_at
    );
    eprintln!(
        "evidence: cut at 0, holder lost at {:?}, regranted at {:?} (ttl {ttl:?})",
        lost_at - cut_at,
        granted_at - cut_at
    );
    regrant.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_grace_releases_at_once_like_go_ldlm() {
    let fixture = ServerFixture::start(
        config().with_disconnect_grace(DisconnectGrace::After(Duration::ZERO)),
    )
    .await;
    let server = &fixture.server;
    let proxy = Proxy::start(server.local_addr()).await;
    let first = distlock_server::connect(&format!("distlock://{}", proxy.addr))
        .await
        .unwrap();
    let second = distlock_server::connect(&server.url()).await.unwrap();
    // A long TTL: the regrant must come from the disconnect, not from expiry.
    let options = LockOptions::new().with_ttl(Duration::from_secs(60));
    let lock = first
        .try_lock("zero-grace/a", &options)
        .await
        .unwrap()
        .unwrap();
    proxy.cut();
    let regrant = tokio::time::timeout(
        Duration::from_secs(20),
        second.lock("zero-grace/a", &options),
    )
    .await
    .expect("granted soon after the disconnect")
    .unwrap();
    // The trade-off: the old holder has not noticed yet.
    assert!(
        !lock.is_lost(),
        "with zero grace the old holder may still trust its lock"
    );
    assert!(regrant.token() > lock.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holding_1000_locks_sends_one_keepalive_per_interval() {
    // A long session timeout: no idle heartbeats in the window.
    let fixture =
        ServerFixture::start(config().with_session_timeout(Duration::from_secs(120))).await;
    let server = &fixture.server;
    let url = url::Url::parse(&server.url()).unwrap();
    let store = distlock_server::connect_store(&url).await.unwrap();
    let session = store.session_id().await.expect("a session");
    let locker = StoreLocker::new(store);
    let interval = Duration::from_millis(500);
    let options = LockOptions::new()
        .with_ttl(Duration::from_millis(2000))
        .with_refresh_interval(interval);
    let mut locks = Vec::new();
    for chunk in 0..10 {
        let batch = futures_util::future::join_all((0..100).map(|i| {
            let locker = &locker;
            let options = &options;
            async move {
                locker
                    .try_lock(&format!("many/{chunk}/{i}"), options)
                    .await
                    .unwrap()
                    .unwrap()
            }
        }))
        .await;
        locks.extend(batch);
    }
    assert_eq!(server.held_locks(), 1000);
    // Let the refresher fold the leases into one batch.
    tokio::time::sleep(interval * 4).await;
    let before = server.session_keepalives(&session).unwrap();
    let window = interval * 8;
    tokio::time::sleep(window).await;
    let sent = server.session_keepalives(&session).unwrap() - before;
    eprintln!("evidence: {sent} keepalives in {window:?} for 1000 locks (interval {interval:?})");
    assert!(sent >= 3, "the leases were renewed: {sent} keepalives");
    assert!(
        sent <= 8 + 3,
        "one keepalive per interval for all 1000 locks, got {sent} in 8 intervals"
    );
    assert!(locks.iter().all(|lock| !lock.is_lost()));
    assert_eq!(server.held_locks(), 1000);
    for lock in locks {
        lock.release().await.unwrap();
    }
    assert_eq!(server.held_locks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_cleanly_releases_nothing_early() {
    let fixture = ServerFixture::new().await;
    let server = &fixture.server;
    let client = distlock_server::connect(&server.url()).await.unwrap();
    let lock = client
        .try_lock(
            "clean/a",
            &LockOptions::new().with_ttl(Duration::from_secs(30)),
        )
        .await
        .unwrap()
        .unwrap();
    let key = lock.detach();
    drop(client);
    // The session is gone, the detached lease keeps its TTL and can still be
    // released by key from another client.
    wait_until("the session closes", Duration::from_secs(20), || {
        server.open_sessions() == 0
    })
    .await;
    assert_eq!(server.held_locks(), 1);
    let other = distlock_server::connect(&server.url()).await.unwrap();
    assert!(other.info("clean/a").await.unwrap().is_some());
    other.release("clean/a", key).await.unwrap();
    assert_eq!(server.held_locks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockey_style_session_client() {
    let fixture = ServerFixture::new().await;
    let url = fixture.server.url();
    let first = distlock_server::SessionClient::connect(&url).await.unwrap();
    let second = distlock_server::SessionClient::connect(&url)
        .await
        .unwrap()
        .with_options(LockOptions::new().with_wait_timeout(Duration::from_millis(200)));
    assert_eq!(first.check_acquire("lockey/a").await.unwrap(), None);
    first.acquire("lockey/a").await.unwrap();
    assert!(
        first.acquire("lockey/a").await.is_err(),
        "already held by this session"
    );
    assert_eq!(
        second.check_acquire("lockey/a").await.unwrap().as_deref(),
        Some(first.owner())
    );
    assert!(matches!(
        second.acquire("lockey/a").await,
        Err(distlock_core::Error::WaitTimeout { .. })
    ));
    first.release("lockey/a").await.unwrap();
    second.acquire("lockey/a").await.unwrap();
    assert!(matches!(
        first.release("lockey/a").await,
        Err(distlock_core::Error::NotHeld { .. })
    ));
}
