//! Push wake-up: one shared pub/sub connection per store.
//!
//! Release publishes on the resource's channel (`{P:R}:w`, see
//! [`crate::layout`]). A waiter asks [`Subscriber::subscribe`] for a wake-up:
//! the channel gets a [`Notify`] shared by every waiter of that resource in
//! this store, and is `SUBSCRIBE`d on the store's one pub/sub connection the
//! first time (the call returns only once the server confirmed it, so a release
//! after it cannot be missed). A background task reads the connection and wakes
//! the channel's waiters on each message.
//!
//! If the connection breaks, every waiter is woken (a spurious wake-up: it
//! tries once and subscribes again, on a new connection). Messages lost in
//! between are covered by the core, which never sleeps past the holder's
//! expiry. Channels nobody waits on any more are unsubscribed in batches.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use distlock_core::{Error, Result, Wakeup};
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{Notify, RwLock, oneshot};

use crate::error::{BACKEND, connect_error, map_error};

/// Unsubscribe idle channels when this many have piled up …
const IDLE_BATCH: usize = 256;
/// … or this often, if any.
const IDLE_SWEEP: Duration = Duration::from_secs(10);

/// The store's pub/sub side. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Subscriber {
    inner: Arc<Inner>,
}

struct Inner {
    config: crate::RedisConfig,
    timeout: Duration,
    state: Mutex<State>,
    /// `SUBSCRIBE`s hold it shared, the sweep's `UNSUBSCRIBE` exclusively, so
    /// that a new subscription is never undone by a sweep sent before it.
    gate: RwLock<()>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The live connection and its generation.
    connection: Option<(PubSubSink, u64)>,
    generation: u64,
    channels: HashMap<String, Channel>,
    idle: usize,
    /// Dropping it stops the reader task.
    stop: Option<oneshot::Sender<()>>,
}

struct Channel {
    notify: Arc<Notify>,
    waiters: usize,
    /// The connection generation on which the server confirmed the subscription.
    confirmed: Option<u64>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("Subscriber")
            .field("connected", &state.connection.is_some())
            .field("channels", &state.channels.len())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a channel's waiter count while a wake-up is alive.
struct Registration {
    inner: Arc<Inner>,
    channel: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        let idle = match state.channels.get_mut(&self.channel) {
            Some(channel) => {
                channel.waiters = channel.waiters.saturating_sub(1);
                channel.waiters == 0
            }
            None => false,
        };
        if idle {
            state.idle += 1;
            if state.idle >= IDLE_BATCH {
                state.idle = 0;
                drop(state);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(sweep(Arc::downgrade(&self.inner)));
                }
            }
        }
    }
}

impl Subscriber {
    pub(crate) fn new(config: crate::RedisConfig, timeout: Duration) -> Self {
        Subscriber {
            inner: Arc::new(Inner {
                config,
                timeout,
                state: Mutex::default(),
                gate: RwLock::new(()),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A wake-up for the next message on `channel`, armed before this returns.
    ///
    /// # Errors
    /// [`Unavailable`](Error::Unavailable) if the subscription could not be
    /// confirmed (the caller polls instead).
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<Wakeup> {
        let (notified, registration, confirmed) = {
            let mut state = self.inner.lock();
            let current = state.connection.as_ref().map(|(_, generation)| *generation);
            let entry = state
                .channels
                .entry(channel.to_owned())
                .or_insert_with(|| Channel {
                    notify: Arc::new(Notify::new()),
                    waiters: 0,
                    confirmed: None,
                });
            entry.waiters += 1;
            let was_idle = entry.waiters == 1 && entry.confirmed.is_some();
            // Armed under the lock: a message or a disconnection handled after
            // this point wakes us.
            let mut notified = Box::pin(entry.notify.clone().notified_owned());
            notified.as_mut().enable();
            let confirmed = current.is_some() && entry.confirmed == current;
            if was_idle {
                state.idle = state.idle.saturating_sub(1);
            }
            (
                notified,
                Registration {
                    inner: self.inner.clone(),
                    channel: channel.to_owned(),
                },
                confirmed,
            )
        };
        if !confirmed {
            let _shared = self.inner.gate.read().await;
            let (mut sink, generation) = self.connection().await?;
            match tokio::time::timeout(self.inner.timeout, sink.subscribe(channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    let endpoint = self.inner.config.endpoint();
                    return Err(map_error(error, &endpoint, "subscribe", channel, false));
                }
                Err(_) => {
                    return Err(Error::unavailable(
                        BACKEND,
                        format!(
                            "SUBSCRIBE was not confirmed in time by {}",
                            self.inner.config.endpoint()
                        ),
                    ));
                }
            }
            let mut state = self.inner.lock();
            let live = state.connection.as_ref().map(|(_, g)| *g) == Some(generation);
            if let Some(entry) = state.channels.get_mut(channel) {
                // On a connection that broke meanwhile, everyone was woken.
                if live {
                    entry.confirmed = Some(generation);
                }
            }
        }
        Ok(Box::pin(async move {
            let _registration = registration;
            notified.await;
        }))
    }

    /// The live connection, connecting if there is none.
    async fn connection(&self) -> Result<(PubSubSink, u64)> {
        if let Some((sink, generation)) = &self.inner.lock().connection {
            return Ok((sink.clone(), *generation));
        }
        let _one = self.inner.connecting.lock().await;
        if let Some((sink, generation)) = &self.inner.lock().connection {
            return Ok((sink.clone(), *generation));
        }
        let client = self.inner.config.client(false)?;
        let pubsub = tokio::time::timeout(self.inner.timeout, client.get_async_pubsub())
            .await
            .map_err(|_| {
                Error::unavailable(
                    BACKEND,
                    format!(
                        "pub/sub connection to {} timed out",
                        self.inner.config.endpoint()
                    ),
                )
            })?
            .map_err(|e| connect_error(e, &self.inner.config.endpoint()))?;
        let (sink, stream) = pubsub.split();
        let (stop, stopped) = oneshot::channel();
        let generation = {
            let mut state = self.inner.lock();
            state.generation += 1;
            let generation = state.generation;
            state.connection = Some((sink.clone(), generation));
            state.stop = Some(stop);
            generation
        };
        tokio::spawn(read(
            Arc::downgrade(&self.inner),
            stream,
            stopped,
            generation,
        ));
        Ok((sink, generation))
    }
}

/// Reads the pub/sub connection: wakes a channel's waiters per message, and
/// everyone when the connection ends.
async fn read(
    inner: Weak<Inner>,
    mut stream: redis::aio::PubSubStream,
    mut stopped: oneshot::Receiver<()>,
    generation: u64,
) {
    let mut sweep_timer = tokio::time::interval(IDLE_SWEEP);
    sweep_timer.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(inner) = inner.upgrade() else { return };
                match message {
                    Some(message) => {
                        let state = inner.lock();
                        if let Some(channel) = state.channels.get(message.get_channel_name()) {
                            channel.notify.notify_waiters();
                        }
                    }
                    None => {
                        let mut state = inner.lock();
                        if state.connection.as_ref().map(|(_, g)| *g) == Some(generation) {
                            state.connection = None;
                            state.stop = None;
                        }
                        state.channels.retain(|_, channel| {
                            channel.confirmed = None;
                            channel.notify.notify_waiters();
                            channel.waiters > 0
                        });
                        state.idle = 0;
                        tracing::debug!(backend = "redis", "pub/sub connection ended; waiters woken");
                        return;
                    }
                }
            }
            _ = sweep_timer.tick() => {
                let idle = inner.upgrade().is_some_and(|inner| inner.lock().idle > 0);
                if idle {
                    tokio::spawn(sweep(inner.clone()));
                }
            }
            _ = &mut stopped => return,
        }
    }
}

/// Unsubscribe the channels nobody waits on.
async fn sweep(inner: Weak<Inner>) {
    let Some(inner) = inner.upgrade() else { return };
    let _exclusive = inner.gate.write().await;
    let (sink, names) = {
        let mut state = inner.lock();
        state.idle = 0;
        let Some((sink, _)) = state.connection.clone() else {
            return;
        };
        let mut names = Vec::new();
        state.channels.retain(|name, channel| {
            let keep = channel.waiters > 0;
            if !keep && channel.confirmed.is_some() {
                names.push(name.clone());
            }
            keep
        });
        (sink, names)
    };
    if names.is_empty() {
        return;
    }
    let mut sink = sink;
    // Failure is harmless: a broken connection drops its subscriptions anyway,
    // and a stray message wakes nobody.
    let _ = tokio::time::timeout(inner.timeout, sink.unsubscribe(&names)).await;
}
