//! The command line.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::exit::HELP as EXIT_CODES;

const STORE_HELP: &str = "\
Store:
  --url or DISTLOCK_URL names the store: sqlite:///path/locks.db, postgres://…,
  redis://…, etcd://…, mysql://…, dynamodb://… (as built in). Without one,
  distlock uses a SQLite file of this user (in $XDG_RUNTIME_DIR/distlock,
  else ~/.cache/distlock), shared by every process on this machine.";

/// Distributed locks for shell scripts and operators.
#[derive(Debug, Parser)]
#[command(
    name = "distlock",
    version,
    about,
    long_about = "Distributed locks for shell scripts and operators: hold a lock while a \
                  command runs (like flock(1), `etcdctl lock`, `consul lock`), list, \
                  inspect, release and watch locks, check and benchmark a store.",
    after_help = format!("{STORE_HELP}\n\n{EXIT_CODES}"),
    propagate_version = true
)]
pub(crate) struct Cli {
    /// The store's URL (default: a SQLite file of this user, see below).
    #[arg(long, global = true, env = "DISTLOCK_URL", hide_env_values = true)]
    pub(crate) url: Option<String>,

    /// Print only errors (and what the command asked for).
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,

    /// Colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub(crate) color: Color,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// When to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Hold a lock while a command runs; pass its exit code through.
    #[command(after_help = LOCK_HELP)]
    Lock(LockArgs),

    /// List held locks (names starting with PREFIX).
    List {
        /// Only names starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Print JSON (an array of objects) instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Show who holds a lock (exit 1 if it is free).
    Info {
        /// The resource.
        name: String,
        /// Print JSON (`null` when free).
        #[arg(long)]
        json: bool,
    },

    /// Print the data stored with a lock (exit 1 if it is free).
    Read {
        /// The resource.
        name: String,
        /// Print JSON: {"resource", "data" (UTF-8, lossy), "bytes"}.
        #[arg(long)]
        json: bool,
    },

    /// Release a lock held by another process: by its lease key, or by name with --force.
    Release(ReleaseArgs),

    /// Print grants, releases and expiries of a lock as they happen (Ctrl-C ends).
    Watch(WatchArgs),

    /// Check a store: connect, round-trip time, a lock/release cycle; say what to fix.
    Doctor {
        /// The store to check (default: --url, DISTLOCK_URL, or the default store).
        #[arg(value_name = "URL")]
        url: Option<String>,
    },

    /// Measure a store: lock/release cycle, handoff between waiters, throughput.
    Bench(BenchArgs),

    /// Print a shell completion script (e.g. `distlock completions bash > /etc/bash_completion.d/distlock`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run a lock server (the same flags as `distlock-server`; `--store URL`
    /// picks the backend behind it, default memory://).
    #[cfg(feature = "server")]
    Serve {
        /// The server's flags, e.g. `--listen 127.0.0.1:7420 --store redis://…`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "FLAGS"
        )]
        flags: Vec<String>,
    },
}

const LOCK_HELP: &str = "\
The command gets DISTLOCK_RESOURCE, DISTLOCK_TOKEN (the fencing token),
DISTLOCK_LEASE_KEY (releases the lease: keep it secret) and DISTLOCK_URL.
The lease is refreshed in the background while the command runs. If the lock
is lost, the command gets SIGTERM at once and SIGKILL after --kill-after;
distlock then exits 79. SIGINT, SIGTERM and SIGHUP sent to distlock are passed
to the command; the lock is released once the command has ended.

Examples:
  distlock lock nightly -- ./job.sh
  distlock lock --no-wait deploy -- make deploy || echo \"deploy already running\"
  distlock lock --permits 3 --wait 5m gpu -- ./train.sh";

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// The resource to lock.
    pub(crate) name: String,

    /// How long the lease lasts without refresh (refreshed every TTL/3 while the command runs).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub(crate) ttl: Duration,

    /// Wait at most this long for the lock (default: until granted).
    #[arg(long, short, value_parser = parse_duration, conflicts_with = "no_wait")]
    pub(crate) wait: Option<Duration>,

    /// Do not wait: exit 75 at once if the lock is held.
    #[arg(long, short = 'n')]
    pub(crate) no_wait: bool,

    /// Admit this many holders at once (a semaphore); all must ask for the same number.
    #[arg(long, default_value_t = 1)]
    pub(crate) permits: u32,

    /// Data to store with the lock (shown by `distlock read`).
    #[arg(long)]
    pub(crate) data: Option<String>,

    /// The holder's name shown by `info` (default: host:pid:random).
    #[arg(long)]
    pub(crate) owner: Option<String>,

    /// After the lock is lost, how long the command has between SIGTERM and SIGKILL.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(crate) kill_after: Duration,

    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    /// The resource.
    pub(crate) name: String,

    /// The holder's lease key (its DISTLOCK_LEASE_KEY).
    #[arg(long)]
    pub(crate) key: Option<String>,

    /// Without --key: end every lease of NAME, whoever holds it (an
    /// operator's force release; the evicted holders are fenced and see the
    /// lock lost at their next refresh).
    #[arg(long)]
    pub(crate) force: bool,

    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The resource.
    pub(crate) name: String,

    /// How often to look.
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    pub(crate) interval: Duration,

    /// Stop after this long (default: until Ctrl-C).
    #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) duration: Option<Duration>,

    /// Print one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The store to measure (default: --url, DISTLOCK_URL, or the default store).
    #[arg(value_name = "URL")]
    pub(crate) url: Option<String>,

    /// Lock/release cycles to time.
    #[arg(long, default_value_t = 200)]
    pub(crate) cycles: u32,

    /// Handoffs (release by one task, grant to a waiting one) to time.
    #[arg(long, default_value_t = 50)]
    pub(crate) handoffs: u32,

    /// Concurrent tasks for the throughput run.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: u32,

    /// How long the throughput run lasts.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub(crate) duration: Duration,

    /// Print the figures as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `30s`, `1m30s`, `500ms`, or a number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(Duration::from_secs_f64(seconds));
        }
        return Err(format!("`{text}` is not a duration"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 30s, 5m, 500ms"))
}

pub(crate) fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "distlock", &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
