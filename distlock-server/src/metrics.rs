//! Prometheus text metrics, served by a tiny HTTP responder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::state::State;

/// Counters the server keeps.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) grants: AtomicU64,
    pub(crate) releases: AtomicU64,
    pub(crate) keepalives: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) session_releases: AtomicU64,
    pub(crate) force_releases: AtomicU64,
    pub(crate) waiters: AtomicI64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub(crate) fn error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }
}

/// The metrics in Prometheus text format.
pub(crate) fn render(state: &State) -> String {
    let (sessions, held) = {
        let tables = state.tables();
        (
            tables.sessions.values().filter(|s| s.connected).count(),
            tables.leases.len(),
        )
    };
    let m = &state.metrics;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "distlock_sessions",
        "Open client sessions.",
        "gauge",
        sessions.to_string(),
    );
    gauge(
        "distlock_held_locks",
        "Leases the server holds for clients.",
        "gauge",
        held.to_string(),
    );
    gauge(
        "distlock_waiters",
        "Callers waiting server-side (Lock, Watch).",
        "gauge",
        m.waiters.load(Ordering::Relaxed).to_string(),
    );
    for (name, help, counter) in [
        ("distlock_grants_total", "Leases granted.", &m.grants),
        (
            "distlock_releases_total",
            "Leases released by their holders.",
            &m.releases,
        ),
        (
            "distlock_keepalives_total",
            "Session keepalive messages received.",
            &m.keepalives,
        ),
        ("distlock_renewals_total", "Leases renewed.", &m.renewals),
        (
            "distlock_session_releases_total",
            "Leases released after their session ended.",
            &m.session_releases,
        ),
        (
            "distlock_force_releases_total",
            "Leases ended by an operator.",
            &m.force_releases,
        ),
    ] {
        gauge(
            name,
            help,
            "counter",
            counter.load(Ordering::Relaxed).to_string(),
        );
    }
    let _ = writeln!(
        out,
        "# HELP distlock_errors_total Errors answered, by kind.\n# TYPE distlock_errors_total counter"
    );
    for (kind, count) in m
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        let _ = writeln!(out, "distlock_errors_total{{kind=\"{kind}\"}} {count}");
    }
    out
}

/// Answer every HTTP request on `listener` with the metrics.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((mut socket, _)) = accepted else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut read = 0;
            let request = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while read < buf.len() {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if request.is_err() {
                return;
            }
            let ok =
                buf[..read].starts_with(b"GET /metrics ") || buf[..read].starts_with(b"GET / ");
            let (status, body) = if ok {
                ("200 OK", render(&state))
            } else {
                ("404 Not Found", "try GET /metrics\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
