//! `distlock`: hold a distributed lock while a command runs (like `flock(1)`,
//! `etcdctl lock`, `consul lock`), list, inspect, release and watch locks, and
//! check or benchmark a store. See `distlock --help` and the crate README.

mod bench;
mod cli;
mod doctor;
mod exit;
mod lock_cmd;
mod output;
mod show;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            let code = match error.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::OK,
                _ => exit::USAGE,
            };
            let _ = error.print();
            return exit::exit(code);
        }
    };
    let out = output::Output::new(cli.quiet, cli.color);
    if let Command::Completions { shell } = cli.command {
        cli::completions(shell);
        return exit::exit(exit::OK);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            out.error(&format!("cannot start the runtime: {error}"));
            return exit::exit(exit::SOFTWARE);
        }
    };
    let code = runtime.block_on(run(cli, &out));
    // Do not wait for background tasks (a refresher, a pool) to wind down.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match code {
        Ok(code) => exit::exit(code),
        Err(failure) => {
            out.error(&failure.message);
            exit::exit(failure.code)
        }
    }
}

async fn run(cli: Cli, out: &output::Output) -> Result<u8, Failure> {
    let url = cli.url.as_deref();
    match cli.command {
        Command::Lock(args) => lock_cmd::run(url, args, out).await,
        Command::List { prefix, json } => show::list(url, &prefix, json, out).await,
        Command::Info { name, json } => show::info(url, &name, json, out).await,
        Command::Read { name, json } => show::read(url, &name, json, out).await,
        Command::Release(args) => show::release(url, args, out).await,
        Command::Watch(args) => show::watch(url, args, out).await,
        Command::Doctor { url: given } => doctor::run(given.as_deref().or(url), out).await,
        Command::Bench(args) => {
            let given = args.url.clone();
            bench::run(given.as_deref().or(url), args, out).await
        }
        Command::Completions { .. } => Ok(exit::OK),
        #[cfg(feature = "server")]
        Command::Serve { flags } => match distlock_server::cli::config_from_args(flags) {
            Ok(config) => {
                let code = distlock_server::cli::serve(config).await;
                Ok(if code == std::process::ExitCode::SUCCESS {
                    exit::OK
                } else {
                    exit::UNAVAILABLE
                })
            }
            Err(message) => Err(Failure::usage(message)),
        },
    }
}
