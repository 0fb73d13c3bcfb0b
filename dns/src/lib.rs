//! DNS for the MX switch: what a domain's MX answers (and its TTL), whether
//! its Autodiscover CNAME exists, an RFC 2136 dynamic update of the MX
//! signed with TSIG, and polling the authoritative servers until they all
//! answer the new MX.
//!
//! Lookups go through hickory-resolver, against the given name servers or
//! the system's (`/etc/resolv.conf`). Updates and per-server polls use
//! hickory-net's client over UDP with hickory-proto's update messages and
//! TSIG signer. The TSIG secret stays in [`TsigKey`], which never prints it.

mod key;

pub use key::{KeyError, TsigKey};

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::client::{Client, ClientHandle};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::net::{DnsError as NetDnsError, NetError};
use hickory_resolver::proto::op::{DnsRequest, ResponseCode, UpdateMessage, update_message};
use hickory_resolver::proto::rr::rdata::MX;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// Time allowed for one query or update exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0:?} is not a valid domain name: {1}")]
    BadName(String, String),
    #[error("{domain} has no {rtype} record")]
    NoRecords { domain: String, rtype: &'static str },
    #[error("looking up {rtype} of {domain}: {detail}")]
    Lookup {
        domain: String,
        rtype: &'static str,
        detail: String,
    },
    #[error("no system name servers: {0}")]
    SystemConfig(String),
    /// The primary answered the update with an error code.
    #[error("{server} refused the update of {domain} MX: {rcode}{tsig}")]
    UpdateRefused {
        server: SocketAddr,
        domain: String,
        /// The rcode's mnemonic, e.g. `NOTAUTH`, `REFUSED`.
        rcode: String,
        /// `, TSIG error BADKEY` when the server named one.
        tsig: String,
    },
    #[error("update of {domain} MX sent to {server}: {detail}")]
    UpdateFailed {
        server: SocketAddr,
        domain: String,
        detail: String,
    },
    #[error("querying {server} for {domain} MX: {detail}")]
    Query {
        server: SocketAddr,
        domain: String,
        detail: String,
    },
    #[error("signing the update with key {key}: {detail}")]
    Sign { key: String, detail: String },
}

/// What a domain's MX answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxAnswer {
    /// `(preference, host)`, lowest preference first; hosts without the final dot.
    pub records: Vec<(u16, String)>,
    /// The smallest TTL of the MX RRset, in seconds.
    pub ttl: u32,
    /// The servers asked, e.g. `127.0.0.1:53`, or `system resolver (...)`.
    pub server: String,
}

/// One authoritative server's answer after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollResult {
    pub server: SocketAddr,
    /// It answered with the expected host (and only that host).
    pub ok: bool,
    /// What it answered last, or why it could not.
    pub detail: String,
}

fn parse_name(s: &str) -> Result<Name, DnsError> {
    let mut n =
        Name::from_ascii(s.trim()).map_err(|e| DnsError::BadName(s.to_string(), e.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name as people write it: no final dot, lower case.
pub fn show_name(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

fn resolver(nameservers: &[SocketAddr]) -> Result<(TokioResolver, String), DnsError> {
    let (config, mut opts) = if nameservers.is_empty() {
        let (config, opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
        (config, opts)
    } else {
        let servers = nameservers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        (
            ResolverConfig::from_name_servers(servers),
            ResolverOpts::default(),
        )
    };
    let shown = if nameservers.is_empty() {
        let list: Vec<String> = config
            .name_servers()
            .iter()
            .map(|n| n.ip.to_string())
            .collect();
        format!("system resolver ({})", list.join(", "))
    } else {
        let list: Vec<String> = nameservers.iter().map(|s| s.to_string()).collect();
        list.join(", ")
    };
    // Every check must see the live record, not a cached copy.
    opts.cache_size = 0;
    opts.timeout = EXCHANGE_TIMEOUT;
    opts.attempts = 1;
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    let r = builder.build().map_err(|e| DnsError::Lookup {
        domain: String::new(),
        rtype: "any",
        detail: e.to_string(),
    })?;
    Ok((r, shown))
}

fn lookup_error(domain: &str, rtype: &'static str, e: NetError) -> DnsError {
    match e {
        NetError::Dns(NetDnsError::NoRecordsFound(_)) => DnsError::NoRecords {
            domain: domain.to_string(),
            rtype,
        },
        other => DnsError::Lookup {
            domain: domain.to_string(),
            rtype,
            detail: other.to_string(),
        },
    }
}

/// The domain's MX records and TTL, from `nameservers` (the system's when empty).
pub async fn lookup_mx(domain: &str, nameservers: &[SocketAddr]) -> Result<MxAnswer, DnsError> {
    let name = parse_name(domain)?;
    let (r, server) = resolver(nameservers)?;
    let lookup = r
        .lookup(name, RecordType::MX)
        .await
        .map_err(|e| lookup_error(domain, "MX", e))?;
    let mut records = Vec::new();
    let mut ttl = u32::MAX;
    for rec in lookup.answers() {
        if let RData::MX(mx) = &rec.data {
            records.push((mx.preference, show_name(&mx.exchange)));
            ttl = ttl.min(rec.ttl);
        }
    }
    if records.is_empty() {
        return Err(DnsError::NoRecords {
            domain: domain.to_string(),
            rtype: "MX",
        });
    }
    records.sort();
    Ok(MxAnswer {
        records,
        ttl,
        server,
    })
}

/// Where `name`'s CNAME points, or `None` when it has none.
pub async fn lookup_cname(
    name: &str,
    nameservers: &[SocketAddr],
) -> Result<Option<String>, DnsError> {
    let n = parse_name(name)?;
    let (r, _) = resolver(nameservers)?;
    match r.lookup(n, RecordType::CNAME).await {
        Ok(lookup) => Ok(lookup.answers().iter().find_map(|rec| match &rec.data {
            RData::CNAME(c) => Some(show_name(&c.0)),
            _ => None,
        })),
        Err(e) => match lookup_error(name, "CNAME", e) {
            DnsError::NoRecords { .. } => Ok(None),
            other => Err(other),
        },
    }
}

/// The zone's authoritative servers: its NS names resolved to addresses,
/// each with `port`.
pub async fn authoritative_servers(
    zone: &str,
    nameservers: &[SocketAddr],
    port: u16,
) -> Result<Vec<SocketAddr>, DnsError> {
    let name = parse_name(zone)?;
    let (r, _) = resolver(nameservers)?;
    let ns = r
        .lookup(name, RecordType::NS)
        .await
        .map_err(|e| lookup_error(zone, "NS", e))?;
    let mut out = Vec::new();
    for rec in ns.answers() {
        let RData::NS(host) = &rec.data else { continue };
        let ips = r
            .lookup_ip(host.0.clone())
            .await
            .map_err(|e| lookup_error(&show_name(&host.0), "A/AAAA", e))?;
        for ip in ips.iter() {
            let sa = SocketAddr::new(ip, port);
            if !out.contains(&sa) {
                out.push(sa);
            }
        }
    }
    if out.is_empty() {
        return Err(DnsError::NoRecords {
            domain: zone.to_string(),
            rtype: "NS",
        });
    }
    Ok(out)
}

fn client(server: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(EXCHANGE_TIMEOUT))
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

/// Replaces `domain`'s MX RRset with `preference host`, as one RFC 2136
/// update to the zone's primary, signed with `key`.
///
/// A refusal (NOTAUTH with TSIG error BADKEY or BADSIG, REFUSED, NOTZONE...)
/// is [`DnsError::UpdateRefused`] naming the rcode.
pub async fn update_mx(
    primary: SocketAddr,
    zone: &str,
    domain: &str,
    host: &str,
    preference: u16,
    ttl: u32,
    key: &TsigKey,
) -> Result<(), DnsError> {
    let zone_name = parse_name(zone)?;
    let owner = parse_name(domain)?;
    let exchange = parse_name(host)?;
    if !zone_name.zone_of(&owner) {
        return Err(DnsError::BadName(
            domain.to_string(),
            format!("not inside zone {zone}"),
        ));
    }
    // Delete the whole MX RRset, then add the new record: one message, so
    // the server applies both or neither.
    let mut msg = update_message::delete_rrset(
        Record::update0(owner.clone(), 0, RecordType::MX),
        zone_name,
        false,
    );
    let mut add = Record::from_rdata(owner, ttl, RData::MX(MX::new(preference, exchange)));
    add.dns_class = DNSClass::IN;
    msg.add_update(add);

    let signer = key.signer().map_err(|detail| DnsError::Sign {
        key: key.name().to_string(),
        detail,
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Signed here rather than by the stream, so an unsigned refusal (BADKEY,
    // BADSIG) still reaches us with its rcode instead of a verify error.
    let mut verifier = msg
        .finalize(&signer, now)
        .map_err(|e| DnsError::Sign {
            key: key.name().to_string(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| DnsError::Sign {
            key: key.name().to_string(),
            detail: "the signer gave no verifier".into(),
        })?;

    let failed = |detail: String| DnsError::UpdateFailed {
        server: primary,
        domain: domain.to_string(),
        detail,
    };
    let c = client(primary);
    let mut req = DnsRequest::from(msg);
    req.options_mut().use_edns = false;
    let response = first_response(&c, req).await.map_err(failed)?;
    let (reply, bytes) = response.into_parts();
    if reply.response_code != ResponseCode::NoError {
        let tsig = reply
            .signature()
            .and_then(|s| s.data.error)
            .map(|e| format!(", TSIG error {}", tsig_error_name(e)))
            .unwrap_or_default();
        return Err(DnsError::UpdateRefused {
            server: primary,
            domain: domain.to_string(),
            rcode: rcode_name(reply.response_code),
            tsig,
        });
    }
    // A success must carry the server's signature over our request's MAC.
    verifier
        .verify(&bytes)
        .map_err(|e| failed(format!("the answer's TSIG does not verify: {e}")))?;
    Ok(())
}

async fn first_response(
    c: &Client<TokioRuntimeProvider>,
    req: DnsRequest,
) -> Result<hickory_resolver::proto::op::DnsResponse, String> {
    use futures::StreamExt;
    let mut stream = c.send(req);
    match stream.next().await {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no answer".into()),
    }
}

/// The registry mnemonic (RFC 6895) of an rcode.
pub fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

fn tsig_error_name(e: hickory_resolver::proto::rr::rdata::tsig::TsigError) -> String {
    use hickory_resolver::proto::rr::rdata::tsig::TsigError;
    match e {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(n) => format!("{n}"),
    }
}

/// Asks one server directly (no recursion) for `domain`'s MX.
pub async fn query_mx_at(server: SocketAddr, domain: &str) -> Result<Vec<(u16, String)>, DnsError> {
    let name = parse_name(domain)?;
    let err = |detail: String| DnsError::Query {
        server,
        domain: domain.to_string(),
        detail,
    };
    let mut c = client(server);
    let resp = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        c.query(name, DNSClass::IN, RecordType::MX),
    )
    .await
    .map_err(|_| err("no answer in time".into()))?
    .map_err(|e| err(e.to_string()))?;
    if resp.response_code != ResponseCode::NoError {
        return Err(err(format!("answered {}", rcode_name(resp.response_code))));
    }
    let mut out: Vec<(u16, String)> = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, show_name(&mx.exchange))),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Asks every server, every `interval`, until each answers `expect_host`
/// as the domain's only MX host, or `timeout` passes.
pub async fn poll_mx(
    domain: &str,
    expect_host: &str,
    servers: &[SocketAddr],
    timeout: Duration,
    interval: Duration,
) -> Vec<PollResult> {
    let want = expect_host
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let deadline = Instant::now() + timeout;
    let mut results: Vec<PollResult> = servers
        .iter()
        .map(|s| PollResult {
            server: *s,
            ok: false,
            detail: "not asked yet".into(),
        })
        .collect();
    loop {
        for r in results.iter_mut().filter(|r| !r.ok) {
            match query_mx_at(r.server, domain).await {
                Ok(records) => {
                    r.ok = !records.is_empty() && records.iter().all(|(_, h)| *h == want);
                    r.detail = if records.is_empty() {
                        "no MX".into()
                    } else {
                        show_records(&records)
                    };
                }
                Err(e) => r.detail = e.to_string(),
            }
        }
        if results.iter().all(|r| r.ok) || Instant::now() + interval > deadline {
            return results;
        }
        tokio::time::sleep(interval).await;
    }
}

/// `10 mx1.example.test, 20 mx2.example.test`.
pub fn show_records(records: &[(u16, String)]) -> String {
    records
        .iter()
        .map(|(p, h)| format!("{p} {h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `HOST:PORT` or `IP` (port 53) into a socket address.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!("{s:?} is not an IP address with an optional port, such as 192.0.2.1:53")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_and_without_port() {
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("192.0.2.1").unwrap(),
            "192.0.2.1:53".parse().unwrap()
        );
        assert_eq!(parse_server("[::1]:53").unwrap().port(), 53);
        assert!(parse_server("ns1.example").is_err());
    }

    #[test]
    fn names_show_without_the_final_dot() {
        assert_eq!(
            show_name(&parse_name("MX1.Example.Test.").unwrap()),
            "mx1.example.test"
        );
        assert!(parse_name("bad..name").is_err());
    }

    #[test]
    fn rcodes_have_their_mnemonics() {
        assert_eq!(rcode_name(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::BADKEY), "BADKEY");
    }
}
