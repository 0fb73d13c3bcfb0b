//! `ferryctl batch ...`.

use std::time::{Duration, Instant};

use anyhow::bail;
use ferry_api::audit::{ExportQuery, Format};
use ferry_api::wire::{
    BatchAddUsers, BatchArchive, BatchComplete, BatchCreate, BatchDelete, BatchNotify, BatchPlan,
    BatchRemoveUser, BatchSchedule, BatchShow, BatchShowAsOf, BatchStart, BatchStop,
};
use ferry_api::{Client, Request, Response};
use ferry_events::Outcome;

use super::audit::export;
use crate::cli::{BatchCmd, FolderOptions, parse_at};
use crate::files::read_text;
use crate::{output, send};

pub async fn run(client: &Client, cmd: BatchCmd, json: bool) -> anyhow::Result<i32> {
    let req = match cmd {
        BatchCmd::Create {
            name,
            source,
            destination,
            csv,
            max_concurrent,
            max_item_size,
            error_budget,
            folders:
                FolderOptions {
                    folder_rules,
                    include_folders,
                    exclude_folders,
                },
            propagate_deletions,
        } => Request::BatchCreate(BatchCreate {
            name,
            source,
            destination,
            csv: read_text(&csv)?,
            max_concurrent,
            max_item_bytes: max_item_size,
            error_budget,
            folder_rules,
            include_folders,
            exclude_folders,
            propagate_deletions,
        }),
        BatchCmd::AddUsers {
            name,
            csv,
            update,
            expect,
        } => Request::BatchAddUsers(BatchAddUsers {
            name,
            csv: read_text(&csv)?,
            expected_version: expect.expect_version,
            update,
        }),
        BatchCmd::RemoveUser { name, address } => {
            Request::BatchRemoveUser(BatchRemoveUser { name, address })
        }
        BatchCmd::Start {
            name,
            pass,
            older_than,
            at,
            expect,
        } => Request::BatchStart(BatchStart {
            name,
            pass,
            older_than_days: older_than,
            at: at.as_deref().map(parse_at).transpose()?,
            expected_version: expect.expect_version,
        }),
        BatchCmd::Schedule { name, delta, tz } => {
            Request::BatchSchedule(BatchSchedule { name, delta, tz })
        }
        BatchCmd::Show { name, as_of: None } => Request::BatchShow(BatchShow { name }),
        BatchCmd::Show {
            name,
            as_of: Some(time),
        } => Request::BatchShowAsOf(BatchShowAsOf { name, time }),
        BatchCmd::List => Request::BatchList,
        BatchCmd::Plan {
            name,
            folders:
                FolderOptions {
                    folder_rules,
                    include_folders,
                    exclude_folders,
                },
        } => Request::BatchPlan(BatchPlan {
            name,
            folder_rules,
            include_folders,
            exclude_folders,
        }),
        BatchCmd::Wait { name, timeout } => {
            return wait(client, &name, timeout.map(Duration::from_secs), json).await;
        }
        BatchCmd::Stop { name } => Request::BatchStop(BatchStop { name }),
        BatchCmd::Complete { name, at, force } => Request::BatchComplete(BatchComplete {
            name,
            at: at.as_deref().map(parse_at).transpose()?,
            force,
        }),
        BatchCmd::Delete { name, force } => Request::BatchDelete(BatchDelete { name, force }),
        BatchCmd::Notify {
            name,
            emails,
            webhook,
            clear,
        } => {
            if !clear && emails.is_empty() && webhook.is_none() {
                bail!("give --email ADDR and/or --webhook URL, or --clear");
            }
            Request::BatchNotify(BatchNotify {
                name,
                emails,
                webhook,
                clear,
            })
        }
        BatchCmd::Archive { name, output } => {
            let query = ExportQuery {
                archive: Some(name.clone()),
                ..ExportQuery::new(Format::Jsonl)
            };
            let (events, sha256) = export(client, &query, Some(output.clone())).await?;
            let file = std::path::absolute(&output)?.display().to_string();
            Request::BatchArchive(BatchArchive {
                name,
                file,
                events,
                sha256,
            })
        }
    };
    send::print(client, &req, json).await
}

/// Returns when no pass is running or pending; exit status 2 when the last
/// one failed, 3 on timeout.
async fn wait(
    client: &Client,
    name: &str,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<i32> {
    let start = Instant::now();
    loop {
        let resp = client
            .call(&Request::BatchShow(BatchShow {
                name: name.to_string(),
            }))
            .await?;
        let Response::Batch(detail) = &resp else {
            bail!("ferryd answered batch show with something else");
        };
        let b = &detail.batch;
        if !b.has_pass_in_flight() {
            output::print(&resp, json)?;
            let failed = b
                .passes
                .last()
                .is_some_and(|p| p.outcome == Some(Outcome::Failed));
            if failed {
                eprintln!("ferryctl: the last pass of batch {name} failed");
                return Ok(2);
            }
            return Ok(0);
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!("ferryctl: batch {name} still has a pass running or pending");
            return Ok(3);
        }
        // Asking is cheap on the local socket; a script waiting on a short
        // pass should not wait much longer than the pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
