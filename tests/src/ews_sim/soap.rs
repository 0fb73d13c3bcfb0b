//! The operations, from Microsoft's EWS reference: GetFolder, FindFolder,
//! SyncFolderItems, GetItem, ExportItems and ConvertId (which exchangelib
//! sends to learn the version). Answers follow the reference's examples:
//! `ServerVersionInfo` in the header, one response message per id.
//!
//! Where the simulator departs from Exchange, a comment says so.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ferry_ews::ApiVersion;
use ferry_ews::xml::roxmltree::{Document, Node};
use ferry_ews::xml::{self, MESSAGES as M, SOAP, TYPES as T, Xml};

use super::store::{Served, SimItem, Store, SyncChange, Throttle};

/// What one request comes to.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The request's caller: the authenticated login and the mailbox it acts on.
pub struct Caller<'a> {
    pub login: &'a str,
    pub anchor: Option<&'a str>,
}

const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

fn header(x: &mut Xml, store: &Store) {
    let (ma, mi, b, mb, v) = store.version.info();
    let (ma, mi, b, mb) = (
        ma.to_string(),
        mi.to_string(),
        b.to_string(),
        mb.to_string(),
    );
    x.open("s:Header", &[]).empty(
        "h:ServerVersionInfo",
        &[
            ("MajorVersion", &ma),
            ("MinorVersion", &mi),
            ("MajorBuildNumber", &b),
            ("MinorBuildNumber", &mb),
            ("Version", v),
            ("xmlns:h", T),
        ],
    );
    x.close("s:Header");
}

fn open_envelope(x: &mut Xml) {
    x.open(
        "s:Envelope",
        &[("xmlns:s", SOAP), ("xmlns:m", M), ("xmlns:t", T)],
    );
}

/// A SOAP fault as Exchange sends it (HTTP 500), with `BackOffMilliseconds`
/// for `ErrorServerBusy`.
pub fn fault(store: &Store, code: &str, message: &str, back_off_ms: Option<u64>) -> Reply {
    let mut x = Xml::new();
    open_envelope(&mut x);
    // Exchange omits the header on most faults; ServerBusy keeps it.
    if back_off_ms.is_some() {
        header(&mut x, store);
    }
    x.open("s:Body", &[]).open("s:Fault", &[]);
    x.text_with("faultcode", &[("xmlns:a", T)], &format!("a:{code}"));
    x.text("faultstring", message);
    x.open("detail", &[]);
    x.text_with("e:ResponseCode", &[("xmlns:e", ERRORS_NS)], code);
    x.text_with("e:Message", &[("xmlns:e", ERRORS_NS)], message);
    if let Some(ms) = back_off_ms {
        x.open("t:MessageXml", &[])
            .text_with(
                "t:Value",
                &[("Name", "BackOffMilliseconds")],
                &ms.to_string(),
            )
            .close("t:MessageXml");
    }
    x.close("detail")
        .close("s:Fault")
        .close("s:Body")
        .close("s:Envelope");
    Reply {
        status: 500,
        body: x.into_bytes(),
    }
}

/// Handles one authenticated SOAP request.
pub fn handle(store: &mut Store, caller: &Caller<'_>, body: &[u8]) -> Reply {
    let Ok(text) = std::str::from_utf8(body) else {
        return fault(
            store,
            "ErrorSchemaValidation",
            "The request is not UTF-8.",
            None,
        );
    };
    let doc = match Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            return fault(
                store,
                "ErrorSchemaValidation",
                &format!("The request failed schema validation: {e}"),
                None,
            );
        }
    };
    let env = doc.root_element();
    let head = xml::child(env, SOAP, "Header");
    let Some(op) = xml::child(env, SOAP, "Body").and_then(|b| xml::elements(b).next()) else {
        return fault(
            store,
            "ErrorSchemaValidation",
            "The request has no body.",
            None,
        );
    };
    let op_name = op.tag_name().name().to_string();
    // The schema version: a newer one than the server's is refused, as
    // Exchange does; none at all means Exchange 2007 SP1's, which this
    // simulator treats as its oldest, 2010.
    let requested = match head
        .and_then(|h| xml::child(h, T, "RequestServerVersion"))
        .and_then(|v| v.attribute("Version"))
    {
        None => ApiVersion::Exchange2010,
        Some(v) => match ApiVersion::parse(v) {
            Some(v) if v <= store.version.newest_schema() => v,
            _ => {
                return fault(
                    store,
                    "ErrorInvalidServerVersion",
                    "The specified server version is invalid.",
                    None,
                );
            }
        },
    };
    let Some(user) = store.user(caller.login).cloned() else {
        return fault(store, "ErrorAccessDenied", "Unknown user.", None);
    };
    // Impersonation: the caller needs the role; the anchor should name the
    // mailbox (Exchange 2013 and later route by it).
    let impersonated = head
        .and_then(|h| xml::descend(h, &[(T, "ExchangeImpersonation"), (T, "ConnectingSID")]))
        .and_then(|sid| xml::elements(sid).next())
        .map(|n| n.text().unwrap_or("").trim().to_string());
    let mailbox = match &impersonated {
        Some(target) => {
            if !user.impersonation {
                return fault(
                    store,
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                    None,
                );
            }
            if store.mailbox(target).is_none() {
                return fault(
                    store,
                    "ErrorNonExistentMailbox",
                    "The SMTP address has no mailbox associated with it.",
                    None,
                );
            }
            if !caller
                .anchor
                .is_some_and(|a| a.eq_ignore_ascii_case(target))
            {
                store.counters.anchor_mismatches += 1;
            }
            target.to_ascii_lowercase()
        }
        None => {
            // ConvertId touches no mailbox: a service account may call it.
            if !user.has_mailbox && op_name != "ConvertId" {
                return fault(
                    store,
                    "ErrorNonExistentMailbox",
                    "The user has no mailbox.",
                    None,
                );
            }
            user.smtp.to_ascii_lowercase()
        }
    };
    // Injected throttling, for the next request of the named operation.
    let throttle = store
        .throttles
        .iter()
        .position(|(o, _)| o.as_ref().is_none_or(|o| *o == op_name))
        .and_then(|pos| store.throttles.remove(pos))
        .map(|(_, t)| t);
    store.served.push(Served {
        op: op_name.clone(),
        at: std::time::Instant::now(),
        body: {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(body, &mut h);
            std::hash::Hasher::finish(&h)
        },
        throttled: throttle.clone(),
    });
    if let Some(t) = throttle {
        store.counters.throttled += 1;
        return match t {
            Throttle::Busy { back_off_ms } => fault(
                store,
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                Some(back_off_ms),
            ),
            Throttle::ConnectionCount => fault(
                store,
                "ErrorExceededConnectionCount",
                "You have exceeded the available concurrent connections for your account.",
                None,
            ),
            Throttle::Unavailable => Reply {
                status: 503,
                body: b"Service Unavailable".to_vec(),
            },
        };
    }
    *store
        .counters
        .operations
        .entry(op_name.clone())
        .or_default() += 1;
    let ctx = Ctx { mailbox, requested };
    let mut x = Xml::new();
    open_envelope(&mut x);
    header(&mut x, store);
    x.open("s:Body", &[]);
    let result = match op_name.as_str() {
        "GetFolder" => get_folder(store, &ctx, op, &mut x),
        "FindFolder" => find_folder(store, &ctx, op, &mut x),
        "SyncFolderItems" => sync_folder_items(store, &ctx, op, &mut x),
        "GetItem" => get_item(store, &ctx, op, &mut x),
        "ExportItems" => export_items(store, &ctx, op, &mut x),
        "ConvertId" => convert_id(op, &mut x),
        other => Err((
            "ErrorInvalidRequest",
            format!("The simulator does not implement {other}."),
        )),
    };
    if let Err((code, message)) = result {
        return fault(store, code, &message, None);
    }
    x.close("s:Body").close("s:Envelope");
    let body = x.into_bytes();
    store.counters.bytes_out += body.len() as u64;
    Reply { status: 200, body }
}

struct Ctx {
    mailbox: String,
    requested: ApiVersion,
}

type OpResult = Result<(), (&'static str, String)>;

fn open_response(x: &mut Xml, op: &str) {
    x.open(&format!("m:{op}Response"), &[])
        .open("m:ResponseMessages", &[]);
}

fn close_response(x: &mut Xml, op: &str) {
    x.close("m:ResponseMessages")
        .close(&format!("m:{op}Response"));
}

fn success(x: &mut Xml, op: &str) {
    x.open(
        &format!("m:{op}ResponseMessage"),
        &[("ResponseClass", "Success")],
    )
    .text("m:ResponseCode", "NoError");
}

fn error_message(x: &mut Xml, op: &str, code: &str, text: &str) {
    x.open(
        &format!("m:{op}ResponseMessage"),
        &[("ResponseClass", "Error")],
    )
    .text("m:MessageText", text)
    .text("m:ResponseCode", code)
    .text("m:DescriptiveLinkKey", "0")
    .close(&format!("m:{op}ResponseMessage"));
}

/// Resolves a `FolderId` or `DistinguishedFolderId` element to a folder id.
/// A `Mailbox` inside a distinguished id must be the caller's own.
fn folder_ref(store: &Store, ctx: &Ctx, node: Node<'_, '_>) -> Result<String, &'static str> {
    let mb = store
        .mailbox(&ctx.mailbox)
        .ok_or("ErrorNonExistentMailbox")?;
    let id = node.attribute("Id").ok_or("ErrorInvalidIdMalformed")?;
    match node.tag_name().name() {
        "DistinguishedFolderId" => {
            if let Some(addr) = xml::descend(node, &[(T, "Mailbox"), (T, "EmailAddress")])
                && !addr
                    .text()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(&ctx.mailbox)
            {
                return Err("ErrorAccessDenied");
            }
            // `archive` is known from Exchange 2016's schema on.
            if id == "archive" && ctx.requested < ApiVersion::Exchange2016 {
                return Err("ErrorFolderNotFound");
            }
            mb.distinguished(id)
                .map(|f| f.id.clone())
                .ok_or("ErrorFolderNotFound")
        }
        _ => mb
            .folder(id)
            .map(|f| f.id.clone())
            .ok_or("ErrorFolderNotFound"),
    }
}

/// Writes a folder. Departure: Exchange honours the folder shape; the
/// simulator always sends the properties a client of it needs.
fn write_folder(store: &Store, ctx: &Ctx, x: &mut Xml, id: &str) {
    let mb = store.mailbox(&ctx.mailbox).expect("mailbox");
    let f = mb.folder(id).expect("folder");
    let el = format!("t:{}", f.element());
    let total = mb.items.values().filter(|i| i.folder == f.id).count();
    let unread = mb
        .items
        .values()
        .filter(|i| i.folder == f.id && !i.is_read)
        .count();
    let children = mb
        .folders
        .iter()
        .filter(|c| c.parent.as_deref() == Some(&f.id))
        .count();
    x.open(&el, &[]);
    x.empty(
        "t:FolderId",
        &[("Id", &f.id), ("ChangeKey", "AQAAABYAAAA=")],
    );
    if let Some(p) = &f.parent {
        x.empty("t:ParentFolderId", &[("Id", p), ("ChangeKey", "AQAAAA==")]);
    }
    x.text("t:FolderClass", &f.class);
    x.text("t:DisplayName", &f.name);
    x.text("t:TotalCount", &total.to_string());
    x.text("t:ChildFolderCount", &children.to_string());
    if f.element() != "ContactsFolder" {
        x.text("t:UnreadCount", &unread.to_string());
    }
    x.close(&el);
}

fn get_folder(store: &mut Store, ctx: &Ctx, op: Node<'_, '_>, x: &mut Xml) -> OpResult {
    let ids = xml::child(op, M, "FolderIds")
        .ok_or(("ErrorSchemaValidation", "no FolderIds".to_string()))?;
    open_response(x, "GetFolder");
    for r in xml::elements(ids) {
        match folder_ref(store, ctx, r) {
            Ok(id) => {
                success(x, "GetFolder");
                x.open("m:Folders", &[]);
                write_folder(store, ctx, x, &id);
                x.close("m:Folders").close("m:GetFolderResponseMessage");
            }
            Err(code) => error_message(
                x,
                "GetFolder",
                code,
                "The specified object was not found in the store.",
            ),
        }
    }
    close_response(x, "GetFolder");
    Ok(())
}

fn find_folder(store: &mut Store, ctx: &Ctx, op: Node<'_, '_>, x: &mut Xml) -> OpResult {
    let deep = op.attribute("Traversal") == Some("Deep");
    let parents = xml::child(op, M, "ParentFolderIds")
        .ok_or(("ErrorSchemaValidation", "no ParentFolderIds".to_string()))?;
    let (offset, max) = xml::child(op, M, "IndexedPageFolderView")
        .map(|v| {
            let n = |a: &str, d: usize| v.attribute(a).and_then(|s| s.parse().ok()).unwrap_or(d);
            (n("Offset", 0), n("MaxEntriesReturned", usize::MAX))
        })
        .unwrap_or((0, usize::MAX));
    open_response(x, "FindFolder");
    for p in xml::elements(parents) {
        let root = match folder_ref(store, ctx, p) {
            Ok(id) => id,
            Err(code) => {
                error_message(
                    x,
                    "FindFolder",
                    code,
                    "The specified folder could not be found.",
                );
                continue;
            }
        };
        let mb = store.mailbox(&ctx.mailbox).expect("mailbox");
        // Depth first, parents before children, as Exchange lists them.
        let mut found = Vec::new();
        let mut stack = vec![root];
        while let Some(parent) = stack.pop() {
            let kids: Vec<&super::store::SimFolder> = mb
                .folders
                .iter()
                .filter(|f| f.parent.as_deref() == Some(&parent))
                .collect();
            for k in kids.iter().rev() {
                if deep {
                    stack.push(k.id.clone());
                }
            }
            found.extend(kids.iter().map(|k| k.id.clone()));
        }
        let total = found.len();
        let page: Vec<String> = found.into_iter().skip(offset).take(max).collect();
        let end = offset + page.len();
        success(x, "FindFolder");
        x.open(
            "m:RootFolder",
            &[
                ("IndexedPagingOffset", &end.to_string()),
                ("TotalItemsInView", &total.to_string()),
                (
                    "IncludesLastItemInRange",
                    if end >= total { "true" } else { "false" },
                ),
            ],
        )
        .open("t:Folders", &[]);
        for id in &page {
            write_folder(store, ctx, x, id);
        }
        x.close("t:Folders")
            .close("m:RootFolder")
            .close("m:FindFolderResponseMessage");
    }
    close_response(x, "FindFolder");
    Ok(())
}

/// What an `ItemShape` asks for.
struct Shape {
    all: bool,
    mime: bool,
    fields: HashSet<String>,
    extended: HashSet<String>,
}

impl Shape {
    fn of(op: Node<'_, '_>, requested: ApiVersion) -> Result<Shape, (&'static str, String)> {
        let Some(s) = xml::child(op, M, "ItemShape") else {
            return Err(("ErrorSchemaValidation", "no ItemShape".into()));
        };
        let base = xml::child_text(s, T, "BaseShape").unwrap_or("IdOnly");
        let mut shape = Shape {
            all: base != "IdOnly",
            mime: xml::child_text(s, T, "IncludeMimeContent") == Some("true"),
            fields: HashSet::new(),
            extended: HashSet::new(),
        };
        if let Some(props) = xml::child(s, T, "AdditionalProperties") {
            for p in xml::elements(props) {
                match p.tag_name().name() {
                    "FieldURI" => {
                        let uri = p.attribute("FieldURI").unwrap_or("");
                        // item:Flag is in the 2013 schema, not before.
                        if uri == "item:Flag" && requested < ApiVersion::Exchange2013 {
                            return Err((
                                "ErrorSchemaValidation",
                                "The request failed schema validation: The 'FieldURI' attribute is invalid - The value 'item:Flag' is invalid according to its datatype.".into(),
                            ));
                        }
                        shape.fields.insert(uri.to_string());
                    }
                    "ExtendedFieldURI" => {
                        if let Some(tag) = p.attribute("PropertyTag") {
                            shape.extended.insert(tag.to_ascii_lowercase());
                        }
                    }
                    _ => {}
                }
            }
        }
        // MIME comes by IncludeMimeContent or as the `item:MimeContent`
        // property (exchangelib asks the second way).
        shape.mime |= shape.fields.contains("item:MimeContent");
        Ok(shape)
    }

    fn has(&self, uri: &str) -> bool {
        self.all || self.fields.contains(uri)
    }
}

/// Writes an item as the shape asks, in the schema's element order.
fn write_item(x: &mut Xml, item: &SimItem, shape: &Shape, requested: ApiVersion, with_mime: bool) {
    let el = format!("t:{}", item.kind.element());
    x.open(&el, &[]);
    if with_mime && shape.mime {
        x.text_with(
            "t:MimeContent",
            &[("CharacterSet", "UTF-8")],
            &B64.encode(&item.mime),
        );
    }
    x.empty(
        "t:ItemId",
        &[("Id", &item.id), ("ChangeKey", &item.change_key())],
    );
    if shape.has("item:ItemClass") {
        x.text("t:ItemClass", item.kind.item_class());
    }
    if shape.has("item:DateTimeReceived") {
        x.text(
            "t:DateTimeReceived",
            &item.received.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    if shape.has("item:Size") {
        x.text("t:Size", &item.mime.len().to_string());
    }
    if shape.has("item:Categories") && !item.categories.is_empty() {
        x.open("t:Categories", &[]);
        for c in &item.categories {
            x.text("t:String", c);
        }
        x.close("t:Categories");
    }
    if shape.extended.contains(ferry_ews::ops::PR_FLAG_STATUS) {
        x.open("t:ExtendedProperty", &[])
            .empty(
                "t:ExtendedFieldURI",
                &[
                    ("PropertyTag", ferry_ews::ops::PR_FLAG_STATUS),
                    ("PropertyType", "Integer"),
                ],
            )
            .text("t:Value", &item.flag.to_mapi().to_string())
            .close("t:ExtendedProperty");
    }
    if shape.has("item:Flag") && requested >= ApiVersion::Exchange2013 {
        x.open("t:Flag", &[])
            .text("t:FlagStatus", item.flag.as_str())
            .close("t:Flag");
    }
    if item.kind == super::store::ItemKind::Message && shape.has("message:IsRead") {
        x.text("t:IsRead", if item.is_read { "true" } else { "false" });
    }
    x.close(&el);
}

fn sync_folder_items(store: &mut Store, ctx: &Ctx, op: Node<'_, '_>, x: &mut Xml) -> OpResult {
    let shape = Shape::of(op, ctx.requested)?;
    let folder_node = xml::child(op, M, "SyncFolderId")
        .and_then(|s| xml::elements(s).next())
        .ok_or(("ErrorSchemaValidation", "no SyncFolderId".to_string()))?;
    let max = xml::child_text(op, M, "MaxChangesReturned")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| (1..=512).contains(m))
        .ok_or((
            "ErrorSchemaValidation",
            "MaxChangesReturned must be 1 to 512".to_string(),
        ))?;
    open_response(x, "SyncFolderItems");
    let folder = match folder_ref(store, ctx, folder_node) {
        Ok(f) => f,
        Err(code) => {
            error_message(
                x,
                "SyncFolderItems",
                code,
                "The specified folder could not be found.",
            );
            close_response(x, "SyncFolderItems");
            return Ok(());
        }
    };
    let state = xml::child_text(op, M, "SyncState").filter(|s| !s.is_empty());
    let generation = store
        .mailbox(&ctx.mailbox)
        .and_then(|m| m.folder(&folder))
        .map(|f| f.generation)
        .unwrap_or(0);
    let snapshot = match state {
        None => None,
        Some(token) => match store.snapshots.get(token) {
            Some(s)
                if s.folder == folder && s.mailbox == ctx.mailbox && s.generation == generation =>
            {
                Some(s.clone())
            }
            _ => {
                error_message(
                    x,
                    "SyncFolderItems",
                    "ErrorInvalidSyncStateData",
                    "Synchronization state data is corrupt or otherwise invalid.",
                );
                close_response(x, "SyncFolderItems");
                return Ok(());
            }
        },
    };
    let (changes, last, next) = store.diff(&ctx.mailbox, &folder, snapshot.as_ref(), max);
    let token = store.keep_snapshot(next);
    let mb = store.mailbox(&ctx.mailbox).expect("mailbox");
    success(x, "SyncFolderItems");
    x.text("m:SyncState", &token);
    x.text(
        "m:IncludesLastItemInRange",
        if last { "true" } else { "false" },
    );
    x.open("m:Changes", &[]);
    for c in &changes {
        match c {
            SyncChange::Create(id) | SyncChange::Update(id) => {
                let tag = if matches!(c, SyncChange::Create(_)) {
                    "t:Create"
                } else {
                    "t:Update"
                };
                x.open(tag, &[]);
                write_item(x, &mb.items[id], &shape, ctx.requested, false);
                x.close(tag);
            }
            SyncChange::Delete(id) => {
                x.open("t:Delete", &[])
                    .empty("t:ItemId", &[("Id", id)])
                    .close("t:Delete");
            }
            SyncChange::ReadFlag(id, read) => {
                x.open("t:ReadFlagChange", &[])
                    .empty("t:ItemId", &[("Id", id)])
                    .text("t:IsRead", if *read { "true" } else { "false" })
                    .close("t:ReadFlagChange");
            }
        }
    }
    x.close("m:Changes")
        .close("m:SyncFolderItemsResponseMessage");
    close_response(x, "SyncFolderItems");
    Ok(())
}

fn get_item(store: &mut Store, ctx: &Ctx, op: Node<'_, '_>, x: &mut Xml) -> OpResult {
    let shape = Shape::of(op, ctx.requested)?;
    let ids =
        xml::child(op, M, "ItemIds").ok_or(("ErrorSchemaValidation", "no ItemIds".to_string()))?;
    let mb = store.mailbox(&ctx.mailbox).expect("mailbox");
    open_response(x, "GetItem");
    for r in xml::elements(ids) {
        match r.attribute("Id").and_then(|id| mb.items.get(id)) {
            Some(item) => {
                success(x, "GetItem");
                x.open("m:Items", &[]);
                write_item(x, item, &shape, ctx.requested, true);
                x.close("m:Items").close("m:GetItemResponseMessage");
            }
            None => error_message(
                x,
                "GetItem",
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            ),
        }
    }
    close_response(x, "GetItem");
    Ok(())
}

/// Departure: Exchange's stream is a MAPI fast-transfer stream
/// ([MS-OXCFXICS]); the simulator's is its own container of the item's
/// class and content, equally opaque to a client.
pub fn export_stream(item: &SimItem) -> Vec<u8> {
    let mut s = format!("FERRYSIM-FTS/1 {}\n", item.kind.item_class()).into_bytes();
    s.extend_from_slice(&item.mime);
    s
}

fn export_items(store: &mut Store, ctx: &Ctx, op: Node<'_, '_>, x: &mut Xml) -> OpResult {
    if ctx.requested < ApiVersion::Exchange2010Sp1 {
        return Err((
            "ErrorInvalidServerVersion",
            "ExportItems needs Exchange2010_SP1 or later.".into(),
        ));
    }
    let ids =
        xml::child(op, M, "ItemIds").ok_or(("ErrorSchemaValidation", "no ItemIds".to_string()))?;
    let mb = store.mailbox(&ctx.mailbox).expect("mailbox");
    open_response(x, "ExportItems");
    for r in xml::elements(ids) {
        match r.attribute("Id").and_then(|id| mb.items.get(id)) {
            Some(item) => {
                success(x, "ExportItems");
                x.empty(
                    "m:ItemId",
                    &[("Id", &item.id), ("ChangeKey", &item.change_key())],
                );
                x.text("m:Data", &B64.encode(export_stream(item)));
                x.close("m:ExportItemsResponseMessage");
            }
            None => error_message(
                x,
                "ExportItems",
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            ),
        }
    }
    close_response(x, "ExportItems");
    Ok(())
}

/// Departure: ids are never converted; every one is refused as malformed,
/// which is what exchangelib's version probe expects of a dummy id.
fn convert_id(op: Node<'_, '_>, x: &mut Xml) -> OpResult {
    let n = xml::child(op, M, "SourceIds")
        .map(|s| xml::elements(s).count())
        .unwrap_or(1)
        .max(1);
    open_response(x, "ConvertId");
    for _ in 0..n {
        error_message(
            x,
            "ConvertId",
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
        );
    }
    close_response(x, "ConvertId");
    Ok(())
}
