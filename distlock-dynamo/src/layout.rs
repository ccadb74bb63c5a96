//! The item layout: one item per resource.
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | *hash key* (`id`) | S | the resource name |
//! | `dl_holders` | M | lease key (32 hex) → `{t: token N, o: owner S, a: acquired ms N, e: expires ms N, d: data B}` (`o`, `d` omitted when empty) |
//! | `dl_fence` | N | the last token granted; never goes down |
//! | `dl_permits` | N | the size the current holders use |
//! | `dl_expires` | N | expiry (ms) of the last lease granted or renewed: for a mutex, its holder's |
//! | `dl_rvn` | S | record version number, new on every write |
//! | `dl_ttl` | N | epoch seconds after which DynamoDB's TTL may delete the item |
//! | `dl_attrs` | BOOL | the item has user attributes: never replace it whole |
//!
//! Any other attribute is the user's (the "extra attributes" of the lease-pool API's leases).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use distlock_core::{Error, Result};

pub(crate) const HOLDERS: &str = "dl_holders";
pub(crate) const FENCE: &str = "dl_fence";
pub(crate) const PERMITS: &str = "dl_permits";
pub(crate) const EXPIRES: &str = "dl_expires";
pub(crate) const RVN: &str = "dl_rvn";
pub(crate) const TTL: &str = "dl_ttl";
pub(crate) const ATTRS: &str = "dl_attrs";

/// Fields of one holder entry.
pub(crate) const TOKEN: &str = "t";
pub(crate) const OWNER: &str = "o";
pub(crate) const ACQUIRED: &str = "a";
pub(crate) const EXPIRES_AT: &str = "e";
pub(crate) const DATA: &str = "d";

/// Attribute names this crate owns.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with("dl_")
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch: the token a grant asks for.
pub(crate) fn micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A fresh record version number.
pub(crate) fn new_rvn() -> AttributeValue {
    AttributeValue::S(format!("{:016x}", fastrand::u64(..)))
}

/// One holder entry as written.
pub(crate) fn entry(
    token: u64,
    owner: &str,
    acquired_ms: i64,
    expires_ms: i64,
    data: &Bytes,
) -> AttributeValue {
    let mut fields = HashMap::with_capacity(5);
    fields.insert(TOKEN.to_owned(), n(token));
    if !owner.is_empty() {
        fields.insert(OWNER.to_owned(), s(owner));
    }
    fields.insert(ACQUIRED.to_owned(), n(acquired_ms));
    fields.insert(EXPIRES_AT.to_owned(), n(expires_ms));
    if !data.is_empty() {
        fields.insert(DATA.to_owned(), AttributeValue::B(Blob::new(data.to_vec())));
    }
    AttributeValue::M(fields)
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::store(
        "dynamodb",
        format!("corrupt lease item: {what} (was it written by something other than distlock?)"),
    )
}

fn number<T: std::str::FromStr>(value: &AttributeValue, what: &str) -> Result<T> {
    match value {
        AttributeValue::N(text) => text
            .parse()
            .map_err(|_| corrupt(format_args!("{what} is `{text}`, not an integer"))),
        _ => Err(corrupt(format_args!("{what} is not a number"))),
    }
}

/// One holder, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) owner: String,
    pub(crate) acquired_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) data: Bytes,
    pub(crate) token: u64,
}

impl Entry {
    /// Whether a taker must still respect it: `now <= expires + skew`.
    pub(crate) fn is_live(&self, now_ms: i64, skew_ms: i64) -> bool {
        now_ms <= self.expires_ms.saturating_add(skew_ms)
    }

    pub(crate) fn value(&self) -> AttributeValue {
        entry(
            self.token,
            &self.owner,
            self.acquired_ms,
            self.expires_ms,
            &self.data,
        )
    }
}

/// A whole item, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) exists: bool,
    /// The item has a `dl_holders` map (possibly empty).
    pub(crate) has_holders: bool,
    pub(crate) rvn: Option<String>,
    pub(crate) fence: Option<u64>,
    pub(crate) permits: u32,
    pub(crate) holders: Vec<Entry>,
    /// The user's attributes (not the hash key, not `dl_*`).
    pub(crate) extra: HashMap<String, AttributeValue>,
}

impl Snapshot {
    /// Parse an item; `None` is an absent item.
    pub(crate) fn parse(
        item: Option<HashMap<String, AttributeValue>>,
        hash_key: &str,
    ) -> Result<Snapshot> {
        let Some(mut item) = item else {
            return Ok(Snapshot::default());
        };
        let fence = item
            .get(FENCE)
            .map(|v| number::<u64>(v, FENCE))
            .transpose()?;
        let permits = item
            .get(PERMITS)
            .map(|v| number::<u32>(v, PERMITS))
            .transpose()?
            .unwrap_or(1);
        let rvn = match item.get(RVN) {
            Some(AttributeValue::S(text)) => Some(text.clone()),
            Some(_) => return Err(corrupt("dl_rvn is not a string")),
            None => None,
        };
        let has_holders = item.contains_key(HOLDERS);
        let holders = match item.remove(HOLDERS) {
            Some(AttributeValue::M(map)) => map
                .into_iter()
                .map(|(key, value)| parse_entry(key, value))
                .collect::<Result<Vec<_>>>()?,
            Some(_) => return Err(corrupt("dl_holders is not a map")),
            None => Vec::new(),
        };
        item.remove(hash_key);
        item.retain(|name, _| !is_reserved(name));
        Ok(Snapshot {
            exists: true,
            has_holders,
            rvn,
            fence,
            permits,
            holders,
            extra: item,
        })
    }

    /// Holders a taker must respect, oldest grant first.
    pub(crate) fn live(&self, now_ms: i64, skew_ms: i64) -> Vec<&Entry> {
        let mut live: Vec<&Entry> = self
            .holders
            .iter()
            .filter(|e| e.is_live(now_ms, skew_ms))
            .collect();
        live.sort_by_key(|e| e.token);
        live
    }

    pub(crate) fn holder(&self, key: &str) -> Option<&Entry> {
        self.holders.iter().find(|e| e.key == key)
    }
}

fn parse_entry(key: String, value: AttributeValue) -> Result<Entry> {
    let AttributeValue::M(fields) = value else {
        return Err(corrupt("a holder entry is not a map"));
    };
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| corrupt(format_args!("a holder entry lacks `{name}`")))
    };
    let owner = match fields.get(OWNER) {
        Some(AttributeValue::S(text)) => text.clone(),
        Some(_) => return Err(corrupt("a holder's owner is not a string")),
        None => String::new(),
    };
    let data = match fields.get(DATA) {
        Some(AttributeValue::B(blob)) => Bytes::copy_from_slice(blob.as_ref()),
        Some(_) => return Err(corrupt("a holder's data is not binary")),
        None => Bytes::new(),
    };
    Ok(Entry {
        key,
        owner,
        acquired_ms: number(field(ACQUIRED)?, "a holder's acquire time")?,
        expires_ms: number(field(EXPIRES_AT)?, "a holder's expiry")?,
        data,
        token: number(field(TOKEN)?, "a holder's token")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trip() {
        let mut holders = HashMap::new();
        holders.insert("k1".to_owned(), entry(9, "me", 1, 50, &Bytes::from("x")));
        holders.insert("k2".to_owned(), entry(7, "", 2, 60, &Bytes::new()));
        let mut item = HashMap::new();
        item.insert("id".to_owned(), s("r"));
        item.insert(HOLDERS.to_owned(), AttributeValue::M(holders));
        item.insert(FENCE.to_owned(), n(9));
        item.insert(PERMITS.to_owned(), n(2));
        item.insert(ATTRS.to_owned(), AttributeValue::Bool(true));
        item.insert("shard".to_owned(), s("eu"));
        let snap = Snapshot::parse(Some(item), "id").unwrap();
        assert!(snap.exists);
        assert_eq!(snap.permits, 2);
        assert_eq!(snap.fence, Some(9));
        assert_eq!(snap.holder("k1").unwrap().token, 9);
        assert_eq!(snap.holder("k1").unwrap().data, Bytes::from("x"));
        assert_eq!(snap.holder("k2").unwrap().token, 7);
        assert_eq!(snap.holder("k2").unwrap().owner, "");
        assert_eq!(
            snap.extra.len(),
            1,
            "only the user's attribute: {:?}",
            snap.extra
        );
        assert_eq!(snap.live(55, 0).len(), 1);
        assert_eq!(snap.live(55, 10).len(), 2);
        assert_eq!(snap.live(55, 10)[0].token, 7, "oldest token first");
        let entry = snap.holder("k2").unwrap();
        assert_eq!(
            parse_entry("k2".into(), entry.value()).unwrap(),
            entry.clone()
        );
    }

    #[test]
    fn corrupt_items_are_store_errors() {
        let mut item = HashMap::new();
        item.insert(FENCE.to_owned(), s("nine"));
        assert!(matches!(
            Snapshot::parse(Some(item), "id"),
            Err(Error::Store { .. })
        ));
        let mut holders = HashMap::new();
        holders.insert("k".to_owned(), AttributeValue::M(HashMap::new()));
        let mut item = HashMap::new();
        item.insert(HOLDERS.to_owned(), AttributeValue::M(holders));
        assert!(
            Snapshot::parse(Some(item), "id").is_err(),
            "a holder without token and times"
        );
    }
}
