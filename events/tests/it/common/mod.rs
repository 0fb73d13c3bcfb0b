//! One of every event, deterministic, for fixtures and round trips.

use ferry_events::*;

pub fn key(uid: u32) -> ItemKey {
    ItemKey {
        folder: "Archive/2024/Février".into(),
        uidvalidity: 1_700_000_000,
        uid,
    }
}

pub fn every_event() -> Vec<Event> {
    let mb = "anna@example.org".to_string();
    vec![
        Event::EndpointRegistered {
            name: "old".into(),
            spec: EndpointSpec {
                kind: EndpointKind::Imap,
                host: "imap.example.org".into(),
                port: 143,
                tls: TlsMode::StartTls,
                ca_file: Some("/etc/ca.pem".into()),
                admin_user: Some("admin".into()),
                admin_secret: Some(SecretRef("sec-1".into())),
                max_connections: 10,
                oauth: Some(TokenSource::Command("get-token --tenant t".into())),
            },
        },
        Event::EndpointVerified {
            name: "old".into(),
            ok: true,
            capabilities: vec!["IMAP4rev1".into(), "UIDPLUS".into()],
            detail: String::new(),
        },
        Event::BatchCreated {
            name: "wave-1".into(),
            source: "old".into(),
            destination: "new".into(),
            options: BatchOptions::default(),
        },
        Event::MailboxAdded {
            batch: "wave-1".into(),
            mailbox: MailboxSpec {
                address: mb.clone(),
                destination_address: "anna@new.example".into(),
                source_login: Some("anna".into()),
                source_secret: Some(SecretRef("sec-2".into())),
                destination_login: None,
                destination_secret: None,
            },
        },
        Event::PassRequested {
            batch: "wave-1".into(),
            pass: PassKind::Prestage,
            older_than_days: Some(90),
            not_before_us: Some(1_800_000_000_000_000),
        },
        Event::PassStarted {
            batch: "wave-1".into(),
            pass_id: 1,
            pass: PassKind::Full,
        },
        Event::PassFinished {
            batch: "wave-1".into(),
            pass_id: 1,
            outcome: Outcome::SucceededWithErrors,
        },
        Event::MailboxPassStarted {
            mailbox: mb.clone(),
            batch: "wave-1".into(),
            pass_id: 1,
            pass: PassKind::Delta,
        },
        Event::MailboxPassFinished {
            mailbox: mb.clone(),
            pass_id: 1,
            outcome: Outcome::Failed,
            detail: "error budget spent".into(),
        },
        Event::FolderMapped {
            mailbox: mb.clone(),
            source: "Sent Items".into(),
            destination: "Sent".into(),
            uidvalidity: 7,
        },
        Event::FolderCounted {
            mailbox: mb.clone(),
            side: Side::Source,
            counts: vec![FolderCount {
                folder: "INBOX".into(),
                items: 3,
                bytes: 4096,
            }],
        },
        Event::ItemCopyIntent {
            mailbox: mb.clone(),
            key: key(1),
            size: 1234,
            digest: "ab".repeat(32),
            dest_folder: "Archive/2024/Février".into(),
            dest_uidnext: Some(40),
        },
        Event::ItemCopied {
            mailbox: mb.clone(),
            key: key(1),
            size: 1234,
            digest: "ab".repeat(32),
            dest_folder: "Archive/2024/Février".into(),
            dest_uid: Some((9, 40)),
        },
        Event::ItemSkipped {
            mailbox: mb.clone(),
            key: key(2),
            size: 99_000_000,
            reason: "larger than 50000000 bytes".into(),
        },
        Event::ItemFailed {
            mailbox: mb.clone(),
            key: key(3),
            class: "Item".into(),
            reason: "NO [LIMIT] message too large".into(),
        },
        Event::FlagsSynced {
            mailbox: mb.clone(),
            key: key(1),
            flags: vec!["\\Seen".into(), "$Forwarded".into()],
        },
        Event::Checkpoint {
            mailbox: mb.clone(),
            folder: "INBOX".into(),
            uidvalidity: 7,
            highest_uid: 300,
            highest_modseq: Some(12),
        },
        Event::ScheduleSet {
            batch: "wave-1".into(),
            cron: "0 30 2 * * *".into(),
            tz: "Europe/Paris".into(),
        },
        Event::ScheduleFired {
            batch: "wave-1".into(),
            due_us: 1,
        },
        Event::ScheduleSkipped {
            batch: "wave-1".into(),
            due_us: 2,
            reason: "a pass is running".into(),
        },
        Event::ScheduleMissed {
            batch: "wave-1".into(),
            due_us: 3,
        },
        Event::UserCutOver {
            mailbox: mb.clone(),
            batch: "wave-1".into(),
            forced: false,
        },
        Event::MxSwitched {
            domain: "example.org".into(),
            to: "mx.new.example".into(),
            manual: true,
        },
        Event::BatchStopped {
            batch: "wave-1".into(),
        },
        Event::BatchCompleted {
            batch: "wave-1".into(),
            with_errors: true,
        },
        Event::BatchDeleted {
            batch: "wave-1".into(),
            forced: true,
        },
        Event::FolderFailed {
            mailbox: mb.clone(),
            folder: "Notes".into(),
            class: "Folder".into(),
            reason: "create Notes: NO Permission denied".into(),
        },
        Event::UidValidityChanged {
            mailbox: mb.clone(),
            folder: "INBOX".into(),
            old: 7,
            new: 8,
        },
        Event::CompletionRequested {
            batch: "wave-1".into(),
            not_before_us: Some(1_800_100_000_000_000),
        },
        Event::NotifySet {
            batch: "wave-1".into(),
            emails: vec!["ops@example.org".into()],
            webhook: Some(SecretRef("sec-3".into())),
            webhook_shown: Some("https://hooks.example.org/ferry".into()),
        },
        Event::NotificationSent {
            batch: "wave-1".into(),
            pass_id: 5,
            channel: NotifyChannel::Webhook,
            target: "https://hooks.example.org/ferry".into(),
            attempt: 1,
        },
        Event::NotificationFailed {
            batch: "wave-1".into(),
            pass_id: 5,
            channel: NotifyChannel::Email,
            target: "ops@example.org".into(),
            attempt: 2,
            reason: "connection refused".into(),
            retry: true,
        },
        Event::CutoverRequested {
            batch: "wave-1".into(),
            mailboxes: vec!["anna@example.org".into()],
            forced: true,
            overridden: vec!["anna@example.org has 1 unresolved error".into()],
        },
        Event::RoutingAction {
            mailbox: "anna@example.org".into(),
            batch: "wave-1".into(),
            action: "hook".into(),
            ok: false,
            detail: "exit 3: no such group".into(),
        },
        Event::MxChecked {
            domain: "example.org".into(),
            hosts: vec!["10 mx1.example.org.".into()],
            ttl: 3600,
            server: "127.0.0.1:53".into(),
        },
        Event::MxVerified {
            domain: "example.org".into(),
            to: "example-org.mail.protection.outlook.com.".into(),
            ok: true,
            detail: "2 of 2 servers answer the new MX".into(),
        },
        Event::BatchArchived {
            batch: "wave-1".into(),
            file: "/var/lib/ferry/archive/wave-1.jsonl".into(),
            events: 1234,
            sha256: "ab".repeat(32),
        },
        Event::MailboxUpdated {
            batch: "wave-1".into(),
            mailbox: MailboxSpec {
                address: "anna@example.org".into(),
                destination_address: "anna@example.com".into(),
                source_login: Some("anna".into()),
                source_secret: Some(SecretRef("sec-2".into())),
                destination_login: None,
                destination_secret: None,
            },
        },
        Event::MailboxRemoved {
            batch: "wave-1".into(),
            address: "anna@example.org".into(),
        },
        Event::EndpointUpdated {
            name: "old".into(),
            spec: EndpointSpec {
                kind: EndpointKind::Imap,
                host: "imap2.example.org".into(),
                port: 993,
                tls: TlsMode::Tls,
                ca_file: None,
                admin_user: None,
                admin_secret: None,
                max_connections: 10,
                oauth: None,
            },
        },
        Event::EndpointRemoved { name: "old".into() },
        Event::CompletionForced {
            batch: "wave-1".into(),
            overridden: vec!["anna@example.org has 1 unresolved errors".into()],
        },
        Event::ItemAdopted {
            mailbox: mb.clone(),
            key: key(9),
            size: 2048,
            message_id: None,
            digest: Some("cd".repeat(32)),
            dest_folder: "Archive/2024/Février".into(),
            dest_uid: (77, 9),
        },
        Event::ItemDescribed {
            mailbox: mb.clone(),
            key: key(10),
            about: ItemDescription::new(
                Some("Réunion"),
                Some("<a@b>"),
                Some("2026-03-02T10:00:00Z"),
            ),
        },
        Event::FolderCompared {
            mailbox: mb,
            folder: "INBOX".into(),
            destination: "INBOX".into(),
            source_items: 10,
            destination_items: 12,
            unmatched: 1,
            duplicates: vec![DuplicateGroup {
                key: "<a@b>".into(),
                uids: vec![3, 11],
            }],
        },
        Event::EwsEndpointSet {
            name: "exchange".into(),
            ews: EwsSettings {
                auth: EwsAuth::Ntlm,
                version: Some("Exchange2013".into()),
            },
        },
        Event::SourceSynced {
            mailbox: "anna@example.org".into(),
            folder: "Inbox".into(),
            generation: 1,
            seen: vec![SourceItem {
                ordinal: 1,
                key: "AAMkAD=".into(),
                size: 1234,
                flags: vec!["\\Seen".into()],
                received_us: Some(1_763_700_000_000_000),
            }],
            gone: vec![7],
            cursor: "H4sIAAA=".into(),
        },
        Event::FolderSkipped {
            mailbox: "anna@example.org".into(),
            folder: "Calendar".into(),
            class: "IPF.Appointment".into(),
            reason: "the destination holds mail only".into(),
        },
        Event::DestinationSynced {
            mailbox: "anna@example.org".into(),
            folder: "INBOX".into(),
            restart: true,
            seen: vec![DestinationItem {
                id: "AAMkAG=".into(),
                origin: Some(("INBOX/7:1".into(), "ab12".into())),
                flags: vec!["\\Seen".into()],
            }],
            gone: vec!["AAMkAF=".into()],
            link: Some("https://graph.example/delta?$deltatoken=x".into()),
        },
    ]
}
