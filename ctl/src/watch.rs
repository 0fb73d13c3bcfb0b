//! `ferryctl watch BATCH`: live progress bars per mailbox, until the pass ends.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use ferry_ctl::{Client, Request, Response};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub async fn watch(client: &Client, batch: &str) -> anyhow::Result<i32> {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:<28} [{bar:30}] {pos:>6}/{len:<6} {per_sec:>10} {msg}",
    )
    .expect("static template")
    .progress_chars("=> ");
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    loop {
        let Response::Batch(detail) = client
            .call(&Request::BatchShow {
                name: batch.to_string(),
            })
            .await?
        else {
            bail!("ferryd answered batch show with something else");
        };
        let b = &detail.batch;
        for address in &b.mailboxes {
            let Response::Mailbox(m) = client
                .call(&Request::MailboxShow {
                    address: address.clone(),
                })
                .await?
            else {
                continue;
            };
            let bar = bars.entry(address.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(address.clone());
                bar
            });
            let known: u64 = m.folders.values().filter_map(|f| f.source_items).sum();
            let done = m.totals.copied + m.totals.skipped + m.totals.failed;
            bar.set_length(known.max(done));
            bar.set_position(done);
            bar.set_message(format!(
                "{} {:.1} MB{}",
                m.state,
                m.totals.bytes as f64 / 1e6,
                if m.totals.failed > 0 {
                    format!(" {} failed", m.totals.failed)
                } else {
                    String::new()
                }
            ));
        }
        if b.running_pass().is_none() && b.pending.is_empty() {
            for bar in bars.values() {
                bar.finish();
            }
            println!("batch {}: {}", b.name, b.state);
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
