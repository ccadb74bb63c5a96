//! The server's command line, shared by the `distlock-server` binary and
//! `distlock serve`.

use std::process::ExitCode;
use std::time::Duration;

use crate::{Config, DisconnectGrace, Limits, Password, TlsConfig};

/// The flags, for `--help` and errors.
pub const USAGE: &str = "usage: distlock-server [--listen ADDR] [--store URL] [--metrics ADDR] \
[--password-file PATH] [--disconnect-grace lease|MILLIS] [--session-timeout MILLIS] \
[--max-sessions N] [--max-locks-per-session N] [--max-waiters-per-resource N] \
[--max-message-bytes N] [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] \
(password from DISTLOCK_PASSWORD)";

/// The server's configuration from its flags (`args` without the program
/// name) and `DISTLOCK_PASSWORD`; `Err` carries the message to print.
pub fn config_from_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::new(
        "127.0.0.1:7420"
            .parse()
            .map_err(|e| format!("default address: {e}"))?,
    );
    let mut limits = Limits::default();
    if let Ok(password) = std::env::var("DISTLOCK_PASSWORD")
        && !password.is_empty()
    {
        config = config.with_password(Password::new(password));
    }
    let mut tls_files: (Option<String>, Option<String>, Option<String>) = (None, None, None);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--listen" => {
                config.listen = value
                    .parse()
                    .map_err(|e| format!("--listen `{value}`: {e}"))?;
            }
            "--store" => config.store = value,
            "--metrics" => {
                config.metrics = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--metrics `{value}`: {e}"))?,
                );
            }
            "--password-file" => {
                let secret = std::fs::read_to_string(&value)
                    .map_err(|e| format!("--password-file {value}: {e}"))?;
                config.password = Some(Password::new(secret.trim_end_matches(['\r', '\n'])));
            }
            "--disconnect-grace" => {
                config.disconnect_grace = if value == "lease" {
                    DisconnectGrace::LeaseExpiry
                } else {
                    DisconnectGrace::After(Duration::from_millis(number(&value)?))
                };
            }
            "--session-timeout" => {
                config.session_timeout = Duration::from_millis(number(&value)?.max(100));
            }
            "--max-sessions" => limits.max_sessions = number(&value)? as usize,
            "--max-locks-per-session" => limits.max_locks_per_session = number(&value)? as usize,
            "--max-waiters-per-resource" => {
                limits.max_waiters_per_resource = number(&value)? as usize;
            }
            "--max-message-bytes" => limits.max_message_bytes = number(&value)? as usize,
            "--tls-cert" => tls_files.0 = Some(value),
            "--tls-key" => tls_files.1 = Some(value),
            "--tls-client-ca" => tls_files.2 = Some(value),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    match tls_files {
        (Some(cert), Some(key), client_ca) => {
            let mut tls = TlsConfig::new(read(&cert)?, read(&key)?);
            if let Some(ca) = client_ca {
                tls = tls.with_client_ca(read(&ca)?);
            }
            config = config.with_tls(tls);
        }
        (None, None, None) => {}
        _ => {
            return Err("--tls-cert and --tls-key go together (--tls-client-ca needs both)".into());
        }
    }
    Ok(config.with_limits(limits))
}

/// Start a server with `config`, print where it listens, and serve until
/// Ctrl-C / SIGTERM; then drain and shut down.
pub async fn serve(config: Config) -> ExitCode {
    let server = match crate::start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("distlock-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    // One line on stdout for scripts and tests (port 0 picks a free port).
    println!("listening on {}", server.local_addr());
    if let Some(metrics) = server.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    stopped().await;
    tracing::info!("interrupted: draining");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM where there is one.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
