//! Starting and stopping a server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::Config;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::lock_service_server::LockServiceServer;
use crate::service::{AdminApi, Auth, LockApi};
use crate::state::State;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The backing store could not be connected.
    #[error("cannot connect to the backing store: {0}")]
    Store(#[from] distlock_core::Error),
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running server. Dropping it stops the server (without waiting).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Start a server; returns once it listens.
///
/// # Errors
/// [`StartError`] when the store cannot be connected or a port cannot be bound.
pub async fn start(config: Config) -> Result<ServerHandle, StartError> {
    let locker = match &config.locker {
        Some(locker) => locker.clone(),
        None => crate::registry().connect(&config.store).await?,
    };
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let metrics_listener = match config.metrics {
        Some(at) => Some(bind(at).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let max_message = config.limits.max_message_bytes;
    tracing::info!(
        %addr,
        backend = locker.capabilities().backend,
        store = %distlock_core::redact_url(&config.store),
        metrics = ?metrics_addr,
        password = config.password.is_some(),
        grace = ?config.disconnect_grace,
        "distlock server listening"
    );
    let state = Arc::new(State::new(locker, config, shutdown_rx.clone()));

    if let Some(listener) = metrics_listener {
        tokio::spawn(crate::metrics::serve(listener, state.clone()));
    }
    {
        let state = state.clone();
        let mut down = shutdown_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = down.wait_for(|d| *d) => return,
                }
                state.sweep().await;
            }
        });
    }

    let auth = Auth {
        state: state.clone(),
    };
    let locks = InterceptedService::new(
        LockServiceServer::new(LockApi {
            state: state.clone(),
        })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message),
        auth.clone(),
    );
    let admin = InterceptedService::new(
        AdminServiceServer::new(AdminApi {
            state: state.clone(),
        })
        .max_decoding_message_size(max_message),
        auth,
    );
    let incoming = TcpListenerStream::new(listener).map(|socket| {
        if let Ok(socket) = &socket {
            let _ = socket.set_nodelay(true);
        }
        socket
    });
    let mut down = shutdown_rx;
    let mut builder = Server::builder();
    if let Some(tls) = &state.config.tls {
        let mut server_tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&tls.cert_pem, tls.key_pem.expose()));
        if let Some(ca) = &tls.client_ca_pem {
            server_tls = server_tls.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(server_tls)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    let serve = builder
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(locks)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = down.wait_for(|d| *d).await;
        });
    let task = tokio::spawn(serve);
    Ok(ServerHandle {
        addr,
        metrics_addr,
        state,
        shutdown,
        task: Some(task),
    })
}

impl ServerHandle {
    /// The address the gRPC service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `distlock://` URL of this server (without the password).
    pub fn url(&self) -> String {
        format!("distlock://{}", self.addr)
    }

    /// Where metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metrics, in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        crate::metrics::render(&self.state)
    }

    /// Session keepalive messages received so far, over all sessions.
    pub fn keepalives_received(&self) -> u64 {
        self.state.metrics.keepalives.load(Ordering::Relaxed)
    }

    /// Keepalives received on one session (its id as the server gave it).
    pub fn session_keepalives(&self, session_id: &str) -> Option<u64> {
        let id = u64::from_str_radix(session_id, 16).ok()?;
        self.state.session_keepalives(id)
    }

    /// Leases the server holds for clients.
    pub fn held_locks(&self) -> usize {
        self.state.tables().leases.len()
    }

    /// Open sessions.
    pub fn open_sessions(&self) -> usize {
        self.state
            .tables()
            .sessions
            .values()
            .filter(|s| s.connected)
            .count()
    }

    /// End every lease of `resource` this server granted, as the admin
    /// `ForceRelease` call does; the next grant gets a higher fencing token.
    pub async fn force_release(&self, resource: &str) -> u64 {
        self.state.force_release(resource).await
    }

    /// Stop granting new locks and opening sessions; calls in flight finish.
    pub fn drain(&self) {
        self.state.draining.store(true, Ordering::Release);
    }

    /// Drain, end every stream, and stop once calls in flight are done (or
    /// after the drain timeout). Leases are **not** released: they run out
    /// their TTL, after the clients' own deadlines, so that a server restart
    /// never hands a lock to a second client while the first still trusts it.
    pub async fn shutdown(mut self) {
        self.drain();
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take() {
            let timeout = self.state.config.drain_timeout;
            match tokio::time::timeout(timeout, &mut task).await {
                Ok(Ok(Ok(()))) => tracing::info!("distlock server stopped"),
                Ok(Ok(Err(error))) => {
                    tracing::warn!(%error, "distlock server stopped with an error")
                }
                Ok(Err(_)) => tracing::warn!("distlock server task failed"),
                Err(_) => {
                    tracing::warn!(
                        ?timeout,
                        "calls still in flight after the drain timeout; stopping"
                    );
                    task.abort();
                }
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
