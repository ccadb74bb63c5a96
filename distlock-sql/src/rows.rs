//! What the dialects share: the rows a store call reads, and the decisions
//! taken from them (which slot an acquire takes, whether a job lock is
//! granted), written once for every dialect. The dialect modules depend on
//! this module, [`crate::layout`] and [`crate::error`] only.

// The slot and job decisions serve the dialects that decide in the client.
#![cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use distlock_core::{RefreshRequest, Refreshed};

/// The four names of a job lock request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobKey<'a> {
    /// The component (service) name, shared by all its instances.
    pub component: &'a str,
    /// This instance of the component.
    pub component_id: &'a str,
    /// The job's name.
    pub job: &'a str,
    /// This run of the job.
    pub job_id: &'a str,
}

impl<'a> JobKey<'a> {
    /// A key from the four names.
    pub fn new(component: &'a str, component_id: &'a str, job: &'a str, job_id: &'a str) -> Self {
        JobKey {
            component,
            component_id,
            job,
            job_id,
        }
    }
}

/// A TTL in whole microseconds (validated TTLs fit easily).
pub(crate) fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX)
}

/// Microseconds since the Unix epoch (database clock) as a `SystemTime`.
pub(crate) fn micros_to_time(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// One outcome per request, in order, from the keys the database renewed.
pub(crate) fn outcomes(leases: &[RefreshRequest<'_>], renewed: &[Vec<u8>]) -> Vec<Refreshed> {
    let renewed: std::collections::HashSet<u128> = renewed
        .iter()
        .filter_map(|k| <[u8; 16]>::try_from(k.as_slice()).ok())
        .map(u128::from_be_bytes)
        .collect();
    leases
        .iter()
        .map(|l| {
            if renewed.contains(&l.key.as_u128()) {
                Refreshed::Renewed
            } else {
                Refreshed::NotHeld
            }
        })
        .collect()
}

/// The decision of one acquire from the resource's slots as read under lock
/// (MySQL and SQLite decide in the client, inside their transaction).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write the lease into this slot.
    Grant { slot: i32 },
    /// The resource is in use with another number of permits.
    Mismatch { existing: u32 },
    /// All permits are taken; the first ends in this long.
    Held { retry_after: Option<Duration> },
}

/// One slot row, as read under lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotRow {
    pub(crate) slot: i32,
    pub(crate) permits: i32,
    /// Holds an unexpired lease.
    pub(crate) live: bool,
    pub(crate) expires_us: i64,
}

pub(crate) fn decide(slots: &[SlotRow], permits: u32, now_us: i64) -> Decision {
    let live: Vec<&SlotRow> = slots.iter().filter(|s| s.live).collect();
    let permits_i = i64::from(permits);
    if let Some(other) = live.iter().find(|s| i64::from(s.permits) != permits_i) {
        return Decision::Mismatch {
            existing: u32::try_from(other.permits).unwrap_or(0),
        };
    }
    let free = (0..permits_i)
        .find(|slot| !live.iter().any(|s| i64::from(s.slot) == *slot))
        .and_then(|slot| i32::try_from(slot).ok());
    match free {
        Some(slot) => Decision::Grant { slot },
        None => Decision::Held {
            retry_after: live.iter().map(|s| s.expires_us).min().map(|first| {
                Duration::from_micros(u64::try_from(first.saturating_sub(now_us)).unwrap_or(0))
            }),
        },
    }
}

// ---- job locks ----------------------------------------------------------

/// A job row as read under lock (MySQL, SQLite).
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub(crate) enabled: bool,
    pub(crate) component_id: Option<String>,
    pub(crate) job_id: Option<String>,
    pub(crate) token: i64,
    pub(crate) expires_us: i64,
}

/// The job's state before the call, holder only while unexpired.
#[derive(Debug, Clone)]
pub(crate) struct JobState {
    pub(crate) enabled: bool,
    pub(crate) holder: Option<(String, String, SystemTime)>,
}

/// What one job call found and did.
#[derive(Debug, Clone)]
pub(crate) struct JobOutcome {
    /// Set when the call locked (or unlocked) the job.
    pub(crate) token: Option<u64>,
    pub(crate) expires_at: Option<SystemTime>,
    /// The state before the call (`None`: no row).
    pub(crate) state: Option<JobState>,
}

/// Values to write back to a job row.
#[derive(Debug)]
pub(crate) struct JobWrite {
    pub(crate) component_id: Option<String>,
    pub(crate) job_id: Option<String>,
    pub(crate) token: i64,
    pub(crate) locked_us: i64,
    pub(crate) expires_us: i64,
}

impl JobOutcome {
    pub(crate) fn status(row: Option<&JobRow>, now_us: i64) -> Self {
        JobOutcome {
            token: None,
            expires_at: None,
            state: row.map(|r| state_of(r, now_us)),
        }
    }
}

fn state_of(row: &JobRow, now_us: i64) -> JobState {
    JobState {
        enabled: row.enabled,
        holder: match (&row.component_id, &row.job_id) {
            (Some(c), Some(j)) if row.expires_us > now_us => {
                Some((c.clone(), j.clone(), micros_to_time(row.expires_us)))
            }
            _ => None,
        },
    }
}

fn owns(row: &JobRow, key: &JobKey<'_>) -> bool {
    row.component_id.as_deref() == Some(key.component_id)
        && row.job_id.as_deref() == Some(key.job_id)
}

pub(crate) fn decide_lock(
    row: Option<&JobRow>,
    key: &JobKey<'_>,
    now_us: i64,
    max_us: i64,
) -> (JobOutcome, Option<JobWrite>) {
    let state = row.map(|r| state_of(r, now_us));
    let refused = JobOutcome {
        token: None,
        expires_at: None,
        state: state.clone(),
    };
    if let Some(row) = row {
        if !row.enabled {
            return (refused, None);
        }
        let live = row.component_id.is_some() && row.expires_us > now_us;
        if live && !owns(row, key) {
            return (refused, None);
        }
    }
    let token = row.map_or(0, |r| r.token).saturating_add(1);
    let expires_us = now_us.saturating_add(max_us);
    (
        JobOutcome {
            token: Some(u64::try_from(token).unwrap_or(0)),
            expires_at: Some(micros_to_time(expires_us)),
            state,
        },
        Some(JobWrite {
            component_id: Some(key.component_id.to_owned()),
            job_id: Some(key.job_id.to_owned()),
            token,
            locked_us: now_us,
            expires_us,
        }),
    )
}

pub(crate) fn decide_unlock(
    row: Option<&JobRow>,
    key: &JobKey<'_>,
    now_us: i64,
) -> (JobOutcome, Option<JobWrite>) {
    let state = row.map(|r| state_of(r, now_us));
    match row {
        Some(row) if owns(row, key) => (
            JobOutcome {
                token: Some(u64::try_from(row.token).unwrap_or(0)),
                expires_at: None,
                state,
            },
            Some(JobWrite {
                component_id: None,
                job_id: None,
                token: row.token,
                locked_us: now_us,
                expires_us: now_us,
            }),
        ),
        _ => (
            JobOutcome {
                token: None,
                expires_at: None,
                state,
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(slot: i32, permits: i32, live: bool, expires_us: i64) -> SlotRow {
        SlotRow {
            slot,
            permits,
            live,
            expires_us,
        }
    }

    #[test]
    fn decide_takes_the_lowest_free_slot() {
        assert_eq!(decide(&[], 1, 0), Decision::Grant { slot: 0 });
        let rows = [
            row(0, 3, true, 50),
            row(1, 3, false, 10),
            row(2, 3, true, 40),
        ];
        assert_eq!(decide(&rows, 3, 0), Decision::Grant { slot: 1 });
        let rows = [row(0, 2, true, 50), row(1, 2, true, 40)];
        assert_eq!(
            decide(&rows, 2, 10),
            Decision::Held {
                retry_after: Some(Duration::from_micros(30))
            }
        );
    }

    #[test]
    fn decide_reports_a_size_mismatch_only_while_held() {
        let rows = [row(0, 3, true, 50)];
        assert_eq!(decide(&rows, 1, 0), Decision::Mismatch { existing: 3 });
        let rows = [row(0, 3, false, 50), row(2, 3, false, 50)];
        assert_eq!(decide(&rows, 1, 0), Decision::Grant { slot: 0 });
    }

    fn job_row(enabled: bool, owner: Option<(&str, &str)>, token: i64, expires_us: i64) -> JobRow {
        JobRow {
            enabled,
            component_id: owner.map(|o| o.0.to_owned()),
            job_id: owner.map(|o| o.1.to_owned()),
            token,
            expires_us,
        }
    }

    #[test]
    fn lock_rules() {
        let key = JobKey::new("c", "me", "j", "run");
        // New job, free job, expired lock, own lock: granted with a bigger token.
        for (r, token) in [
            (None, 1),
            (Some(job_row(true, None, 4, 0)), 5),
            (Some(job_row(true, Some(("other", "x")), 6, 99)), 7),
            (Some(job_row(true, Some(("me", "run")), 8, 1_000)), 9),
        ] {
            let (out, write) = decide_lock(r.as_ref(), &key, 100, 50);
            assert_eq!(out.token, Some(token));
            assert_eq!(write.map(|w| w.expires_us), Some(150));
        }
        // Disabled, or held by another instance or another run: refused.
        for r in [
            job_row(false, None, 1, 0),
            job_row(true, Some(("other", "run")), 1, 1_000),
            job_row(true, Some(("me", "other-run")), 1, 1_000),
        ] {
            let (out, write) = decide_lock(Some(&r), &key, 100, 50);
            assert!(out.token.is_none() && write.is_none());
        }
    }

    #[test]
    fn unlock_rules() {
        let key = JobKey::new("c", "me", "j", "run");
        let (out, write) = decide_unlock(
            Some(&job_row(false, Some(("me", "run")), 3, 1_000)),
            &key,
            100,
        );
        assert_eq!(out.token, Some(3), "unlock works while disabled");
        assert!(write.is_some_and(|w| w.component_id.is_none()));
        let (out, write) =
            decide_unlock(Some(&job_row(true, Some(("x", "y")), 3, 1_000)), &key, 100);
        assert!(out.token.is_none() && write.is_none());
        assert!(out.state.and_then(|s| s.holder).is_some());
    }
}
