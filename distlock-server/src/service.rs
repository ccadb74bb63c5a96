//! The gRPC services: requests checked and forwarded to the backend.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use distlock_core::{Error, LeaseKey, LockOptions, validate_prefix, validate_resource};
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{draining, invalid, limit, to_status, unauthenticated};
use crate::proto::admin_service_server::AdminService;
use crate::proto::lock_service_server::LockService;
use crate::proto::{self as pb, RefreshOutcome, session_request, session_response, watch_event};
use crate::state::{Lease, LeaseId, State};
use crate::{PASSWORD_HEADER, PROTOCOL_VERSION, SESSION_HEADER};

/// Checks the password of every request.
#[derive(Clone, Debug)]
pub(crate) struct Auth {
    pub(crate) state: Arc<State>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(password) = &self.state.config.password else {
            return Ok(request);
        };
        match request.metadata().get(PASSWORD_HEADER) {
            Some(given) if password.matches(given.as_bytes()) => Ok(request),
            _ => {
                self.state.metrics.error("unauthenticated");
                tracing::warn!(peer = ?request.remote_addr(), "request with a missing or wrong password");
                Err(unauthenticated())
            }
        }
    }
}

pub(crate) fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

fn parse_key(bytes: &[u8]) -> Result<LeaseKey, Status> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| {
        invalid(
            "key",
            format!("a lease key is 16 bytes, got {}", bytes.len()),
        )
    })?;
    Ok(LeaseKey::from_u128(u128::from_be_bytes(array)))
}

fn session_of<T>(request: &Request<T>) -> Option<u64> {
    let value = request.metadata().get(SESSION_HEADER)?.to_str().ok()?;
    u64::from_str_radix(value, 16).ok()
}

/// The lock service.
#[derive(Debug, Clone)]
pub(crate) struct LockApi {
    pub(crate) state: Arc<State>,
}

impl LockApi {
    fn check_resource(&self, resource: &str) -> Result<(), Status> {
        let max = self.state.locker.capabilities().max_resource_len;
        validate_resource(resource, max).map_err(|e| self.fail(&e))
    }

    fn fail(&self, error: &Error) -> Status {
        self.state.record_error(error);
        to_status(error)
    }

    async fn grant(
        &self,
        r: pb::LockRequest,
        session: Option<u64>,
        wait: bool,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let state = &self.state;
        if state.draining.load(Ordering::Acquire) {
            return Err(draining());
        }
        self.check_resource(&r.resource)?;
        let key = parse_key(&r.key)?;
        let id: LeaseId = (r.resource.clone(), key);
        if let Some(lease) = state.lease(&id) {
            // A retry of a request that was granted: the same answer.
            return Ok(Response::new(pb::LockResponse {
                granted: true,
                token: lease.token,
                expires_at_unix_ms: unix_ms(SystemTime::now()) + lease.ttl.as_millis() as u64,
                retry_after_ms: None,
            }));
        }
        if let Some(session) = session {
            let held = state
                .tables()
                .sessions
                .get(&session)
                .map_or(0, |s| s.leases.len());
            let max = state.config.limits.max_locks_per_session;
            if held >= max {
                state.metrics.error("limit");
                return Err(limit(
                    "max_locks_per_session",
                    format!("this session already holds {held} locks (the limit is {max})"),
                ));
            }
        }
        let ttl = ms(r.ttl_ms);
        let mut options = LockOptions::new()
            .with_ttl(ttl)
            .with_permits(r.permits)
            .with_data(r.data)
            .manual_refresh();
        if !r.owner.is_empty() {
            options = options.with_owner(r.owner.clone());
        }
        let received = Instant::now();
        let outcome = if wait {
            options.wait_timeout = r.wait_timeout_ms.map(ms);
            let Some(_waiter) = state.watch(&r.resource) else {
                state.metrics.error("limit");
                return Err(limit(
                    "max_waiters_per_resource",
                    format!(
                        "{} callers already wait for this resource",
                        state.config.limits.max_waiters_per_resource
                    ),
                ));
            };
            let mut shutdown = state.shutdown.clone();
            tokio::select! {
                outcome = state.locker.lock(&r.resource, &options) => outcome.map(Some),
                _ = shutdown.wait_for(|down| *down) => return Err(draining()),
            }
        } else {
            state.locker.try_lock(&r.resource, &options).await
        };
        let lock = match outcome {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return Ok(Response::new(pb::LockResponse {
                    granted: false,
                    ..Default::default()
                }));
            }
            Err(error) => return Err(self.fail(&error)),
        };
        let token = lock.token();
        // A waited grant counts its TTL from the grant.
        let from = if wait { Instant::now() } else { received };
        let server_key = lock.detach();
        let lease = Lease {
            server_key,
            token,
            owner: r.owner,
            ttl,
            expires: from + ttl,
            session,
        };
        if !state.insert_lease(id, lease) {
            let _ = state.locker.release(&r.resource, server_key).await;
            state.metrics.error("limit");
            return Err(limit(
                "max_locks_per_session",
                "this session holds as many locks as the server allows".to_owned(),
            ));
        }
        state.metrics.grants.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(pb::LockResponse {
            granted: true,
            token,
            expires_at_unix_ms: unix_ms(SystemTime::now() + ttl),
            retry_after_ms: None,
        }))
    }
}

/// Renew a batch; the answer has one outcome per lease, or the batch failed.
pub(crate) async fn renew_batch(
    state: &State,
    leases: Vec<pb::LeaseRef>,
    session: Option<u64>,
) -> Result<Vec<i32>, Status> {
    let received = Instant::now();
    let max = state.locker.capabilities().max_resource_len;
    let mut parsed = Vec::with_capacity(leases.len());
    for lease in leases {
        validate_resource(&lease.resource, max).map_err(|e| to_status(&e))?;
        let key = parse_key(&lease.key)?;
        parsed.push(((lease.resource, key), ms(lease.ttl_ms)));
    }
    let answers = join_all(parsed.iter().map(|(id, ttl)| async move {
        let Some(lease) = state.lease(id) else {
            return Ok(RefreshOutcome::NotHeld);
        };
        match state.locker.refresh(&id.0, lease.server_key, *ttl).await {
            Ok(()) if state.renewed(id, *ttl, received, session) => {
                state.metrics.renewals.fetch_add(1, Ordering::Relaxed);
                Ok(RefreshOutcome::Renewed)
            }
            // Renewed in the store, but the entry was swept, reaped or
            // force-released meanwhile, and its release is under way.
            Ok(()) => Ok(RefreshOutcome::NotHeld),
            Err(Error::NotHeld { .. }) => {
                state.remove_lease(id);
                state.wake(&id.0);
                Ok(RefreshOutcome::NotHeld)
            }
            Err(error) => Err(error),
        }
    }))
    .await;
    answers
        .into_iter()
        .map(|answer| match answer {
            Ok(outcome) => Ok(outcome as i32),
            Err(error) => {
                state.record_error(&error);
                Err(to_status(&error))
            }
        })
        .collect()
}

type ServiceStream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl LockService for LockApi {
    async fn get_capabilities(
        &self,
        _request: Request<pb::CapabilitiesRequest>,
    ) -> Result<Response<pb::CapabilitiesResponse>, Status> {
        let caps = self.state.locker.capabilities();
        let limits = &self.state.config.limits;
        Ok(Response::new(pb::CapabilitiesResponse {
            backend: caps.backend.to_owned(),
            min_ttl_ms: caps.min_ttl.as_millis() as u64,
            max_ttl_ms: caps.max_ttl.as_millis().try_into().unwrap_or(u64::MAX),
            max_permits: caps.max_permits,
            // Leave room for the rest of the message.
            max_data_len: caps
                .max_data_len
                .min(limits.max_message_bytes.saturating_sub(4096))
                as u64,
            max_resource_len: caps.max_resource_len as u64,
            clock_margin_ms: caps.clock_margin.as_millis().try_into().unwrap_or(u64::MAX),
            protocol_version: PROTOCOL_VERSION,
            max_locks_per_session: limits.max_locks_per_session as u64,
        }))
    }

    async fn try_lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let session = self.state.live_session(session_of(&request));
        self.grant(request.into_inner(), session, false).await
    }

    async fn lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let session = self.state.live_session(session_of(&request));
        self.grant(request.into_inner(), session, true).await
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let r = request.into_inner();
        self.check_resource(&r.resource)?;
        let id: LeaseId = (r.resource.clone(), parse_key(&r.key)?);
        let Some(lease) = self.state.lease(&id) else {
            return Err(self.fail(&Error::not_held(&r.resource)));
        };
        match self
            .state
            .locker
            .release(&r.resource, lease.server_key)
            .await
        {
            Ok(()) => {
                self.state.remove_lease(&id);
                self.state.wake(&r.resource);
                self.state.metrics.releases.fetch_add(1, Ordering::Relaxed);
                Ok(Response::new(pb::UnlockResponse {}))
            }
            Err(error) => {
                if matches!(error, Error::NotHeld { .. }) {
                    self.state.remove_lease(&id);
                    self.state.wake(&r.resource);
                }
                Err(self.fail(&error))
            }
        }
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let session = self.state.live_session(session_of(&request));
        let outcomes = renew_batch(&self.state, request.into_inner().leases, session).await?;
        Ok(Response::new(pb::RefreshResponse { outcomes }))
    }

    async fn info(
        &self,
        request: Request<pb::ResourceRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let resource = request.into_inner().resource;
        self.check_resource(&resource)?;
        let info = self
            .state
            .locker
            .info(&resource)
            .await
            .map_err(|e| self.fail(&e))?;
        Ok(Response::new(match info {
            None => pb::InfoResponse::default(),
            Some(info) => pb::InfoResponse {
                held: true,
                permits: info.permits,
                holders: info
                    .holders
                    .into_iter()
                    .map(|h| pb::Holder {
                        owner: h.owner,
                        token: h.token,
                        acquired_at_unix_ms: unix_ms(h.acquired_at),
                        expires_at_unix_ms: unix_ms(h.expires_at),
                    })
                    .collect(),
            },
        }))
    }

    async fn read(
        &self,
        request: Request<pb::ResourceRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let resource = request.into_inner().resource;
        self.check_resource(&resource)?;
        let data = self
            .state
            .locker
            .read(&resource)
            .await
            .map_err(|e| self.fail(&e))?;
        Ok(Response::new(pb::ReadResponse {
            held: data.is_some(),
            data: data.unwrap_or_default(),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let prefix = request.into_inner().prefix;
        validate_prefix(&prefix, self.state.locker.capabilities().max_resource_len)
            .map_err(|e| self.fail(&e))?;
        let resources = self
            .state
            .locker
            .list(&prefix)
            .await
            .map_err(|e| self.fail(&e))?;
        Ok(Response::new(pb::ListResponse { resources }))
    }

    type SessionStream = ServiceStream<pb::SessionResponse>;

    async fn session(
        &self,
        request: Request<Streaming<pb::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let state = self.state.clone();
        if state.draining.load(Ordering::Acquire) {
            return Err(draining());
        }
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let Some(id) = state.open_session(peer.clone()) else {
            state.metrics.error("limit");
            return Err(limit(
                "max_sessions",
                format!("{} sessions are open", state.config.limits.max_sessions),
            ));
        };
        tracing::info!(session = format_args!("{id:016x}"), %peer, "session opened");
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let timeout = state.config.session_timeout;
        let opened = pb::SessionResponse {
            kind: Some(session_response::Kind::Opened(pb::SessionOpened {
                session_id: format!("{id:016x}"),
                heartbeat_ms: (timeout / 3).as_millis() as u64,
                timeout_ms: timeout.as_millis() as u64,
            })),
        };
        let _ = tx.send(Ok(opened)).await;
        tokio::spawn(async move {
            let mut shutdown = state.shutdown.clone();
            loop {
                let next = tokio::select! {
                    _ = shutdown.wait_for(|down| *down) => break,
                    _ = tx.closed() => break,
                    next = tokio::time::timeout(timeout, inbound.message()) => next,
                };
                let message = match next {
                    Err(_) => {
                        tracing::info!(session = format_args!("{id:016x}"), "session timed out");
                        break;
                    }
                    Ok(Err(status)) => {
                        tracing::debug!(session = format_args!("{id:016x}"), %status, "session stream broke");
                        break;
                    }
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(message))) => message,
                };
                let Some(session_request::Kind::Keepalive(keepalive)) = message.kind else {
                    continue;
                };
                state.count_keepalive(id);
                let ack = match renew_batch(&state, keepalive.leases, Some(id)).await {
                    Ok(outcomes) => pb::KeepaliveAck {
                        seq: keepalive.seq,
                        outcomes,
                        error: None,
                    },
                    Err(status) => pb::KeepaliveAck {
                        seq: keepalive.seq,
                        outcomes: Vec::new(),
                        error: Some(prost::Message::decode(status.details()).unwrap_or_default()),
                    },
                };
                let answer = pb::SessionResponse {
                    kind: Some(session_response::Kind::Ack(ack)),
                };
                if tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
            state.close_session(id);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type WatchStream = ServiceStream<pb::WatchEvent>;

    async fn watch(
        &self,
        request: Request<pb::ResourceRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let resource = request.into_inner().resource;
        self.check_resource(&resource)?;
        let Some(guard) = self.state.watch(&resource) else {
            self.state.metrics.error("limit");
            return Err(limit(
                "max_waiters_per_resource",
                format!(
                    "{} callers already wait for this resource",
                    self.state.config.limits.max_waiters_per_resource
                ),
            ));
        };
        let notified = guard.notify.clone().notified_owned();
        let mut notified = Box::pin(notified);
        notified.as_mut().enable();
        let (tx, rx) = mpsc::channel(2);
        let event = |kind: watch_event::Kind| Ok(pb::WatchEvent { kind: kind as i32 });
        let _ = tx.send(event(watch_event::Kind::Armed)).await;
        let mut shutdown = self.state.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = notified => {}
                _ = shutdown.wait_for(|down| *down) => {}
                _ = tx.closed() => return,
            }
            let _ = tx.send(event(watch_event::Kind::Released)).await;
            drop(guard);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The operators' service.
#[derive(Debug, Clone)]
pub(crate) struct AdminApi {
    pub(crate) state: Arc<State>,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_locks(
        &self,
        request: Request<pb::ListLocksRequest>,
    ) -> Result<Response<pb::ListLocksResponse>, Status> {
        let prefix = request.into_inner().prefix;
        let now = Instant::now();
        let mut locks: Vec<pb::LockEntry> = self
            .state
            .tables()
            .leases
            .iter()
            .filter(|((resource, _), _)| resource.starts_with(&prefix))
            .map(|((resource, _), lease)| pb::LockEntry {
                resource: resource.clone(),
                token: lease.token,
                owner: lease.owner.clone(),
                session_id: lease
                    .session
                    .map(|s| format!("{s:016x}"))
                    .unwrap_or_default(),
                ttl_ms: lease.ttl.as_millis() as u64,
                remaining_ms: if lease.expires >= now {
                    (lease.expires - now).as_millis() as i64
                } else {
                    -((now - lease.expires).as_millis() as i64)
                },
            })
            .collect();
        locks.sort_by(|a, b| (&a.resource, a.token).cmp(&(&b.resource, b.token)));
        Ok(Response::new(pb::ListLocksResponse { locks }))
    }

    async fn list_sessions(
        &self,
        _request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let mut sessions: Vec<pb::SessionEntry> = self
            .state
            .tables()
            .sessions
            .values()
            .map(|s| pb::SessionEntry {
                session_id: format!("{:016x}", s.id),
                peer: s.peer.clone(),
                locks: s.leases.len() as u64,
                keepalives: s.keepalives,
                connected: s.connected,
            })
            .collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn force_release(
        &self,
        request: Request<pb::ForceReleaseRequest>,
    ) -> Result<Response<pb::ForceReleaseResponse>, Status> {
        let resource = request.into_inner().resource;
        validate_resource(&resource, self.state.locker.capabilities().max_resource_len)
            .map_err(|e| to_status(&e))?;
        let released = self.state.force_release(&resource).await;
        tracing::warn!(%resource, released, "operator force-released a resource");
        Ok(Response::new(pb::ForceReleaseResponse { released }))
    }
}
