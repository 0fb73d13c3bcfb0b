//! Real servers for tests, started on 127.0.0.1 and stopped by pid.
//!
//! - [`Dovecot`]: a throwaway Dovecot 2.3 IMAP server under a temp dir, with
//!   passwd-file users, a master user for impersonation and optional TLS.
//! - [`Cyrus`]: Debian's Cyrus IMAP 3.6 unpacked by `scripts/cyrus.sh`, under
//!   a temp dir, with sasldb users and an admin that can act for them.
//! - [`Smtpd`]: Debian's OpenSMTPD accepting any address into one Maildir.
//! - [`Bind`]: BIND 9 authoritative for test zones, with TSIG-signed updates.
//! - [`Postgres`]: a PostgreSQL cluster in a temp dir, for the fleet's store.

pub mod bind;
pub mod cyrus;
mod dovecot;
pub mod postgres;
pub mod smtp;

pub use bind::Bind;
pub use cyrus::{Cyrus, CyrusOptions};
pub use dovecot::{Dovecot, DovecotOptions, OAuth2Check};
pub use postgres::Postgres;
pub use smtp::Smtpd;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bound to :0, then released).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls until `port` on 127.0.0.1 accepts a connection, `alive` says the
/// server died, or `limit` passes.
pub(crate) fn wait_for_port(
    port: u16,
    limit: Duration,
    mut alive: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("127.0.0.1:{port} did not accept connections within {limit:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM to `child` by pid, then SIGKILL if it has not exited after `grace`.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = child.wait();
}
