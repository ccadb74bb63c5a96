//! The store's layout: the validated table names every statement uses, and
//! the text helpers shared by the dialects' SQL (`LIKE` prefixes, JSON
//! batches).
//!
//! For a base name `NAME` the crate uses three tables in every dialect:
//! `NAME` (one row per permit slot: `resource, slot, permits, token,
//! lease_key, owner, data, acquired_us, expires_us`), `NAME_tokens` (the
//! fencing counter of each resource, never deleted) and `NAME_jobs` (job
//! locks). Each dialect module writes these definitions in its own SQL.

use std::fmt;

use distlock_core::{Error, RefreshRequest, Result};

use crate::rows::ttl_micros;

/// The default base name of the lock tables.
pub const DEFAULT_TABLE: &str = "distlock";

/// Longest accepted table base name (PostgreSQL cuts identifiers at 63 bytes;
/// the longest suffix added is `_tokens`).
pub const MAX_TABLE_LEN: usize = 48;

/// A validated table base name: `[a-z_][a-z0-9_]*`, optionally qualified by one
/// schema (`schema.name`), at most [`MAX_TABLE_LEN`] bytes, not ending in
/// `_tokens` or `_jobs`. The crate creates
/// `NAME` (lease slots), `NAME_tokens` (fencing counters) and `NAME_jobs` (job
/// locks). Names are checked here because they are spliced into SQL text:
/// nothing else ever is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

/// What the companion tables add to the base name. A base name may not end
/// in one, or two bases would share a table.
const SUFFIXES: [&str; 2] = ["_tokens", "_jobs"];

impl TableName {
    /// Check and wrap a table base name.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) (`table`) naming the rule broken.
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason: String| Error::invalid("table", reason);
        if name.is_empty() || name.len() > MAX_TABLE_LEN {
            return Err(invalid(format!(
                "`{}` must be 1..={MAX_TABLE_LEN} bytes",
                name.escape_debug()
            )));
        }
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 {
            return Err(invalid(format!(
                "`{}` has more than one `.`; use `name` or `schema.name`",
                name.escape_debug()
            )));
        }
        for part in &parts {
            let mut chars = part.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(invalid(format!(
                    "`{}` must be lowercase ASCII letters, digits and `_`, not starting with a \
                     digit (optionally `schema.name`)",
                    name.escape_debug()
                )));
            }
        }
        // The companion tables are the base name plus a suffix: base `a_tokens`
        // would be the tokens table of base `a`.
        for suffix in SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                return Err(invalid(format!(
                    "`{name}` ends in `{suffix}`, the suffix of the companion table of base \
                     name `{base}` (the tables are NAME, NAME_tokens and NAME_jobs); choose a \
                     base name that does not end in `_tokens` or `_jobs`"
                )));
            }
        }
        Ok(TableName(name.to_owned()))
    }

    /// The base name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The base name with a suffix (`_tokens`, `_jobs`: one of [`SUFFIXES`]).
    pub(crate) fn with(&self, suffix: &str) -> String {
        debug_assert!(SUFFIXES.contains(&suffix), "{suffix}");
        format!("{}{suffix}", self.0)
    }
}

impl Default for TableName {
    fn default() -> Self {
        TableName(DEFAULT_TABLE.to_owned())
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({})", self.0)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Escape a `list` prefix for `LIKE … ESCAPE '!'`.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A JSON string literal (for the batched refresh of MySQL and SQLite).
pub(crate) fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `[{"r":resource,"k":hex key,"t":ttl µs},…]` for `JSON_TABLE` / `json_each`.
#[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
pub(crate) fn refresh_json(leases: &[RefreshRequest<'_>]) -> String {
    let mut json = String::with_capacity(leases.len() * 96 + 2);
    json.push('[');
    for (i, lease) in leases.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str("{\"r\":");
        json_string(&mut json, lease.resource);
        json.push_str(",\"k\":\"");
        json.push_str(&lease.key.to_hex());
        json.push_str("\",\"t\":");
        json.push_str(&ttl_micros(lease.ttl).to_string());
        json.push('}');
    }
    json.push(']');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated() {
        for good in ["distlock", "a", "_x9", "app.locks", "s_1.t_2"] {
            assert!(TableName::new(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_TABLE_LEN + 1);
        for bad in [
            "",
            "Locks",
            "9lives",
            "a-b",
            "a;drop table x",
            "a.b.c",
            ".a",
            "a.",
            "\"q\"",
            "tab le",
            "distlock_tokens",
            "distlock_jobs",
            "app.locks_tokens",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    TableName::new(bad),
                    Err(Error::InvalidArgument { what: "table", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("a_b%c!d"), "a!_b!%c!!d%");
        assert_eq!(like_prefix(""), "%");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\u{1}ü");
        assert_eq!(s, "\"a\\\"b\\\\c\\u0001ü\"");
    }
}
