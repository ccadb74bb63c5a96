//! CockroachDB: the PostgreSQL statements, adjusted.
//!
//! CockroachDB speaks the PostgreSQL protocol and runs every transaction
//! `SERIALIZABLE`. It has no advisory locks (cockroach#13546) and no
//! LISTEN/NOTIFY, so the lock table is the whole mechanism:
//!
//! - acquire is the same single statement as on PostgreSQL (the token row and
//!   the slot rows live in different tables, as CockroachDB refuses two
//!   modifying CTEs on one table); under `SERIALIZABLE` a concurrent grant
//!   makes it fail with SQLSTATE 40001, which the shared retry helper repeats
//!   with jittered exponential backoff;
//! - migration relies on `CREATE TABLE IF NOT EXISTS` (schema changes are
//!   transactional there), conflicts retried the same way;
//! - waiters poll (the core's backoff, capped by the holder's expiry);
//! - names sort by bytes already: no `COLLATE "C"`; no `MATERIALIZED` hints.

use crate::dialect::Dialect;
use crate::postgres::Flavour;

/// The CockroachDB flavour of the PostgreSQL statements.
pub(crate) const COCKROACH: Flavour = Flavour {
    dialect: Dialect::Cockroach,
    collate: "",
    materialized: "",
    notify: false,
    advisory_lock: false,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TableName;
    use crate::postgres::{POSTGRES, PgSql};

    fn sql() -> PgSql {
        PgSql::new(&TableName::new("app_locks").unwrap(), COCKROACH)
    }

    /// Every table a statement modifies (INSERT INTO / UPDATE).
    fn modified_tables(statement: &str) -> Vec<String> {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let mut out = Vec::new();
        for w in words.windows(2) {
            if (w[0] == "INTO" || w[0] == "UPDATE") && w[1] != "SET" {
                out.push(w[1].trim_end_matches('(').to_owned());
            }
        }
        out
    }

    #[test]
    fn acquire_is_one_statement_with_a_conditional_upsert() {
        let s = sql();
        let a = &*s.acquire;
        assert!(a.starts_with("WITH live AS ("), "{a}");
        assert!(a.contains("INSERT INTO app_locks_tokens AS c (resource, last_token)"));
        assert!(a.contains("ON CONFLICT (resource) DO UPDATE SET last_token = c.last_token + 1"));
        assert!(a.contains("WHERE c.last_token = (SELECT last_token FROM snap)"));
        assert!(a.contains("ON CONFLICT (resource, slot) DO UPDATE SET"));
        assert!(a.contains("WHERE l.lease_key IS NULL OR l.expires_us <= excluded.acquired_us"));
        assert!(a.contains("RETURNING l.token, l.expires_us"));
        assert_eq!(a.matches(';').count(), 0, "a single statement");
        // CockroachDB refuses two modifying CTEs on the same table.
        let mut tables = modified_tables(a);
        assert_eq!(tables.len(), 2, "{tables:?}");
        tables.dedup();
        assert_eq!(tables, ["app_locks_tokens", "app_locks"]);
    }

    #[test]
    fn time_is_the_database_clock() {
        let s = sql();
        for statement in [
            &s.acquire, &s.release, &s.refresh, &s.info, &s.read, &s.list,
        ] {
            assert!(
                statement.contains("extract(epoch FROM clock_timestamp())"),
                "{statement}"
            );
            assert!(!statement.contains("now()"), "{statement}");
        }
    }

    #[test]
    fn nothing_cockroach_lacks() {
        let s = sql();
        let all: Vec<&str> = s
            .migrate
            .iter()
            .map(String::as_str)
            .chain([
                &*s.acquire,
                &*s.release,
                &*s.refresh,
                &*s.info,
                &*s.read,
                &*s.list,
                &*s.evict,
                &*s.job_lock,
                &*s.job_unlock,
                &*s.job_enable,
                &*s.job_status,
            ])
            .collect();
        for statement in all {
            for missing in [
                "pg_advisory",
                "pg_notify",
                "LISTEN",
                "MATERIALIZED",
                "COLLATE",
            ] {
                assert!(!statement.contains(missing), "{missing} in {statement}");
            }
        }
        // PostgreSQL keeps them.
        let pg = PgSql::new(&TableName::new("app_locks").unwrap(), POSTGRES);
        assert!(pg.migrate[0].contains("pg_advisory_xact_lock"));
        assert!(pg.release.contains("pg_notify($3, rel.resource)"));
        assert!(pg.migrate[1].contains("COLLATE \"C\""));
    }

    #[test]
    fn release_and_refresh_compare_the_lease_key() {
        let s = sql();
        assert!(
            s.release
                .contains("WHERE resource = $1 AND lease_key = $2 AND expires_us >")
        );
        assert!(s.release.contains("SET lease_key = NULL"), "rows are kept");
        assert!(!s.release.contains("DELETE"));
        assert!(s.refresh.contains(
            "FROM unnest($1::TEXT[], $2::BYTEA[], $3::INT8[]) AS r(resource, lease_key, ttl_us)"
        ));
        assert!(
            s.refresh
                .contains("l.lease_key = r.lease_key AND l.expires_us >")
        );
        assert!(s.refresh.contains("RETURNING l.lease_key"));
    }

    #[test]
    fn schema_is_three_tables_created_if_missing() {
        let s = sql();
        assert_eq!(s.migrate.len(), 3);
        assert!(s.migrate[0].starts_with("CREATE TABLE IF NOT EXISTS app_locks ("));
        assert!(s.migrate[0].contains("PRIMARY KEY (resource, slot)"));
        assert!(s.migrate[1].starts_with("CREATE TABLE IF NOT EXISTS app_locks_tokens ("));
        assert!(s.migrate[2].starts_with("CREATE TABLE IF NOT EXISTS app_locks_jobs ("));
    }
}
