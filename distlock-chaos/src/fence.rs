//! The fenced resource: storage that holders write to while they hold the lock.

use std::sync::{Arc, Mutex, PoisonError};

use crate::history::{Write, now_ns};

/// An in-process store that, when fenced, rejects any write whose token is
/// below the highest token it has accepted (what a database with a fencing
/// check does). Unfenced, it accepts everything and only records staleness.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    fenced: bool,
    state: Arc<Mutex<FenceState>>,
}

#[derive(Debug, Default)]
struct FenceState {
    highest: u64,
    writes: Vec<Write>,
}

impl Fence {
    pub(crate) fn new(fenced: bool) -> Self {
        Fence {
            fenced,
            state: Arc::default(),
        }
    }

    /// One write by `holder` carrying `token`; whether it was accepted.
    pub(crate) fn write(&self, holder: u32, token: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = token < state.highest;
        let accepted = !(self.fenced && stale);
        if accepted {
            state.highest = state.highest.max(token);
        }
        state.writes.push(Write {
            holder,
            token,
            at: now_ns(),
            stale,
            accepted,
        });
        accepted
    }

    pub(crate) fn writes(&self) -> Vec<Write> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .writes
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_rejects_older_tokens_unfenced_counts_them() {
        let fenced = Fence::new(true);
        assert!(fenced.write(1, 5));
        assert!(fenced.write(2, 5), "the same token again is fine");
        assert!(!fenced.write(3, 4));
        assert!(fenced.write(3, 6));
        let writes = fenced.writes();
        assert_eq!(writes.iter().filter(|w| w.stale && !w.accepted).count(), 1);

        let open = Fence::new(false);
        assert!(open.write(1, 5));
        assert!(open.write(2, 4));
        assert_eq!(
            open.writes()
                .iter()
                .filter(|w| w.stale && w.accepted)
                .count(),
            1
        );
    }
}
