//! Microsoft Graph clients, one per endpoint sign-in, and the throttling
//! budgets every pass and worker of the daemon shares (one per mailbox and
//! application).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_events::{GraphCredential, GraphSignIn};
use ferry_graph::{Budgets, Graph, GraphConfig, Limits};

use crate::secrets::SecretStore;

/// The daemon's Graph clients and budgets.
pub struct Graphs {
    budgets: Arc<Budgets>,
    clients: Mutex<HashMap<String, (GraphSignIn, Graph)>>,
}

impl Default for Graphs {
    fn default() -> Self {
        Graphs::new(Limits::EXCHANGE_ONLINE)
    }
}

impl Graphs {
    pub fn new(limits: Limits) -> Graphs {
        Graphs {
            budgets: Arc::new(Budgets::new(limits)),
            clients: Mutex::default(),
        }
    }

    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// Each mailbox's budget, one line each, for `status` and `watch`.
    pub fn budget_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .budgets
            .states()
            .into_iter()
            .map(|((mailbox, app), st)| format!("{mailbox} (application {app}): {st}"))
            .collect();
        lines.sort();
        lines
    }

    /// The client of endpoint `name` signed in as `sign_in`: one per
    /// endpoint, so its token cache serves every session; made again when
    /// the sign-in changed.
    pub fn client(
        &self,
        secrets: &SecretStore,
        name: &str,
        sign_in: &GraphSignIn,
        ca_file: Option<&str>,
    ) -> Result<Graph, String> {
        let mut clients = self.clients.lock().unwrap();
        if let Some((s, g)) = clients.get(name)
            && s == sign_in
        {
            return Ok(g.clone());
        }
        let credential = match &sign_in.credential {
            GraphCredential::Secret(r) => {
                let secret = secrets.get(r).map_err(|e| e.to_string())?;
                ferry_graph::Credential::Secret(secret)
            }
            GraphCredential::Certificate { cert_pem, key } => {
                let key = secrets.get(key).map_err(|e| e.to_string())?;
                ferry_graph::Credential::certificate_pem(key.as_bytes(), cert_pem.as_bytes())?
            }
        };
        let mut cfg = GraphConfig::new(&sign_in.tenant, &sign_in.client_id, credential);
        cfg.authority = sign_in.authority.clone();
        cfg.graph_url = sign_in.graph_url.clone();
        cfg.budgets = Some(self.budgets.clone());
        if let Some(ca) = ca_file {
            cfg.extra_root_pem =
                Some(std::fs::read(ca).map_err(|e| format!("reading --ca-file {ca}: {e}"))?);
        }
        let g = Graph::new(cfg).map_err(|e| e.to_string())?;
        clients.insert(name.to_string(), (sign_in.clone(), g.clone()));
        Ok(g)
    }
}
