//! Passwords, limits and malformed requests: typed errors, never a panic.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ServerFixture;
use distlock_core::{Error, LockOptions};
use distlock_server::proto::lock_service_client::LockServiceClient;
use distlock_server::proto::{self as pb, ErrorDetail, error_detail};
use distlock_server::{ClientError, Config, Limits, Password};
use prost::Message;
use tonic::Code;

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap())
}

fn client_error(error: &Error) -> &ClientError {
    let source = match error {
        Error::Store { source, .. } | Error::Unavailable { source, .. } => source,
        other => panic!("expected a server refusal, got {other:?}"),
    };
    source
        .downcast_ref::<ClientError>()
        .unwrap_or_else(|| panic!("expected a ClientError source, got {source}"))
}

async fn raw(fixture: &ServerFixture) -> LockServiceClient<tonic::transport::Channel> {
    LockServiceClient::connect(format!("http://{}", fixture.server.local_addr()))
        .await
        .unwrap()
}

fn detail(status: &tonic::Status) -> ErrorDetail {
    ErrorDetail::decode(status.details()).expect("an ErrorDetail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_password_is_unauthenticated() {
    let config = config().with_password(Password::new("s3cret-hunter2"));
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "Debug shows no password"
    );
    let fixture = ServerFixture::start(config).await;
    let addr = fixture.server.local_addr();
    for url in [
        format!("distlock://{addr}"),
        format!("distlock://:wrong@{addr}"),
        format!("distlock://:s3cret-hunter@{addr}"),
    ] {
        let error = distlock_server::connect(&url).await.unwrap_err();
        assert_eq!(client_error(&error), &ClientError::Unauthenticated, "{url}");
        assert!(
            !error.is_transient(),
            "retrying a wrong password cannot help"
        );
        assert!(!format!("{error} {error:?}").contains("hunter2"));
    }
    let locker = distlock_server::connect(&format!("distlock://:s3cret-hunter2@{addr}"))
        .await
        .unwrap();
    let lock = locker
        .try_lock("auth/a", &LockOptions::new())
        .await
        .unwrap()
        .unwrap();
    assert!(!format!("{locker:?}").contains("hunter2"));
    lock.release().await.unwrap();
    assert!(
        fixture
            .server
            .metrics_text()
            .contains("distlock_errors_total{kind=\"unauthenticated\"} 3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_lock_limits_are_typed_errors() {
    let limits = Limits::default()
        .with_max_sessions(1)
        .with_max_locks_per_session(3);
    let fixture = ServerFixture::start(config().with_limits(limits)).await;
    let url = fixture.server.url();
    let locker = distlock_server::connect(&url).await.unwrap();
    let error = distlock_server::connect(&url).await.unwrap_err();
    match client_error(&error) {
        ClientError::LimitExceeded { limit, .. } => assert_eq!(limit, "max_sessions"),
        other => panic!("expected max_sessions, got {other:?}"),
    }
    let options = LockOptions::new();
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(
            locker
                .try_lock(&format!("limit/{i}"), &options)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let error = locker.try_lock("limit/3", &options).await.unwrap_err();
    match client_error(&error) {
        ClientError::LimitExceeded { limit, .. } => assert_eq!(limit, "max_locks_per_session"),
        other => panic!("expected max_locks_per_session, got {other:?}"),
    }
    // Nothing was left behind by the refused grant.
    assert_eq!(fixture.server.held_locks(), 3);
    held.pop().unwrap().release().await.unwrap();
    locker.try_lock("limit/3", &options).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_and_message_size_limits_are_clear_statuses() {
    let limits = Limits::default()
        .with_max_waiters_per_resource(1)
        .with_max_message_bytes(64 * 1024);
    let fixture = ServerFixture::start(config().with_limits(limits)).await;
    let mut client = raw(&fixture).await;
    let request = |key: u8| pb::LockRequest {
        resource: "waiters/a".to_owned(),
        key: Bytes::from(vec![key; 16]),
        ttl_ms: 30_000,
        permits: 1,
        owner: String::new(),
        data: Bytes::new(),
        wait_timeout_ms: Some(30_000),
    };
    assert!(
        client
            .try_lock(request(1))
            .await
            .unwrap()
            .into_inner()
            .granted
    );
    let mut waiting = client.clone();
    let first_waiter = tokio::spawn(async move { waiting.lock(request(2)).await });
    let started = std::time::Instant::now();
    while !fixture.server.metrics_text().contains("distlock_waiters 1") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the waiter registers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = client.lock(request(3)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(detail(&status).kind, error_detail::Kind::Limit as i32);
    assert_eq!(detail(&status).what, "max_waiters_per_resource");
    // Released: the queued waiter gets it (server-side wait).
    client
        .unlock(pb::UnlockRequest {
            resource: "waiters/a".to_owned(),
            key: Bytes::from(vec![1; 16]),
        })
        .await
        .unwrap();
    let granted = tokio::time::timeout(Duration::from_secs(10), first_waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert!(granted.granted);

    // Too big a message.
    let mut big = request(4);
    big.resource = "waiters/big".to_owned();
    big.data = Bytes::from(vec![0u8; 100 * 1024]);
    let status = client.try_lock(big).await.unwrap_err();
    // tonic refuses an oversized message with OUT_OF_RANGE, naming the limit.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    // The client backend refuses it before sending, naming the argument.
    let locker = distlock_server::connect(&fixture.server.url())
        .await
        .unwrap();
    let error = locker
        .try_lock(
            "waiters/big",
            &LockOptions::new().with_data(vec![0u8; 100 * 1024]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidArgument { what: "data", .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_invalid_argument() {
    let fixture = ServerFixture::new().await;
    let mut client = raw(&fixture).await;
    let good = pb::LockRequest {
        resource: "bad/a".to_owned(),
        key: Bytes::from(vec![7; 16]),
        ttl_ms: 30_000,
        permits: 1,
        ..Default::default()
    };
    let cases = [
        (
            "key",
            pb::LockRequest {
                key: Bytes::from_static(b"short"),
                ..good.clone()
            },
        ),
        (
            "resource",
            pb::LockRequest {
                resource: String::new(),
                ..good.clone()
            },
        ),
        (
            "resource",
            pb::LockRequest {
                resource: "a\u{0}b".to_owned(),
                ..good.clone()
            },
        ),
        (
            "resource",
            pb::LockRequest {
                resource: "x".repeat(10_000),
                ..good.clone()
            },
        ),
        (
            "ttl",
            pb::LockRequest {
                ttl_ms: 0,
                ..good.clone()
            },
        ),
        (
            "ttl",
            pb::LockRequest {
                ttl_ms: u64::MAX,
                ..good.clone()
            },
        ),
        (
            "permits",
            pb::LockRequest {
                permits: 0,
                ..good.clone()
            },
        ),
        (
            "owner",
            pb::LockRequest {
                owner: "\u{7}".to_owned(),
                ..good.clone()
            },
        ),
    ];
    for (what, request) in cases {
        let status = client.try_lock(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(detail(&status).what, what, "{status:?}");
    }
    let status = client
        .refresh(pb::RefreshRequest {
            leases: vec![pb::LeaseRef {
                resource: "bad/a".to_owned(),
                key: Bytes::new(),
                ttl_ms: 1000,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .unlock(pb::UnlockRequest {
            resource: "bad/a".to_owned(),
            key: Bytes::from(vec![9; 16]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Still serving, nothing held.
    assert!(client.try_lock(good).await.unwrap().into_inner().granted);
    assert_eq!(fixture.server.held_locks(), 1);
}
