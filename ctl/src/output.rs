//! Tables for people, JSON for scripts.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use ferry_ctl::Response;
use ferry_projections::{BatchView, MailboxView};

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

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

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
        Response::Report(r) => println!(
            "report of batch {}: {} mailboxes, {} passes",
            r.batch.name,
            r.mailboxes.len(),
            r.batch.passes.len()
        ),
    }
    Ok(())
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

fn print_batch(b: &BatchView) {
    println!(
        "batch {}: {} ({} → {}), version {}, max {} concurrent",
        b.name, b.state, b.source, b.destination, b.version, b.options.max_concurrent
    );
    if let Some((cron, tz)) = &b.schedule {
        println!("delta schedule: {cron} ({tz})");
    }
    for p in &b.pending {
        println!(
            "pending: {} pass{}",
            p.pass.as_str(),
            p.not_before_us
                .map(|t| format!(" not before {}", time(t)))
                .unwrap_or_default()
        );
    }
    if let Some(p) = b.passes.last() {
        println!(
            "last pass: {} started {}{}",
            p.pass.as_str(),
            time(p.started_us),
            match (p.outcome, p.finished_us) {
                (Some(o), Some(f)) => format!(", {o:?} at {}", time(f)),
                _ => ", running".into(),
            }
        );
    }
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
    }
    let mut t = table(&[
        "folder",
        "→",
        "source items",
        "copied",
        "skipped",
        "failed",
        "bytes",
    ]);
    for (name, f) in &m.folders {
        t.add_row(vec![
            folder(name),
            f.destination.as_deref().map(folder).unwrap_or_default(),
            f.source_items.map(|n| n.to_string()).unwrap_or_default(),
            f.counts.copied.to_string(),
            f.counts.skipped.to_string(),
            f.counts.failed.to_string(),
            f.counts.bytes.to_string(),
        ]);
    }
    println!("{t}");
    if !m.errors.is_empty() {
        let mut t = table(&["folder", "uid", "class", "attempts", "reason"]);
        for e in m.errors.values() {
            t.add_row(vec![
                folder(&e.key.folder),
                e.key.uid.to_string(),
                e.class.clone(),
                e.attempts.to_string(),
                e.reason.clone(),
            ]);
        }
        println!("errors:\n{t}");
    }
}
