//! Scenarios that need an etcd of their own (spawned on free loopback ports):
//! a restart mid-lease, user/password authentication, TLS. They run where the
//! service runs (`DISTLOCK_ETCD_URL` set; CI fails without it), since
//! `scripts/services up etcd` is what installs the `etcd` binary.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::time::{Duration, Instant};

use common::{TestEtcd, service_url, unique};
use distlock_core::{Error, Handler, LockOptions, Locker};
use distlock_etcd::{EtcdConfig, EtcdStore};

const SOON: Duration = Duration::from_secs(30);

/// etcd killed and started again while a lock is held and another client
/// waits: the lock survives (leases are persisted), the waiter's watch
/// reconnects and it is granted on release, with a greater token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_mid_lease() {
    if service_url().is_none() {
        return;
    }
    let mut etcd = TestEtcd::start(&[], false).await;
    let config = EtcdConfig::new([etcd.endpoint()]).with_session_ttl(Duration::from_secs(6));
    let holder = EtcdStore::connect_with(config.clone())
        .await
        .unwrap()
        .locker();
    let options = LockOptions::new().with_ttl(Duration::from_secs(6));
    let r = unique("restart");
    let lock = holder.try_lock(&r, &options).await.unwrap().unwrap();
    let before = lock.token();
    let waiter = {
        let locker = EtcdStore::connect_with(config.clone())
            .await
            .unwrap()
            .locker();
        let (r, options) = (r.clone(), options.clone());
        tokio::spawn(async move {
            locker
                .lock(&r, &options.with_wait_timeout(Duration::from_secs(60)))
                .await
        })
    };
    common::eventually("waiter queued", SOON, || {
        let endpoint = etcd.endpoint();
        let r = r.clone();
        async move {
            let admin = etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap();
            common::queue(&admin, &r).await.len() == 2
        }
    })
    .await;
    etcd.restart().await;
    // Two TTLs after the restart the lock is still held, by its holder only.
    let until = Instant::now() + Duration::from_secs(12);
    let other = EtcdStore::connect_with(config.clone())
        .await
        .unwrap()
        .locker();
    while Instant::now() < until {
        assert!(!lock.is_lost(), "the lock was lost across the restart");
        assert!(other.try_lock(&r, &options).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!waiter.is_finished(), "the waiter still waits");
    lock.release().await.unwrap();
    let next = tokio::time::timeout(SOON, waiter)
        .await
        .expect("waiter woken after the restart")
        .unwrap()
        .expect("granted");
    assert!(next.token() > before, "revisions survive a restart");
    next.release().await.unwrap();
}

/// `etcd://user:password@…` logs in; a wrong password is a clear error that
/// never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    if service_url().is_none() {
        return;
    }
    let etcd = TestEtcd::start(&[], false).await;
    let mut admin = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    admin.user_add("root", "s3cret-pw", None).await.unwrap();
    let _ = admin.role_add("root").await;
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let url = format!("etcd://root:s3cret-pw@{}", etcd.endpoint());
    let locker = EtcdStore::connect(&url).await.unwrap().locker();
    let r = unique("auth");
    let lock = locker
        .try_lock(&r, &LockOptions::new())
        .await
        .unwrap()
        .unwrap();
    assert!(
        locker
            .try_lock(&r, &LockOptions::new())
            .await
            .unwrap()
            .is_none()
    );
    lock.release().await.unwrap();

    let wrong = format!("etcd://root:hunter2@{}", etcd.endpoint());
    match EtcdStore::connect(&wrong).await {
        Err(error) => {
            let text = format!("{error} {error:?}");
            assert!(!text.contains("hunter2"), "password shown: {text}");
            assert!(matches!(error, Error::Store { .. }), "{text}");
        }
        Ok(store) => panic!("logged in with a wrong password: {store:?}"),
    }
    // Without credentials nothing is granted (etcd lets anyone grant a lease,
    // so connecting may succeed; writing a key may not).
    if let Ok(anonymous) = EtcdStore::connect(&format!("etcd://{}", etcd.endpoint())).await {
        match anonymous.locker().try_lock(&r, &LockOptions::new()).await {
            Err(error) => assert!(
                !error.is_transient(),
                "permission denied is permanent: {error}"
            ),
            Ok(granted) => panic!("anonymous try_lock answered {granted:?}"),
        }
    }
}

/// `etcds://…?ca=…` talks TLS to an etcd serving a self-signed certificate.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    if service_url().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("distlock-etcd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert, key, csr) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("req.csr"),
    );
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: Vec<std::ffi::OsString>| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let os = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
        parts
            .iter()
            .map(|p| p.as_ref().to_owned())
            .collect::<Vec<_>>()
    };
    // A private CA, and a server certificate it signs.
    openssl(os(&[
        &"req",
        &"-x509",
        &"-newkey",
        &"rsa:2048",
        &"-nodes",
        &"-days",
        &"1",
        &"-subj",
        &"/CN=distlock test CA",
        &"-keyout",
        &ca_key,
        &"-out",
        &ca,
    ]));
    openssl(os(&[
        &"req",
        &"-newkey",
        &"rsa:2048",
        &"-nodes",
        &"-subj",
        &"/CN=127.0.0.1",
        &"-keyout",
        &key,
        &"-out",
        &csr,
    ]));
    openssl(os(&[
        &"x509",
        &"-req",
        &"-in",
        &csr,
        &"-CA",
        &ca,
        &"-CAkey",
        &ca_key,
        &"-CAcreateserial",
        &"-days",
        &"1",
        &"-extfile",
        &ext,
        &"-out",
        &cert,
    ]));
    let extra = vec![
        "--cert-file".to_owned(),
        cert.display().to_string(),
        "--key-file".to_owned(),
        key.display().to_string(),
    ];
    let etcd = TestEtcd::start(&extra, true).await;
    let url = format!("etcds://{}?ca={}", etcd.endpoint(), ca.display());
    let store = {
        let until = Instant::now() + SOON;
        loop {
            match EtcdStore::connect(&url).await {
                Ok(store) => break store,
                Err(error) if error.is_transient() && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("TLS connect: {error}"),
            }
        }
    };
    let locker = store.locker();
    let r = unique("tls");
    let lock = locker
        .lock(&r, &LockOptions::new().with_wait_timeout(SOON))
        .await
        .unwrap();
    lock.release().await.unwrap();
    // Without the CA the certificate is not trusted.
    let untrusted = EtcdStore::connect(&format!("etcds://{}", etcd.endpoint())).await;
    assert!(untrusted.is_err(), "a self-signed certificate was trusted");
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
