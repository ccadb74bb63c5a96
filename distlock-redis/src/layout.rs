//! Where a resource lives in Redis: the key layout and its hash slot.
//!
//! For namespace `P` and resource `R` (any valid UTF-8 name):
//!
//! | key | type | holds | lifetime |
//! |---|---|---|---|
//! | `{P:R}` | string (mutex) | lease key (32 hex digits), waiter flag, `sec:usec:` + owner and data | `PX` the lease |
//! | `{P:R}` | sorted set (permits > 1) | lease key → expiry, ms of the server's `TIME` | `PEXPIREAT` the latest expiry |
//! | `{P:R}:h` | hash (permits > 1) | lease key → details; `#p` → permits | as the set |
//! | `{P:R}:t` | string | the fencing-token counter (`INCR` per grant; a held mutex's token) | never deleted |
//!
//! Details are `token:sec:usec:owner_len:` + owner + data (the grant's server
//! time as `TIME` answers it).
//! Release publishes on the channel `{P:R}:w`.
//!
//! Every name starts with the same `{P:R}`: Redis Cluster hashes only the part
//! between the first `{` and the first `}` after it, and that part is the same
//! for all of a resource's names (even when `R` itself contains braces), so a
//! resource's keys share one hash slot and one script may touch them all.
//! The layout is injective: a main key ends in `}`, a companion key never does,
//! and two companion keys with the same suffix name the same resource. The
//! namespace never contains `:` (the config rejects it), so the first `:`
//! after `{` ends it: `{a:x:y}` is namespace `a` with resource `x:y` and no
//! other pair (a namespace `a:x` with resource `y` cannot exist).

use std::fmt;

/// The keys of one resource.
pub(crate) struct Keys {
    /// `{P:R}`: the sorted set of holders.
    pub(crate) holders: String,
    /// `{P:R}:h`: per-lease details and the permits.
    pub(crate) details: String,
    /// `{P:R}:t`: the token counter.
    pub(crate) token: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str, resource: &str) -> Self {
        let holders = main_key(namespace, resource);
        let details = format!("{holders}:h");
        let token = format!("{holders}:t");
        Keys {
            holders,
            details,
            token,
        }
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entry(&self.holders)
            .entry(&self.details)
            .entry(&self.token)
            .finish()
    }
}

/// `{P:R}`.
pub(crate) fn main_key(namespace: &str, resource: &str) -> String {
    let mut key = String::with_capacity(namespace.len() + resource.len() + 3);
    key.push('{');
    key.push_str(namespace);
    key.push(':');
    key.push_str(resource);
    key.push('}');
    key
}

/// `{P:R}:w`, the channel release publishes on.
pub(crate) fn channel(namespace: &str, resource: &str) -> String {
    let mut channel = main_key(namespace, resource);
    channel.push_str(":w");
    channel
}

/// The resource a main key names, if `key` is one of namespace `P`'s main keys.
pub(crate) fn resource_of<'k>(namespace: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix('{')?
        .strip_prefix(namespace)?
        .strip_prefix(':')?
        .strip_suffix('}')
}

/// A `SCAN MATCH` pattern for the main keys of resources starting with `prefix`
/// (glob characters in the prefix are escaped). Companion keys match too; the
/// caller keeps only names [`resource_of`] accepts.
pub(crate) fn scan_pattern(namespace: &str, prefix: &str) -> String {
    let mut pattern = String::with_capacity(namespace.len() + prefix.len() + 8);
    pattern.push('{');
    pattern.push_str(namespace);
    pattern.push(':');
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("*}");
    pattern
}

/// The Redis Cluster hash slot of `key` (CRC16-XMODEM of its hash tag, mod 16384),
/// as `CLUSTER KEYSLOT` computes it.
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            // An empty tag `{}` hashes the whole key.
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    crc16(tagged) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn crc16_matches_the_redis_cluster_spec() {
        // The reference value from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
    }

    #[test]
    fn a_resource_s_keys_share_a_slot_even_with_braces_in_the_name() {
        for resource in ["a", "jobs/42", "a}b", "{x}", "}{", "ünï/🔒", "{"] {
            let keys = Keys::new("distlock", resource);
            let slot = hash_slot(keys.holders.as_bytes());
            assert_eq!(slot, hash_slot(keys.details.as_bytes()), "{resource}");
            assert_eq!(slot, hash_slot(keys.token.as_bytes()), "{resource}");
            assert_eq!(
                slot,
                hash_slot(channel("distlock", resource).as_bytes()),
                "{resource}"
            );
            assert_eq!(resource_of("distlock", &keys.holders), Some(resource));
            assert_eq!(resource_of("distlock", &keys.details), None);
            assert_eq!(resource_of("distlock", &keys.token), None);
        }
    }

    #[test]
    fn scan_pattern_escapes_globs() {
        assert_eq!(scan_pattern("p", "a*b?[c]\\"), "{p:a\\*b\\?\\[c\\]\\\\*}");
    }
}
