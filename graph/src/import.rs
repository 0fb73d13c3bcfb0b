//! The mailbox import API: full-fidelity items (the FastTransfer stream
//! `exportItems` gives) posted to an import session's pre-authenticated
//! URL. The session is renewed when it expires or the service refuses it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Mailbox, Req, http_error};
use crate::model::ImportedItem;
use crate::{Error, Result};

/// A session is renewed this long before the expiry it announced.
const SESSION_MARGIN: Duration = Duration::from_secs(60);

/// An import session. Its URL carries a token: it prints as `ImportSession(…)`.
#[derive(Clone)]
pub struct ImportSession {
    url: String,
    pub expires: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for ImportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImportSession(…, expires {})", self.expires)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionAnswer {
    import_url: String,
    expiration_date_time: chrono::DateTime<chrono::Utc>,
}

/// Imports items into one mailbox, keeping a live session.
pub struct Importer {
    mailbox: Mailbox,
    mailbox_id: String,
    session: Option<ImportSession>,
    /// Sessions created so far (a renewal adds one).
    pub sessions_created: u32,
}

impl Mailbox {
    /// The Exchange mailbox id of this user (`settings/exchange`).
    pub async fn mailbox_id(&self) -> Result<String> {
        let v: serde_json::Value = self
            .call(Req::new(
                self.op("read mailbox id"),
                Method::GET,
                self.url("/settings/exchange"),
            ))
            .await?;
        v["primaryMailboxId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol {
                op: self.op("read mailbox id"),
                reason: "no primaryMailboxId".into(),
            })
    }

    /// A new import session for the mailbox `mailbox_id`.
    pub async fn create_import_session(&self, mailbox_id: &str) -> Result<ImportSession> {
        let url = format!(
            "{}/admin/exchange/mailboxes/{mailbox_id}/createImportSession",
            self.graph().base()
        );
        let a: SessionAnswer = self
            .call(Req::new(self.op("create import session"), Method::POST, url).json(json!({})))
            .await?;
        Ok(ImportSession {
            url: a.import_url,
            expires: a.expiration_date_time,
        })
    }

    /// An importer for this mailbox.
    pub async fn importer(&self) -> Result<Importer> {
        Ok(Importer {
            mailbox: self.clone(),
            mailbox_id: self.mailbox_id().await?,
            session: None,
            sessions_created: 0,
        })
    }
}

impl Importer {
    /// Posts one item (FastTransfer stream bytes) into `folder`; a session
    /// that has expired, or that the service no longer takes, is renewed
    /// once and the item sent again.
    pub async fn import(&mut self, folder: &str, data: &[u8]) -> Result<ImportedItem> {
        let op = self.mailbox.op("import item");
        let body = json!({ "FolderId": folder, "Mode": "create", "Data": STANDARD.encode(data) });
        let mut renewed = false;
        loop {
            let fresh = self
                .session
                .as_ref()
                .is_some_and(|s| chrono::Utc::now() + SESSION_MARGIN < s.expires);
            if !fresh {
                self.session = Some(self.mailbox.create_import_session(&self.mailbox_id).await?);
                self.sessions_created += 1;
            }
            let url = self.session.as_ref().expect("session").url.clone();
            let mut req = Req::new(op.clone(), Method::POST, url).json(body.clone());
            req.bearer = false;
            let answer = self.mailbox.send(&req, &[401, 403, 404]).await?;
            if (200..300).contains(&answer.status) {
                return answer.json(&op);
            }
            if renewed {
                return Err(http_error(&op, answer.status, &answer.body));
            }
            renewed = true;
            self.session = None;
        }
    }

    /// The Exchange mailbox id the items go into.
    pub fn mailbox_id(&self) -> &str {
        &self.mailbox_id
    }

    /// Renewal for tests and long pauses: forget the session.
    pub fn session(&self) -> Option<&ImportSession> {
        self.session.as_ref()
    }
}
