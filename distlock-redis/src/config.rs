//! Where the Redis server is and how to talk to it: [`RedisConfig`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use distlock_core::{Error, Result, UrlOptions, parse_url, redact_url};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use url::{Host, Url};

/// The schemes this crate serves.
pub const SCHEMES: &[&str] = &["redis", "rediss", "redis+unix"];

/// The namespace keys live under unless the URL says otherwise.
pub const DEFAULT_NAMESPACE: &str = "distlock";

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The query options a URL may carry (`ca`, `cert`, `key` for `rediss://` only).
const OPTIONS: &[&str] = &[
    "namespace",
    "db",
    "user",
    "username",
    "password",
    "connect_timeout_ms",
    "response_timeout_ms",
    "ca",
    "cert",
    "key",
];

/// The environment variable [`RedisConfig::from_env`] reads.
pub(crate) const ENV_URL: &str = "DISTLOCK_REDIS_URL";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Tcp { host: String, port: u16, tls: bool },
    Unix(PathBuf),
}

/// How to reach one Redis server. Build it from a URL with
/// [`RedisConfig::from_url`], adjust with the `with_*` methods.
///
/// URL forms (user and password may also come as `?user=`/`?password=`):
///
/// - `redis://[user[:password]@]host[:port][/db][?options]`
/// - `rediss://…` the same over TLS (rustls; the server certificate is checked
///   against the Mozilla roots, or the `ca=` file)
/// - `redis+unix:///path/to/redis.sock[?db=N&options]`
///
/// Options: `namespace=` (key prefix, default `distlock`; letters, digits and
/// `_.-/`, no `:` since that separates it from the resource name), `db=`,
/// `user=`, `password=`, `connect_timeout_ms=` (default 2000),
/// `response_timeout_ms=` (default 2000; both a number of milliseconds or a
/// duration such as `1.5s`, from 1 ms to 1 h), and for `rediss://` `ca=`
/// (PEM file of the CA to trust instead of the public roots), `cert=` + `key=`
/// (PEM files of a client certificate). Anything else is an error, so a typo
/// is not silently ignored; so is an option given twice.
/// [`RedisConfig::from_env`] reads the URL from `DISTLOCK_REDIS_URL`.
///
/// `Debug` shows the URL with the password replaced by `***`; the password
/// never appears in `Debug`, errors or logs.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    address: Address,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    namespace: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    ca_pem: Option<Vec<u8>>,
    client_pem: Option<(Vec<u8>, Vec<u8>)>,
    shown: String,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.shown)
            .field("namespace", &self.namespace)
            .field("db", &self.db)
            .field("user", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.is_tls())
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_pem.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// Parse a `redis://`, `rediss://` or `redis+unix://` URL.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl), naming the part at fault (the password
    /// is never repeated), also when a `ca=`/`cert=`/`key=` file cannot be read.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_parsed(&parse_url(url)?)
    }

    /// The URL in the environment variable `DISTLOCK_REDIS_URL` (the one the
    /// tests use), as [`RedisConfig::from_url`].
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) naming the variable when it
    /// is unset or not Unicode, else as [`RedisConfig::from_url`].
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(ENV_URL).map_err(|e| {
            Error::invalid(
                "environment",
                format!("{ENV_URL} ({e}): set it to a URL such as redis://127.0.0.1:6379"),
            )
        })?;
        Self::from_url(&url)
    }

    /// As [`RedisConfig::from_url`], for a URL already parsed.
    ///
    /// # Errors
    /// As [`RedisConfig::from_url`].
    pub fn from_parsed(url: &Url) -> Result<Self> {
        let shown = redact_url(url.as_str());
        let invalid = |reason: String| Error::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        if url.fragment().is_some() {
            return Err(invalid(
                "a fragment (`#…`) is not understood; use ?options".into(),
            ));
        }
        let mut username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(|u| decode(u, "user name"))
            .transpose()
            .map_err(&invalid)?;
        let mut password = url
            .password()
            .map(|p| decode(p, "password"))
            .transpose()
            .map_err(&invalid)?;
        let (address, mut db) = match url.scheme() {
            scheme @ ("redis" | "rediss") => {
                let host = match url.host() {
                    Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
                    Some(Host::Ipv4(ip)) => ip.to_string(),
                    Some(Host::Ipv6(ip)) => ip.to_string(),
                    _ => return Err(invalid(format!("{scheme}:// needs a host"))),
                };
                let db = match url.path().trim_start_matches('/') {
                    "" => None,
                    db => Some(parse_db(db).map_err(&invalid)?),
                };
                let port = url.port().unwrap_or(DEFAULT_PORT);
                if port == 0 {
                    return Err(invalid("port 0 is not a port".into()));
                }
                let tls = scheme == "rediss";
                (Address::Tcp { host, port, tls }, db)
            }
            "redis+unix" => {
                if !matches!(url.host(), None | Some(Host::Domain("" | "localhost"))) {
                    return Err(invalid(
                        "redis+unix:// takes a socket path, as redis+unix:///run/redis.sock".into(),
                    ));
                }
                if url.port().is_some() {
                    return Err(invalid("redis+unix:// takes no port".into()));
                }
                let path = decode(url.path(), "socket path").map_err(&invalid)?;
                if !path.starts_with('/') || path.len() < 2 {
                    return Err(invalid(
                        "redis+unix:// needs an absolute socket path, as redis+unix:///run/redis.sock"
                            .into(),
                    ));
                }
                (Address::Unix(PathBuf::from(path)), None)
            }
            other => {
                return Err(invalid(format!(
                    "scheme `{other}` is not served by the redis backend (use {})",
                    SCHEMES.join(", ")
                )));
            }
        };
        let mut config = RedisConfig {
            address,
            db: 0,
            username: None,
            password: None,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            ca_pem: None,
            client_pem: None,
            shown: shown.clone(),
        };
        let mut options = UrlOptions::parse(url)?;
        if let Some(value) = options.take("namespace") {
            validate_namespace(&value).map_err(&invalid)?;
            config.namespace = value;
        }
        if let Some(value) = options.take("db") {
            if db.is_some() {
                return Err(invalid(
                    "the database is given twice (path and ?db=)".into(),
                ));
            }
            db = Some(parse_db(&value).map_err(&invalid)?);
        }
        for name in ["user", "username"] {
            if let Some(value) = options.take(name) {
                if username.is_some() {
                    return Err(invalid("the user is given twice".into()));
                }
                username = Some(value).filter(|u| !u.is_empty());
            }
        }
        if let Some(value) = options.take("password") {
            if password.is_some() {
                return Err(invalid("the password is given twice".into()));
            }
            password = Some(value);
        }
        if let Some(timeout) = options.take_duration("connect_timeout_ms")? {
            config.connect_timeout =
                check_timeout("connect_timeout_ms", timeout).map_err(&invalid)?;
        }
        if let Some(timeout) = options.take_duration("response_timeout_ms")? {
            config.response_timeout =
                check_timeout("response_timeout_ms", timeout).map_err(&invalid)?;
        }
        let mut tls_file = |name: &'static str| -> Result<Option<Vec<u8>>> {
            match options.take(name) {
                None => Ok(None),
                Some(_) if !config.is_tls() => {
                    Err(invalid(format!("`{name}=` applies to rediss:// only")))
                }
                Some(path) => read_pem(name, &path).map(Some).map_err(&invalid),
            }
        };
        let ca = tls_file("ca")?;
        let cert = tls_file("cert")?;
        let key = tls_file("key")?;
        config.ca_pem = ca;
        options.finish(OPTIONS)?;
        config.client_pem = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "a client certificate needs both `cert=` and `key=`".into(),
                ));
            }
        };
        if password.is_none() && username.is_some() {
            return Err(invalid(
                "a user name without a password; give user:password@ or ?password=".into(),
            ));
        }
        config.db = db.unwrap_or(0);
        config.username = username;
        config.password = password;
        Ok(config)
    }

    /// Keep keys under namespace `namespace` (default `distlock`): lockers that
    /// should see each other's locks use the same one.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) unless it is 1 to 64 of
    /// letters, digits and `_.-/` (no `:`: it separates namespace and resource
    /// in keys, so `a:x` + `y` would collide with `a` + `x:y`).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Result<Self> {
        let namespace = namespace.into();
        validate_namespace(&namespace).map_err(|reason| Error::invalid("namespace", reason))?;
        self.namespace = namespace;
        Ok(self)
    }

    /// How long one connection attempt may take (default 2 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer (default 2 s). A command that
    /// times out after being sent has an unknown outcome.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Trust this CA (PEM) for `rediss://` instead of the public roots.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Present this client certificate and key (PEM) on `rediss://`.
    pub fn with_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_pem = Some((cert.into(), key.into()));
        self
    }

    /// The key namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.shown
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.address, Address::Tcp { tls: true, .. })
    }

    /// The server as errors name it: `host:port` or the socket path.
    pub(crate) fn endpoint(&self) -> String {
        match &self.address {
            Address::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port, .. } => format!("{host}:{port}"),
            Address::Unix(path) => path.display().to_string(),
        }
    }

    /// The response timeout.
    pub(crate) fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The connect timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A redis-rs client for this configuration (no I/O). `resp3`: speak RESP3,
    /// whose push channel tells the connection manager at once when the server
    /// closes the connection (it then reconnects before the next command
    /// instead of failing it); pub/sub connections use RESP2.
    pub(crate) fn client(&self, resp3: bool) -> Result<redis::Client> {
        let addr = match &self.address {
            Address::Tcp {
                host,
                port,
                tls: false,
            } => ConnectionAddr::Tcp(host.clone(), *port),
            Address::Tcp {
                host,
                port,
                tls: true,
            } => {
                install_crypto_provider();
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            }
            Address::Unix(path) => ConnectionAddr::Unix(path.clone()),
        };
        let mut settings = RedisConnectionInfo::default().set_db(self.db);
        if resp3 {
            settings = settings.set_protocol(redis::ProtocolVersion::RESP3);
        }
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let invalid = |e: redis::RedisError| Error::InvalidUrl {
            url: self.shown.clone(),
            reason: e.to_string(),
        };
        let info = addr
            .into_connection_info()
            .map_err(invalid)?
            .set_redis_settings(settings);
        if self.ca_pem.is_some() || self.client_pem.is_some() {
            let certificates = redis::TlsCertificates {
                client_tls: self
                    .client_pem
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: self.ca_pem.clone(),
            };
            redis::Client::build_with_tls(info, certificates).map_err(invalid)
        } else {
            redis::Client::open(info).map_err(invalid)
        }
    }
}

/// rustls needs one process-wide crypto provider; a build that links two (ring
/// here, aws-lc-rs from another crate) cannot pick one by itself. Install ring
/// unless someone installed one already.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one provider is in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn decode(text: &str, what: &str) -> Result<String, String> {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("the {what} is not valid percent-encoding"))
}

fn parse_db(text: &str) -> Result<i64, String> {
    text.parse::<u16>()
        .map(i64::from)
        .map_err(|_| format!("database `{text}` is not a number 0..=65535; use /N or ?db=N"))
}

fn check_timeout(name: &str, timeout: Duration) -> Result<Duration, String> {
    if (Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&timeout) {
        Ok(timeout)
    } else {
        Err(format!(
            "`{name}` must be from 1 ms to 1 h (a bare number is in milliseconds)"
        ))
    }
}

fn read_pem(name: &str, path: &str) -> Result<Vec<u8>, String> {
    if path.is_empty() {
        return Err(format!("`{name}=` needs the path of a PEM file"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read `{name}` file {path}: {e}"))
}

/// A namespace is 1 to 64 of letters, digits and `_.-/`. No `:`: keys are
/// `{P:R}` and the first `:` ends the namespace, so namespace `a:x` with
/// resource `y` would be the same key as namespace `a` with resource `x:y`.
fn validate_namespace(namespace: &str) -> Result<(), String> {
    if namespace.contains(':') {
        return Err(format!(
            "namespace `{}` contains `:`, which separates the namespace from the resource name \
             in keys (namespace `a:x` + resource `y` would be the lock of namespace `a` + \
             resource `x:y`); use letters, digits and `_.-/`, e.g. `{}`",
            namespace.escape_debug(),
            namespace.replace(':', "/").escape_debug()
        ));
    }
    if namespace.is_empty()
        || namespace.len() > 64
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err(format!(
            "namespace `{}` must be 1 to 64 of letters, digits and `_.-/`",
            namespace.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        let c = RedisConfig::from_url("redis://u:hunter2@h:7000/3?namespace=app").unwrap();
        assert_eq!(
            c.address,
            Address::Tcp {
                host: "h".into(),
                port: 7000,
                tls: false
            }
        );
        assert_eq!((c.db, c.namespace.as_str()), (3, "app"));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("hunter2"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(c.redacted_url().contains("***"));

        let c = RedisConfig::from_url("rediss://:p%40ss@[::1]").unwrap();
        assert!(c.is_tls());
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(
            c.address,
            Address::Tcp {
                host: "::1".into(),
                port: 6379,
                tls: true
            }
        );

        let c =
            RedisConfig::from_url("redis+unix:///run/redis.sock?db=2&password=hunter2").unwrap();
        assert_eq!(c.address, Address::Unix("/run/redis.sock".into()));
        assert_eq!(c.db, 2);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn rejects_what_it_cannot_use_without_showing_the_password() {
        for bad in [
            "redis://:hunter2@",
            "redis://u:hunter2@h/notadb",
            "redis://u:hunter2@h?nope=1",
            "redis://u:hunter2@h?ca=/etc/hostname",
            "redis://h/1?db=2",
            "redis://h#insecure",
            "redis+unix://",
            "redis+unix://host:1/x.sock",
            "redis://h?namespace=a{b}",
            "redis://h?namespace=a:x",
            "redis://h?namespace=a%3Ax",
            "redis://h?response_timeout_ms=0",
            "redis://u@h",
            "rediss://h?ca=/nonexistent/ca.pem",
            "rediss://h?cert=/etc/hostname",
            "memcached://h",
        ] {
            match RedisConfig::from_url(bad) {
                Err(Error::InvalidUrl { url, reason }) => {
                    assert!(
                        !url.contains("hunter2") && !reason.contains("hunter2"),
                        "{bad}"
                    );
                }
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_namespace_with_the_key_separator_is_rejected_with_the_reason() {
        let err = RedisConfig::from_url("redis://h?namespace=a:x").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
        assert!(
            text.contains("`a:x`") && text.contains("separates"),
            "{text}"
        );
        let config = RedisConfig::from_url("redis://h").unwrap();
        assert_eq!(config.namespace(), DEFAULT_NAMESPACE);
        let err = config.clone().with_namespace("a:x").unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    what: "namespace",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(config.with_namespace("a/x").unwrap().namespace(), "a/x");
    }
}
