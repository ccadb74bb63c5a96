//! The Lua scripts: one per operation, each one round trip, each judging
//! expiry by the server's `TIME` (milliseconds; a lease is live while
//! `now < expiry`). Layout of the keys: [`crate::keys`].

use std::sync::LazyLock;

use redis::Script;

/// `KEYS`: holders, details, token. `ARGV`: lease key, ttl ms, permits, owner, data.
///
/// Returns `{1, token, expires_ms}` granted, `{0, retry_after_ms}` held,
/// `{-1, existing_permits}` size mismatch.
///
/// The token counter is seeded with the server time in microseconds when it is
/// created (`INCR` answered 1): if the counter is ever lost (a restart without
/// persistence, a failover to a replica that missed it), new tokens still exceed
/// the old ones unless the resource was granted more than once per microsecond
/// on average or the server clock went back.
pub(crate) const ACQUIRE: &str = r#"
local z, h = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local permits = tonumber(ARGV[3])
local n = redis.call('ZCARD', z)
if n > 0 then
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    for i = 1, #gone, 1000 do
      redis.call('HDEL', h, unpack(gone, i, math.min(i + 999, #gone)))
    end
    n = n - #gone
  end
  if n > 0 then
    local size = tonumber(redis.call('HGET', h, '#p'))
    if size and size ~= permits then return {-1, size} end
    if n >= permits then
      local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
      return {0, tonumber(first[2]) - now}
    end
  end
end
local token = redis.call('INCR', KEYS[3])
if token == 1 then
  token = t[1] * 1000000 + t[2]
  redis.call('SET', KEYS[3], string.format('%d', token))
end
local exp = now + tonumber(ARGV[2])
redis.call('ZADD', z, exp, ARGV[1])
redis.call('HSET', h, ARGV[1], string.format('%d:%d:%d:', token, now, #ARGV[4]) .. ARGV[4] .. ARGV[5], '#p', permits)
if n > 0 then
  exp = math.max(exp, tonumber(redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')[2]))
end
redis.call('PEXPIREAT', z, exp)
redis.call('PEXPIREAT', h, exp)
return {1, token, now + tonumber(ARGV[2])}
"#;

/// `KEYS`: holders, details for each lease, in pairs. `ARGV`: lease key, ttl ms,
/// in pairs. Returns one 1 (renewed) or 0 (not held) per lease.
pub(crate) const REFRESH: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i = 1, #KEYS / 2 do
  local z, h, key = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i - 1]
  local s = redis.call('ZSCORE', z, key)
  if s and tonumber(s) > now then
    redis.call('ZADD', z, now + tonumber(ARGV[2 * i]), key)
    local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')[2]
    redis.call('PEXPIREAT', z, last)
    redis.call('PEXPIREAT', h, last)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"#;

/// `KEYS`: holders, details. `ARGV`: lease key. Returns 1 if the key held an
/// unexpired lease (now ended, and waiters told on `{P:R}:w`), else 0.
pub(crate) const RELEASE: &str = r#"
local z = KEYS[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local s = redis.call('ZSCORE', z, ARGV[1])
if not s or tonumber(s) <= now then return 0 end
redis.call('ZREM', z, ARGV[1])
if redis.call('EXISTS', z) == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', z .. ':w', '')
return 1
"#;

/// `KEYS`: holders, details. Returns `{permits, key, expires_ms, details, …}`
/// for the unexpired leases (`{}` when free). Read only.
pub(crate) const INFO: &str = r#"
local z, h = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local live = redis.call('ZRANGEBYSCORE', z, string.format('(%d', now), '+inf', 'WITHSCORES')
if #live == 0 then return {} end
local out = {tonumber(redis.call('HGET', h, '#p')) or 1}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = tonumber(live[i + 1])
  out[#out + 1] = redis.call('HGET', h, live[i]) or ''
end
return out
"#;

/// Quorum mode: `KEYS`: holders, details, token. `ARGV`: lease key, token.
/// If the key holds an unexpired lease, raises the token counter to at least
/// the token and records the token with the lease; returns 1, else 0.
pub(crate) const RAISE: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now then return 0 end
local floor = tonumber(ARGV[2])
if (tonumber(redis.call('GET', KEYS[3])) or 0) < floor then
  redis.call('SET', KEYS[3], ARGV[2])
end
local v = redis.call('HGET', KEYS[2], ARGV[1])
if v then
  local rest = string.match(v, '^%d+(:.*)$')
  if rest then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. rest) end
end
return 1
"#;

/// The scripts, hashed once.
pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) refresh: Script,
    pub(crate) release: Script,
    pub(crate) info: Script,
    pub(crate) raise: Script,
}

/// All scripts, hashed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::new(ACQUIRE),
    refresh: Script::new(REFRESH),
    release: Script::new(RELEASE),
    info: Script::new(INFO),
    raise: Script::new(RAISE),
});
