//! The domain's events.
//!
//! The log is forever, so the encoding of what is here is frozen: bincode
//! writes a variant by its index and a struct by its field order. New kinds
//! of fact are new variants appended at the end of [`Event`]; a changed
//! shape is a new variant plus an upcaster in [`crate::codec`], never an edit
//! of an existing one. The golden fixtures in `tests/fixtures` hold that.

use serde::{Deserialize, Serialize};

/// A reference to a secret kept in the daemon's secret store, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretRef(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndpointKind {
    Imap,
    Maildir,
    /// Exchange Web Services; `host` holds the EWS URL and the rest of its
    /// settings come with [`Event::EwsEndpointSet`].
    Ews,
    /// Microsoft Graph (Exchange Online), signed in as an application.
    Graph,
}

/// How an EWS endpoint authenticates a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EwsAuth {
    Basic,
    Ntlm,
}

/// What an EWS endpoint needs beside its [`EndpointSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EwsSettings {
    pub auth: EwsAuth,
    /// `RequestServerVersion` to start with (`Exchange2013`, ...); `None`:
    /// learned from the server's `ServerVersionInfo`.
    pub version: Option<String>,
}

/// One item of a source that names items by opaque keys (EWS), under the
/// number the log gives it within its folder and generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceItem {
    /// The log's number for the item: [`ItemKey::uid`] of its events.
    pub ordinal: u32,
    /// The endpoint's own id of the item, exactly as it gave it.
    pub key: String,
    pub size: u64,
    /// Flags and keywords as a copy carries them.
    pub flags: Vec<String>,
    /// When it was received, µs since the epoch.
    pub received_us: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TlsMode {
    None,
    StartTls,
    Tls,
}

/// How the daemon reaches every user's mailbox on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub kind: EndpointKind,
    /// IMAP host, or the root folder of a Maildir endpoint.
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// A CA certificate file to trust besides the system roots.
    pub ca_file: Option<String>,
    /// Admin (master) login used to impersonate every user (SASL PLAIN authzid).
    pub admin_user: Option<String>,
    pub admin_secret: Option<SecretRef>,
    /// Upper bound on simultaneous connections to this endpoint.
    pub max_connections: u32,
    /// OAuth 2.0 access tokens for SASL XOAUTH2 (Microsoft 365, Gmail):
    /// where to get one each time a session opens.
    pub oauth: Option<TokenSource>,
}

/// Where an OAuth access token comes from; the token itself is never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenSource {
    /// A file whose first line is the token (refreshed by another tool).
    File(String),
    /// A command (run with `sh -c`) that prints the token on stdout.
    Command(String),
}

/// An Entra ID application's app-only sign-in, for a `graph` endpoint and
/// for Exchange Online's IMAP (SASL XOAUTH2). Only references to secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSignIn {
    pub tenant: String,
    pub client_id: String,
    pub credential: GraphCredential,
    /// The sign-in host with its scheme (national clouds, a test service).
    pub authority: String,
    /// Graph's root with its version, such as `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
}

/// How the application proves itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GraphCredential {
    /// A client secret, in the secret store.
    Secret(SecretRef),
    /// A certificate (PEM, public) and its private key (PEM, in the secret
    /// store): the JWT client assertion.
    Certificate { cert_pem: String, key: SecretRef },
}

impl GraphCredential {
    pub fn secrets(&self) -> Vec<SecretRef> {
        match self {
            GraphCredential::Secret(s) | GraphCredential::Certificate { key: s, .. } => {
                vec![s.clone()]
            }
        }
    }
}

/// A pre-stage pass copies items older than this many days unless told.
pub const DEFAULT_PRESTAGE_DAYS: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PassKind {
    Verify,
    Prestage,
    Full,
    Delta,
    RetryErrors,
}

impl PassKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Verify => "verify",
            PassKind::Prestage => "prestage",
            PassKind::Full => "full",
            PassKind::Delta => "delta",
            PassKind::RetryErrors => "retry-errors",
        }
    }

    pub fn parse(s: &str) -> Option<PassKind> {
        Some(match s {
            "verify" => PassKind::Verify,
            "prestage" | "pre-stage" => PassKind::Prestage,
            "full" => PassKind::Full,
            "delta" => PassKind::Delta,
            "retry-errors" | "retry" => PassKind::RetryErrors,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    SucceededWithErrors,
    Failed,
    Stopped,
}

/// Options a batch is created with; all have safe defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    pub max_concurrent: u32,
    /// Items larger than this are skipped with the reason recorded.
    pub max_item_bytes: Option<u64>,
    /// Failed items a mailbox may collect before the mailbox fails.
    pub error_budget: u32,
    /// `regex->replacement` folder rules, as MigrationWiz's FolderMapping.
    pub folder_rules: Vec<String>,
    pub include_folders: Vec<String>,
    pub exclude_folders: Vec<String>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_concurrent: 5,
            max_item_bytes: None,
            error_budget: 100,
            folder_rules: Vec::new(),
            include_folders: Vec::new(),
            exclude_folders: Vec::new(),
        }
    }
}

/// One row of a batch: who moves from where to where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSpec {
    /// The mailbox's identity in mailferry: the source address, lower-cased.
    pub address: String,
    pub destination_address: String,
    pub source_login: Option<String>,
    pub source_secret: Option<SecretRef>,
    pub destination_login: Option<String>,
    pub destination_secret: Option<SecretRef>,
}

/// Where one source item is: folder, UIDVALIDITY, UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemKey {
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderCount {
    pub folder: String,
    pub items: u64,
    pub bytes: u64,
}

/// Every fact mailferry records. Append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    EndpointRegistered {
        name: String,
        spec: EndpointSpec,
    },
    EndpointVerified {
        name: String,
        ok: bool,
        capabilities: Vec<String>,
        detail: String,
    },
    BatchCreated {
        name: String,
        source: String,
        destination: String,
        options: BatchOptions,
    },
    MailboxAdded {
        batch: String,
        mailbox: MailboxSpec,
    },
    PassRequested {
        batch: String,
        pass: PassKind,
        /// Pre-stage cut-off: only items older than this many days.
        older_than_days: Option<u32>,
        /// Unix microseconds before which the pass must not start (StartAfter).
        not_before_us: Option<i64>,
    },
    PassStarted {
        batch: String,
        pass_id: u64,
        pass: PassKind,
    },
    PassFinished {
        batch: String,
        pass_id: u64,
        outcome: Outcome,
    },
    MailboxPassStarted {
        mailbox: String,
        batch: String,
        pass_id: u64,
        pass: PassKind,
    },
    MailboxPassFinished {
        mailbox: String,
        pass_id: u64,
        outcome: Outcome,
        detail: String,
    },
    FolderMapped {
        mailbox: String,
        source: String,
        destination: String,
        uidvalidity: u32,
    },
    FolderCounted {
        mailbox: String,
        side: Side,
        counts: Vec<FolderCount>,
    },
    /// Written and flushed before an item is appended, so a crash between
    /// the append and [`Event::ItemCopied`] leaves an in-doubt marker.
    ItemCopyIntent {
        mailbox: String,
        key: ItemKey,
        size: u64,
        digest: String,
        dest_folder: String,
        /// The destination folder's UIDNEXT before the append: where to look.
        dest_uidnext: Option<u32>,
    },
    ItemCopied {
        mailbox: String,
        key: ItemKey,
        size: u64,
        digest: String,
        dest_folder: String,
        /// (UIDVALIDITY, UID) at the destination when the server said it.
        dest_uid: Option<(u32, u32)>,
    },
    ItemSkipped {
        mailbox: String,
        key: ItemKey,
        size: u64,
        reason: String,
    },
    ItemFailed {
        mailbox: String,
        key: ItemKey,
        class: String,
        reason: String,
    },
    FlagsSynced {
        mailbox: String,
        key: ItemKey,
        flags: Vec<String>,
    },
    Checkpoint {
        mailbox: String,
        folder: String,
        uidvalidity: u32,
        highest_uid: u32,
        highest_modseq: Option<u64>,
    },
    ScheduleSet {
        batch: String,
        cron: String,
        tz: String,
    },
    ScheduleFired {
        batch: String,
        due_us: i64,
    },
    ScheduleSkipped {
        batch: String,
        due_us: i64,
        reason: String,
    },
    ScheduleMissed {
        batch: String,
        due_us: i64,
    },
    UserCutOver {
        mailbox: String,
        batch: String,
        forced: bool,
    },
    MxSwitched {
        domain: String,
        to: String,
        manual: bool,
    },
    BatchStopped {
        batch: String,
    },
    BatchCompleted {
        batch: String,
        with_errors: bool,
    },
    BatchDeleted {
        batch: String,
        forced: bool,
    },
    /// A source folder's UIDVALIDITY changed: items are re-matched by content.
    UidValidityChanged {
        mailbox: String,
        folder: String,
        old: u32,
        new: u32,
    },
    /// A folder could not be opened or created; its items were not copied.
    FolderFailed {
        mailbox: String,
        folder: String,
        class: String,
        reason: String,
    },
    /// `batch complete`: a final delta pass at or after `not_before_us`
    /// (CompleteAfter), then the batch is Completed. The event's sequence
    /// is the id of that pass.
    CompletionRequested {
        batch: String,
        not_before_us: Option<i64>,
    },
    /// Where a batch's pass reports go. A webhook URL may carry a token, so
    /// it is kept as a secret; `webhook_shown` is its scheme, host and port.
    NotifySet {
        batch: String,
        emails: Vec<String>,
        webhook: Option<SecretRef>,
        webhook_shown: Option<String>,
    },
    NotificationSent {
        batch: String,
        pass_id: u64,
        channel: NotifyChannel,
        target: String,
        attempt: u32,
    },
    NotificationFailed {
        batch: String,
        pass_id: u64,
        channel: NotifyChannel,
        target: String,
        attempt: u32,
        reason: String,
        /// Whether another attempt will be made.
        retry: bool,
    },
    /// `cutover`: a final delta pass over these mailboxes (the event's
    /// sequence is its pass id), then their routing actions.
    CutoverRequested {
        batch: String,
        mailboxes: Vec<String>,
        forced: bool,
        /// The refusals `--force` overrode, one line each.
        overridden: Vec<String>,
    },
    /// One routing step of a cutover (runbook written, hook run) and its outcome.
    RoutingAction {
        mailbox: String,
        batch: String,
        action: String,
        ok: bool,
        detail: String,
    },
    /// `mx check`: what the domain's MX answered, and from which server.
    MxChecked {
        domain: String,
        /// `PREFERENCE HOST`, lowest preference first.
        hosts: Vec<String>,
        ttl: u32,
        server: String,
    },
    /// The authoritative servers were polled after an MX switch.
    MxVerified {
        domain: String,
        to: String,
        ok: bool,
        detail: String,
    },
    /// A deleted batch's events were exported to a verifiable archive.
    BatchArchived {
        batch: String,
        file: String,
        events: u64,
        sha256: String,
    },
    /// A mailbox's row replaced in place (`batch add-users --update`,
    /// `mailbox set-credentials`): new logins or secret references.
    MailboxUpdated {
        batch: String,
        mailbox: MailboxSpec,
    },
    /// `batch remove-user`: the mailbox leaves the batch and the views.
    MailboxRemoved {
        batch: String,
        address: String,
    },
    /// `endpoint update`: the endpoint's spec replaced.
    EndpointUpdated {
        name: String,
        spec: EndpointSpec,
    },
    /// `endpoint remove`, allowed once no batch names it.
    EndpointRemoved {
        name: String,
    },
    /// `batch complete --force`: recorded just before its
    /// [`Event::CompletionRequested`], with the refusals it overrode.
    CompletionForced {
        batch: String,
        overridden: Vec<String>,
    },
    /// A copied (or skipped) source item is no longer at the source. Where
    /// its copy is, when one was recorded: the removal's intent.
    ItemVanished {
        mailbox: String,
        key: ItemKey,
        dest_folder: Option<String>,
        dest_uid: Option<(u32, u32)>,
    },
    /// A source folder the log knows is no longer listed at the source.
    FolderVanished {
        mailbox: String,
        folder: String,
    },
    /// A vanished item's copy was removed at the destination.
    ItemRemovedAtDestination {
        mailbox: String,
        key: ItemKey,
        dest_folder: String,
        dest_uid: (u32, u32),
    },
    /// `--propagate-deletions`: whether items vanished at the source are
    /// removed at the destination (a separate event: `BatchOptions` is frozen).
    DeletionsPropagated {
        batch: String,
        on: bool,
    },
    /// A side of a mailbox's pass became unreachable (or unavailable); the
    /// pass waits with backoff for up to the outage window.
    OutageStarted {
        mailbox: String,
        side: Side,
        host: String,
        reason: String,
    },
    /// The side answered again (or the window ran out, then the mailbox fails).
    OutageEnded {
        mailbox: String,
        side: Side,
        host: String,
        attempts: u32,
        duration_us: i64,
    },
    /// A source item found already at the destination before the first
    /// copy into its folder (an earlier batch, data directory or tool put
    /// it there): done, never appended.
    ItemAdopted {
        mailbox: String,
        key: ItemKey,
        size: u64,
        message_id: Option<String>,
        /// SHA-256 of the bytes, when they were compared (the Message-ID
        /// missing or repeated).
        digest: Option<String>,
        dest_folder: String,
        /// (UIDVALIDITY, UID) of the item at the destination.
        dest_uid: (u32, u32),
    },
    /// A verify pass's comparison of a source folder with its destination.
    FolderCompared {
        mailbox: String,
        folder: String,
        destination: String,
        source_items: u64,
        destination_items: u64,
        /// Destination items with no source counterpart.
        unmatched: u64,
        /// Messages held more than once at the destination.
        duplicates: Vec<DuplicateGroup>,
    },
    /// What a failed or skipped item is, for people, read from its header
    /// just after its `ItemFailed` or `ItemSkipped` (best effort).
    ItemDescribed {
        mailbox: String,
        key: ItemKey,
        about: ItemDescription,
    },
    /// An EWS endpoint's own settings, set with its registration or update.
    EwsEndpointSet {
        name: String,
        ews: EwsSettings,
    },
    /// One answer of a keyed source's change feed for a folder (EWS
    /// `SyncFolderItems`), recorded before anything acts on it: the items
    /// seen (new ones numbered, changed ones restated), the ordinals gone,
    /// and the cursor to ask from next. A new `generation` starts the
    /// folder's table afresh (the old cursor was refused).
    SourceSynced {
        mailbox: String,
        folder: String,
        generation: u32,
        seen: Vec<SourceItem>,
        gone: Vec<u32>,
        cursor: String,
    },
    /// A source folder left out as a whole, with why (a calendar the
    /// destination cannot hold).
    FolderSkipped {
        mailbox: String,
        folder: String,
        class: String,
        reason: String,
    },
    /// An endpoint's app-only sign-in set (a `graph` endpoint's, or an IMAP
    /// endpoint's in Exchange Online), or cleared with `None`.
    GraphEndpointSet {
        name: String,
        sign_in: Option<GraphSignIn>,
    },
    /// A fleet's worker took a mailbox's share of a running pass: the
    /// first event it writes under that lease. `lease` grows with each
    /// taking; `previous` is the worker whose lease had expired, if any.
    MailboxLeased {
        mailbox: String,
        batch: String,
        pass_id: u64,
        worker: String,
        lease: u64,
        previous: Option<String>,
    },
    /// A keyed source's item that is copied whole (a calendar item into
    /// Graph's import API) changed: the source item numbered `by` in the
    /// same folder and generation replaces `key`, whose copy is removed at
    /// the destination once `by` is copied. Recorded with the
    /// `SourceSynced` that tells the change.
    CopySuperseded {
        mailbox: String,
        key: ItemKey,
        by: u32,
    },
    /// The copy of a superseded item is gone from `dest_folder` (removed
    /// now, or never written).
    SupersededRemoved {
        mailbox: String,
        key: ItemKey,
        dest_folder: String,
    },
    /// One answer of a destination folder's change feed (Graph's message
    /// delta), recorded before anything acts on it: the copies seen (their
    /// origin, id and state), the ids gone, and the link to ask from next
    /// (`None` on all but the last part of a long answer). `restart`: the
    /// feed started over (first round, or its link was refused), so what
    /// was known of the folder is dropped first. The link is a sync state
    /// on the destination's host, no credential: a request with it still
    /// needs the application's token.
    DestinationSynced {
        mailbox: String,
        folder: String,
        restart: bool,
        seen: Vec<DestinationItem>,
        gone: Vec<String>,
        link: Option<String>,
    },
    /// A keyed source's mail folders by their own ids (Graph's
    /// `mailFolders/delta`), recorded after a listing: each folder with the
    /// name its items are copied under, the name it was first seen by,
    /// though renamed or moved at the source since. `link`: the folder
    /// delta's link to ask from next, a sync state with no credential.
    SourceFoldersSynced {
        mailbox: String,
        folders: Vec<SourceFolderId>,
        link: String,
    },
}

/// A source folder followed by its id (see `SourceFoldersSynced`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFolderId {
    pub id: String,
    /// The name its items are copied under (raw, as `FolderMapped`'s).
    pub folder: String,
    /// Its name at the source now, when renamed or moved since.
    pub now: Option<String>,
    /// Its special use (`Sent`, `Trash`, ...), as the listing told it.
    pub special_use: Option<String>,
    pub subscribed: bool,
}

/// A copy as a destination's change feed shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationItem {
    /// The destination's own id of the item.
    pub id: String,
    /// The source key stamped on it (`folder/UIDVALIDITY:UID`) and the
    /// digest of its bytes; `None` for an item mailferry did not write.
    pub origin: Option<(String, String)>,
    /// Its state as flags: what the destination keeps of them.
    pub flags: Vec<String>,
}

/// A message's subject (decoded), Message-ID and date, each capped at
/// [`ItemDescription::MAX_CHARS`] characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemDescription {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// The Date header, RFC 3339 when it parses, else as written.
    pub date: Option<String>,
}

impl ItemDescription {
    /// The longest a field is kept, in characters.
    pub const MAX_CHARS: usize = 200;

    /// A description from header values, each trimmed, emptied to `None`
    /// and cut at [`Self::MAX_CHARS`].
    pub fn new(subject: Option<&str>, message_id: Option<&str>, date: Option<&str>) -> Self {
        let cap = |v: Option<&str>| {
            let v = v?.trim();
            (!v.is_empty()).then(|| v.chars().take(Self::MAX_CHARS).collect())
        };
        ItemDescription {
            subject: cap(subject),
            message_id: cap(message_id),
            date: cap(date),
        }
    }
}

/// One message held more than once in a destination folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    /// The Message-ID, or `sha256:` and the digest when it has none.
    pub key: String,
    /// The destination UIDs holding it.
    pub uids: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotifyChannel {
    Webhook,
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Source,
    Destination,
}

impl Event {
    /// The batch the event names, if any.
    pub fn batch(&self) -> Option<&str> {
        Some(match self {
            Event::BatchCreated { name, .. } => name,
            Event::MailboxAdded { batch, .. }
            | Event::PassRequested { batch, .. }
            | Event::PassStarted { batch, .. }
            | Event::PassFinished { batch, .. }
            | Event::MailboxPassStarted { batch, .. }
            | Event::ScheduleSet { batch, .. }
            | Event::ScheduleFired { batch, .. }
            | Event::ScheduleSkipped { batch, .. }
            | Event::ScheduleMissed { batch, .. }
            | Event::UserCutOver { batch, .. }
            | Event::BatchStopped { batch }
            | Event::BatchCompleted { batch, .. }
            | Event::BatchDeleted { batch, .. }
            | Event::CompletionRequested { batch, .. }
            | Event::NotifySet { batch, .. }
            | Event::NotificationSent { batch, .. }
            | Event::NotificationFailed { batch, .. }
            | Event::CutoverRequested { batch, .. }
            | Event::RoutingAction { batch, .. }
            | Event::BatchArchived { batch, .. }
            | Event::MailboxUpdated { batch, .. }
            | Event::MailboxRemoved { batch, .. }
            | Event::CompletionForced { batch, .. }
            | Event::DeletionsPropagated { batch, .. }
            | Event::MailboxLeased { batch, .. } => batch,
            _ => return None,
        })
    }

    /// The event's type name, as exports and the envelope show it.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::EndpointRegistered { .. } => "EndpointRegistered",
            Event::EndpointVerified { .. } => "EndpointVerified",
            Event::BatchCreated { .. } => "BatchCreated",
            Event::MailboxAdded { .. } => "MailboxAdded",
            Event::PassRequested { .. } => "PassRequested",
            Event::PassStarted { .. } => "PassStarted",
            Event::PassFinished { .. } => "PassFinished",
            Event::MailboxPassStarted { .. } => "MailboxPassStarted",
            Event::MailboxPassFinished { .. } => "MailboxPassFinished",
            Event::FolderMapped { .. } => "FolderMapped",
            Event::FolderCounted { .. } => "FolderCounted",
            Event::ItemCopyIntent { .. } => "ItemCopyIntent",
            Event::ItemCopied { .. } => "ItemCopied",
            Event::ItemSkipped { .. } => "ItemSkipped",
            Event::ItemFailed { .. } => "ItemFailed",
            Event::FlagsSynced { .. } => "FlagsSynced",
            Event::Checkpoint { .. } => "Checkpoint",
            Event::ScheduleSet { .. } => "ScheduleSet",
            Event::ScheduleFired { .. } => "ScheduleFired",
            Event::ScheduleSkipped { .. } => "ScheduleSkipped",
            Event::ScheduleMissed { .. } => "ScheduleMissed",
            Event::UserCutOver { .. } => "UserCutOver",
            Event::MxSwitched { .. } => "MxSwitched",
            Event::BatchStopped { .. } => "BatchStopped",
            Event::BatchCompleted { .. } => "BatchCompleted",
            Event::BatchDeleted { .. } => "BatchDeleted",
            Event::UidValidityChanged { .. } => "UidValidityChanged",
            Event::FolderFailed { .. } => "FolderFailed",
            Event::CompletionRequested { .. } => "CompletionRequested",
            Event::NotifySet { .. } => "NotifySet",
            Event::NotificationSent { .. } => "NotificationSent",
            Event::NotificationFailed { .. } => "NotificationFailed",
            Event::CutoverRequested { .. } => "CutoverRequested",
            Event::RoutingAction { .. } => "RoutingAction",
            Event::MxChecked { .. } => "MxChecked",
            Event::MxVerified { .. } => "MxVerified",
            Event::BatchArchived { .. } => "BatchArchived",
            Event::MailboxUpdated { .. } => "MailboxUpdated",
            Event::MailboxRemoved { .. } => "MailboxRemoved",
            Event::EndpointUpdated { .. } => "EndpointUpdated",
            Event::EndpointRemoved { .. } => "EndpointRemoved",
            Event::CompletionForced { .. } => "CompletionForced",
            Event::ItemVanished { .. } => "ItemVanished",
            Event::FolderVanished { .. } => "FolderVanished",
            Event::ItemRemovedAtDestination { .. } => "ItemRemovedAtDestination",
            Event::DeletionsPropagated { .. } => "DeletionsPropagated",
            Event::OutageStarted { .. } => "OutageStarted",
            Event::OutageEnded { .. } => "OutageEnded",
            Event::ItemAdopted { .. } => "ItemAdopted",
            Event::FolderCompared { .. } => "FolderCompared",
            Event::ItemDescribed { .. } => "ItemDescribed",
            Event::EwsEndpointSet { .. } => "EwsEndpointSet",
            Event::SourceSynced { .. } => "SourceSynced",
            Event::FolderSkipped { .. } => "FolderSkipped",
            Event::GraphEndpointSet { .. } => "GraphEndpointSet",
            Event::MailboxLeased { .. } => "MailboxLeased",
            Event::CopySuperseded { .. } => "CopySuperseded",
            Event::SupersededRemoved { .. } => "SupersededRemoved",
            Event::DestinationSynced { .. } => "DestinationSynced",
            Event::SourceFoldersSynced { .. } => "SourceFoldersSynced",
        }
    }
}

/// Stream names, one per aggregate.
pub mod stream {
    pub fn endpoint(name: &str) -> String {
        format!("endpoint/{name}")
    }
    pub fn batch(name: &str) -> String {
        format!("batch/{name}")
    }
    pub fn mailbox(address: &str) -> String {
        format!("mailbox/{address}")
    }
    pub fn domain(name: &str) -> String {
        format!("domain/{name}")
    }
}
