//! The DynamoDB backend of distlock: a lease table driven by conditional writes.
//!
//! ```no_run
//! use distlock_core::{Handler, LockOptions};
//! use distlock_dynamo::{DynamoConfig, DynamoStore};
//!
//! # async fn demo() -> distlock_core::Result<()> {
//! let store = DynamoStore::connect_with(
//!     DynamoConfig::new("locks")
//!         .with_region("eu-west-1")
//!         .with_create_table(true), // on-demand billing, TTL cleanup
//! ).await?;
//! // Or by URL: DynamoStore::connect("dynamodb://locks?region=eu-west-1&create=true"),
//! // or DynamoConfig::from_env() (DISTLOCK_DYNAMO_URL).
//! let locker = store.locker();
//! let lock = locker.try_lock("invoice/42", &LockOptions::new()).await?.expect("free");
//! // … write to storage that rejects tokens below lock.token() …
//! lock.release().await?;
//! # Ok(()) }
//! ```
//!
//! URLs are `dynamodb://TABLE?region=…&endpoint=…&create=true` (options:
//! [`DynamoConfig::from_url`]); the registry serves them through
//! [`DynamoConnector`]. Region and credentials come from the usual AWS config
//! chain; `endpoint` points at an emulator. The lease-pool API (lessees,
//! acquire-or-renew, pools, heartbeat, listing) is in [`lease_api`].
//! An operator ends every lease of a resource with
//! [`Store::evict`](distlock_core::Store::evict) (the next token is higher).
//!
//! The SDK talks HTTPS through hyper and rustls with `ring` (no aws-lc),
//! verifying certificates against the platform's trusted roots.
//!
//! # Design
//!
//! **One item per resource, one request per operation.** The item keeps every
//! holder of the resource in a map keyed by lease key, so refresh and release,
//! which only know `(resource, key)`, address their lease directly
//! (`dl_holders.#key`) without knowing whether the resource is a mutex or a
//! semaphore. Flat attributes for a mutex would save a few bytes but need two
//! layouts, hence two code paths or two requests for every refresh and
//! release. Each operation is one conditional write:
//!
//! - acquire, mutex: one `PutItem` of the whole item, if the item is free
//!   (no `dl_holders`: first use, or a put release) and the new token is above
//!   `dl_fence`. An expired holder, an emptied map or user attributes fail that
//!   condition and go to the second write below (taking over an expired lease
//!   is the rare case, so it pays the extra request, not every acquire: each
//!   condition term costs, little on DynamoDB, a lot on an emulator);
//! - acquire, semaphore: one `UpdateItem` adding our entry if
//!   `size(dl_holders) < permits`;
//! - when the condition fails, DynamoDB returns the item
//!   (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so "held", `SizeMismatch`
//!   and "retry after" need no read. Only if the item shows the grant is
//!   possible anyway (an expired holder, first use of a semaphore, a token
//!   race) is a second write sent: the whole holder set, conditioned on
//!   the record version `dl_rvn` and holder count it was computed from
//!   (optimistic concurrency);
//! - refresh: `SET dl_holders.#key.e` if that entry exists and has not expired;
//! - release, mutex granted by this store (it remembers its grants' tokens):
//!   one `PutItem` writing the item back free (key, `dl_fence` = our token,
//!   `dl_ttl`) if our entry is unexpired, the item is a mutex and has no user
//!   attributes; success means it was held, so no old item is returned. If the
//!   condition fails with our entry still there (expired, user attributes),
//!   the entry is removed as below;
//! - release, any other lease: `REMOVE dl_holders.#key` if it exists;
//!   `UPDATED_OLD` tells whether it had expired. The item stays either way.
//! - info, read: one consistent `GetItem`; list: a consistent, paginated `Scan`.
//!
//! | attribute | meaning |
//! |---|---|
//! | hash key (`id`, S) | resource name |
//! | `dl_holders` (M) | lease key → `{t: token, o: owner, a: acquired ms, e: expires ms, d: data}` |
//! | `dl_fence` (N) | last token granted |
//! | `dl_permits` (N), `dl_expires` (N), `dl_rvn` (S) | size, last expiry, record version |
//! | `dl_ttl` (N) | epoch seconds for DynamoDB's TTL |
//! | `dl_attrs` (BOOL) | the item has user attributes: never replaced whole |
//!
//! Other attributes are the user's (the lease-pool API's extra attributes; an
//! item that has them is only ever updated, never put whole).
//!
//! **Fencing tokens** are the granting client's clock in microseconds since
//! 1970, written only if greater than `dl_fence` (the condition makes them
//! strictly increasing whatever the clocks say; a client whose clock is behind
//! the last token takes `dl_fence + 1` in the second write). Items are kept on
//! release, and because tokens follow the clock, even an item deleted by
//! DynamoDB's TTL (after [`DynamoConfig::retention`], 7 days unused) or by an
//! operator starts again above every token it gave out. (A client whose clock
//! runs far ahead pushes `dl_fence` ahead with it: others then pay the second
//! write until real time catches up; tokens still only grow.) Computing the token on
//! the client is also what lets a mutex grant be a single `PutItem` (no
//! `fence + 1` arithmetic) and puts the token inside the holder's entry.
//!
//! **Clock: absolute expiry plus a skew allowance.** DynamoDB conditions have
//! no server clock, so each client stamps expiries with its own wall clock
//! (`e` = its clock + TTL) and judges others' by it. Safety rests on a bound
//! `A` on the difference between any two clients' clocks
//! ([`DynamoConfig::clock_skew`], default 1 s, `?clock_skew_ms=`):
//!
//! - a taker treats a lease as expired only when its clock is past `e + A`;
//! - the holder's lost signal fires `A` (plus the core's 1 % drift margin)
//!   before its TTL runs out, measured on its monotonic clock from just before
//!   the request was sent ([`Capabilities::clock_margin`](distlock_core::Capabilities::clock_margin) is `A`).
//!
//! Either rule alone keeps "lost fires before anyone else is granted" true for
//! skews up to `A`; together they tolerate up to `2A` (the `clock_skew` test
//! shows `A`, `1.5A` and, past the bound, `4A`, where the guarantee is gone).
//! The price is `A` of each TTL for the holder and `A` of idle time after a
//! crash, hence a minimum TTL of `3A`. Renewals are refused once the holder's
//! own clock says the lease expired, so a late renewal never revives a lease.
//!
//! The alternative, amazon-dynamodb-lock-client's record-version rule (take
//! over only after watching the same `dl_rvn` for a whole lease, trusting no
//! wall clock), was not chosen: a single `try_lock` could then never take an
//! abandoned lease (it must watch for a whole TTL first, which needs
//! per-resource memory in every client), a takeover costs up to two TTLs, and
//! `info`/`list` could not tell a held lease from an abandoned one. Clocks on
//! AWS are kept within milliseconds (Amazon Time Sync), well inside `A`. The
//! record version still serves the optimistic second write above.
//!
//! **Heartbeats are batched.** The core's refresher hands all due leases to
//! one [`Store::refresh`](distlock_core::Store::refresh) call; it sends
//! `TransactWriteItems` of up to 100 conditional updates ([`MAX_BATCH`]),
//! transactions in parallel, so 1,000 held locks cost 10 requests per interval.
//! A transaction is all-or-nothing: if one lease is no longer held, DynamoDB
//! cancels it and names the failed conditions in `CancellationReasons`; those
//! leases are reported lost and the others are sent again (after three
//! cancelled rounds, one request each). A transaction touches an item once, so
//! two leases of one semaphore go to different transactions.
//! `BatchExecuteStatement` was not used: it takes 25 statements, not 100.
//! A single due lease is a plain `UpdateItem` (half the write cost).
//!
//! **Waiting polls** (DynamoDB cannot push): the core's jittered backoff,
//! capped by the holder's expiry (+`A`) that the failed condition returned.
//!
//! **Errors and retries.** The SDK retries throttling, 5xx and broken
//! connections ([`DynamoConfig::max_attempts`], jittered backoff from 50 ms).
//! A retried acquire is safe: if the first attempt was applied, the failed
//! condition shows our own lease key and the grant is returned. Release is
//! retried by this crate so that a retry finding the lease gone reports
//! [`OutcomeUnknown`](distlock_core::Error::OutcomeUnknown) rather than
//! `NotHeld`. Refresh is idempotent, and transactions carry the SDK's
//! idempotency token. Failures to connect are
//! [`Unavailable`](distlock_core::Error::Unavailable); a write whose answer
//! was lost is `OutcomeUnknown`; a missing table or bad schema is
//! [`Store`](distlock_core::Error::Store) with a message saying what to do.
//!
//! **Limits.** TTL [`DynamoConfig::min_ttl`] (3 A) ..= 1 day; up to
//! [`MAX_PERMITS`] permits and [`MAX_DATA_LEN`] bytes of data per grant, but all
//! holders of a resource share one item of at most 400 KB; names up to 512 bytes.
//!
//! **Emulator for tests.** `scripts/services up dynamo` runs moto's server
//! (`moto[dynamodb]` from PyPI) rather than dynalite (npm): dynalite is faster
//! and stricter in validation but lacks `TransactWriteItems`,
//! `ReturnValuesOnConditionCheckFailure=ALL_OLD` and the TTL API, all three of
//! which this backend relies on; moto implements them (it is laxer: it accepts
//! unused expression values, so the crate builds expressions with exactly the
//! placeholders they use, as real DynamoDB demands). Two moto faults matter:
//! its server runs requests on parallel threads without a lock (two
//! conditional writes to one item could both pass), so `scripts/services`
//! serializes them; and its `TransactWriteItems` copies the whole table
//! first (slow on a large table), so the conformance run renews one lease per
//! request ([`DynamoConfig::batch_refresh`] `= false`) while
//! `tests/heartbeat.rs` covers transactions on smaller tables. Costs on moto
//! and on DynamoDB: see BENCHMARKS.md.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod connect;
mod error;
mod layout;
pub mod lease_api;
mod store;

pub use aws_sdk_dynamodb;
pub use config::{
    Clock, DEFAULT_CLOCK_SKEW, DEFAULT_HASH_KEY, DEFAULT_RETENTION, DynamoConfig, MAX_TTL, SCHEMES,
    SkewedClock, SystemClock, URL_ENV,
};
pub use connect::DynamoConnector;
pub use store::{DynamoStore, MAX_BATCH, MAX_DATA_LEN, MAX_PERMITS};

/// A [`Locker`](distlock_core::Locker) over a [`DynamoStore`].
pub type DynamoLocker = distlock_core::StoreLocker<DynamoStore>;
