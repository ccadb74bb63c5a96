//! The SQL backend of distlock: a lock table in PostgreSQL, CockroachDB,
//! MySQL/MariaDB or SQLite (through sqlx), plus job locks ([`JobLocks`]).
//!
//! ```no_run
//! use distlock_core::{Handler, LockOptions};
//! use distlock_sql::SqlStore;
//!
//! # async fn demo() -> distlock_core::Result<()> {
//! // Creates the lock tables if missing (idempotent; `?migrate=false` skips it).
//! let store = SqlStore::connect("postgres://app@db.internal/app").await?;
//! let locker = store.locker();
//! if let Some(lock) = locker.try_lock("invoice/42", &LockOptions::new()).await? {
//!     // … write, presenting lock.token() …
//!     lock.release().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Connecting
//! [`SqlStore::connect`] takes a URL; [`SqlConfig::from_url`] reads the same
//! URL into a config to adjust before [`SqlStore::connect_with`], and
//! [`SqlConfig::from_env`] reads it from `DISTLOCK_SQL_URL`. The URL query
//! options are listed on [`SqlConfig`]. [`SqlConnector`] serves the same
//! schemes through a [`Registry`](distlock_core::Registry), doing exactly
//! what [`SqlStore::connect`] does.
//!
//! # Cargo features
//! One per dialect: `postgres`, `mysql`, `sqlite` and `cockroach` (which
//! implies `postgres`); all four by default. Each enables only its sqlx
//! driver, so a PostgreSQL-only build compiles no MySQL or SQLite driver. A
//! URL of a dialect left out is refused as
//! [`InvalidUrl`](distlock_core::Error::InvalidUrl) naming the feature.
//!
//! # Schema (one design for every dialect)
//! [`SqlStore::migrate`] (run by `connect` unless `?migrate=false`) creates,
//! for a base name `NAME` (default `distlock`, see [`TableName`]):
//!
//! - `NAME (resource, slot, permits, token, lease_key, owner, data,
//!   acquired_us, expires_us)`, primary key `(resource, slot)`: one row per
//!   permit slot. A mutex uses slot 0; a semaphore of N permits uses slots
//!   `0..N`. A slot is free when its `lease_key` is NULL or `expires_us` has
//!   passed. Release sets the key to NULL and **keeps the row**.
//! - `NAME_tokens (resource, last_token)`: the fencing counter of each resource,
//!   never deleted, so tokens never go back, even after a resource was free.
//!   Every grant bumps it; it is also the row all grants of a resource
//!   serialise on.
//! - `NAME_jobs`: job locks ([`JobLocks`]).
//!
//! Times are microseconds since the Unix epoch **read from the database clock**
//! (`clock_timestamp()`, `SYSDATE(6)`, `unixepoch('subsec')`): the client sends
//! only durations, so its clock never decides who holds a lock. Slot rows rather
//! than one row per resource keep each permit's state in a row of its own, so
//! a semaphore's holders never rewrite each other's rows, while the token row
//! gives every grant of a resource one strictly increasing counter.
//!
//! # Acquire: one statement where the dialect allows
//! - PostgreSQL and CockroachDB: **one statement, one round trip**: a CTE that
//!   reads a snapshot, compare-and-sets the token row, and writes the slot with
//!   `INSERT … ON CONFLICT … DO UPDATE … WHERE <free or expired> … RETURNING`.
//!   Correct under `READ COMMITTED` (the compare-and-set detects a snapshot
//!   made stale by a concurrent grant, and the store retries at once) and
//!   under `SERIALIZABLE` (the same races surface as SQLSTATE 40001, retried
//!   with jittered backoff by one helper shared with CockroachDB). See
//!   `postgres.rs` for the argument.
//! - MySQL/MariaDB: no `RETURNING` for upserts, and an upsert's affected-row
//!   count cannot tell a grant from "held" (`CLIENT_FOUND_ROWS`): one short
//!   transaction decides from rows it has **locked** (`SELECT … FOR UPDATE` of
//!   the token and slot rows). Five round trips for a grant, three for "held".
//! - SQLite: one `BEGIN IMMEDIATE` transaction (one writer per file), in process.
//!
//! An operator's force release ([`Store::evict`](distlock_core::Store::evict))
//! ends every live lease of a resource in one statement and keeps its token
//! row, so the next grant's token is higher.
//!
//! Release and refresh compare the lease key and the expiry in their `WHERE`,
//! so a stale or wrong key never ends or extends someone else's lease, and an
//! expired lease is never revived. Refresh renews **all** leases a locker holds
//! in one statement (`unnest` arrays on PostgreSQL, `JSON_TABLE` on MySQL,
//! `json_each` on SQLite).
//!
//! # Waiting
//! On PostgreSQL, release sends `pg_notify(NAME, resource)` in the same
//! statement; each store keeps one LISTEN connection and wakes that resource's
//! waiters (a lost connection wakes them all). CockroachDB, MySQL and SQLite
//! have no such push: waiters poll with the core's jittered backoff, never
//! sleeping past the holder's expiry.
//!
//! # Errors
//! No connection (pool timeout, refused): [`Unavailable`](distlock_core::Error::Unavailable).
//! Connection broken during a write: [`OutcomeUnknown`](distlock_core::Error::OutcomeUnknown)
//! (the core releases the key of an acquire in the background). Serialization
//! conflicts beyond the retries: `Unavailable`. Missing tables, permissions:
//! [`Store`](distlock_core::Error::Store), saying to call `migrate()`.
//! `Unavailable` errors name the server (`host:port`, socket or file) and keep
//! the client's error as their source. Passwords never appear in errors or
//! `Debug`.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
// Without any dialect feature the crate compiles, but serves no URL.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code, unused_imports)
)]

// Layers (each imports only the ones above it): `layout`, `rows`, `error`;
// `dialect` (the `SqlBackend` trait); `txn` and the dialect modules;
// `store`, `jobs`; `connect`.
#[cfg(feature = "cockroach")]
mod cockroach;
mod config;
mod connect;
mod dialect;
mod error;
pub mod jobs;
mod layout;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod notify;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
#[cfg(any(feature = "mysql", feature = "sqlite"))]
mod txn;

pub use config::{COCKROACH_PORT, SCHEMES, SqlConfig, URL_ENV};
pub use connect::SqlConnector;
#[cfg(feature = "mysql")]
pub use connect::mysql_pool_options;
pub use dialect::Dialect;
pub use error::ConnectError;
pub use jobs::{JobError, JobHolder, JobKey, JobLease, JobLocks, JobStatus, JobStore};
pub use layout::{DEFAULT_TABLE, MAX_TABLE_LEN, TableName};
pub use store::{DEFAULT_CALL_TIMEOUT, MIN_TTL, SqlLocker, SqlStore};
