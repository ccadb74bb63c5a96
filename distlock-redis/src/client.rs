//! [`RedisStore`] itself: its command connection, its pub/sub subscriber,
//! and the script runner every operation uses.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use distlock_core::{Capabilities, Error, StoreLocker};
use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, RedisError};

use crate::RedisConfig;
use crate::error::{BACKEND, is_noscript, map_error};
use crate::wakeup::Subscriber;

/// One Redis server (or a proxy in front of several) holding leases.
///
/// Cloning shares the connection. Each store has one multiplexed command
/// connection that reconnects by itself (redis-rs `ConnectionManager`) and,
/// once someone waits, one pub/sub connection. Build it with
/// [`RedisStore::connect`], use it through [`RedisStore::locker`].
///
/// See the [crate documentation](crate) for the key layout, the scripts and
/// what each failure means.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) caps: Capabilities,
    pub(crate) connection: ConnectionManager,
    pub(crate) config: RedisConfig,
    pub(crate) subscriber: Subscriber,
    /// The server runs in cluster mode: a script may only touch keys of one slot.
    pub(crate) cluster: bool,
    /// `host:port` or the socket path, for errors.
    pub(crate) endpoint: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.config.redacted_url())
            .field("namespace", &self.inner.config.namespace())
            .field("subscriber", &self.inner.subscriber)
            .finish()
    }
}

pub(crate) fn wall(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn evalsha(script: &redis::Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// The most data stored with one grant.
pub(crate) const MAX_DATA_LEN: usize = 256 * 1024;

impl RedisStore {
    pub(crate) fn build(config: RedisConfig, connection: ConnectionManager, cluster: bool) -> Self {
        let caps = Capabilities::new(BACKEND)
            .with_min_ttl(Duration::from_millis(10))
            .with_max_data_len(MAX_DATA_LEN)
            .with_push_wakeup(true)
            .with_batch_refresh(true)
            .with_clock_margin(Duration::from_millis(2));
        let subscriber = Subscriber::new(config.clone(), config.response_timeout());
        let endpoint = config.endpoint();
        RedisStore {
            inner: Arc::new(Inner {
                caps,
                connection,
                config,
                subscriber,
                cluster,
                endpoint,
            }),
        }
    }

    /// A locker over this store (each locker has its own background refresher;
    /// lockers of one store share its connections).
    pub fn locker(&self) -> StoreLocker<RedisStore> {
        StoreLocker::new(self.clone())
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    pub(crate) fn namespace(&self) -> &str {
        self.inner.config.namespace()
    }

    /// Map a command's error (see [`crate::error::map_error`]).
    pub(crate) fn map_error(
        &self,
        error: RedisError,
        operation: &'static str,
        resource: &str,
        write: bool,
    ) -> Error {
        map_error(error, &self.inner.endpoint, operation, resource, write)
    }

    /// Run a script: `EVALSHA`, or `EVAL` with its body if the server lost it
    /// (`SCRIPT FLUSH`, a restart), which also caches it again.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        body: &str,
        keys: &[&str],
        args: impl Fn(&mut Cmd),
    ) -> redis::RedisResult<T> {
        let mut connection = self.inner.connection.clone();
        let mut cmd = evalsha(script, keys);
        args(&mut cmd);
        match cmd.query_async(&mut connection).await {
            Err(error) if is_noscript(&error) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(body).arg(keys.len()).arg(keys);
                args(&mut cmd);
                cmd.query_async(&mut connection).await
            }
            other => other,
        }
    }
}
