//! The random key that proves who holds a lease.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A lease's secret: 128 random bits chosen by the client before it asks the store,
/// so a request whose answer is lost can still be released. Only the holder knows
/// it; release and refresh need it.
///
/// `Display` and [`LeaseKey::to_hex`] give the full 32 hex digits (to hand the key
/// to another process); `Debug` shows only the first four so that logs never carry
/// a usable key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey(u128);

impl LeaseKey {
    /// A fresh random key: 128 bits from a per-thread generator seeded by the
    /// operating system (a lease key must be unique and unguessable by other
    /// clients by accident; it is not a credential against someone who can read
    /// the store, who could delete the lease anyway).
    pub fn random() -> Self {
        thread_local! {
            static RNG: std::cell::RefCell<fastrand::Rng> = std::cell::RefCell::new(seeded());
        }
        let (high, low) = RNG.with(|rng| {
            let mut rng = rng.borrow_mut();
            (rng.u64(..), rng.u64(..))
        });
        LeaseKey((u128::from(high) << 64) | u128::from(low))
    }

    /// The key as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// A key from a number (for stores that keep keys as numbers).
    pub fn from_u128(value: u128) -> Self {
        LeaseKey(value)
    }

    /// The 32 lowercase hex digits stores keep.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parse what [`LeaseKey::to_hex`] wrote.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                "lease key",
                "expected the 32 hex digits a lock handle gave out",
            ));
        }
        u128::from_str_radix(text, 16)
            .map(LeaseKey)
            .map_err(|e| Error::invalid("lease key", e.to_string()))
    }
}

fn seeded() -> fastrand::Rng {
    let mut seed = [0u8; 8];
    match getrandom::fill(&mut seed) {
        Ok(()) => fastrand::Rng::with_seed(u64::from_le_bytes(seed)),
        // Only exotic targets lack an OS source; fastrand seeds itself there.
        Err(_) => fastrand::Rng::new(),
    }
}

impl FromStr for LeaseKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        LeaseKey::parse(s)
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "LeaseKey({}…)", &hex[..4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_redacted_debug() {
        let key = LeaseKey::random();
        assert_eq!(LeaseKey::parse(&key.to_hex()).unwrap(), key);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&key.to_hex()[4..]), "{debug}");
        assert_ne!(LeaseKey::random(), key);
    }

    #[test]
    fn rejects_malformed_keys() {
        for bad in ["", "xyz", &"a".repeat(31), &"g".repeat(32)] {
            assert!(matches!(
                LeaseKey::parse(bad),
                Err(Error::InvalidArgument {
                    what: "lease key",
                    ..
                })
            ));
        }
    }
}
