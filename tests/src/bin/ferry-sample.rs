//! ferry-sample: fills Maildirs (or an IMAP account) with generated mail,
//! for the demo and for trying mailferry without real users.
//!
//! `ferry-sample maildir ROOT --users a@x.example,b@x.example --messages 300`
//! writes one Maildir per address under ROOT, as a Maildir endpoint expects.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferry_connectors::imap::{self, ImapAuth, ImapConfig, TlsMode};
use ferry_connectors::{MailSession, maildir};
use ferry_tests::sample::{self, SampleSpec};

#[derive(Parser)]
#[command(about = "Generate sample mailboxes")]
struct Args {
    #[command(subcommand)]
    target: Target,
    /// Messages per mailbox.
    #[arg(long, default_value_t = 300, global = true)]
    messages: usize,
    #[arg(long, default_value_t = 1, global = true)]
    seed: u64,
    /// Messages of 10 MB per mailbox.
    #[arg(long, default_value_t = 0, global = true)]
    huge: usize,
}

#[derive(Subcommand)]
enum Target {
    /// One Maildir per address under ROOT.
    Maildir {
        root: PathBuf,
        #[arg(long, value_delimiter = ',', required = true)]
        users: Vec<String>,
    },
    /// One IMAP account.
    Imap {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        user: String,
        #[arg(long)]
        password_file: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = |i: u64| SampleSpec {
        seed: args.seed.wrapping_mul(1000).wrapping_add(i),
        messages: args.messages,
        attachment_percent: 10,
        huge: args.huge,
    };
    match &args.target {
        Target::Maildir { root, users } => {
            for (i, u) in users.iter().enumerate() {
                let mut s = maildir::open(&root.join(u.to_lowercase()), true)?;
                let (n, bytes) = sample::fill(&mut s, &spec(i as u64)).await?;
                println!("{u}: {n} messages, {:.1} MB", bytes as f64 / 1e6);
            }
        }
        Target::Imap {
            host,
            port,
            user,
            password_file,
        } => {
            let password = std::fs::read_to_string(password_file)?
                .trim_end()
                .to_string();
            let cfg = ImapConfig {
                host: host.clone(),
                port: *port,
                tls: TlsMode::None,
                ca_file: None,
                timeout: Duration::from_secs(60),
                fence: None,
            };
            let mut s = imap::connect(
                &cfg,
                &ImapAuth::Login {
                    user: user.clone(),
                    password,
                },
            )
            .await?;
            let (n, bytes) = sample::fill(&mut s, &spec(0)).await?;
            s.logout().await?;
            println!("{user}: {n} messages, {:.1} MB", bytes as f64 / 1e6);
        }
    }
    Ok(())
}
