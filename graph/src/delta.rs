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

pub(crate) trait Removable {
    fn removed_id(&self) -> Option<&str>;
}

/// Where a delta page leads: the round's next page, or the round's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeltaLink {
    Next(String),
    Delta(String),
}

/// One page of a delta round.
pub(crate) struct DeltaPage<T> {
    pub changed: Vec<T>,
    /// Ids of items deleted or moved out.
    pub removed: Vec<String>,
    pub link: DeltaLink,
}

impl Removable for crate::items::BoxItem {
    fn removed_id(&self) -> Option<&str> {
        self.removed.as_ref().map(|_| self.id.as_str())
    }
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
            Some(l) => l.to_string(),
            None => first.clone(),
        };
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        loop {
            let Some(page) = self.delta_page::<T>(op, &url, None).await? else {
                if restarted || url == first {
                    return Err(Error::Http {
                        op: op.to_string(),
                        status: 410,
                        code: "SyncStateNotFound".into(),
                        message: "the delta round from the start was refused".into(),
                    });
                }
                tracing::info!(op, "delta link gone; starting over");
                restarted = true;
                changed.clear();
                removed.clear();
                url = first.clone();
                continue;
            };
            changed.extend(page.changed);
            removed.extend(page.removed);
            match page.link {
                DeltaLink::Next(next) => url = next,
                DeltaLink::Delta(delta) => {
                    return Ok(Delta {
                        changed,
                        removed,
                        delta_link: delta,
                        restarted,
                    });
                }
            }
        }
    }

    /// One page of a delta round at `url` (the first request's, or a link
    /// Graph gave), at most `max` items when given; `None` when the
    /// service no longer knows the link's state (`410 Gone`, or a 400
    /// naming the sync state).
    pub(crate) async fn delta_page<T: DeserializeOwned + Removable>(
        &self,
        op: &str,
        url: &str,
        max: Option<usize>,
    ) -> Result<Option<DeltaPage<T>>> {
        self.check_link(op, url)?;
        let mut req = Req::new(op.to_string(), Method::GET, url.to_string());
        if let Some(max) = max {
            req.headers
                .push(("prefer", format!("odata.maxpagesize={}", max.max(1))));
        }
        let answer = self.send(&req, &[400, 410]).await?;
        if answer.status == 410 {
            return Ok(None);
        }
        if answer.status == 400 {
            let e = http_error(op, 400, &answer.body);
            let stale = matches!(&e, Error::Http { code, .. }
                if code.to_ascii_lowercase().contains("syncstate")
                    || code.to_ascii_lowercase().contains("deltatoken"));
            return if stale { Ok(None) } else { Err(e) };
        }
        let page: Value = answer.json(op)?;
        let mut changed = Vec::new();
        let mut removed = Vec::new();
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
        let link = if let Some(next) = page["@odata.nextLink"].as_str() {
            self.check_link(op, next)?;
            DeltaLink::Next(next.to_string())
        } else if let Some(delta) = page["@odata.deltaLink"].as_str() {
            self.check_link(op, delta)?;
            DeltaLink::Delta(delta.to_string())
        } else {
            return Err(Error::Protocol {
                op: op.to_string(),
                reason: "a delta page with neither a next nor a delta link".into(),
            });
        };
        Ok(Some(DeltaPage {
            changed,
            removed,
            link,
        }))
    }
}
