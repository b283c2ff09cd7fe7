//! The `loadlab` binary: parse the command line, start logging, dispatch.

use anyhow::Context;
use clap::Parser;
use loadlab::app::{App, shutdown_signal};
use loadlab::cli::{Cli, Command};
use loadlab::config::Config;
use tokio_util::sync::CancellationToken;

/// mimalloc: the proxy path allocates small, short-lived buffers on every request, and
/// glibc's allocator spent about 9% of the front's CPU on them (profiled under wrk).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    loadlab::telemetry::init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadlab: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = Config::from_args(&args)?;
            runtime()?.block_on(async {
                let app = App::build(config)?;
                let shutdown = CancellationToken::new();
                let trigger = shutdown.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    tracing::info!("shutdown signal received: draining");
                    trigger.cancel();
                });
                app.run_until_stopped(shutdown).await
            })
        }
        Command::Front(args) => loadlab::front::run_standalone(&args),
        Command::CheckConfig(args) => {
            let config = Config::from_args(&args)?;
            println!("{config:#?}");
            println!("configuration OK");
            Ok(())
        }
    }
}

/// The main thread's runtime: it accepts the front's connections (the front's worker
/// threads serve them), runs the health checks and the extra metrics listener. Shards
/// and front workers build their own.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}
