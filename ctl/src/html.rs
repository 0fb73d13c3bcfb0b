//! A batch's report as one self-contained HTML page (inline CSS and SVG,
//! no script, no external URL).
//!
//! Every string that comes from events (addresses, folder names, reasons)
//! goes through [`esc`]: a folder may be named `<script>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ferry_api::report::{MailboxReport, ReportData, reason_class};
use ferry_projections::MailboxState;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use ferry_events::time::display as time;

use crate::units::size;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
th{background:#f0f0f0}td.n{text-align:right}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
svg{background:#fafafa;border:1px solid #ddd;margin:.5em 0}.muted{color:#777}";

const W: f64 = 720.0;
const H: f64 = 200.0;
const PAD: f64 = 40.0;

/// A line chart of a cumulative series from 0, with its time span under it.
fn line_chart(
    id: &str,
    title: &str,
    points: &[u64],
    span: (&str, &str),
    label: impl Fn(u64) -> String,
) -> String {
    let max = points.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = points.len().max(2) as f64 - 1.0;
    let mut path = String::new();
    for (i, p) in points.iter().enumerate() {
        let x = PAD + (W - 2.0 * PAD) * i as f64 / n;
        let y = H - PAD + (PAD * 2.0 - H) * (*p as f64 / max);
        let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "" } else { " " });
    }
    format!(
        "<svg id=\"{id}\" class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
<title>{t}</title><text x=\"{PAD}\" y=\"20\" font-size=\"13\">{t}</text>\
<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#999\"/>\
<text x=\"{r}\" y=\"{PAD}\" font-size=\"11\" text-anchor=\"end\">{m}</text>\
<text x=\"{PAD}\" y=\"{lb}\" font-size=\"10\">{from}</text>\
<text x=\"{r}\" y=\"{lb}\" font-size=\"10\" text-anchor=\"end\">{to}</text>\
<polyline fill=\"none\" stroke=\"#2a6fdb\" stroke-width=\"2\" points=\"{path}\"/></svg>",
        t = esc(title),
        b = H - PAD,
        lb = H - PAD + 14.0,
        r = W - PAD,
        m = esc(&label(max as u64)),
        from = esc(span.0),
        to = esc(span.1),
    )
}

/// A bar chart, one bar per value, labels under the bars when few.
fn bar_chart(id: &str, title: &str, bars: &[(String, u64)], colour: &str) -> String {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let slot = (W - 2.0 * PAD) / bars.len().max(1) as f64;
    let mut body = String::new();
    for (i, (name, v)) in bars.iter().enumerate() {
        let h = (H - 2.0 * PAD) * (*v as f64 / max);
        let x = PAD + slot * i as f64;
        let _ = write!(
            body,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\"><title>{}: {v}</title></rect>",
            H - PAD - h,
            (slot * 0.8).max(1.0),
            esc(name)
        );
        if bars.len() <= 12 {
            let _ = write!(
                body,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                x,
                H - PAD + 14.0,
                esc(&name.chars().take(18).collect::<String>())
            );
        }
    }
    format!(
        "<svg id=\"{id}\" class=\"chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">\
<title>{t}</title><text x=\"{PAD}\" y=\"20\" font-size=\"13\">{t}</text>\
<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
<text x=\"{r}\" y=\"{PAD}\" font-size=\"11\" text-anchor=\"end\">{m}</text>{body}</svg>",
        t = esc(title),
        b = H - PAD,
        r = W - PAD,
        m = max as u64,
    )
}

/// Horizontal completion bars, one per mailbox.
fn completion_chart(mailboxes: &[MailboxReport]) -> String {
    let row = 22.0;
    let h = PAD + row * mailboxes.len().max(1) as f64;
    let mut body = String::new();
    for (i, m) in mailboxes.iter().enumerate() {
        let y = 30.0 + row * i as f64;
        let pct = m.completion();
        let _ = write!(
            body,
            "<text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text>\
<rect x=\"260\" y=\"{y:.1}\" width=\"400\" height=\"14\" fill=\"#e4e4e4\"/>\
<rect x=\"260\" y=\"{y:.1}\" width=\"{:.1}\" height=\"14\" fill=\"#3a9d5d\"/>\
<text x=\"666\" y=\"{:.1}\" font-size=\"11\">{:.0}%</text>",
            y + 11.0,
            esc(&m.view.address),
            400.0 * pct,
            y + 11.0,
            pct * 100.0
        );
    }
    format!(
        "<svg id=\"completion\" class=\"chart\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" role=\"img\">\
<title>Completion per mailbox</title><text x=\"4\" y=\"18\" font-size=\"13\">Completion per mailbox (copied or skipped of source items)</text>{body}</svg>"
    )
}

/// The whole page.
pub fn html(r: &ReportData) -> String {
    let b = &r.batch;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\">\
<title>Batch {n} - migration report</title><style>{STYLE}</style></head><body>\
<h1>Batch {n}</h1><p>{src} &rarr; {dst}; state <b>{st}</b>; {mb} mailboxes; \
created {cr}. <span class=\"muted\">Report of {g}, log sequence {head}.</span></p>",
        n = esc(&b.name),
        src = esc(&b.source),
        dst = esc(&b.destination),
        st = b.state,
        mb = b.mailboxes.len(),
        cr = time(b.created_us),
        g = esc(&r.generated),
        head = r.head,
    );

    o.push_str("<h2>Completion</h2>");
    o.push_str(&completion_chart(&r.mailboxes));
    o.push_str(
        "<table><tr><th>mailbox</th><th>state</th><th>source items seen</th><th>copied</th>\
<th>adopted</th><th>skipped (reason)</th><th>failed</th><th>bytes copied</th></tr>",
    );
    for m in &r.mailboxes {
        let t = &m.view.totals;
        let reasons: Vec<String> = m
            .skipped_by_reason
            .iter()
            .map(|(k, v)| format!("{v} {}", esc(k)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
<td class=\"n\">{}</td><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&m.view.address),
            m.view.state,
            m.source_items().map_or_else(
                || match m.view.state {
                    MailboxState::Failed => "not counted: the mailbox failed".to_string(),
                    _ => "not counted".to_string(),
                },
                |n| n.to_string()
            ),
            t.copied,
            t.adopted,
            t.skipped,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join("; "))
            },
            m.view.errors.len(),
            size(t.bytes),
        );
    }
    o.push_str("</table>");
    for m in &r.mailboxes {
        let t = &m.view.totals;
        let _ = write!(
            o,
            "<p class=\"completeness\">{}: the source held {} items when last counted; \
{} were copied, {}{} skipped for a recorded reason, {} failed and are unresolved.</p>",
            esc(&m.view.address),
            m.source_items()
                .map_or_else(|| "an uncounted number of".to_string(), |n| n.to_string()),
            t.copied,
            match t.adopted {
                0 => String::new(),
                n => format!("{n} found already at the destination (adopted), "),
            },
            t.skipped,
            m.view.errors.len()
        );
        if t.vanished > 0 {
            let gone: Vec<String> = m
                .view
                .folders
                .iter()
                .filter(|(_, f)| f.vanished)
                .map(|(n, _)| esc(n))
                .collect();
            let _ = write!(
                o,
                "<p class=\"deletions\">{}: {} items were deleted at the source after their copy \
({} removed at the destination){}.</p>",
                esc(&m.view.address),
                t.vanished,
                t.removed,
                if gone.is_empty() {
                    String::new()
                } else {
                    format!("; folders deleted at the source: {}", gone.join(", "))
                }
            );
        }
    }

    o.push_str("<h2>Progress over time</h2>");
    // Cumulative, from 0 before the first bucket.
    let mut items = vec![0];
    let mut bytes_c = vec![0];
    let (mut ci, mut cb) = (0, 0);
    for bk in &r.series {
        ci += bk.items;
        cb += bk.bytes;
        items.push(ci);
        bytes_c.push(cb);
    }
    let from = r
        .series
        .first()
        .map(|b| time(b.start_us))
        .unwrap_or_default();
    let to = r
        .series
        .last()
        .map(|b| time(b.start_us + r.bucket_us))
        .unwrap_or_default();
    let span = (from.as_str(), to.as_str());
    o.push_str(&line_chart(
        "items",
        "Items copied (cumulative)",
        &items,
        span,
        |n| n.to_string(),
    ));
    o.push_str(&line_chart(
        "bytes",
        "Bytes copied (cumulative)",
        &bytes_c,
        span,
        size,
    ));
    let secs = (r.bucket_us as f64 / 1e6).max(1e-6);
    let throughput: Vec<(String, u64)> = r
        .series
        .iter()
        .map(|bk| {
            let at = ferry_events::time::clock(bk.start_us);
            (at, (bk.items as f64 / secs).round() as u64)
        })
        .collect();
    o.push_str(&bar_chart(
        "throughput",
        &format!("Throughput, items per second ({secs:.1} s buckets)"),
        &throughput,
        "#2a6fdb",
    ));

    o.push_str("<h2>Errors</h2>");
    let classes: Vec<(String, u64)> = r
        .errors_by_class
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    o.push_str(&bar_chart(
        "errors",
        "Failures by class (every attempt)",
        &classes,
        "#c0392b",
    ));
    o.push_str(&failed_mailboxes(&r.mailboxes));
    o.push_str(&unresolved_items(&r.mailboxes));
    o.push_str(&skipped_items(&r.mailboxes));

    o.push_str(
        "<h2>Passes</h2><table><tr><th>id</th><th>pass</th><th>started</th><th>finished</th>\
<th>outcome</th><th>copied</th><th>adopted</th><th>skipped</th><th>failed</th></tr>",
    );
    for p in &b.passes {
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            p.id,
            p.pass.as_str(),
            time(p.started_us),
            p.finished_us.map(time).unwrap_or_else(|| "running".into()),
            p.outcome.map(|o| format!("{o:?}")).unwrap_or_default(),
            p.counts.copied,
            p.counts.adopted,
            p.counts.skipped,
            p.counts.failed,
        );
    }
    if b.passes.is_empty() {
        o.push_str("<tr><td colspan=\"9\">No pass has run.</td></tr>");
    }
    o.push_str("</table>");

    o.push_str("<h2>Cutover and MX</h2><table><tr><th>seq</th><th>time</th><th>by</th><th>event</th><th>detail</th></tr>");
    for e in &r.milestones {
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            esc(&e.time),
            esc(&e.actor),
            esc(&e.event_type),
            esc(&e.event.to_string())
        );
    }
    if r.milestones.is_empty() {
        o.push_str("<tr><td colspan=\"5\">No cutover or MX event yet.</td></tr>");
    }
    o.push_str("</table></body></html>\n");
    o
}

/// Mailboxes whose last pass failed, each with its reason.
fn failed_mailboxes(mailboxes: &[MailboxReport]) -> String {
    let mut o = String::from(
        "<h3>Failed mailboxes</h3><table><tr><th>mailbox</th><th>pass</th><th>ended</th><th>reason</th></tr>",
    );
    let failed: Vec<&MailboxReport> = mailboxes
        .iter()
        .filter(|m| m.view.state == MailboxState::Failed)
        .collect();
    for m in &failed {
        let p = m.view.last_pass.as_ref();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.view.address),
            p.map(|p| p.pass.as_str()).unwrap_or_default(),
            p.and_then(|p| p.finished_us).map(time).unwrap_or_default(),
            esc(p.map(|p| p.detail.as_str()).unwrap_or_default()),
        );
    }
    if failed.is_empty() {
        o.push_str("<tr><td colspan=\"4\">No mailbox failed.</td></tr>");
    }
    o.push_str("</table>");
    o
}

/// An item's subject, then its Message-ID and date, for a table cell.
fn message(about: Option<&ferry_events::ItemDescription>) -> String {
    let Some(a) = about else {
        return String::new();
    };
    let line2: Vec<String> = [&a.message_id, &a.date]
        .into_iter()
        .flatten()
        .map(|v| esc(v))
        .collect();
    format!(
        "{}<br><span class=\"muted\">{}</span>",
        esc(a.subject.as_deref().unwrap_or("(no subject)")),
        line2.join(" · ")
    )
}

/// A table whose rows are grouped under a heading row per class, naming
/// how many follow; `none` stands alone when there are none.
fn grouped_table<K: AsRef<str>>(
    title: &str,
    columns: &[&str],
    by_class: &BTreeMap<K, Vec<String>>,
    none: &str,
) -> String {
    let span = columns.len();
    let mut o = format!("<h3>{title}</h3><table><tr>");
    for c in columns {
        let _ = write!(o, "<th>{c}</th>");
    }
    o.push_str("</tr>");
    for (class, rows) in by_class {
        let _ = write!(
            o,
            "<tr class=\"class\"><th colspan=\"{span}\">{} ({})</th></tr>",
            esc(class.as_ref()),
            rows.len()
        );
        o.extend(rows.iter().map(String::as_str));
    }
    if by_class.is_empty() {
        let _ = write!(o, "<tr><td colspan=\"{span}\">{none}</td></tr>");
    }
    o.push_str("</table>");
    o
}

/// Failed items not since copied, and folders not copied, by class.
fn unresolved_items(mailboxes: &[MailboxReport]) -> String {
    let mut by_class: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for m in mailboxes {
        for e in m.view.errors.values() {
            by_class.entry(&e.class).or_default().push(format!(
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&m.view.address),
                esc(&e.key.folder),
                e.key.uid,
                message(e.about.as_ref()),
                esc(&e.reason),
                e.attempts,
                time(e.time_us)
            ));
        }
        for (folder, f) in &m.view.folders {
            if let Some(why) = &f.skipped {
                by_class.entry("folder skipped").or_default().push(format!(
                    "<tr><td>{}</td><td>{}</td><td></td><td></td><td>{}</td><td></td><td></td></tr>",
                    esc(&m.view.address),
                    esc(folder),
                    esc(why)
                ));
            }
            if let Some(err) = &f.error {
                by_class.entry("folder").or_default().push(format!(
                    "<tr><td>{}</td><td>{}</td><td></td><td></td><td>{}</td><td></td><td></td></tr>",
                    esc(&m.view.address),
                    esc(folder),
                    esc(err)
                ));
            }
        }
    }
    grouped_table(
        "Unresolved failed items",
        &[
            "mailbox", "folder", "UID", "message", "reason", "attempts", "last",
        ],
        &by_class,
        "No unresolved failed items.",
    )
}

/// Items left out for a recorded reason and not copied since, by the
/// class of their reason.
fn skipped_items(mailboxes: &[MailboxReport]) -> String {
    let mut by_class: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in mailboxes {
        for s in &m.skipped {
            by_class.entry(reason_class(&s.reason)).or_default().push(format!(
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.view.address),
                esc(&s.key.folder),
                s.key.uid,
                message(s.about.as_ref()),
                size(s.size),
                esc(&s.reason),
                time(s.time_us)
            ));
        }
    }
    grouped_table(
        "Skipped items",
        &[
            "mailbox", "folder", "UID", "message", "size", "reason", "when",
        ],
        &by_class,
        "No item was skipped.",
    )
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
