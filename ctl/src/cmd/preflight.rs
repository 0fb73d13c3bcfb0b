//! `ferryctl preflight`: checks run locally on exported files, no daemon.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use ferry_exchange::preflight::{self, Options};

use crate::cli::PreflightCmd;

pub fn run(cmd: PreflightCmd, json: bool) -> anyhow::Result<i32> {
    let PreflightCmd::CrossTenant {
        source,
        target,
        target_domains,
    } = cmd;
    let loaded = preflight::load_sources(&source)
        .and_then(|s| preflight::load_targets(&target).map(|t| (s, t)));
    let (sources, targets) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ferryctl: {e}");
            return Ok(2);
        }
    };
    let opts = Options { target_domains };
    let findings = preflight::check(&sources, &targets, &opts);
    let domains = preflight::owned_domains(&targets, &opts);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "sources": sources.len(),
                "targets": targets.len(),
                "target_domains": domains,
                "findings": findings,
            }))?
        );
    } else {
        if !findings.is_empty() {
            let mut t = Table::new();
            t.load_preset(UTF8_BORDERS_ONLY)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(vec!["severity", "object", "rule", "finding", "fix"]);
            for f in &findings {
                t.add_row(vec![
                    f.severity.to_string(),
                    f.object.clone(),
                    f.rule.to_string(),
                    f.message.clone(),
                    f.fix.clone(),
                ]);
            }
            println!("{t}");
        }
        println!(
            "{} source mailboxes, {} target MailUsers, target domains {}: {} findings",
            sources.len(),
            targets.len(),
            domains.join(", "),
            findings.len()
        );
    }
    Ok(if findings.is_empty() { 0 } else { 1 })
}
