//! `ferryctl events [--follow] [--batch B] [--mailbox M] [--type T]...`.

use std::io::Write;

use anyhow::bail;
use ferry_api::wire::Events;
use ferry_api::{Client, Request, Response};

use crate::cli::EventFilter;

pub async fn run(
    client: &Client,
    since: u64,
    follow: bool,
    filter: EventFilter,
    json: bool,
) -> anyhow::Result<i32> {
    let mut next = since.max(1);
    let mut out = std::io::stdout().lock();
    loop {
        let resp = client
            .call(&Request::Events(Events {
                since: next,
                limit: Some(1000),
                wait_ms: follow.then_some(10_000),
                // ferryd selects them as a filtered audit export does.
                batch: filter.batch.clone(),
                mailbox: filter.mailbox.clone(),
                types: filter.types.clone(),
            }))
            .await?;
        let Response::Events { events, head } = resp else {
            bail!("ferryd answered events with something else");
        };
        for e in &events {
            if json {
                writeln!(out, "{}", serde_json::to_string(e)?)?;
            } else {
                writeln!(
                    out,
                    "{:>8} {} {:<14} {:<28} {:<22} {}",
                    e.seq, e.time, e.actor, e.stream, e.event_type, e.event
                )?;
            }
        }
        out.flush()?;
        if let Some(last) = events.last() {
            next = last.seq + 1;
        } else if !follow {
            return Ok(0);
        } else {
            // Nothing selected up to `head`: look past it next time.
            next = next.max(head + 1);
        }
    }
}
