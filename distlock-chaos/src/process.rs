//! Process runs (networked backends): every holder is a child process of its
//! own, talking to the store through its own loopback proxy. Faults are real:
//! SIGSTOP/SIGCONT, SIGKILL, a stop-the-world stall between the "still
//! holding?" check and the write, partitions, delays, resets and lost answers
//! at the proxy, and store restarts through `scripts/services restart`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock::{LockOptions, Locker, registry};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc};

use crate::fence::Fence;
use crate::history::{Event, Fault, History, Kind, instant_ns, now_ns};
use crate::proxy::{Mode, Proxy};
use crate::{RESOURCE, RunConfig};

/// A networked backend to run against.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Backend name in the summary line.
    pub(crate) backend: &'static str,
    /// The store's URL (direct, not proxied).
    pub(crate) url: String,
    /// The `scripts/services` name, for restarts.
    pub(crate) service: &'static str,
    /// Whether the store keeps its data across a restart (restarts are only
    /// injected where they do; a store that forgets its counters cannot keep
    /// fencing tokens increasing, which the backend's docs must say).
    pub(crate) durable: bool,
}

/// The loopback `host:port` a URL points at (the first one).
fn upstream_of(url: &str) -> Option<SocketAddr> {
    let start = url.find("127.0.0.1:")?;
    let rest = &url[start..];
    let end = rest
        .char_indices()
        .skip("127.0.0.1:".len())
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

fn proxied(url: &str, upstream: SocketAddr, proxy: SocketAddr) -> String {
    url.replacen(&upstream.to_string(), &proxy.to_string(), 1)
}

struct Holder {
    id: u32,
    child: Child,
    stdin: ChildStdin,
    proxy: Proxy,
}

async fn spawn_holder(
    id: u32,
    target: &Target,
    upstream: SocketAddr,
    fence: SocketAddr,
    ttl: Duration,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<Holder> {
    let proxy = Proxy::start(upstream).await?;
    let url = proxied(&target.url, upstream, proxy.local());
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "holder",
            "--url",
            &url,
            "--fence",
            &fence.to_string(),
            "--id",
            &id.to_string(),
            "--ttl-ms",
            &ttl.as_millis().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(event) = Event::parse(&line) {
                let _ = events.send(event);
            }
        }
    });
    Ok(Holder {
        id,
        child,
        stdin,
        proxy,
    })
}

/// The fenced resource as a line service: `W holder token` → `OK` / `NO`.
async fn serve_fence(fence: Fence) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let fence = fence.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut parts = line.split_whitespace().skip(1);
                    let holder = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    let token = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    let answer: &[u8] = if fence.write(holder, token) {
                        b"OK\n"
                    } else {
                        b"NO\n"
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn signal(pid: Option<u32>, signal: &str) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    }
}

/// Run `config` against `target`.
pub(crate) async fn run(
    config: &RunConfig,
    target: &Target,
    fenced: bool,
) -> Result<History, String> {
    let upstream = upstream_of(&target.url)
        .ok_or_else(|| format!("{}: URL has no 127.0.0.1:PORT to proxy", target.backend))?;
    let direct = registry()
        .connect(&target.url)
        .await
        .map_err(|e| format!("{}: cannot connect: {e}", target.backend))?;
    let ttl = config.ttl.max(direct.capabilities().min_ttl);
    let fence = Fence::new(fenced);
    let fence_addr = serve_fence(fence.clone())
        .await
        .map_err(|e| e.to_string())?;
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    // Who holds what now, from the events (to aim faults at the holder).
    let holding: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
    let mut history = History::default();

    let mut holders = Vec::new();
    for id in 0..config.holders {
        holders.push(
            spawn_holder(id, target, upstream, fence_addr, ttl, events_tx.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut next_id = config.holders;
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let started = Instant::now();
    let mut events = Vec::new();
    let mut drain = |events: &mut Vec<Event>, holding: &mut HashMap<u32, u64>| {
        while let Ok(event) = events_rx.try_recv() {
            match event.kind {
                Kind::Grant => {
                    holding.insert(event.holder, event.token);
                }
                _ => {
                    holding.remove(&event.holder);
                }
            }
            events.push(event);
        }
    };

    while started.elapsed() < config.duration {
        tokio::time::sleep(ttl * 2).await;
        let mut held = holding.lock().await;
        drain(&mut events, &mut held);
        let mut kinds = vec![
            "pause",
            "kill",
            "gc_pause_before_write",
            "partition",
            "delay",
            "reset",
            "unknown_outcome",
        ];
        if target.durable {
            kinds.push("store_restart");
        }
        let kind = kinds[rng.usize(..kinds.len())];
        let index = holders
            .iter()
            .position(|h| held.contains_key(&h.id))
            .unwrap_or_else(|| rng.usize(..holders.len()));
        let token = held.get(&holders[index].id).copied().unwrap_or(0);
        drop(held);
        let at = now_ns();
        let h = &mut holders[index];
        match kind {
            "pause" => {
                signal(h.child.id(), "-STOP");
                tokio::time::sleep(ttl * 3 / 2).await;
                signal(h.child.id(), "-CONT");
            }
            "kill" => {
                let mut dead = holders.swap_remove(index);
                let _ = dead.child.start_kill();
                let _ = dead.child.wait().await;
                // Stamped once it is dead, not when the fault was chosen: a
                // grant it saw in between must end here, not stay open.
                events.push(Event {
                    kind: Kind::Kill,
                    holder: dead.id,
                    token,
                    at: now_ns(),
                });
                holders.push(
                    spawn_holder(
                        next_id,
                        target,
                        upstream,
                        fence_addr,
                        ttl,
                        events_tx.clone(),
                    )
                    .await
                    .map_err(|e| e.to_string())?,
                );
                next_id += 1;
            }
            "gc_pause_before_write" => {
                let _ = h.stdin.write_all(b"STALL\n").await;
                tokio::time::sleep(ttl * 2).await;
            }
            "partition" => {
                h.proxy.set(Mode::Blackhole);
                tokio::time::sleep(ttl * 3 / 2).await;
                h.proxy.set(Mode::Pass);
                h.proxy.reset();
            }
            "delay" => {
                h.proxy.set(Mode::Delay(ttl / 4));
                tokio::time::sleep(ttl).await;
                h.proxy.set(Mode::Pass);
            }
            "reset" => h.proxy.reset(),
            "unknown_outcome" => {
                h.proxy.set(Mode::DropNextAnswer);
                tokio::time::sleep(ttl / 2).await;
                h.proxy.set(Mode::Pass);
            }
            _ => {
                let status = Command::new("scripts/services")
                    .args(["restart", target.service])
                    .stdout(Stdio::null())
                    .status()
                    .await;
                if !status.is_ok_and(|s| s.success()) {
                    return Err(format!(
                        "{}: scripts/services restart failed",
                        target.backend
                    ));
                }
            }
        }
        history.faults.push(Fault {
            kind,
            at,
            forces_loss: matches!(kind, "pause" | "partition" | "gc_pause_before_write"),
        });
    }

    // Wind down: heal, ask every holder to stop (they release and exit).
    for h in &mut holders {
        h.proxy.set(Mode::Pass);
        signal(h.child.id(), "-CONT");
        let _ = h.stdin.write_all(b"STOP\n").await;
    }
    let mut stragglers = 0;
    for mut h in holders {
        if tokio::time::timeout(ttl * 10 + Duration::from_secs(5), h.child.wait())
            .await
            .is_err()
        {
            stragglers += 1;
            let _ = h.child.start_kill();
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drain(&mut events, &mut *holding.lock().await);
    let run_end = now_ns();
    // Leases of killed holders expire after their TTL; then nothing may be held.
    tokio::time::sleep(ttl * 2).await;
    let left = direct
        .list("chaos/")
        .await
        .map_err(|e| format!("{}: list after the run: {e}", target.backend))?;
    history.leaks = left.len() as u64 + stragglers;
    history.events = events;
    history.events.retain(|e| e.at <= run_end);
    history.writes = fence.writes();
    Ok(history)
}

/// The holder process: `chaos holder --url U --fence ADDR --id N --ttl-ms T`.
/// Prints `EV …` lines; reads `STALL` (stop the world before the next write)
/// and `STOP` (release and exit) on stdin.
pub(crate) fn holder_main(args: &[String]) -> std::process::ExitCode {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(url), Some(fence), Some(id), Some(ttl)) = (
        value("--url"),
        value("--fence"),
        value("--id").and_then(|v| v.parse::<u32>().ok()),
        value("--ttl-ms").and_then(|v| v.parse::<u64>().ok()),
    ) else {
        eprintln!("holder: missing --url, --fence, --id or --ttl-ms");
        return std::process::ExitCode::from(2);
    };
    // One thread: a stall stops the refresher too, as a real stop-the-world does.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("holder: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(holder(url, fence, id, Duration::from_millis(ttl)))
}

fn emit(kind: Kind, holder: u32, token: u64, at: u64) {
    println!(
        "{}",
        Event {
            kind,
            holder,
            token,
            at
        }
    );
}

async fn holder(url: String, fence: String, id: u32, ttl: Duration) -> std::process::ExitCode {
    let locker: Arc<dyn Locker> = loop {
        match registry().connect(&url).await {
            Ok(locker) => break locker,
            Err(error) => {
                eprintln!("holder {id}: connect: {error}");
                tokio::time::sleep(ttl).await;
            }
        }
    };
    let Ok(fence) = TcpStream::connect(&fence).await else {
        eprintln!("holder {id}: cannot reach the fence");
        return std::process::ExitCode::FAILURE;
    };
    let (fence_read, mut fence_write) = fence.into_split();
    let mut fence_answers = BufReader::new(fence_read).lines();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut stall = false;
    let mut stop = false;
    let options = LockOptions::new().with_ttl(ttl).with_wait_timeout(ttl * 4);
    while !stop {
        let lock = tokio::select! {
            lock = locker.lock(RESOURCE, &options) => lock,
            command = commands.next_line() => {
                match command {
                    Ok(Some(c)) if c == "STALL" => stall = true,
                    _ => stop = true,
                }
                continue;
            }
        };
        let Ok(lock) = lock else {
            tokio::time::sleep(ttl / 10).await;
            continue;
        };
        let token = lock.token();
        emit(Kind::Grant, id, token, now_ns());
        for _ in 0..6 {
            if lock.is_lost() {
                break;
            }
            if stall {
                stall = false;
                // Stop the world (this runtime has one thread).
                std::thread::sleep(ttl * 3 / 2);
            }
            let line = format!("W {id} {token}\n");
            if fence_write.write_all(line.as_bytes()).await.is_err()
                || fence_answers.next_line().await.ok().flatten().is_none()
            {
                eprintln!("holder {id}: fence gone");
                return std::process::ExitCode::FAILURE;
            }
            tokio::select! {
                _ = tokio::time::sleep(ttl / 8) => {}
                command = commands.next_line() => match command {
                    Ok(Some(c)) if c == "STALL" => stall = true,
                    _ => { stop = true; break; }
                },
            }
        }
        if let Some(lost_at) = lock.lost_at() {
            emit(Kind::Lost, id, token, instant_ns(lost_at));
            drop(lock);
        } else {
            emit(Kind::Release, id, token, now_ns());
            let _ = lock.release().await;
        }
    }
    std::process::ExitCode::SUCCESS
}
