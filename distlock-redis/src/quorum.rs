//! [`QuorumStore`]: Redlock over N independent Redis servers.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Error, Grant, Holder, Info, LeaseKey, RefreshRequest,
    Refreshed, Result, Store, StoreLocker, Wakeup,
};
use futures_util::StreamExt;
use futures_util::future::{join_all, select_all};
use futures_util::stream::FuturesUnordered;

use crate::acquire::RawAcquired;
use crate::client::wall;
use crate::inspect::{RawHolder, RawInfo};
use crate::{RedisConfig, RedisStore};

const BACKEND: &str = "redlock";

/// Redlock: a lease is held when a majority of N independent Redis servers
/// (not replicas of each other) granted it, within its validity.
///
/// # How
/// - **acquire**: the acquire script runs on every server at once with the same
///   lease key. With a majority granted, the fencing token is the largest of
///   their tokens, and a second script (`RAISE`) records it on the granting
///   servers, raising each one's counter to at least that token (while the key
///   still holds there). Granted when a majority confirmed that too and the
///   validity `ttl − elapsed − drift` (drift = 1 % of the TTL + 2 ms) is still
///   positive; otherwise the lease is released on every server (in the
///   background). A grant costs two parallel round trips, "held" one.
/// - **refresh**: every lease of the batch on every server (one pipelined round
///   trip per server, in parallel); renewed where a majority renewed it; a
///   lease neither renewed nor refused by a majority is an error (the core
///   retries until the deadline, then `lost` fires).
/// - **release**: on every server (each its own task, so all get it);
///   confirmed when a majority released it, `OutcomeUnknown` when servers that
///   failed could decide it.
/// - **info / read / list**: holders (lease keys) present on a majority; the
///   token shown is the one recorded on most servers (the raised one).
/// - **wake-up**: subscribed on a majority; the first message wakes (a release
///   publishes on every server where it ended the lease, a majority).
///
/// No call waits for a server that is slow or down once the answers in hand
/// settle it (Redlock's "small timeout per instance"); fewer than a majority
/// answering is [`Unavailable`](Error::Unavailable), never "held".
///
/// # Fencing tokens: what is guaranteed
/// Without the `RAISE` step, "the largest token of the granting majority" is
/// not monotonic: majorities differ, and one server's counter may be far ahead
/// of another's (A, B, C with counters 100, 1, 1: a grant on {A, B} gets 101,
/// the next on {B, C} gets 3). With it: if grant G1 was valid and ended (or
/// was released) before G2 was granted, the majorities of G1 and G2 share a
/// server S; S granted G1 before G2 (it could not hold both), and S's counter
/// was raised to G1's token while G1 held there, before G1 ended there, so
/// G2's `INCR` on S returns more, and G2's token (the largest of its majority)
/// exceeds G1's. (A server that granted G1 but was not waited for keeps its
/// own token for it; the argument only needs the majority that confirmed the
/// raise.) **This rests on the Redlock assumptions**: servers' clocks
/// run at about the same rate (the 1 % drift margin), no server loses a lease
/// it granted (a restart without persistence within a TTL breaks mutual
/// exclusion and this argument; restart servers after a TTL, or use AOF with
/// `appendfsync always`), and the holder is not paused past its validity
/// (GC, swap: its `lost` signal fires, but a write already sent can land late).
///
/// # Why fencing still matters
/// Redlock's safety depends on timing. A client paused after its check, a
/// network delay longer than the validity, or a clock jump on a server lets two
/// clients believe they hold the lock. Only a storage that rejects writes with
/// a token lower than the last one it saw turns that into a refused write
/// instead of corruption. Use the token.
///
/// A single server ([`RedisStore`]) gives the same token guarantee without
/// these assumptions about other servers; use the quorum only to survive one
/// server being down without failover.
#[derive(Clone)]
pub struct QuorumStore {
    inner: Arc<Inner>,
}

struct Inner {
    caps: Capabilities,
    stores: Vec<RedisStore>,
}

impl fmt::Debug for QuorumStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuorumStore")
            .field("servers", &self.inner.stores)
            .field("majority", &self.majority())
            .finish()
    }
}

impl QuorumStore {
    /// Connect to every server. Servers that cannot be reached now are
    /// tried again on each request; at least a majority must answer here.
    ///
    /// # Errors
    /// [`InvalidArgument`](Error::InvalidArgument) for no server, or
    /// [`Unavailable`](Error::Unavailable) if fewer than a majority answer.
    pub async fn connect(configs: Vec<RedisConfig>) -> Result<Self> {
        if configs.is_empty() {
            return Err(Error::invalid(
                "servers",
                "a quorum needs at least one server (three or five in practice)",
            ));
        }
        let n = configs.len();
        let answers = join_all(configs.into_iter().map(|config| async move {
            match RedisStore::connect_with(config.clone()).await {
                Ok(store) => Ok((store, true)),
                // Down now: connect on first use, so that it can come back.
                Err(error) if error.is_transient() => {
                    RedisStore::connect_lazy(config).map(|store| (store, false))
                }
                Err(error) => Err(error),
            }
        }))
        .await;
        let mut stores = Vec::with_capacity(n);
        let mut reachable = 0;
        for answer in answers {
            let (store, connected) = answer?;
            reachable += usize::from(connected);
            stores.push(store);
        }
        let majority = n / 2 + 1;
        if reachable < majority {
            return Err(Error::unavailable(
                BACKEND,
                format!("only {reachable} of {n} servers answered; a majority ({majority}) must"),
            ));
        }
        Ok(QuorumStore {
            inner: Arc::new(Inner {
                caps: Capabilities::new(BACKEND)
                    .with_min_ttl(Duration::from_millis(10))
                    .with_max_data_len(crate::client::MAX_DATA_LEN)
                    .with_push_wakeup(true)
                    .with_batch_refresh(true)
                    .with_clock_margin(Duration::from_millis(2)),
                stores,
            }),
        })
    }

    /// Connect to `urls` (each as [`RedisConfig::from_url`]).
    ///
    /// # Errors
    /// As [`RedisConfig::from_url`] and [`QuorumStore::connect`].
    pub async fn connect_urls<S: AsRef<str>>(urls: &[S]) -> Result<Self> {
        let configs = urls
            .iter()
            .map(|url| RedisConfig::from_url(url.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Self::connect(configs).await
    }

    /// A locker over this quorum.
    pub fn locker(&self) -> StoreLocker<QuorumStore> {
        StoreLocker::new(self.clone())
    }

    /// The servers, in the order given.
    pub fn servers(&self) -> &[RedisStore] {
        &self.inner.stores
    }

    /// How many servers must agree.
    pub fn majority(&self) -> usize {
        self.inner.stores.len() / 2 + 1
    }

    /// Undo a failed acquire on every server, in the background: a server that
    /// is down must not hold up the answer (its copy expires with the TTL).
    fn release_everywhere(&self, resource: &str, key: LeaseKey) {
        let stores = self.inner.stores.clone();
        let resource = resource.to_owned();
        tokio::spawn(async move {
            join_all(stores.iter().map(|store| store.release_raw(&resource, key))).await;
        });
    }

    fn short(&self, answered: usize) -> Error {
        Error::unavailable(
            BACKEND,
            format!(
                "only {answered} of {} servers answered; a majority ({}) is needed",
                self.inner.stores.len(),
                self.majority()
            ),
        )
    }
}

impl Store for QuorumStore {
    fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let started = Instant::now();
        let majority = self.majority();
        let n = self.inner.stores.len();
        let answers = gather(
            self.inner.stores.iter().map(|s| s.acquire_raw(request)),
            |answers| {
                let granted = answers
                    .iter()
                    .filter(|a| matches!(a, Some(Ok(RawAcquired::Granted { .. }))))
                    .count();
                let ok = answers.iter().filter(|a| matches!(a, Some(Ok(_)))).count();
                let pending = answers.iter().filter(|a| a.is_none()).count();
                // Granted; or no grant possible and the answer (held, or
                // unavailable) cannot change any more.
                granted >= majority
                    || (granted + pending < majority && (ok >= majority || ok + pending < majority))
            },
        )
        .await;
        let mut granted = Vec::new();
        let mut retry_after: Option<i64> = None;
        let mut mismatch = None;
        let mut failed = 0;
        let mut unknown = 0;
        let mut last_error = None;
        for (index, answer) in answers.into_iter().enumerate() {
            match answer {
                Some(Ok(RawAcquired::Granted { token, expires_ms })) => {
                    granted.push((index, token, expires_ms));
                }
                Some(Ok(RawAcquired::Held { retry_after_ms })) => {
                    retry_after =
                        Some(retry_after.map_or(retry_after_ms, |r| r.min(retry_after_ms)));
                }
                Some(Ok(RawAcquired::Mismatch { existing })) => mismatch = Some(existing),
                Some(Err(error)) => {
                    failed += 1;
                    last_error = Some(error);
                }
                // Not waited for: it may be granted there.
                None => unknown += 1,
            }
        }
        if granted.len() >= majority {
            let token = granted.iter().map(|g| g.1).max().unwrap_or(0);
            let raised = gather(
                granted.iter().map(|&(index, _, _)| {
                    self.inner.stores[index].raise_raw(request.resource, request.key, token)
                }),
                |answers| {
                    answers
                        .iter()
                        .filter(|a| matches!(a, Some(Ok(true))))
                        .count()
                        >= majority
                },
            )
            .await;
            let confirmed = raised
                .iter()
                .filter(|r| matches!(r, Some(Ok(true))))
                .count();
            let drift = self.inner.caps.drift_margin(request.ttl);
            let valid = started.elapsed() + drift < request.ttl;
            if confirmed >= majority && valid {
                let expires_ms = granted.iter().map(|g| g.2).min().unwrap_or(0);
                return Ok(Acquired::Granted(Grant::new(token, wall(expires_ms))));
            }
            self.release_everywhere(request.resource, request.key);
            let errors = raised.iter().filter(|r| matches!(r, Some(Err(_)))).count();
            if confirmed + errors >= majority && valid {
                return Err(self.short(confirmed));
            }
            return Ok(Acquired::Held { retry_after: None });
        }
        if !granted.is_empty() || failed > 0 || unknown > 0 {
            self.release_everywhere(request.resource, request.key);
        }
        if let Some(existing) = mismatch {
            return Err(Error::SizeMismatch {
                resource: request.resource.to_owned(),
                requested: request.permits,
                existing,
            });
        }
        // Fewer servers answered than a majority: unavailable, not "held".
        let answered = n - failed - unknown;
        if answered < majority {
            return Err(last_error.unwrap_or_else(|| self.short(answered)));
        }
        Ok(Acquired::Held {
            retry_after: retry_after
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        let majority = self.majority();
        let answers = gather(
            self.inner.stores.iter().map(|s| s.refresh_raw(leases)),
            // Done early once every lease is renewed on a majority.
            |answers| {
                (0..leases.len()).all(|i| {
                    answers
                        .iter()
                        .filter(
                            |a| matches!(a, Some(Ok(outcomes)) if outcomes.get(i) == Some(&true)),
                        )
                        .count()
                        >= majority
                })
            },
        )
        .await;
        let mut renewed = vec![0usize; leases.len()];
        // Servers that did not answer, or failed: they may have renewed.
        let mut unknown = 0;
        let mut last_error = None;
        for answer in answers {
            match answer {
                Some(Ok(outcomes)) => {
                    for (count, outcome) in renewed.iter_mut().zip(outcomes) {
                        *count += usize::from(outcome);
                    }
                }
                Some(Err(error)) => {
                    unknown += 1;
                    last_error = Some(error);
                }
                None => unknown += 1,
            }
        }
        let mut out = Vec::with_capacity(leases.len());
        for count in renewed {
            if count >= majority {
                out.push(Refreshed::Renewed);
            } else if count + unknown >= majority {
                // Undecided: the servers that failed might have renewed it.
                return Err(last_error.unwrap_or_else(|| self.short(count)));
            } else {
                out.push(Refreshed::NotHeld);
            }
        }
        Ok(out)
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        let majority = self.majority();
        // Every server must get the release, even after a majority confirmed:
        // each runs as its own task, which the early answer does not cancel.
        let tasks = self.inner.stores.iter().map(|store| {
            let store = store.clone();
            let resource = resource.to_owned();
            tokio::spawn(async move { store.release_raw(&resource, key).await })
        });
        let answers: Vec<Option<Result<bool>>> = gather(tasks, |answers| {
            answers
                .iter()
                .filter(|a| matches!(a, Some(Ok(Ok(true)))))
                .count()
                >= majority
        })
        .await
        .into_iter()
        .map(|a| {
            a.map(|joined| {
                joined.unwrap_or_else(|e| Err(Error::unavailable(BACKEND, e.to_string())))
            })
        })
        .collect();
        let released = answers
            .iter()
            .filter(|a| matches!(a, Some(Ok(true))))
            .count();
        let unknown = answers
            .iter()
            .filter(|a| matches!(a, None | Some(Err(_))))
            .count();
        if released >= majority {
            return Ok(true);
        }
        if released + unknown >= majority {
            let source = answers
                .into_iter()
                .find_map(|a| a.and_then(|a| a.err()))
                .map_or_else(|| self.short(released).into(), |e| Box::new(e) as _);
            return Err(Error::OutcomeUnknown {
                backend: BACKEND,
                operation: "release",
                resource: resource.to_owned(),
                source,
            });
        }
        Ok(false)
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        let Some(raw) = self.merged(resource).await? else {
            return Ok(None);
        };
        let holders: Vec<Holder> = raw
            .holders
            .into_iter()
            .map(|h| Holder::new(h.owner, h.token, wall(h.acquired_ms), wall(h.expires_ms)))
            .collect();
        if holders.is_empty() {
            return Ok(None);
        }
        Ok(Some(Info::new(resource, raw.permits, holders)))
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        Ok(self
            .merged(resource)
            .await?
            .and_then(|raw| raw.holders.into_iter().next().map(|h| h.data)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let majority = self.majority();
        let answers = join_all(self.inner.stores.iter().map(|s| s.list_raw(prefix))).await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut answered = 0;
        for names in answers.into_iter().flatten() {
            answered += 1;
            for name in names {
                *counts.entry(name).or_default() += 1;
            }
        }
        if answered < majority {
            return Err(self.short(answered));
        }
        let mut names: Vec<String> = counts
            .into_iter()
            .filter(|(_, count)| *count >= majority)
            .map(|(name, _)| name)
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// On every server at once; the count is what a majority agrees on (the
    /// `majority`-th largest of the servers' counts). The counters stay, so
    /// the next grant's token is higher, as for a release.
    async fn evict(&self, resource: &str) -> Result<usize> {
        let majority = self.majority();
        let answers = join_all(self.inner.stores.iter().map(|s| s.evict_raw(resource))).await;
        let mut ended = Vec::with_capacity(answers.len());
        let mut last_error = None;
        for answer in answers {
            match answer {
                Ok(count) => ended.push(count),
                Err(error) => last_error = Some(error),
            }
        }
        if ended.len() < majority {
            return Err(last_error.unwrap_or_else(|| self.short(ended.len())));
        }
        ended.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ended[majority - 1])
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<Wakeup>> {
        // A release publishes on every server where it ended the lease (a
        // majority), so wake-ups armed on a majority cannot all miss it.
        let majority = self.majority();
        let answers = gather(
            self.inner.stores.iter().map(|s| s.subscribe(resource)),
            |answers| {
                answers
                    .iter()
                    .filter(|a| matches!(a, Some(Ok(Some(_)))))
                    .count()
                    >= majority
            },
        )
        .await;
        let wakeups: Vec<Wakeup> = answers.into_iter().flatten().flatten().flatten().collect();
        if wakeups.is_empty() {
            return Err(Error::unavailable(
                BACKEND,
                "no server confirmed the subscription",
            ));
        }
        Ok(Some(Box::pin(async move {
            let _ = select_all(wakeups).await;
        })))
    }
}

/// Run one future per server concurrently and collect the answers by server
/// index, until `decided` says the answers so far settle the question (the
/// rest are dropped, `None`: a server that is down must not hold up a quorum
/// that already agrees, as Redlock asks) or all have answered.
async fn gather<T, F>(
    futures: impl IntoIterator<Item = F>,
    mut decided: impl FnMut(&[Option<T>]) -> bool,
) -> Vec<Option<T>>
where
    F: Future<Output = T>,
{
    let mut pending: FuturesUnordered<_> = futures
        .into_iter()
        .enumerate()
        .map(|(index, future)| async move { (index, future.await) })
        .collect();
    let mut answers: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    while let Some((index, answer)) = pending.next().await {
        answers[index] = Some(answer);
        if decided(&answers) {
            break;
        }
    }
    answers
}

impl QuorumStore {
    /// Holders present on a majority: the largest token seen for each, the
    /// earliest expiry, oldest first.
    async fn merged(&self, resource: &str) -> Result<Option<RawInfo>> {
        let majority = self.majority();
        let answers = join_all(self.inner.stores.iter().map(|s| s.info_raw(resource))).await;
        let mut answered = 0;
        let mut permits = 1;
        // Per lease key: the copies, and how often each token was seen.
        let mut seen: HashMap<Vec<u8>, (usize, HashMap<u64, usize>, RawHolder)> = HashMap::new();
        for info in answers.into_iter().flatten() {
            answered += 1;
            let Some(info) = info else { continue };
            permits = info.permits;
            for holder in info.holders {
                let entry = seen
                    .entry(holder.key.clone())
                    .or_insert_with(|| (0, HashMap::new(), holder.clone()));
                entry.0 += 1;
                *entry.1.entry(holder.token).or_default() += 1;
                entry.2.expires_ms = entry.2.expires_ms.min(holder.expires_ms);
            }
        }
        if answered < majority {
            return Err(self.short(answered));
        }
        // The token a grant was given is the one recorded on the majority that
        // confirmed it; a server the grant did not wait for keeps its own.
        let mut holders: Vec<_> = seen
            .into_values()
            .filter(|(count, _, _)| *count >= majority)
            .map(|(_, tokens, mut holder)| {
                if let Some((token, _)) = tokens.into_iter().max_by_key(|&(t, n)| (n, t)) {
                    holder.token = token;
                }
                holder
            })
            .collect();
        if holders.is_empty() {
            return Ok(None);
        }
        holders.sort_by_key(|h| h.token);
        Ok(Some(RawInfo { permits, holders }))
    }
}
