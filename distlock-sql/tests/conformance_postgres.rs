//! The whole conformance suite against PostgreSQL (`DISTLOCK_POSTGRES_URL`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod support;

async fn fixture() -> Option<support::SqlFixture> {
    let url = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL")?;
    Some(support::SqlFixture::connect(&url, "conformance_pg").await)
}

distlock_core::conformance_suite!(fixture());
