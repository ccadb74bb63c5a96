//! [`EtcdConfig`]: where the cluster is, how to log in, and the session.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use distlock_core::{DEFAULT_TTL, Error, Result, UrlOptions, redact_url};
use percent_encoding::percent_decode_str;
use url::Url;

/// The schemes this crate serves: `etcd` (plain) and `etcds` (TLS).
pub const SCHEMES: &[&str] = &["etcd", "etcds"];

/// The key prefix used when the URL has no path.
pub const DEFAULT_PREFIX: &str = "distlock";

/// The shortest TTL etcd grants: its floor is 1.5 × the election timeout
/// (1 s by default), rounded up to whole seconds. Measured on etcd 3.4.23 and
/// 3.5: a grant of 1 s comes back as 2 s.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// The query options a URL may carry.
const OPTIONS: &[&str] = &[
    "session_ttl",
    "timeout",
    "connect_timeout",
    "endpoints",
    "ca",
    "cert",
    "key",
    "domain",
];

/// The environment variable [`EtcdConfig::from_env`] reads.
const ENV_URL: &str = "DISTLOCK_ETCD_URL";

/// How to reach an etcd cluster. Build with [`EtcdConfig::new`] and the `with_*`
/// methods, or from a URL with [`EtcdConfig::from_url`].
///
/// `Debug` never shows the password.
///
/// # URL
///
/// ```text
/// etcd://[user:password@]host:port[,host:port…][/key/prefix][?option=value&…]
/// etcds://…   (TLS)
/// ```
///
/// - several endpoints: `etcd://h1:2379,h2:2379`, or `etcd://h1,h2,h3:2379`
///   (one port for all), or `?endpoints=h2:2379,h3:2379` (the only form a URL
///   parser such as [`distlock_core::Registry`]'s accepts with distinct ports);
/// - the path is the key prefix (default [`DEFAULT_PREFIX`]);
/// - options: `session_ttl` (default 30 s), `timeout` (per request, default 5 s),
///   `connect_timeout` (default 3 s), for `etcds` `ca` (PEM file of the CA),
///   `cert` and `key` (client certificate), `domain` (name to verify); durations
///   as `30` (seconds), `30s`, `500ms`, `1.5s` or `2m`.
///
/// Unknown or repeated options are an error (a typo must not be ignored
/// silently). [`EtcdConfig::from_env`] reads the URL from `DISTLOCK_ETCD_URL`.
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// `host:port` of each member to try.
    pub endpoints: Vec<String>,
    /// User name for etcd authentication, if enabled.
    pub user: Option<String>,
    password: Option<String>,
    /// Connect with TLS (`etcds://`).
    pub tls: bool,
    /// PEM file of a CA to trust, in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM files of a client certificate and its key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name to verify in the server certificate (default: the host).
    pub domain: Option<String>,
    /// Keys live under `<prefix>/`.
    pub prefix: String,
    /// TTL of the session lease: locks whose TTL rounds up to the same whole
    /// seconds hang on it (default [`DEFAULT_TTL`], the default lock TTL).
    pub session_ttl: Duration,
    /// Limit for each request (default 5 s).
    pub request_timeout: Duration,
    /// Limit for opening a connection (default 3 s).
    pub connect_timeout: Duration,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("domain", &self.domain)
            .field("prefix", &self.prefix)
            .field("session_ttl", &self.session_ttl)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl EtcdConfig {
    /// Plain connections to `endpoints` (`host:port` each), defaults elsewhere.
    pub fn new<E: Into<String>>(endpoints: impl IntoIterator<Item = E>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            user: None,
            password: None,
            tls: false,
            ca_file: None,
            client_cert: None,
            domain: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            session_ttl: DEFAULT_TTL,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// Log in as `user` with `password`.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Connect with TLS.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Trust the CA in this PEM file (implies TLS).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self.tls = true;
        self
    }

    /// Present this client certificate (PEM files; implies TLS).
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self.tls = true;
        self
    }

    /// Keep keys under `<prefix>/`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Set the session lease's TTL (at least [`MIN_TTL`]; whole seconds, rounded up).
    pub fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Set the per-request limit.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Set the connection limit.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The session TTL in whole etcd seconds.
    pub(crate) fn session_secs(&self) -> i64 {
        ttl_secs(self.session_ttl)
    }

    /// Check the values a URL or a builder gave.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("no endpoint; name at least one host:port".into());
        }
        for endpoint in &self.endpoints {
            if endpoint.is_empty() || endpoint.contains(['/', '@', '?', '#', ' ']) {
                return Err(format!("endpoint `{endpoint}` is not host:port"));
            }
        }
        if self.session_ttl < MIN_TTL {
            return Err(format!(
                "session_ttl {:?} is below etcd's minimum lease TTL of {MIN_TTL:?}",
                self.session_ttl
            ));
        }
        if self.session_ttl > Duration::from_secs(7 * 24 * 3600) {
            return Err("session_ttl is above 7 days; use a shorter TTL".into());
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("timeouts must be above zero".into());
        }
        if self.prefix.chars().any(char::is_control) {
            return Err("the key prefix has a control character".into());
        }
        if !self.tls && (self.ca_file.is_some() || self.client_cert.is_some()) {
            return Err("ca, cert and key need TLS: use etcds://".into());
        }
        if self.tls && !cfg!(feature = "tls") {
            return Err("this build has no TLS: enable feature `tls` of distlock-etcd".into());
        }
        Ok(())
    }

    /// Parse a URL (see the type's documentation), including the
    /// `etcd://h1:p1,h2:p2` form that general URL parsers reject.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] naming the part at fault; the password is never shown.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        // Split off the extra hosts of `scheme://[userinfo@]h1:p1,h2:p2/…`, so that
        // the rest parses as an ordinary URL.
        let (first, extra) = split_hosts(url);
        let parsed = Url::parse(&first).map_err(|e| {
            invalid(format!(
                "{e}; expected etcd://[user:password@]host:port[,host:port…][/prefix][?options]"
            ))
        })?;
        let mut config = Self::from_parsed(&parsed)?;
        for host in extra {
            let endpoint = Url::parse(&format!("etcd://{host}"))
                .ok()
                .and_then(|u| endpoint_of(&u))
                .ok_or_else(|| invalid(format!("endpoint `{host}` is not host:port")))?;
            config.endpoints.push(endpoint);
        }
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// The URL in the environment variable `DISTLOCK_ETCD_URL` (the one the
    /// tests use), as [`EtcdConfig::from_url`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the variable when it is unset or not
    /// Unicode, else as [`EtcdConfig::from_url`].
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(ENV_URL).map_err(|e| {
            Error::invalid(
                "environment",
                format!("{ENV_URL} ({e}): set it to a URL such as etcd://127.0.0.1:2379"),
            )
        })?;
        Self::from_url(&url)
    }

    /// Build from a URL that a parser already accepted (the [`Connector`](distlock_core::Connector) path).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] naming the part at fault; the password is never shown.
    pub fn from_parsed(url: &Url) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact_url(url.as_str()),
            reason,
        };
        let tls = match url.scheme() {
            "etcd" => false,
            "etcds" => true,
            other => {
                return Err(invalid(format!(
                    "scheme `{other}` is not served here; use etcd:// or etcds://"
                )));
            }
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(invalid("no host; use etcd://host:port".into()));
        };
        let port = url.port().unwrap_or(2379);
        let mut endpoints = Vec::new();
        for name in host.split(',') {
            if name.is_empty() || name.contains(':') && !name.starts_with('[') {
                return Err(invalid(format!("host `{name}` is not a host name")));
            }
            endpoints.push(format!("{name}:{port}"));
        }
        let mut config = EtcdConfig::new(endpoints).with_tls(tls);
        if !url.username().is_empty() {
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let Some(password) = url.password() else {
                return Err(invalid(
                    "a user needs a password: user:password@host".into(),
                ));
            };
            config = config.with_user(decode(url.username()), decode(password));
        } else if url.password().is_some() {
            return Err(invalid(
                "a password needs a user: user:password@host".into(),
            ));
        }
        let path = url.path().trim_matches('/');
        if !path.is_empty() {
            config.prefix = percent_decode_str(path).decode_utf8_lossy().into_owned();
        }
        if url.fragment().is_some() {
            return Err(invalid("a fragment (#…) means nothing here".into()));
        }
        let mut options = UrlOptions::parse(url)?;
        if let Some(ttl) = options.take_duration("session_ttl")? {
            config.session_ttl = ttl;
        }
        if let Some(timeout) = options.take_duration("timeout")? {
            config.request_timeout = timeout;
        }
        if let Some(timeout) = options.take_duration("connect_timeout")? {
            config.connect_timeout = timeout;
        }
        if let Some(value) = options.take("endpoints") {
            for host in value.split(',').filter(|h| !h.is_empty()) {
                let endpoint = Url::parse(&format!("etcd://{host}"))
                    .ok()
                    .and_then(|u| endpoint_of(&u))
                    .ok_or_else(|| invalid(format!("endpoint `{host}` is not host:port")))?;
                config.endpoints.push(endpoint);
            }
        }
        if let Some(ca) = options.take("ca") {
            config.ca_file = Some(PathBuf::from(ca));
        }
        let cert = options.take("cert").map(PathBuf::from);
        let key = options.take("key").map(PathBuf::from);
        if let Some(domain) = options.take("domain") {
            config.domain = Some(domain);
        }
        options.finish(OPTIONS)?;
        match (cert, key) {
            (Some(cert), Some(key)) => config.client_cert = Some((cert, key)),
            (None, None) => {}
            _ => return Err(invalid("`cert` and `key` go together".into())),
        }
        config.validate().map_err(invalid)?;
        Ok(config)
    }
}

/// `host:port` of a parsed `etcd://host[:port]` with nothing else in it.
fn endpoint_of(url: &Url) -> Option<String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty() && !h.contains(','))?;
    if !url.username().is_empty()
        || url.password().is_some()
        || !matches!(url.path(), "" | "/")
        || url.query().is_some()
    {
        return None;
    }
    Some(format!("{host}:{}", url.port().unwrap_or(2379)))
}

/// `scheme://[userinfo@]h1:p1,h2:p2/rest` → (`scheme://[userinfo@]h1:p1/rest`, [`h2:p2`]).
fn split_hosts(url: &str) -> (String, Vec<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), Vec::new());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // Only split when some host carries its own port (`h1:1,h2:2`); `h1,h2:2379`
    // parses as it is.
    let parts: Vec<&str> = hosts.split(',').collect();
    if parts.len() < 2 || !parts[..parts.len() - 1].iter().any(|p| p.contains(':')) {
        return (url.to_owned(), Vec::new());
    }
    let first = format!("{scheme}://{userinfo}{}{tail}", parts[0]);
    (first, parts[1..].iter().map(|s| (*s).to_owned()).collect())
}

/// A TTL as etcd's whole seconds, rounded up (a lease never ends before the TTL).
pub(crate) fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_endpoint_form() {
        let c = EtcdConfig::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(c.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert!(!c.tls);
        let c = EtcdConfig::from_url("etcd://a:1,b:2,[::1]:3/app/locks?session_ttl=10s").unwrap();
        assert_eq!(c.endpoints, ["a:1", "b:2", "[::1]:3"]);
        assert_eq!(c.prefix, "app/locks");
        assert_eq!(c.session_ttl, Duration::from_secs(10));
        let c = EtcdConfig::from_url("etcd://a,b:7").unwrap();
        assert_eq!(c.endpoints, ["a:7", "b:7"]);
        let c = EtcdConfig::from_url("etcd://a:1?endpoints=b:2,c:3&timeout=500ms").unwrap();
        assert_eq!(c.endpoints, ["a:1", "b:2", "c:3"]);
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        let c = EtcdConfig::from_url("etcd://u%40x:p%3Aw@a:1,b:2").unwrap();
        assert_eq!(c.user.as_deref(), Some("u@x"));
        assert_eq!(c.password(), Some("p:w"));
        assert!(!format!("{c:?}").contains("p:w"));
    }

    #[test]
    fn rejects_bad_urls_without_showing_the_password() {
        for bad in [
            "etcd://",
            "etcd://user:hunter2@a:1?bogus=1",
            "etcd://user:hunter2@a:1,b:x",
            "etcd://user:hunter2@a:1?session_ttl=1s",
            "etcd://user:hunter2@a:1?session_ttl=abc",
            "etcd://a:1?ca=/x.pem",
            "etcd://a:1?cert=/x.pem",
            "redis://a:1",
            "etcd://user@a:1",
            "etcd://a:1#frag",
        ] {
            match EtcdConfig::from_url(bad) {
                Err(Error::InvalidUrl { url, reason }) => {
                    assert!(
                        !url.contains("hunter2") && !reason.contains("hunter2"),
                        "{bad}"
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn durations_and_seconds() {
        let config = EtcdConfig::from_url("etcd://h:1?session_ttl=30&timeout=2m").unwrap();
        assert_eq!(config.session_ttl, Duration::from_secs(30));
        assert_eq!(config.request_timeout, Duration::from_secs(120));
        let config = EtcdConfig::from_url("etcd://h:1?connect_timeout=250ms").unwrap();
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert!(EtcdConfig::from_url("etcd://h:1?timeout=x").is_err());
        assert!(EtcdConfig::from_url("etcd://h:1?timeout=1s&timeout=2s").is_err());
        assert_eq!(ttl_secs(Duration::from_millis(2500)), 3);
        assert_eq!(ttl_secs(Duration::from_secs(30)), 30);
    }
}
