//! PostgreSQL waiters: one LISTEN connection per store, dispatching each
//! `NOTIFY` (sent by release, in the same statement) to the waiters of that
//! resource.
//!
//! A subscription is armed before [`Listener::subscribe`] returns: the
//! connection is listening, and the waiter's [`Notify`] future exists (tokio
//! guarantees `notify_waiters` reaches futures from the moment they are
//! created). When the connection drops, every waiter is woken (spurious
//! wake-ups are allowed; missed ones are not) and the listener reconnects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use distlock_core::{Backoff, Error, Result, Wakeup};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{Notify, watch};

/// How long a subscriber waits for the LISTEN connection before the waiter
/// falls back to polling for this round.
const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// First and longest pause between attempts to reconnect the LISTEN connection.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// A pool of its own (one connection) built from the store's options, so
    /// the listening connection never takes a slot of the store's pool.
    pool: PgPool,
    channel: String,
    /// Per-resource wake-ups; entries die with their last waiter.
    waiters: Mutex<Waiters>,
    /// `true` while the connection is listening.
    listening: watch::Sender<bool>,
    started: AtomicBool,
    stopped: AtomicBool,
    stop: Notify,
}

#[derive(Debug, Default)]
struct Waiters {
    map: HashMap<Box<str>, Weak<Notify>>,
    /// Sweep dead entries when the map grows past this.
    sweep_at: usize,
}

fn locked(m: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Listener {
    pub(crate) fn new(pool: PgPool, channel: String) -> Self {
        let options = (*pool.connect_options()).clone();
        let own = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(CONNECT_WAIT)
            .connect_lazy_with(options);
        let (listening, _) = watch::channel(false);
        Listener {
            shared: Arc::new(Shared {
                pool: own,
                channel,
                waiters: Mutex::new(Waiters::default()),
                listening,
                started: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                stop: Notify::new(),
            }),
        }
    }

    pub(crate) fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify_one();
    }

    /// A wake-up for the next release of `resource`, armed on return.
    pub(crate) async fn subscribe(&self, resource: &str) -> Result<Wakeup> {
        let shared = &self.shared;
        if !shared.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(shared.clone()));
        }
        let mut listening = shared.listening.subscribe();
        for _ in 0..3 {
            match tokio::time::timeout(CONNECT_WAIT, listening.wait_for(|l| *l)).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
            let mut waiters = locked(&shared.waiters);
            // Checked under the lock the listener takes to report a lost
            // connection: either it is listening now, or it has not yet woken
            // the waiters of that loss and will wake this one too.
            if !*shared.listening.borrow() {
                continue;
            }
            let notify = match waiters.map.get(resource).and_then(Weak::upgrade) {
                Some(notify) => notify,
                None => {
                    let notify = Arc::new(Notify::new());
                    waiters.map.insert(resource.into(), Arc::downgrade(&notify));
                    if waiters.map.len() >= waiters.sweep_at {
                        waiters.map.retain(|_, w| w.strong_count() > 0);
                        waiters.sweep_at = (waiters.map.len() * 2).max(64);
                    }
                    notify
                }
            };
            let notified = notify.clone().notified_owned();
            drop(waiters);
            return Ok(Box::pin(async move {
                notified.await;
                drop(notify);
            }));
        }
        Err(Error::unavailable(
            "postgres",
            "the LISTEN connection is down; waiting by polling",
        ))
    }
}

impl Shared {
    fn wake(&self, resource: &str) {
        let waiters = locked(&self.waiters);
        if let Some(notify) = waiters.map.get(resource).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }

    fn set_listening(&self, listening: bool) {
        let waiters = locked(&self.waiters);
        self.listening.send_replace(listening);
        if !listening {
            // Notifications may have been lost: wake everyone to look again.
            for notify in waiters.map.values().filter_map(Weak::upgrade) {
                notify.notify_waiters();
            }
        }
    }
}

/// Marks the listener stopped however its task ends (a runtime shutting down
/// drops it mid-await): waiters are woken, and the next subscriber starts a
/// new task instead of trusting a dead one.
struct RunGuard(Arc<Shared>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.set_listening(false);
        self.0.started.store(false, Ordering::Release);
    }
}

async fn run(shared: Arc<Shared>) {
    let _guard = RunGuard(shared.clone());
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    while !shared.stopped.load(Ordering::Acquire) {
        let connected = async {
            let mut listener = PgListener::connect_with(&shared.pool).await?;
            listener.eager_reconnect(false);
            listener.ignore_pool_close_event(true);
            listener.listen(&shared.channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shared.stop.notified() => break,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::debug!(%error, "LISTEN connection failed; retrying");
                    tokio::select! {
                        _ = shared.stop.notified() => break,
                        _ = tokio::time::sleep(backoff.next_pause()) => {}
                    }
                    continue;
                }
            },
        };
        backoff.reset();
        shared.set_listening(true);
        loop {
            let message = tokio::select! {
                _ = shared.stop.notified() => {
                    shared.set_listening(false);
                    return;
                }
                message = listener.try_recv() => message,
            };
            match message {
                Ok(Some(notification)) => shared.wake(notification.payload()),
                Ok(None) | Err(_) => {
                    tracing::debug!("LISTEN connection lost; waking all waiters and reconnecting");
                    shared.set_listening(false);
                    break;
                }
            }
        }
    }
    shared.set_listening(false);
}
