//! Exchange Web Services as a [`ChangeSource`]: the folder tree with its
//! classes, `SyncFolderItems` as the change feed, `GetItem` with MIME for
//! the bytes. Throttling, the connection cap and NTLM are the `ferry-ews`
//! crate's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
pub use ferry_ews::{ApiVersion, AuthKind, SharedBackoff, SharedBackoffs};
use ferry_ews::{
    Credentials, Endpoint, EndpointConfig, EwsError, Fetched, FlagStatus, FolderKind, ItemId,
    Mailbox, WellKnown,
};

use crate::source::{
    Change, ChangeSource, Changes, Cursor, FolderClass, SourceFolder, SourceItem, SourceKey,
    SourceMeta, item_flags,
};
use crate::{ConnectorError, ErrorClass, Flag, Folder, FolderName, Result, SpecialUse};

/// Items per `GetItem`: a few MIME bodies per answer keep it well under
/// Exchange's default 64 MB request and answer limits.
pub const FETCH_BATCH: usize = 10;

/// How to reach an EWS endpoint.
#[derive(Debug, Clone)]
pub struct EwsConfig {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub max_connections: usize,
    pub version: Option<ApiVersion>,
    /// Back-offs shared by a fleet's workers.
    pub shared: Option<ferry_ews::SharedBackoffs>,
}

/// The `host:port` an EWS URL names, as errors and outages name it.
pub fn endpoint_name(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !authority.ends_with(']'));
    if has_port {
        authority.to_string()
    } else if scheme.eq_ignore_ascii_case("http") {
        format!("{authority}:80")
    } else {
        format!("{authority}:443")
    }
}

/// An endpoint to open mailboxes through.
pub fn endpoint(cfg: &EwsConfig) -> Result<Endpoint> {
    let mut c = EndpointConfig::new(cfg.url.clone());
    c.ca_file = cfg.ca_file.clone();
    c.timeout = cfg.timeout;
    c.max_connections = Some(cfg.max_connections.max(1));
    c.version = cfg.version;
    c.shared = cfg.shared.clone();
    Endpoint::new(&c).map_err(|e| error(&endpoint_name(&cfg.url), "connecting", e))
}

/// A connector error for an EWS one; the text never holds a password.
pub fn error(endpoint: &str, op: &'static str, e: EwsError) -> ConnectorError {
    let endpoint = endpoint.to_string();
    let text = e.to_string();
    match e {
        EwsError::Unauthorized { login, .. } => ConnectorError::Auth {
            endpoint,
            user: login,
            text,
        },
        EwsError::ImpersonationDenied { login, .. } => ConnectorError::Auth {
            endpoint,
            user: login,
            text,
        },
        EwsError::InvalidSyncState { folder, .. } => {
            ConnectorError::CursorInvalid { endpoint, folder }
        }
        EwsError::Throttled { .. } => ConnectorError::Server {
            endpoint,
            op,
            class: ErrorClass::Throttled,
            text,
        },
        e if e.is_transient() => ConnectorError::Server {
            endpoint,
            op,
            class: ErrorClass::Connection,
            text,
        },
        EwsError::Config { .. } | EwsError::Unsupported { .. } => ConnectorError::Refused {
            endpoint,
            op,
            class: ErrorClass::Other,
            text,
        },
        _ => ConnectorError::Protocol { endpoint, op, text },
    }
}

/// One mailbox read over EWS: its own login, or an admin's impersonating it.
pub struct EwsSource {
    mailbox: Mailbox,
    name: String,
    /// Folder name → EWS folder id, from the last listing.
    ids: HashMap<String, String>,
}

impl EwsSource {
    /// Logs in (and proves the right to impersonate `act_as`).
    pub async fn open(
        ep: &Endpoint,
        auth: AuthKind,
        login: &str,
        password: &str,
        act_as: Option<&str>,
    ) -> Result<EwsSource> {
        let name = ep.name().to_string();
        let creds = Credentials::new(auth, login, password);
        let mailbox = Mailbox::open(ep, creds, act_as)
            .await
            .map_err(|e| error(&name, "logging in", e))?;
        Ok(EwsSource {
            mailbox,
            name,
            ids: HashMap::new(),
        })
    }

    /// The server's version, as `endpoint verify` shows it.
    pub fn server(&self) -> String {
        match self.mailbox.endpoint().server_version() {
            Some(v) => format!("EWS {v}"),
            None => format!("EWS {}", self.mailbox.version().as_str()),
        }
    }

    fn err(&self, op: &'static str) -> impl Fn(EwsError) -> ConnectorError + '_ {
        move |e| error(&self.name, op, e)
    }
}

fn class_of(kind: FolderKind) -> FolderClass {
    match kind {
        FolderKind::Mail => FolderClass::Mail,
        FolderKind::Calendar => FolderClass::Calendar,
        FolderKind::Contacts => FolderClass::Contacts,
        FolderKind::Tasks => FolderClass::Tasks,
        FolderKind::Other => FolderClass::Other,
    }
}

fn special_use(w: WellKnown) -> Option<SpecialUse> {
    Some(match w {
        WellKnown::Inbox => SpecialUse::Inbox,
        WellKnown::SentItems => SpecialUse::Sent,
        WellKnown::Drafts => SpecialUse::Drafts,
        WellKnown::DeletedItems => SpecialUse::Trash,
        WellKnown::JunkEmail => SpecialUse::Junk,
        WellKnown::Archive => SpecialUse::Archive,
        _ => return None,
    })
}

/// Flags and keywords as a copy carries them (see [`item_flags`]).
pub fn flags_of(read: bool, flag: FlagStatus, categories: &[String]) -> Vec<Flag> {
    item_flags(read, flag == FlagStatus::Flagged, categories)
}

fn date(t: Option<DateTime<Utc>>) -> Option<DateTime<FixedOffset>> {
    t.map(|t| t.fixed_offset())
}

#[async_trait]
impl ChangeSource for EwsSource {
    async fn folders(&mut self) -> Result<Vec<SourceFolder>> {
        let list = self
            .mailbox
            .folders()
            .await
            .map_err(self.err("listing folders"))?;
        self.ids.clear();
        let mut out = Vec::with_capacity(list.len());
        for f in list {
            let raw = f.path.join("/");
            self.ids.insert(raw.clone(), f.id.clone());
            out.push(SourceFolder {
                folder: Folder {
                    name: FolderName {
                        raw,
                        delimiter: Some('/'),
                        segments: f.path.clone(),
                    },
                    special_use: f.well_known.and_then(special_use),
                    selectable: true,
                    subscribed: true,
                },
                class: class_of(f.kind),
                class_name: f.class,
            });
        }
        Ok(out)
    }

    async fn changes(
        &mut self,
        folder: &FolderName,
        cursor: Option<&Cursor>,
        max: usize,
    ) -> Result<Changes> {
        // A session that has not listed the tree yet (a spare) lists it once.
        if !self.ids.contains_key(&folder.raw) {
            self.folders().await?;
        }
        let Some(id) = self.ids.get(&folder.raw).cloned() else {
            return Err(ConnectorError::Server {
                endpoint: self.name.clone(),
                op: "SyncFolderItems",
                class: ErrorClass::Folder,
                text: format!("no folder {} at the source", folder.raw),
            });
        };
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let page = self
            .mailbox
            .sync_items(&id, cursor.map(|c| c.0.as_str()), max)
            .await
            .map_err(|e| match e {
                EwsError::InvalidSyncState { endpoint, .. } => ConnectorError::CursorInvalid {
                    endpoint,
                    folder: folder.raw.clone(),
                },
                e => error(&self.name, "SyncFolderItems", e),
            })?;
        let meta = |i: ferry_ews::ItemInfo| SourceMeta {
            key: SourceKey(i.id.id),
            size: i.size.unwrap_or(0),
            flags: flags_of(
                i.is_read.unwrap_or(false),
                i.flag.unwrap_or_default(),
                &i.categories,
            ),
            internal_date: date(i.received),
        };
        let changes = page
            .changes
            .into_iter()
            .map(|c| match c {
                ferry_ews::Change::Create(i) => Change::Created(meta(i)),
                ferry_ews::Change::Update(i) => Change::Updated(meta(i)),
                ferry_ews::Change::Delete { id } => Change::Deleted(SourceKey(id)),
                ferry_ews::Change::ReadFlag { id, is_read } => Change::Read {
                    key: SourceKey(id),
                    seen: is_read,
                },
            })
            .collect();
        Ok(Changes {
            changes,
            cursor: Cursor(page.sync_state),
            last: page.last,
        })
    }

    async fn fetch(&mut self, keys: &[SourceKey]) -> Result<Vec<SourceItem>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(FETCH_BATCH) {
            let ids = item_ids(chunk);
            let got = self
                .mailbox
                .get_items(&ids)
                .await
                .map_err(self.err("GetItem"))?;
            for f in got {
                let Fetched::Item(i) = f else { continue };
                let flags = flags_of(i.is_read.unwrap_or(false), i.flag, &i.categories);
                out.push(SourceItem {
                    meta: SourceMeta {
                        key: SourceKey(i.id.id),
                        size: i.mime.len() as u64,
                        flags,
                        internal_date: date(i.received),
                    },
                    body: Bytes::from(i.mime),
                });
            }
        }
        Ok(out)
    }

    fn exports(&self) -> bool {
        self.mailbox.version() >= ApiVersion::Exchange2010Sp1
    }

    async fn export(&mut self, keys: &[SourceKey]) -> Result<Vec<SourceItem>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(FETCH_BATCH) {
            let ids = item_ids(chunk);
            let got = self
                .mailbox
                .export_items(&ids)
                .await
                .map_err(self.err("ExportItems"))?;
            for e in got {
                out.push(SourceItem {
                    meta: SourceMeta {
                        key: SourceKey(e.id.id),
                        size: e.data.len() as u64,
                        flags: Vec::new(),
                        internal_date: None,
                    },
                    body: Bytes::from(e.data),
                });
            }
        }
        Ok(out)
    }
}

/// EWS ids of `keys`, without change keys: the latest version is wanted.
fn item_ids(keys: &[SourceKey]) -> Vec<ItemId> {
    keys.iter()
        .map(|k| ItemId {
            id: k.0.clone(),
            change_key: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_match_the_ews_crate() {
        assert_eq!(
            endpoint_name("https://ex.example/EWS/Exchange.asmx"),
            "ex.example:443"
        );
        assert_eq!(
            endpoint_name("http://127.0.0.1:8080/EWS/Exchange.asmx"),
            "127.0.0.1:8080"
        );
        assert_eq!(endpoint_name("http://ex.example/EWS"), "ex.example:80");
    }

    #[test]
    fn flags_carry_read_state_flag_and_categories() {
        let cats = vec!["Red Category".to_string(), "Red Category".to_string()];
        assert_eq!(
            flags_of(true, FlagStatus::Flagged, &cats),
            vec!["\\Seen", "\\Flagged", "Red_Category"]
        );
        assert!(flags_of(false, FlagStatus::Complete, &[]).is_empty());
    }
}
