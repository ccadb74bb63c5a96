//! Views: the holders of a resource, and the held resources.

use bytes::Bytes;
use distlock_core::{Holder, Info, Result};
use redis::Value;

use crate::RedisStore;
use crate::client::wall;
use crate::error::unexpected;
use crate::layout::{self, Keys};
use crate::scripts::SCRIPTS;

/// One live lease as the info script reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHolder {
    pub(crate) key: Vec<u8>,
    pub(crate) token: u64,
    pub(crate) acquired_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) owner: String,
    pub(crate) data: Bytes,
}

/// A resource's live leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawInfo {
    pub(crate) permits: u32,
    pub(crate) holders: Vec<RawHolder>,
}

impl RedisStore {
    pub(crate) async fn info_raw(&self, resource: &str) -> Result<Option<RawInfo>> {
        let keys = Keys::new(self.namespace(), resource);
        let reply: Value = self
            .run(
                &SCRIPTS.info,
                crate::scripts::INFO,
                &[&keys.holders, &keys.details, &keys.token],
                |_| {},
            )
            .await
            .map_err(|e| self.map_error(e, "info", resource, false))?;
        parse_info(&reply).ok_or_else(|| unexpected("info", &reply))
    }

    pub(crate) async fn list_raw(&self, prefix: &str) -> Result<Vec<String>> {
        let pattern = layout::scan_pattern(self.namespace(), prefix);
        let mut connection = self.inner.connection.clone();
        let mut names = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.map_error(e, "list", prefix, false))?;
            for key in batch {
                if let Ok(key) = std::str::from_utf8(&key)
                    && let Some(resource) = layout::resource_of(self.namespace(), key)
                    && resource.starts_with(prefix)
                {
                    names.push(resource.to_owned());
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// `token:sec:usec:owner_len:` + owner + data (the grant's server time in
/// seconds and microseconds, as `TIME` answers); acquired time in ms.
fn parse_details(details: &[u8]) -> Option<(u64, i64, String, Bytes)> {
    let mut parts = details.splitn(5, |&b| b == b':');
    let mut field = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let token: u64 = field()?.parse().ok()?;
    let sec: i64 = field()?.parse().ok()?;
    let usec: i64 = field()?.parse().ok()?;
    let owner_len: usize = field()?.parse().ok()?;
    let acquired = sec.saturating_mul(1000).saturating_add(usec / 1000);
    let rest = parts.next()?;
    if rest.len() < owner_len {
        return None;
    }
    let (owner, data) = rest.split_at(owner_len);
    Some((
        token,
        acquired,
        String::from_utf8_lossy(owner).into_owned(),
        Bytes::copy_from_slice(data),
    ))
}

fn parse_info(reply: &Value) -> Option<Option<RawInfo>> {
    let Value::Array(items) = reply else {
        return None;
    };
    let Some((permits, rest)) = items.split_first() else {
        return Some(None);
    };
    let permits = u32::try_from(int(permits)?).ok()?;
    let mut holders = Vec::with_capacity(rest.len() / 3);
    for triple in rest.chunks(3) {
        let [key, expires, details] = triple else {
            return None;
        };
        // A lease whose details were deleted behind its back still counts.
        let (token, acquired_ms, owner, data) =
            parse_details(bytes(details)?).unwrap_or((0, 0, String::new(), Bytes::new()));
        holders.push(RawHolder {
            key: bytes(key)?.to_vec(),
            token,
            acquired_ms,
            expires_ms: int(expires)?,
            owner,
            data,
        });
    }
    holders.sort_by_key(|h| h.token);
    Some(Some(RawInfo { permits, holders }))
}

pub(crate) fn to_info(resource: &str, raw: RawInfo) -> Option<Info> {
    if raw.holders.is_empty() {
        return None;
    }
    let holders = raw
        .holders
        .into_iter()
        .map(|h| Holder::new(h.owner, h.token, wall(h.acquired_ms), wall(h.expires_ms)))
        .collect();
    Some(Info::new(resource, raw.permits, holders))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn details_round_trip_with_colons_and_binary_data() {
        let (token, acquired, owner, data) =
            parse_details(b"17:1700000000:123456:5:a:b:c\x00\xff:x").unwrap();
        assert_eq!((token, acquired), (17, 1_700_000_000_123));
        assert_eq!(owner, "a:b:c");
        assert_eq!(&data[..], b"\x00\xff:x");
        assert!(parse_details(b"1:2:3:9:short").is_none());
        assert!(parse_details(b"1:2:9:abc").is_none());
    }
}
