//! `chaos`: the fault-injection harness. Runs many holders against one backend
//! while injecting faults, records a history (grants, losses, releases, kills,
//! writes to a fenced resource), and checks the promise the library exists
//! for: no two holders at once, and `lost` before anyone else is granted.
//!
//! ```text
//! chaos [BACKEND…] [--seconds N | --minutes N] [--holders N] [--ttl-ms N] [--seed N] [--history DIR]
//! ```
//!
//! Each backend is run twice: fenced (the resource rejects older tokens: the run
//! fails on any stale write accepted, any overlap, any non-positive lost lead
//! or any leak) and unfenced (the resource accepts everything: its anomalies are
//! the evidence for fencing tokens, reported, not failed on). Output ends with
//! one line per backend:
//! `reliability BACKEND: acquisitions=N faults=N stale_writes=N overlaps=N lost_lead_min_ms=X kill_regrant_p50_ms=Y leaks=N`

#![allow(clippy::print_stdout)]

mod fence;
mod history;
#[cfg(feature = "memory")]
mod inprocess;
mod process;
mod proxy;

use std::process::ExitCode;
use std::time::Duration;

/// The resource every holder fights over.
pub(crate) const RESOURCE: &str = "chaos/the-one-resource";

/// What one run does.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    pub(crate) duration: Duration,
    pub(crate) holders: u32,
    pub(crate) ttl: Duration,
    pub(crate) seed: u64,
    /// Write each run's full history here (one file per backend and variant).
    pub(crate) history_dir: Option<std::path::PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: chaos [BACKEND…] [--seconds N | --minutes N] [--holders N] [--ttl-ms N] [--seed N] [--history DIR]\n\
         backends in this build: {}",
        BACKENDS.join(", ")
    );
    std::process::exit(2)
}

const BACKENDS: &[&str] = &[
    #[cfg(feature = "memory")]
    "memory",
];

/// Networked backends of this build: (name, URL variable, scripts/services
/// name, keeps its data across a restart).
const NETWORKED: &[(&str, &str, &str, bool)] = &[
    // Redis as `scripts/services` runs it keeps no data across a restart: no
    // lock survives that (tokens still grow: the counters are clock-seeded), so
    // restarts are not injected; distlock-redis's own tests cover them.
    #[cfg(feature = "redis")]
    ("redis", "DISTLOCK_REDIS_URL", "redis", false),
    // etcd keeps its data (and its revision counter: the tokens) across a restart.
    #[cfg(feature = "etcd")]
    ("etcd", "DISTLOCK_ETCD_URL", "etcd", true),
    #[cfg(feature = "sql")]
    ("postgres", "DISTLOCK_POSTGRES_URL", "postgres", true),
    #[cfg(feature = "sql")]
    ("mysql", "DISTLOCK_MYSQL_URL", "mysql", true),
    // moto keeps everything in memory: a restart forgets every item.
    #[cfg(feature = "dynamo")]
    ("dynamo", "DISTLOCK_DYNAMO_URL", "dynamo", false),
];

fn parse() -> (Vec<String>, RunConfig) {
    let mut config = RunConfig {
        duration: Duration::from_secs(60),
        holders: 4,
        ttl: Duration::from_millis(300),
        seed: fastrand::u64(..),
        history_dir: None,
    };
    let mut backends = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a whole number");
                usage()
            })
        };
        match arg.as_str() {
            "--seconds" => config.duration = Duration::from_secs(number("--seconds")),
            "--minutes" => config.duration = Duration::from_secs(60 * number("--minutes")),
            "--holders" => config.holders = u32::try_from(number("--holders")).unwrap_or(4).max(2),
            "--ttl-ms" => config.ttl = Duration::from_millis(number("--ttl-ms").max(50)),
            "--seed" => config.seed = number("--seed"),
            "--history" => {
                config.history_dir = Some(args.next().unwrap_or_else(|| usage()).into());
            }
            "-h" | "--help" => usage(),
            name if BACKENDS.contains(&name) || NETWORKED.iter().any(|b| b.0 == name) => {
                backends.push(name.to_owned());
            }
            other => {
                eprintln!("unknown argument or backend not in this build: {other}");
                usage()
            }
        }
    }
    if backends.is_empty() {
        backends = BACKENDS
            .iter()
            .chain(NETWORKED.iter().map(|b| &b.0))
            .map(|b| (*b).to_owned())
            .collect();
    }
    (backends, config)
}

async fn run_backend(
    backend: &str,
    config: &RunConfig,
    fenced: bool,
) -> Result<history::History, String> {
    #[cfg(feature = "memory")]
    if backend == "memory" {
        return Ok(inprocess::run(config, fenced).await);
    }
    let Some(&(name, variable, service, durable)) = NETWORKED.iter().find(|b| b.0 == backend)
    else {
        return Err(format!("backend {backend} is not in this build"));
    };
    let mut url = std::env::var(variable).map_err(|_| {
        format!("{variable} is not set: start the store with `eval \"$(scripts/services up {service})\"`")
    })?;
    if name == "dynamo" && !url.contains("create=") {
        // The harness's table: created on connect if missing.
        url.push_str(if url.contains('?') {
            "&create=true"
        } else {
            "?create=true"
        });
    }
    let target = process::Target {
        backend: name,
        url,
        service,
        durable,
    };
    process::run(config, &target, fenced).await
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("holder") {
        return process::holder_main(&args[2..]);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("chaos: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let (backends, config) = parse();
    println!(
        "chaos: {} s per backend and variant, {} holders, TTL {:?}, seed {}",
        config.duration.as_secs(),
        config.holders,
        config.ttl,
        config.seed
    );
    let mut summaries = Vec::new();
    let mut safe = true;
    for backend in &backends {
        for fenced in [true, false] {
            let history = match run_backend(backend, &config, fenced).await {
                Ok(history) => history,
                Err(error) => {
                    println!("chaos: {backend}: could not run: {error}");
                    safe = false;
                    break;
                }
            };
            let figures = history.figures(history::now_ns());
            let label = if fenced { "fenced" } else { "UNFENCED" };
            if let Some(dir) = &config.history_dir {
                let path = dir.join(format!("{backend}-{}.history", label.to_lowercase()));
                if let Err(error) = std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, history.dump()))
                {
                    eprintln!("chaos: cannot write {}: {error}", path.display());
                }
            }
            println!("{backend} ({label}):");
            for line in figures.details() {
                println!("{line}");
            }
            if fenced {
                if !figures.safe() {
                    safe = false;
                    println!("  FAILED: a promise was broken (see the figures above)");
                    if let Some((from, to)) = figures.overlap_span {
                        // What happened around it, one second either side.
                        let second = 1_000_000_000;
                        println!("  history around the overlap (ns since the run began):");
                        for line in history
                            .dump_between(from.saturating_sub(second), to.saturating_add(second))
                            .lines()
                        {
                            println!("    {line}");
                        }
                    }
                }
                summaries.push(figures.summary(backend));
            } else {
                println!(
                    "  unfenced {backend}: stale writes accepted={} of {} writes \
                     (what the same run does to storage without token checks)",
                    figures.stale_writes, figures.writes
                );
            }
        }
    }
    for line in summaries {
        println!("{line}");
    }
    if safe {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
