//! Take a lock, use its fencing token, release it.
//!
//! `cargo run -p distlock-examples --bin quickstart` (memory), or with
//! `DISTLOCK_URL=redis://…` and the matching feature for another backend.

#![allow(clippy::expect_used)] // example programs stop with a message

use std::time::Duration;

use distlock::{Handler, Infoer, LockOptions, Locker};

#[tokio::main]
async fn main() -> distlock_examples::Outcome {
    let locker = distlock_examples::connect().await?;
    println!("backend: {}", locker.capabilities().backend);

    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(10))
        .with_wait_timeout(Duration::from_secs(5))
        .with_data("nightly report, run 7");
    let lock = locker.lock("reports/nightly", &options).await?;
    println!(
        "holding `{}` with fencing token {} (send it with every write you guard)",
        lock.resource(),
        lock.token()
    );

    let info = locker.info("reports/nightly").await?.expect("we hold it");
    println!("info: owner {:?}, token {:?}", info.owner(), info.token());

    // A second attempt finds it held: an ordinary answer, not an error.
    let second = locker.try_lock("reports/nightly", &options).await?;
    println!(
        "second try_lock while held: {}",
        if second.is_some() {
            "granted?!"
        } else {
            "held"
        }
    );

    let token = lock.token();
    lock.release().await?;
    let next = locker
        .try_lock("reports/nightly", &options)
        .await?
        .expect("free again");
    println!("released; next grant has token {} > {token}", next.token());
    next.release().await?;
    println!("quickstart: ok");
    Ok(())
}
