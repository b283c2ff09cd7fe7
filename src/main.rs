//! The `loadlab` binary: parse the command line, start logging, dispatch.

use anyhow::Context;
use clap::Parser;
use loadlab::app::App;
use loadlab::cli::{Cli, Command, LogFormat};
use loadlab::config::Config;

/// mimalloc: the proxy path allocates small, short-lived buffers on every request, and
/// glibc's allocator was a visible share of the front's CPU in profiles under load
/// (the figure is in docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let format = cli.command.log_format();
    loadlab::telemetry::init(format);
    raise_fd_limit();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let error = format!("{e:#}");
            match format {
                // Every line of a JSON log is JSON, the last one too.
                LogFormat::Json => tracing::error!(%error, "loadlab failed"),
                LogFormat::Text => eprintln!("loadlab: {error}"),
            }
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
                app.run_until_stopped(loadlab_front::listen::server::cancel_on_signal())
                    .await
            })
        }
        Command::Front(args) => runtime()?.block_on(loadlab::standalone::run(&args)),
        Command::CheckConfig(args) => {
            let config = Config::from_args(&args)?;
            println!("{config:#?}");
            println!("configuration OK");
            Ok(())
        }
    }
}

/// Raises the soft fd limit to the hard limit (a systemd service starts at 1024) before
/// anything reads it: the default `--max-connections` is derived from it.
fn raise_fd_limit() {
    match loadlab_front::listen::fds::raise_soft_limit() {
        Ok((before, after)) => tracing::info!(
            soft_before = before.soft,
            soft = after.soft,
            hard = after.hard,
            "file descriptor limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the file descriptor limit"),
    }
}

/// The main thread's runtime: it accepts the front's connections (the front's threads
/// serve them), runs the health checks and the extra metrics listener. Shards and the
/// front's threads build their own.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}
