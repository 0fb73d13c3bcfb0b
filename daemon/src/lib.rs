//! ferryd: the mailferry daemon.
//!
//! - [`config`]: flags and the TOML file;
//! - [`app`]: the shared state: log, views, secrets;
//! - [`server`]: the control socket (HTTP/1.1 + JSON on a Unix socket);
//! - [`api`]: one handler file per area of the control API;
//! - [`engine`]: passes, mailbox workers, connectors;
//! - [`scheduler`]: cron delta schedules, fired from the log's facts;
//! - [`cron`]: the pure schedule: fires as a function of time and zone;
//! - [`shutdown`]: the drain signal every long-running task holds;
//! - [`notify`]: pass summaries by webhook and email;
//! - [`csvimport`]: batch CSV files by Microsoft's rules;
//! - [`secrets`]: the encrypted secret store events refer to;
//! - [`metrics`]: Prometheus text on an optional loopback port.
//!
//! [`run`] ties them together; `main.rs` only adds signals and logging.

pub mod api;
pub mod app;
pub mod budget;
pub mod config;
pub mod cron;
pub mod csvimport;
pub mod engine;
pub mod graph;
pub mod metrics;
pub mod notify;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod shutdown;

use std::sync::Arc;

use futures::{Stream, StreamExt};

pub use app::App;
pub use config::Config;

/// What the outside world (signals, tests) asks of a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM / SIGINT: drain and exit.
    Shutdown,
    /// SIGHUP: re-read the config file.
    Reload,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] app::StartError),
    #[error(transparent)]
    Socket(#[from] server::SocketError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Runs the daemon until `control` yields [`Control::Shutdown`] or ends.
///
/// `ready` is called once the views are rebuilt and the socket listens;
/// `reloaded` after each successful config reload.
pub async fn run(
    config: Config,
    control: impl Stream<Item = Control> + Unpin,
    ready: impl FnOnce(),
    reloaded: impl Fn(&Config),
) -> Result<(), RunError> {
    let socket = config.socket.clone();
    let admin_group = config.admin_group.clone();
    server::refuse_if_in_use(&socket).await?;
    let app = Arc::new(tokio::task::block_in_place(|| App::open(config))?);
    let keep = secrets::referenced(&app.views.read().unwrap());
    match app.secrets.sweep(&keep) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "secrets nothing refers to any more removed"),
        Err(e) => tracing::warn!(error = %e, "secrets not swept"),
    }
    let listener = server::bind(&socket, admin_group.as_deref()).await?;
    let (shutdown_tx, shutdown_rx) = shutdown::channel();
    // Every fleet worker runs the engine (its passes shared by leases); the
    // scheduler and the notifier run on the leader alone, so that a fire or
    // a summary is not sent by each worker.
    let engine = engine::spawn(app.clone(), shutdown_rx.clone());
    let (scheduler, notifier) = match app.leadership.as_ref().map(|l| l.watch()) {
        None => (
            scheduler::spawn(app.clone(), shutdown_rx.clone()),
            notify::spawn(app.clone(), shutdown_rx.clone()),
        ),
        Some(leads) => (
            tokio::spawn(while_leading(app.clone(), leads, shutdown_rx.clone())),
            tokio::spawn(async {}),
        ),
    };
    let metrics_listen = app.config.read().unwrap().metrics_listen;
    let metrics = match metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    if let Some(m) = metrics {
        tokio::spawn(metrics::serve(app.clone(), m, shutdown_rx.clone()));
    }
    if app.segments.is_none() {
        tokio::spawn(follow_store(app.clone(), shutdown_rx.clone()));
    }
    let server = tokio::spawn(server::serve(app.clone(), listener, shutdown_rx));
    tracing::info!(
        socket = %socket.display(),
        head = app.views.read().unwrap().head,
        "ferryd ready"
    );
    ready();

    let mut control = control;
    while let Some(c) = control.next().await {
        match c {
            Control::Shutdown => break,
            Control::Reload => {
                let next = app.config.read().unwrap().reloaded();
                match next {
                    Ok(next) => {
                        reloaded(&next);
                        *app.config.write().unwrap() = next;
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused; keeping the old configuration")
                    }
                }
            }
        }
    }

    tracing::info!("draining: no new work; finishing what is in flight");
    app.draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    shutdown_tx.fire();
    let _ = server.await;
    let _ = engine.await;
    let _ = scheduler.await;
    let _ = notifier.await;
    app.snapshot_now();
    if let Some(segments) = &app.segments {
        segments.close();
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!(head = app.store_head(), "ferryd stopped");
    Ok(())
}

impl App {
    fn store_head(&self) -> u64 {
        self.store.head()
    }
}

/// Folds what other workers append to a shared store into this worker's
/// views (its own appends are folded as it makes them).
async fn follow_store(app: Arc<App>, mut shutdown: shutdown::Shutdown) {
    let mut head = app.store.follow();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
                // This worker's own appends are folded as they are made:
                // no read of the store for them.
                let target = *head.borrow_and_update();
                if *app.views_head.borrow() >= target {
                    continue;
                }
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || app.catch_up()).await;
            }
        }
    }
}

/// Runs the scheduler and the notifier while this worker leads the fleet.
/// When the lead is lost they are told to stop; the store refuses the
/// scheduler's appends from that moment.
async fn while_leading(
    app: Arc<App>,
    mut leads: tokio::sync::watch::Receiver<bool>,
    mut shutdown: shutdown::Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            lead = leads.wait_for(|l| *l) => if lead.is_err() { return },
        }
        tracing::info!("leading the fleet: scheduler and notifier started");
        let (stop, stopped) = shutdown::channel();
        let scheduler = scheduler::spawn(app.clone(), stopped.clone());
        let notifier = notify::spawn(app.clone(), stopped);
        let ended = tokio::select! {
            _ = shutdown.wait() => true,
            lost = leads.wait_for(|l| !*l) => lost.is_err(),
        };
        stop.fire();
        let _ = scheduler.await;
        let _ = notifier.await;
        if ended {
            return;
        }
        tracing::warn!("lead of the fleet lost: scheduler and notifier stopped");
    }
}
