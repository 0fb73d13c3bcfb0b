//! `ferryctl runbook`: writes a batch's routing runbooks from what ferryd
//! knows of the batch (its users' source and destination addresses).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferry_api::wire::BatchShow;
use ferry_api::{Client, Request, Response};
use ferry_exchange::runbook::{self, BatchRunbook, CutoverRunbook, Runbook, User};

pub async fn run(
    client: &Client,
    batch: &str,
    dir: &Path,
    smart_host: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let resp = client
        .call(&Request::BatchShow(BatchShow {
            name: batch.to_string(),
        }))
        .await?;
    let Response::Batch(view) = resp else {
        bail!("ferryd answered batch show with something else");
    };
    // The destination's tenant, when it signs in as an application.
    let tenant = match client.call(&Request::EndpointList).await? {
        Response::Endpoints(eps) => eps
            .into_iter()
            .find(|e| e.name == view.batch.destination)
            .and_then(|e| e.graph)
            .map(|g| g.tenant),
        _ => None,
    };
    let mut waiting = Vec::new();
    let mut runbooks = Vec::new();
    for m in &view.mailbox_stats {
        let user = User {
            source: m.address.clone(),
            destination: m.destination.clone(),
        };
        let mut rb = CutoverRunbook::new(batch, user.clone());
        rb.tenant = tenant.clone();
        runbooks.extend(runbook::cutover(&rb));
        // Users already cut over stay out of the "not migrated" group.
        if m.cut_over_us.is_none() {
            waiting.push(user);
        }
    }
    match smart_host {
        Some(host) => runbooks.insert(
            0,
            Runbook {
                file_name: runbook::batch_setup_file_name(batch),
                text: runbook::batch_setup(&BatchRunbook {
                    tenant,
                    ..BatchRunbook::new(batch, waiting, host)
                }),
            },
        ),
        None => eprintln!("ferryctl: no --smart-host, so no batch setup runbook"),
    }
    let mut names = std::collections::HashSet::new();
    if let Some(dup) = runbooks
        .iter()
        .find(|r| !names.insert(r.file_name.as_str()))
    {
        bail!(
            "two users of batch {batch} would share the runbook file {}",
            dup.file_name
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written: Vec<PathBuf> = Vec::new();
    for r in &runbooks {
        let path = dir.join(&r.file_name);
        std::fs::write(&path, &r.text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&written)?);
    } else {
        for p in &written {
            println!("{}", p.display());
        }
    }
    Ok(0)
}
