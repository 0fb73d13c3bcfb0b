//! A local Maildir++ tree, laid out as Dovecot's `maildir:~/Maildir` does,
//! so a mailbox we write can be served by Dovecot and one Dovecot wrote can
//! be read by us.
//!
//! - [`layout`]: the root is INBOX; other folders are `.Parent.Child`
//!   directories with each segment in modified UTF-7; the `subscriptions` file;
//! - [`flags`]: the `:2,` info part of file names (system flags D F R S T,
//!   keywords as letters a–z through the folder's `dovecot-keywords` file);
//! - [`uidlist`]: our own per-folder `mailferry-uidlist`, which gives files
//!   stable UIDs across sessions;
//! - [`session`]: [`MaildirSession`], the [`MailSession`](crate::MailSession)
//!   over all of it.
//!
//! Writes are crash-safe: a message is written and fsynced in `tmp/`, its
//! UID is fsynced into the uidlist, then it is renamed into `cur/` and the
//! directory is fsynced; metadata files are replaced by rename.
//!
//! The tree belongs to the mailbox's owner, who may plant symlinks, FIFOs or
//! odd names in it: every file is opened without following a symlink and
//! read only when it is a regular file; temporary files get names nobody can
//! guess and are created only when absent. A source tree is never written:
//! its UIDs are kept in a directory the caller names ([`open_source`]).

pub mod flags;
pub mod layout;
pub mod session;
pub mod uidlist;

pub use session::{MaildirSession, open, open_source};

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::ConnectorError;

/// Maps an I/O error to [`ConnectorError::LocalIo`] naming the path.
pub(crate) fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ConnectorError {
    let path = path.to_path_buf();
    move |source| ConnectorError::LocalIo { op, path, source }
}

/// Fsyncs a directory, so a rename or create inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> crate::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Opens `path` for reading only if it is a regular file, never through a
/// symlink (`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`).
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular("a symbolic link"),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(describe(kind)));
    }
    Ok(file)
}

/// What a non-regular file is, for a skip reason.
pub(crate) fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a regular file"
    }
}

fn not_regular(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file but {what}"),
    )
}

/// Reads at most `cap` bytes of `file`: `Err(n)` when it holds more, `n`
/// being a lower bound of its size. Never trusts the size `stat` gives.
pub(crate) fn read_capped(file: File, cap: u64) -> std::io::Result<Result<Vec<u8>, u64>> {
    let hint = file.metadata().map_or(0, |m| m.len()).min(cap);
    let mut body = Vec::with_capacity(hint as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut body)?;
    Ok(if body.len() as u64 > cap {
        Err(body.len() as u64)
    } else {
        Ok(body)
    })
}

/// Metadata files (uidlists, keywords, subscriptions) are small; more than
/// this is not one of ours.
const META_CAP: u64 = 64 << 20;

/// A metadata file's bytes; `None` when it does not exist.
pub(crate) fn read_meta(path: &Path) -> crate::Result<Option<Vec<u8>>> {
    let file = match open_regular(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    match read_capped(file, META_CAP).map_err(io_err("read", path))? {
        Ok(bytes) => Ok(Some(bytes)),
        Err(_) => Err(io_err("read", path)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("over {META_CAP} bytes"),
        ))),
    }
}

/// Creates a file that did not exist, never through a symlink; mode 0600.
pub(crate) fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens an existing regular file to append to it, never through a symlink.
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(describe(kind)));
    }
    Ok(file)
}

/// Replaces `path` with `contents` atomically: a new temporary file under a
/// random name, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> crate::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{file_name}.mailferry-tmp.{:016x}",
        rand::random::<u64>()
    ));
    let mut file = create_new(&tmp).map_err(io_err("create", &tmp))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", &tmp));
    drop(file);
    if let Err(e) = written
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_err("rename into place", path)))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}
