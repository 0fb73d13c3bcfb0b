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

pub mod flags;
pub mod layout;
pub mod session;
pub mod uidlist;

pub use session::{MaildirSession, open};

use std::fs::File;
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

/// Replaces `path` with `contents` atomically: temporary file, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> crate::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.mailferry-tmp.{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    sync_dir(dir)
}
