//! A loopback TCP proxy the harness controls: what a network between one
//! client and the store can do to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// What the link does to traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Pass everything.
    Pass,
    /// Hold every chunk this long before passing it.
    Delay(Duration),
    /// Swallow everything in both directions (connections stay open): a partition.
    Blackhole,
    /// Drop the next chunk from the store to the client, then close that
    /// connection: the store applied the request, the client never learns it.
    DropNextAnswer,
}

/// A proxy from a local port to `upstream`.
#[derive(Debug)]
pub(crate) struct Proxy {
    local: SocketAddr,
    mode: watch::Sender<Mode>,
    reset: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let reset = Arc::new(Notify::new());
        let task = tokio::spawn(accept_loop(listener, upstream, mode_rx, reset.clone()));
        Ok(Proxy {
            local,
            mode,
            reset,
            task,
        })
    }

    /// The address clients connect to.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Change what the link does.
    pub(crate) fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }

    /// Close every open connection (a reset); new ones are accepted.
    pub(crate) fn reset(&self) {
        self.reset.notify_waiters();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    reset: Arc<Notify>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mode = mode.clone();
        let reset = reset.clone();
        connections.spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = pipe(client_read, server_write, mode.clone(), false);
            let down = pipe(server_read, client_write, mode, true);
            tokio::select! {
                _ = up => {}
                _ = down => {}
                _ = reset.notified() => {}
            }
        });
        // Reap finished connections without waiting.
        while connections.try_join_next().is_some() {}
    }
}

/// Copy one direction, applying the mode to every chunk. Ends (closing the
/// connection) on EOF, error, or a dropped answer.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    answers: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass => {}
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Blackhole => continue,
            Mode::DropNextAnswer if answers => return,
            Mode::DropNextAnswer => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if socket.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(bound, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn modes_do_what_they_say() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.local()).await.unwrap();
        let bound = Duration::from_secs(5);
        assert_eq!(
            round_trip(&mut stream, bound).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(Mode::Blackhole);
        assert_eq!(
            round_trip(&mut stream, Duration::from_millis(200)).await,
            None
        );

        proxy.set(Mode::Pass);
        proxy.reset();
        // The reset closed it: a new connection works.
        let mut stream = TcpStream::connect(proxy.local()).await.unwrap();
        assert!(round_trip(&mut stream, bound).await.is_some());

        proxy.set(Mode::Delay(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        assert!(round_trip(&mut stream, bound).await.is_some());
        assert!(started.elapsed() >= Duration::from_millis(100));

        proxy.set(Mode::DropNextAnswer);
        assert_eq!(
            round_trip(&mut stream, Duration::from_millis(500)).await,
            None
        );
    }
}
