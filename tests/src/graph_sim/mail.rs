//! The mail part of Graph as the simulator keeps it: each user's folders
//! and messages, and the sessions and delta links handed out for them.
//!
//! Items are drafts exactly when Exchange Online makes them drafts: a MIME
//! create always does, a JSON create does unless it sets PR_MESSAGE_FLAGS
//! (0x0E07) without MSGFLAG_UNSENT (0x8).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};

use super::filter;
use super::{Answer, Req, State};

/// Graph refuses request bodies above this.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The largest attachment an upload session takes.
const MAX_ATTACHMENT: u64 = 150 * 1024 * 1024;

pub(crate) struct User {
    pub id: String,
    pub address: String,
    pub mailbox_id: String,
    pub folders: BTreeMap<String, Folder>,
    pub messages: BTreeMap<String, SimMessage>,
    /// Deleted items and folders: (id, folder it was in, version).
    pub tombstones: Vec<(String, String, u64)>,
    pub folder_tombstones: Vec<(String, u64)>,
}

pub(crate) struct Folder {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub well_known: Option<&'static str>,
    pub hidden: bool,
    pub version: u64,
    /// The container class (`IPF.Note`, `IPF.Appointment`, ...), the
    /// mailbox API's `type`.
    pub class: String,
}

/// A message as the simulator holds it; tests read these.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    pub id: String,
    pub folder_id: String,
    /// The folder's path of display names, filled when handed to a test.
    pub folder_path: String,
    pub version: u64,
    pub created: String,
    pub subject: String,
    pub body_type: String,
    pub body: String,
    pub from: Value,
    pub to: Value,
    pub cc: Value,
    pub bcc: Value,
    pub reply_to: Value,
    pub is_read: bool,
    pub is_draft: bool,
    pub flag: String,
    pub categories: Vec<String>,
    pub received: String,
    pub sent: Option<String>,
    pub internet_message_id: String,
    pub headers: Value,
    /// Single-value extended properties, as set (id, value).
    pub ext: Vec<(String, String)>,
    /// (name, content type, bytes, content id).
    pub attachments: Vec<(String, String, Vec<u8>, Option<String>)>,
    /// The bytes of a MIME create, kept as given.
    pub mime: Option<Vec<u8>>,
    /// The FastTransfer stream of an imported item, kept as given.
    pub fts: Option<Vec<u8>>,
    pub class: String,
    /// How the item came: `delivered`, `mime` or `json` (a create of
    /// `messages`), `import` (the import API).
    pub made_by: &'static str,
}

pub(crate) struct DeltaMark {
    pub user: String,
    pub folder: Option<String>,
    /// A mailbox API item delta (`mailboxItem`), not a message delta.
    pub items: bool,
    pub since: u64,
    /// The first request's `$select` and `$expand`: Graph encodes the
    /// query options into the links it hands out.
    pub query: Vec<(String, String)>,
}

pub(crate) struct DeltaPage {
    pub user: String,
    pub folder: Option<String>,
    pub items: bool,
    pub items_left: Vec<Value>,
    pub until: u64,
    pub query: Vec<(String, String)>,
}

pub(crate) struct UploadSession {
    pub app: String,
    pub user: String,
    pub message: String,
    pub name: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub size: u64,
    pub received: Vec<u8>,
    pub expires: Instant,
}

pub(crate) struct ImportSession {
    pub app: String,
    pub user: String,
    pub expires: Instant,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn iso(t: Instant) -> String {
    let left = t.saturating_duration_since(Instant::now());
    (chrono::Utc::now() + chrono::Duration::from_std(left).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A MAPI property tag from an extended property id (`Integer 0x0E07`).
fn tag(id: &str) -> Option<(String, u32)> {
    let (ty, rest) = id.split_once(' ')?;
    let hex = rest
        .trim()
        .strip_prefix("0x")
        .or_else(|| rest.trim().strip_prefix("0X"))?;
    Some((ty.to_ascii_lowercase(), u32::from_str_radix(hex, 16).ok()?))
}

fn ext_value<'a>(ext: &'a [(String, String)], ty: &str, t: u32) -> Option<&'a str> {
    ext.iter()
        .find(|(id, _)| tag(id) == Some((ty.to_string(), t)))
        .map(|(_, v)| v.as_str())
}

/// The time of a SystemTime property, as Graph shows times.
fn normalize_time(v: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(v).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

const WELL_KNOWN: [(&str, &str, bool); 8] = [
    ("msgfolderroot", "Top of Information Store", true),
    ("inbox", "Inbox", false),
    ("drafts", "Drafts", false),
    ("sentitems", "Sent Items", false),
    ("deleteditems", "Deleted Items", false),
    ("junkemail", "Junk Email", false),
    ("archive", "Archive", false),
    ("outbox", "Outbox", false),
];

impl State {
    pub(crate) fn add_user(&mut self, address: &str) -> String {
        let id = uuid_like(self.next_id + 1);
        self.next_id += 1;
        let mailbox_id = format!("MBX:{}@{}", &id[..8], &self.cfg.tenant_id[..8]);
        let mut user = User {
            id: id.clone(),
            address: address.to_string(),
            mailbox_id,
            folders: BTreeMap::new(),
            messages: BTreeMap::new(),
            tombstones: Vec::new(),
            folder_tombstones: Vec::new(),
        };
        let mut root = None;
        for (wk, name, hidden) in WELL_KNOWN {
            let fid = self.new_id("AQMkAD");
            let version = self.bump();
            user.folders.insert(
                fid.clone(),
                Folder {
                    id: fid.clone(),
                    name: name.into(),
                    parent: root.clone(),
                    well_known: Some(wk),
                    hidden,
                    version,
                    class: "IPF.Note".into(),
                },
            );
            if root.is_none() {
                root = Some(fid);
            }
        }
        self.users.insert(address.to_ascii_lowercase(), user);
        id
    }

    /// The users map's key for an address or object id.
    pub(crate) fn user_key(&self, u: &str) -> Option<String> {
        let lower = u.to_ascii_lowercase();
        if self.users.contains_key(&lower) {
            return Some(lower);
        }
        self.users
            .iter()
            .find(|(_, x)| x.id == u)
            .map(|(k, _)| k.clone())
    }

    fn folder_path(user: &User, id: &str) -> String {
        let mut names = Vec::new();
        let mut at = Some(id.to_string());
        while let Some(f) = at.and_then(|i| user.folders.get(&i)) {
            if f.well_known == Some("msgfolderroot") {
                break;
            }
            names.push(f.name.clone());
            at = f.parent.clone();
        }
        names.reverse();
        names.join("/")
    }

    pub(crate) fn user_messages(&self, address: &str) -> Vec<SimMessage> {
        let Some(u) = self.users.get(&address.to_ascii_lowercase()) else {
            return Vec::new();
        };
        u.messages
            .values()
            .map(|m| {
                let mut m = m.clone();
                m.folder_path = State::folder_path(u, &m.folder_id);
                m
            })
            .collect()
    }

    pub(crate) fn user_folders(&self, address: &str) -> Vec<(String, String, Option<String>)> {
        let Some(u) = self.users.get(&address.to_ascii_lowercase()) else {
            return Vec::new();
        };
        u.folders
            .values()
            .filter(|f| f.well_known != Some("msgfolderroot"))
            .map(|f| {
                (
                    f.id.clone(),
                    State::folder_path(u, &f.id),
                    f.well_known.map(str::to_string),
                )
            })
            .collect()
    }

    /// (path, container class) of each folder.
    pub(crate) fn user_folder_classes(&self, address: &str) -> Vec<(String, String)> {
        let Some(u) = self.users.get(&address.to_ascii_lowercase()) else {
            return Vec::new();
        };
        u.folders
            .values()
            .filter(|f| f.well_known != Some("msgfolderroot"))
            .map(|f| (State::folder_path(u, &f.id), f.class.clone()))
            .collect()
    }

    /// A mail folder `name` under `parent` (an id or a well-known name),
    /// or below the root: its id.
    pub(crate) fn make_folder(
        &mut self,
        address: &str,
        parent: Option<&str>,
        name: &str,
    ) -> String {
        let key = address.to_ascii_lowercase();
        let parent = match parent {
            Some(p) => resolve_folder(&self.users[&key], p).expect("parent"),
            None => self.root(&key),
        };
        match self.add_folder(&key, &parent, name, false, "IPF.Note") {
            Ok(id) => id,
            Err(_) => panic!("folder {name} exists"),
        }
    }

    /// Renames a folder and moves it under `parent` (a folder id) when
    /// given, as its owner would; the folder delta shows it again.
    pub(crate) fn rename_folder(
        &mut self,
        address: &str,
        id: &str,
        name: &str,
        parent: Option<&str>,
    ) {
        let key = address.to_ascii_lowercase();
        let version = self.bump();
        let f = self
            .users
            .get_mut(&key)
            .and_then(|u| u.folders.get_mut(id))
            .expect("folder");
        f.name = name.to_string();
        if let Some(p) = parent {
            f.parent = Some(p.to_string());
        }
        f.version = version;
    }

    pub(crate) fn deliver(&mut self, address: &str, folder: &str, subject: &str) -> String {
        let key = address.to_ascii_lowercase();
        let fid = resolve_folder(&self.users[&key], folder).expect("folder");
        self.store_new(
            &key,
            SimMessage {
                folder_id: fid,
                subject: subject.into(),
                sent: Some(now()),
                class: "IPM.Note".into(),
                ..blank()
            },
        )
    }

    /// Stores a new item of user `key` under a new id and version, made
    /// and received now: its id.
    fn store_new(&mut self, key: &str, m: SimMessage) -> String {
        let id = self.new_id("AAMkAG");
        let version = self.bump();
        let m = SimMessage {
            id: id.clone(),
            version,
            created: now(),
            received: now(),
            ..m
        };
        self.users
            .get_mut(key)
            .expect("user")
            .messages
            .insert(id.clone(), m);
        id
    }

    /// An item of a class (`IPM.Appointment`, ...) with its full-fidelity
    /// stream, in the folder `folder` below the root, made with
    /// `folder_class` when missing.
    pub(crate) fn add_item(
        &mut self,
        address: &str,
        folder: &str,
        folder_class: &str,
        class: &str,
        data: &[u8],
    ) -> String {
        let key = address.to_ascii_lowercase();
        let root = self.root(&key);
        let fid = match self.users[&key]
            .folders
            .values()
            .find(|f| f.parent.as_deref() == Some(root.as_str()) && f.name == folder)
        {
            Some(f) => f.id.clone(),
            None => self
                .add_folder(&key, &root, folder, false, folder_class)
                .unwrap_or_else(|_| panic!("folder {folder}")),
        };
        self.store_new(
            &key,
            SimMessage {
                folder_id: fid,
                is_read: true,
                fts: Some(data.to_vec()),
                class: class.into(),
                ..blank()
            },
        )
    }

    /// A received message from MIME bytes, kept as given, with its state.
    pub(crate) fn deliver_mime(&mut self, address: &str, folder: &str, mime: &[u8]) -> String {
        let id = self.deliver(address, folder, "");
        let m = self.message_mut(address, &id);
        m.subject = mime_header(mime, "subject").unwrap_or_default();
        m.mime = Some(mime.to_vec());
        id
    }

    /// Changes an item as a client would: its state, or its stream; a
    /// delta shows it again.
    pub(crate) fn change_item(
        &mut self,
        address: &str,
        id: &str,
        state: Option<(bool, bool, Vec<String>)>,
        data: Option<&[u8]>,
    ) {
        let version = self.bump();
        let m = self.message_mut(address, id);
        if let Some((read, flagged, categories)) = state {
            m.is_read = read;
            m.flag = if flagged { "flagged" } else { "notFlagged" }.into();
            m.categories = categories;
        }
        if let Some(d) = data {
            m.fts = Some(d.to_vec());
        }
        m.version = version;
    }

    fn message_mut(&mut self, address: &str, id: &str) -> &mut SimMessage {
        self.users
            .get_mut(&address.to_ascii_lowercase())
            .expect("user")
            .messages
            .get_mut(id)
            .expect("item")
    }

    /// What `$value` serves for a message.
    pub(crate) fn value(&self, address: &str, id: &str) -> Option<Vec<u8>> {
        let m = self
            .users
            .get(&address.to_ascii_lowercase())?
            .messages
            .get(id)?;
        Some(m.mime.clone().unwrap_or_else(|| rebuild_mime(m)))
    }

    /// What `exportItems` serves for an item.
    pub(crate) fn exported(&self, address: &str, id: &str) -> Option<Vec<u8>> {
        let m = self
            .users
            .get(&address.to_ascii_lowercase())?
            .messages
            .get(id)?;
        Some(export_stream(m))
    }

    pub(crate) fn delete_message(&mut self, address: &str, id: &str) {
        let version = self.bump();
        let u = self
            .users
            .get_mut(&address.to_ascii_lowercase())
            .expect("user");
        if let Some(m) = u.messages.remove(id) {
            u.tombstones.push((m.id, m.folder_id, version));
        }
    }

    /// Deletes a folder for good (emptied from Deleted Items), with its
    /// messages; the folder delta shows it `@removed`. Departure: its
    /// child folders are left as they are (the tests delete leaves).
    pub(crate) fn delete_folder(&mut self, address: &str, id: &str) {
        let version = self.bump();
        let u = self
            .users
            .get_mut(&address.to_ascii_lowercase())
            .expect("user");
        u.folders.remove(id).expect("folder");
        let gone: Vec<String> = u
            .messages
            .values()
            .filter(|m| m.folder_id == id)
            .map(|m| m.id.clone())
            .collect();
        for m in gone {
            u.messages.remove(&m);
            u.tombstones.push((m, id.to_string(), version));
        }
        u.folder_tombstones.push((id.to_string(), version));
    }

    /// Graph's resources: `segs[0]` is the version, the rest the path.
    pub(crate) fn graph(&mut self, req: &Req, mailbox: &str, app: &str) -> Answer {
        if req.body.len() > MAX_BODY && req.segs[0] != "upload" && req.segs[0] != "import" {
            return Answer::error(
                413,
                "RequestEntityTooLarge",
                "The request body is too large.",
            );
        }
        let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
        let m = req.method.as_str();
        match segs.as_slice() {
            ["upload", tok] if m == "PUT" => return self.upload_chunk(tok, req),
            ["import", tok] if m == "POST" => return self.import_item(tok, req),
            _ => {}
        }
        let base = format!("{}/{}", self.base, segs[0]);
        let rest = &segs[1..];
        if let ["admin", "exchange", "mailboxes", mid, "folders", tail @ ..] = rest {
            let Some(key) = self
                .users
                .iter()
                .find(|(_, u)| u.mailbox_id == *mid)
                .map(|(k, _)| k.clone())
            else {
                return Answer::error(404, "ErrorMailboxNotFound", "No such mailbox.");
            };
            return self.mailbox_folders(&key, m, tail, req);
        }
        if let ["admin", "exchange", "mailboxes", _, action] = rest {
            let Some(key) = self
                .users
                .iter()
                .find(|(_, u)| u.mailbox_id == segs[4])
                .map(|(k, _)| k.clone())
            else {
                return Answer::error(404, "ErrorMailboxNotFound", "No such mailbox.");
            };
            return match (m, *action) {
                ("POST", "createImportSession") => {
                    let tok = self.new_id("imp");
                    let expires = Instant::now() + self.cfg.import_session_lifetime;
                    self.imports.insert(
                        tok.clone(),
                        ImportSession {
                            app: app.to_string(),
                            user: key,
                            expires,
                        },
                    );
                    Answer::json(
                        201,
                        json!({
                            "@odata.context": format!("{base}/$metadata#microsoft.graph.mailboxItemImportSession"),
                            "importUrl": format!("{}/import/{tok}", self.base),
                            "expirationDateTime": iso(expires),
                        }),
                    )
                }
                ("POST", "exportItems") => self.export_items(&key, req),
                _ => Answer::error(405, "MethodNotAllowed", "not supported"),
            };
        }
        let ["users", uid, tail @ ..] = rest else {
            return Answer::error(400, "BadRequest", "Resource not found for the segment.");
        };
        let Some(key) = self.user_key(uid) else {
            return Answer::error(
                404,
                "ErrorInvalidUser",
                &format!("The requested user '{uid}' is invalid."),
            );
        };
        let _ = mailbox;
        let url = format!("{base}/users/{uid}");
        match (m, tail) {
            ("GET", []) => {
                let u = &self.users[&key];
                Answer::json(
                    200,
                    json!({ "id": u.id, "mail": u.address, "userPrincipalName": u.address, "displayName": u.address }),
                )
            }
            ("GET", ["settings", "exchange"]) => {
                let u = &self.users[&key];
                Answer::json(200, json!({ "primaryMailboxId": u.mailbox_id, "id": u.id }))
            }
            ("GET", ["mailFolders", "delta"]) => {
                self.delta(&key, None, req, &format!("{url}/mailFolders/delta"))
            }
            ("GET", ["mailFolders"]) => {
                let root = self.root(&key);
                self.list_folders(&key, &root, req, &format!("{url}/mailFolders"))
            }
            ("POST", ["mailFolders"]) => {
                let root = self.root(&key);
                self.create_folder(&key, &root, req)
            }
            ("GET" | "POST", ["mailFolders", f, sub @ ..]) => {
                let Some(id) = resolve_folder(&self.users[&key], f) else {
                    return not_found();
                };
                let here = format!("{url}/mailFolders/{f}");
                match (m, sub) {
                    ("GET", []) => Answer::json(200, self.folder_json(&key, &id)),
                    ("GET", ["childFolders"]) => {
                        self.list_folders(&key, &id, req, &format!("{here}/childFolders"))
                    }
                    ("POST", ["childFolders"]) => self.create_folder(&key, &id, req),
                    ("GET", ["messages", "delta"]) => {
                        self.delta(&key, Some(id), req, &format!("{here}/messages/delta"))
                    }
                    ("GET", ["messages"]) => {
                        self.list_messages(&key, Some(&id), req, &format!("{here}/messages"))
                    }
                    ("POST", ["messages"]) => self.create_message(&key, &id, req),
                    ("GET", ["messages", mid]) => self.get_message(&key, mid, req),
                    _ => unsupported(req),
                }
            }
            ("GET", ["messages"]) => {
                self.list_messages(&key, None, req, &format!("{url}/messages"))
            }
            ("POST", ["messages"]) => {
                let drafts = resolve_folder(&self.users[&key], "drafts").expect("drafts");
                self.create_message(&key, &drafts, req)
            }
            ("GET", ["messages", id]) => self.get_message(&key, id, req),
            ("PATCH", ["messages", id]) => self.patch_message(&key, id, req),
            ("DELETE", ["messages", id]) => {
                if self.users[&key].messages.contains_key(*id) {
                    self.delete_message(&key, id);
                    Answer::empty(204)
                } else {
                    not_found()
                }
            }
            // An item of a calendar, contacts or tasks folder, by the
            // resource of its kind.
            ("DELETE", ["events", id])
            | ("DELETE", ["contacts", id])
            | ("DELETE", ["outlook", "tasks", id]) => {
                let want = match tail[0] {
                    "events" => "IPM.Appointment",
                    "contacts" => "IPM.Contact",
                    _ => "IPM.Task",
                };
                let is = self.users[&key]
                    .messages
                    .get(*id)
                    .is_some_and(|m| m.class.starts_with(want));
                if is {
                    self.delete_message(&key, id);
                    Answer::empty(204)
                } else {
                    not_found()
                }
            }
            ("GET", ["messages", id, "$value"]) => match self.value(&key, id) {
                Some(mime) => Answer {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: Bytes::from(mime),
                },
                None => not_found(),
            },
            ("GET", ["messages", id, "attachments"]) => match self.users[&key].messages.get(*id) {
                Some(msg) => Answer::json(
                    200,
                    json!({ "value": msg.attachments.iter().map(|(n, ct, b, cid)| json!({
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": n, "contentType": ct, "size": b.len(), "isInline": cid.is_some(),
                        "contentId": cid, "contentBytes": STANDARD.encode(b),
                    })).collect::<Vec<_>>() }),
                ),
                None => not_found(),
            },
            ("POST", ["messages", id, "attachments", "createUploadSession"]) => {
                self.create_upload_session(&key, id, app, req)
            }
            _ => unsupported(req),
        }
    }

    fn get_message(&self, key: &str, id: &str, req: &Req) -> Answer {
        match self.users[key].messages.get(id) {
            Some(msg) => Answer::json(200, shape(msg, req)),
            None => not_found(),
        }
    }

    fn root(&self, key: &str) -> String {
        resolve_folder(&self.users[key], "msgfolderroot").expect("root")
    }

    fn folder_json(&self, key: &str, id: &str) -> Value {
        let u = &self.users[key];
        let f = &u.folders[id];
        let msgs = u.messages.values().filter(|m| m.folder_id == id);
        json!({
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "childFolderCount": u.folders.values().filter(|c| c.parent.as_deref() == Some(id)).count(),
            "unreadItemCount": msgs.clone().filter(|m| !m.is_read).count(),
            "totalItemCount": msgs.count(),
            "isHidden": f.hidden,
        })
    }

    fn list_folders(&self, key: &str, parent: &str, req: &Req, url: &str) -> Answer {
        let hidden = req
            .query
            .get("includeHiddenFolders")
            .is_some_and(|v| v == "true");
        let mut items: Vec<Value> = self.users[key]
            .folders
            .values()
            // `mailFolders` lists mail folders; the mailbox API lists all.
            .filter(|f| f.parent.as_deref() == Some(parent) && (hidden || !f.hidden))
            .filter(|f| f.class == "IPF.Note")
            .map(|f| self.folder_json(key, &f.id))
            .collect();
        if let Some(q) = req.query.get("$filter") {
            match filter::parse(q) {
                Ok(f) => items.retain(|v| filter::eval(&f, v)),
                Err(e) => return bad_filter(&e),
            }
        }
        page(items, req, url, 10)
    }

    fn create_folder(&mut self, key: &str, parent: &str, req: &Req) -> Answer {
        let v = match req.json() {
            Ok(v) => v,
            Err(a) => return a,
        };
        let Some(name) = v["displayName"].as_str().filter(|n| !n.is_empty()) else {
            return Answer::error(400, "ErrorInvalidRequest", "displayName is required.");
        };
        let hidden = v["isHidden"].as_bool().unwrap_or(false);
        match self.add_folder(key, parent, name, hidden, "IPF.Note") {
            Ok(id) => Answer::json(201, self.folder_json(key, &id)),
            Err(a) => a,
        }
    }

    /// A new child `name` of `parent`, of `class`: its id, or Exchange's
    /// refusal when a sibling has that name (in any case).
    fn add_folder(
        &mut self,
        key: &str,
        parent: &str,
        name: &str,
        hidden: bool,
        class: &str,
    ) -> Result<String, Answer> {
        let exists = self.users[key]
            .folders
            .values()
            .any(|f| f.parent.as_deref() == Some(parent) && f.name.eq_ignore_ascii_case(name));
        if exists {
            return Err(Answer::error(
                409,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            ));
        }
        let id = self.new_id("AQMkAD");
        let version = self.bump();
        let folder = Folder {
            id: id.clone(),
            name: name.to_string(),
            parent: Some(parent.to_string()),
            well_known: None,
            hidden,
            version,
            class: class.to_string(),
        };
        self.users
            .get_mut(key)
            .expect("user")
            .folders
            .insert(id.clone(), folder);
        Ok(id)
    }

    fn list_messages(&self, key: &str, folder: Option<&str>, req: &Req, url: &str) -> Answer {
        let mut items: Vec<&SimMessage> = self.users[key]
            .messages
            .values()
            .filter(|m| folder.is_none_or(|f| m.folder_id == f))
            .collect();
        if let Some(q) = req.query.get("$filter") {
            match filter::parse(q) {
                Ok(f) => items.retain(|m| filter::eval(&f, &full_json(m))),
                Err(e) => return bad_filter(&e),
            }
        }
        items.sort_by(|a, b| b.received.cmp(&a.received).then(a.id.cmp(&b.id)));
        let values = items.into_iter().map(|m| shape(m, req)).collect();
        page(values, req, url, 10)
    }

    fn create_message(&mut self, key: &str, folder: &str, req: &Req) -> Answer {
        let ctype = req.headers.get("content-type").cloned().unwrap_or_default();
        let id = self.new_id("AAMkAG");
        let version = self.bump();
        let msg = if ctype.starts_with("text/plain") {
            // MIME, base64 in the body: always a draft.
            let Ok(mime) = STANDARD.decode(
                req.body
                    .iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .copied()
                    .collect::<Vec<u8>>(),
            ) else {
                return Answer::error(
                    400,
                    "UnableToDeserializePostBody",
                    "The MIME content is not valid base64.",
                );
            };
            let header = |name: &str| mime_header(&mime, name).unwrap_or_default();
            SimMessage {
                id: id.clone(),
                folder_id: folder.to_string(),
                version,
                created: now(),
                subject: header("subject"),
                body_type: "text".into(),
                body: String::from_utf8_lossy(mime_body(&mime)).into_owned(),
                from: json!({ "emailAddress": { "address": header("from") } }),
                is_read: true,
                is_draft: true,
                flag: "notFlagged".into(),
                received: now(),
                sent: None,
                internet_message_id: header("message-id"),
                mime: Some(mime),
                class: "IPM.Note".into(),
                made_by: "mime",
                ..blank()
            }
        } else {
            let v = match req.json() {
                Ok(v) => v,
                Err(a) => return a,
            };
            for h in v["internetMessageHeaders"].as_array().into_iter().flatten() {
                if !h["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .starts_with("x-")
                {
                    return Answer::error(
                        400,
                        "InvalidInternetMessageHeader",
                        "The internet message header name should start with 'x-' or 'X-'.",
                    );
                }
            }
            let ext: Vec<(String, String)> = v["singleValueExtendedProperties"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or("").to_string(),
                        p["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let flags = ext_value(&ext, "integer", 0x0E07).and_then(|v| v.parse::<u32>().ok());
            let is_draft = flags.is_none_or(|f| f & 0x8 != 0);
            let delivered = ext_value(&ext, "systemtime", 0x0E06).and_then(normalize_time);
            let submitted = ext_value(&ext, "systemtime", 0x0039).and_then(normalize_time);
            let mut attachments = Vec::new();
            for a in v["attachments"].as_array().into_iter().flatten() {
                let Ok(bytes) = STANDARD.decode(a["contentBytes"].as_str().unwrap_or("")) else {
                    return Answer::error(
                        400,
                        "ErrorInvalidRequest",
                        "contentBytes is not base64.",
                    );
                };
                attachments.push((
                    a["name"].as_str().unwrap_or("").to_string(),
                    a["contentType"]
                        .as_str()
                        .unwrap_or("application/octet-stream")
                        .to_string(),
                    bytes,
                    a["contentId"].as_str().map(str::to_string),
                ));
            }
            SimMessage {
                id: id.clone(),
                folder_id: folder.to_string(),
                version,
                created: now(),
                subject: v["subject"].as_str().unwrap_or("").to_string(),
                body_type: v["body"]["contentType"]
                    .as_str()
                    .unwrap_or("text")
                    .to_ascii_lowercase(),
                body: v["body"]["content"].as_str().unwrap_or("").to_string(),
                from: v["from"].clone(),
                to: v["toRecipients"].clone(),
                cc: v["ccRecipients"].clone(),
                bcc: v["bccRecipients"].clone(),
                reply_to: v["replyTo"].clone(),
                is_read: v["isRead"]
                    .as_bool()
                    .unwrap_or(flags.is_some_and(|f| f & 0x1 != 0)),
                is_draft,
                flag: v["flag"]["flagStatus"]
                    .as_str()
                    .unwrap_or("notFlagged")
                    .to_string(),
                categories: v["categories"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect(),
                received: if is_draft {
                    now()
                } else {
                    delivered.unwrap_or_else(now)
                },
                sent: if is_draft {
                    None
                } else {
                    submitted.or_else(|| Some(now()))
                },
                internet_message_id: v["internetMessageId"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("<{id}@sim>")),
                headers: v["internetMessageHeaders"].clone(),
                ext,
                attachments,
                class: "IPM.Note".into(),
                made_by: "json",
                ..blank()
            }
        };
        let out = shape(&msg, req);
        self.users
            .get_mut(key)
            .expect("user")
            .messages
            .insert(id, msg);
        Answer::json(201, out)
    }

    fn patch_message(&mut self, key: &str, id: &str, req: &Req) -> Answer {
        let v = match req.json() {
            Ok(v) => v,
            Err(a) => return a,
        };
        let version = self.bump();
        let Some(msg) = self.users.get_mut(key).expect("user").messages.get_mut(id) else {
            return not_found();
        };
        if let Some(r) = v["isRead"].as_bool() {
            msg.is_read = r;
        }
        if let Some(f) = v["flag"]["flagStatus"].as_str() {
            msg.flag = f.to_string();
        }
        if let Some(c) = v["categories"].as_array() {
            msg.categories = c
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
        }
        if let Some(s) = v["subject"].as_str() {
            if !msg.is_draft {
                return Answer::error(
                    400,
                    "ErrorInvalidPropertyUpdateSentMessage",
                    "Update is not allowed for sent messages.",
                );
            }
            msg.subject = s.to_string();
        }
        for p in v["singleValueExtendedProperties"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (pid, val) = (
                p["id"].as_str().unwrap_or(""),
                p["value"].as_str().unwrap_or(""),
            );
            msg.ext.retain(|(i, _)| !i.eq_ignore_ascii_case(pid));
            msg.ext.push((pid.to_string(), val.to_string()));
        }
        msg.version = version;
        let out = shape(msg, req);
        Answer::json(200, out)
    }

    fn delta(&mut self, key: &str, folder: Option<String>, req: &Req, url: &str) -> Answer {
        self.delta_of(key, folder, false, req, url)
    }

    /// A delta round of messages, folders, or (`items`) the mailbox API's
    /// items of a folder. A next link stays good until its round's delta
    /// link is used, as Graph's state-carrying tokens do; departure: the
    /// simulator keeps the state server-side, behind opaque tokens.
    fn delta_of(
        &mut self,
        key: &str,
        folder: Option<String>,
        items_api: bool,
        req: &Req,
        url: &str,
    ) -> Answer {
        let page_size = req
            .headers
            .get("prefer")
            .and_then(|p| p.split("odata.maxpagesize=").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(self.cfg.page_size);
        let (mut items, until, folder, kept) = if let Some(t) = req.query.get("$skiptoken") {
            match self.pages.get(t) {
                Some(p) if p.user == key && p.folder == folder && p.items == items_api => (
                    p.items_left.clone(),
                    p.until,
                    p.folder.clone(),
                    p.query.clone(),
                ),
                _ => return gone(),
            }
        } else {
            let (since, kept) = match req.query.get("$deltatoken") {
                Some(t) => match self.deltas.get(t) {
                    Some(d) if d.user == key && d.folder == folder && d.items == items_api => {
                        (d.since, d.query.clone())
                    }
                    _ => return gone(),
                },
                None => (
                    0,
                    ["$select", "$expand"]
                        .iter()
                        .filter_map(|k| Some((k.to_string(), req.query.get(*k)?.clone())))
                        .collect(),
                ),
            };
            let mut asked = req.clone();
            asked.query.extend(kept.iter().cloned());
            let req = &asked;
            let u = &self.users[key];
            let items: Vec<Value> = match &folder {
                Some(f) => {
                    let mut changed: Vec<&SimMessage> = u
                        .messages
                        .values()
                        .filter(|m| &m.folder_id == f && m.version > since)
                        .collect();
                    changed.sort_by_key(|m| m.version);
                    let mut v: Vec<Value> = changed
                        .into_iter()
                        .map(|m| {
                            if items_api {
                                box_item_json(m)
                            } else {
                                shape(m, req)
                            }
                        })
                        .collect();
                    let odata = if items_api {
                        "#microsoft.graph.mailboxItem"
                    } else {
                        "#microsoft.graph.message"
                    };
                    for (id, fid, ver) in &u.tombstones {
                        if fid == f && *ver > since && since > 0 {
                            v.push(json!({ "@odata.type": odata, "id": id, "@removed": { "reason": "deleted" } }));
                        }
                    }
                    v
                }
                None => {
                    // `mailFolders/delta`: the mail folders of the whole
                    // tree, flat, each whole (name and parent) when made,
                    // renamed or moved since. Departure: new or read mail
                    // does not show its folder again, as Exchange Online's
                    // changed counts may.
                    let mut v: Vec<Value> = u
                        .folders
                        .values()
                        .filter(|x| x.version > since && x.well_known != Some("msgfolderroot"))
                        .filter(|x| x.class == "IPF.Note")
                        .map(|x| self.folder_json(key, &x.id))
                        .collect();
                    for (id, ver) in &u.folder_tombstones {
                        if *ver > since && since > 0 {
                            v.push(json!({ "id": id, "@removed": { "reason": "deleted" } }));
                        }
                    }
                    v
                }
            };
            (items, self.version, folder, kept)
        };
        let rest = if items.len() > page_size {
            items.split_off(page_size)
        } else {
            Vec::new()
        };
        let mut body = json!({ "value": items });
        if rest.is_empty() {
            let tok = self.new_id("dl");
            self.deltas.insert(
                tok.clone(),
                DeltaMark {
                    user: key.to_string(),
                    folder,
                    items: items_api,
                    since: until,
                    query: kept,
                },
            );
            body["@odata.deltaLink"] = json!(format!("{url}?$deltatoken={tok}"));
        } else {
            let tok = self.new_id("sk");
            self.pages.insert(
                tok.clone(),
                DeltaPage {
                    user: key.to_string(),
                    folder,
                    items: items_api,
                    items_left: rest,
                    until,
                    query: kept,
                },
            );
            body["@odata.nextLink"] = json!(format!("{url}?$skiptoken={tok}"));
        }
        Answer::json(200, body)
    }

    fn create_upload_session(&mut self, key: &str, id: &str, app: &str, req: &Req) -> Answer {
        if !self.users[key].messages.contains_key(id) {
            return not_found();
        }
        let v = match req.json() {
            Ok(v) => v,
            Err(a) => return a,
        };
        let item = &v["AttachmentItem"];
        let size = item["size"].as_u64().unwrap_or(0);
        if item["attachmentType"].as_str() != Some("file")
            || item["name"].as_str().is_none()
            || size == 0
        {
            return Answer::error(
                400,
                "ErrorInvalidRequest",
                "AttachmentItem needs attachmentType file, a name and a size.",
            );
        }
        if size > MAX_ATTACHMENT {
            return Answer::error(
                400,
                "ErrorAttachmentSizeLimitExceeded",
                "The attachment is too large.",
            );
        }
        let tok = self.new_id("up");
        let expires = Instant::now() + Duration::from_secs(900);
        self.uploads.insert(
            tok.clone(),
            UploadSession {
                app: app.to_string(),
                user: key.to_string(),
                message: id.to_string(),
                name: item["name"].as_str().unwrap_or("").to_string(),
                content_type: item["contentType"]
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                content_id: item["contentId"].as_str().map(str::to_string),
                size,
                received: Vec::new(),
                expires,
            },
        );
        Answer::json(
            201,
            json!({
                "uploadUrl": format!("{}/upload/{tok}", self.base),
                "expirationDateTime": iso(expires),
                "nextExpectedRanges": ["0-"],
            }),
        )
    }

    fn upload_chunk(&mut self, tok: &str, req: &Req) -> Answer {
        if req.headers.contains_key("authorization") {
            return Answer::error(
                400,
                "InvalidRequest",
                "An upload URL takes no Authorization header.",
            );
        }
        let Some(s) = self.uploads.get_mut(tok) else {
            return not_found();
        };
        if req.body.len() > MAX_BODY {
            return Answer::error(413, "RequestEntityTooLarge", "A chunk may be at most 4 MB.");
        }
        let range = req
            .headers
            .get("content-range")
            .cloned()
            .unwrap_or_default();
        let parsed = range.strip_prefix("bytes ").and_then(|r| {
            let (span, total) = r.split_once('/')?;
            let (a, b) = span.split_once('-')?;
            Some((
                a.parse::<u64>().ok()?,
                b.parse::<u64>().ok()?,
                total.parse::<u64>().ok()?,
            ))
        });
        let Some((a, b, total)) = parsed else {
            return Answer::error(
                400,
                "InvalidContentRange",
                "Content-Range is missing or malformed.",
            );
        };
        if total != s.size
            || a != s.received.len() as u64
            || b < a
            || b - a + 1 != req.body.len() as u64
            || b >= total
        {
            return Answer::json(
                416,
                json!({ "error": { "code": "InvalidRange", "message": "The range is not the next expected one." }, "nextExpectedRanges": [format!("{}-", s.received.len())] }),
            );
        }
        s.received.extend_from_slice(&req.body);
        if (s.received.len() as u64) < s.size {
            let next = format!("{}-{}", s.received.len(), s.size - 1);
            return Answer::json(
                200,
                json!({ "expirationDateTime": iso(s.expires), "nextExpectedRanges": [next] }),
            );
        }
        let s = self.uploads.remove(tok).expect("session");
        let version = self.bump();
        let att_id = self.new_id("AAMkAtt");
        let Some(msg) = self
            .users
            .get_mut(&s.user)
            .and_then(|u| u.messages.get_mut(&s.message))
        else {
            return not_found();
        };
        msg.attachments
            .push((s.name, s.content_type, s.received, s.content_id));
        msg.version = version;
        let mut a = Answer::empty(201);
        a.headers.push((
            "location".into(),
            format!(
                "{}/v1.0/users/{}/messages/{}/attachments/{att_id}",
                self.base, s.user, s.message
            ),
        ));
        a
    }

    fn import_item(&mut self, tok: &str, req: &Req) -> Answer {
        if req.headers.contains_key("authorization") {
            return Answer::error(
                400,
                "InvalidRequest",
                "An import URL takes no Authorization header.",
            );
        }
        let Some(key) = self.imports.get(tok).map(|s| s.user.clone()) else {
            return not_found();
        };
        let v = match req.json() {
            Ok(v) => v,
            Err(a) => return a,
        };
        if v["Mode"].as_str() != Some("create") {
            return Answer::error(400, "ErrorInvalidRequest", "Mode must be create.");
        }
        let Some(folder) = v["FolderId"]
            .as_str()
            .and_then(|f| resolve_folder(&self.users[&key], f))
        else {
            return Answer::error(404, "ErrorFolderNotFound", "The folder does not exist.");
        };
        let Some(data) = v["Data"]
            .as_str()
            .and_then(|d| STANDARD.decode(d).ok())
            .filter(|d| !d.is_empty())
        else {
            return Answer::error(
                400,
                "ErrorInvalidRequest",
                "Data must be a base64 FastTransfer stream.",
            );
        };
        // Exchange takes the item whole from the stream, class and state
        // included. Departure: a stream the simulator did not build (a
        // test's opaque bytes) tells nothing; the folder's class says.
        let class = match self.users[&key].folders[&folder].class.as_str() {
            c if c.starts_with("IPF.Appointment") => "IPM.Appointment",
            c if c.starts_with("IPF.Contact") => "IPM.Contact",
            c if c.starts_with("IPF.Task") => "IPM.Task",
            _ => "IPM.Note",
        };
        let item = match read_stream(&data) {
            Some(built) => built,
            None => SimMessage {
                sent: Some(now()),
                is_read: true,
                class: class.into(),
                ..blank()
            },
        };
        let received = item.received.clone();
        let id = self.store_new(
            &key,
            SimMessage {
                folder_id: folder,
                fts: Some(data),
                made_by: "import",
                ..item
            },
        );
        let m = self.message_mut(&key, &id);
        if !received.is_empty() {
            m.received = received;
        }
        let version = m.version;
        Answer::json(
            200,
            json!({ "ItemId": id, "ChangeKey": format!("CQAAAB{version}") }),
        )
    }

    /// The mailbox API's folders (`mailboxFolder`) and their items
    /// (`mailboxItem`): every class, the container class as `type`.
    fn mailbox_folders(&mut self, key: &str, m: &str, tail: &[&str], req: &Req) -> Answer {
        let root = self.root(key);
        let (parent, rest) = match tail {
            [] => (root.clone(), &[][..]),
            [f, rest @ ..] => match resolve_folder(&self.users[key], f) {
                Some(id) => (id, rest),
                None => return not_found(),
            },
        };
        match (m, tail.is_empty(), rest) {
            ("GET", true, []) | ("GET", false, ["childFolders"]) => {
                let mut items: Vec<Value> = self.users[key]
                    .folders
                    .values()
                    .filter(|f| f.parent.as_deref() == Some(parent.as_str()))
                    .map(|f| self.box_folder_json(key, &f.id))
                    .collect();
                if let Some(q) = req.query.get("$filter") {
                    match filter::parse(q) {
                        Ok(f) => items.retain(|v| filter::eval(&f, v)),
                        Err(e) => return bad_filter(&e),
                    }
                }
                page(items, req, &format!("{}{}", self.base, req.path), 10)
            }
            ("POST", true, []) | ("POST", false, ["childFolders"]) => {
                let v = match req.json() {
                    Ok(v) => v,
                    Err(a) => return a,
                };
                let Some(name) = v["displayName"].as_str().filter(|n| !n.is_empty()) else {
                    return Answer::error(400, "ErrorInvalidRequest", "displayName is required.");
                };
                let class = v["type"].as_str().unwrap_or("IPF.Note");
                if !class.starts_with("IPF.") {
                    return Answer::error(
                        400,
                        "ErrorInvalidRequest",
                        "type must be a folder class.",
                    );
                }
                match self.add_folder(key, &parent, name, false, class) {
                    Ok(id) => Answer::json(201, self.box_folder_json(key, &id)),
                    Err(a) => a,
                }
            }
            ("GET", false, []) => Answer::json(200, self.box_folder_json(key, &parent)),
            ("GET", false, ["items"]) => {
                let items: Vec<Value> = self.users[key]
                    .messages
                    .values()
                    .filter(|m| m.folder_id == parent)
                    .map(box_item_json)
                    .collect();
                page(items, req, &format!("{}{}", self.base, req.path), 10)
            }
            ("GET", false, ["items", "delta"]) => {
                let url = format!("{}{}", self.base, req.path);
                self.delta_of(key, Some(parent), true, req, &url)
            }
            _ => unsupported(req),
        }
    }

    fn box_folder_json(&self, key: &str, id: &str) -> Value {
        let u = &self.users[key];
        let f = &u.folders[id];
        json!({
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "childFolderCount": u.folders.values().filter(|c| c.parent.as_deref() == Some(id)).count(),
            "totalItemCount": u.messages.values().filter(|m| m.folder_id == id).count(),
            "type": f.class,
        })
    }

    fn export_items(&self, key: &str, req: &Req) -> Answer {
        let v = match req.json() {
            Ok(v) => v,
            Err(a) => return a,
        };
        let asked = v["itemIds"].as_array().map_or(0, Vec::len);
        if asked == 0 || asked > 20 {
            return Answer::error(400, "ErrorInvalidRequest", "itemIds takes 1 to 20 ids.");
        }
        let u = &self.users[key];
        let out: Vec<Value> = v["itemIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str())
            .map(|i| match u.messages.get(i).map(|m| (m, export_stream(m))) {
                Some((m, d)) => json!({ "itemId": i, "changeKey": format!("CQAAAB{}", m.version), "data": STANDARD.encode(d) }),
                None => json!({ "itemId": i, "error": { "code": "ErrorItemNotFound", "message": "The item was not found." } }),
            })
            .collect();
        Answer::json(200, json!({ "value": out }))
    }
}

/// A `mailboxItem` as the mailbox API lists it.
fn box_item_json(m: &SimMessage) -> Value {
    json!({
        "id": m.id,
        "type": m.class,
        "size": export_stream(m).len(),
        "createdDateTime": m.created,
        "lastModifiedDateTime": m.created,
        "changeKey": format!("CQAAAB{}", m.version),
        "categories": m.categories,
    })
}

/// What `exportItems` gives for an item: the stream it was imported
/// from, else one built from the item. Departure: Exchange exports a
/// FastTransfer stream of the item's MAPI properties (the content, and
/// state such as PR_MESSAGE_FLAGS, the follow-up flag, the categories);
/// the simulator's built stream is a tagged text: a line with its class,
/// version and state as JSON, then its MIME in base64 (no header to read,
/// as in Exchange's binary stream). Opaque to clients all the same, and
/// changed whenever the item is.
pub(crate) fn export_stream(m: &SimMessage) -> Vec<u8> {
    if let Some(d) = &m.fts {
        return d.clone();
    }
    let state = json!({
        "isRead": m.is_read,
        "isDraft": m.is_draft,
        "flag": m.flag,
        "categories": m.categories,
        "received": m.received,
        "sent": m.sent,
    });
    let mime = m.mime.clone().unwrap_or_else(|| rebuild_mime(m));
    format!(
        "SIMFTS1 {} v{} {state}\r\n{}",
        m.class,
        m.version,
        STANDARD.encode(mime)
    )
    .into_bytes()
}

/// The item a stream `export_stream` built holds, as an import makes it;
/// `None` for other bytes.
fn read_stream(data: &[u8]) -> Option<SimMessage> {
    let end = data.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let mut parts = head.splitn(4, ' ');
    if parts.next()? != "SIMFTS1" {
        return None;
    }
    let class = parts.next()?.to_string();
    parts.next()?;
    let state: Value = serde_json::from_str(parts.next()?).ok()?;
    let mime = STANDARD.decode(&data[end + 2..]).ok()?;
    let header = |name: &str| mime_header(&mime, name).unwrap_or_default();
    Some(SimMessage {
        subject: header("subject"),
        body: String::from_utf8_lossy(mime_body(&mime)).into_owned(),
        from: json!({ "emailAddress": { "address": header("from") } }),
        internet_message_id: header("message-id"),
        is_read: state["isRead"].as_bool()?,
        is_draft: state["isDraft"].as_bool()?,
        flag: state["flag"].as_str()?.to_string(),
        categories: state["categories"]
            .as_array()?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect(),
        received: state["received"].as_str().unwrap_or_default().to_string(),
        sent: state["sent"].as_str().map(str::to_string),
        mime: Some(mime),
        class,
        ..blank()
    })
}

fn blank() -> SimMessage {
    SimMessage {
        id: String::new(),
        folder_id: String::new(),
        folder_path: String::new(),
        version: 0,
        created: String::new(),
        subject: String::new(),
        body_type: "text".into(),
        body: String::new(),
        from: Value::Null,
        to: json!([]),
        cc: json!([]),
        bcc: json!([]),
        reply_to: json!([]),
        is_read: false,
        is_draft: false,
        flag: "notFlagged".into(),
        categories: Vec::new(),
        received: String::new(),
        sent: None,
        internet_message_id: String::new(),
        headers: Value::Null,
        ext: Vec::new(),
        attachments: Vec::new(),
        mime: None,
        fts: None,
        class: String::new(),
        made_by: "delivered",
    }
}

fn uuid_like(n: u64) -> String {
    let r: [u8; 16] = rand::random();
    let h = hex::encode(r);
    format!(
        "{}-{}-{}-{}-{:012x}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        n
    )
}

fn resolve_folder(u: &User, f: &str) -> Option<String> {
    if u.folders.contains_key(f) {
        return Some(f.to_string());
    }
    let lower = f.to_ascii_lowercase();
    u.folders
        .values()
        .find(|x| x.well_known == Some(lower.as_str()))
        .map(|x| x.id.clone())
}

fn unsupported(req: &Req) -> Answer {
    Answer::error(
        400,
        "BadRequest",
        &format!("Unsupported request: {} {}", req.method, req.path),
    )
}

fn not_found() -> Answer {
    Answer::error(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn gone() -> Answer {
    Answer::error(
        410,
        "SyncStateNotFound",
        "The sync state is not found or expired; sync again without a token.",
    )
}

fn bad_filter(e: &str) -> Answer {
    Answer::error(
        400,
        "ErrorInvalidUrlQueryFilter",
        &format!("The query filter is not supported: {e}"),
    )
}

/// A message with every property, extended ones included: what `$filter`
/// sees.
fn full_json(m: &SimMessage) -> Value {
    let mut v = base_json(m);
    v["singleValueExtendedProperties"] = m
        .ext
        .iter()
        .map(|(id, val)| json!({ "id": id, "value": val }))
        .collect();
    v
}

fn base_json(m: &SimMessage) -> Value {
    json!({
        "@odata.etag": format!("W/\"CQAAAB{}\"", m.version),
        "id": m.id,
        "createdDateTime": m.created,
        "lastModifiedDateTime": m.created,
        "changeKey": format!("CQAAAB{}", m.version),
        "categories": m.categories,
        "receivedDateTime": m.received,
        "sentDateTime": m.sent,
        "hasAttachments": !m.attachments.is_empty(),
        "internetMessageId": m.internet_message_id,
        "subject": m.subject,
        "bodyPreview": m.body.chars().take(255).collect::<String>(),
        "importance": "normal",
        "parentFolderId": m.folder_id,
        "conversationId": format!("AAQk{}", &m.id[6.min(m.id.len())..]),
        "isDeliveryReceiptRequested": false,
        "isReadReceiptRequested": false,
        "isRead": m.is_read,
        "isDraft": m.is_draft,
        "webLink": "",
        "inferenceClassification": "focused",
        "body": { "contentType": m.body_type, "content": m.body },
        "sender": m.from,
        "from": m.from,
        "toRecipients": m.to,
        "ccRecipients": m.cc,
        "bccRecipients": m.bcc,
        "replyTo": m.reply_to,
        "flag": { "flagStatus": m.flag },
    })
}

/// A message as a request asked for it: `$select` keeps the named
/// properties (and the id), `$expand` adds the extended properties its
/// filter names.
fn shape(m: &SimMessage, req: &Req) -> Value {
    let mut v = base_json(m);
    if let Some(sel) = req.query.get("$select") {
        let keep: Vec<&str> = sel.split(',').map(str::trim).collect();
        if let Value::Object(map) = &mut v {
            map.retain(|k, _| k == "id" || k == "@odata.etag" || keep.contains(&k.as_str()));
        }
    }
    if let Some(exp) = req.query.get("$expand") {
        let inner = exp
            .strip_prefix("singleValueExtendedProperties")
            .map(|r| r.trim_start_matches('(').trim_end_matches(')'));
        if let Some(inner) = inner {
            let f = inner
                .strip_prefix("$filter=")
                .and_then(|f| filter::parse(f).ok());
            // PR_MESSAGE_SIZE is Exchange's to compute, on every item.
            let size = (
                "Integer 0x0E08".to_string(),
                m.mime
                    .as_ref()
                    .map_or_else(|| rebuild_mime(m).len(), Vec::len)
                    .to_string(),
            );
            let props: Vec<Value> = m
                .ext
                .iter()
                .chain(std::iter::once(&size))
                .map(|(id, val)| json!({ "id": id, "value": val }))
                .filter(|p| f.as_ref().is_none_or(|f| filter::eval(f, p)))
                .collect();
            v["singleValueExtendedProperties"] = Value::Array(props);
        }
    }
    v
}

/// One page of `items` and a `@odata.nextLink` to the rest.
fn page(items: Vec<Value>, req: &Req, url: &str, default_top: usize) -> Answer {
    let top = req
        .query
        .get("$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(default_top)
        .max(1);
    let skip: usize = req
        .query
        .get("$skip")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let total = items.len();
    let chunk: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
    let mut body = json!({ "value": chunk });
    if skip + top < total {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        let mut keys: Vec<(&String, &String)> =
            req.query.iter().filter(|(k, _)| *k != "$skip").collect();
        keys.sort();
        for (k, v) in keys {
            ser.append_pair(k, v);
        }
        ser.append_pair("$skip", &(skip + top).to_string());
        body["@odata.nextLink"] = json!(format!("{url}?{}", ser.finish()));
    }
    Answer::json(200, body)
}

fn mime_header(mime: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(mime);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Option<String> = None;
    for line in head.split("\r\n").flat_map(|l| l.split('\n')) {
        if let Some(cur) = out.as_mut() {
            if line.starts_with([' ', '\t']) {
                cur.push_str(line.trim_start());
                continue;
            }
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            out = Some(v.trim().to_string());
        }
    }
    out
}

fn mime_body(mime: &[u8]) -> &[u8] {
    mime.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &mime[i + 4..])
        .unwrap_or(&[])
}

/// The MIME Exchange writes for an item created from JSON: headers rebuilt
/// from the properties.
fn rebuild_mime(m: &SimMessage) -> Vec<u8> {
    let addr = |v: &Value| {
        v["emailAddress"]["address"]
            .as_str()
            .map(|a| match v["emailAddress"]["name"].as_str() {
                Some(n) if !n.is_empty() => format!("\"{n}\" <{a}>"),
                _ => format!("<{a}>"),
            })
    };
    let list = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(addr)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::new();
    if let Some(f) = addr(&m.from) {
        s.push_str(&format!("From: {f}\r\n"));
    }
    s.push_str(&format!("To: {}\r\n", list(&m.to)));
    if !list(&m.cc).is_empty() {
        s.push_str(&format!("Cc: {}\r\n", list(&m.cc)));
    }
    s.push_str(&format!("Subject: {}\r\n", m.subject));
    if let Some(t) = m
        .sent
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        s.push_str(&format!("Date: {}\r\n", t.to_rfc2822()));
    }
    s.push_str(&format!("Message-ID: {}\r\n", m.internet_message_id));
    for h in m.headers.as_array().into_iter().flatten() {
        s.push_str(&format!(
            "{}: {}\r\n",
            h["name"].as_str().unwrap_or(""),
            h["value"].as_str().unwrap_or("")
        ));
    }
    let ct = if m.body_type == "html" {
        "text/html"
    } else {
        "text/plain"
    };
    s.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: {ct}; charset=\"utf-8\"\r\n\r\n{}",
        m.body
    ));
    s.into_bytes()
}
