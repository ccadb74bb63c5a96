//! [`MemoryConfig`]: which in-process table (`memory://` or `memory://NAME`).

use distlock_core::{Error, Result, UrlOptions, redact_url};
use url::Url;

/// The URL schemes this crate serves.
pub const SCHEMES: &[&str] = &["memory"];

/// The environment variable [`MemoryConfig::from_env`] reads.
pub const URL_ENV: &str = "DISTLOCK_MEMORY_URL";

/// Which table of the process: stores connected with the same name share one
/// table, like clients of one server. There is nothing else to configure (no
/// address, credentials or options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The table's name (default `""`: the process-wide default table).
    pub name: String,
}

impl MemoryConfig {
    /// The process-wide default table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table named `name` (default: the default table, `""`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The config of `memory://` (the default table) or `memory://NAME`.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl): another scheme, a user, password,
    /// port, path or any `?option` (there are none).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = Url::parse(url).map_err(|error| Error::InvalidUrl {
            url: redact_url(url),
            reason: error.to_string(),
        })?;
        let options = UrlOptions::parse(&parsed)?;
        if !SCHEMES.contains(&parsed.scheme()) {
            return Err(options.invalid("the memory backend serves memory:// only"));
        }
        if parsed.password().is_some() || !parsed.username().is_empty() || parsed.port().is_some() {
            return Err(options.invalid(
                "memory:// takes no user, password or port; use memory:// or memory://NAME",
            ));
        }
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(options
                .invalid("memory:// takes no path or options; use memory:// or memory://NAME"));
        }
        options.finish(&[])?;
        Ok(MemoryConfig::new().with_name(parsed.host_str().unwrap_or("")))
    }

    /// The config the URL in `DISTLOCK_MEMORY_URL` names.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) when the variable is unset
    /// or not Unicode; as [`MemoryConfig::from_url`] otherwise.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(URL_ENV).map_err(|_| {
            Error::invalid(URL_ENV, "not set: export DISTLOCK_MEMORY_URL=memory://NAME")
        })?;
        Self::from_url(&url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_table_and_take_nothing_else() {
        assert_eq!(MemoryConfig::from_url("memory://").unwrap().name, "");
        assert_eq!(
            MemoryConfig::from_url("memory://jobs").unwrap().name,
            "jobs"
        );
        for bad in [
            "redis://x",
            "memory://u:hunter2@x",
            "memory://x:1",
            "memory://x/p",
            "memory://x?size=3",
            "memory://x?a=1&a=2",
            "memory://[::1",
        ] {
            match MemoryConfig::from_url(bad) {
                Err(Error::InvalidUrl { url, .. }) => assert!(!url.contains("hunter2"), "{url}"),
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
    }
}
