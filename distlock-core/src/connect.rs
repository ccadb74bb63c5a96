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
    /// Schemes known but not built in, with what to do about them.
    hints: Vec<(&'static [&'static str], String)>,
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

    /// Say what to do when a URL names one of `schemes` that no registered
    /// backend serves (typically: which feature to turn on).
    pub fn with_hint(mut self, schemes: &'static [&'static str], hint: impl Into<String>) -> Self {
        self.hints.push((schemes, hint.into()));
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
        let scheme = parsed.scheme();
        let Some(connector) = self
            .connectors
            .iter()
            .find(|c| c.schemes().contains(&scheme))
        else {
            return Err(Error::InvalidUrl {
                url: redact_url(url),
                reason: self.no_backend(scheme),
            });
        };
        connector.connect(&parsed).await
    }

    /// Why no backend serves `scheme`, and what to do.
    fn no_backend(&self, scheme: &str) -> String {
        if let Some((_, hint)) = self.hints.iter().find(|(s, _)| s.contains(&scheme)) {
            return format!("scheme `{scheme}` is not built in: {hint}");
        }
        let served = self.schemes();
        let known = served
            .iter()
            .copied()
            .chain(self.hints.iter().flat_map(|(s, _)| s.iter().copied()));
        let closest = known
            .map(|candidate| (edit_distance(scheme, candidate), candidate))
            .filter(|(distance, _)| *distance <= 2)
            .min();
        let served = served.join(", ");
        match closest {
            Some((_, candidate)) => format!(
                "no backend for scheme `{scheme}`: did you mean `{candidate}://`? \
                 (built with: {served})"
            ),
            None => format!("no backend for scheme `{scheme}` in this build; built with: {served}"),
        }
    }
}

/// Levenshtein distance, for "did you mean" (short strings only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Whether a URL option holds a secret: a password, secret or token, or an
/// access / API key (`hash_key=`, naming an attribute, is not one).
fn is_secret_option(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "credential"]
        .iter()
        .any(|s| name.contains(s))
        || matches!(
            name.as_str(),
            "access_key" | "api_key" | "private_key" | "pass"
        )
        || name.ends_with("access_key_id")
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
                    let value = if is_secret_option(&k) {
                        "***".to_owned()
                    } else if v.contains("://") {
                        // A URL inside an option (an endpoint) may carry a password too.
                        redact_url(&v)
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), value)
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
        let r =
            redact_url("dynamodb://t?hash_key=pk&endpoint=http://u:hunter4@h:1&api_key=hunter5");
        assert!(r.contains("hash_key=pk"), "{r}");
        assert!(!r.contains("hunter"), "{r}");
        let r = redact_url("postgres://u:hunter2@[::1");
        assert!(!r.contains("hunter"), "{r}");
        assert_eq!(r, "postgres://…");
    }

    #[tokio::test]
    async fn unknown_schemes_get_a_suggestion_or_a_hint() {
        let registry = Registry::new()
            .with(crate::NoopConnector)
            .with_hint(&["redis"], "turn on feature `redis`");
        let error = registry.connect("redis://h").await.unwrap_err();
        assert!(
            error.to_string().contains("turn on feature `redis`"),
            "{error}"
        );
        let error = registry.connect("reddis://h").await.unwrap_err();
        assert!(
            error.to_string().contains("did you mean `redis://`"),
            "{error}"
        );
        let error = registry.connect("nop://").await.unwrap_err();
        assert!(
            error.to_string().contains("did you mean `noop://`"),
            "{error}"
        );
        let error = registry.connect("zookeeper://h").await.unwrap_err();
        assert!(!error.to_string().contains("did you mean"), "{error}");
        assert_eq!(edit_distance("postgres", "postgress"), 1);
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
