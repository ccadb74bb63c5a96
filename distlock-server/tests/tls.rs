//! TLS and mutual TLS with certificates made by rcgen.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::ServerFixture;
use distlock_core::LockOptions;
use distlock_server::{Config, TlsConfig};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "distlock test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]),
        client: leaf(vec!["client".to_owned()]),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let cert = write(dir.path(), "client.pem", &pki.client.0);
    let key = write(dir.path(), "client.key", &pki.client.1);
    let tls = TlsConfig::new(&pki.server.0, &pki.server.1).with_client_ca(&pki.ca);
    assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    let fixture =
        ServerFixture::start(Config::new("127.0.0.1:0".parse().unwrap()).with_tls(tls)).await;
    let port = fixture.server.local_addr().port();

    let url = format!("distlocks://localhost:{port}?ca={ca}&cert={cert}&key={key}");
    let locker = distlock_server::connect(&url).await.unwrap();
    let lock = locker
        .try_lock("tls/a", &LockOptions::new())
        .await
        .unwrap()
        .unwrap();
    lock.release().await.unwrap();

    // No client certificate, or no TLS at all: refused.
    let no_cert = distlock_server::connect(&format!("distlocks://localhost:{port}?ca={ca}")).await;
    assert!(
        no_cert.is_err(),
        "a client without a certificate is refused"
    );
    let plain = distlock_server::connect(&format!("distlock://localhost:{port}")).await;
    assert!(plain.is_err(), "plaintext is refused");
    // Bad TLS options are InvalidUrl.
    for bad in [
        format!("distlocks://localhost:{port}"),
        format!("distlocks://localhost:{port}?ca={ca}&cert={cert}"),
        format!("distlocks://localhost:{port}?ca=/nonexistent/ca.pem"),
        format!("distlocks://localhost:{port}?ca={ca}&colour=blue"),
    ] {
        match distlock_server::connect(&bad).await {
            Err(distlock_core::Error::InvalidUrl { .. }) => {}
            other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
        }
    }
}
