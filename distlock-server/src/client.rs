//! The `distlock://` backend: a [`Store`] speaking to a distlock server.
//!
//! Acquire is one `TryLock` call with the key the core chose (a retried or
//! abandoned acquire can always be released by that key); waiting, the lost
//! signal and batched background refresh come from
//! [`StoreLocker`](distlock_core::StoreLocker). Each refresh batch travels as one
//! keepalive on the connection's session stream, so the server can tell a
//! client that went away and release its locks after the disconnect grace.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Connector, Error, Grant, Holder, Info, LeaseKey,
    Locker, RefreshRequest, Refreshed, Result, Store, StoreLocker, Wakeup, parse_url, redact_url,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use url::Url;

use crate::error::{BACKEND, ClientError, Op, from_status};
use crate::proto::admin_service_client::AdminServiceClient;
use crate::proto::lock_service_client::LockServiceClient;
use crate::proto::{self as pb, RefreshOutcome, session_request, session_response};
use crate::{PASSWORD_HEADER, SESSION_HEADER};

/// The schemes this backend serves.
pub const SCHEMES: &[&str] = &["distlock", "distlocks"];

/// The port a server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7420;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed attempt to open a session, calls go without one for this long.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key_bytes(key: LeaseKey) -> Bytes {
    Bytes::copy_from_slice(&key.as_u128().to_be_bytes())
}

/// Milliseconds, rounded up: the server's lease is never shorter than ours.
fn ceil_ms(d: Duration) -> u64 {
    d.as_nanos()
        .div_ceil(1_000_000)
        .try_into()
        .unwrap_or(u64::MAX)
}

/// A [`Store`] over a distlock server. Cheap to clone.
#[derive(Clone)]
pub struct GrpcStore {
    inner: Arc<Inner>,
}

struct Inner {
    caps: Capabilities,
    client: LockServiceClient<Channel>,
    /// The operators' calls (force release), on the same connection.
    admin: AdminServiceClient<Channel>,
    password: Option<AsciiMetadataValue>,
    target: String,
    session: tokio::sync::Mutex<SessionSlot>,
}

#[derive(Default)]
struct SessionSlot {
    live: Option<Arc<LiveSession>>,
    failed_at: Option<Instant>,
}

impl fmt::Debug for GrpcStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcStore")
            .field("server", &self.inner.target)
            .field("backend", &self.inner.caps.backend)
            .field("password", &self.inner.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// One open session stream.
struct LiveSession {
    id: String,
    tx: mpsc::Sender<pb::SessionRequest>,
    shared: Arc<SessionShared>,
}

#[derive(Default)]
struct SessionShared {
    pending: Mutex<HashMap<u64, oneshot::Sender<pb::KeepaliveAck>>>,
    alive: AtomicBool,
    seq: AtomicU64,
    last_sent: Mutex<Option<Instant>>,
}

impl LiveSession {
    fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    async fn send(&self, leases: Vec<pb::LeaseRef>) -> Option<oneshot::Receiver<pb::KeepaliveAck>> {
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (answer, receiver) = oneshot::channel();
        locked(&self.shared.pending).insert(seq, answer);
        let message = pb::SessionRequest {
            kind: Some(session_request::Kind::Keepalive(pb::Keepalive {
                seq,
                leases,
            })),
        };
        if self.tx.send(message).await.is_err() {
            self.shared.alive.store(false, Ordering::Release);
            locked(&self.shared.pending).remove(&seq);
            return None;
        }
        *locked(&self.shared.last_sent) = Some(Instant::now());
        Some(receiver)
    }
}

impl GrpcStore {
    fn request<T>(&self, message: T, session: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        if let Some(password) = &self.inner.password {
            request
                .metadata_mut()
                .insert(PASSWORD_HEADER, password.clone());
        }
        if let Some(id) = session
            && let Ok(value) = MetadataValue::try_from(id)
        {
            request.metadata_mut().insert(SESSION_HEADER, value);
        }
        request
    }

    fn client(&self) -> LockServiceClient<Channel> {
        self.inner.client.clone()
    }

    /// The id of the session stream currently open, if any.
    pub async fn session_id(&self) -> Option<String> {
        self.session().await.map(|s| s.id.clone())
    }

    /// The open session, opening one if needed (and not failing repeatedly).
    async fn session(&self) -> Option<Arc<LiveSession>> {
        let mut slot = self.inner.session.lock().await;
        if let Some(live) = &slot.live {
            if live.is_alive() {
                return Some(live.clone());
            }
            slot.live = None;
        }
        if slot
            .failed_at
            .is_some_and(|at| at.elapsed() < REOPEN_BACKOFF)
        {
            return None;
        }
        match tokio::time::timeout(OPEN_TIMEOUT, self.open_session()).await {
            Ok(Ok(live)) => {
                slot.live = Some(live.clone());
                slot.failed_at = None;
                Some(live)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not open a session");
                slot.failed_at = Some(Instant::now());
                None
            }
            Err(_) => {
                slot.failed_at = Some(Instant::now());
                None
            }
        }
    }

    async fn open_session(&self) -> Result<Arc<LiveSession>> {
        let (tx, rx) = mpsc::channel(64);
        let mut request = Request::new(ReceiverStream::new(rx));
        if let Some(password) = &self.inner.password {
            request
                .metadata_mut()
                .insert(PASSWORD_HEADER, password.clone());
        }
        let mut inbound = self
            .client()
            .session(request)
            .await
            .map_err(|s| from_status(&s, Op::Read))?
            .into_inner();
        let opened = match inbound.message().await {
            Ok(Some(pb::SessionResponse {
                kind: Some(session_response::Kind::Opened(opened)),
            })) => opened,
            Ok(_) => {
                return Err(Error::store(
                    BACKEND,
                    ClientError::Protocol("the session stream did not open".to_owned()),
                ));
            }
            Err(status) => return Err(from_status(&status, Op::Read)),
        };
        let shared = Arc::new(SessionShared {
            alive: AtomicBool::new(true),
            ..SessionShared::default()
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(session_response::Kind::Ack(ack)) = message.kind
                    && let Some(answer) = locked(&reader.pending).remove(&ack.seq)
                {
                    let _ = answer.send(ack);
                }
            }
            reader.alive.store(false, Ordering::Release);
            locked(&reader.pending).clear();
        });
        let live = Arc::new(LiveSession {
            id: opened.session_id,
            tx,
            shared,
        });
        let heartbeat = Duration::from_millis(opened.heartbeat_ms.max(100));
        tokio::spawn(heartbeats(Arc::downgrade(&live), heartbeat));
        Ok(live)
    }

    async fn refresh_unary(&self, leases: Vec<pb::LeaseRef>, resource: &str) -> Result<Vec<i32>> {
        let answer = self
            .client()
            .refresh(self.request(pb::RefreshRequest { leases }, None))
            .await
            .map_err(|s| from_status(&s, Op::Write("refresh", resource)))?;
        Ok(answer.into_inner().outcomes)
    }
}

/// Say "alive" on an idle session; stops when the session is gone.
async fn heartbeats(session: Weak<LiveSession>, every: Duration) {
    loop {
        tokio::time::sleep(every / 2).await;
        let Some(live) = session.upgrade() else {
            return;
        };
        if !live.is_alive() {
            return;
        }
        let idle = locked(&live.shared.last_sent).is_none_or(|at| at.elapsed() >= every);
        if idle && let Some(answer) = live.send(Vec::new()).await {
            drop(answer);
        }
    }
}

impl Store for GrpcStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let session = self.session().await;
        let message = pb::LockRequest {
            resource: request.resource.to_owned(),
            key: key_bytes(request.key),
            ttl_ms: ceil_ms(request.ttl),
            permits: request.permits,
            owner: request.owner.to_owned(),
            data: request.data.clone(),
            wait_timeout_ms: None,
        };
        let answer = self
            .client()
            .try_lock(self.request(message, session.as_deref().map(|s| s.id.as_str())))
            .await
            .map_err(|s| from_status(&s, Op::Write("acquire", request.resource)))?
            .into_inner();
        if answer.granted {
            Ok(Acquired::Granted(Grant::new(
                answer.token,
                UNIX_EPOCH + Duration::from_millis(answer.expires_at_unix_ms),
            )))
        } else {
            Ok(Acquired::Held {
                retry_after: answer.retry_after_ms.map(Duration::from_millis),
            })
        }
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let Some(first) = leases.first() else {
            return Ok(Vec::new());
        };
        let resource = first.resource;
        let refs: Vec<pb::LeaseRef> = leases
            .iter()
            .map(|l| pb::LeaseRef {
                resource: l.resource.to_owned(),
                key: key_bytes(l.key),
                ttl_ms: ceil_ms(l.ttl),
            })
            .collect();
        let outcomes = match self.session().await {
            Some(live) => {
                let unknown = |why: &str| Error::OutcomeUnknown {
                    backend: BACKEND,
                    operation: "refresh",
                    resource: resource.to_owned(),
                    source: why.to_owned().into(),
                };
                let Some(answer) = live.send(refs).await else {
                    return Err(unknown("the session stream closed"));
                };
                let ack = match tokio::time::timeout(CALL_TIMEOUT, answer).await {
                    Ok(Ok(ack)) => ack,
                    Ok(Err(_)) => return Err(unknown("the session stream closed")),
                    Err(_) => {
                        live.shared.alive.store(false, Ordering::Release);
                        return Err(unknown("no answer on the session stream"));
                    }
                };
                if let Some(detail) = ack.error {
                    let status = tonic::Status::with_details(
                        tonic::Code::Unknown,
                        detail.reason.clone(),
                        detail.encode_to_vec().into(),
                    );
                    return Err(from_status(&status, Op::Write("refresh", resource)));
                }
                ack.outcomes
            }
            None => self.refresh_unary(refs, resource).await?,
        };
        if outcomes.len() != leases.len() {
            return Err(Error::store(
                BACKEND,
                ClientError::Protocol(format!(
                    "{} refresh outcomes for {} leases",
                    outcomes.len(),
                    leases.len()
                )),
            ));
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                if o == RefreshOutcome::Renewed as i32 {
                    Refreshed::Renewed
                } else {
                    Refreshed::NotHeld
                }
            })
            .collect())
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let message = pb::UnlockRequest {
            resource: resource.to_owned(),
            key: key_bytes(key),
        };
        match self.client().unlock(self.request(message, None)).await {
            Ok(_) => Ok(true),
            Err(status) => match from_status(&status, Op::Write("release", resource)) {
                Error::NotHeld { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        let message = pb::ResourceRequest {
            resource: resource.to_owned(),
        };
        let answer = self
            .client()
            .info(self.request(message, None))
            .await
            .map_err(|s| from_status(&s, Op::Read))?
            .into_inner();
        if !answer.held || answer.holders.is_empty() {
            return Ok(None);
        }
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let holders = answer
            .holders
            .into_iter()
            .map(|h| {
                Holder::new(
                    h.owner,
                    h.token,
                    at(h.acquired_at_unix_ms),
                    at(h.expires_at_unix_ms),
                )
            })
            .collect();
        Ok(Some(Info::new(resource, answer.permits, holders)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        let message = pb::ResourceRequest {
            resource: resource.to_owned(),
        };
        let answer = self
            .client()
            .read(self.request(message, None))
            .await
            .map_err(|s| from_status(&s, Op::Read))?
            .into_inner();
        Ok(answer.held.then_some(answer.data))
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        let message = pb::ForceReleaseRequest {
            resource: resource.to_owned(),
        };
        let answer = self
            .inner
            .admin
            .clone()
            .force_release(self.request(message, None))
            .await
            .map_err(|s| from_status(&s, Op::Write("force release", resource)))?
            .into_inner();
        Ok(usize::try_from(answer.released).unwrap_or(usize::MAX))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let message = pb::ListRequest {
            prefix: prefix.to_owned(),
        };
        let answer = self
            .client()
            .list(self.request(message, None))
            .await
            .map_err(|s| from_status(&s, Op::Read))?
            .into_inner();
        Ok(answer.resources)
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let message = pb::ResourceRequest {
            resource: resource.to_owned(),
        };
        let mut request = self.request(message, None);
        // A watch lasts as long as the wait: no call timeout.
        request.metadata_mut().remove("grpc-timeout");
        let Ok(answer) = self.client().watch(request).await else {
            return Ok(None); // the core polls instead
        };
        let mut stream = answer.into_inner();
        match tokio::time::timeout(CALL_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(_armed))) => {}
            _ => return Ok(None),
        }
        Ok(Some(Box::pin(async move {
            let _ = stream.message().await;
        })))
    }
}

/// Serves `distlock://[:PASSWORD@]HOST[:PORT]` (port 7420 by default) and
/// `distlocks://…?ca=PATH[&cert=PATH&key=PATH][&domain=NAME]` (TLS, mTLS).
#[derive(Debug, Clone, Copy, Default)]
pub struct DistlockConnector;

#[async_trait]
impl Connector for DistlockConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let store = connect_store(url).await?;
        Ok(Arc::new(StoreLocker::new(store)))
    }
}

/// Connect to a server by URL (`distlock://[:PASSWORD@]HOST[:PORT]`).
///
/// # Errors
/// [`Error::InvalidUrl`] for a URL this backend cannot use; [`Error::Unavailable`]
/// when the server does not answer; [`Error::Store`] with a
/// [`ClientError::Unauthenticated`] source for a wrong password.
pub async fn connect(url: &str) -> Result<Arc<dyn Locker>> {
    DistlockConnector.connect(&parse_url(url)?).await
}

/// Connect and return the [`Store`] itself (wrap it in a `StoreLocker`).
///
/// # Errors
/// As [`connect`].
pub async fn connect_store(url: &Url) -> Result<GrpcStore> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: redact_url(url.as_str()),
        reason: reason.to_owned(),
    };
    if !SCHEMES.contains(&url.scheme()) {
        return Err(invalid("the distlock backend serves distlock:// only"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(invalid("name the server: distlock://HOST[:PORT]"));
    };
    if !url.username().is_empty() {
        return Err(invalid(
            "no user name: put the password alone, distlock://:PASSWORD@HOST:PORT",
        ));
    }
    let tls = url.scheme() == "distlocks";
    if !matches!(url.path(), "" | "/")
        || url.fragment().is_some()
        || (!tls && url.query().is_some())
    {
        return Err(invalid(
            "distlock:// takes no path or options: distlock://[:PASSWORD@]HOST[:PORT], or \
             distlocks://[:PASSWORD@]HOST[:PORT]?ca=PEM[&cert=PEM&key=PEM][&domain=NAME] for TLS",
        ));
    }
    let mut files: HashMap<String, String> = HashMap::new();
    for (name, value) in url.query_pairs() {
        if !matches!(&*name, "ca" | "cert" | "key" | "domain") || files.contains_key(&*name) {
            return Err(invalid(
                "distlocks:// options are ca=PATH, cert=PATH, key=PATH and domain=NAME, once each",
            ));
        }
        files.insert(name.into_owned(), value.into_owned());
    }
    let password = match url.password() {
        None => None,
        Some(encoded) => {
            let decoded = percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .map_err(|_| invalid("the password is not UTF-8"))?;
            Some(
                AsciiMetadataValue::try_from(decoded.as_ref())
                    .map_err(|_| invalid("the password must be printable ASCII"))?,
            )
        }
    };
    let port = url.port().unwrap_or(DEFAULT_PORT);
    let target = format!("{host}:{port}");
    let mut endpoint =
        Endpoint::from_shared(format!("{}://{target}", if tls { "https" } else { "http" }))
            .map_err(|_| invalid("not a usable host and port"))?;
    if tls {
        let read = |option: &str| -> Result<Option<String>> {
            files
                .get(option)
                .map(|path| {
                    std::fs::read_to_string(path).map_err(|e| {
                        invalid(&format!("cannot read the {option}= file `{path}`: {e}"))
                    })
                })
                .transpose()
        };
        let domain = files.get("domain").cloned().unwrap_or_else(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        });
        let mut config = ClientTlsConfig::new().domain_name(domain);
        match read("ca")? {
            Some(ca) => config = config.ca_certificate(Certificate::from_pem(ca)),
            None => return Err(invalid("distlocks:// needs ca=PATH (the server's CA, PEM)")),
        }
        match (read("cert")?, read("key")?) {
            (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "give both cert= and key= for a client certificate, or neither",
                ));
            }
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| invalid(&format!("TLS settings refused: {e}")))?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect_lazy();
    let admin = AdminServiceClient::new(channel.clone());
    let client = LockServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let mut request = Request::new(pb::CapabilitiesRequest {});
    request.set_timeout(OPEN_TIMEOUT);
    if let Some(password) = &password {
        request
            .metadata_mut()
            .insert(PASSWORD_HEADER, password.clone());
    }
    let caps =
        match tokio::time::timeout(OPEN_TIMEOUT, client.clone().get_capabilities(request)).await {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(status)) => return Err(from_status(&status, Op::Read)),
            Err(_) => {
                return Err(Error::unavailable(
                    BACKEND,
                    format!("no answer from {target} within {OPEN_TIMEOUT:?}"),
                ));
            }
        };
    let ms = Duration::from_millis;
    let capabilities = Capabilities::new(BACKEND)
        .with_min_ttl(ms(caps.min_ttl_ms))
        .with_max_ttl(ms(caps.max_ttl_ms))
        .with_max_permits(caps.max_permits)
        .with_max_data_len(usize::try_from(caps.max_data_len).unwrap_or(usize::MAX))
        .with_max_resource_len(usize::try_from(caps.max_resource_len).unwrap_or(usize::MAX))
        .with_push_wakeup(true)
        .with_batch_refresh(true)
        // The store's own margin, plus a millisecond of rounding.
        .with_clock_margin(ms(caps.clock_margin_ms) + ms(1));
    let store = GrpcStore {
        inner: Arc::new(Inner {
            caps: capabilities,
            client,
            admin,
            password,
            target,
            session: tokio::sync::Mutex::default(),
        }),
    };
    // Open the session now, so that the first locks already belong to it; a
    // refusal (a limit, the password) is the caller's error, a transient
    // failure is retried by the first call that needs the session.
    match tokio::time::timeout(OPEN_TIMEOUT, store.open_session()).await {
        Ok(Ok(live)) => store.inner.session.lock().await.live = Some(live),
        Ok(Err(error)) if !error.is_transient() => return Err(error),
        _ => {}
    }
    Ok(store)
}
