//! Mail folders: the whole tree with each folder's path and well-known
//! name, and folders created by name under a parent.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::json;

use crate::Result;
use crate::batch::BatchPart;
use crate::client::{Mailbox, Req};
use crate::model::{FolderNode, MailFolder, WellKnown};

impl Mailbox {
    /// The ids of the well-known folders this mailbox has (one `$batch`).
    pub async fn well_known_folders(&self) -> Result<HashMap<WellKnown, String>> {
        let parts = WellKnown::ALL
            .iter()
            .map(|w| {
                BatchPart::get(
                    w.graph_name(),
                    self.rel(&format!("/mailFolders/{}?$select=id", w.graph_name())),
                )
            })
            .collect();
        let mut out = HashMap::new();
        for (w, a) in WellKnown::ALL.iter().zip(self.batch(parts).await?) {
            // A mailbox without an archive folder answers 404 for it.
            if a.status == 200
                && let Some(id) = a.body["id"].as_str()
            {
                out.insert(*w, id.to_string());
            }
        }
        Ok(out)
    }

    /// Every folder below the root of the mailbox, hidden ones included,
    /// parents before their children.
    pub async fn folders(&self) -> Result<Vec<FolderNode>> {
        let op = self.op("list folders");
        let well_known: HashMap<String, WellKnown> = self
            .well_known_folders()
            .await?
            .into_iter()
            .map(|(w, id)| (id, w))
            .collect();
        let mut out = Vec::new();
        let top: Vec<MailFolder> = self
            .collect(
                &op,
                self.url("/mailFolders?includeHiddenFolders=true&$top=100"),
            )
            .await?;
        let mut queue: Vec<(MailFolder, Vec<String>)> =
            top.into_iter().map(|f| (f, Vec::new())).collect();
        queue.reverse();
        while let Some((folder, parent_path)) = queue.pop() {
            let mut path = parent_path;
            path.push(folder.display_name.clone());
            if folder.child_folder_count > 0 {
                let children: Vec<MailFolder> = self
                    .collect(
                        &op,
                        self.url(&format!(
                            "/mailFolders/{}/childFolders?includeHiddenFolders=true&$top=100",
                            folder.id
                        )),
                    )
                    .await?;
                for c in children.into_iter().rev() {
                    queue.push((c, path.clone()));
                }
            }
            out.push(FolderNode {
                well_known: well_known.get(&folder.id).copied(),
                folder,
                path,
            });
        }
        Ok(out)
    }

    /// One folder, with its counts.
    pub async fn folder(&self, id: &str) -> Result<MailFolder> {
        let req = Req::new(
            self.op("read folder"),
            Method::GET,
            self.url(&format!("/mailFolders/{id}")),
        );
        self.call(req).await
    }

    /// Creates `name` under `parent` (a folder id, or the root when
    /// `None`); a folder of that name already there is answered instead.
    pub async fn create_folder(&self, parent: Option<&str>, name: &str) -> Result<MailFolder> {
        let op = self.op(&format!("create folder {name:?}"));
        let list = match parent {
            Some(p) => format!("/mailFolders/{p}/childFolders"),
            None => "/mailFolders".to_string(),
        };
        let req = Req::new(op.clone(), Method::POST, self.url(&list))
            .json(json!({ "displayName": name, "isHidden": false }));
        let answer = self.send(&req, &[409]).await?;
        if answer.status != 409 {
            return answer.json(&op);
        }
        let escaped = name.replace('\'', "''");
        let found: Vec<MailFolder> = self
            .collect(
                &op,
                self.url(&format!(
                    "{list}?includeHiddenFolders=true&$filter=displayName eq '{escaped}'"
                )),
            )
            .await?;
        found
            .into_iter()
            .find(|f| f.display_name == name)
            .ok_or_else(|| crate::Error::Http {
                op,
                status: 409,
                code: "ErrorFolderExists".into(),
                message: "the folder exists but is not listed".into(),
            })
    }
}
