//! Job locks: one run of a job at a time across the instances of a component,
//! each lock bounded by a max duration, and an operator switch to disable a
//! job. Instance `pod-1` locks the job, `pod-2` is refused while it runs; a
//! disabled job refuses everyone until enabled; a run that overruns its max
//! duration no longer blocks the others. Tokens only grow.
//!
//! Job locks live in the SQL backend; this runs on a temporary SQLite file:
//! `cargo run -p distlock-examples --features sqlite --bin job_locks`, or on
//! PostgreSQL with
//! `DISTLOCK_URL=postgres://… cargo run -p distlock-examples --features sqlite,postgres --bin job_locks`.

use std::time::Duration;

use distlock::sql::{JobError, JobLease, JobLocks, SqlStore};
use distlock_examples::ensure;

const LONG: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let url = distlock_examples::url();
    let sql = ["postgres", "mysql", "mariadb", "sqlite", "cockroach"]
        .iter()
        .any(|s| url.starts_with(s));
    let file = std::env::temp_dir().join(format!("distlock-job-locks-{}.db", std::process::id()));
    let url = if sql {
        url
    } else {
        format!("sqlite://{}", file.display())
    };
    let store = SqlStore::connect(&url).await?;
    store.migrate().await?; // create the tables once (idempotent)
    let jobs = JobLocks::new(store);
    // A component name of its own, so that reruns on a shared database start clean.
    let billing = format!("billing-{}", std::process::id());
    let billing = billing.as_str();
    println!(
        "component {billing}, job `invoices`, on {}",
        if sql {
            "DISTLOCK_URL"
        } else {
            "a temporary SQLite file"
        }
    );

    let first = jobs
        .lock(billing, "pod-1", "invoices", "run-1", LONG)
        .await?;
    println!(
        "pod-1: locked invoices for run-1 (token {}, at most {LONG:?})",
        first.token
    );

    let refused = jobs.lock(billing, "pod-2", "invoices", "run-2", LONG).await;
    report("pod-2", &refused);
    ensure(
        "job_locks",
        matches!(refused, Err(JobError::Unauthorised { .. })),
        "pod-2 was not refused",
    );

    jobs.unlock(billing, "pod-1", "invoices", "run-1").await?;
    println!("pod-1: run-1 finished, unlocked");

    jobs.disable(billing, "invoices").await?;
    println!("operator: disabled invoices");
    let disabled = jobs.lock(billing, "pod-2", "invoices", "run-2", LONG).await;
    report("pod-2", &disabled);
    ensure(
        "job_locks",
        matches!(disabled, Err(JobError::Disabled { .. })),
        "a disabled job was locked",
    );

    jobs.enable(billing, "invoices").await?;
    println!("operator: enabled invoices");
    let short = Duration::from_millis(300);
    let second = jobs
        .lock(billing, "pod-2", "invoices", "run-2", short)
        .await?;
    println!(
        "pod-2: locked invoices for run-2 (token {}, at most {short:?})",
        second.token
    );
    ensure(
        "job_locks",
        second.token > first.token,
        "the token did not grow",
    );

    tokio::time::sleep(short * 3).await;
    println!("pod-2: run-2 overran its max duration (crashed, hung)");
    let third = jobs.lock(billing, "pod-3", "invoices", "run-3", LONG).await;
    report("pod-3", &third);
    let third = third?;
    ensure(
        "job_locks",
        third.token > second.token,
        "the token did not grow",
    );
    let status = jobs.status(billing, "invoices").await?;
    let holder = status.holder.map(|h| h.component_id);
    ensure(
        "job_locks",
        holder.as_deref() == Some("pod-3"),
        format!("holder is {holder:?}, not pod-3"),
    );
    jobs.unlock(billing, "pod-3", "invoices", "run-3").await?;

    if !sql {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
    println!(
        "job_locks: ok (one run at a time, disabled job refused, overrun lock taken over, tokens {} < {} < {})",
        first.token, second.token, third.token
    );
    Ok(())
}

/// Say what a lock attempt got.
fn report(instance: &str, outcome: &Result<JobLease, JobError>) {
    match outcome {
        Ok(lease) => println!("{instance}: locked invoices (token {})", lease.token),
        Err(JobError::Unauthorised {
            holder: Some(h), ..
        }) => println!(
            "{instance}: refused: instance `{}` holds it for run `{}`",
            h.component_id, h.job_id
        ),
        Err(e) => println!("{instance}: refused: {e}"),
    }
}
