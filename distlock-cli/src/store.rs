//! Which store to use: `--url`, `DISTLOCK_URL`, or a SQLite file of this user.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distlock::Locker;

use crate::exit::{Failure, UNAVAILABLE};

/// The directory of the default store: `$XDG_RUNTIME_DIR/distlock`, else
/// `$XDG_CACHE_HOME/distlock`, else `~/.cache/distlock`, else the temp dir.
pub(crate) fn default_dir() -> PathBuf {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(runtime) = env("XDG_RUNTIME_DIR") {
        return runtime.join("distlock");
    }
    if let Some(cache) = env("XDG_CACHE_HOME") {
        return cache.join("distlock");
    }
    if let Some(home) = env("HOME") {
        return home.join(".cache").join("distlock");
    }
    std::env::temp_dir().join(format!("distlock-{}", whoami()))
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".to_owned())
}

/// The default store's URL (`sqlite:///…/locks.db`), creating its directory.
pub(crate) fn default_url() -> Result<String, Failure> {
    let dir = default_dir();
    create_private_dir(&dir).map_err(|e| {
        Failure::new(
            UNAVAILABLE,
            format!(
                "cannot create the default store's directory {}: {e} (set --url or DISTLOCK_URL)",
                dir.display()
            ),
        )
    })?;
    let path = dir.join("locks.db");
    let path = path.to_str().ok_or_else(|| {
        Failure::usage(format!(
            "the default store's path {} is not UTF-8; set --url or DISTLOCK_URL",
            path.display()
        ))
    })?;
    Ok(format!("sqlite://{path}"))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The URL to use: the one given, or the default store's.
pub(crate) fn resolve(url: Option<&str>) -> Result<String, Failure> {
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => Ok(url.to_owned()),
        None => default_url(),
    }
}

/// How long connecting may take before the store counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connect, timing the connection.
pub(crate) async fn connect(url: &str) -> Result<(Arc<dyn Locker>, Duration), Failure> {
    let started = Instant::now();
    let locker = tokio::time::timeout(CONNECT_TIMEOUT, distlock::connect(url))
        .await
        .map_err(|_| {
            Failure::new(
                UNAVAILABLE,
                format!(
                    "no answer from {} within {CONNECT_TIMEOUT:?} (is the store running?)",
                    distlock::redact_url(url)
                ),
            )
        })?
        .map_err(Failure::from)?;
    Ok((locker, started.elapsed()))
}
