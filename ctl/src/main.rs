//! ferryctl: drive ferryd over its control socket.
//!
//! Every command prints a table for people or, with `--json`, the answer as
//! JSON for scripts; on failure it prints one line and exits non-zero.

#[macro_use]
mod print;

mod cli;
mod cmd;
mod files;
mod html;
mod output;
mod send;
mod units;

use clap::Parser;
use ferry_api::wire::{Checklist, Cutover};
use ferry_api::{Client, Request};

use cli::{Cli, Cmd};

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                0
            } else {
                eprintln!("ferryctl: {}", ferry_api::one_line(e.chain()));
                1
            }
        }
    };
    std::process::exit(code);
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let socket = cli.socket.clone().unwrap_or_else(ferry_api::default_socket);
    let client = Client::new(socket);
    let json = cli.json;
    match cli.cmd {
        Cmd::Status => send::print(&client, &Request::Status, json).await,
        Cmd::Endpoint(c) => cmd::endpoint::run(&client, c, json).await,
        Cmd::Batch(c) => cmd::batch::run(&client, c, json).await,
        Cmd::Mailbox(c) => cmd::mailbox::run(&client, c, json).await,
        Cmd::Cutover { addresses, force } => {
            let req = Request::Cutover(Cutover { addresses, force });
            send::print(&client, &req, json).await
        }
        Cmd::Mx(c) => cmd::mx::run(&client, c, json).await,
        Cmd::Events {
            since,
            follow,
            filter,
        } => cmd::events::run(&client, since, follow, filter, json).await,
        Cmd::Audit(c) => cmd::audit::run(&client, c, json).await,
        Cmd::Watch { batch } => cmd::watch::watch(&client, batch.as_deref()).await,
        Cmd::Report { batch, output } => cmd::report::run(&client, &batch, &output, json).await,
        Cmd::Preflight(c) => cmd::preflight::run(c, json),
        Cmd::Runbook {
            batch,
            dir,
            smart_host,
        } => cmd::runbook::run(&client, &batch, &dir, smart_host.as_deref(), json).await,
        Cmd::Checklist { batch } => {
            send::print(&client, &Request::Checklist(Checklist { batch }), json).await
        }
    }
}
