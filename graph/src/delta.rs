//! Delta queries: a folder's messages and the mailbox's folders, changed
//! since a stored delta link. A link the service no longer knows (`410
//! Gone`) starts the round over from nothing, flagged as restarted.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{Mailbox, Req, http_error};
use crate::messages::ORIGIN_PROPERTY;
use crate::model::{Delta, MailFolder, Message};
use crate::{Error, Result};

/// What a message delta selects.
const DELTA_SELECT: &str = "subject,isRead,isDraft,receivedDateTime,categories,flag,parentFolderId";

trait Removable {
    fn removed_id(&self) -> Option<&str>;
}

impl Removable for Message {
    fn removed_id(&self) -> Option<&str> {
        self.removed.as_ref().map(|_| self.id.as_str())
    }
}

impl Removable for MailFolder {
    fn removed_id(&self) -> Option<&str> {
        self.removed.as_ref().map(|_| self.id.as_str())
    }
}

impl Mailbox {
    /// Messages of `folder` changed since `link` (all of them without one).
    pub async fn message_delta(&self, folder: &str, link: Option<&str>) -> Result<Delta<Message>> {
        let first = self.url(&format!(
            "/mailFolders/{folder}/messages/delta?$select={DELTA_SELECT}"
        ));
        self.delta(&self.op("message delta"), first, link).await
    }

    /// As [`Mailbox::message_delta`], each message with its origin stamp
    /// expanded; Graph keeps the query in the links it hands out.
    pub async fn stamped_message_delta(
        &self,
        folder: &str,
        link: Option<&str>,
    ) -> Result<Delta<Message>> {
        let expand: String = form_urlencoded::byte_serialize(
            format!("singleValueExtendedProperties($filter=id eq '{ORIGIN_PROPERTY}')").as_bytes(),
        )
        .collect();
        let first = self.url(&format!(
            "/mailFolders/{folder}/messages/delta?$select={DELTA_SELECT}&$expand={expand}"
        ));
        self.delta(&self.op("message delta"), first, link).await
    }

    /// Folders changed since `link` (all of them without one).
    pub async fn folder_delta(&self, link: Option<&str>) -> Result<Delta<MailFolder>> {
        let first = self.url("/mailFolders/delta");
        self.delta(&self.op("folder delta"), first, link).await
    }

    async fn delta<T: DeserializeOwned + Removable>(
        &self,
        op: &str,
        first: String,
        link: Option<&str>,
    ) -> Result<Delta<T>> {
        let mut restarted = false;
        let mut url = match link {
            Some(l) => {
                self.check_link(op, l)?;
                l.to_string()
            }
            None => first.clone(),
        };
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        loop {
            let answer = self
                .send(&Req::new(op.to_string(), Method::GET, url.clone()), &[410])
                .await?;
            if answer.status == 410 {
                if restarted || url == first {
                    return Err(http_error(op, 410, &answer.body));
                }
                tracing::info!(op, "delta link gone; starting over");
                restarted = true;
                changed.clear();
                removed.clear();
                url = first.clone();
                continue;
            }
            let page: Value = answer.json(op)?;
            for v in page["value"].as_array().into_iter().flatten() {
                let item: T = serde_json::from_value(v.clone()).map_err(|e| Error::Protocol {
                    op: op.to_string(),
                    reason: e.to_string(),
                })?;
                match item.removed_id() {
                    Some(id) => removed.push(id.to_string()),
                    None => changed.push(item),
                }
            }
            if let Some(next) = page["@odata.nextLink"].as_str() {
                self.check_link(op, next)?;
                url = next.to_string();
            } else if let Some(delta) = page["@odata.deltaLink"].as_str() {
                self.check_link(op, delta)?;
                return Ok(Delta {
                    changed,
                    removed,
                    delta_link: delta.to_string(),
                    restarted,
                });
            } else {
                return Err(Error::Protocol {
                    op: op.to_string(),
                    reason: "a delta page with neither a next nor a delta link".into(),
                });
            }
        }
    }
}
