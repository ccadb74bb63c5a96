//! `dynamodb://TABLE?…` URLs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use distlock_core::{Connector, Error, Locker, Result, StoreLocker, redact_url};
use url::Url;

use crate::{DynamoConfig, DynamoStore};

/// The schemes this crate serves.
pub const SCHEMES: &[&str] = &["dynamodb"];

/// Serves `dynamodb://TABLE?region=R&endpoint=URL&…`.
///
/// | option | meaning | default |
/// |---|---|---|
/// | `region` | AWS region | the AWS chain (`AWS_REGION`, profile) |
/// | `endpoint` | `http(s)://host:port` of an emulator | AWS |
/// | `create` | `true`: create the table (on-demand, TTL) if missing | `false`: the table must exist |
/// | `hash_key` | name of the string hash key | `id` |
/// | `clock_skew_ms` | clock-skew allowance (see the crate docs) | `1000` |
/// | `max_attempts` | attempts per request on transient errors | `3` |
/// | `batch_refresh` | `false`: renew leases one request each (slow emulators) | `true`: transactions of 100 |
///
/// Credentials never go in the URL: they come from the AWS chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, roles). Connecting
/// checks the table (one `DescribeTable`), so a missing table or unreachable
/// endpoint is reported here.
#[derive(Debug, Clone, Copy, Default)]
pub struct DynamoConnector;

impl DynamoConnector {
    /// The config a URL names, and whether it asks to create the table.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) naming the part at fault (the message
    /// never repeats a password).
    pub fn config_from_url(url: &Url) -> Result<(DynamoConfig, bool)> {
        let shown = shown(url);
        let invalid = |reason: String| Error::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        if !SCHEMES.contains(&url.scheme()) {
            return Err(invalid(
                "the DynamoDB backend serves dynamodb:// only".into(),
            ));
        }
        if url.password().is_some() || !url.username().is_empty() {
            return Err(invalid(
                "credentials do not go in the URL: they come from the AWS config chain \
                 (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles)"
                    .into(),
            ));
        }
        if url.port().is_some() {
            return Err(invalid(
                "the host part is the table name; put the address in ?endpoint=http://host:port"
                    .into(),
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(invalid(
                "no path is used; write dynamodb://TABLE?region=…&endpoint=…".into(),
            ));
        }
        let table = url.host_str().unwrap_or("");
        if table.is_empty() {
            return Err(invalid(
                "no table: write dynamodb://TABLE?region=…&endpoint=…".into(),
            ));
        }
        let mut config = DynamoConfig::new(table);
        let mut create = false;
        for (key, value) in url.query_pairs() {
            match &*key {
                "region" => config.region = Some(value.into_owned()),
                "endpoint" => config.endpoint = Some(value.into_owned()),
                "hash_key" => config.hash_key = value.into_owned(),
                "create" => {
                    create = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid("create must be true or false".into())),
                    }
                }
                "clock_skew_ms" => {
                    let ms: u64 = value.parse().map_err(|_| {
                        invalid("clock_skew_ms must be a number of milliseconds".into())
                    })?;
                    config.clock_skew = Duration::from_millis(ms);
                }
                "batch_refresh" => {
                    config.batch_refresh = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid("batch_refresh must be true or false".into())),
                    }
                }
                "max_attempts" => {
                    config.max_attempts = value
                        .parse()
                        .map_err(|_| invalid("max_attempts must be a small number".into()))?;
                }
                other => {
                    return Err(invalid(format!(
                        "unknown option `{}`; accepted: region, endpoint, create, hash_key, \
                         clock_skew_ms, max_attempts, batch_refresh",
                        other.chars().take(40).collect::<String>()
                    )));
                }
            }
        }
        config.validate().map_err(|error| match error {
            Error::InvalidArgument { what, reason } => invalid(format!("{what}: {reason}")),
            other => other,
        })?;
        Ok((config, create))
    }
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

#[async_trait]
impl Connector for DynamoConnector {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    async fn connect(&self, url: &Url) -> Result<Arc<dyn Locker>> {
        let (config, create) = Self::config_from_url(url)?;
        let store = DynamoStore::connect(config)
            .await
            .map_err(|error| match error {
                Error::InvalidArgument { what, reason } => Error::InvalidUrl {
                    url: shown(url),
                    reason: format!("{what}: {reason}"),
                },
                other => other,
            })?;
        if create {
            store.create_table().await?;
        } else {
            store.check_table().await?;
        }
        Ok(Arc::new(StoreLocker::new(store)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(DynamoConfig, bool)> {
        DynamoConnector::config_from_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn good_urls_fill_the_config() {
        let (config, create) = parse(
            "dynamodb://My_Table-1.x?region=eu-west-1&endpoint=http://127.0.0.1:8000&create=true&clock_skew_ms=250&hash_key=pk&max_attempts=5",
        )
        .unwrap();
        assert_eq!(config.table, "My_Table-1.x");
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(config.clock_skew, Duration::from_millis(250));
        assert_eq!(config.hash_key, "pk");
        assert_eq!(config.max_attempts, 5);
        assert!(create);
        let (config, create) = parse("dynamodb://locks").unwrap();
        assert_eq!(config.region, None);
        assert!(!create);
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
}
