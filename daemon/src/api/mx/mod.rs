//! `mx check`, `mx switch` and `checklist`: the domain's MX from DNS, the
//! switch as a TSIG-signed dynamic update (or recorded as done by hand),
//! its verification on the authoritative servers, and what remains to do.
//! Which endpoint an MX host belongs to is [`hosts`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::wire::{
    ChecklistItem, ChecklistView, DomainChecklist, MX_TTL_ADVICE_S, MxCheckView, MxHostView,
    MxSwitchView, Response, ServerAnswer,
};
use ferry_api::{ApiError, ErrorCode};
use ferry_dns::{DnsError, TsigKey};
use ferry_events::time::{display as display_time, now_us};
use ferry_events::{Actor, Event, ExpectedVersion, stream};
use ferry_projections::{DomainView, EndpointView};

use super::{conflict, invalid, not_found, store_error};
use crate::app::App;
use crate::config::DnsConfig;

mod hosts;

use ferry_projections::rules::{MX_HOLD_US, domain_name, domain_of};
pub use hosts::endpoint_of;

fn dns_config(app: &App) -> DnsConfig {
    app.config.read().unwrap().dns.clone()
}

/// A domain as the log keeps it: lower case, no final dot, a valid name.
fn domain_arg(what: &str, raw: &str) -> Result<String, ApiError> {
    domain_name(raw).ok_or_else(|| invalid(format!("{what} {raw:?} is not a domain name")))
}

fn dns_error(e: DnsError) -> ApiError {
    let code = match &e {
        DnsError::BadName(..) => ErrorCode::Invalid,
        DnsError::NoRecords { .. } => ErrorCode::NotFound,
        DnsError::UpdateRefused { .. } => ErrorCode::Conflict,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, format!("{e}; nothing was recorded"))
}

pub async fn check(app: &Arc<App>, actor: Actor, domain: &str) -> Result<Response, ApiError> {
    let domain = domain_arg("domain", domain)?;
    let cfg = dns_config(app);
    let answer = ferry_dns::lookup_mx(&domain, &cfg.nameserver_addrs())
        .await
        .map_err(dns_error)?;
    let hosts: Vec<MxHostView> = {
        let views = app.views.read().unwrap();
        let eps: Vec<&EndpointView> = views.endpoints.values().collect();
        answer
            .records
            .iter()
            .map(|(p, h)| MxHostView {
                preference: *p,
                host: h.clone(),
                endpoint: endpoint_of(h, &eps),
            })
            .collect()
    };
    let envs = app
        .append(
            &stream::domain(&domain),
            ExpectedVersion::Any,
            actor,
            vec![Event::MxChecked {
                domain: domain.clone(),
                hosts: answer
                    .records
                    .iter()
                    .map(|(p, h)| format!("{p} {h}"))
                    .collect(),
                ttl: answer.ttl,
                server: answer.server.clone(),
            }],
        )
        .await
        .map_err(store_error)?;
    let warning = (answer.ttl > MX_TTL_ADVICE_S).then(|| {
        format!(
            "the MX TTL is {} s: lower it to {MX_TTL_ADVICE_S} s or less at least {} s before the switch",
            answer.ttl, answer.ttl
        )
    });
    Ok(Response::MxCheck(MxCheckView {
        domain,
        hosts,
        ttl: answer.ttl,
        warning,
        server: answer.server,
        seq: envs.last().map_or(0, |e| e.seq),
    }))
}

pub async fn switch(
    app: &Arc<App>,
    actor: Actor,
    domain: &str,
    to: &str,
    manual: bool,
) -> Result<Response, ApiError> {
    let domain = domain_arg("domain", domain)?;
    let to = domain_arg("--to host", to)?;
    let cfg = dns_config(app);
    let zone = cfg.zone_of(&domain).cloned();
    let updatable = zone
        .as_ref()
        .and_then(|z| Some((z, z.primary.as_deref()?, z.key_file.as_deref()?)));

    let applied = match (manual, updatable) {
        (true, _) => "recorded as a manual switch".to_string(),
        (false, None) => {
            return Err(invalid(format!(
                "no [[dns.zone]] with primary and key_file holds {domain}: change the MX by hand, \
                 then record it with `mx switch {domain} --to {to} --manual`; nothing was recorded"
            )));
        }
        (false, Some((z, primary, key_file))) => {
            let primary: SocketAddr = ferry_dns::parse_server(primary).map_err(invalid)?;
            let key = TsigKey::from_file(key_file)
                .map_err(|e| invalid(format!("{e}; nothing was recorded")))?;
            ferry_dns::update_mx(primary, &z.name, &domain, &to, z.preference, z.ttl, &key)
                .await
                .map_err(dns_error)?;
            format!(
                "RFC 2136 update to {primary} (zone {}, key {}, TTL {} s)",
                z.name,
                key.name(),
                z.ttl
            )
        }
    };
    app.append(
        &stream::domain(&domain),
        ExpectedVersion::Any,
        actor.clone(),
        vec![Event::MxSwitched {
            domain: domain.clone(),
            to: to.clone(),
            manual,
        }],
    )
    .await
    .map_err(store_error)?;

    // Which servers must answer the new MX: the configured ones, else the
    // zone's (or domain's) NS records.
    let configured: Vec<SocketAddr> = zone
        .iter()
        .flat_map(|z| z.servers.iter())
        .filter_map(|s| ferry_dns::parse_server(s).ok())
        .collect();
    let servers = if configured.is_empty() {
        let apex = zone.as_ref().map_or(domain.as_str(), |z| z.name.as_str());
        ferry_dns::authoritative_servers(apex, &cfg.nameserver_addrs(), 53).await
    } else {
        Ok(configured)
    };
    let (ok, answers) = match servers {
        Ok(servers) => {
            let results = ferry_dns::poll_mx(
                &domain,
                &to,
                &servers,
                Duration::from_secs(cfg.verify_timeout_s),
                Duration::from_millis(cfg.verify_interval_ms.max(50)),
            )
            .await;
            let answers: Vec<ServerAnswer> = results
                .into_iter()
                .map(|r| ServerAnswer {
                    server: r.server.to_string(),
                    ok: r.ok,
                    detail: r.detail,
                })
                .collect();
            (answers.iter().all(|a| a.ok), answers)
        }
        Err(e) => (
            false,
            vec![ServerAnswer {
                server: "-".into(),
                ok: false,
                detail: format!("finding the authoritative servers: {e}"),
            }],
        ),
    };
    let detail = answers
        .iter()
        .map(|a| format!("{}: {}", a.server, a.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let envs = app
        .append(
            &stream::domain(&domain),
            ExpectedVersion::Any,
            actor,
            vec![Event::MxVerified {
                domain: domain.clone(),
                to: to.clone(),
                ok,
                detail,
            }],
        )
        .await
        .map_err(store_error)?;
    Ok(Response::MxSwitch(MxSwitchView {
        domain,
        to,
        manual,
        applied,
        verified: ok,
        servers: answers,
        seq: envs.last().map_or(0, |e| e.seq),
    }))
}

fn item(phase: &str, item: &str, done: bool, detail: String) -> ChecklistItem {
    ChecklistItem {
        phase: phase.into(),
        item: item.into(),
        done,
        detail,
    }
}

pub async fn checklist(app: &Arc<App>, batch: &str) -> Result<Response, ApiError> {
    // (address, cut over) per mailbox, and the domains they use.
    let (mailboxes, domains, switched) = {
        let views = app.views.read().unwrap();
        let b = views
            .batches
            .get(batch)
            .ok_or_else(|| not_found("batch", batch))?;
        let mut domains = BTreeSet::new();
        let mut mailboxes = Vec::new();
        for addr in &b.mailboxes {
            let Some(m) = views.mailboxes.get(addr) else {
                continue;
            };
            let doms: Vec<String> = [
                domain_of(&m.address),
                domain_of(&m.spec.destination_address),
            ]
            .into_iter()
            .flatten()
            .collect();
            domains.extend(doms.iter().cloned());
            mailboxes.push((m.address.clone(), m.cut_over_us.is_some(), doms));
        }
        let switched: Vec<(String, DomainView)> = domains
            .iter()
            .map(|d| (d.clone(), views.domains.get(d).cloned().unwrap_or_default()))
            .collect();
        (mailboxes, domains, switched)
    };
    if domains.is_empty() {
        return Err(conflict(format!(
            "batch {batch} has no mailboxes, so no domain to check"
        )));
    }
    let ns = dns_config(app).nameserver_addrs();
    let now_us = now_us();
    let mut out = Vec::new();
    for (
        domain,
        DomainView {
            mx_switched: switched,
            mx_verified: verified,
        },
    ) in switched
    {
        let mut items = Vec::new();
        let (ttl_ok, ttl_detail) = match ferry_dns::lookup_mx(&domain, &ns).await {
            Ok(a) => (
                a.ttl <= MX_TTL_ADVICE_S,
                format!(
                    "TTL {} s ({}){}",
                    a.ttl,
                    ferry_dns::show_records(&a.records),
                    if a.ttl > MX_TTL_ADVICE_S {
                        format!("; lower it to {MX_TTL_ADVICE_S} s or less")
                    } else {
                        String::new()
                    }
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        items.push(item("before", "MX TTL at most 3600 s", ttl_ok, ttl_detail));

        let mine: Vec<&(String, bool, Vec<String>)> = mailboxes
            .iter()
            .filter(|(_, _, doms)| doms.contains(&domain))
            .collect();
        let waiting: Vec<&str> = mine
            .iter()
            .filter(|(_, cut, _)| !cut)
            .map(|(a, _, _)| a.as_str())
            .collect();
        let mut detail = format!("{} of {} cut over", mine.len() - waiting.len(), mine.len());
        if !waiting.is_empty() {
            let shown: Vec<&str> = waiting.iter().take(5).copied().collect();
            detail.push_str(&format!("; not yet: {}", shown.join(", ")));
            if waiting.len() > 5 {
                detail.push_str(&format!(" and {} more", waiting.len() - 5));
            }
        }
        items.push(item(
            "before",
            "every user cut over",
            waiting.is_empty(),
            detail,
        ));

        let autodiscover = format!("autodiscover.{domain}");
        let (cname_ok, cname_detail) = match ferry_dns::lookup_cname(&autodiscover, &ns).await {
            Ok(Some(target)) => (true, format!("{autodiscover} → {target}")),
            Ok(None) => (false, format!("{autodiscover} has no CNAME")),
            Err(e) => (false, e.to_string()),
        };
        items.push(item(
            "before",
            "Autodiscover CNAME present",
            cname_ok,
            cname_detail,
        ));

        match &switched {
            Some((to, at)) => {
                let mut detail = format!("to {to} at {}", display_time(*at));
                if let Some((ok, d)) = verified {
                    detail.push_str(if ok {
                        "; verified on the authoritative servers"
                    } else {
                        "; NOT verified: "
                    });
                    if !ok {
                        detail.push_str(&d);
                    }
                }
                items.push(item("after", "MX switched", true, detail));
                let until = at + MX_HOLD_US;
                let passed = now_us >= until;
                let detail = if passed {
                    format!("72 hours passed on {}", display_time(until))
                } else {
                    let left_h = (until - now_us + 3_599_999_999) / 3_600_000_000;
                    format!(
                        "keep the batches until {} (about {left_h} h from now)",
                        display_time(until)
                    )
                };
                items.push(item("after", "72 hours since the switch", passed, detail));
            }
            None => {
                items.push(item(
                    "after",
                    "MX switched",
                    false,
                    format!("not yet: `ferryctl mx switch {domain} --to HOST`"),
                ));
                items.push(item(
                    "after",
                    "72 hours since the switch",
                    false,
                    "counts from the switch".into(),
                ));
            }
        }
        out.push(DomainChecklist { domain, items });
    }
    let all_done = out.iter().all(|d| d.items.iter().all(|i| i.done));
    Ok(Response::Checklist(ChecklistView {
        batch: batch.to_string(),
        domains: out,
        all_done,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_checked() {
        assert_eq!(domain_arg("d", "Example.Test.").unwrap(), "example.test");
        assert!(domain_arg("d", "bad..test").is_err());
        assert!(domain_arg("d", "a b.test").is_err());
        assert!(domain_arg("d", "").is_err());
    }
}
