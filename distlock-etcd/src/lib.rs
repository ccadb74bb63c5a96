//! The etcd v3 backend of distlock.
//!
//! ```no_run
//! use distlock_core::{Handler, LockOptions};
//! use distlock_etcd::EtcdStore;
//!
//! # async fn demo() -> distlock_core::Result<()> {
//! let store = EtcdStore::connect("etcd://127.0.0.1:2379").await?;
//! let locker = store.locker();
//! let lock = locker.try_lock("invoice/42", &LockOptions::new()).await?.expect("free");
//! // Hand lock.token() to the storage you guard; it rejects older tokens.
//! lock.release().await?;
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! **Keys.** Every lease (holder or waiter) is one etcd key,
//! `<prefix>/\0<resource>\0<lease key hex>`, whose value holds the permits, the
//! owner, the holder's wall-clock time of the grant and the data. NUL cannot
//! occur in a prefix or a resource name, so one resource's keys never include
//! another's, and nested prefixes never share a lock (prefix `a/x` with
//! resource `y` is not prefix `a` with resource `x/y`).
//! The holders of a resource are its first `permits` keys by create revision.
//!
//! **Fencing token = the key's create revision.** etcd's revision is one counter
//! for the whole cluster that only grows (it survives restarts and is never
//! reused, even when a resource becomes free), so tokens strictly increase per
//! resource for the life of the cluster, with no counter key to keep.
//!
//! **Sessions.** A store grants one etcd lease, its *session*, of
//! [`EtcdConfig::session_ttl`] (default 30 s, the default lock TTL). Every lock
//! whose TTL rounds up to the same whole seconds hangs its key on the session,
//! so holding 10,000 locks costs one keep-alive per refresh interval (plus the
//! existence reads below), and losing
//! the session (revoked, or expired while the client was cut off) fires `lost`
//! on every lock it carried at their next refresh. The core's background
//! refresher calls [`Store::refresh`](distlock_core::Store::refresh) with a
//! batch; the store sends **one keep-alive per distinct lease** in it (one for
//! all session locks) and, at the same time, **reads every key of the batch**
//! in txns of up to 128 key-only gets (etcd's default `--max-txn-ops`; a
//! cluster run with a lower limit refuses them), so a refresh of N session
//! locks costs 1 keep-alive + ⌈N/128⌉ read txns, sent together (one round trip
//! of latency; [`EtcdStats::key_checks`] counts the txns). A watch on the lock
//! prefix could push deletions instead and keep a refresh at one keep-alive,
//! at the price of a stream per store, resumption after breaks and a fallback
//! to these reads after a compaction; the reads were chosen as the simpler
//! correct design. A lock is `Renewed` if its lease was
//! confirmed and its key still exists on it, `NotHeld` if the lease is gone
//! or the key was deleted (a release by key from another client, an operator's
//! delete: the holder's `lost` fires at its next refresh at the latest, the
//! manual `Lock::refresh` included), or if the key is named with another
//! resource. Grants report
//! [`Grant::valid_from`](distlock_core::Grant::valid_from) = the instant the
//! session's last confirmed keep-alive (or grant) was sent, so the lost deadline
//! never outlives the lease. After an idle spell (half the session TTL without a
//! confirmed keep-alive) an acquire keeps the session alive first (one more
//! round trip); a dead session is replaced by a new grant.
//!
//! Locks with **another TTL get their own lease**: grant + txn, two round trips
//! (an unused per-lock lease is kept as a spare for the next acquire of that TTL,
//! so a retry loop does not grant again). etcd leases are whole seconds with a
//! floor of 2 s (1.5 × the election timeout): TTLs round *up*, so a lease never
//! ends before the TTL the core counts with; `min_ttl` is 2 s.
//!
//! Consequences of sharing, stated: a `Refresh::Manual` lock with the session's
//! TTL lives as long as the session, which the store keeps alive while other
//! session locks are refreshed (the core does not tell the store which locks are
//! manual: an `auto_refresh` flag in `AcquireRequest` would let manual locks take
//! their own lease); use another TTL for a manual lock that must lapse on its
//! own. A detached lock on the session lives until the session ends.
//!
//! **Refresh with another TTL** (than the lease the key hangs on): the store
//! keeps the old lease alive first (an expired lease is never revived:
//! `NotHeld`), then moves the key onto a lease of the new TTL (the session if
//! the TTL rounds to it, else a spare or new per-lock lease) with a txn that
//! checks the key still hangs on the old lease; the key, its value and its
//! create revision (the token) stay. Two or three round trips, for that lock
//! only. A key of another client gets a new lease of its own, never this
//! store's session.
//!
//! **Views**: a lock is held while its key exists. etcd deletes the keys of an
//! expired lease up to ~0.5 s after the TTL; until then `info` reports the
//! holder with an expiry of now, as `read`, `list`, `try_lock` and `release`
//! see it.
//!
//! **Acquire is one txn.** Mutex: `if no key under the resource then put ours
//! (on the lease) else read the oldest key` — a held mutex leaves nothing behind
//! and needs no second round trip (etcd compares over a key range). Semaphore:
//! etcd cannot compare a count, so the txn puts our key and reads the oldest key
//! plus the range's count; our key is the newest, so we hold iff the count is at
//! most `permits`; otherwise (held) a second round trip deletes our key. The
//! oldest key's permits detect a size mismatch.
//!
//! **Release** deletes the key by name: one round trip. The name carries the
//! 128-bit random lease key, so it names that lease alone forever and a delete
//! by name is the compare-and-delete (it also works for a key handed over from
//! another process, whose revision the releaser does not know).
//!
//! **Waiting** ([`Store::acquire_queued`](distlock_core::Store::acquire_queued)):
//! FIFO in etcd's own queue, each waiter woken by its predecessor only, with the
//! etcd#11456 re-check of its own key before any grant: see the `queue` module
//! notes in the source and the README. Cancelled or timed-out waits delete their
//! key.
//!
//! **Force release** ([`Store::evict`](distlock_core::Store::evict), an
//! operator's release by name) deletes every key of the resource in one
//! request: the holders' keys, and the keys of waiters queued in etcd, whose
//! `lock()` then fails with `Lost` (retrying it queues again). Tokens are
//! create revisions, so the next grant's token is higher; evicted holders see
//! `lost` at their next refresh.
//!
//! **Leader election** on top: [`Election`] (campaign, observe the leader,
//! proclaim, resign).
//!
//! **Errors** name the endpoints (`host:port`) and keep the client's error as
//! their source: cannot connect → `Unavailable`; sent but no answer, timed out or
//! leader changed → `OutcomeUnknown` (writes) / `Unavailable` (reads);
//! permission, authentication, quota → `Store`. Passwords never appear in
//! `Debug`, errors or logs.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod acquire;
mod client;
mod config;
mod connect;
mod election;
mod error;
mod inspect;
mod layout;
mod lease;
mod queue;
mod refresh;
mod release;
mod session;
mod store;
mod wakeup;

pub use client::{EtcdStats, EtcdStore};
pub use config::{DEFAULT_PREFIX, EtcdConfig, MIN_TTL, SCHEMES};
pub use connect::EtcdConnector;
pub use election::{Election, Leader, Leadership};

/// A [`Locker`](distlock_core::Locker) over an etcd cluster.
pub type EtcdLocker = distlock_core::StoreLocker<EtcdStore>;
