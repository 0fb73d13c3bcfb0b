//! Runs the EWS simulator on 127.0.0.1 until stdin closes, for trying a
//! client by hand:
//!
//! `ews-sim [--version 2010|2010sp1|2013|2016|2019] [--messages N]`
//!
//! It prints the URL, the CA file to trust, and the accounts: `alice`
//! (a populated mailbox) and `migrator` (ApplicationImpersonation, no
//! mailbox), both with the password `Passw0rd-sim`, logging in as
//! `SIM\name` (NTLM) or `name@sim.example` (Basic).

use clap::Parser;
use ferry_tests::ews_sim::{EwsSim, SimConfig, SimVersion};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "2016")]
    version: String,
    #[arg(long, default_value_t = 200)]
    messages: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let version = match args.version.as_str() {
        "2010" => SimVersion::Exchange2010,
        "2010sp1" => SimVersion::Exchange2010Sp1,
        "2013" => SimVersion::Exchange2013,
        "2016" => SimVersion::Exchange2016,
        "2019" => SimVersion::Exchange2019,
        v => anyhow::bail!("unknown version {v}: 2010, 2010sp1, 2013, 2016 or 2019"),
    };
    let sim = EwsSim::start(SimConfig {
        version,
        ..SimConfig::default()
    });
    let pw = "Passw0rd-sim";
    let alice = sim.add_user("alice", pw);
    sim.populate(&alice, args.messages, 10, 1);
    sim.add_account("migrator", pw, true, false);
    println!("url      {}", sim.url());
    println!("ca file  {}", sim.ca_file().display());
    println!("accounts SIM\\alice, SIM\\migrator (impersonation); password {pw}");
    println!("running until stdin closes");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}
