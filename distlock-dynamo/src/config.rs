//! [`DynamoConfig`]: which table, how to reach it, and the clock-skew allowance.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use distlock_core::{Error, Result};

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
/// (`dynamodb://TABLE?region=…&endpoint=…`, see [`DynamoConnector`](crate::DynamoConnector)).
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
        }
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
        if crate::item::is_reserved(&self.hash_key) {
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

    #[test]
    fn skewed_clock_moves_both_ways() {
        let ahead = SkewedClock::ahead(Duration::from_secs(10)).now();
        let behind = SkewedClock::behind(Duration::from_secs(10)).now();
        let gap = ahead.duration_since(behind).unwrap_or_default();
        assert!(gap >= Duration::from_secs(19), "{gap:?}");
    }
}
