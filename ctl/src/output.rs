//! Tables for people, JSON for scripts.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use ferry_api::Response;
use ferry_api::wire::{BatchDetail, ChecklistView, MxCheckView, MxSwitchView, PlanView};
use ferry_events::{ItemDescription, ItemKey, Side};
use ferry_projections::MailboxView;
use ferry_projections::batches::PassPurpose;
use ferry_projections::mailboxes::{Comparison, Outage};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(header.to_vec());
    t
}

/// A folder's name as people read it (IMAP names are modified UTF-7).
fn folder(raw: &str) -> String {
    ferry_connectors::utf7::decode(raw).unwrap_or_else(|| raw.to_string())
}

use ferry_events::time::table as time;

use crate::units::size;

pub fn print(resp: &Response, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(resp)?);
        return Ok(());
    }
    match resp {
        Response::Done { message, seq } => println!("{message} (event {seq})"),
        Response::Status(s) => {
            println!(
                "ferryd {} (pid {}), data in {}",
                s.version, s.pid, s.data_dir
            );
            println!(
                "log head {}; {} endpoints, {} batches, {} mailboxes; {} passes running; up {} s{}",
                s.head,
                s.endpoints,
                s.batches,
                s.mailboxes,
                s.passes_running,
                s.uptime_s,
                if s.draining { "; draining" } else { "" }
            );
            for line in &s.destination_budgets {
                println!("{line}");
            }
            if let Some(f) = &s.fleet {
                print_fleet(f);
            }
        }
        Response::Endpoint(e) => print_endpoints(std::slice::from_ref(e)),
        Response::Endpoints(es) => print_endpoints(es),
        Response::Batch(b) => print_batch(b),
        Response::Batches(bs) => {
            let mut t = table(&["batch", "state", "source", "destination", "mailboxes"]);
            for b in bs {
                t.add_row(vec![
                    b.name.clone(),
                    b.state.to_string(),
                    b.source.clone(),
                    b.destination.clone(),
                    b.mailboxes.len().to_string(),
                ]);
            }
            println!("{t}");
        }
        Response::Mailbox(m) => print_mailbox(m),
        Response::Events { events, .. } => {
            for e in events {
                println!(
                    "{:>8} {} {} {} {}",
                    e.seq, e.time, e.actor, e.stream, e.event_type
                );
            }
        }
        Response::MxCheck(v) => print_mx_check(v),
        Response::MxSwitch(v) => print_mx_switch(v),
        Response::Checklist(v) => print_checklist(v),
        Response::Report(r) => println!(
            "report of batch {}: {} mailboxes, {} passes",
            r.batch.name,
            r.mailboxes.len(),
            r.batch.passes.len()
        ),
        Response::Plan(p) => print_plan(p),
    }
    Ok(())
}

fn print_plan(p: &PlanView) {
    println!(
        "plan of a full pass of batch {} (nothing was written)",
        p.batch
    );
    let mut t = table(&[
        "mailbox",
        "folder",
        "→",
        "source items",
        "done",
        "copy",
        "bytes",
        "adopt",
        "over limit",
        "in doubt",
    ]);
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64);
    for m in &p.mailboxes {
        if let Some(e) = &m.error {
            t.add_row(vec![m.address.clone(), format!("cannot plan: {e}")]);
        }
        for f in &m.folders {
            let to = match &f.destination {
                None => "(filtered out)".to_string(),
                Some(d) if f.destination_exists => folder(d),
                Some(d) => format!("{} (new)", folder(d)),
            };
            totals.0 += f.copy_items;
            totals.1 += f.copy_bytes;
            totals.2 += f.adopt_items;
            totals.3 += f.skip_items;
            totals.4 += f.in_doubt_items;
            t.add_row(vec![
                m.address.clone(),
                folder(&f.folder),
                to,
                f.source_items.to_string(),
                f.done.to_string(),
                f.copy_items.to_string(),
                size(f.copy_bytes),
                f.adopt_items.to_string(),
                f.skip_items.to_string(),
                f.in_doubt_items.to_string(),
            ]);
        }
    }
    println!("{t}");
    println!(
        "would copy {} items ({}), adopt {}, skip {} over the size limit",
        totals.0,
        size(totals.1),
        totals.2,
        totals.3
    );
    if totals.4 > 0 {
        println!(
            "{} items in doubt, settled on the next pass (found at the destination or copied again)",
            totals.4
        );
    }
}

fn print_mx_check(v: &MxCheckView) {
    println!("{} MX, TTL {} s, from {}", v.domain, v.ttl, v.server);
    let mut t = table(&["preference", "host", "endpoint"]);
    for h in &v.hosts {
        t.add_row(vec![
            h.preference.to_string(),
            h.host.clone(),
            h.endpoint.clone(),
        ]);
    }
    println!("{t}");
    if let Some(w) = &v.warning {
        println!("warning: {w}");
    }
}

fn print_mx_switch(v: &MxSwitchView) {
    println!("{} MX → {}: {}", v.domain, v.to, v.applied);
    let mut t = table(&["authoritative server", "answers new MX", "answer"]);
    for s in &v.servers {
        t.add_row(vec![
            s.server.clone(),
            if s.ok { "yes" } else { "no" }.to_string(),
            s.detail.clone(),
        ]);
    }
    println!("{t}");
    println!(
        "{} (event {})",
        if v.verified {
            "verified on every authoritative server"
        } else {
            "NOT verified"
        },
        v.seq
    );
}

fn print_checklist(v: &ChecklistView) {
    let mut t = table(&["domain", "phase", "item", "done", "detail"]);
    for d in &v.domains {
        for i in &d.items {
            t.add_row(vec![
                d.domain.clone(),
                i.phase.clone(),
                i.item.clone(),
                if i.done { "done" } else { "not done" }.to_string(),
                i.detail.clone(),
            ]);
        }
    }
    println!("{t}");
    println!(
        "batch {}: {}",
        v.batch,
        if v.all_done {
            "every item is done"
        } else {
            "items remain"
        }
    );
}

fn print_endpoints(es: &[ferry_projections::EndpointView]) {
    let mut t = table(&[
        "endpoint", "kind", "host", "port", "tls", "admin", "verified",
    ]);
    for e in es {
        t.add_row(vec![
            e.name.clone(),
            format!("{:?}", e.spec.kind),
            e.spec.host.clone(),
            e.spec.port.to_string(),
            format!("{:?}", e.spec.tls),
            e.spec.admin_user.clone().unwrap_or_default(),
            match &e.verified {
                None => "never".into(),
                Some((true, _)) => format!("ok ({} capabilities)", e.capabilities.len()),
                Some((false, why)) => format!("failed: {why}"),
            },
        ]);
    }
    println!("{t}");
}

fn print_batch(d: &BatchDetail) {
    let b = &d.batch;
    println!(
        "batch {}: {} ({} → {}), version {}, max {} concurrent",
        b.name, b.state, b.source, b.destination, b.version, b.options.max_concurrent
    );
    if let Some(s) = &b.schedule {
        println!(
            "delta schedule: {} ({}); fired {}, skipped {}, missed {}{}",
            s.cron,
            s.tz,
            s.fired,
            s.skipped,
            s.missed,
            d.next_fire_us
                .map(|t| format!("; next {}", time(t)))
                .unwrap_or_default()
        );
    }
    for p in &b.pending {
        println!(
            "pending: {} pass{}{}",
            p.pass.as_str(),
            purpose(&p.purpose),
            p.not_before_us
                .map(|t| format!(" not before {}", time(t)))
                .unwrap_or_default()
        );
    }
    if b.propagate_deletions {
        println!("deletions at the source are removed at the destination (--propagate-deletions)");
    }
    if !b.notify.is_empty() {
        let mut to = b.notify.emails.clone();
        to.extend(b.notify.webhook_shown.clone());
        println!("notify: {}", to.join(", "));
    }
    let now = ferry_events::time::now_us();
    println!(
        "copied {} ({}), skipped {}, failed {}; lag {} items; {} passes; last delta {}",
        d.totals.copied,
        size(d.totals.bytes),
        d.totals.skipped,
        d.totals.failed,
        d.lag,
        b.passes.len(),
        b.last_delta_us()
            .map(time)
            .unwrap_or_else(|| "never".into())
    );
    if d.totals.adopted > 0 {
        println!(
            "adopted {} (found at the destination, not copied)",
            d.totals.adopted
        );
    }
    if !b.passes.is_empty() {
        let mut t = table(&[
            "pass", "started", "duration", "outcome", "copied", "adopted", "bytes", "rate",
            "failed",
        ]);
        for p in b.passes.iter().rev().take(10).rev() {
            let end = p.finished_us.unwrap_or(now);
            t.add_row(vec![
                format!("{}{}", p.pass.as_str(), purpose(&p.purpose)),
                time(p.started_us),
                format!("{:.1} s", (end - p.started_us) as f64 / 1e6),
                p.outcome
                    .map(|o| format!("{o:?}"))
                    .unwrap_or_else(|| "running".into()),
                p.counts.copied.to_string(),
                p.counts.adopted.to_string(),
                size(p.counts.bytes),
                format!("{}/s", size(p.throughput(now) as u64)),
                p.counts.failed.to_string(),
            ]);
        }
        println!("{t}");
    }
    if !d.mailbox_stats.is_empty() {
        let mut t = table(&[
            "mailbox",
            "state",
            "copied",
            "adopted",
            "skipped",
            "failed",
            "bytes",
            "lag",
            "errors",
            "last pass",
        ]);
        for m in &d.mailbox_stats {
            t.add_row(vec![
                m.address.clone(),
                m.state.to_string(),
                m.totals.copied.to_string(),
                m.totals.adopted.to_string(),
                m.totals.skipped.to_string(),
                m.totals.failed.to_string(),
                size(m.totals.bytes),
                m.lag.to_string(),
                m.errors.to_string(),
                m.last_pass
                    .as_ref()
                    .map(|p| {
                        let o = p.outcome.map(|o| format!("{o:?}"));
                        let on = m.worker.as_ref().map(|w| format!(" on {w}"));
                        format!(
                            "{} {}{}",
                            p.pass.as_str(),
                            o.as_deref().unwrap_or("running"),
                            on.unwrap_or_default()
                        )
                    })
                    .unwrap_or_default(),
            ]);
        }
        println!("{t}");
    }
    print_comparisons(
        "mailbox",
        d.mailbox_stats.iter().flat_map(|m| {
            m.verified
                .iter()
                .map(|(n, c)| (m.address.clone(), n.as_str(), c))
        }),
    );
}

/// The fleet's workers, each with its last heartbeat and its leases.
fn print_fleet(f: &ferry_api::wire::FleetStatus) {
    println!(
        "fleet: this is worker {}{}",
        f.worker,
        if f.leads { " (leader)" } else { "" }
    );
    let mut t = table(&["worker", "heartbeat", "leases"]);
    for w in &f.workers {
        let leases: Vec<String> = w
            .leases
            .iter()
            .map(|l| {
                format!(
                    "{} ({} pass {}, lease {}, {} ms left)",
                    l.mailbox, l.batch, l.pass_id, l.lease, l.expires_in_ms
                )
            })
            .collect();
        t.add_row(vec![
            w.name.clone(),
            format!("{} ({} ms ago)", time(w.heartbeat_us), w.heartbeat_age_ms),
            leases.join("\n"),
        ]);
    }
    println!("{t}");
}

fn purpose(p: &PassPurpose) -> String {
    match p {
        PassPurpose::Sync => String::new(),
        PassPurpose::Completion => " (completion)".into(),
        PassPurpose::Cutover { mailboxes } => format!(" (cutover of {})", mailboxes.join(", ")),
    }
}

/// `waiting for HOST since TIME`: the outage a mailbox's pass waits out.
pub fn waiting(o: &Outage) -> String {
    let side = match o.side {
        Side::Source => "source",
        Side::Destination => "destination",
    };
    let next = o
        .next_attempt_us
        .map(|t| {
            let left = (t - ferry_events::time::now_us()).max(0);
            format!(", next attempt in {} s", (left + 999_999) / 1_000_000)
        })
        .unwrap_or_default();
    format!(
        "waiting for {side} {} since {}{next}: {}",
        o.host,
        time(o.since_us),
        o.reason
    )
}

fn print_mailbox(m: &MailboxView) {
    println!(
        "mailbox {} → {} (batch {}): {}",
        m.address, m.spec.destination_address, m.batch, m.state
    );
    println!(
        "copied {} ({} bytes), skipped {}, failed {}; passes run {}",
        m.totals.copied, m.totals.bytes, m.totals.skipped, m.totals.failed, m.passes_run
    );
    if m.totals.vanished > 0 {
        println!(
            "deleted at the source since copied {}, removed at the destination {}",
            m.totals.vanished, m.totals.removed
        );
    }
    if let Some(o) = &m.outage {
        println!("{}", waiting(o));
    }
    if m.totals.adopted > 0 {
        println!(
            "adopted {} (found at the destination, not copied)",
            m.totals.adopted
        );
    }
    if let Some(p) = &m.last_pass {
        println!(
            "last pass: {} started {}{}",
            p.pass.as_str(),
            time(p.started_us),
            match (p.outcome, p.finished_us) {
                (Some(o), Some(f)) if p.detail.is_empty() => format!(", {o:?} at {}", time(f)),
                (Some(o), Some(f)) => format!(", {o:?} at {}: {}", time(f), p.detail),
                _ => ", running".into(),
            }
        );
    }
    for (name, f) in &m.folders {
        if let Some(e) = &f.error {
            println!("folder {} not copied: {e}", folder(name));
        }
        if f.vanished {
            println!("folder {} was deleted at the source", folder(name));
        }
        if let Some(now) = &f.renamed {
            println!(
                "folder {} is {} at the source now; still copied as first mapped",
                folder(name),
                folder(now)
            );
        }
        if let Some(why) = &f.skipped {
            println!("folder {} skipped: {why}", folder(name));
        }
    }
    let mut t = table(&[
        "folder",
        "→",
        "source items",
        "destination items",
        "copied",
        "adopted",
        "skipped",
        "failed",
        "bytes",
        "deleted at source",
        "removed",
    ]);
    for (name, f) in &m.folders {
        t.add_row(vec![
            folder(name),
            f.destination.as_deref().map(folder).unwrap_or_default(),
            f.source_items.map(|n| n.to_string()).unwrap_or_default(),
            f.destination_items
                .map(|n| n.to_string())
                .unwrap_or_default(),
            f.counts.copied.to_string(),
            f.counts.adopted.to_string(),
            f.counts.skipped.to_string(),
            f.counts.failed.to_string(),
            f.counts.bytes.to_string(),
            f.counts.vanished.to_string(),
            f.counts.removed.to_string(),
        ]);
    }
    println!("{t}");
    print_comparisons(
        "mailbox",
        m.folders
            .iter()
            .filter_map(|(n, f)| Some((m.address.clone(), n.as_str(), f.comparison.as_ref()?))),
    );
    print_items(
        "errors",
        &["class", "attempts", "reason"],
        m.errors.values().map(|e| {
            let rest = vec![e.class.clone(), e.attempts.to_string(), e.reason.clone()];
            (&e.key, e.about.as_ref(), rest)
        }),
    );
    print_items(
        "skipped",
        &["size", "reason"],
        m.skipped.values().map(|s| {
            (
                &s.key,
                s.about.as_ref(),
                vec![size(s.size), s.reason.clone()],
            )
        }),
    );
}

/// Items named by folder, UID, subject, Message-ID and date, then `more`
/// columns; nothing when there are none.
fn print_items<'a>(
    title: &str,
    more: &[&str],
    rows: impl Iterator<Item = (&'a ItemKey, Option<&'a ItemDescription>, Vec<String>)>,
) {
    let mut columns = vec!["folder", "uid", "subject", "message-id", "date"];
    columns.extend_from_slice(more);
    let mut t = table(&columns);
    let mut any = false;
    for (key, about, rest) in rows {
        any = true;
        let mut row = vec![folder(&key.folder), key.uid.to_string()];
        row.extend(about_cells(about));
        row.extend(rest);
        t.add_row(row);
    }
    if any {
        println!("{title}:\n{t}");
    }
}

/// An item's subject, Message-ID and date for a table, blank where unknown.
fn about_cells(about: Option<&ItemDescription>) -> [String; 3] {
    let field = |f: fn(&ItemDescription) -> &Option<String>| {
        about.and_then(|a| f(a).clone()).unwrap_or_default()
    };
    [
        field(|a| &a.subject),
        field(|a| &a.message_id),
        field(|a| &a.date),
    ]
}

/// The last verify pass's comparison, folder by folder; `rows` are
/// (label, source folder, comparison).
fn print_comparisons<'a>(
    label: &str,
    rows: impl Iterator<Item = (String, &'a str, &'a Comparison)>,
) {
    let rows: Vec<_> = rows.collect();
    if rows.is_empty() {
        return;
    }
    let mut t = table(&[
        label,
        "folder",
        "→",
        "source items",
        "destination items",
        "not in source",
        "duplicate groups",
    ]);
    for (l, name, c) in &rows {
        t.add_row(vec![
            l.clone(),
            folder(name),
            folder(&c.destination),
            c.source_items.to_string(),
            c.destination_items.to_string(),
            c.unmatched.to_string(),
            c.duplicates.len().to_string(),
        ]);
    }
    println!("verified:\n{t}");
    for (l, _, c) in &rows {
        for g in &c.duplicates {
            let uids: Vec<String> = g.uids.iter().map(u32::to_string).collect();
            println!(
                "duplicate in {l} {}: {} at UIDs {}",
                folder(&c.destination),
                g.key,
                uids.join(", ")
            );
        }
    }
}
