//! The Graph simulator as a process, for trying clients by hand:
//! `graph-sim --client-id ID --secret-file F --user ann@contoso.example`.
//! Prints where it listens as one JSON line, then serves until its
//! standard input closes.

use std::io::Read;
use std::time::Duration;

use clap::Parser;
use ferry_tests::graph_sim::{GraphSim, SimConfig};

#[derive(Parser)]
#[command(about = "Microsoft Graph and token-endpoint simulator on 127.0.0.1")]
struct Args {
    /// The application's client id.
    #[arg(long)]
    client_id: String,
    /// A file holding the application's client secret.
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    /// A PEM certificate registered on the application.
    #[arg(long)]
    certificate: Option<std::path::PathBuf>,
    /// A user with a mailbox (repeat for more).
    #[arg(long = "user", required = true)]
    users: Vec<String>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime: u64,
    /// Answer every request this many milliseconds late.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Turn Exchange Online's throttling off.
    #[arg(long)]
    no_throttling: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = GraphSim::start(SimConfig {
        token_lifetime: Duration::from_secs(args.token_lifetime),
        latency: Duration::from_millis(args.latency_ms),
        limits: if args.no_throttling {
            None
        } else {
            SimConfig::default().limits
        },
        ..SimConfig::default()
    });
    if let Some(f) = &args.secret_file {
        sim.add_app_secret(&args.client_id, std::fs::read_to_string(f)?.trim());
    }
    if let Some(c) = &args.certificate {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_file(c)
            .map_err(|e| anyhow::anyhow!("{}: {e}", c.display()))?;
        sim.add_app_certificate(&args.client_id, &der);
    }
    for u in &args.users {
        sim.add_user(u);
    }
    println!(
        "{}",
        serde_json::json!({
            "authority": sim.authority(),
            "graph_url": sim.graph_url(),
            "tenant_id": sim.tenant_id(),
            "tenant_domain": sim.tenant_domain(),
            "ca": sim.ca_path(),
        })
    );
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}
