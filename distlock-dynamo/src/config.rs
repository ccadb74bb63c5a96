//! [`DynamoConfig`]: which table, how to reach it, and the clock-skew allowance.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use distlock_core::{Error, Result, UrlOptions, redact_url};
use url::Url;

/// The URL schemes this crate serves.
pub const SCHEMES: &[&str] = &["dynamodb"];

/// The environment variable [`DynamoConfig::from_env`] reads.
pub const URL_ENV: &str = "DISTLOCK_DYNAMO_URL";

/// The wall clock a [`DynamoStore`](crate::DynamoStore) stamps leases with.
///
/// DynamoDB has no server clock usable in a condition, so every client judges
/// expiry by its own clock; see the crate docs for the skew allowance that makes
/// that safe. Tests inject a [`SkewedClock`] to play two machines whose clocks
/// differ.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock shifted by a fixed offset: a machine whose clock is ahead
/// (`ahead = true`) or behind. For tests of clock skew.
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    offset: Duration,
    ahead: bool,
}

impl SkewedClock {
    /// A clock `offset` ahead of the system clock.
    pub fn ahead(offset: Duration) -> Self {
        SkewedClock {
            offset,
            ahead: true,
        }
    }

    /// A clock `offset` behind the system clock.
    pub fn behind(offset: Duration) -> Self {
        SkewedClock {
            offset,
            ahead: false,
        }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        if self.ahead {
            now.checked_add(self.offset).unwrap_or(now)
        } else {
            now.checked_sub(self.offset)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }
}

/// Default [`DynamoConfig::clock_skew`]: 1 s.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(1);
/// Default [`DynamoConfig::retention`]: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest lease TTL this backend accepts: 1 day (see [`DynamoConfig::retention`]).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default name of the table's hash key attribute.
pub const DEFAULT_HASH_KEY: &str = "id";

/// Where the lease table is and how the store behaves. Build with
/// [`DynamoConfig::new`] and the `with_*` methods, or from a URL
/// (`dynamodb://TABLE?region=…&endpoint=…`, see [`DynamoConfig::from_url`]).
///
/// Region and credentials come from the usual AWS chain (environment,
/// profile files, web identity, ECS, instance metadata) unless set here.
/// The `Debug` output shows no credentials (the config holds none; the
/// endpoint is shown with any password redacted).
#[derive(Clone)]
#[non_exhaustive]
pub struct DynamoConfig {
    /// Table name (3–255 characters of `a-z A-Z 0-9 _ - .`).
    pub table: String,
    /// Name of the table's string hash key (default [`DEFAULT_HASH_KEY`], `id`).
    pub hash_key: String,
    /// AWS region; `None` takes it from the AWS config chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint override for emulators (`http://127.0.0.1:8000`); `None` is AWS.
    pub endpoint: Option<String>,
    /// The largest difference between two clients' wall clocks that leases stay
    /// safe under (default [`DEFAULT_CLOCK_SKEW`], 1 s). A taker treats a lease as
    /// expired only when its clock is past the stored expiry plus this, and the
    /// holder's lost signal fires this much before its TTL (it is
    /// [`Capabilities::clock_margin`](distlock_core::Capabilities::clock_margin)).
    /// The backend's minimum TTL is three times this (at least 100 ms).
    pub clock_skew: Duration,
    /// How long an item is kept after its last write before DynamoDB's TTL
    /// deletes it (default 7 days; at least [`MAX_TTL`] plus an hour). Deleting
    /// an item does not reset its tokens: see the crate docs.
    pub retention: Duration,
    /// Attempts per request, counting the first, for transient errors
    /// (throttling, 5xx, broken connections), with the SDK's jittered backoff
    /// (default 3).
    pub max_attempts: u32,
    /// Time allowed to open a connection (default 3 s).
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of one request (default 10 s).
    pub attempt_timeout: Duration,
    /// Renew many leases with `TransactWriteItems` of up to 100 conditional
    /// updates (default `true`: 1,000 held locks cost 10 requests per interval).
    /// `false` renews each lease with its own `UpdateItem`, 16 in flight: for
    /// emulators whose transactions are slow (moto copies the whole table for
    /// every transaction, so its cost grows with the table).
    pub batch_refresh: bool,
    /// Items a `Scan` page evaluates (listing pages through the table; default
    /// 1,000, and DynamoDB ends a page at 1 MB in any case).
    pub scan_page_size: u32,
    /// The wall clock leases are stamped with (default [`SystemClock`]).
    pub clock: Arc<dyn Clock>,
    /// [`DynamoStore::connect_with`](crate::DynamoStore::connect_with) creates
    /// the table if missing (`true`) or only checks it (default `false`: the
    /// table must exist).
    pub create_table: bool,
}

impl fmt::Debug for DynamoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoConfig")
            .field("table", &self.table)
            .field("hash_key", &self.hash_key)
            .field("region", &self.region)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(distlock_core::redact_url),
            )
            .field("clock_skew", &self.clock_skew)
            .field("retention", &self.retention)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("batch_refresh", &self.batch_refresh)
            .field("scan_page_size", &self.scan_page_size)
            .field("clock", &self.clock)
            .field("create_table", &self.create_table)
            .finish()
    }
}

impl DynamoConfig {
    /// A config for `table` with the defaults above.
    pub fn new(table: impl Into<String>) -> Self {
        DynamoConfig {
            table: table.into(),
            hash_key: DEFAULT_HASH_KEY.to_owned(),
            region: None,
            endpoint: None,
            clock_skew: DEFAULT_CLOCK_SKEW,
            retention: DEFAULT_RETENTION,
            max_attempts: 3,
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(10),
            batch_refresh: true,
            scan_page_size: 1000,
            clock: Arc::new(SystemClock),
            create_table: false,
        }
    }

    /// The config a `dynamodb://TABLE?option=value&…` URL names.
    ///
    /// | option | meaning | default |
    /// |---|---|---|
    /// | `region` | AWS region | the AWS chain (`AWS_REGION`, profile) |
    /// | `endpoint` | `http(s)://host:port` of an emulator | AWS |
    /// | `create` | `true`: create the table (on-demand, TTL) if missing | `false`: the table must exist |
    /// | `hash_key` | name of the string hash key | `id` |
    /// | `clock_skew_ms` | clock-skew allowance (a bare number is in ms; `1s` works too) | `1000` |
    /// | `max_attempts` | attempts per request on transient errors | `3` |
    /// | `batch_refresh` | `false`: renew leases one request each (slow emulators) | `true`: transactions of 100 |
    ///
    /// Booleans and durations follow [`UrlOptions`]' grammar; a repeated or
    /// unknown option is an error. Credentials never go in the URL: they come
    /// from the AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
    /// profiles, roles).
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) naming the part at fault (the message
    /// never repeats a password).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = Url::parse(url).map_err(|error| Error::InvalidUrl {
            url: redact_url(url),
            reason: error.to_string(),
        })?;
        let shown = shown(&parsed);
        // Messages show the URL as given, only secrets hidden.
        let reshow = |error: Error| match error {
            Error::InvalidUrl { reason, .. } => Error::InvalidUrl {
                url: shown.clone(),
                reason,
            },
            Error::InvalidArgument { what, reason } => Error::InvalidUrl {
                url: shown.clone(),
                reason: format!("{what}: {reason}"),
            },
            other => other,
        };
        Self::parse_url(&parsed).map_err(reshow)
    }

    fn parse_url(url: &Url) -> Result<Self> {
        let mut options = UrlOptions::parse(url)?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(options.invalid("the DynamoDB backend serves dynamodb:// only"));
        }
        if url.password().is_some() || !url.username().is_empty() {
            return Err(options.invalid(
                "credentials do not go in the URL: they come from the AWS config chain \
                 (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles)",
            ));
        }
        if url.port().is_some() {
            return Err(options.invalid(
                "the host part is the table name; put the address in ?endpoint=http://host:port",
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(
                options.invalid("no path is used; write dynamodb://TABLE?region=…&endpoint=…")
            );
        }
        let table = url.host_str().unwrap_or("");
        if table.is_empty() {
            return Err(options.invalid("no table: write dynamodb://TABLE?region=…&endpoint=…"));
        }
        let mut config = DynamoConfig::new(table);
        config.region = options.take("region");
        config.endpoint = options.take("endpoint");
        if let Some(hash_key) = options.take("hash_key") {
            config.hash_key = hash_key;
        }
        if let Some(create) = options.take_bool("create")? {
            config.create_table = create;
        }
        if let Some(skew) = options.take_duration("clock_skew_ms")? {
            config.clock_skew = skew;
        }
        if let Some(batch) = options.take_bool("batch_refresh")? {
            config.batch_refresh = batch;
        }
        if let Some(attempts) = options.take_parsed("max_attempts", "a small number")? {
            config.max_attempts = attempts;
        }
        options.finish(&[
            "region",
            "endpoint",
            "create",
            "hash_key",
            "clock_skew_ms",
            "max_attempts",
            "batch_refresh",
        ])?;
        config.validate()?;
        Ok(config)
    }

    /// The config the URL in `DISTLOCK_DYNAMO_URL` names (see
    /// [`DynamoConfig::from_url`]).
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) when the variable is unset
    /// or not Unicode; as [`DynamoConfig::from_url`] otherwise.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(URL_ENV).map_err(|_| {
            Error::invalid(
                URL_ENV,
                "not set: export DISTLOCK_DYNAMO_URL=dynamodb://TABLE?region=…&endpoint=…",
            )
        })?;
        Self::from_url(&url)
    }

    /// Create the table on connect if it is missing (`true`), or require it.
    pub fn with_create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Set the hash key attribute's name.
    pub fn with_hash_key(mut self, name: impl Into<String>) -> Self {
        self.hash_key = name.into();
        self
    }

    /// Set the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Send requests to `endpoint` (an emulator) instead of AWS.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Set the clock-skew allowance.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Set how long items are kept after their last write.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Set the attempts per request (1 disables retries).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Set the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Set the per-attempt timeout.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Renew many leases per transaction (`true`, the default) or one by one.
    pub fn with_batch_refresh(mut self, batch: bool) -> Self {
        self.batch_refresh = batch;
        self
    }

    /// Set the items per `Scan` page.
    pub fn with_scan_page_size(mut self, items: u32) -> Self {
        self.scan_page_size = items;
        self
    }

    /// Stamp leases with `clock` (tests: a [`SkewedClock`]).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The shortest TTL this config allows: three times the skew allowance,
    /// at least 100 ms.
    pub fn min_ttl(&self) -> Duration {
        (self.clock_skew * 3).max(Duration::from_millis(100))
    }

    /// Check every field; the error names the field and what would be accepted.
    pub fn validate(&self) -> Result<()> {
        validate_table(&self.table)?;
        if self.hash_key.is_empty() || self.hash_key.len() > 255 {
            return Err(Error::invalid(
                "hash key",
                "the hash key attribute name must be 1 to 255 bytes long",
            ));
        }
        if crate::layout::is_reserved(&self.hash_key) {
            return Err(Error::invalid(
                "hash key",
                format!(
                    "`{}` is reserved for the lease attributes (names starting with `dl_`)",
                    self.hash_key
                ),
            ));
        }
        if let Some(region) = &self.region
            && (region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(Error::invalid(
                "region",
                format!("`{region}` is not a region name such as us-east-1"),
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            match url::Url::parse(endpoint) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    if parsed.password().is_some() || !parsed.username().is_empty() {
                        return Err(Error::invalid(
                            "endpoint",
                            "the endpoint must not carry credentials; they come from the AWS \
                             config chain (AWS_ACCESS_KEY_ID, profiles, …)",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "endpoint",
                        "expected an http:// or https:// URL such as http://127.0.0.1:8000",
                    ));
                }
            }
        }
        if self.clock_skew > Duration::from_secs(60) {
            return Err(Error::invalid(
                "clock skew",
                format!(
                    "{:?} is above the 60 s limit; fix the clocks (NTP) instead",
                    self.clock_skew
                ),
            ));
        }
        if self.retention < MAX_TTL + Duration::from_secs(3600) {
            return Err(Error::invalid(
                "retention",
                format!(
                    "{:?} is below the longest TTL ({MAX_TTL:?}) plus an hour: DynamoDB's TTL \
                     could delete a held lease",
                    self.retention
                ),
            ));
        }
        if self.max_attempts == 0 || self.max_attempts > 10 {
            return Err(Error::invalid(
                "max attempts",
                format!("{} is outside 1..=10", self.max_attempts),
            ));
        }
        if self.scan_page_size == 0 {
            return Err(Error::invalid("scan page size", "must be at least 1"));
        }
        if self.connect_timeout.is_zero() || self.attempt_timeout.is_zero() {
            return Err(Error::invalid("timeout", "timeouts must be above zero"));
        }
        Ok(())
    }
}

/// Check a DynamoDB table name: 3–255 characters of `a-z A-Z 0-9 _ - .`.
pub(crate) fn validate_table(table: &str) -> Result<()> {
    let ok_chars = table
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=255).contains(&table.len()) || !ok_chars {
        return Err(Error::invalid(
            "table",
            format!(
                "`{}` is not a DynamoDB table name (3 to 255 characters of a-z, A-Z, 0-9, \
                 `_`, `-`, `.`)",
                table.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Options whose values are never secret and are shown as given.
const PLAIN_OPTIONS: &[&str] = &[
    "region",
    "create",
    "hash_key",
    "clock_skew_ms",
    "max_attempts",
    "batch_refresh",
];

/// A URL string as errors may show it (see [`shown`]).
pub(crate) fn shown_str(url: &str) -> String {
    Url::parse(url).map_or_else(|_| redact_url(url), |parsed| shown(&parsed))
}

/// The URL as errors may show it: as given, with secrets hidden (a password in
/// the user part or inside an `endpoint=` URL, the value of an unknown option
/// whose name says secret, password, token or key).
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_none() {
        return shown.to_string();
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let value = if PLAIN_OPTIONS.contains(&&*k) {
                v.into_owned()
            } else if k == "endpoint" || v.contains("://") || v.contains('@') {
                // A URL: its password hidden (all of it if it does not parse).
                redact_url(&v)
            } else if ["secret", "password", "token", "key", "credential"]
                .iter()
                .any(|s| k.to_ascii_lowercase().contains(s))
            {
                "***".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    if pairs
        .iter()
        .zip(url.query_pairs())
        .all(|((_, a), (_, b))| *a == *b)
    {
        // Nothing to hide in the query: keep it exactly as written.
        return shown.to_string();
    }
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        DynamoConfig::new("locks").validate().unwrap_or_else(|e| {
            unreachable!("defaults must validate: {e}");
        });
        let cases: Vec<(DynamoConfig, &str)> = vec![
            (DynamoConfig::new("x"), "table"),
            (DynamoConfig::new("bad table"), "table"),
            (DynamoConfig::new("ok_table").with_hash_key(""), "hash key"),
            (
                DynamoConfig::new("ok_table").with_hash_key("dl_holders"),
                "hash key",
            ),
            (
                DynamoConfig::new("ok_table").with_region("us east"),
                "region",
            ),
            (
                DynamoConfig::new("ok_table").with_endpoint("ftp://x"),
                "endpoint",
            ),
            (
                DynamoConfig::new("ok_table").with_endpoint("http://u:hunter2@h:1"),
                "endpoint",
            ),
            (
                DynamoConfig::new("ok_table").with_clock_skew(Duration::from_secs(61)),
                "clock skew",
            ),
            (
                DynamoConfig::new("ok_table").with_retention(Duration::from_secs(60)),
                "retention",
            ),
            (
                DynamoConfig::new("ok_table").with_max_attempts(0),
                "max attempts",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(Error::InvalidArgument { what, reason }) => {
                    assert_eq!(what, field, "{reason}");
                    assert!(!reason.contains("hunter2"), "{reason}");
                }
                other => unreachable!("{field}: expected InvalidArgument, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_hides_endpoint_passwords() {
        let mut config = DynamoConfig::new("t_1");
        config.endpoint = Some("http://u:hunter2@h:1".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    fn parse(url: &str) -> Result<DynamoConfig> {
        DynamoConfig::from_url(url)
    }

    #[test]
    fn good_urls_fill_the_config() {
        let config = parse(
            "dynamodb://My_Table-1.x?region=eu-west-1&endpoint=http://127.0.0.1:8000&create=true&clock_skew_ms=250&hash_key=pk&max_attempts=5",
        )
        .unwrap();
        assert_eq!(config.table, "My_Table-1.x");
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(config.clock_skew, Duration::from_millis(250));
        assert_eq!(config.hash_key, "pk");
        assert_eq!(config.max_attempts, 5);
        assert!(config.create_table);
        let config = parse("dynamodb://locks").unwrap();
        assert_eq!(config.region, None);
        assert!(!config.create_table);
    }

    #[test]
    fn errors_show_the_url_as_given_with_only_secrets_hidden() {
        let err = parse("dynamodb://t?region=us-east-1&bogus=1&hash_key=pk").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("dynamodb://t?region=us-east-1&bogus=1&hash_key=pk"),
            "{text}"
        );
        assert!(!text.contains("unparseable"), "{text}");
        let err = parse(
            "dynamodb://t?region=eu-west-1&endpoint=http://admin:hunter2@127.0.0.1:1&\
             aws_secret_access_key=hunter3&colour=red",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter"), "{text}");
        assert!(
            text.contains("region=eu-west-1")
                && text.contains("colour=red")
                && text.contains("127.0.0.1")
                && text.contains("aws_secret_access_key=***"),
            "{text}"
        );
        let err =
            parse("dynamodb://t?region=us-east-1&endpoint=http://u:hunter2@[::1").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("region=us-east-1"), "{text}");
    }

    #[test]
    fn bad_urls_say_why_without_passwords() {
        for bad in [
            "dynamodb://user:hunter2@locks",
            "dynamodb://locks:8000",
            "dynamodb://locks/path",
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://locks?colour=red",
            "dynamodb://locks?create=maybe",
            "dynamodb://locks?create=true&create=false",
            "dynamodb://locks?clock_skew_ms=soon",
            "dynamodb://locks?endpoint=ftp://x",
            "dynamodb://locks?endpoint=http://u:hunter2@127.0.0.1:1",
            "redis://locks",
        ] {
            match parse(bad) {
                Err(Error::InvalidUrl { url, reason }) => {
                    assert!(!url.contains("hunter2"), "{bad}: {url}");
                    assert!(!reason.contains("hunter2"), "{bad}: {reason}");
                }
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    #[test]
    fn from_env_names_the_variable_when_unset() {
        if std::env::var_os(URL_ENV).is_some() {
            return;
        }
        match DynamoConfig::from_env() {
            Err(Error::InvalidArgument { what, .. }) => assert_eq!(what, URL_ENV),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn skewed_clock_moves_both_ways() {
        let ahead = SkewedClock::ahead(Duration::from_secs(10)).now();
        let behind = SkewedClock::behind(Duration::from_secs(10)).now();
        let gap = ahead.duration_since(behind).unwrap_or_default();
        assert!(gap >= Duration::from_secs(19), "{gap:?}");
    }
}
