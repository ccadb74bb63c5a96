//! Helpers shared by the etcd test files: the service URL, an admin client, and
//! private etcd processes on free loopback ports (for restarts, auth and TLS).
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use distlock_etcd::EtcdConfig;
use etcd_client::{Client, GetOptions};
use tokio::process::{Child, Command};

/// `DISTLOCK_ETCD_URL` (loud skip locally, a failure under CI).
pub fn service_url() -> Option<String> {
    distlock_core::conformance::service_url("DISTLOCK_ETCD_URL")
}

pub async fn admin(url: &str) -> Client {
    let config = EtcdConfig::from_url(url).expect("url parses");
    Client::connect(&config.endpoints, None)
        .await
        .expect("admin client")
}

pub fn unique(name: &str) -> String {
    format!("etcd-test-{:016x}/{name}", fastrand_u64())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// The keys of `resource` (default prefix), oldest first.
pub async fn queue(admin: &Client, resource: &str) -> Vec<etcd_client::KeyValue> {
    let mut prefix = format!("distlock/\0{resource}").into_bytes();
    prefix.push(0);
    admin
        .clone()
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_sort(
                etcd_client::SortTarget::Create,
                etcd_client::SortOrder::Ascend,
            )),
        )
        .await
        .expect("range")
        .take_kvs()
}

/// Wait (bounded) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + bound;
    while !check().await {
        assert!(Instant::now() < until, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A private single-member etcd on free loopback ports, killed on drop.
pub struct TestEtcd {
    pub client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    scheme: &'static str,
    child: Option<Child>,
}

impl TestEtcd {
    pub async fn start(extra: &[String], tls: bool) -> TestEtcd {
        let dir = std::env::temp_dir().join(format!("distlock-etcd-{:016x}", fastrand_u64()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut etcd = TestEtcd {
            client_port: free_port(),
            peer_port: free_port(),
            dir,
            extra: extra.to_vec(),
            scheme: if tls { "https" } else { "http" },
            child: None,
        };
        etcd.run().await;
        etcd
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    async fn run(&mut self) {
        let client = format!("{}://127.0.0.1:{}", self.scheme, self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--logger", "zap", "--log-level", "error"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn etcd (scripts/services up etcd installs it)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_ok() {
                // Listening; give it the moment it needs to elect itself.
                if self.scheme == "https" || self.answers().await {
                    return;
                }
            }
            assert!(Instant::now() < until, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        match Client::connect([self.endpoint()], None).await {
            Ok(mut c) => c.status().await.is_ok_and(|s| s.leader() != 0),
            Err(_) => false,
        }
    }

    /// Kill the process (as a crash would) and wait for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Start again on the same ports with the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
