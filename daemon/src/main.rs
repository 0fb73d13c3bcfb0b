//! ferryd's entry point: flags, logging, signals, systemd readiness.

mod flags;

use std::io::IsTerminal;

use anyhow::Context;
use ferryd::{Config, Control};
use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing_subscriber::{EnvFilter, prelude::*, reload};

fn main() {
    let args = match flags::parse(std::env::args_os(), |name| std::env::var_os(name)) {
        Ok(flags::Parsed::Run(args)) => args,
        Ok(flags::Parsed::Print(text)) => {
            print!("{text}");
            std::process::exit(0);
        }
        Err(flags::Refused(text)) => {
            eprint!("{text}");
            std::process::exit(2);
        }
    };
    if let Err(e) = real_main(args) {
        eprintln!("ferryd: {}", ferry_api::one_line(e.chain()));
        std::process::exit(1);
    }
}

fn real_main(args: flags::Flags) -> anyhow::Result<()> {
    let mut config = Config::load(args.data_dir, args.socket, args.config, args.log_json)?;
    if args.store.is_some() {
        config.store = args.store;
    }
    if args.import_log {
        let done = ferryd::app::import_log(&config)?;
        println!(
            "imported {} events into {} (head {}); the chain is unbroken",
            done.events,
            ferry_pgstore::describe(config.store.as_deref().unwrap_or_default()),
            done.head
        );
        return Ok(());
    }

    let (filter, filter_handle) = reload::Layer::new(
        EnvFilter::try_new(&config.log).context("the log filter in the configuration")?,
    );
    let registry = tracing_subscriber::registry().with(filter);
    // Colour only for a person at a terminal, never in a journal or a file.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
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
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour)
                    .with_writer(std::io::stderr),
            )
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
