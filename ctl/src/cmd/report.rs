//! `ferryctl report BATCH -o FILE`.

use std::path::Path;

use anyhow::{Context, bail};
use ferry_api::{Client, Request, Response, wire};

use crate::{html, output};

pub async fn run(client: &Client, batch: &str, output: &Path, json: bool) -> anyhow::Result<i32> {
    let resp = client
        .call(&Request::Report(wire::Report {
            batch: batch.to_string(),
        }))
        .await?;
    let Response::Report(data) = &resp else {
        bail!("ferryd answered report with something else");
    };
    let tmp = output.with_extension("partial");
    std::fs::write(&tmp, html::html(data))
        .with_context(|| format!("writing {}", output.display()))?;
    std::fs::rename(&tmp, output)?;
    if json {
        output::print(&resp, true)?;
    } else {
        println!(
            "report of batch {batch} written to {} ({} mailboxes)",
            output.display(),
            data.mailboxes.len()
        );
    }
    Ok(0)
}
