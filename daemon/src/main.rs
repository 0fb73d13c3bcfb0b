//! ferryd's entry point: flags, logging, signals, systemd readiness.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ferryd::{Config, Control};
use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing_subscriber::{EnvFilter, prelude::*, reload};

#[derive(Parser)]
#[command(name = "ferryd", version, about = "The mailferry migration daemon")]
struct Args {
    /// Where the event log, snapshots and secrets live.
    #[arg(long, env = "FERRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The control socket (default from FERRY_SOCKET, then the built-in path).
    #[arg(long, env = "FERRY_SOCKET")]
    socket: Option<PathBuf>,
    /// A TOML configuration file; re-read on SIGHUP.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("ferryd: {}", ferry_api::one_line(e.chain()));
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(args.data_dir, args.socket, args.config, args.log_json)?;

    let (filter, filter_handle) = reload::Layer::new(
        EnvFilter::try_new(&config.log).context("the log filter in the configuration")?,
    );
    let registry = tracing_subscriber::registry().with(filter);
    if config.log_json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .context("installing signal handlers")?;
        let control = signals.map(|s| match s {
            SIGHUP => Control::Reload,
            _ => Control::Shutdown,
        });
        ferryd::run(
            config,
            control,
            || {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            },
            move |c| match EnvFilter::try_new(&c.log) {
                Ok(f) => {
                    let _ = filter_handle.reload(f);
                }
                Err(e) => tracing::error!(error = %e, "log filter not changed"),
            },
        )
        .await?;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        Ok(())
    })
}
