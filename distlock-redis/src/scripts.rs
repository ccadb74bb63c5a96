//! The Lua scripts: one per operation, each one round trip. Layout of the keys:
//! [`crate::layout`].
//!
//! A resource's main key `{P:R}` is, while held, either
//! - a **string** (a mutex, permits = 1): the lease key (32 hex digits), a
//!   waiter flag (`-`, or `w` once an attempt found it held), then
//!   `sec:usec:` of the grant's server time and the owner and data, expiring
//!   with the lease (`SET … NX PX`): Redis's own expiry, the server's clock.
//!   The holder's fencing token is the counter's current value (only a grant
//!   increments it, so while the mutex is held the counter is its token). The
//!   fast path: three commands to acquire (`TIME`, `SET NX PX`, `INCR`), two to
//!   release (`GETRANGE`, `DEL`), plus `PUBLISH` only if someone tried while it
//!   was held. No formatting on that path: Lua 5.1 prints numbers above 10^14
//!   in exponent form, so the token never passes through a Lua string there.
//! - a **sorted set** (a semaphore, permits > 1): lease key → expiry in ms of the
//!   server's `TIME` (live while `now < expiry`), with `token:` + the details
//!   and the permits in the hash `{P:R}:h`; both keys expire with the latest
//!   lease.
//!
//! Every script accepts either shape, so a mutex request on a semaphore (or the
//! reverse) is a size mismatch, and release and refresh need not know the size.
//! The owner and data arrive as one argument, `owner_len:` + owner + data, built
//! by the client (one Lua string fewer per call).

use std::sync::LazyLock;

use redis::Script;

/// `KEYS`: main, hash, token. `ARGV`: lease key, ttl ms, permits,
/// `owner_len:` + owner + data.
///
/// Returns `{1, token, expires_ms}` granted, `{0, retry_after_ms}` held,
/// `{-1, existing_permits}` size mismatch.
///
/// The token counter is seeded with the server time in microseconds when it is
/// created (`INCR` answered 1): if the counter is ever lost (a restart without
/// persistence, a failover to a replica that missed it), new tokens still exceed
/// the old ones unless the resource was granted more than once per microsecond
/// on average or the server clock went back. Only grants take a number.
pub(crate) const ACQUIRE: &str = r#"
local z, h = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local ttl = ARGV[2]
if ARGV[3] == '1' then
  -- The mutex fast path: TIME, SET NX PX, INCR.
  if redis.call('SET', z, ARGV[1] .. '-' .. t[1] .. ':' .. t[2] .. ':' .. ARGV[4], 'NX', 'PX', ttl) then
    local token = redis.call('INCR', KEYS[3])
    if token == 1 then
      token = t[1] * 1000000 + t[2]
      redis.call('SET', KEYS[3], string.format('%d', token))
    end
    return {1, token, t[1] * 1000 + math.floor(t[2] / 1000) + ttl}
  end
end
local now = t[1] * 1000 + math.floor(t[2] / 1000)
ttl = tonumber(ttl)
local token = nil
local function next_token()
  token = redis.call('INCR', KEYS[3])
  if token == 1 then
    token = t[1] * 1000000 + t[2]
    redis.call('SET', KEYS[3], string.format('%d', token))
  end
  return t[1] .. ':' .. t[2] .. ':' .. ARGV[4]
end
local kind = redis.call('TYPE', z)['ok']
if ARGV[3] == '1' then
  if kind == 'string' then
    -- Someone waits (or may): the release must publish.
    redis.call('SETRANGE', z, 32, 'w')
    return {0, redis.call('PTTL', z)}
  end
elseif kind == 'string' then
  return {-1, 1}
end
if kind ~= 'zset' and kind ~= 'none' then
  return redis.error_reply('distlock: ' .. z .. ' is a ' .. kind .. ', not a lock; is the namespace shared?')
end
local permits = tonumber(ARGV[3])
local n = 0
if kind == 'zset' then
  n = redis.call('ZCARD', z)
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
local details = next_token()
local exp = now + ttl
if permits == 1 then
  -- A mutex over a semaphore whose leases all ended.
  redis.call('DEL', z, h)
  redis.call('SET', z, ARGV[1] .. '-' .. details, 'PX', ttl)
  return {1, token, exp}
end
redis.call('ZADD', z, exp, ARGV[1])
redis.call('HSET', h, ARGV[1], string.format('%d:', token) .. details, '#p', permits)
local last = exp
if n > 0 then
  last = math.max(exp, tonumber(redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')[2]))
end
redis.call('PEXPIREAT', z, last)
redis.call('PEXPIREAT', h, last)
return {1, token, exp}
"#;

/// `KEYS`: main, hash for each lease, in pairs. `ARGV`: lease key, ttl ms, in
/// pairs. Returns one 1 (renewed) or 0 (not held) per lease.
pub(crate) const REFRESH: &str = r#"
local now = nil
local out = {}
for i = 1, #KEYS / 2 do
  local z, h, key, ttl = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local head = redis.pcall('GETRANGE', z, 0, 31)
  out[i] = 0
  if type(head) == 'string' then
    if head == key then
      redis.call('PEXPIRE', z, ttl)
      out[i] = 1
    end
  else
    if not now then
      local t = redis.call('TIME')
      now = t[1] * 1000 + math.floor(t[2] / 1000)
    end
    local s = redis.call('ZSCORE', z, key)
    if s and tonumber(s) > now then
      redis.call('ZADD', z, now + ttl, key)
      local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')[2]
      redis.call('PEXPIREAT', z, last)
      redis.call('PEXPIREAT', h, last)
      out[i] = 1
    end
  end
end
return out
"#;

/// `KEYS`: main, hash. `ARGV`: lease key. Returns 1 if the key held an
/// unexpired lease (now ended, and waiters told on `{P:R}:w`), else 0.
pub(crate) const RELEASE: &str = r#"
local z = KEYS[1]
local head = redis.pcall('GETRANGE', z, 0, 32)
if type(head) == 'string' then
  if string.sub(head, 1, 32) ~= ARGV[1] then return 0 end
  redis.call('DEL', z)
  if string.sub(head, 33) == 'w' then
    redis.call('PUBLISH', z .. ':w', '')
  end
  return 1
else
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
end
redis.call('PUBLISH', z .. ':w', '')
return 1
"#;

/// `KEYS`: main, hash, token. Returns `{permits, key, expires_ms, details, …}`
/// for the live leases (`{}` when free), details as `token:sec:usec:` + owner
/// and data. Read only.
pub(crate) const INFO: &str = r#"
local z, h = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local kind = redis.call('TYPE', z)['ok']
if kind == 'string' then
  local v = redis.call('GET', z)
  local left = redis.call('PTTL', z)
  if not v or left < 0 then return {} end
  local token = redis.call('GET', KEYS[3]) or '0'
  return {1, string.sub(v, 1, 32), now + left, token .. ':' .. string.sub(v, 34)}
end
if kind ~= 'zset' then return {} end
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

/// Quorum mode: `KEYS`: main, hash, token. `ARGV`: lease key, token.
/// If the key holds a live lease, raises the token counter to at least the
/// token and records the token with the lease; returns 1, else 0.
pub(crate) const RAISE: &str = r#"
local z, h, key, floor = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local function raise()
  if (tonumber(redis.call('GET', KEYS[3])) or 0) < floor then
    redis.call('SET', KEYS[3], ARGV[2])
  end
end
local head = redis.pcall('GETRANGE', z, 0, 31)
if type(head) == 'string' then
  if head ~= key then return 0 end
  -- A mutex's token is the counter's value.
  raise()
  return 1
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local s = redis.call('ZSCORE', z, key)
if not s or tonumber(s) <= now then return 0 end
raise()
local v = redis.call('HGET', h, key)
if v then
  local rest = string.match(v, '^%d+(:.*)$')
  if rest then redis.call('HSET', h, key, ARGV[2] .. rest) end
end
return 1
"#;

/// An operator's force release. `KEYS`: main, hash. Deletes both (the token
/// counter stays, so the next grant's token is higher) and wakes waiters on
/// `{P:R}:w`. Returns how many live leases ended.
pub(crate) const EVICT: &str = r#"
local z = KEYS[1]
local kind = redis.call('TYPE', z)['ok']
local n = 0
if kind == 'string' then
  n = 1
elseif kind == 'zset' then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  n = redis.call('ZCOUNT', z, string.format('(%d', now), '+inf')
else
  return 0
end
redis.call('DEL', z, KEYS[2])
if n > 0 then
  redis.call('PUBLISH', z .. ':w', '')
end
return n
"#;

/// The scripts, hashed once.
pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) refresh: Script,
    pub(crate) release: Script,
    pub(crate) info: Script,
    pub(crate) raise: Script,
    pub(crate) evict: Script,
}

/// All scripts, hashed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::new(ACQUIRE),
    refresh: Script::new(REFRESH),
    release: Script::new(RELEASE),
    info: Script::new(INFO),
    raise: Script::new(RAISE),
    evict: Script::new(EVICT),
});
