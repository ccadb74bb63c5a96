//! The whole conformance suite against SQLite, a new temporary file per case
//! (no server needed: this suite always runs).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod support;

async fn fixture() -> Option<support::SqlFixture> {
    Some(support::SqlFixture::sqlite().await)
}

distlock_core::conformance_suite!(fixture());
