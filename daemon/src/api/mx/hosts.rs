//! Which registered endpoint an MX host belongs to: the same host, else
//! one under the same parent domain or the same provider's mail domains.

use ferry_events::EndpointKind;
use ferry_projections::EndpointView;

/// The endpoints an MX host belongs to: the same host, else one under the
/// same parent domain (or the same provider's mail domains); `unknown` if none.
pub fn endpoint_of(host: &str, endpoints: &[&EndpointView]) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let imap: Vec<(&str, String)> = endpoints
        .iter()
        .filter(|e| e.spec.kind == EndpointKind::Imap)
        .map(|e| {
            (
                e.name.as_str(),
                e.spec.host.trim_end_matches('.').to_ascii_lowercase(),
            )
        })
        .collect();
    let exact: Vec<&str> = imap
        .iter()
        .filter(|(_, h)| *h == host)
        .map(|(n, _)| *n)
        .collect();
    if !exact.is_empty() {
        return exact.join(", ");
    }
    let family = mail_family(&host);
    let same: Vec<&str> = imap
        .iter()
        .filter(|(_, h)| family.is_some() && mail_family(h) == family)
        .map(|(n, _)| *n)
        .collect();
    if same.is_empty() {
        "unknown".into()
    } else {
        same.join(", ")
    }
}

/// Providers whose MX and IMAP hosts sit under different domains.
const PROVIDERS: &[&[&str]] = &[
    &[
        "outlook.com",
        "office365.com",
        "office.com",
        "microsoft.com",
    ],
    &["google.com", "gmail.com", "googlemail.com"],
];

/// What two hosts must share to belong together: the provider, else the
/// parent domain (the last two labels; three under a two-letter
/// second-level label such as `co.uk`).
fn mail_family(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    if labels.len() < 2 {
        return None;
    }
    let take = |n: usize| labels[labels.len().saturating_sub(n)..].join(".");
    let two = take(2);
    if let Some(p) = PROVIDERS.iter().position(|fam| fam.contains(&two.as_str())) {
        return Some(format!("provider:{p}"));
    }
    let sld = labels[labels.len() - 2];
    if labels.len() >= 3 && labels[labels.len() - 1].len() == 2 && sld.len() <= 3 {
        return Some(take(3));
    }
    Some(two)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_events::{EndpointSpec, TlsMode};

    fn ep(name: &str, host: &str) -> EndpointView {
        EndpointView {
            name: name.into(),
            spec: EndpointSpec {
                kind: EndpointKind::Imap,
                host: host.into(),
                port: 143,
                tls: TlsMode::None,
                ca_file: None,
                admin_user: None,
                admin_secret: None,
                max_connections: 1,
                oauth: None,
            },
            verified: None,
            capabilities: Vec::new(),
            ews: None,
            graph: None,
        }
    }

    #[test]
    fn mx_hosts_map_to_endpoints() {
        let old = ep("old", "imap.example.test");
        let m365 = ep("m365", "outlook.office365.com");
        let uk = ep("uk", "mail.shop.co.uk");
        let eps = [&old, &m365, &uk];
        assert_eq!(endpoint_of("imap.example.test.", &eps), "old");
        assert_eq!(endpoint_of("mx1.example.test", &eps), "old");
        assert_eq!(
            endpoint_of("contoso-com.mail.protection.outlook.com", &eps),
            "m365"
        );
        assert_eq!(endpoint_of("mx.shop.co.uk", &eps), "uk");
        assert_eq!(endpoint_of("mx.other.co.uk", &eps), "unknown");
        assert_eq!(endpoint_of("mx.elsewhere.test", &eps), "unknown");
    }
}
