//! The binary: starts, prints where it listens, serves a client.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use distlock_core::LockOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_memory_with_a_password() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_distlock-server"))
        .args(["--listen", "127.0.0.1:0", "--store", "memory://binary-test"])
        .env("DISTLOCK_PASSWORD", "pw-from-env")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(30), line)
        .await
        .expect("the binary says where it listens")
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_owned();
    let outcome: distlock_core::Result<()> = async {
        let locker = distlock_server::connect(&format!("distlock://:pw-from-env@{addr}")).await?;
        let lock = locker
            .try_lock("binary/a", &LockOptions::new())
            .await?
            .expect("free");
        assert!(
            locker
                .try_lock("binary/a", &LockOptions::new())
                .await?
                .is_none()
        );
        lock.release().await?;
        assert!(
            distlock_server::connect(&format!("distlock://{addr}"))
                .await
                .is_err()
        );
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome.unwrap();
}

#[test]
fn bad_flags_exit_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_distlock-server"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
}
