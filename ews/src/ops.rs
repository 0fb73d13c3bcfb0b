//! The operations as data: each request body written, each answer read.
//! Nothing here does I/O; `client` sends what these functions write.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use roxmltree::Node;

use crate::types::*;
use crate::xml::{self, MESSAGES as M, SOAP, TYPES as T, Xml};

/// `PR_FLAG_STATUS`, read where `item:Flag` does not exist (before 2013).
pub const PR_FLAG_STATUS: &str = "0x1090";

/// A request's SOAP envelope: the schema version, the impersonated
/// mailbox if any, then the body `write` produces.
pub fn envelope(
    version: ApiVersion,
    act_as: Option<&str>,
    write: impl FnOnce(&mut Xml),
) -> Vec<u8> {
    let mut x = Xml::new();
    x.envelope().open("soap:Header", &[]);
    x.empty("t:RequestServerVersion", &[("Version", version.as_str())]);
    if let Some(smtp) = act_as {
        x.open("t:ExchangeImpersonation", &[])
            .open("t:ConnectingSID", &[])
            .text("t:PrimarySmtpAddress", smtp)
            .close("t:ConnectingSID")
            .close("t:ExchangeImpersonation");
    }
    x.close("soap:Header").open("soap:Body", &[]);
    write(&mut x);
    x.close("soap:Body").close("soap:Envelope");
    x.into_bytes()
}

fn field_uris(x: &mut Xml, uris: &[&str]) {
    x.open("t:AdditionalProperties", &[]);
    for u in uris {
        x.empty("t:FieldURI", &[("FieldURI", u)]);
    }
    x.close("t:AdditionalProperties");
}

const FOLDER_FIELDS: [&str; 5] = [
    "folder:DisplayName",
    "folder:FolderClass",
    "folder:ParentFolderId",
    "folder:TotalCount",
    "folder:ChildFolderCount",
];

/// `GetFolder` of distinguished folders by their ids.
pub fn get_folders(x: &mut Xml, distinguished: &[&str]) {
    x.open("m:GetFolder", &[]).open("m:FolderShape", &[]);
    x.text("t:BaseShape", "IdOnly");
    field_uris(x, &FOLDER_FIELDS);
    x.close("m:FolderShape").open("m:FolderIds", &[]);
    for id in distinguished {
        x.empty("t:DistinguishedFolderId", &[("Id", id)]);
    }
    x.close("m:FolderIds").close("m:GetFolder");
}

/// `FindFolder` with a deep traversal below `msgfolderroot`, one page.
pub fn find_folders(x: &mut Xml, offset: usize, page: usize) {
    x.open("m:FindFolder", &[("Traversal", "Deep")])
        .open("m:FolderShape", &[]);
    x.text("t:BaseShape", "IdOnly");
    field_uris(x, &FOLDER_FIELDS);
    x.close("m:FolderShape");
    let (max, off) = (page.to_string(), offset.to_string());
    x.empty(
        "m:IndexedPageFolderView",
        &[
            ("MaxEntriesReturned", &max),
            ("Offset", &off),
            ("BasePoint", "Beginning"),
        ],
    );
    x.open("m:ParentFolderIds", &[])
        .empty("t:DistinguishedFolderId", &[("Id", "msgfolderroot")])
        .close("m:ParentFolderIds")
        .close("m:FindFolder");
}

/// `SyncFolderItems` for one folder from `state` (none: from the start).
pub fn sync_folder_items(
    x: &mut Xml,
    version: ApiVersion,
    folder_id: &str,
    state: Option<&str>,
    max_changes: u32,
) {
    x.open("m:SyncFolderItems", &[]).open("m:ItemShape", &[]);
    x.text("t:BaseShape", "IdOnly");
    item_properties(x, version);
    x.close("m:ItemShape")
        .open("m:SyncFolderId", &[])
        .empty("t:FolderId", &[("Id", folder_id)])
        .close("m:SyncFolderId");
    if let Some(s) = state {
        x.text("m:SyncState", s);
    }
    x.text("m:MaxChangesReturned", &max_changes.to_string());
    x.text("m:SyncScope", "NormalItems");
    x.close("m:SyncFolderItems");
}

/// What a copy needs of an item beside its content. The flag is
/// `item:Flag` from 2013; before that, `PR_FLAG_STATUS`.
fn item_properties(x: &mut Xml, version: ApiVersion) {
    x.open("t:AdditionalProperties", &[]);
    for u in [
        "item:ItemClass",
        "item:Size",
        "item:DateTimeReceived",
        "item:Categories",
        "message:IsRead",
    ] {
        x.empty("t:FieldURI", &[("FieldURI", u)]);
    }
    if version >= ApiVersion::Exchange2013 {
        x.empty("t:FieldURI", &[("FieldURI", "item:Flag")]);
    } else {
        x.empty(
            "t:ExtendedFieldURI",
            &[("PropertyTag", PR_FLAG_STATUS), ("PropertyType", "Integer")],
        );
    }
    x.close("t:AdditionalProperties");
}

fn item_ids(x: &mut Xml, container: &str, ids: &[ItemId]) {
    x.open(container, &[]);
    for id in ids {
        match &id.change_key {
            Some(ck) => x.empty("t:ItemId", &[("Id", &id.id), ("ChangeKey", ck)]),
            None => x.empty("t:ItemId", &[("Id", &id.id)]),
        };
    }
    x.close(container);
}

/// `GetItem` with the MIME content and what a copy needs beside it.
pub fn get_items(x: &mut Xml, version: ApiVersion, ids: &[ItemId]) {
    x.open("m:GetItem", &[]).open("m:ItemShape", &[]);
    x.text("t:BaseShape", "IdOnly");
    x.text("t:IncludeMimeContent", "true");
    item_properties(x, version);
    x.close("m:ItemShape");
    item_ids(x, "m:ItemIds", ids);
    x.close("m:GetItem");
}

/// `ExportItems` (Exchange 2010 SP1 and later).
pub fn export_items(x: &mut Xml, ids: &[ItemId]) {
    x.open("m:ExportItems", &[]);
    item_ids(x, "m:ItemIds", ids);
    x.close("m:ExportItems");
}

/// An error the server reported, as a SOAP fault or in a response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    /// `BackOffMilliseconds` of an `ErrorServerBusy`.
    pub back_off: Option<Duration>,
}

fn back_off_of(node: Node<'_, '_>) -> Option<Duration> {
    node.descendants()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == "Value"
                && n.attribute("Name") == Some("BackOffMilliseconds")
        })
        .and_then(|n| n.text()?.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// `ServerVersionInfo` from the SOAP header, if present and known.
pub fn server_version(doc: &roxmltree::Document<'_>) -> Option<ServerVersion> {
    let header = xml::child(doc.root_element(), SOAP, "Header")?;
    let info = xml::child(header, T, "ServerVersionInfo")?;
    let num = |a: &str| info.attribute(a).and_then(|v| v.parse::<u32>().ok());
    let (major, minor) = (num("MajorVersion")?, num("MinorVersion")?);
    let major_build = num("MajorBuildNumber").unwrap_or(0);
    let minor_build = num("MinorBuildNumber").unwrap_or(0);
    // Trust the schema name the server gives when it is one a request may
    // carry; newer servers send values such as `V2017_07_11`.
    let api = info
        .attribute("Version")
        .and_then(ApiVersion::parse)
        .or_else(|| ApiVersion::from_build(major, minor, major_build))?;
    Some(ServerVersion {
        major,
        minor,
        major_build,
        minor_build,
        api,
    })
}

/// The SOAP fault of a response, if it is one.
pub fn fault(doc: &roxmltree::Document<'_>) -> Option<Failure> {
    let body = xml::child(doc.root_element(), SOAP, "Body")?;
    let f = xml::child(body, SOAP, "Fault")?;
    let plain = |name: &str| {
        f.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
    };
    let detail = f
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "detail");
    let code = detail
        .and_then(|d| xml::child_text(d, xml::ERRORS, "ResponseCode"))
        .map(str::to_string)
        .or_else(|| {
            // `a:ErrorServerBusy` without a detail: the local part.
            plain("faultcode").map(|c| c.rsplit(':').next().unwrap_or(&c).to_string())
        })
        .unwrap_or_default();
    let message = detail
        .and_then(|d| xml::child_text(d, xml::ERRORS, "Message"))
        .map(str::to_string)
        .or_else(|| plain("faultstring"))
        .unwrap_or_default();
    Some(Failure {
        code,
        message,
        back_off: detail.and_then(back_off_of),
    })
}

/// The response messages of operation `op`'s answer.
pub fn messages<'a, 'i>(doc: &'a roxmltree::Document<'i>, op: &str) -> Option<Vec<Node<'a, 'i>>> {
    let body = xml::child(doc.root_element(), SOAP, "Body")?;
    let resp = xml::child(body, M, &format!("{op}Response"))?;
    let msgs = xml::child(resp, M, "ResponseMessages")?;
    Some(xml::elements(msgs).collect())
}

/// A response message's error, if it is not a success.
pub fn message_failure(msg: Node<'_, '_>) -> Option<Failure> {
    let code = xml::child_text(msg, M, "ResponseCode").unwrap_or("NoError");
    if msg.attribute("ResponseClass") == Some("Success") || code == "NoError" {
        return None;
    }
    Some(Failure {
        code: code.to_string(),
        message: xml::child_text(msg, M, "MessageText")
            .unwrap_or("")
            .to_string(),
        back_off: xml::child(msg, M, "MessageXml").and_then(back_off_of),
    })
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn item_id_of(node: Node<'_, '_>) -> Option<ItemId> {
    let n = xml::child(node, T, "ItemId")?;
    Some(ItemId {
        id: n.attribute("Id")?.to_string(),
        change_key: n.attribute("ChangeKey").map(str::to_string),
    })
}

/// A folder element of `GetFolder` or `FindFolder` (`Folder`,
/// `CalendarFolder`, `ContactsFolder`, `TasksFolder`, `SearchFolder`).
pub fn folder_of(node: Node<'_, '_>) -> Option<Folder> {
    let id = xml::child(node, T, "FolderId")?
        .attribute("Id")?
        .to_string();
    let parent_id = xml::child(node, T, "ParentFolderId")
        .and_then(|p| p.attribute("Id"))
        .map(str::to_string);
    let class = xml::child_text(node, T, "FolderClass")
        .unwrap_or("")
        .to_string();
    let count = |name| xml::child_text(node, T, name).and_then(|v| v.parse().ok());
    Some(Folder {
        id,
        parent_id,
        display_name: xml::child_text(node, T, "DisplayName")
            .unwrap_or("")
            .to_string(),
        kind: FolderKind::of_class(&class),
        class,
        total_count: count("TotalCount"),
        child_folder_count: count("ChildFolderCount"),
        well_known: None,
        path: Vec::new(),
    })
}

/// The folders of a successful `GetFolder` or `FindFolder` message.
pub fn folders_in(msg: Node<'_, '_>) -> Vec<Folder> {
    let container = xml::child(msg, M, "Folders")
        .or_else(|| xml::child(msg, M, "RootFolder").and_then(|r| xml::child(r, T, "Folders")));
    container
        .map(|c| xml::elements(c).filter_map(folder_of).collect())
        .unwrap_or_default()
}

/// `RootFolder/@IncludesLastItemInRange` of a `FindFolder` message.
pub fn find_folder_last(msg: Node<'_, '_>) -> bool {
    xml::child(msg, M, "RootFolder")
        .and_then(|r| r.attribute("IncludesLastItemInRange"))
        .and_then(parse_bool)
        .unwrap_or(true)
}

fn item_info(node: Node<'_, '_>) -> Option<ItemInfo> {
    let flag = match xml::child(node, T, "Flag") {
        Some(f) => Some(FlagStatus::parse(
            xml::child_text(f, T, "FlagStatus").unwrap_or(""),
        )),
        None => xml::children(node, T, "ExtendedProperty")
            .find(|p| {
                xml::child(*p, T, "ExtendedFieldURI")
                    .and_then(|u| u.attribute("PropertyTag"))
                    .is_some_and(|t| t.eq_ignore_ascii_case(PR_FLAG_STATUS))
            })
            .and_then(|p| xml::child_text(p, T, "Value")?.parse().ok())
            .map(FlagStatus::from_mapi),
    };
    let categories = xml::child(node, T, "Categories")
        .map(|c| {
            xml::children(c, T, "String")
                .filter_map(|s| s.text().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some(ItemInfo {
        id: item_id_of(node)?,
        element: node.tag_name().name().to_string(),
        item_class: xml::child_text(node, T, "ItemClass").map(str::to_string),
        is_read: xml::child_text(node, T, "IsRead").and_then(parse_bool),
        size: xml::child_text(node, T, "Size").and_then(|v| v.parse().ok()),
        received: xml::child_text(node, T, "DateTimeReceived").and_then(parse_time),
        flag,
        categories,
    })
}

/// A successful `SyncFolderItems` message as a page of changes.
pub fn sync_page(msg: Node<'_, '_>) -> Result<SyncPage, String> {
    let sync_state = xml::child_text(msg, M, "SyncState")
        .ok_or("no SyncState")?
        .to_string();
    let last = xml::child_text(msg, M, "IncludesLastItemInRange")
        .and_then(parse_bool)
        .ok_or("no IncludesLastItemInRange")?;
    let mut changes = Vec::new();
    if let Some(list) = xml::child(msg, M, "Changes") {
        for c in xml::elements(list) {
            let item = || xml::elements(c).next().and_then(item_info);
            let id_attr = || {
                xml::child(c, T, "ItemId")
                    .and_then(|n| n.attribute("Id"))
                    .map(str::to_string)
            };
            let change = match c.tag_name().name() {
                "Create" => item().map(Change::Create),
                "Update" => item().map(Change::Update),
                "Delete" => id_attr().map(|id| Change::Delete { id }),
                "ReadFlagChange" => id_attr()
                    .zip(xml::child_text(c, T, "IsRead").and_then(parse_bool))
                    .map(|(id, is_read)| Change::ReadFlag { id, is_read }),
                _ => continue,
            };
            changes.push(
                change
                    .ok_or_else(|| format!("a {} change without its item", c.tag_name().name()))?,
            );
        }
    }
    Ok(SyncPage {
        sync_state,
        last,
        changes,
    })
}

/// The item of a successful `GetItem` message.
pub fn fetched_item(msg: Node<'_, '_>) -> Result<Item, String> {
    let node = xml::child(msg, M, "Items")
        .and_then(|i| xml::elements(i).next())
        .ok_or("no item")?;
    let info = item_info(node).ok_or("an item without its ItemId")?;
    let mime = match xml::child_text(node, T, "MimeContent") {
        Some(b) => decode_b64(b).map_err(|e| format!("MimeContent: {e}"))?,
        None => return Err("no MimeContent".into()),
    };
    Ok(Item {
        id: info.id,
        element: info.element,
        item_class: info.item_class,
        mime,
        is_read: info.is_read,
        flag: info.flag.unwrap_or_default(),
        categories: info.categories,
        received: info.received,
        size: info.size,
    })
}

/// The stream of a successful `ExportItems` message.
pub fn exported(msg: Node<'_, '_>) -> Result<Exported, String> {
    let id = xml::child(msg, M, "ItemId").ok_or("no ItemId")?;
    let data = xml::child_text(msg, M, "Data").ok_or("no Data")?;
    Ok(Exported {
        id: ItemId {
            id: id.attribute("Id").ok_or("ItemId without Id")?.to_string(),
            change_key: id.attribute("ChangeKey").map(str::to_string),
        },
        data: decode_b64(data).map_err(|e| format!("Data: {e}"))?,
    })
}

/// Base64 as EWS sends it, line breaks and all.
pub fn decode_b64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        B64.decode(compact)
    } else {
        B64.decode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(s).unwrap()
    }

    // The shape of Microsoft's documented ErrorServerBusy fault.
    const BUSY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Body>
    <s:Fault>
      <faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode>
      <faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring>
      <detail>
        <e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode>
        <e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message>
        <t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
          <t:Value Name="BackOffMilliseconds">297749</t:Value>
        </t:MessageXml>
      </detail>
    </s:Fault>
  </s:Body>
</s:Envelope>"#;

    #[test]
    fn a_busy_fault_carries_its_back_off() {
        let d = doc(BUSY);
        let f = fault(&d).unwrap();
        assert_eq!(f.code, "ErrorServerBusy");
        assert_eq!(f.back_off, Some(Duration::from_millis(297_749)));
        assert!(server_version(&d).is_none());
    }

    #[test]
    fn the_server_version_is_read_from_the_header() {
        let s = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>
<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11"
 xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/></s:Header><s:Body/></s:Envelope>"#;
        let v = server_version(&doc(s)).unwrap();
        assert_eq!(v.api, ApiVersion::Exchange2016);
        assert_eq!((v.major, v.minor, v.major_build), (15, 1, 2507));
        let s = s
            .replace(r#"MinorVersion="1""#, r#"MinorVersion="0""#)
            .replace("V2017_07_11", "Exchange2013_SP1");
        assert_eq!(
            server_version(&doc(&s)).unwrap().api,
            ApiVersion::Exchange2013Sp1
        );
    }

    #[test]
    fn a_request_carries_version_and_impersonation_escaped() {
        let body = envelope(ApiVersion::Exchange2010Sp1, Some("a&b@x.example"), |x| {
            get_folders(x, &["inbox"]);
        });
        let text = String::from_utf8(body).unwrap();
        let d = doc(&text);
        let header = xml::child(d.root_element(), SOAP, "Header").unwrap();
        assert_eq!(
            xml::child(header, T, "RequestServerVersion")
                .unwrap()
                .attribute("Version"),
            Some("Exchange2010_SP1")
        );
        let smtp = xml::descend(
            header,
            &[
                (T, "ExchangeImpersonation"),
                (T, "ConnectingSID"),
                (T, "PrimarySmtpAddress"),
            ],
        )
        .unwrap();
        assert_eq!(smtp.text(), Some("a&b@x.example"));
    }

    #[test]
    fn get_item_asks_for_the_flag_as_the_version_allows() {
        let ids = [ItemId {
            id: "A".into(),
            change_key: None,
        }];
        let old = String::from_utf8(envelope(ApiVersion::Exchange2010Sp1, None, |x| {
            get_items(x, ApiVersion::Exchange2010Sp1, &ids)
        }))
        .unwrap();
        assert!(old.contains(PR_FLAG_STATUS) && !old.contains("item:Flag"));
        let new = String::from_utf8(envelope(ApiVersion::Exchange2016, None, |x| {
            get_items(x, ApiVersion::Exchange2016, &ids)
        }))
        .unwrap();
        assert!(new.contains("item:Flag") && !new.contains(PR_FLAG_STATUS));
    }

    #[test]
    fn folder_kinds_follow_the_class() {
        assert_eq!(FolderKind::of_class("IPF.Note"), FolderKind::Mail);
        assert_eq!(
            FolderKind::of_class("IPF.Note.OutlookHomepage"),
            FolderKind::Mail
        );
        assert_eq!(FolderKind::of_class(""), FolderKind::Mail);
        assert_eq!(
            FolderKind::of_class("IPF.Appointment"),
            FolderKind::Calendar
        );
        assert_eq!(FolderKind::of_class("IPF.Contact"), FolderKind::Contacts);
        assert_eq!(FolderKind::of_class("IPF.Task"), FolderKind::Tasks);
        assert_eq!(FolderKind::of_class("IPF.StickyNote"), FolderKind::Other);
        assert_eq!(FolderKind::of_class("IPF.Notes"), FolderKind::Other);
    }

    // Shaped as the reference's SyncFolderItems example, with one change
    // of each kind.
    const SYNC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <t:ServerVersionInfo MajorVersion="14" MinorVersion="1" MajorBuildNumber="218" MinorBuildNumber="15"
      xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" />
  </soap:Header>
  <soap:Body>
    <m:SyncFolderItemsResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
        xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
      <m:ResponseMessages>
        <m:SyncFolderItemsResponseMessage ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>
          <m:SyncState>H4sIAAAAAAAEAO29B2AcSZYlJi9tynt/SvVK</m:SyncState>
          <m:IncludesLastItemInRange>false</m:IncludesLastItemInRange>
          <m:Changes>
            <t:Create>
              <t:Message>
                <t:ItemId Id="AAAtAEF/swbAAA=" ChangeKey="CQAAABYAAAB/MsMIMA=="/>
                <t:ItemClass>IPM.Note</t:ItemClass>
                <t:Subject>Sample</t:Subject>
                <t:DateTimeReceived>2006-10-19T23:27:28Z</t:DateTimeReceived>
                <t:Size>1024</t:Size>
                <t:IsRead>false</t:IsRead>
              </t:Message>
            </t:Create>
            <t:Update>
              <t:CalendarItem>
                <t:ItemId Id="AAAtAEF/cal" ChangeKey="DwAAABYAAAA"/>
              </t:CalendarItem>
            </t:Update>
            <t:Delete><t:ItemId Id="AAAtAEF/gone"/></t:Delete>
            <t:ReadFlagChange><t:ItemId Id="AAAtAEF/read"/><t:IsRead>true</t:IsRead></t:ReadFlagChange>
          </m:Changes>
        </m:SyncFolderItemsResponseMessage>
      </m:ResponseMessages>
    </m:SyncFolderItemsResponse>
  </soap:Body>
</soap:Envelope>"#;

    #[test]
    fn a_sync_page_reads_every_kind_of_change() {
        let d = doc(SYNC);
        assert_eq!(server_version(&d).unwrap().api, ApiVersion::Exchange2010Sp1);
        let msgs = messages(&d, "SyncFolderItems").unwrap();
        assert!(message_failure(msgs[0]).is_none());
        let page = sync_page(msgs[0]).unwrap();
        assert!(!page.last);
        assert_eq!(page.sync_state, "H4sIAAAAAAAEAO29B2AcSZYlJi9tynt/SvVK");
        let Change::Create(c) = &page.changes[0] else {
            panic!("{:?}", page.changes[0])
        };
        assert_eq!(c.id.id, "AAAtAEF/swbAAA=");
        assert_eq!(c.element, "Message");
        assert_eq!(c.size, Some(1024));
        assert_eq!(c.is_read, Some(false));
        assert_eq!(
            c.received.unwrap().to_rfc3339(),
            "2006-10-19T23:27:28+00:00"
        );
        assert!(matches!(&page.changes[1], Change::Update(u) if u.element == "CalendarItem"));
        assert_eq!(
            page.changes[2],
            Change::Delete {
                id: "AAAtAEF/gone".into()
            }
        );
        assert_eq!(
            page.changes[3],
            Change::ReadFlag {
                id: "AAAtAEF/read".into(),
                is_read: true
            }
        );
    }

    #[test]
    fn an_invalid_sync_state_is_a_message_failure() {
        let s = SYNC.replace(
            r#"ResponseClass="Success">
          <m:ResponseCode>NoError</m:ResponseCode>"#,
            r#"ResponseClass="Error">
          <m:MessageText>Synchronization state data is corrupt or otherwise invalid.</m:MessageText>
          <m:ResponseCode>ErrorInvalidSyncStateData</m:ResponseCode>"#,
        );
        let d = doc(&s);
        let f = message_failure(messages(&d, "SyncFolderItems").unwrap()[0]).unwrap();
        assert_eq!(f.code, "ErrorInvalidSyncStateData");
    }

    #[test]
    fn base64_with_line_breaks_decodes() {
        assert_eq!(decode_b64("aGVs\r\nbG8=\n").unwrap(), b"hello");
        assert!(decode_b64("not base64!").is_err());
    }
}
