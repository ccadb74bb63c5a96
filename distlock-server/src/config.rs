//! Server configuration.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use distlock_core::Locker;

/// When the leases of a session that disconnected or expired are released.
/// See the [crate documentation](crate#sessions-and-the-disconnect-grace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisconnectGrace {
    /// When each lease's TTL runs out (never before the client's own deadline).
    #[default]
    LeaseExpiry,
    /// This long after the disconnect, or at expiry if sooner. `ZERO`: at once.
    After(Duration),
}

/// Limits; each one hit is a `RESOURCE_EXHAUSTED` status naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Open sessions at once.
    pub max_sessions: usize,
    /// Leases attached to one session.
    pub max_locks_per_session: usize,
    /// Callers waiting server-side (`Lock`, `Watch`) on one resource.
    pub max_waiters_per_resource: usize,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 10_000,
            max_locks_per_session: 100_000,
            max_waiters_per_resource: 10_000,
            max_message_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// Set the most open sessions.
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }
    /// Set the most leases per session.
    pub fn with_max_locks_per_session(mut self, n: usize) -> Self {
        self.max_locks_per_session = n;
        self
    }
    /// Set the most server-side waiters per resource.
    pub fn with_max_waiters_per_resource(mut self, n: usize) -> Self {
        self.max_waiters_per_resource = n;
        self
    }
    /// Set the largest request message.
    pub fn with_max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }
}

/// A shared secret. Never shown by `Debug` or `Display`; compared in constant time.
#[derive(Clone)]
pub struct Password(Arc<str>);

impl Password {
    /// Wrap a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Password(Arc::from(secret.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        let mut diff = u8::from(secret.len() != candidate.len());
        for (i, byte) in secret.iter().enumerate() {
            diff |= byte ^ candidate.get(i).copied().unwrap_or(!byte);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// TLS for the gRPC port: the server's certificate chain and key (PEM), and
/// optionally a CA whose certificates clients must present (mTLS).
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: Password,
    pub(crate) client_ca_pem: Option<String>,
}

impl TlsConfig {
    /// Serve TLS with this certificate chain and private key (PEM).
    pub fn new(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        TlsConfig {
            cert_pem: cert_pem.into(),
            key_pem: Password::new(key_pem),
            client_ca_pem: None,
        }
    }

    /// Require client certificates signed by this CA (PEM).
    pub fn with_client_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("key", &"***")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish()
    }
}

/// How to run a server. Build with [`Config::new`] and the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen for gRPC (port 0: any free port).
    pub listen: SocketAddr,
    /// The backing store's URL (default `memory://`).
    pub store: String,
    /// A locker to serve instead of connecting to `store` (embedding, tests).
    pub locker: Option<Arc<dyn Locker>>,
    /// Where to serve Prometheus metrics over HTTP, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Required from every client, if set.
    pub password: Option<Password>,
    /// When a lost session's leases are released.
    pub disconnect_grace: DisconnectGrace,
    /// A session that sends nothing for this long is over.
    pub session_timeout: Duration,
    /// Limits.
    pub limits: Limits,
    /// How long `shutdown` waits for calls in flight.
    pub drain_timeout: Duration,
    /// TLS (and mTLS) for the gRPC port; plaintext when `None`.
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("store", &distlock_core::redact_url(&self.store))
            .field(
                "locker",
                &self.locker.as_ref().map(|l| l.capabilities().backend),
            )
            .field("metrics", &self.metrics)
            .field("password", &self.password)
            .field("disconnect_grace", &self.disconnect_grace)
            .field("session_timeout", &self.session_timeout)
            .field("limits", &self.limits)
            .field("drain_timeout", &self.drain_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Config {
    /// Listen on `listen`, serve `memory://`, no password, 15 s session timeout.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listen,
            store: "memory://".to_owned(),
            locker: None,
            metrics: None,
            password: None,
            disconnect_grace: DisconnectGrace::default(),
            session_timeout: Duration::from_secs(15),
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Serve the store `url` names.
    pub fn with_store(mut self, url: impl Into<String>) -> Self {
        self.store = url.into();
        self
    }

    /// Serve this locker.
    pub fn with_locker(mut self, locker: Arc<dyn Locker>) -> Self {
        self.locker = Some(locker);
        self
    }

    /// Serve metrics at `addr`.
    pub fn with_metrics(mut self, addr: SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// Require a password.
    pub fn with_password(mut self, password: Password) -> Self {
        self.password = Some(password);
        self
    }

    /// Set the disconnect grace.
    pub fn with_disconnect_grace(mut self, grace: DisconnectGrace) -> Self {
        self.disconnect_grace = grace;
        self
    }

    /// Set the session timeout.
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Serve TLS.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Set the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}
