//! Messages: created as received mail (the JSON path with the MAPI
//! properties that make an item sent and delivered, not a draft), large
//! attachments through upload sessions, the origin stamp and the lookup by
//! it, MIME in and out, and the state a flag sync changes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Body, Mailbox, Req};
use crate::model::{Address, Message, NewAttachment, NewMessage, Origin};
use crate::{Error, Result};

/// PR_MESSAGE_FLAGS: present without MSGFLAG_UNSENT (0x8), the item is
/// not a draft; MSGFLAG_READ is 0x1.
pub const PR_MESSAGE_FLAGS: &str = "Integer 0x0E07";
/// PR_MESSAGE_DELIVERY_TIME: when the item was received.
pub const PR_MESSAGE_DELIVERY_TIME: &str = "SystemTime 0x0E06";
/// PR_CLIENT_SUBMIT_TIME: when the item was sent.
pub const PR_CLIENT_SUBMIT_TIME: &str = "SystemTime 0x0039";
/// The named property holding an item's `Origin` (mailferry's own
/// property set).
pub const ORIGIN_PROPERTY: &str =
    "String {5f1c3e0a-7d2b-4c8e-9a61-3b0d2f4e8c17} Name mailferryOrigin";
/// The origin of an item whose attachments are still being uploaded.
const PARTIAL: &str = "partial ";

/// Requests above this go as a create plus upload sessions: Graph refuses
/// bodies over about 4 MB, and base64 adds a third.
pub const INLINE_LIMIT: usize = 3 * 1024 * 1024;
/// One PUT of an upload session: under Outlook's 4 MB, a multiple of 320 KiB.
pub const UPLOAD_CHUNK: usize = 10 * 320 * 1024;
/// What `message` selects.
pub const MESSAGE_SELECT: &str = "id,subject,isRead,isDraft,receivedDateTime,sentDateTime,categories,flag,parentFolderId,internetMessageId,hasAttachments";

/// What a lookup by origin found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// The item, created whole.
    Complete(Box<Message>),
    /// Items whose creation stopped half-way (attachments missing): delete
    /// them and create the item again.
    Partial(Vec<Message>),
}

fn recipient(a: &Address) -> Value {
    json!({ "emailAddress": { "name": a.name, "address": a.address } })
}

fn attachment_json(a: &NewAttachment) -> Value {
    let mut v = json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": a.name,
        "contentType": a.content_type,
        "contentBytes": STANDARD.encode(&a.content),
        "isInline": a.content_id.is_some(),
    });
    if let Some(cid) = &a.content_id {
        v["contentId"] = json!(cid);
    }
    v
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The JSON create of `m`, with the attachments in `inline` only, and the
/// origin stamped as partial when `partial`.
fn create_json(m: &NewMessage, inline: &[&NewAttachment], partial: bool) -> Value {
    let mut props = vec![
        json!({ "id": PR_MESSAGE_FLAGS, "value": if m.is_read { "1" } else { "0" } }),
        json!({ "id": PR_MESSAGE_DELIVERY_TIME, "value": time(&m.received) }),
        json!({ "id": PR_CLIENT_SUBMIT_TIME, "value": time(&m.sent.unwrap_or(m.received)) }),
    ];
    if let Some(o) = &m.origin {
        let value = if partial {
            format!("{PARTIAL}{}", o.value())
        } else {
            o.value()
        };
        props.push(json!({ "id": ORIGIN_PROPERTY, "value": value }));
    }
    let mut v = json!({
        "subject": m.subject,
        "body": { "contentType": if m.body_is_html { "html" } else { "text" }, "content": m.body },
        "toRecipients": m.to.iter().map(recipient).collect::<Vec<_>>(),
        "ccRecipients": m.cc.iter().map(recipient).collect::<Vec<_>>(),
        "bccRecipients": m.bcc.iter().map(recipient).collect::<Vec<_>>(),
        "replyTo": m.reply_to.iter().map(recipient).collect::<Vec<_>>(),
        "isRead": m.is_read,
        "flag": { "flagStatus": if m.flagged { "flagged" } else { "notFlagged" } },
        "categories": m.categories,
        "singleValueExtendedProperties": props,
    });
    if let Some(f) = &m.from {
        v["from"] = recipient(f);
        v["sender"] = recipient(f);
    }
    if let Some(id) = &m.internet_message_id {
        v["internetMessageId"] = json!(id);
    }
    if !m.headers.is_empty() {
        v["internetMessageHeaders"] = m
            .headers
            .iter()
            .map(|(n, val)| json!({ "name": n, "value": val }))
            .collect();
    }
    if !inline.is_empty() {
        v["attachments"] = inline.iter().map(|a| attachment_json(a)).collect();
    }
    v
}

impl Mailbox {
    /// Creates `m` in `folder` as received mail: not a draft, with its
    /// received and sent times, read state, flag, categories and origin.
    /// Attachments too large for one request go through upload sessions;
    /// until they are all there the item's origin says it is partial.
    pub async fn create_message(&self, folder: &str, m: &NewMessage) -> Result<Message> {
        if m.headers
            .iter()
            .any(|(n, _)| !n.to_ascii_lowercase().starts_with("x-"))
        {
            return Err(Error::Invalid(
                "Graph takes only x- headers on a new message".into(),
            ));
        }
        let op = self.op("create message");
        let url = self.url(&format!("/mailFolders/{folder}/messages"));
        // Small attachments ride in the create while it stays under the limit.
        let mut inline: Vec<&NewAttachment> = Vec::new();
        let mut large: Vec<&NewAttachment> = Vec::new();
        let mut size = create_json(m, &[], false).to_string().len();
        let mut by_size: Vec<&NewAttachment> = m.attachments.iter().collect();
        by_size.sort_by_key(|a| a.content.len());
        for a in by_size {
            let grown = a.content.len().div_ceil(3) * 4 + a.name.len() + 200;
            if size + grown <= INLINE_LIMIT {
                size += grown;
                inline.push(a);
            } else {
                large.push(a);
            }
        }
        let partial = !large.is_empty() && m.origin.is_some();
        let created: Message = self
            .call(Req::new(op.clone(), Method::POST, url).json(create_json(m, &inline, partial)))
            .await?;
        for a in large {
            self.upload_attachment(&created.id, a).await?;
        }
        if partial && let Some(o) = &m.origin {
            self.stamp(&created.id, o).await?;
        }
        Ok(created)
    }

    /// Attaches `a` to message `id` through an upload session: chunks of
    /// `UPLOAD_CHUNK` PUT to the session's pre-authenticated URL.
    pub async fn upload_attachment(&self, id: &str, a: &NewAttachment) -> Result<()> {
        let op = self.op("upload attachment");
        let mut item = json!({
            "attachmentType": "file",
            "name": a.name,
            "size": a.content.len(),
            "contentType": a.content_type,
            "isInline": a.content_id.is_some(),
        });
        if let Some(cid) = &a.content_id {
            item["contentId"] = json!(cid);
        }
        let session: Value = self
            .call(
                Req::new(
                    op.clone(),
                    Method::POST,
                    self.url(&format!("/messages/{id}/attachments/createUploadSession")),
                )
                .json(json!({ "AttachmentItem": item })),
            )
            .await?;
        let upload_url = session["uploadUrl"]
            .as_str()
            .ok_or_else(|| Error::Protocol {
                op: op.clone(),
                reason: "no uploadUrl".into(),
            })?;
        let total = a.content.len();
        let mut start = 0;
        while start < total || total == 0 {
            let end = (start + UPLOAD_CHUNK).min(total);
            let mut req = Req::new(op.clone(), Method::PUT, upload_url.to_string());
            req.bearer = false;
            req.headers.push((
                "content-range",
                format!("bytes {start}-{}/{total}", end.max(1) - 1),
            ));
            req.body = Body::Bytes {
                bytes: a.content[start..end].to_vec(),
                content_type: "application/octet-stream",
            };
            let answer = self.send(&req, &[]).await?;
            if answer.status == 201 || total == 0 {
                return Ok(());
            }
            // The service names the next range it expects; follow it.
            let next: Value = answer.json(&op).unwrap_or(Value::Null);
            start = next["nextExpectedRanges"][0]
                .as_str()
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(end);
        }
        Err(Error::Protocol {
            op,
            reason: "the upload session did not finish after its last byte".into(),
        })
    }

    /// Sets the origin on an existing item (after an import, or once an
    /// item's attachments are all there).
    pub async fn stamp(&self, id: &str, origin: &Origin) -> Result<()> {
        let op = self.op("stamp origin");
        let body = json!({ "singleValueExtendedProperties": [{ "id": ORIGIN_PROPERTY, "value": origin.value() }] });
        self.send(
            &Req::new(op, Method::PATCH, self.url(&format!("/messages/{id}"))).json(body),
            &[],
        )
        .await?;
        Ok(())
    }

    /// The items stamped with `origin`, in `folder` or anywhere in the
    /// mailbox: what settles an item in doubt before it is written again.
    pub async fn find_by_origin(&self, folder: Option<&str>, origin: &Origin) -> Result<Found> {
        let complete = self.find_stamped(folder, &origin.value()).await?;
        if let Some(m) = complete.into_iter().next() {
            return Ok(Found::Complete(Box::new(m)));
        }
        let partial = self
            .find_stamped(folder, &format!("{PARTIAL}{}", origin.value()))
            .await?;
        Ok(if partial.is_empty() {
            Found::Nothing
        } else {
            Found::Partial(partial)
        })
    }

    async fn find_stamped(&self, folder: Option<&str>, value: &str) -> Result<Vec<Message>> {
        let scope = folder.map_or(String::new(), |f| format!("/mailFolders/{f}"));
        let value = value.replace('\'', "''");
        let filter = format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{ORIGIN_PROPERTY}' and ep/value eq '{value}')"
        );
        // The value names a folder: `&`, `#` or `+` in it must not end the query.
        let filter: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let url = self.url(&format!(
            "{scope}/messages?$filter={filter}&$select={MESSAGE_SELECT}&$expand=singleValueExtendedProperties($filter=id eq '{ORIGIN_PROPERTY}')"
        ));
        self.collect(&self.op("find by origin"), url).await
    }

    /// The ids of the messages of `folder` that carry no origin.
    pub async fn unstamped(&self, folder: &str) -> Result<Vec<String>> {
        let url = self.url(&format!(
            "/mailFolders/{folder}/messages?$select=id&$top=100&$expand=singleValueExtendedProperties($filter=id eq '{ORIGIN_PROPERTY}')"
        ));
        let all: Vec<Message> = self
            .collect(&self.op("list unstamped messages"), url)
            .await?;
        Ok(all
            .into_iter()
            .filter(|m| m.single_value_extended_properties.is_empty())
            .map(|m| m.id)
            .collect())
    }

    /// One message, with the given extended properties expanded.
    pub async fn message(&self, id: &str, properties: &[&str]) -> Result<Message> {
        let mut url = self.url(&format!("/messages/{id}?$select={MESSAGE_SELECT}"));
        if !properties.is_empty() {
            let filter = properties
                .iter()
                .map(|p| format!("id eq '{p}'"))
                .collect::<Vec<_>>()
                .join(" or ");
            url.push_str(&format!(
                "&$expand=singleValueExtendedProperties($filter={filter})"
            ));
        }
        self.call(Req::new(self.op("read message"), Method::GET, url))
            .await
    }

    /// The messages of a folder (every page).
    pub async fn messages(&self, folder: &str) -> Result<Vec<Message>> {
        let url = self.url(&format!(
            "/mailFolders/{folder}/messages?$select={MESSAGE_SELECT}&$top=100"
        ));
        self.collect(&self.op("list messages"), url).await
    }

    /// Creates a message from MIME (base64 in a text/plain body). Exchange
    /// Online makes every such item a draft: for received mail use
    /// `create_message`, or the import API for full-fidelity items.
    pub async fn create_mime_draft(&self, folder: &str, mime: &[u8]) -> Result<Message> {
        let mut req = Req::new(
            self.op("create message from MIME"),
            Method::POST,
            self.url(&format!("/mailFolders/{folder}/messages")),
        );
        req.body = Body::Bytes {
            bytes: STANDARD.encode(mime).into_bytes(),
            content_type: "text/plain",
        };
        self.call(req).await
    }

    /// The MIME content of a message (`$value`).
    pub async fn mime(&self, id: &str) -> Result<Vec<u8>> {
        match self.mime_if_any(id).await? {
            Some(b) => Ok(b.to_vec()),
            None => Err(Error::Http {
                op: self.op("read MIME"),
                status: 404,
                code: "ErrorItemNotFound".into(),
                message: "no such message".into(),
            }),
        }
    }

    /// The MIME content of a message, `None` when it is gone.
    pub async fn mime_if_any(&self, id: &str) -> Result<Option<bytes::Bytes>> {
        let req = Req::new(
            self.op("read MIME"),
            Method::GET,
            self.url(&format!("/messages/{id}/$value")),
        );
        let a = self.send(&req, &[404]).await?;
        Ok((a.status != 404).then_some(a.body))
    }

    /// Sets read state, flag and, when given, categories (a flag sync).
    pub async fn update_state(
        &self,
        id: &str,
        is_read: bool,
        flagged: bool,
        categories: Option<&[String]>,
    ) -> Result<()> {
        let mut body = json!({
            "isRead": is_read,
            "flag": { "flagStatus": if flagged { "flagged" } else { "notFlagged" } },
        });
        if let Some(c) = categories {
            body["categories"] = json!(c);
        }
        self.send(
            &Req::new(
                self.op("update message"),
                Method::PATCH,
                self.url(&format!("/messages/{id}")),
            )
            .json(body),
            &[],
        )
        .await?;
        Ok(())
    }

    /// Deletes messages, up to twenty in each `$batch`; one already gone
    /// is not an error.
    pub async fn delete_messages(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(crate::batch::MAX_BATCH) {
            let parts = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| crate::batch::BatchPart {
                    id: (i + 1).to_string(),
                    method: Method::DELETE,
                    url: self.rel(&format!("/messages/{id}")),
                    body: None,
                    depends_on: Vec::new(),
                })
                .collect();
            for a in self.batch(parts).await? {
                if !matches!(a.status, 200..=299 | 404) {
                    return Err(Error::Http {
                        op: self.op("delete message"),
                        status: a.status,
                        code: a.body["error"]["code"].as_str().unwrap_or_default().into(),
                        message: a.body["error"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes a message; one already gone is not an error.
    pub async fn delete_message(&self, id: &str) -> Result<()> {
        let req = Req::new(
            self.op("delete message"),
            Method::DELETE,
            self.url(&format!("/messages/{id}")),
        );
        self.send(&req, &[404]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_marks_the_item_received_and_stamps_its_origin() {
        let m = NewMessage {
            subject: "s".into(),
            received: chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
                .unwrap()
                .into(),
            is_read: true,
            origin: Some(Origin {
                key: "INBOX/7:42".into(),
                digest: "abc".into(),
            }),
            ..Default::default()
        };
        let v = create_json(&m, &[], false);
        let props = v["singleValueExtendedProperties"].as_array().unwrap();
        let get = |id: &str| {
            props
                .iter()
                .find(|p| p["id"] == id)
                .map(|p| p["value"].as_str().unwrap().to_string())
        };
        let flags: u32 = get(PR_MESSAGE_FLAGS).unwrap().parse().unwrap();
        assert_eq!(flags & 0x8, 0, "no unsent bit");
        assert_eq!(flags & 0x1, 1, "read");
        assert_eq!(
            get(PR_MESSAGE_DELIVERY_TIME).unwrap(),
            "2024-05-01T10:00:00Z"
        );
        assert_eq!(get(PR_CLIENT_SUBMIT_TIME).unwrap(), "2024-05-01T10:00:00Z");
        assert_eq!(get(ORIGIN_PROPERTY).unwrap(), "abc INBOX/7:42");
        assert_eq!(
            Origin::parse("abc INBOX/7:42").unwrap(),
            m.origin.clone().unwrap()
        );
        let v = create_json(&m, &[], true);
        assert!(v.to_string().contains("partial abc INBOX/7:42"));
    }
}
