//! Private `redis-server` processes for tests that must stop, restart or
//! configure their server (the shared one from `scripts/services` stays up).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used
)] // test code

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Gate: `scripts/services up redis` installs `redis-server` and exports
/// `DISTLOCK_REDIS_URL`; without it the test is skipped loudly (or fails under CI).
pub fn redis_available() -> bool {
    distlock_core::conformance::service_url("DISTLOCK_REDIS_URL").is_some()
}

/// A free loopback port (bound and released; a race with another process is
/// unlikely and shows as a failed start).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "distlock-redis-{tag}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` child, killed on drop.
pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    pub dir: TempDir,
}

impl RedisServer {
    /// Start on a free port with extra arguments (`--requirepass x`, …).
    pub async fn start(extra: &[&str]) -> RedisServer {
        Self::start_on(free_port(), extra, true).await
    }

    /// Start on `port`; `tcp`: the port is the plain TCP port (else the caller's
    /// arguments say how it listens, e.g. `--port 0 --tls-port N`).
    pub async fn start_on(port: u16, extra: &[&str], tcp: bool) -> RedisServer {
        let dir = TempDir::new("server");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if tcp {
            args.extend(["--port".into(), port.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = RedisServer {
            port,
            args,
            child: None,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/services up redis installs it)");
        self.child = Some(child);
    }

    /// Wait until `url` answers PING (bounded).
    pub async fn wait_ready(&self, url: &str) {
        let client = redis::Client::open(url).expect("test URL");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(2),
                client.get_multiplexed_async_connection(),
            )
            .await
            {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 15 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL and reap: the server is gone, its data with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill, then start again on the same port with the same arguments (empty).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
