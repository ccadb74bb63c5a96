//! Job locks: "one execution of a job at a time across the
//! instances of a component", with an operator switch to disable a job.
//!
//! A job is named by its component (`component`, e.g. `"billing"`) and its name
//! (`job`, e.g. `"nightly-invoices"`). An instance of the component (its
//! `component_id`) locks it for one run (`job_id`) for at most `max_duration`:
//!
//! - [`JobLocks::lock`] succeeds when the job is free, when its last lock ran
//!   past its `max_duration`, or when the same `(component_id, job_id)` locks
//!   again (which extends it); it fails with [`JobError::Disabled`] when the job
//!   is disabled and [`JobError::Unauthorised`] when another instance or run
//!   owns it. Each successful lock carries a fencing token that only grows.
//! - [`JobLocks::unlock`] frees the job if the caller owns it; it is allowed
//!   while the job is disabled; unlocking a job nobody holds is a no-op; a job
//!   another owner holds is [`JobError::Unauthorised`].
//! - [`JobLocks::enable`] / [`JobLocks::disable`] flip the job's switch (the
//!   current owner keeps its lock until it unlocks or its time runs out).
//!
//! The layer is generic: [`JobLocks`] runs over any [`JobStore`] (four calls).
//! [`SqlStore`] implements it with a `NAME_jobs` table and the
//! database clock; another backend implements the same trait.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use distlock_core::Error;

pub use crate::rows::JobKey;
use crate::rows::JobState;
use crate::store::SqlStore;

/// Longest component, job or id name, in bytes.
pub const MAX_JOB_NAME_LEN: usize = 255;
/// Longest `max_duration` of a job lock.
pub const MAX_JOB_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A granted job lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobLease {
    /// Fencing token: greater than every earlier lock of this job.
    pub token: u64,
    /// When the lock ends unless locked again (database clock).
    pub expires_at: SystemTime,
}

/// Who holds a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobHolder {
    /// The owning instance.
    pub component_id: String,
    /// The owning run.
    pub job_id: String,
    /// When its lock ends (database clock).
    pub expires_at: SystemTime,
}

/// A job's switch and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// Locks are accepted (jobs never seen are enabled).
    pub enabled: bool,
    /// The current owner, if its lock has not run out.
    pub holder: Option<JobHolder>,
}

/// Why a job lock call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job is disabled: no lock is granted until it is enabled again.
    #[error("job `{job}` of `{component}` is disabled; enable it before locking")]
    Disabled {
        /// The component.
        component: String,
        /// The job.
        job: String,
    },
    /// Another instance (or another run) owns the job.
    #[error("job `{job}` of `{component}` is owned by {}", holder_text(.holder))]
    Unauthorised {
        /// The component.
        component: String,
        /// The job.
        job: String,
        /// The owner, when known.
        holder: Option<JobHolder>,
    },
    /// Bad input or a store failure (see [`distlock_core::Error`]).
    #[error(transparent)]
    Store(#[from] Error),
}

fn holder_text(holder: &Option<JobHolder>) -> String {
    match holder {
        Some(h) => format!(
            "instance `{}` (run `{}`) until {:?}",
            h.component_id, h.job_id, h.expires_at
        ),
        None => "another instance".to_owned(),
    }
}

/// What a backend does for job locks: one call per operation, judged by the
/// store's clock.
///
/// # Contract
/// `lock_job` grants iff the job is enabled and free, expired, or held by the
/// same `(component_id, job_id)`; `unlock_job` frees only the caller's lock and
/// works while disabled. Arguments arrive validated by [`JobLocks`].
#[async_trait]
pub trait JobStore: fmt::Debug + Send + Sync {
    /// Lock a job for a run.
    async fn lock_job(
        &self,
        job: &JobKey<'_>,
        max_duration: Duration,
    ) -> Result<JobLease, JobError>;
    /// Unlock the caller's lock on a job.
    async fn unlock_job(&self, job: &JobKey<'_>) -> Result<(), JobError>;
    /// Enable or disable a job.
    async fn set_job_enabled(
        &self,
        component: &str,
        job: &str,
        enabled: bool,
    ) -> Result<(), JobError>;
    /// A job's switch and owner.
    async fn job_status(&self, component: &str, job: &str) -> Result<JobStatus, JobError>;
}

/// The job lock API over any [`JobStore`]: validates names and
/// durations, then makes one store call.
///
/// ```no_run
/// # async fn demo(store: distlock_sql::SqlStore) -> Result<(), distlock_sql::JobError> {
/// use std::time::Duration;
/// use distlock_sql::{JobError, JobLocks};
///
/// let jobs = JobLocks::new(store);
/// match jobs.lock("billing", "pod-7", "invoices", "run-42", Duration::from_secs(600)).await {
///     Ok(lease) => {
///         // run the job, presenting lease.token to what it writes
///         jobs.unlock("billing", "pod-7", "invoices", "run-42").await?;
///     }
///     Err(JobError::Disabled { .. } | JobError::Unauthorised { .. }) => {} // not ours to run
///     Err(other) => return Err(other),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobLocks<S> {
    store: S,
}

impl<S: JobStore> JobLocks<S> {
    /// Job locks over `store`.
    pub fn new(store: S) -> Self {
        JobLocks { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Lock `job` of `component` for instance `component_id`, run `job_id`, for
    /// at most `max_duration`.
    ///
    /// # Errors
    /// [`JobError::Disabled`], [`JobError::Unauthorised`], or
    /// [`JobError::Store`] (invalid names or duration, store unavailable).
    ///
    /// # Cancel safety
    /// If dropped after sending, the lock may have been taken; it ends after
    /// `max_duration`, or the same ids may lock or unlock it again.
    pub async fn lock(
        &self,
        component: &str,
        component_id: &str,
        job: &str,
        job_id: &str,
        max_duration: Duration,
    ) -> Result<JobLease, JobError> {
        let key = JobKey::new(component, component_id, job, job_id);
        validate_key(&key)?;
        if max_duration.is_zero() || max_duration > MAX_JOB_DURATION {
            return Err(Error::invalid(
                "max duration",
                format!("{max_duration:?} is outside (0, {MAX_JOB_DURATION:?}]"),
            )
            .into());
        }
        self.store.lock_job(&key, max_duration).await
    }

    /// Unlock a job this instance and run hold (allowed while disabled).
    ///
    /// # Errors
    /// [`JobError::Unauthorised`] if someone else holds it; [`JobError::Store`].
    pub async fn unlock(
        &self,
        component: &str,
        component_id: &str,
        job: &str,
        job_id: &str,
    ) -> Result<(), JobError> {
        let key = JobKey::new(component, component_id, job, job_id);
        validate_key(&key)?;
        self.store.unlock_job(&key).await
    }

    /// Accept locks on the job again.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn enable(&self, component: &str, job: &str) -> Result<(), JobError> {
        validate_name("component", component)?;
        validate_name("job", job)?;
        self.store.set_job_enabled(component, job, true).await
    }

    /// Refuse locks on the job ([`JobError::Disabled`]) until enabled.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn disable(&self, component: &str, job: &str) -> Result<(), JobError> {
        validate_name("component", component)?;
        validate_name("job", job)?;
        self.store.set_job_enabled(component, job, false).await
    }

    /// The job's switch and owner.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn status(&self, component: &str, job: &str) -> Result<JobStatus, JobError> {
        validate_name("component", component)?;
        validate_name("job", job)?;
        self.store.job_status(component, job).await
    }
}

fn validate_key(key: &JobKey<'_>) -> Result<(), Error> {
    validate_name("component", key.component)?;
    validate_name("component id", key.component_id)?;
    validate_name("job", key.job)?;
    validate_name("job id", key.job_id)
}

fn validate_name(what: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_JOB_NAME_LEN {
        return Err(Error::invalid(
            what,
            format!("must be 1..={MAX_JOB_NAME_LEN} bytes, got {}", name.len()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(what, "contains a control character"));
    }
    Ok(())
}

// ---- the SQL store's side -------------------------------------------------

fn holder_of(state: &JobState) -> Option<JobHolder> {
    state
        .holder
        .as_ref()
        .map(|(component_id, job_id, expires_at)| JobHolder {
            component_id: component_id.clone(),
            job_id: job_id.clone(),
            expires_at: *expires_at,
        })
}

/// Races a single statement can lose (PostgreSQL reads the reason from its
/// snapshot): retry this often before answering "unauthorised".
const JOB_RACE_RETRIES: usize = 3;

#[async_trait]
impl JobStore for SqlStore {
    async fn lock_job(
        &self,
        job: &JobKey<'_>,
        max_duration: Duration,
    ) -> Result<JobLease, JobError> {
        let mut last = None;
        for _ in 0..JOB_RACE_RETRIES {
            let outcome = self
                .inner
                .backend
                .job_lock(job, max_duration)
                .await
                .map_err(|e| self.at_endpoint(e))?;
            if let (Some(token), Some(expires_at)) = (outcome.token, outcome.expires_at) {
                return Ok(JobLease { token, expires_at });
            }
            match &outcome.state {
                Some(state) if !state.enabled => {
                    return Err(JobError::Disabled {
                        component: job.component.to_owned(),
                        job: job.job.to_owned(),
                    });
                }
                Some(state) => {
                    if let Some(holder) = holder_of(state)
                        && (holder.component_id != job.component_id || holder.job_id != job.job_id)
                    {
                        return Err(JobError::Unauthorised {
                            component: job.component.to_owned(),
                            job: job.job.to_owned(),
                            holder: Some(holder),
                        });
                    }
                }
                None => {}
            }
            // The reason came from a snapshot older than the refusal: look again.
            last = outcome.state;
        }
        Err(JobError::Unauthorised {
            component: job.component.to_owned(),
            job: job.job.to_owned(),
            holder: last.as_ref().and_then(holder_of),
        })
    }

    async fn unlock_job(&self, job: &JobKey<'_>) -> Result<(), JobError> {
        let outcome = self
            .inner
            .backend
            .job_unlock(job)
            .await
            .map_err(|e| self.at_endpoint(e))?;
        if outcome.token.is_some() {
            return Ok(());
        }
        match outcome.state.as_ref().and_then(holder_of) {
            Some(holder) => Err(JobError::Unauthorised {
                component: job.component.to_owned(),
                job: job.job.to_owned(),
                holder: Some(holder),
            }),
            None => Ok(()),
        }
    }

    async fn set_job_enabled(
        &self,
        component: &str,
        job: &str,
        enabled: bool,
    ) -> Result<(), JobError> {
        self.inner
            .backend
            .job_enable(component, job, enabled)
            .await?;
        Ok(())
    }

    async fn job_status(&self, component: &str, job: &str) -> Result<JobStatus, JobError> {
        let outcome = self
            .inner
            .backend
            .job_status(component, job)
            .await
            .map_err(|e| self.at_endpoint(e))?;
        Ok(match outcome.state {
            Some(state) => JobStatus {
                enabled: state.enabled,
                holder: holder_of(&state),
            },
            None => JobStatus {
                enabled: true,
                holder: None,
            },
        })
    }
}
