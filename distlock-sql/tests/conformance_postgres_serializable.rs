//! The whole conformance suite against PostgreSQL with every transaction
//! `SERIALIZABLE` (`options=-c default_transaction_isolation=serializable`):
//! the races of the acquire statement then surface as SQLSTATE 40001, which
//! the store retries.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

mod support;

/// `url` with `options=-c default_transaction_isolation=serializable`.
fn serializable(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20default_transaction_isolation%3Dserializable")
}

async fn fixture() -> Option<support::SqlFixture> {
    let url = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL")?;
    Some(support::SqlFixture::connect(&serializable(&url), "conformance_pg_serializable").await)
}

distlock_core::conformance_suite!(fixture());

#[tokio::test]
async fn sessions_really_are_serializable() {
    let Some(url) = distlock_core::conformance::service_url("DISTLOCK_POSTGRES_URL") else {
        return;
    };
    let pool = sqlx::PgPool::connect(&serializable(&url))
        .await
        .expect("connect");
    let level: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&pool)
        .await
        .expect("show");
    assert_eq!(level, "serializable");
}
