//! The SDK's HTTPS client (hyper on rustls with `ring`) verifies the
//! endpoint's certificate: a self-signed one is refused before any request.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use distlock_core::Error;
use distlock_dynamo::{DynamoConfig, DynamoStore};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TLS server on 127.0.0.1 presenting a self-signed certificate for
/// `localhost`; it answers nothing. Returns its port.
fn self_signed_server() -> u16 {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let connection = rustls::ServerConnection::new(config).unwrap();
                let mut stream = rustls::StreamOwned::new(connection, tcp);
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_with_an_untrusted_certificate_is_refused() {
    // Only for the AWS test credentials the emulator run exports: without
    // them the request would fail earlier, at signing.
    let Some(_) = common::url() else { return };
    let port = self_signed_server();
    let config = DynamoConfig::new("locks")
        .with_region("us-east-1")
        .with_endpoint(format!("https://localhost:{port}"))
        .with_max_attempts(1);
    let error = DynamoStore::connect_with(config)
        .await
        .expect_err("a self-signed certificate must not be trusted");
    assert!(
        matches!(error, Error::Unavailable { .. }),
        "refused before sending: {error:?}"
    );
    let mut chain = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    let chain = chain.join(" / ");
    assert!(
        chain.contains("certificate") && chain.contains(&format!("localhost:{port}")),
        "{chain}"
    );
}
