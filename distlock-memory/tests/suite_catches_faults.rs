//! The suite must fail a broken backend: each fault below is injected into a
//! wrapper around the memory store, and the cases that guard against it must
//! fail (panic) while a correct store passes them.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use distlock_core::conformance::{CASES, Fixture};
use distlock_core::{
    AcquireRequest, Acquired, Capabilities, Grant, Info, LeaseKey, Locker, RefreshRequest,
    Refreshed, Result, Store, StoreLocker,
};
use distlock_memory::MemoryStore;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Every grant carries token 1.
    ReusesTokens,
    /// The store keeps leases for half the TTL the client asked for.
    ExpiresEarly,
    /// Release ignores the key: anyone can release anyone's lease.
    ReleaseIgnoresKey,
    /// Grants everything: no exclusion at all.
    NoExclusion,
    /// Refresh says "renewed" without renewing.
    RefreshLies,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
}

impl Store for Faulty {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn acquire(&self, request: &AcquireRequest<'_>) -> Result<Acquired> {
        let mut request = *request;
        if self.fault == Fault::ExpiresEarly {
            request.ttl /= 2;
        }
        let answer = self.inner.acquire(&request).await?;
        Ok(match (self.fault, answer) {
            (Fault::ReusesTokens, Acquired::Granted(grant)) => {
                Acquired::Granted(Grant::new(1, grant.expires_at))
            }
            (Fault::NoExclusion, Acquired::Held { .. }) => Acquired::Granted(Grant::new(
                u64::MAX / 2,
                std::time::SystemTime::now() + request.ttl,
            )),
            (_, answer) => answer,
        })
    }

    async fn refresh(&self, leases: &[RefreshRequest<'_>]) -> Result<Vec<Refreshed>> {
        match self.fault {
            Fault::RefreshLies => Ok(vec![Refreshed::Renewed; leases.len()]),
            Fault::ExpiresEarly => {
                let halved: Vec<_> = leases
                    .iter()
                    .map(|l| RefreshRequest::new(l.resource, l.key, l.ttl / 2))
                    .collect();
                self.inner.refresh(&halved).await
            }
            _ => self.inner.refresh(leases).await,
        }
    }

    async fn release(&self, resource: &str, key: LeaseKey) -> Result<bool> {
        if self.fault == Fault::ReleaseIgnoresKey {
            return Ok(self.inner.evict(resource).await? > 0);
        }
        self.inner.release(resource, key).await
    }

    async fn evict(&self, resource: &str) -> Result<usize> {
        self.inner.evict(resource).await
    }

    async fn info(&self, resource: &str) -> Result<Option<Info>> {
        self.inner.info(resource).await
    }

    async fn read(&self, resource: &str) -> Result<Option<Bytes>> {
        self.inner.read(resource).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }

    async fn subscribe(&self, resource: &str) -> Result<Option<distlock_core::Wakeup>> {
        self.inner.subscribe(resource).await
    }
}

struct FaultyFixture {
    store: MemoryStore,
    fault: Option<Fault>,
}

#[async_trait]
impl Fixture for FaultyFixture {
    async fn locker(&self) -> Arc<dyn Locker> {
        match self.fault {
            Some(fault) => Arc::new(StoreLocker::new(Faulty {
                inner: self.store.clone(),
                fault,
            })),
            None => Arc::new(self.store.locker()),
        }
    }

    async fn expire(&self, resource: &str) {
        self.store.evict(resource).await.expect("evict");
    }
}

/// Run one case in its own task; `true` if it passed.
async fn passes(case_name: &str, fault: Option<Fault>) -> bool {
    let case = CASES
        .iter()
        .find(|c| c.name == case_name)
        .unwrap_or_else(|| panic!("no case named {case_name}"));
    let fixture = FaultyFixture {
        store: MemoryStore::new(),
        fault,
    };
    let run = case.run;
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::spawn(async move { run(&fixture).await }),
    )
    .await
    .expect("a case never ends: the suite's own bounds are broken");
    outcome.is_ok()
}

async fn check(fault: Fault, guarding_cases: &[&str]) {
    for case in guarding_cases {
        assert!(
            passes(case, None).await,
            "{case} fails on a correct store: the case is wrong"
        );
        assert!(
            !passes(case, Some(fault)).await,
            "{case} passed against a store with fault {fault:?}: the suite misses it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_tokens_are_caught() {
    check(
        Fault::ReusesTokens,
        &[
            "tokens_strictly_increase_across_grants",
            "tokens_increase_after_expiry",
            "contended_counter_has_no_lost_update",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_expiry_is_caught() {
    check(
        Fault::ExpiresEarly,
        &["lost_fires_before_anyone_else_is_granted"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_release_is_caught() {
    check(
        Fault::ReleaseIgnoresKey,
        &[
            "wrong_key_cannot_release_or_refresh",
            "stale_key_cannot_release",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_exclusion_is_caught() {
    check(
        Fault::NoExclusion,
        &[
            "try_lock_on_a_held_resource_returns_none",
            "permits_admit_that_many_holders",
            "lock_wait_times_out",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_refresh_is_caught() {
    check(
        Fault::RefreshLies,
        &[
            "stale_key_cannot_refresh",
            "lost_fires_when_the_lease_is_deleted",
        ],
    )
    .await;
}
