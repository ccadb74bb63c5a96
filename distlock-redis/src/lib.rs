//! The Redis backend of distlock: locks, leases and semaphores in one Redis
//! server ([`RedisStore`]), or in a Redlock quorum of several
//! ([`QuorumStore`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use distlock_core::{LockOptions, Locker};
//! use distlock_redis::RedisStore;
//!
//! # async fn demo() -> distlock_core::Result<()> {
//! let locker = RedisStore::connect("redis://127.0.0.1:6379").await?.locker();
//! let options = LockOptions::new().with_wait_timeout(Duration::from_secs(5));
//! let lock = locker.lock("invoice/42", &options).await?;
//! // … write with lock.token() as the fencing token …
//! lock.release().await?;
//! # Ok(()) }
//! ```
//!
//! URLs: `redis://`, `rediss://` (TLS, rustls) and `redis+unix://`, with the
//! user and password in the URL; see [`RedisConfig`]. Needs Redis 6.0 or later
//! (RESP3, `KEEPTTL`); tested with 7.0.
//!
//! # Design
//!
//! **One script per operation, one round trip each.** Acquire, refresh (a
//! whole batch), release and info are Lua scripts (`EVALSHA`; `EVAL` with the
//! body if the server lost its script cache, which also reloads it), so each is
//! atomic and one round trip. Expiry is judged by the server: for a mutex by
//! Redis's own key expiry (`SET … NX PX`), for a semaphore by `TIME` inside the
//! script; never the client's clock. The client's `lost` deadline runs from the
//! instant before the granting request was sent, minus 1 % of the TTL and 2 ms
//! (`TIME` is truncated to the millisecond).
//!
//! **Key layout** (see the table in the `layout` module source): `{P:R}` holds the
//! lease, `{P:R}:h` the semaphore details, `{P:R}:t` the token counter, and
//! release publishes on `{P:R}:w`. All of a resource's names share the hash
//! tag `{P:R}`, hence one Redis Cluster slot (checked against
//! `CLUSTER KEYSLOT` in the tests, [`hash_slot`] computes it), so every script
//! is valid in cluster mode. Only keys of this layout are touched; listing uses
//! `SCAN MATCH` (never `KEYS`), which visits the whole key space of the server
//! in pages of 1,000.
//!
//! **Mutex fast path.** A mutex (permits = 1) is a plain string key set with
//! `SET NX PX`: acquire is `TIME` + `SET NX PX` + `INCR` in the script (the
//! token only once granted, nothing formatted in Lua), release
//! `GETRANGE` + `DEL` (+ `PUBLISH` only when an attempt found it held, marked
//! by a flag byte in the value). A semaphore (permits > 1) is a sorted set of
//! lease keys scored by expiry (ms of `TIME`) with a hash of details and the
//! permits, cleaned of expired members on each acquire. The string layout
//! is the fastest of the layouts tried for a mutex, close to the floor of any
//! lock whose acquire is a script; what remains is what the guarantees cost
//! inside the scripts: `INCR` for the token, `TIME`
//! for the grant time, the stored owner and data (figures: see
//! BENCHMARKS.md). So the mutex gets the
//! string layout; every script accepts both shapes, so a
//! request with another size is `SizeMismatch` and release and refresh need
//! not know the size.
//!
//! **Fencing tokens** come from `INCR` on `{P:R}:t`, in the acquire script,
//! and the counter is never deleted (about 70 bytes per resource ever locked).
//! When the counter is created it is seeded with the server time in
//! microseconds, so if it is ever lost (a restart without persistence, a
//! failover to a replica that missed it) new tokens still exceed old ones,
//! unless the resource was granted more than once per microsecond on average
//! or the server clock went back. Only grants take a number, so while a mutex
//! is held the counter's value is its holder's token (`info` reads it there;
//! the mutex's value holds the lease key, waiter flag, grant time, owner and
//! data, and no token, which Lua 5.1 could only write through `string.format`).
//!
//! **Waking waiters: pub/sub on a per-resource channel**, not keyspace
//! notifications: those need `notify-keyspace-events` in the server's
//! configuration (often locked down on managed Redis), fire for every write
//! and expiry of every key, and would wake waiters on the holder's refreshes.
//! A release publishes on `{P:R}:w` from inside its script; each store has one
//! pub/sub connection, `SUBSCRIBE`s a channel the first time someone in the
//! process waits on it (confirmed before the waiter's attempt, so a release
//! after the attempt cannot be missed), and wakes that resource's local waiters
//! with one `Notify`: each retries once per release, no more. A missed message
//! (the pub/sub connection broke, which also wakes every waiter once) costs at
//! most the holder's expiry: the core never sleeps past it (the missed wake-up
//! of redisson#1763 cannot strand a waiter). Idle channels are unsubscribed in
//! batches.
//!
//! **Batched refresh.** The locker's background task hands every due lease to
//! [`Store::refresh`](distlock_core::Store::refresh) at once; the store sends
//! one pipeline of refresh scripts of 500 leases each (no script blocks the
//! server for more than about a millisecond): 10,000 held locks are one round
//! trip per interval. On a server in cluster mode (detected at connect) each
//! script holds the leases of one hash slot only. This crate talks to one node:
//! a multi-node cluster needs a cluster-aware client (each batch per slot would
//! go to its owner); a single-node cluster or a cluster proxy works.
//!
//! **Connection loss.** Commands use one multiplexed RESP3 connection per
//! store (redis-rs `ConnectionManager`): when the server closes it, it
//! reconnects in the background before the next command. A command that
//! cannot be sent (refused, not reconnected) is
//! [`Unavailable`](distlock_core::Error::Unavailable); one that was sent and
//! got no answer (dropped connection, the response timeout, 2 s by default) is
//! [`OutcomeUnknown`](distlock_core::Error::OutcomeUnknown) for acquire,
//! refresh and release, so an unconfirmed release is never reported as success
//! and an unconfirmed refresh leads to `lost` at the deadline. Server errors
//! that retrying cannot fix (wrong password, ACL) are
//! [`Store`](distlock_core::Error::Store); a refused or missing password says
//! how to give one in the URL. Every error names the server (`host:port` or
//! the socket path, never the password) and keeps the client's error as its
//! source.
//!
//! **Force release.** [`Store::evict`](distlock_core::Store::evict) (an
//! operator's release by name) deletes the resource's lease keys in one
//! script, keeps the token counter (the next token is higher) and publishes
//! on `{P:R}:w`, so waiters retry at once; the evicted holders see `lost` at
//! their next refresh. [`QuorumStore`] evicts on every server.
//!
//! **Limits.** Replication is asynchronous: after a failover the new primary
//! may not have a lease the old one granted, and may grant it again; the time
//! seeded token counter keeps tokens increasing across that (see above), which
//! is why storage guarded by the lock must check the token. [`QuorumStore`]
//! (Redlock) tolerates a server being down without failover, under timing
//! assumptions stated in its documentation.
//!
//! # Cancel safety
//! Every operation is one script: a dropped future either never sent it or
//! sent it whole. The core releases the lease key of a dropped acquire in the
//! background, and release of a key that holds nothing answers "not held".
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod acquire;
mod client;
mod config;
mod connect;
mod error;
mod inspect;
mod layout;
mod quorum;
mod refresh;
mod release;
mod scripts;
mod store;
mod wakeup;

pub use client::RedisStore;
pub use config::{DEFAULT_NAMESPACE, RedisConfig, SCHEMES};
pub use connect::RedisConnector;
pub use layout::hash_slot;
pub use quorum::QuorumStore;

/// A [`Locker`](distlock_core::Locker) over one Redis server.
pub type RedisLocker = distlock_core::StoreLocker<RedisStore>;

/// A [`Locker`](distlock_core::Locker) over a Redlock quorum of servers.
pub type QuorumLocker = distlock_core::StoreLocker<QuorumStore>;
