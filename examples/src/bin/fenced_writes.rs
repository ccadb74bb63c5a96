//! Fenced writes: why a lock alone is not enough, and what the fencing token
//! fixes. The storage remembers the highest token it has seen and rejects a
//! write carrying a lower one. Holder A takes the lock with a short TTL and
//! manual refresh, writes, then pauses past its TTL (a GC pause, a stalled VM);
//! holder B is granted the lock and writes; A wakes up and writes with its old
//! token. The run checks that A's late write was rejected and B's kept.
//!
//! `cargo run -p distlock-examples --bin fenced_writes` (memory), or
//! `DISTLOCK_URL=redis://127.0.0.1:6379 cargo run -p distlock-examples --features redis --bin fenced_writes`
//! (`--features postgres` with `DISTLOCK_URL=postgres://…` for PostgreSQL).

#![allow(clippy::expect_used)] // example programs stop with a message

use std::sync::Mutex;
use std::time::Duration;

use distlock::{LockOptions, Locker};
use distlock_examples::ensure;

/// The guarded storage: one value, and the highest token that wrote it.
#[derive(Default)]
struct Storage {
    value: String,
    highest_token: u64,
}

impl Storage {
    /// Accept the write unless a holder with a higher token already wrote.
    fn write(&mut self, token: u64, value: &str) -> Result<(), String> {
        if token < self.highest_token {
            return Err(format!(
                "token {token} < {} already seen",
                self.highest_token
            ));
        }
        self.highest_token = token;
        self.value = value.to_owned();
        Ok(())
    }
}

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let resource = format!("examples/fenced/{}", std::process::id());
    let storage = Mutex::new(Storage::default());
    let write = |who: &str, token: u64, value: &str| {
        let outcome = storage.lock().expect("storage").write(token, value);
        match &outcome {
            Ok(()) => println!("storage: accepted {who}'s write {value:?} (token {token})"),
            Err(why) => println!("storage: REJECTED {who}'s write {value:?}: {why}"),
        }
        outcome
    };

    let (a, b) = (
        distlock_examples::connect().await?,
        distlock_examples::connect().await?,
    );
    let ttl = a.capabilities().min_ttl.max(Duration::from_millis(500));
    let options = |who: &str| {
        LockOptions::new()
            .with_ttl(ttl)
            .with_owner(who.to_owned())
            .with_wait_timeout(Duration::from_secs(30))
    };

    // A refreshes by hand (`lock.refresh()`), so nothing renews its lease while it
    // is paused; B's lease is renewed in the background.
    let lock_a = a.lock(&resource, &options("A").manual_refresh()).await?;
    println!(
        "A: holding the lock (token {}, TTL {ttl:?})",
        lock_a.token()
    );
    ensure(
        "fenced_writes",
        write("A", lock_a.token(), "from A, 1").is_ok(),
        "A's first write refused",
    );

    println!("A: pausing for {:?}, longer than its TTL", ttl * 3);
    let pause = tokio::time::sleep(ttl * 3);
    let holder_b = async {
        let lock_b = b.lock(&resource, &options("B")).await?;
        println!(
            "B: granted the lock after A's lease ran out (token {})",
            lock_b.token()
        );
        let ok = write("B", lock_b.token(), "from B").is_ok();
        ensure("fenced_writes", ok, "B's write refused");
        Ok::<_, distlock::Error>(lock_b)
    };
    let ((), lock_b) = tokio::join!(pause, holder_b);
    let lock_b = lock_b?;

    // A wakes up still believing it holds the lock and writes without checking.
    println!(
        "A: woke up (lost signal fired: {}), writes anyway",
        lock_a.is_lost()
    );
    let late = write("A", lock_a.token(), "from A, 2 (late)");
    ensure(
        "fenced_writes",
        late.is_err(),
        "A's late write was accepted: the storage is not fenced",
    );
    let kept = storage.lock().expect("storage").value.clone();
    ensure(
        "fenced_writes",
        kept == "from B",
        format!("storage holds {kept:?}, not B's write"),
    );

    let released = lock_a.release().await;
    println!(
        "A: release says {}",
        match &released {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    );
    lock_b.release().await?;
    println!(
        "fenced_writes: ok (the paused holder's late write was rejected by its token; B's write stands)"
    );
    Ok(())
}
