//! The `?name=value` options of a store URL, read the same way by every
//! backend: a repeated or unknown option is an error that names it, booleans
//! and durations have one grammar, and messages show the URL with its secrets
//! hidden.

use std::str::FromStr;
use std::time::Duration;

use url::Url;

use crate::{Error, Result, redact_url};

/// The options of one URL. Each backend takes the options it knows with the
/// `take_*` methods, then calls [`UrlOptions::finish`] to reject the rest.
///
/// Grammar:
/// - booleans: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`;
/// - durations: a number with a unit, `250ms`, `1.5s`, `2m`, `1h`; a bare
///   number is in milliseconds for options whose name ends in `_ms`, else in
///   seconds.
///
/// ```
/// use std::time::Duration;
/// use distlock_core::UrlOptions;
///
/// let url = url::Url::parse("redis://h/?timeout=250ms&tls=yes").unwrap();
/// let mut options = UrlOptions::parse(&url).unwrap();
/// assert_eq!(options.take_duration("timeout").unwrap(), Some(Duration::from_millis(250)));
/// assert_eq!(options.take_bool("tls").unwrap(), Some(true));
/// options.finish(&["timeout", "tls"]).unwrap();
/// ```
#[derive(Debug)]
pub struct UrlOptions {
    shown: String,
    pairs: Vec<(String, String, bool)>,
}

impl UrlOptions {
    /// Read the options of `url`.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) if an option is given twice.
    pub fn parse(url: &Url) -> Result<Self> {
        let shown = redact_url(url.as_str());
        let mut pairs: Vec<(String, String, bool)> = Vec::new();
        for (name, value) in url.query_pairs() {
            if pairs.iter().any(|(seen, _, _)| *seen == name) {
                return Err(Error::InvalidUrl {
                    url: shown,
                    reason: format!("option `{name}` is given twice"),
                });
            }
            pairs.push((name.into_owned(), value.into_owned(), false));
        }
        Ok(UrlOptions { shown, pairs })
    }

    /// The URL as messages show it (secrets hidden).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// An [`InvalidUrl`](Error::InvalidUrl) error about this URL.
    pub fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidUrl {
            url: self.shown.clone(),
            reason: reason.into(),
        }
    }

    /// Take option `name` as given.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.pairs
            .iter_mut()
            .find(|(n, _, taken)| n == name && !*taken)
            .map(|(_, value, taken)| {
                *taken = true;
                value.clone()
            })
    }

    /// Take option `name`, parsed with `FromStr`.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) naming the option and the value.
    pub fn take_parsed<T: FromStr>(&mut self, name: &str, expected: &str) -> Result<Option<T>> {
        match self.take(name) {
            None => Ok(None),
            Some(value) => {
                value.trim().parse().map(Some).map_err(|_| {
                    self.invalid(format!("option `{name}={value}`: expected {expected}"))
                })
            }
        }
    }

    /// Take a boolean option.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) unless the value is one of the
    /// boolean words.
    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(self.invalid(format!(
                "option `{name}={value}`: expected true/false (or 1/0, yes/no, on/off)"
            ))),
        }
    }

    /// Take a duration option.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) unless the value is a duration.
    pub fn take_duration(&mut self, name: &str) -> Result<Option<Duration>> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        let bare_unit = if name.ends_with("_ms") { "ms" } else { "s" };
        parse_duration(&value, bare_unit).map(Some).ok_or_else(|| {
            self.invalid(format!(
                "option `{name}={value}`: expected a duration such as 250ms, 5s or 2m \
                 (a bare number is in {bare_unit})"
            ))
        })
    }

    /// Reject every option not taken.
    ///
    /// # Errors
    /// [`InvalidUrl`](Error::InvalidUrl) naming the unknown options and
    /// listing `known`.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        let unknown: Vec<&str> = self
            .pairs
            .iter()
            .filter(|(_, _, taken)| !taken)
            .map(|(name, _, _)| name.as_str())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(self.invalid(format!(
            "unknown option{} `{}`; known options: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join("`, `"),
            known.join(", ")
        )))
    }
}

/// `250ms`, `1.5s`, `2m`, `1h`, or a bare number in `bare_unit`.
fn parse_duration(value: &str, bare_unit: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = if unit.is_empty() { bare_unit } else { unit };
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> Result<UrlOptions> {
        UrlOptions::parse(&Url::parse(url).unwrap())
    }

    #[test]
    fn one_grammar_for_durations_and_booleans() {
        let mut o =
            options("x://h/?a=250ms&b=1.5s&c=2m&d=3&e_ms=40&f=on&g=0&h=soon&i=maybe").unwrap();
        assert_eq!(
            o.take_duration("a").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            o.take_duration("b").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            o.take_duration("c").unwrap(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(o.take_duration("d").unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(
            o.take_duration("e_ms").unwrap(),
            Some(Duration::from_millis(40))
        );
        assert_eq!(o.take_bool("f").unwrap(), Some(true));
        assert_eq!(o.take_bool("g").unwrap(), Some(false));
        let error = o.take_duration("h").unwrap_err().to_string();
        assert!(
            error.contains("h=soon") && error.contains("250ms"),
            "{error}"
        );
        let error = o.take_bool("i").unwrap_err().to_string();
        assert!(error.contains("i=maybe"), "{error}");
        assert_eq!(o.take_duration("missing").unwrap(), None);
        o.finish(&[]).unwrap();
    }

    #[test]
    fn repeated_and_unknown_options_are_named_and_secrets_hidden() {
        let error = options("x://u:hunter2@h/?a=1&a=2").unwrap_err().to_string();
        assert!(error.contains("`a` is given twice"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let mut o = options("x://h/?known=1&typo=2&password=hunter3").unwrap();
        assert_eq!(o.take("known").as_deref(), Some("1"));
        let error = o.finish(&["known"]).unwrap_err().to_string();
        assert!(
            error.contains("`typo`") && error.contains("known options: known"),
            "{error}"
        );
        assert!(!error.contains("hunter3"), "{error}");
    }
}
