//! The drain signal every long-running task listens for.
//!
//! One [`Trigger`] (held by [`crate::run`]) and any number of [`Shutdown`]
//! clones: the server, the engine and its workers, the scheduler, the
//! notifier and the metrics listener each stop taking work once it fires.

use tokio::sync::watch;

/// Fires the drain once; every [`Shutdown`] sees it.
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the drain signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and the first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Whether the drain has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the drain begins (at once if it has).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}
