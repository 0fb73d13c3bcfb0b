//! A throwaway OpenSMTPD (`smtpd -d -f FILE`) that accepts mail for any
//! address on 127.0.0.1 and delivers it into one Maildir.
//!
//! OpenSMTPD allows one instance per machine (its control socket and queue
//! are fixed paths), so a handle holds an exclusive lock on a file for its
//! life: tests that need SMTP take turns, across test processes too. It runs
//! as root (CI does), delivering as the package's `opensmtpd` user. Dropping
//! the handle sends SIGTERM to its process group by pid and removes the dir.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, wait_for_port};

const SMTPD: &str = "/usr/sbin/smtpd";
const LOCK: &str = "/tmp/ferry-testservers-smtpd.lock";
/// The user Debian's opensmtpd package creates for local delivery.
const MAIL_USER: &str = "opensmtpd";

/// A running OpenSMTPD; stopped and deleted on drop.
#[derive(Debug)]
pub struct Smtpd {
    child: Child,
    dir: TempDir,
    port: u16,
    _lock: fs::File,
}

impl Smtpd {
    /// Starts OpenSMTPD on a free port of 127.0.0.1 (waits for its turn).
    pub fn start() -> io::Result<Smtpd> {
        if !Path::new(SMTPD).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{SMTPD} is missing: install Debian's opensmtpd (scripts/test.sh does)"),
            ));
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&lock) {
                Ok((child, dir, port)) => {
                    return Ok(Smtpd {
                        child,
                        dir,
                        port,
                        _lock: lock,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("smtpd did not start")))
    }

    fn try_start(_lock: &fs::File) -> io::Result<(Child, TempDir, u16)> {
        let dir = tempfile::Builder::new().prefix("ferry-smtpd").tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let maildir = dir.path().join("Maildir");
        for sub in ["", "new", "cur", "tmp"] {
            fs::create_dir_all(maildir.join(sub))?;
        }
        let (uid, gid) = user_ids(MAIL_USER)?;
        for sub in ["", "new", "cur", "tmp"] {
            chown(maildir.join(sub), Some(uid), Some(gid))?;
        }
        fs::write(dir.path().join("virtual"), format!("@ {MAIL_USER}\n"))?;
        let port = free_port()?;
        let config = dir.path().join("smtpd.conf");
        fs::write(
            &config,
            format!(
                "table vusers file:{virt}\n\
                 listen on 127.0.0.1 port {port}\n\
                 action \"keep\" maildir \"{maildir}\" virtual <vusers>\n\
                 match from any for any action \"keep\"\n",
                virt = dir.path().join("virtual").display(),
                maildir = maildir.display(),
            ),
        )?;
        let log = fs::File::create(dir.path().join("smtpd.log"))?;
        let mut child = Command::new(SMTPD)
            .arg("-d")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group, so that Drop also reaches the workers it forks.
            .process_group(0)
            .spawn()?;
        let log_path = dir.path().join("smtpd.log");
        let started = wait_for_port(port, Duration::from_secs(10), || {
            match child.try_wait()? {
                Some(status) => Err(io::Error::other(format!(
                    "smtpd exited ({status}): {}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                ))),
                None => Ok(()),
            }
        });
        if let Err(e) = started {
            stop(&mut child);
            return Err(e);
        }
        Ok((child, dir, port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// The server's own log (connections, deliveries).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("smtpd.log")).unwrap_or_default()
    }

    /// The delivered messages, oldest first.
    pub fn messages(&self) -> io::Result<Vec<String>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            for e in fs::read_dir(self.maildir().join(sub))? {
                let e = e?;
                files.push((e.metadata()?.modified()?, e.path()));
            }
        }
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| fs::read_to_string(p))
            .collect()
    }

    /// Waits until at least `n` messages are delivered, or `limit` passes.
    pub fn wait_for_messages(&self, n: usize, limit: Duration) -> io::Result<Vec<String>> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.messages()?;
            if got.len() >= n || Instant::now() >= deadline {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: signalling the process group of a child we spawned.
    unsafe {
        libc::kill(-pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; the leader has not exited, so the group is still ours.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

fn user_ids(name: &str) -> io::Result<(u32, u32)> {
    let c = std::ffi::CString::new(name).expect("no NUL in a user name");
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no user {name}: install Debian's opensmtpd"),
        ));
    }
    unsafe { Ok(((*pw).pw_uid, (*pw).pw_gid)) }
}
