//! A throwaway PostgreSQL cluster (`initdb`, then `postgres -D DIR`) for the
//! fleet and store tests.
//!
//! The cluster lives under one temp dir and listens on 127.0.0.1 only, with
//! its Unix socket inside the dir. PostgreSQL refuses to run as root, so when
//! the tests are root the cluster runs as the `postgres` user (Debian's
//! package makes it), falling back to `nobody`. Trust authentication on
//! loopback: the cluster is the test's alone and gone when it ends.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{free_port, stop_child, wait_for_port};

const STARTUP_LIMIT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running PostgreSQL; stopped by pid (fast shutdown) and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    fsync: bool,
}

/// The directory holding `initdb`, `postgres` and `pg_ctl`: Debian keeps them
/// under `/usr/lib/postgresql/VERSION/bin`; the newest version wins.
pub fn postgres_bin() -> io::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)",
        )
    })
}

impl Postgres {
    /// Creates a cluster and starts it; the database `ferry` exists. It does
    /// not fsync: a test's cluster outlives no machine crash.
    pub fn start() -> io::Result<Postgres> {
        Self::start_with(false)
    }

    /// [`Postgres::start`] with `fsync` as given (on for benchmarks, which
    /// compare against stores that sync).
    pub fn start_with(fsync: bool) -> io::Result<Postgres> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-postgres")
            .tempdir()?;
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(
                user_ids("postgres")
                    .or_else(|| user_ids("nobody"))
                    .ok_or_else(|| {
                        io::Error::other("running as root and no postgres or nobody user")
                    })?,
            )
        } else {
            None
        };
        if let Some((uid, gid)) = owner {
            chown(dir.path(), Some(uid), Some(gid))?;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        }
        let data = dir.path().join("data");
        let out = as_owner(Command::new(bin.join("initdb")), owner)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut pg = Postgres {
            child: None,
            dir,
            bin,
            port: free_port()?,
            owner,
            fsync,
        };
        pg.start_server()?;
        pg.psql_on("postgres", "CREATE DATABASE ferry")?;
        Ok(pg)
    }

    fn start_server(&mut self) -> io::Result<()> {
        let data = self.dir.path().join("data");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        if let Some((uid, gid)) = self.owner {
            chown(self.dir.path().join("server.log"), Some(uid), Some(gid))?;
        }
        let mut child = as_owner(Command::new(self.bin.join("postgres")), self.owner)
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={}", self.port)])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", if self.fsync { "fsync=on" } else { "fsync=off" }])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let started = wait_for_port(self.port, STARTUP_LIMIT, || match child.try_wait()? {
            Some(status) => Err(io::Error::other(format!(
                "postgres exited with {status}; see {}",
                self.dir.path().join("server.log").display()
            ))),
            None => Ok(()),
        });
        if let Err(e) = started {
            stop_child(&mut child, STOP_GRACE);
            return Err(e);
        }
        self.child = Some(child);
        // The port opens before the server accepts sessions.
        let deadline = std::time::Instant::now() + STARTUP_LIMIT;
        loop {
            match self.psql_on("postgres", "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The connection URL of the `ferry` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ferry", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's pid, for tests that signal it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (fast shutdown), keeping the cluster.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            stop_child(&mut child, STOP_GRACE);
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.start_server()
    }

    /// Runs SQL through `psql` on the `ferry` database; the answer unaligned.
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        self.psql_on("ferry", sql)
    }

    fn psql_on(&self, db: &str, sql: &str) -> io::Result<String> {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no psql"))?;
        let out = Command::new(psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", "/");
    }
    cmd
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}
