//! Choosing a backend by URL: `scheme://…` (the seed's "service location").
//!
//! Each backend crate exports a [`Connector`] naming the schemes it serves. A
//! program registers the backends it was built with and connects by URL:
//!
//! ```
//! # async fn demo() -> distlock_core::Result<()> {
//! use distlock_core::{NoopConnector, Registry};
//!
//! let registry = Registry::new().with(NoopConnector);
//! let locker = registry.connect("noop://").await?;
//! assert_eq!(locker.capabilities().backend, "noop");
//! assert!(registry.connect("nope://x").await.is_err());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::{Error, Locker, Result};

/// Builds lockers for some URL schemes.
#[async_trait]
pub trait Connector: Debug + Send + Sync {
    /// The schemes served, without `://` (`redis`, `rediss`, …).
    fn schemes(&self) -> &'static [&'static str];

    /// Connect to the store `url` names.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) for a URL this backend cannot use (the
    /// message says which part), [`Unavailable`](Error::Unavailable) when the
    /// store does not answer.
    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>>;
}

/// The backends a program was built with, chosen by URL scheme.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    connectors: Vec<Arc<dyn Connector>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a backend (a later one wins for a scheme both serve).
    pub fn with(mut self, connector: impl Connector + 'static) -> Self {
        self.connectors.insert(0, Arc::new(connector));
        self
    }

    /// Every scheme served, sorted.
    pub fn schemes(&self) -> Vec<&'static str> {
        let mut schemes: Vec<_> = self
            .connectors
            .iter()
            .flat_map(|c| c.schemes().iter().copied())
            .collect();
        schemes.sort_unstable();
        schemes.dedup();
        schemes
    }

    /// Connect to the store `url` names.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) if the URL does not parse or no
    /// registered backend serves its scheme (the message lists those that do).
    pub async fn connect(&self, url: &str) -> Result<Arc<dyn Locker>> {
        let parsed = parse_url(url)?;
        let connector = self
            .connectors
            .iter()
            .find(|c| c.schemes().contains(&parsed.scheme()))
            .ok_or_else(|| Error::InvalidUrl {
                url: redact_url(url),
                reason: format!(
                    "no backend for scheme `{}` in this build; built with: {}",
                    parsed.scheme(),
                    self.schemes().join(", ")
                ),
            })?;
        connector.connect(&parsed).await
    }
}

/// Parse a store URL, with an error that never repeats a password.
pub fn parse_url(url: &str) -> Result<Url> {
    Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: redact_url(url),
        reason: format!("{e}; expected scheme://[user[:password]@]host[:port][/path][?options]"),
    })
}

/// The URL with its password (and any `password=`/`secret=`/`token=` query
/// value) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let secret = ["password", "secret", "token", "key"]
                        .iter()
                        .any(|s| k.to_ascii_lowercase().contains(s));
                    (
                        k.into_owned(),
                        if secret {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Unparseable: keep the scheme and say nothing else (it may hold secrets).
        Err(_) => match url.split_once("://") {
            Some((scheme, _))
                if scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                format!("{scheme}://…")
            }
            _ => "<unparseable URL>".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords_everywhere() {
        let r = redact_url("redis://user:hunter2@h:1/0?password=hunter3&db=1");
        assert!(!r.contains("hunter"), "{r}");
        assert!(r.contains("user") && r.contains("db=1"), "{r}");
        let r = redact_url("postgres://u:hunter2@[::1");
        assert!(!r.contains("hunter"), "{r}");
        assert_eq!(r, "postgres://…");
    }

    #[test]
    fn bad_urls_are_invalid_url() {
        for bad in ["", "no-scheme", "://x", "redis://u:p@[::1"] {
            let err = parse_url(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains(":p@"), "{err}");
        }
    }
}
