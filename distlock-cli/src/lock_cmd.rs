//! `distlock lock NAME -- COMMAND…`: hold a lock while a command runs.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use distlock::{Error, Lock, LockOptions, Locker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};

use crate::cli::LockArgs;
use crate::exit::{self, Failure};
use crate::output::{Output, short, since};
use crate::store;

/// SIGINT, SIGTERM and SIGHUP, caught while distlock waits or the command runs.
struct Signals {
    int: SignalStream,
    term: SignalStream,
    hup: SignalStream,
}

impl Signals {
    fn new() -> Result<Self, Failure> {
        let listen = |kind| {
            signal(kind).map_err(|e| {
                Failure::new(exit::SOFTWARE, format!("cannot listen for signals: {e}"))
            })
        };
        Ok(Signals {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    /// The next signal that arrives.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }
}

/// The shell's exit code for a process ended by `signal`.
fn signal_code(signal: Signal) -> u8 {
    128u8.saturating_add(u8::try_from(signal as i32).unwrap_or(0))
}

pub(crate) async fn run(url: Option<&str>, args: LockArgs, out: &Output) -> Result<u8, Failure> {
    let mut signals = Signals::new()?;
    let url = store::resolve(url)?;
    let locker = tokio::select! {
        connected = store::connect(&url) => connected?.0,
        signal = signals.next() => return Ok(signal_code(signal)),
    };

    let mut options = LockOptions::new()
        .with_ttl(args.ttl)
        .with_permits(args.permits);
    if let Some(data) = &args.data {
        options = options.with_data(data.clone().into_bytes());
    }
    if let Some(owner) = &args.owner {
        options = options.with_owner(owner.clone());
    }
    let wait = if args.no_wait {
        Some(Duration::ZERO)
    } else {
        args.wait
    };

    let lock = tokio::select! {
        lock = acquire(&*locker, &args.name, options, wait, out) => lock?,
        signal = signals.next() => {
            // Dropping the acquire leaves no lease behind: a request already
            // sent is released in the background; give that a moment to finish.
            out.note(&format!("interrupted while waiting for `{}`", args.name));
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(signal_code(signal));
        }
    };
    hold(lock, &url, &args, &mut signals, out).await
}

/// One attempt; then, if the lock is held and waiting is allowed, wait.
async fn acquire(
    locker: &dyn Locker,
    name: &str,
    options: LockOptions,
    wait: Option<Duration>,
    out: &Output,
) -> Result<Lock, Failure> {
    let started = Instant::now();
    if let Some(lock) = locker.try_lock(name, &options).await? {
        return Ok(lock);
    }
    let holder = match locker.info(name).await {
        Ok(Some(info)) => format!(
            " (held by {} for {})",
            info.owner().unwrap_or("?"),
            info.lock_time()
                .map(|t| short(since(t)))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    if wait == Some(Duration::ZERO) {
        return Err(Failure::new(
            exit::HELD,
            format!("`{name}` is locked{holder}; not waiting (--no-wait)"),
        ));
    }
    if out.terminal {
        out.note(&format!("waiting for `{name}`{holder}…"));
    }
    let options = match wait {
        Some(wait) => options.with_wait_timeout(wait.saturating_sub(started.elapsed())),
        None => options.wait_forever(),
    };
    match locker.lock(name, &options).await {
        Ok(lock) => Ok(lock),
        Err(Error::WaitTimeout { .. }) => Err(Failure::new(
            exit::HELD,
            format!(
                "timed out after {} waiting for `{name}`{holder}",
                short(started.elapsed())
            ),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Run the command while holding `lock`; release it after.
async fn hold(
    lock: Lock,
    url: &str,
    args: &LockArgs,
    signals: &mut Signals,
    out: &Output,
) -> Result<u8, Failure> {
    let (program, rest) = match args.command.split_first() {
        Some(split) => split,
        None => {
            return Err(Failure::usage(
                "no command given: distlock lock NAME -- COMMAND…",
            ));
        }
    };
    let spawned = tokio::process::Command::new(program)
        .args(rest)
        .env("DISTLOCK_RESOURCE", lock.resource())
        .env("DISTLOCK_TOKEN", lock.token().to_string())
        .env("DISTLOCK_LEASE_KEY", lock.key().to_hex())
        .env("DISTLOCK_URL", url)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let code = match error.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND_CMD,
                _ => exit::CANNOT_EXECUTE,
            };
            release(lock, out).await;
            return Err(Failure::new(
                code,
                format!("cannot run `{}`: {error}", program.to_string_lossy()),
            ));
        }
    };
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let send = |signal: Signal| {
        if let Some(pid) = pid {
            // The child may have exited already: nothing to do then.
            let _ = kill(pid, signal);
        }
    };

    let lost = lock.lost();
    tokio::pin!(lost);
    let mut lost_seen = false;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status: std::io::Result<ExitStatus> = loop {
        let kill_timer = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status,
            () = &mut lost, if !lost_seen => {
                lost_seen = true;
                if lock.is_lost() {
                    out.error(&format!(
                        "lock on `{}` lost; stopping the command (SIGTERM, SIGKILL after {})",
                        lock.resource(),
                        short(args.kill_after)
                    ));
                    send(Signal::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + args.kill_after);
                }
            }
            () = kill_timer => {
                out.error("the command outlived --kill-after; sending SIGKILL");
                send(Signal::SIGKILL);
                kill_at = None;
            }
            signal = signals.next() => {
                out.note(&format!("{signal}: passing it to the command; the lock is released when it ends"));
                send(signal);
            }
        }
    };
    let code = match &status {
        Ok(status) => status_code(*status),
        Err(error) => {
            out.error(&format!("cannot wait for the command: {error}"));
            exit::SOFTWARE
        }
    };
    if lock.is_lost() {
        if !lost_seen {
            out.error(&format!(
                "lock on `{}` was lost while the command ran",
                lock.resource()
            ));
        }
        return Ok(exit::LOST);
    }
    match lock.release().await {
        Ok(()) => Ok(code),
        Err(Error::NotHeld { resource }) => {
            out.error(&format!(
                "the lease on `{resource}` had expired or was released by someone else \
                 before the command ended: its work may have overlapped another holder"
            ));
            Ok(exit::LOST)
        }
        Err(error) => {
            out.warn(&format!(
                "release not confirmed ({}); the lease expires after its TTL",
                exit::one_line(&error)
            ));
            Ok(code)
        }
    }
}

fn status_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(exit::SOFTWARE);
    }
    match status.signal() {
        Some(signal) => 128u8.saturating_add(u8::try_from(signal).unwrap_or(0)),
        None => exit::SOFTWARE,
    }
}

async fn release(lock: Lock, out: &Output) {
    if let Err(error) = lock.release().await {
        out.warn(&format!("release failed: {}", exit::one_line(&error)));
    }
}
