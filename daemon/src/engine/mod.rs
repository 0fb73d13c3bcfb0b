//! The copy engine: passes over batches, one worker per mailbox.

use std::sync::Arc;

use ferry_events::{EndpointKind, EndpointSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Connector(#[from] ferry_connectors::ConnectorError),
    #[error("{0}")]
    Unsupported(String),
}

/// Logs in as the endpoint's admin (or opens the Maildir) and lists capabilities.
pub async fn verify_endpoint(_app: &App, spec: &EndpointSpec) -> Result<Vec<String>, EngineError> {
    match spec.kind {
        EndpointKind::Maildir => {
            use ferry_connectors::MailSession;
            let mut s = ferry_connectors::maildir::open(std::path::Path::new(&spec.host), false)?;
            Ok(s.capabilities().await?)
        }
        EndpointKind::Imap => Err(EngineError::Unsupported(
            "IMAP verification is not available yet".into(),
        )),
    }
}

/// Starts the engine; it stops taking work when `shutdown` turns true.
pub fn spawn(_app: Arc<App>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    })
}
