//! A tiny HTTP proxy in front of the emulator that injects faults: throttling,
//! server errors, connections dropped before or after the request reached the
//! store. Loopback only; one request per connection.
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward it and return the answer.
    Pass,
    /// Answer `400 ProvisionedThroughputExceededException` without forwarding.
    Throttle,
    /// Answer `500 InternalServerError` without forwarding.
    ServerError,
    /// Close the connection without forwarding or answering.
    DropBeforeForward,
    /// Forward it (the store applies it), then close without answering.
    DropAfterForward,
}

#[derive(Clone)]
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Requests received.
    pub(crate) seen: Arc<AtomicU64>,
    /// Requests that reached the store.
    pub(crate) forwarded: Arc<AtomicU64>,
    /// The operation (`X-Amz-Target` after the dot) of every request received.
    operations: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Listen on a free loopback port, forwarding to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Proxy {
            addr: listener.local_addr().expect("addr"),
            faults: Arc::default(),
            seen: Arc::default(),
            forwarded: Arc::default(),
            operations: Arc::default(),
        };
        let shared = proxy.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move { shared.serve(conn, upstream).await });
            }
        });
        proxy
    }

    /// The endpoint URL to give the store.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Apply these faults to the next requests, in order.
    pub(crate) fn inject(&self, faults: &[Fault]) {
        self.faults.lock().unwrap().extend(faults.iter().copied());
    }

    /// Faults not yet used.
    pub(crate) fn pending(&self) -> usize {
        self.faults.lock().unwrap().len()
    }

    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Requests of one operation (`"PutItem"`) received so far.
    pub(crate) fn seen_of(&self, operation: &str) -> usize {
        let operations = self.operations.lock().unwrap();
        operations.iter().filter(|o| *o == operation).count()
    }

    async fn serve(&self, mut conn: TcpStream, upstream: SocketAddr) {
        let Some(request) = read_request(&mut conn).await else {
            return;
        };
        let operation = String::from_utf8_lossy(&request)
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("x-amz-target")
                    .then(|| value.trim().rsplit('.').next().unwrap_or("").to_owned())
            })
            .unwrap_or_default();
        self.operations.lock().unwrap().push(operation);
        self.seen.fetch_add(1, Ordering::SeqCst);
        let fault = self
            .faults
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Fault::Pass);
        match fault {
            Fault::Pass | Fault::DropAfterForward => {
                let answer = forward(&request, upstream).await;
                self.forwarded.fetch_add(1, Ordering::SeqCst);
                if fault == Fault::Pass {
                    let _ = conn.write_all(&answer).await;
                }
            }
            Fault::Throttle => {
                let _ = conn
                    .write_all(&error_answer(
                        "400 Bad Request",
                        "ProvisionedThroughputExceededException",
                    ))
                    .await;
            }
            Fault::ServerError => {
                let _ = conn
                    .write_all(&error_answer(
                        "500 Internal Server Error",
                        "InternalServerError",
                    ))
                    .await;
            }
            Fault::DropBeforeForward => {}
        }
        let _ = conn.shutdown().await;
    }
}

fn error_answer(status: &str, kind: &str) -> Vec<u8> {
    let body =
        format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected"}}"#);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request (head and body), or `None` at EOF.
async fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// Send `request` upstream on a fresh connection with `Connection: close`, and
/// read the whole answer.
async fn forward(request: &[u8], upstream: SocketAddr) -> Vec<u8> {
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&request[..head_end - 2]).to_string();
    let mut rewritten = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(upstream).await.expect("upstream");
    upstream.write_all(rewritten.as_bytes()).await.unwrap();
    upstream.write_all(&request[head_end..]).await.unwrap();
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await.unwrap();
    answer
}
