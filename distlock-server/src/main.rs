//! `distlock-server`: serve a distlock backend over gRPC.
//!
//! ```text
//! distlock-server --listen 127.0.0.1:7420 --store memory:// [--metrics 127.0.0.1:9420]
//!                 [--disconnect-grace lease|MILLIS] [--session-timeout MILLIS]
//!                 [--max-sessions N] [--max-locks-per-session N]
//!                 [--max-waiters-per-resource N] [--max-message-bytes N]
//!                 [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//! ```
//! The password comes from `DISTLOCK_PASSWORD` (or `--password-file PATH`), so
//! that it never shows in `ps`.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match distlock_server::cli::config_from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(distlock_server::cli::serve(config))
}
