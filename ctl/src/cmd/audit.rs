//! `ferryctl audit export|verify`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferry_api::Client;
use ferry_api::audit::{ExportQuery, Format};
use ferry_ctl::verify;
use http_body_util::BodyExt;

use crate::cli::{AuditCmd, FormatArg};

pub async fn run(client: &Client, cmd: AuditCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        AuditCmd::Export {
            format,
            since,
            until,
            from_seq,
            to_seq,
            filter,
            output,
        } => {
            let query = ExportQuery {
                since,
                until,
                from_seq,
                to_seq,
                batch: filter.batch,
                mailbox: filter.mailbox,
                types: filter.types,
                ..ExportQuery::new(match format {
                    FormatArg::Jsonl => Format::Jsonl,
                    FormatArg::Csv => Format::Csv,
                })
            };
            let (records, _) = export(client, &query, output.clone()).await?;
            // stdout may be the export itself: the confirmation goes to stderr.
            if let Some(path) = output {
                let bytes = std::fs::metadata(&path)?.len();
                eprintln!(
                    "ferryctl: wrote {records} records ({bytes} bytes) to {}",
                    path.display()
                );
            }
            Ok(0)
        }
        AuditCmd::Verify { file } => check(&file, json),
    }
}

/// Streams an export to `output` (or stdout); returns the records' count
/// and the SHA-256 of the bytes written.
pub async fn export(
    client: &Client,
    query: &ExportQuery,
    output: Option<PathBuf>,
) -> anyhow::Result<(u64, String)> {
    use sha2::Digest;
    let body = serde_json::to_vec(query)?;
    let mut answer = client.post_raw("/v1/export", body).await?;
    if answer.status != 200 {
        let bytes = answer.body.collect().await?.to_bytes();
        ferry_api::client::decode_answer(answer.status, &bytes)?;
        bail!("export failed with HTTP {}", answer.status);
    }
    let mut sink: Box<dyn Write> = match &output {
        // Written beside the target and renamed, so a failed export leaves no half file.
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path.with_extension("partial"))
                .with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sha = sha2::Sha256::new();
    let mut lines = 0u64;
    while let Some(frame) = answer.body.frame().await {
        if let Ok(data) = frame?.into_data() {
            sha.update(&data);
            lines += data.iter().filter(|b| **b == b'\n').count() as u64;
            sink.write_all(&data)?;
        }
    }
    sink.flush()?;
    drop(sink);
    if let Some(path) = &output {
        std::fs::rename(path.with_extension("partial"), path)?;
    }
    // Records: every line but the closing one (and the CSV header).
    let header = u64::from(query.format == Format::Csv);
    Ok((
        lines.saturating_sub(1 + header),
        hex::encode(sha.finalize()),
    ))
}

fn check(file: &Path, json: bool) -> anyhow::Result<i32> {
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    match verify::verify_reader(std::io::BufReader::with_capacity(1 << 16, f)) {
        Ok(v) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "count": v.count, "first_seq": v.first_seq,
                        "last_seq": v.last_seq, "last_hash": v.last_hash, "filter": v.filter})
                );
            } else {
                let what = match &v.filter {
                    Some(f) => format!("filtered export ({f}): every record intact and in order"),
                    None => "chain intact".to_string(),
                };
                println!(
                    "ok: {} records, seq {}..{}, {what}, last hash {}",
                    v.count,
                    v.first_seq.unwrap_or(0),
                    v.last_seq.unwrap_or(0),
                    v.last_hash
                );
            }
            Ok(0)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string(), "exit": e.exit_code()})
                );
            }
            eprintln!("ferryctl: {}: {e}", file.display());
            Ok(e.exit_code())
        }
    }
}
