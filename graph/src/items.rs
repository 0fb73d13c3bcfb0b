//! The Exchange mailbox API (`/admin/exchange/mailboxes/{id}`): folders of
//! any class (`mailboxFolder`, whose `type` is the container class such as
//! `IPF.Appointment`), the items they hold (`mailboxItem`), and
//! `exportItems`. The mail resources (`mailFolders`) list mail folders
//! only; calendar, contacts and tasks folders are reached here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::Result;
use crate::client::{Mailbox, Req};

/// Items per `exportItems` (the service's maximum).
pub const EXPORT_BATCH: usize = 20;

/// A folder of the mailbox API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BoxFolder {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub child_folder_count: u32,
    #[serde(default)]
    pub total_item_count: u32,
    /// The container class (`IPF.Note`, `IPF.Appointment`, ...).
    #[serde(default, rename = "type")]
    pub class: String,
}

/// An item of the mailbox API, as listed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BoxItem {
    pub id: String,
    /// The item's message class.
    #[serde(default, rename = "type")]
    pub class: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
    /// Set on items a delta reports as deleted.
    #[serde(rename = "@removed", default)]
    pub removed: Option<serde_json::Value>,
}

/// One item's full-fidelity stream.
#[derive(Debug, Clone)]
pub struct ExportedItem {
    pub id: String,
    pub data: Vec<u8>,
}

impl Mailbox {
    pub(crate) fn boxes(&self, mailbox_id: &str, rest: &str) -> String {
        format!(
            "{}/admin/exchange/mailboxes/{mailbox_id}{rest}",
            self.graph().base()
        )
    }

    /// Every folder below the mailbox's root, with its path of display
    /// names, parents first.
    pub async fn box_folders(&self, mailbox_id: &str) -> Result<Vec<(BoxFolder, Vec<String>)>> {
        let op = self.op("list mailbox folders");
        let top: Vec<BoxFolder> = self
            .collect(&op, self.boxes(mailbox_id, "/folders?$top=100"))
            .await?;
        let mut queue: Vec<(BoxFolder, Vec<String>)> =
            top.into_iter().rev().map(|f| (f, Vec::new())).collect();
        let mut out = Vec::new();
        while let Some((folder, mut path)) = queue.pop() {
            path.push(folder.display_name.clone());
            if folder.child_folder_count > 0 {
                let url = format!("/folders/{}/childFolders?$top=100", folder.id);
                let kids: Vec<BoxFolder> = self.collect(&op, self.boxes(mailbox_id, &url)).await?;
                for k in kids.into_iter().rev() {
                    queue.push((k, path.clone()));
                }
            }
            out.push((folder, path));
        }
        Ok(out)
    }

    /// One folder of the mailbox API, with its count.
    pub async fn box_folder(&self, mailbox_id: &str, id: &str) -> Result<BoxFolder> {
        let url = self.boxes(mailbox_id, &format!("/folders/{id}"));
        self.call(Req::new(self.op("read mailbox folder"), Method::GET, url))
            .await
    }

    /// Creates `name` of container class `class` under `parent` (the root
    /// when `None`); one of that name already there is answered instead.
    pub async fn create_box_folder(
        &self,
        mailbox_id: &str,
        parent: Option<&str>,
        name: &str,
        class: &str,
    ) -> Result<BoxFolder> {
        let op = self.op(&format!("create mailbox folder {name:?}"));
        let list = match parent {
            Some(p) => format!("/folders/{p}/childFolders"),
            None => "/folders".to_string(),
        };
        let req = Req::new(op.clone(), Method::POST, self.boxes(mailbox_id, &list))
            .json(json!({ "displayName": name, "type": class }));
        let answer = self.send(&req, &[409]).await?;
        if answer.status != 409 {
            return answer.json(&op);
        }
        let found: Vec<BoxFolder> = self
            .collect(&op, self.boxes(mailbox_id, &format!("{list}?$top=100")))
            .await?;
        found
            .into_iter()
            .find(|f| f.display_name.eq_ignore_ascii_case(name))
            .ok_or_else(|| crate::Error::Http {
                op,
                status: 409,
                code: "ErrorFolderExists".into(),
                message: "the folder exists but is not listed".into(),
            })
    }

    /// The items of a folder of the mailbox API.
    pub async fn box_items(&self, mailbox_id: &str, folder: &str) -> Result<Vec<BoxItem>> {
        let url = format!("/folders/{folder}/items?$select=id,type,size&$top=100");
        self.collect(&self.op("list mailbox items"), self.boxes(mailbox_id, &url))
            .await
    }

    /// Deletes an item of a folder of `class` (`IPF.Appointment`, ...) by
    /// the resource of its kind: the mailbox API lists and exports items
    /// but deletes none.
    pub async fn delete_item(&self, class: &str, id: &str) -> Result<()> {
        let rest = if class.starts_with("IPF.Appointment") {
            format!("/events/{id}")
        } else if class.starts_with("IPF.Contact") {
            format!("/contacts/{id}")
        } else if class.starts_with("IPF.Task") {
            // Outlook tasks (beta); To Do's lists name items otherwise.
            format!("/outlook/tasks/{id}")
        } else {
            format!("/messages/{id}")
        };
        let req = Req::new(self.op("delete item"), Method::DELETE, self.url(&rest));
        self.send(&req, &[404]).await.map(|_| ())
    }

    /// The full-fidelity streams of items, [`EXPORT_BATCH`] per request;
    /// an item the service cannot export is left out.
    pub async fn export_items(
        &self,
        mailbox_id: &str,
        ids: &[String],
    ) -> Result<Vec<ExportedItem>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct One {
            item_id: String,
            #[serde(default)]
            data: Option<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            value: Vec<One>,
        }
        let op = self.op("export items");
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(EXPORT_BATCH) {
            let req = Req::new(
                op.clone(),
                Method::POST,
                self.boxes(mailbox_id, "/exportItems"),
            )
            .json(json!({ "itemIds": chunk }));
            let a: Answer = self.call(req).await?;
            for one in a.value {
                let Some(data) = one.data.and_then(|d| STANDARD.decode(d).ok()) else {
                    continue;
                };
                out.push(ExportedItem {
                    id: one.item_id,
                    data,
                });
            }
        }
        Ok(out)
    }
}
