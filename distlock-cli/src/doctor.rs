//! `distlock doctor`: connect, measure round trips, try a lock/release cycle,
//! and say what to fix.

use std::time::{Duration, Instant};

use distlock::{Error, LockOptions, Locker};

use crate::exit::{self, Failure};
use crate::output::{Output, ms};
use crate::store;

fn hint(error: &Error) -> String {
    match error {
        Error::InvalidUrl { .. } => format!(
            "fix the URL; this build knows {}:// (others need a build with `--features full`)",
            distlock::registry().schemes().join("://, ")
        ),
        Error::Unavailable { .. } | Error::OutcomeUnknown { .. } => "start the store or fix \
            host, port, credentials or TLS settings in the URL; check firewalls"
            .to_owned(),
        Error::Store { .. } => "the store answered with an error: check the user's \
            permissions and that the lock tables/keys exist (SQL: leave ?migrate on or run \
            the migration once)"
            .to_owned(),
        Error::InvalidArgument { .. } => {
            "a limit of this backend was hit; see the message".to_owned()
        }
        _ => "see the message".to_owned(),
    }
}

pub(crate) async fn run(url: Option<&str>, out: &Output) -> Result<u8, Failure> {
    let url = store::resolve(url)?;
    let ok = out.paint("32", "ok");
    let fail = out.paint("1;31", "FAIL");
    println!("store     {}", distlock::redact_url(&url));

    let started = Instant::now();
    let locker = match tokio::time::timeout(Duration::from_secs(15), distlock::connect(&url)).await
    {
        Ok(Ok(locker)) => locker,
        Ok(Err(error)) => {
            println!("connect   {fail}  {}", exit::one_line(&error));
            println!("fix       {}", hint(&error));
            return Ok(exit::code_of(&error));
        }
        Err(_) => {
            println!("connect   {fail}  no answer within 15 s");
            println!("fix       is the store running and reachable from here?");
            return Ok(exit::UNAVAILABLE);
        }
    };
    println!("connect   {ok}  {}", ms(started.elapsed()));
    let caps = locker.capabilities();
    println!(
        "backend   {} (TTL {:?}..{:?}, up to {} permits, {} wake-up{})",
        caps.backend,
        caps.min_ttl,
        caps.max_ttl,
        caps.max_permits,
        if caps.push_wakeup { "push" } else { "polling" },
        if caps.batch_refresh {
            ", batched refresh"
        } else {
            ""
        }
    );

    let probe = format!("distlock-doctor/{}", std::process::id());
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        if let Err(error) = locker.info(&probe).await {
            println!("info      {fail}  {}", exit::one_line(&error));
            println!("fix       {}", hint(&error));
            return Ok(exit::code_of(&error));
        }
        times.push(started.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / 5;
    println!(
        "rtt       {ok}  min {}  mean {}  max {} (5 info calls)",
        ms(times[0]),
        ms(mean),
        ms(times[4])
    );
    if mean > Duration::from_millis(100) {
        println!("note      round trips above 100 ms: keep TTLs well above that (default 30 s)");
    }

    match cycle(&*locker, &probe).await {
        Ok(Cycle {
            took,
            token,
            offset,
        }) => {
            println!(
                "lock      {ok}  lock, info, release in {} (token {token})",
                ms(took)
            );
            if let Some((offset_ms, within_ms)) = offset {
                let margin = locker.capabilities().clock_margin.as_secs_f64() * 1000.0;
                let fine = offset_ms.abs() <= margin.max(within_ms) + within_ms;
                println!(
                    "clock     {}  the store's clock is {offset_ms:+.1} ms from this machine's (± {within_ms:.1} ms; allowed {margin:.0} ms)",
                    if fine { ok } else { fail }
                );
                if !fine {
                    println!("fix       synchronise this machine's clock with the store's (NTP)");
                }
            }
        }
        Err(error) => {
            println!("lock      {fail}  {}", exit::one_line(&error));
            println!("fix       {}", hint(&error));
            return Ok(exit::code_of(&error));
        }
    }
    if !out.quiet() {
        println!("all good");
    }
    Ok(exit::OK)
}

struct Cycle {
    took: Duration,
    token: u64,
    /// The store's clock against this machine's, from the lock time the
    /// store recorded: (offset, uncertainty) in milliseconds.
    offset: Option<(f64, f64)>,
}

async fn cycle(locker: &dyn Locker, probe: &str) -> Result<Cycle, Error> {
    let started = Instant::now();
    let before = std::time::SystemTime::now();
    let options = LockOptions::new()
        .with_ttl(Duration::from_secs(10).max(locker.capabilities().min_ttl))
        .with_wait_timeout(Duration::ZERO)
        .with_data("distlock doctor");
    let lock = locker.lock(probe, &options).await?;
    let after = std::time::SystemTime::now();
    let token = lock.token();
    let info = locker.info(probe).await?;
    let offset = info
        .as_ref()
        .and_then(|i| i.lock_time())
        .and_then(|granted| {
            let half = after.duration_since(before).ok()? / 2;
            let middle = before + half;
            let offset = match granted.duration_since(middle) {
                Ok(ahead) => ahead.as_secs_f64() * 1000.0,
                Err(behind) => -behind.duration().as_secs_f64() * 1000.0,
            };
            Some((offset, half.as_secs_f64() * 1000.0))
        });
    if info.and_then(|i| i.token()) != Some(token) {
        return Err(Error::store(
            locker.capabilities().backend,
            "info does not show the lock just taken",
        ));
    }
    lock.release().await?;
    Ok(Cycle {
        took: started.elapsed(),
        token,
        offset,
    })
}
