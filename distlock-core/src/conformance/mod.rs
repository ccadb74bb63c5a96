//! The conformance suite: one behaviour per test, for any backend.
//!
//! Not a stable API: cases are added as the contract grows.
//!
//! A backend (ours or yours) provides a [`Fixture`] and expands
//! [`conformance_suite!`](crate::conformance_suite) in a test file; every
//! behaviour becomes its own `#[tokio::test]`, named after the case:
//!
//! ```text
//! // tests/conformance.rs of a backend crate, with
//! // distlock-core = { version = "…", features = ["conformance"] } in [dev-dependencies]
//! use distlock_core::conformance::Fixture;
//!
//! async fn fixture() -> Option<MyFixture> {
//!     let url = distlock_core::conformance::service_url("MY_STORE_URL")?; // loud skip, or CI failure
//!     Some(MyFixture::connect(&url).await)
//! }
//!
//! distlock_core::conformance_suite!(fixture());
//! ```
//!
//! Each case works under its own random prefix, through `Arc<dyn Locker>` and
//! `Box<dyn Locker>`, and asserts outcomes, so a broken backend fails by name.
//! [`CASES`] lists every case for programs that run them another way.

// The suite is test code: a failed expectation panics with its message.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod acquire;
mod expiry;
mod fencing;
mod inspect;
mod permits;
mod refresh;
mod stress;
pub mod support;
mod validation;
mod waiting;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use crate::{Connector, Locker};

pub use acquire::*;
pub use expiry::*;
pub use fencing::*;
pub use inspect::*;
pub use permits::*;
pub use refresh::*;
pub use stress::*;
pub use validation::*;
pub use waiting::*;

/// What the suite needs from a backend.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// A new client of the store under test, as a separate process would have.
    /// All lockers from one fixture see the same store.
    async fn locker(&self) -> Arc<dyn Locker>;

    /// End every lease of `resource` behind its holders' backs, as an operator
    /// deleting the key or a store failover would. Holders are not told.
    async fn expire(&self, resource: &str);

    /// The backend's connector, to check URL handling.
    fn connector(&self) -> Option<Arc<dyn Connector>> {
        None
    }

    /// URLs of this backend's schemes that must fail with
    /// [`InvalidUrl`](crate::Error::InvalidUrl). Put a password in some: the
    /// suite checks it never appears in the error.
    fn bad_urls(&self) -> Vec<String> {
        Vec::new()
    }

    /// A URL of this backend where nothing answers (a closed port), to check that
    /// an unreachable store is a transient error within bounded time.
    fn unreachable_url(&self) -> Option<String> {
        None
    }
}

/// One case of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The case's name (also its test name).
    pub name: &'static str,
    /// Run it; panics with the assertion that failed.
    pub run: for<'a> fn(&'a dyn Fixture) -> BoxFuture<'a, ()>,
}

/// Every case, in the order the macro expands them.
pub const CASES: &[Case] = crate::__conformance_each!(__conformance_table {});

/// The service URL from environment variable `var`.
///
/// Unset: with `CI` set this **panics** (a suite that cannot run must fail CI,
/// not pass it silently); otherwise it prints a loud `SKIPPED` line naming the
/// variable and how to start the service, and returns `None`.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let hint = format!(
                "{var} is not set: start the store with `eval \"$(scripts/services up)\"` \
                 (see README)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("CI requires this suite to run, but {hint}");
            }
            eprintln!("SKIPPED: conformance case not run against this backend: {hint}");
            None
        }
    }
}

/// The list of cases, passed to a macro (`$then`) with extra leading tokens.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($then:ident { $($head:tt)* }) => {
        $crate::$then! { $($head)* ;
            try_lock_grants_a_free_resource,
            try_lock_on_a_held_resource_returns_none,
            release_frees_the_resource,
            independent_resources_do_not_interfere,
            tokens_strictly_increase_across_grants,
            tokens_increase_after_expiry,
            stale_key_cannot_release,
            stale_key_cannot_refresh,
            wrong_key_cannot_release_or_refresh,
            double_release_is_not_held,
            detached_lease_is_released_by_key_from_another_client,
            handler_refresh_by_key_extends_the_lease,
            expired_lease_is_granted_again,
            lost_fires_before_anyone_else_is_granted,
            lost_fires_when_the_lease_is_deleted,
            release_by_key_from_another_client_fires_lost,
            manual_refresh_after_release_by_key_is_lost,
            refresh_with_another_resources_key_is_not_held,
            views_agree_right_after_expiry,
            force_release_ends_every_lease_and_fences,
            lock_time_is_the_grant_after_a_wait,
            lost_signal_is_ready_at_once_and_clonable,
            auto_refresh_keeps_the_lock_across_many_ttls,
            manual_refresh_extends_the_lease,
            batch_refresh_renews_many_leases_in_few_calls,
            lock_waits_for_release,
            release_wakes_a_waiter_promptly,
            lock_wait_times_out,
            lock_with_zero_wait_timeout_tries_once,
            lock_waits_until_granted_by_default,
            cancelled_wait_leaves_no_lease,
            cancelled_acquires_leave_no_lease,
            cancelled_semaphore_waits_leave_every_permit,
            dropped_lock_is_released_in_the_background,
            waiters_are_all_served_in_turn,
            push_wakeup_hands_off_faster_than_polling,
            queued_wait_serves_waiters_in_order,
            permits_admit_that_many_holders,
            permits_size_mismatch_is_an_error,
            permits_release_frees_one_slot,
            permits_may_change_once_free,
            info_reports_the_holder,
            info_of_a_free_resource_is_none,
            read_returns_the_data,
            list_finds_held_resources_by_prefix,
            thousand_locks_at_once,
            contended_counter_has_no_lost_update,
            works_through_box_dyn_locker,
            invalid_resource_names_are_rejected,
            ttl_out_of_range_is_rejected,
            zero_or_too_many_permits_are_rejected,
            oversized_data_is_rejected,
            refresh_interval_must_fit_in_the_ttl,
            bad_owner_is_rejected,
            bad_input_loses_nothing,
            bad_urls_are_rejected,
            unreachable_store_is_a_transient_error,
            random_input_gets_typed_answers_and_loses_nothing,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_table {
    ( ; $($case:ident),* $(,)?) => {
        &[ $( $crate::conformance::Case {
            name: stringify!($case),
            run: |fixture| ::std::boxed::Box::pin($crate::conformance::$case(fixture)),
        } ),* ]
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($fixture:expr ; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run(async {
                    if let ::std::option::Option::Some(fixture) = $fixture.await {
                        $crate::conformance::$case(&fixture).await;
                    }
                });
            }
        )*
    };
}

/// Run one case on its own multi-thread runtime (two workers), as the macro's
/// tests do.
pub fn run(case: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the case")
        .block_on(case);
}

/// Expand the whole suite into one `#[tokio::test]` per case.
///
/// `$fixture` is an expression evaluated in each test that yields a future of
/// `Option<impl Fixture>` (`None` skips, see [`service_url`]). It works under
/// any name of the crate: `distlock_core`, the `distlock` facade (feature
/// `conformance`), or a renamed dependency.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::__conformance_each!(__conformance_tests { $fixture });
    };
}
