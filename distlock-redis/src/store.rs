//! [`RedisStore`]: one Redis server as a [`Store`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Error, Grant, Holder, Info, LeaseKey, RefreshRequest,
    Refreshed, Result, Store, StoreLocker, Wakeup,
};
use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, RedisError, Value};

use crate::RedisConfig;
use crate::error::{BACKEND, is_noscript, map_error, unexpected};
use crate::layout::{self, Keys};
use crate::scripts::SCRIPTS;
use crate::wakeup::Subscriber;

/// Leases per refresh script: a batch of 10,000 becomes 20 scripts sent in one
/// pipeline (one round trip), and no script blocks the server for long (each
/// runs about 1 ms).
pub(crate) const REFRESH_CHUNK: usize = 500;

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
    inner: Arc<Inner>,
}

struct Inner {
    caps: Capabilities,
    connection: ConnectionManager,
    config: RedisConfig,
    subscriber: Subscriber,
    /// The server runs in cluster mode: a script may only touch keys of one slot.
    cluster: bool,
    /// `host:port` or the socket path, for errors.
    endpoint: String,
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

/// The answer of the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawAcquired {
    Granted { token: u64, expires_ms: i64 },
    Held { retry_after_ms: i64 },
    Mismatch { existing: u32 },
}

/// One live lease as the info script reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHolder {
    pub(crate) key: Vec<u8>,
    pub(crate) token: u64,
    pub(crate) acquired_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) owner: String,
    pub(crate) data: Bytes,
}

/// A resource's live leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawInfo {
    pub(crate) permits: u32,
    pub(crate) holders: Vec<RawHolder>,
}

pub(crate) fn wall(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn evalsha(script: &redis::Script, keys: &[&str]) -> Cmd {
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

    fn namespace(&self) -> &str {
        self.inner.config.namespace()
    }

    /// Map a command's error (see [`crate::error::map_error`]).
    fn map_error(
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
    async fn run<T: FromRedisValue>(
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

    pub(crate) async fn acquire_raw(&self, request: &AcquireRequest<'_>) -> Result<RawAcquired> {
        let keys = Keys::new(self.namespace(), request.resource);
        let key = request.key.to_hex();
        let mut owner_and_data = Vec::with_capacity(8 + request.owner.len() + request.data.len());
        owner_and_data.extend_from_slice(request.owner.len().to_string().as_bytes());
        owner_and_data.push(b':');
        owner_and_data.extend_from_slice(request.owner.as_bytes());
        owner_and_data.extend_from_slice(request.data);
        let reply: Vec<i64> = self
            .run(
                &SCRIPTS.acquire,
                crate::scripts::ACQUIRE,
                &[&keys.holders, &keys.details, &keys.token],
                |cmd| {
                    cmd.arg(&key)
                        .arg(ms(request.ttl))
                        .arg(request.permits)
                        .arg(owner_and_data.as_slice());
                },
            )
            .await
            .map_err(|e| self.map_error(e, "acquire", request.resource, true))?;
        match reply[..] {
            [1, token, expires_ms] if token > 0 => Ok(RawAcquired::Granted {
                token: token as u64,
                expires_ms,
            }),
            [0, retry_after_ms] => Ok(RawAcquired::Held { retry_after_ms }),
            [-1, existing] => Ok(RawAcquired::Mismatch {
                existing: u32::try_from(existing).unwrap_or(0),
            }),
            _ => Err(unexpected("acquire", &reply)),
        }
    }

    /// Renew leases given as (resource, key, ttl): one pipeline of scripts of
    /// [`REFRESH_CHUNK`] leases, one round trip.
    pub(crate) async fn refresh_raw(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let label = if leases.len() == 1 {
            leases[0].resource.to_owned()
        } else {
            format!("<{} leases>", leases.len())
        };
        // Which leases each script renews: any REFRESH_CHUNK of them on a
        // single server; on a cluster node, only leases of one hash slot.
        let mut order: Vec<usize> = (0..leases.len()).collect();
        let slots: Vec<u16> = if self.inner.cluster {
            let slots: Vec<u16> = leases
                .iter()
                .map(|l| {
                    layout::hash_slot(layout::main_key(self.namespace(), l.resource).as_bytes())
                })
                .collect();
            order.sort_by_key(|&i| slots[i]);
            slots
        } else {
            Vec::new()
        };
        let groups: Vec<&[usize]> = if self.inner.cluster {
            order
                .chunk_by(|&a, &b| slots[a] == slots[b])
                .flat_map(|group| group.chunks(REFRESH_CHUNK))
                .collect()
        } else {
            order.chunks(REFRESH_CHUNK).collect()
        };
        let mut pipe = redis::pipe();
        for group in &groups {
            let keys: Vec<Keys> = group
                .iter()
                .map(|&i| Keys::new(self.namespace(), leases[i].resource))
                .collect();
            let names: Vec<&str> = keys
                .iter()
                .flat_map(|k| [k.holders.as_str(), k.details.as_str()])
                .collect();
            let mut cmd = evalsha(&SCRIPTS.refresh, &names);
            for &i in *group {
                cmd.arg(leases[i].key.to_hex()).arg(ms(leases[i].ttl));
            }
            pipe.add_command(cmd);
        }
        let mut connection = self.inner.connection.clone();
        let replies: Vec<Vec<i64>> = match pipe.query_async(&mut connection).await {
            Err(error) if is_noscript(&error) => {
                // The server lost its scripts: load and send again (renewing
                // twice is harmless).
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(crate::scripts::REFRESH)
                    .exec_async(&mut connection)
                    .await
                    .map_err(|e| self.map_error(e, "refresh", &label, true))?;
                pipe.query_async(&mut connection).await
            }
            other => other,
        }
        .map_err(|e| self.map_error(e, "refresh", &label, true))?;
        let mut outcomes = vec![false; leases.len()];
        if replies.len() != groups.len()
            || replies.iter().zip(&groups).any(|(r, g)| r.len() != g.len())
        {
            return Err(unexpected("refresh", &replies.len()));
        }
        for (reply, group) in replies.iter().zip(&groups) {
            for (&renewed, &i) in reply.iter().zip(*group) {
                outcomes[i] = renewed == 1;
            }
        }
        Ok(outcomes)
    }

    pub(crate) async fn release_raw(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let keys = Keys::new(self.namespace(), resource);
        let hex = key.to_hex();
        let released: i64 = self
            .run(
                &SCRIPTS.release,
                crate::scripts::RELEASE,
                &[&keys.holders, &keys.details],
                |cmd| {
                    cmd.arg(&hex);
                },
            )
            .await
            .map_err(|e| self.map_error(e, "release", resource, true))?;
        Ok(released == 1)
    }

    /// Quorum mode: raise the token counter to `token` if `key` still holds.
    pub(crate) async fn raise_raw(
        &self,
        resource: &str,
        key: LeaseKey,
        token: u64,
    ) -> Result<bool> {
        let keys = Keys::new(self.namespace(), resource);
        let hex = key.to_hex();
        let raised: i64 = self
            .run(
                &SCRIPTS.raise,
                crate::scripts::RAISE,
                &[&keys.holders, &keys.details, &keys.token],
                |cmd| {
                    cmd.arg(&hex).arg(token);
                },
            )
            .await
            .map_err(|e| self.map_error(e, "acquire", resource, true))?;
        Ok(raised == 1)
    }

    /// End every lease of `resource` (see [`Store::evict`]): one script.
    pub(crate) async fn evict_raw(&self, resource: &str) -> Result<usize> {
        let keys = Keys::new(self.namespace(), resource);
        let ended: i64 = self
            .run(
                &SCRIPTS.evict,
                crate::scripts::EVICT,
                &[&keys.holders, &keys.details],
                |_| {},
            )
            .await
            .map_err(|e| self.map_error(e, "evict", resource, true))?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }

    pub(crate) async fn info_raw(&self, resource: &str) -> Result<Option<RawInfo>> {
        let keys = Keys::new(self.namespace(), resource);
        let reply: Value = self
            .run(
                &SCRIPTS.info,
                crate::scripts::INFO,
                &[&keys.holders, &keys.details, &keys.token],
                |_| {},
            )
            .await
            .map_err(|e| self.map_error(e, "info", resource, false))?;
        parse_info(&reply).ok_or_else(|| unexpected("info", &reply))
    }

    pub(crate) async fn list_raw(&self, prefix: &str) -> Result<Vec<String>> {
        let pattern = layout::scan_pattern(self.namespace(), prefix);
        let mut connection = self.inner.connection.clone();
        let mut names = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.map_error(e, "list", prefix, false))?;
            for key in batch {
                if let Ok(key) = std::str::from_utf8(&key)
                    && let Some(resource) = layout::resource_of(self.namespace(), key)
                    && resource.starts_with(prefix)
                {
                    names.push(resource.to_owned());
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// `token:sec:usec:owner_len:` + owner + data (the grant's server time in
/// seconds and microseconds, as `TIME` answers); acquired time in ms.
fn parse_details(details: &[u8]) -> Option<(u64, i64, String, Bytes)> {
    let mut parts = details.splitn(5, |&b| b == b':');
    let mut field = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let token: u64 = field()?.parse().ok()?;
    let sec: i64 = field()?.parse().ok()?;
    let usec: i64 = field()?.parse().ok()?;
    let owner_len: usize = field()?.parse().ok()?;
    let acquired = sec.saturating_mul(1000).saturating_add(usec / 1000);
    let rest = parts.next()?;
    if rest.len() < owner_len {
        return None;
    }
    let (owner, data) = rest.split_at(owner_len);
    Some((
        token,
        acquired,
        String::from_utf8_lossy(owner).into_owned(),
        Bytes::copy_from_slice(data),
    ))
}

fn parse_info(reply: &Value) -> Option<Option<RawInfo>> {
    let Value::Array(items) = reply else {
        return None;
    };
    let Some((permits, rest)) = items.split_first() else {
        return Some(None);
    };
    let permits = u32::try_from(int(permits)?).ok()?;
    let mut holders = Vec::with_capacity(rest.len() / 3);
    for triple in rest.chunks(3) {
        let [key, expires, details] = triple else {
            return None;
        };
        // A lease whose details were deleted behind its back still counts.
        let (token, acquired_ms, owner, data) =
            parse_details(bytes(details)?).unwrap_or((0, 0, String::new(), Bytes::new()));
        holders.push(RawHolder {
            key: bytes(key)?.to_vec(),
            token,
            acquired_ms,
            expires_ms: int(expires)?,
            owner,
            data,
        });
    }
    holders.sort_by_key(|h| h.token);
    Some(Some(RawInfo { permits, holders }))
}

pub(crate) fn to_info(resource: &str, raw: RawInfo) -> Option<Info> {
    if raw.holders.is_empty() {
        return None;
    }
    let holders = raw
        .holders
        .into_iter()
        .map(|h| Holder::new(h.owner, h.token, wall(h.acquired_ms), wall(h.expires_ms)))
        .collect();
    Some(Info::new(resource, raw.permits, holders))
}

impl Store for RedisStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        match self.acquire_raw(request).await? {
            RawAcquired::Granted { token, expires_ms } => {
                Ok(Acquired::Granted(Grant::new(token, wall(expires_ms))))
            }
            RawAcquired::Held { retry_after_ms } => Ok(Acquired::Held {
                retry_after: Some(Duration::from_millis(
                    u64::try_from(retry_after_ms).unwrap_or(0),
                )),
            }),
            RawAcquired::Mismatch { existing } => Err(Error::SizeMismatch {
                resource: request.resource.to_owned(),
                requested: request.permits,
                existing,
            }),
        }
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        Ok(self
            .refresh_raw(leases)
            .await?
            .into_iter()
            .map(|renewed| {
                if renewed {
                    Refreshed::Renewed
                } else {
                    Refreshed::NotHeld
                }
            })
            .collect())
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        self.release_raw(resource, key).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        Ok(self
            .info_raw(resource)
            .await?
            .and_then(|raw| to_info(resource, raw)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        Ok(self
            .info_raw(resource)
            .await?
            .and_then(|raw| raw.holders.into_iter().next().map(|h| h.data)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.list_raw(prefix).await
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        self.evict_raw(resource).await
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        let channel = layout::channel(self.namespace(), resource);
        self.inner.subscriber.subscribe(&channel).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn details_round_trip_with_colons_and_binary_data() {
        let (token, acquired, owner, data) =
            parse_details(b"17:1700000000:123456:5:a:b:c\x00\xff:x").unwrap();
        assert_eq!((token, acquired), (17, 1_700_000_000_123));
        assert_eq!(owner, "a:b:c");
        assert_eq!(&data[..], b"\x00\xff:x");
        assert!(parse_details(b"1:2:3:9:short").is_none());
        assert!(parse_details(b"1:2:9:abc").is_none());
    }
}
