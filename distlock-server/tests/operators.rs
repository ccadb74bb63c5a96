//! Operators: list locks and sessions, force release, metrics over HTTP, drain.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ServerFixture;
use distlock_core::{Error, LockOptions};
use distlock_server::Config;
use distlock_server::proto::admin_service_client::AdminServiceClient;
use distlock_server::proto::{ForceReleaseRequest, ListLocksRequest, ListSessionsRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_force_release_and_metrics() {
    let config =
        Config::new("127.0.0.1:0".parse().unwrap()).with_metrics("127.0.0.1:0".parse().unwrap());
    let fixture = ServerFixture::start(config).await;
    let server = &fixture.server;
    let locker = distlock_server::connect(&server.url()).await.unwrap();
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(3))
        .with_owner("worker-1");
    let lock = locker.try_lock("ops/a", &options).await.unwrap().unwrap();

    let mut admin = AdminServiceClient::connect(format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    let locks = admin
        .list_locks(ListLocksRequest {
            prefix: "ops/".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .locks;
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].owner, "worker-1");
    assert_eq!(locks[0].token, lock.token());
    let sessions = admin
        .list_sessions(ListSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_id, locks[0].session_id);
    assert_eq!(sessions[0].locks, 1);

    let released = admin
        .force_release(ForceReleaseRequest {
            resource: "ops/a".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .released;
    assert_eq!(released, 1);
    let other = distlock_server::connect(&server.url()).await.unwrap();
    let next = other.try_lock("ops/a", &options).await.unwrap().unwrap();
    assert!(
        next.token() > lock.token(),
        "the next grant has a higher token"
    );
    tokio::time::timeout(Duration::from_secs(20), lock.lost())
        .await
        .expect("the force-released holder learns it at its next refresh");
    assert!(matches!(lock.release().await, Err(Error::NotHeld { .. })));

    let mut socket = tokio::net::TcpStream::connect(server.metrics_addr().unwrap())
        .await
        .unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    socket.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for metric in [
        "distlock_sessions 2",
        "distlock_held_locks 1",
        "distlock_grants_total 2",
        "distlock_force_releases_total 1",
        "distlock_waiters 0",
    ] {
        assert!(body.contains(metric), "{metric} in {body}");
    }
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_grants_and_shutdown_ends_streams() {
    let fixture = ServerFixture::new().await;
    let locker = distlock_server::connect(&fixture.server.url())
        .await
        .unwrap();
    let options = LockOptions::new().with_ttl(Duration::from_secs(30));
    let held = locker.try_lock("drain/a", &options).await.unwrap().unwrap();
    fixture.server.drain();
    let error = locker.try_lock("drain/b", &options).await.unwrap_err();
    assert!(error.is_transient(), "draining is transient: {error:?}");
    // Shutdown completes although a session stream is open.
    let ServerFixture { store, server } = fixture;
    tokio::time::timeout(Duration::from_secs(20), server.shutdown())
        .await
        .expect("shutdown completes");
    // The lease is not released by the shutdown: it runs out its TTL.
    assert_eq!(store.len(), 1);
    drop(held);
}
