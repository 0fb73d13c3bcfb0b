//! The simulator's state: users and their rights, mailboxes of folders and
//! items, sync states, injected throttling and counters.
//!
//! Ids are opaque base64 like Exchange's, and an item's id changes when it
//! moves. A sync state is an opaque token naming a snapshot of what the
//! client has been told (id → change version, read state); a delta is the
//! difference between that snapshot and the folder now. Exchange carries
//! that knowledge inside the state blob itself; keeping it server-side
//! changes nothing a client can see.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use ferry_ews::FlagStatus;

/// The Exchange release the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimVersion {
    /// Before SP1: no ExportItems.
    Exchange2010,
    Exchange2010Sp1,
    Exchange2013,
    Exchange2016,
    Exchange2019,
}

impl SimVersion {
    /// `ServerVersionInfo`: major, minor, major build, minor build, and the
    /// `Version` attribute as such servers send it (2013 and later send
    /// values that are not schema names).
    pub fn info(self) -> (u32, u32, u32, u32, &'static str) {
        match self {
            SimVersion::Exchange2010 => (14, 0, 639, 21, "Exchange2010"),
            SimVersion::Exchange2010Sp1 => (14, 1, 218, 15, "Exchange2010_SP1"),
            SimVersion::Exchange2013 => (15, 0, 1497, 2, "V2_23"),
            SimVersion::Exchange2016 => (15, 1, 2507, 6, "V2017_07_11"),
            SimVersion::Exchange2019 => (15, 2, 1118, 7, "V2017_07_11"),
        }
    }

    /// The newest `RequestServerVersion` the server accepts.
    pub fn newest_schema(self) -> ferry_ews::ApiVersion {
        let (ma, mi, b, _, _) = self.info();
        ferry_ews::ApiVersion::from_build(ma, mi, b).expect("a known build")
    }
}

/// What kind of item, and the element EWS names it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Message,
    CalendarItem,
    Contact,
    Task,
}

impl ItemKind {
    pub fn element(self) -> &'static str {
        match self {
            ItemKind::Message => "Message",
            ItemKind::CalendarItem => "CalendarItem",
            ItemKind::Contact => "Contact",
            ItemKind::Task => "Task",
        }
    }

    pub fn item_class(self) -> &'static str {
        match self {
            ItemKind::Message => "IPM.Note",
            ItemKind::CalendarItem => "IPM.Appointment",
            ItemKind::Contact => "IPM.Contact",
            ItemKind::Task => "IPM.Task",
        }
    }
}

/// A login to the simulator.
#[derive(Debug, Clone)]
pub struct User {
    pub smtp: String,
    /// NetBIOS domain and account name: `SIM\alice`.
    pub domain: String,
    pub name: String,
    pub password: String,
    /// Holds the ApplicationImpersonation role over every mailbox.
    pub impersonation: bool,
    /// Has a mailbox of its own (a service account may not).
    pub has_mailbox: bool,
}

impl User {
    /// Whether `login` names this user: the SMTP address, `DOMAIN\name`,
    /// or the bare name, case-insensitively.
    pub fn is(&self, login: &str) -> bool {
        let l = login.to_ascii_lowercase();
        l == self.smtp.to_ascii_lowercase()
            || l == format!("{}\\{}", self.domain, self.name).to_ascii_lowercase()
            || l == self.name.to_ascii_lowercase()
    }
}

#[derive(Debug, Clone)]
pub struct SimFolder {
    pub id: String,
    pub parent: Option<String>,
    pub name: String,
    pub class: String,
    pub distinguished: Option<&'static str>,
    /// Bumped to invalidate every sync state of the folder.
    pub generation: u64,
}

impl SimFolder {
    /// The element a folder of this class is returned as.
    pub fn element(&self) -> &'static str {
        match self.class.as_str() {
            "IPF.Appointment" => "CalendarFolder",
            "IPF.Contact" => "ContactsFolder",
            "IPF.Task" => "TasksFolder",
            _ => "Folder",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimItem {
    pub id: String,
    pub folder: String,
    pub kind: ItemKind,
    /// Order of creation, for stable listing.
    pub serial: u64,
    /// Bumped by every change but the read state.
    pub version: u64,
    /// Bumped by read-state changes (part of the change key).
    pub read_version: u64,
    pub mime: Vec<u8>,
    pub is_read: bool,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    pub received: DateTime<Utc>,
}

impl SimItem {
    pub fn change_key(&self) -> String {
        B64.encode(format!("CQAAABYAAAD{}.{}", self.version, self.read_version))
    }
}

#[derive(Debug, Clone, Default)]
pub struct SimMailbox {
    pub folders: Vec<SimFolder>,
    pub items: BTreeMap<String, SimItem>,
}

impl SimMailbox {
    pub fn folder(&self, id: &str) -> Option<&SimFolder> {
        self.folders.iter().find(|f| f.id == id)
    }

    pub fn distinguished(&self, name: &str) -> Option<&SimFolder> {
        self.folders.iter().find(|f| f.distinguished == Some(name))
    }

    /// The folder's items in creation order.
    pub fn items_in(&self, folder: &str) -> Vec<&SimItem> {
        let mut v: Vec<&SimItem> = self.items.values().filter(|i| i.folder == folder).collect();
        v.sort_by_key(|i| i.serial);
        v
    }
}

/// What a sync state stands for.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mailbox: String,
    pub folder: String,
    pub generation: u64,
    /// id → (version, is_read) as the client was last told.
    pub seen: HashMap<String, (u64, bool)>,
}

/// Throttling the next matching request meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttle {
    /// A SOAP fault `ErrorServerBusy` with `BackOffMilliseconds`.
    Busy { back_off_ms: u64 },
    /// HTTP 503.
    Unavailable,
    /// `ErrorExceededConnectionCount`.
    ConnectionCount,
}

/// One SOAP request as the simulator saw it, for tests that time a
/// client's waits.
#[derive(Debug, Clone)]
pub struct Served {
    pub op: String,
    pub at: std::time::Instant,
    /// A hash of the request's bytes: a retry sends the same bytes.
    pub body: u64,
    /// The throttling it met, if any.
    pub throttled: Option<Throttle>,
}

/// Counters tests read.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// SOAP requests served (authenticated), by operation.
    pub operations: BTreeMap<String, u64>,
    pub http_requests: u64,
    pub ntlm_handshakes: u64,
    pub basic_logins: u64,
    pub refused_logins: u64,
    /// Impersonated requests whose X-AnchorMailbox did not name the mailbox.
    pub anchor_mismatches: u64,
    /// The most requests a login had in flight at once.
    pub max_in_flight: u64,
    pub throttled: u64,
    /// Bytes of SOAP answers written.
    pub bytes_out: u64,
}

pub struct Store {
    pub version: SimVersion,
    pub users: Vec<User>,
    pub mailboxes: HashMap<String, SimMailbox>,
    pub snapshots: HashMap<String, Snapshot>,
    pub throttles: VecDeque<(Option<String>, Throttle)>,
    /// Concurrent requests a login may have (EWSMaxConcurrency), if capped.
    pub max_concurrency: Option<u64>,
    pub in_flight: HashMap<String, u64>,
    pub counters: Counters,
    /// Every request that named an operation, in arrival order.
    pub served: Vec<Served>,
    next: u64,
    salt: u64,
}

impl Store {
    pub fn new(version: SimVersion) -> Store {
        Store {
            version,
            users: Vec::new(),
            mailboxes: HashMap::new(),
            snapshots: HashMap::new(),
            throttles: VecDeque::new(),
            max_concurrency: None,
            in_flight: HashMap::new(),
            counters: Counters::default(),
            served: Vec::new(),
            next: 0,
            salt: rand::random(),
        }
    }

    /// A fresh opaque id with a recognisable prefix (Exchange's start
    /// with `AAMk` for items, `AQMk` for folders).
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        let mut raw = prefix.as_bytes().to_vec();
        raw.extend_from_slice(&self.salt.to_le_bytes());
        raw.extend_from_slice(&self.next.to_le_bytes());
        raw.extend_from_slice(&rand::random::<[u8; 8]>());
        B64.encode(raw)
    }

    pub fn serial(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    pub fn user(&self, login: &str) -> Option<&User> {
        self.users.iter().find(|u| u.is(login))
    }

    /// Adds a user; with a mailbox, its standard folders are made.
    pub fn add_user(&mut self, user: User) {
        if user.has_mailbox {
            let mut mb = SimMailbox::default();
            let top = self.new_id("AQMkroot");
            mb.folders.push(SimFolder {
                id: top.clone(),
                parent: None,
                name: "Root".into(),
                class: String::new(),
                distinguished: Some("root"),
                generation: 0,
            });
            let root = self.new_id("AQMkmsgr");
            mb.folders.push(SimFolder {
                id: root.clone(),
                parent: Some(top),
                name: "Top of Information Store".into(),
                class: "IPF.Note".into(),
                distinguished: Some("msgfolderroot"),
                generation: 0,
            });
            for (name, class, dist) in [
                ("Inbox", "IPF.Note", "inbox"),
                ("Sent Items", "IPF.Note", "sentitems"),
                ("Drafts", "IPF.Note", "drafts"),
                ("Deleted Items", "IPF.Note", "deleteditems"),
                ("Junk Email", "IPF.Note", "junkemail"),
                ("Outbox", "IPF.Note", "outbox"),
                ("Archive", "IPF.Note", "archive"),
                ("Calendar", "IPF.Appointment", "calendar"),
                ("Contacts", "IPF.Contact", "contacts"),
                ("Tasks", "IPF.Task", "tasks"),
                ("Notes", "IPF.StickyNote", "notes"),
            ] {
                let id = self.new_id("AQMkfold");
                mb.folders.push(SimFolder {
                    id,
                    parent: Some(root.clone()),
                    name: name.into(),
                    class: class.into(),
                    distinguished: Some(dist),
                    generation: 0,
                });
            }
            self.mailboxes.insert(user.smtp.to_ascii_lowercase(), mb);
        }
        self.users.push(user);
    }

    pub fn mailbox(&self, smtp: &str) -> Option<&SimMailbox> {
        self.mailboxes.get(&smtp.to_ascii_lowercase())
    }

    pub fn mailbox_mut(&mut self, smtp: &str) -> &mut SimMailbox {
        self.mailboxes
            .get_mut(&smtp.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no mailbox {smtp}"))
    }

    /// Adds a folder below `parent` (a folder id); returns its id.
    pub fn add_folder(&mut self, smtp: &str, parent: &str, name: &str, class: &str) -> String {
        let id = self.new_id("AQMkfold");
        self.mailbox_mut(smtp).folders.push(SimFolder {
            id: id.clone(),
            parent: Some(parent.to_string()),
            name: name.into(),
            class: class.into(),
            distinguished: None,
            generation: 0,
        });
        id
    }

    /// Adds an item; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn add_item(
        &mut self,
        smtp: &str,
        folder: &str,
        kind: ItemKind,
        mime: Vec<u8>,
        is_read: bool,
        flag: FlagStatus,
        categories: Vec<String>,
        received: DateTime<Utc>,
    ) -> String {
        let id = self.new_id("AAMkitem");
        let serial = self.serial();
        self.mailbox_mut(smtp).items.insert(
            id.clone(),
            SimItem {
                id: id.clone(),
                folder: folder.to_string(),
                kind,
                serial,
                version: 1,
                read_version: 0,
                mime,
                is_read,
                flag,
                categories,
                received,
            },
        );
        id
    }

    /// Moves an item to `folder`: it gets a new id, as in Exchange.
    pub fn move_item(&mut self, smtp: &str, id: &str, folder: &str) -> String {
        let new_id = self.new_id("AAMkitem");
        let serial = self.serial();
        let mb = self.mailbox_mut(smtp);
        let mut item = mb.items.remove(id).expect("the item exists");
        item.id = new_id.clone();
        item.folder = folder.to_string();
        item.serial = serial;
        item.version += 1;
        mb.items.insert(new_id.clone(), item);
        new_id
    }

    /// The changes of `folder` since `snapshot` (none: from the start), at
    /// most `max`; returns them, whether they are all, and the new snapshot.
    pub fn diff(
        &self,
        smtp: &str,
        folder: &str,
        snapshot: Option<&Snapshot>,
        max: usize,
    ) -> (Vec<SyncChange>, bool, Snapshot) {
        let mb = self.mailbox(smtp).expect("mailbox");
        let empty = HashMap::new();
        let seen = snapshot.map(|s| &s.seen).unwrap_or(&empty);
        let current = mb.items_in(folder);
        let mut all = Vec::new();
        let mut gone: Vec<&String> = seen
            .keys()
            .filter(|id| mb.items.get(*id).is_none_or(|i| i.folder != folder))
            .collect();
        gone.sort();
        for id in gone {
            all.push(SyncChange::Delete(id.clone()));
        }
        for item in current {
            match seen.get(&item.id) {
                None => all.push(SyncChange::Create(item.id.clone())),
                Some((v, _)) if *v != item.version => all.push(SyncChange::Update(item.id.clone())),
                Some((_, r)) if *r != item.is_read => {
                    all.push(SyncChange::ReadFlag(item.id.clone(), item.is_read))
                }
                Some(_) => {}
            }
        }
        let last = all.len() <= max;
        all.truncate(max);
        let mut next = Snapshot {
            mailbox: smtp.to_ascii_lowercase(),
            folder: folder.to_string(),
            generation: mb.folder(folder).map(|f| f.generation).unwrap_or(0),
            seen: seen.clone(),
        };
        for c in &all {
            match c {
                SyncChange::Delete(id) => {
                    next.seen.remove(id);
                }
                SyncChange::Create(id) | SyncChange::Update(id) | SyncChange::ReadFlag(id, _) => {
                    let i = &mb.items[id];
                    next.seen.insert(id.clone(), (i.version, i.is_read));
                }
            }
        }
        (all, last, next)
    }

    /// Stores `snapshot` under a new opaque token.
    pub fn keep_snapshot(&mut self, snapshot: Snapshot) -> String {
        let token = B64.encode(rand::random::<[u8; 24]>());
        self.snapshots.insert(token.clone(), snapshot);
        token
    }
}

/// One change a sync reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncChange {
    Create(String),
    Update(String),
    Delete(String),
    ReadFlag(String, bool),
}
