//! What happened during a run, and the checkers that judge it.
//!
//! Times are nanoseconds on one clock shared by every holder of the run
//! (the wall clock of this machine; holders in child processes use it too).

use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Nanoseconds since the Unix epoch at `instant` (a monotonic instant of this process).
pub(crate) fn instant_ns(instant: std::time::Instant) -> u64 {
    let now = std::time::Instant::now();
    let wall = now_ns();
    match now.checked_duration_since(instant) {
        Some(ago) => wall.saturating_sub(u64::try_from(ago.as_nanos()).unwrap_or(u64::MAX)),
        None => wall.saturating_add(
            u64::try_from(instant.duration_since(now).as_nanos()).unwrap_or(u64::MAX),
        ),
    }
}

/// One thing a holder or the harness did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `lock()` returned a grant.
    Grant,
    /// The holder saw its lock lost; `at` is when it stopped being safe.
    Lost,
    /// The holder sent its release.
    Release,
    /// The harness killed the holder (its grant, if any, ends here).
    Kill,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Grant => "GRANT",
            Kind::Lost => "LOST",
            Kind::Release => "RELEASE",
            Kind::Kill => "KILL",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "GRANT" => Kind::Grant,
            "LOST" => Kind::Lost,
            "RELEASE" => Kind::Release,
            "KILL" => Kind::Kill,
            _ => return None,
        })
    }
}

/// One event of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) kind: Kind,
    pub(crate) holder: u32,
    pub(crate) token: u64,
    pub(crate) at: u64,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EV {} {} {} {}",
            self.kind.name(),
            self.holder,
            self.token,
            self.at
        )
    }
}

impl Event {
    /// Parse what `Display` wrote (holders in child processes print these).
    pub(crate) fn parse(line: &str) -> Option<Event> {
        let mut parts = line.split_whitespace();
        if parts.next()? != "EV" {
            return None;
        }
        Some(Event {
            kind: Kind::parse(parts.next()?)?,
            holder: parts.next()?.parse().ok()?,
            token: parts.next()?.parse().ok()?,
            at: parts.next()?.parse().ok()?,
        })
    }
}

/// A write the fenced resource saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write {
    pub(crate) holder: u32,
    pub(crate) token: u64,
    pub(crate) at: u64,
    /// The token was below one the resource had already accepted.
    pub(crate) stale: bool,
    /// The resource accepted it (always, when unfenced).
    pub(crate) accepted: bool,
}

/// A fault the harness injected.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) kind: &'static str,
    pub(crate) at: u64,
    /// The fault forces its target to lose its lock (pause or partition past the TTL).
    pub(crate) forces_loss: bool,
}

/// Everything recorded in one run.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) events: Vec<Event>,
    pub(crate) writes: Vec<Write>,
    pub(crate) faults: Vec<Fault>,
    /// Resources, keys or leases still held after the run, and background tasks left.
    pub(crate) leaks: u64,
}

/// A grant's validity window: from `lock()` returning to the first of release,
/// lost, or kill.
#[derive(Debug, Clone, Copy)]
struct Window {
    holder: u32,
    token: u64,
    start: u64,
    end: u64,
    ended_by: Option<Kind>,
}

/// The figures a run prints.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) acquisitions: usize,
    pub(crate) faults: usize,
    pub(crate) faults_by_kind: Vec<(&'static str, usize)>,
    pub(crate) writes: usize,
    pub(crate) stale_writes: usize,
    pub(crate) stale_rejected: usize,
    pub(crate) overlaps: usize,
    /// Each overlap: both windows, for reading a failed run.
    pub(crate) overlap_details: Vec<String>,
    /// From the first overlapping window's start to the last's grant (ns).
    pub(crate) overlap_span: Option<(u64, u64)>,
    pub(crate) forced_losses: usize,
    pub(crate) lost_lead_min_ms: Option<f64>,
    pub(crate) lost_lead_p50_ms: Option<f64>,
    pub(crate) negative_leads: usize,
    pub(crate) kill_regrant_p50_ms: Option<f64>,
    pub(crate) kill_regrant_max_ms: Option<f64>,
    pub(crate) leaks: u64,
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[index])
}

impl History {
    /// One window per grant: from the grant until its own Lost or Release
    /// (matched by holder and token, wherever it falls in time: a grant that
    /// came back already lost has its Lost stamped before its Grant, and then
    /// never held), the holder's kill, or its next grant, whichever is first.
    fn windows(&self, run_end: u64) -> Vec<Window> {
        let mut events = self.events.clone();
        events.sort_by_key(|e| e.at);
        let mut closes: HashMap<(u32, u64), (u64, Kind)> = HashMap::new();
        for e in &events {
            if matches!(e.kind, Kind::Lost | Kind::Release) {
                closes.entry((e.holder, e.token)).or_insert((e.at, e.kind));
            }
        }
        let mut done = Vec::new();
        for (i, grant) in events.iter().enumerate() {
            if grant.kind != Kind::Grant {
                continue;
            }
            let mut window = Window {
                holder: grant.holder,
                token: grant.token,
                start: grant.at,
                end: run_end,
                ended_by: None,
            };
            if let Some(&(at, kind)) = closes.get(&(grant.holder, grant.token)) {
                window.end = at.max(grant.at);
                window.ended_by = Some(kind);
            }
            let next = events[i + 1..]
                .iter()
                .find(|e| e.holder == grant.holder && matches!(e.kind, Kind::Kill | Kind::Grant));
            if let Some(next) = next
                && next.at < window.end
            {
                window.end = next.at;
                window.ended_by = (next.kind == Kind::Kill).then_some(Kind::Kill);
            }
            done.push(window);
        }
        done.sort_by_key(|w| w.start);
        done
    }

    /// Judge the run.
    pub(crate) fn figures(&self, run_end: u64) -> Figures {
        let windows = self.windows(run_end);
        let mut figures = Figures {
            acquisitions: windows.len(),
            faults: self.faults.len(),
            writes: self.writes.len(),
            leaks: self.leaks,
            ..Figures::default()
        };
        let mut by_kind: HashMap<&'static str, usize> = HashMap::new();
        for fault in &self.faults {
            *by_kind.entry(fault.kind).or_default() += 1;
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_unstable();
        figures.faults_by_kind = kinds;

        figures.stale_writes = self.writes.iter().filter(|w| w.stale && w.accepted).count();
        figures.stale_rejected = self
            .writes
            .iter()
            .filter(|w| w.stale && !w.accepted)
            .count();

        // Overlaps: one mutex, so no two windows may intersect.
        for (i, a) in windows.iter().enumerate() {
            for b in &windows[i + 1..] {
                if b.start >= a.end {
                    break;
                }
                if a.holder != b.holder || a.token != b.token {
                    figures.overlaps += 1;
                    let (from, to) = figures.overlap_span.unwrap_or((a.start, b.start));
                    figures.overlap_span = Some((from.min(a.start), to.max(b.start)));
                    figures.overlap_details.push(format!(
                        "  OVERLAP: holder {} token {} held from {:.3} to {:.3} ms (ended by {:?}); \
                         holder {} token {} granted at {:.3} ms",
                        a.holder,
                        a.token,
                        ms(i128::from(a.start)),
                        ms(i128::from(a.end)),
                        a.ended_by,
                        b.holder,
                        b.token,
                        ms(i128::from(b.start)),
                    ));
                }
            }
        }

        // Lost lead: a lost window against the next grant to anyone else.
        let mut leads = Vec::new();
        // (A grant that came back already lost never held: no lead to measure.)
        for lost in windows
            .iter()
            .filter(|w| w.ended_by == Some(Kind::Lost) && w.end > w.start)
        {
            if let Some(next) = windows
                .iter()
                .filter(|w| w.start >= lost.start && w.token > lost.token)
                .min_by_key(|w| w.start)
            {
                let lead = i128::from(next.start) - i128::from(lost.end);
                if lead <= 0 {
                    figures.negative_leads += 1;
                }
                leads.push(ms(lead));
            }
        }
        figures.forced_losses = leads.len();
        leads.sort_by(f64::total_cmp);
        figures.lost_lead_min_ms = leads.first().copied();
        figures.lost_lead_p50_ms = percentile(&leads, 0.5);

        // Kill → the next grant to anyone.
        let mut regrants = Vec::new();
        for kill in self
            .events
            .iter()
            .filter(|e| e.kind == Kind::Kill && e.token > 0)
        {
            if let Some(next) = windows
                .iter()
                .filter(|w| w.start > kill.at && w.token > kill.token)
                .min_by_key(|w| w.start)
            {
                regrants.push(ms(i128::from(next.start) - i128::from(kill.at)));
            }
        }
        regrants.sort_by(f64::total_cmp);
        figures.kill_regrant_p50_ms = percentile(&regrants, 0.5);
        figures.kill_regrant_max_ms = regrants.last().copied();
        figures
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "na".to_owned(), |v| format!("{v:.1}"))
}

impl Figures {
    /// The one line scripts read.
    pub(crate) fn summary(&self, backend: &str) -> String {
        format!(
            "reliability {backend}: acquisitions={} faults={} stale_writes={} overlaps={} \
             lost_lead_min_ms={} kill_regrant_p50_ms={} leaks={}",
            self.acquisitions,
            self.faults,
            self.stale_writes,
            self.overlaps,
            opt(self.lost_lead_min_ms),
            opt(self.kill_regrant_p50_ms),
            self.leaks
        )
    }

    /// The detail lines printed before the summary.
    pub(crate) fn details(&self) -> Vec<String> {
        let kinds: Vec<String> = self
            .faults_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind}={n}"))
            .collect();
        vec![
            format!(
                "  faults by kind: {}",
                if kinds.is_empty() {
                    "none".into()
                } else {
                    kinds.join(" ")
                }
            ),
            format!(
                "  writes={} stale_writes_accepted={} stale_writes_rejected={}",
                self.writes, self.stale_writes, self.stale_rejected
            ),
            format!(
                "  forced losses measured={} lost_lead_ms min={} p50={} (non-positive: {})",
                self.forced_losses,
                opt(self.lost_lead_min_ms),
                opt(self.lost_lead_p50_ms),
                self.negative_leads
            ),
            format!(
                "  kill -> next grant ms p50={} max={}",
                opt(self.kill_regrant_p50_ms),
                opt(self.kill_regrant_max_ms)
            ),
            format!("  overlaps={} leaks={}", self.overlaps, self.leaks),
        ]
        .into_iter()
        .chain(self.overlap_details.iter().cloned())
        .collect()
    }

    /// Whether the run kept every promise.
    pub(crate) fn safe(&self) -> bool {
        self.stale_writes == 0 && self.overlaps == 0 && self.negative_leads == 0 && self.leaks == 0
    }
}

impl History {
    /// Every event, write and fault, one per line in time order, for reading a
    /// failed run after the fact.
    pub(crate) fn dump(&self) -> String {
        self.dump_between(0, u64::MAX)
    }

    /// The lines of [`Self::dump`] from `from` to `to` (ns).
    pub(crate) fn dump_between(&self, from: u64, to: u64) -> String {
        let mut lines: Vec<(u64, String)> = Vec::new();
        lines.extend(self.events.iter().map(|e| (e.at, e.to_string())));
        lines.extend(self.writes.iter().map(|w| {
            (
                w.at,
                format!(
                    "WRITE {} {} {} stale={} accepted={}",
                    w.holder, w.token, w.at, w.stale, w.accepted
                ),
            )
        }));
        lines.extend(self.faults.iter().map(|f| {
            (
                f.at,
                format!("FAULT {} {} forces_loss={}", f.kind, f.at, f.forces_loss),
            )
        }));
        lines.retain(|(at, _)| (from..=to).contains(at));
        lines.sort_by_key(|(at, _)| *at);
        lines.into_iter().map(|(_, l)| l + "\n").collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, holder: u32, token: u64, at: u64) -> Event {
        Event {
            kind,
            holder,
            token,
            at,
        }
    }

    #[test]
    fn events_round_trip_as_lines() {
        let e = ev(Kind::Lost, 3, 42, 1_700_000_000_000_000_000);
        assert_eq!(Event::parse(&e.to_string()), Some(e));
        assert_eq!(Event::parse("noise"), None);
    }

    #[test]
    fn checkers_find_overlaps_and_negative_leads() {
        let history = History {
            events: vec![
                ev(Kind::Grant, 1, 1, 0),
                ev(Kind::Release, 1, 1, 100),
                ev(Kind::Grant, 2, 2, 100),
                ev(Kind::Lost, 2, 2, 200),
                ev(Kind::Grant, 3, 3, 250),
                // holder 4 is granted while 3 still holds: an overlap
                ev(Kind::Grant, 4, 4, 300),
                ev(Kind::Release, 3, 3, 400),
                ev(Kind::Lost, 4, 4, 500),
                // holder 5 granted before 4's lost: a negative lead
                ev(Kind::Grant, 5, 5, 450),
                ev(Kind::Release, 5, 5, 600),
            ],
            ..History::default()
        };
        let f = history.figures(1000);
        assert_eq!(f.acquisitions, 5);
        assert_eq!(f.overlaps, 2, "3∩4 and 4∩5: {f:?}");
        assert_eq!(f.negative_leads, 1);
        assert_eq!(f.forced_losses, 2);
        assert!(!f.safe());
    }

    #[test]
    fn a_clean_history_is_safe() {
        let history = History {
            events: vec![
                ev(Kind::Grant, 1, 1, 0),
                ev(Kind::Lost, 1, 1, 100),
                ev(Kind::Grant, 2, 2, 150),
                ev(Kind::Kill, 2, 2, 200),
                ev(Kind::Grant, 3, 3, 1_200_000),
            ],
            ..History::default()
        };
        let f = history.figures(2_000_000);
        assert_eq!(f.overlaps, 0);
        assert_eq!(f.negative_leads, 0);
        assert_eq!(f.lost_lead_min_ms, Some(ms(50)));
        assert!(f.kill_regrant_p50_ms.is_some());
        assert!(f.safe());
    }

    #[test]
    fn a_grant_that_came_back_already_lost_never_held() {
        let history = History {
            events: vec![
                // Holder 1's grant was observed at 400 but its deadline was 300:
                // the Lost sorts before the Grant.
                ev(Kind::Lost, 1, 1, 300),
                ev(Kind::Grant, 1, 1, 400),
                ev(Kind::Grant, 2, 2, 450),
                ev(Kind::Release, 2, 2, 500),
                // Holder 3 saw a grant, then was killed before it said more.
                ev(Kind::Grant, 3, 3, 600),
                ev(Kind::Kill, 3, 0, 650),
                ev(Kind::Grant, 4, 4, 1_000),
            ],
            ..History::default()
        };
        let f = history.figures(2_000);
        assert_eq!(f.overlaps, 0, "{:?}", f.overlap_details);
        assert_eq!(f.negative_leads, 0);
        assert!(f.safe());
        // A real overlap is still one.
        let mut history = history;
        history.events.push(ev(Kind::Grant, 5, 5, 460));
        history.events.push(ev(Kind::Release, 5, 5, 470));
        assert_eq!(history.figures(2_000).overlaps, 1);
    }
}
