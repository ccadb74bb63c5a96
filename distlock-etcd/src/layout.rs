//! How locks are laid out in etcd's key space, and what their values hold.
//!
//! One etcd key per lease (holder or waiter):
//!
//! ```text
//! <prefix>/ NUL <resource> NUL <lease key, 32 hex digits>
//! ```
//!
//! NUL cannot occur in a prefix or a resource name (control characters are
//! rejected before anything is sent), so the first NUL ends the prefix and the
//! last one ends the resource: prefix `a/x` with resource `y` (`a/x/\0y\0…`)
//! is never prefix `a` with resource `x/y` (`a/\0x/y\0…`), the keys of
//! resource `a` are exactly the keys under `<prefix>/\0a\0` and never those
//! of `a/b`, and keys sort by resource name first, so a prefix range lists
//! resources in order. Everything stays under `<prefix>/`, so an etcd role
//! granted that range covers the locks.
//!
//! The value is binary (see [`Record`]): a format byte, the permits, the
//! holder's wall-clock time of the grant (rewritten when a waiter is granted),
//! the owner and the caller's data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use distlock_core::LeaseKey;

/// Separates the resource from the lease key inside an etcd key.
pub(crate) const SEPARATOR: u8 = 0;

/// Format byte of [`Record`]: bump when the layout changes.
const FORMAT: u8 = 1;

/// The key-space layout under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `<prefix>/` then NUL.
    root: Vec<u8>,
}

impl Layout {
    pub(crate) fn new(prefix: &str) -> Self {
        let mut root = prefix.trim_end_matches('/').as_bytes().to_vec();
        root.push(b'/');
        root.push(SEPARATOR);
        Layout { root }
    }

    /// The prefix every key of `resource` starts with.
    pub(crate) fn resource_prefix(&self, resource: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.root.len() + resource.len() + 1);
        key.extend_from_slice(&self.root);
        key.extend_from_slice(resource.as_bytes());
        key.push(SEPARATOR);
        key
    }

    /// The key of one lease.
    pub(crate) fn lease_key(&self, resource: &str, key: LeaseKey) -> Vec<u8> {
        let mut out = self.resource_prefix(resource);
        out.extend_from_slice(key.to_hex().as_bytes());
        out
    }

    /// The prefix of the resources whose names start with `prefix` (for `list`).
    pub(crate) fn list_prefix(&self, prefix: &str) -> Vec<u8> {
        let mut key = self.root.clone();
        key.extend_from_slice(prefix.as_bytes());
        key
    }

    /// The resource an etcd key belongs to, if it is one of ours.
    pub(crate) fn resource_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(self.root.as_slice())?;
        let end = rest.iter().rposition(|b| *b == SEPARATOR)?;
        std::str::from_utf8(&rest[..end]).ok()
    }
}

/// What one lease's value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The permits the holder asked for.
    pub(crate) permits: u32,
    /// The holder's wall clock at the grant, in milliseconds since the epoch
    /// (etcd keeps no wall time of its own).
    pub(crate) acquired_ms: u64,
    pub(crate) owner: String,
    pub(crate) data: Bytes,
}

impl Record {
    pub(crate) fn new(permits: u32, owner: &str, data: &Bytes) -> Self {
        let acquired_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Record {
            permits,
            acquired_ms,
            owner: owner.to_owned(),
            data: data.clone(),
        }
    }

    /// `[FORMAT][permits u32 BE][acquired ms u64 BE][owner len u16 BE][owner][data]`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let owner = self.owner.as_bytes();
        let owner_len = u16::try_from(owner.len()).unwrap_or(u16::MAX);
        let owner = &owner[..usize::from(owner_len)];
        let mut out = Vec::with_capacity(15 + owner.len() + self.data.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.permits.to_be_bytes());
        out.extend_from_slice(&self.acquired_ms.to_be_bytes());
        out.extend_from_slice(&owner_len.to_be_bytes());
        out.extend_from_slice(owner);
        out.extend_from_slice(&self.data);
        out
    }

    /// Parse what [`Record::encode`] wrote; `None` for anything else.
    pub(crate) fn decode(value: &[u8]) -> Option<Self> {
        let (&format, rest) = value.split_first()?;
        if format != FORMAT || rest.len() < 14 {
            return None;
        }
        let permits = u32::from_be_bytes(rest[0..4].try_into().ok()?);
        let acquired_ms = u64::from_be_bytes(rest[4..12].try_into().ok()?);
        let owner_len = usize::from(u16::from_be_bytes(rest[12..14].try_into().ok()?));
        let rest = &rest[14..];
        if rest.len() < owner_len {
            return None;
        }
        let owner = String::from_utf8_lossy(&rest[..owner_len]).into_owned();
        Some(Record {
            permits,
            acquired_ms,
            owner,
            data: Bytes::copy_from_slice(&rest[owner_len..]),
        })
    }

    pub(crate) fn acquired_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.acquired_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_of_a_resource_never_cover_another() {
        let layout = Layout::new("distlock/");
        let key = LeaseKey::random();
        let a = layout.lease_key("a", key);
        let ab = layout.lease_key("a/b", key);
        let prefix = layout.resource_prefix("a");
        assert!(a.starts_with(&prefix));
        assert!(!ab.starts_with(&prefix));
        assert_eq!(layout.resource_of(&a), Some("a"));
        assert_eq!(layout.resource_of(&ab), Some("a/b"));
        assert_eq!(layout.resource_of(b"other/\0a\0x"), None);
        assert_eq!(layout.resource_of(b"distlock/a\0x"), None);
        assert!(a.starts_with(&layout.list_prefix("a")));
        assert!(ab.starts_with(&layout.list_prefix("a/")));
    }

    #[test]
    fn nested_prefixes_never_share_keys() {
        let key = LeaseKey::random();
        let outer = Layout::new("a");
        let inner = Layout::new("a/x");
        assert_ne!(outer.lease_key("x/y", key), inner.lease_key("y", key));
        assert!(
            !outer
                .lease_key("x/y", key)
                .starts_with(&inner.resource_prefix("y"))
        );
        assert!(
            !inner
                .lease_key("y", key)
                .starts_with(&outer.resource_prefix("x/y"))
        );
        assert!(
            !inner
                .lease_key("y", key)
                .starts_with(&outer.list_prefix(""))
        );
        assert_eq!(
            Layout::new("a/").lease_key("r", key),
            outer.lease_key("r", key)
        );
    }

    #[test]
    fn record_round_trip() {
        let record = Record::new(3, "owner-ü", &Bytes::from_static(b"\x00\xffdata"));
        let decoded = Record::decode(&record.encode()).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(b"\x02rest-of-it-is-long"), None);
        let empty = Record::new(1, "", &Bytes::new());
        assert_eq!(Record::decode(&empty.encode()).unwrap(), empty);
    }
}
