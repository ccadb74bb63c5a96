//! The whole conformance suite on CockroachDB, in a Docker container started by
//! testcontainers (feature `cockroach-container`):
//!
//! ```sh
//! cargo test -p distlock-sql --features cockroach-container --test cockroach_container
//! ```
//!
//! Without a Docker engine the test prints a loud `SKIPPED` line and passes
//! (CockroachDB cannot be installed from a package registry; CI compiles this
//! file through `--all-features` and runs it where Docker exists). Set
//! `DISTLOCK_COCKROACH_URL` to run against a CockroachDB you started yourself.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod support;

use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers_modules::cockroach_db::CockroachDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_cockroachdb() {
    // Kept alive until the end of the test.
    let mut _container = None;
    let url = match std::env::var("DISTLOCK_COCKROACH_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => match CockroachDb::default().start().await {
            Ok(node) => {
                let port = node
                    .get_host_port_ipv4(26257.tcp())
                    .await
                    .expect("CockroachDB port");
                _container = Some(node);
                format!("cockroach://root@127.0.0.1:{port}/defaultdb?sslmode=disable")
            }
            Err(error) => {
                eprintln!(
                    "\n==== SKIPPED: CockroachDB conformance suite not run: no Docker engine \
                     answered ({error}). Start Docker, or set DISTLOCK_COCKROACH_URL. ====\n"
                );
                return;
            }
        },
    };
    let fixture = support::SqlFixture::connect(&url, "conformance_crdb").await;
    let mut failed = Vec::new();
    for case in distlock_core::conformance::CASES {
        eprintln!("cockroach: {} …", case.name);
        let run = tokio::spawn({
            let fixture = support::SqlFixture::connect(&url, "conformance_crdb").await;
            let run = case.run;
            async move { run(&fixture).await }
        });
        if let Err(error) = run.await {
            eprintln!("cockroach: {} FAILED: {error}", case.name);
            failed.push(case.name);
        }
    }
    drop(fixture);
    assert!(failed.is_empty(), "failed on CockroachDB: {failed:?}");
}
