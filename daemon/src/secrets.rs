//! Secrets (passwords, tokens) kept apart from the event log.
//!
//! Each secret is a file `DATA_DIR/secrets/<id>` holding a random nonce and
//! the XChaCha20-Poly1305 ciphertext, bound to its id. The key is a file of
//! its own (mode 0600), created on first start. Events hold only the id
//! ([`SecretRef`]), so no export of the log can carry a secret.
//!
//! With the event log in PostgreSQL, the sealed secrets live in the store's
//! `ferry_secrets` table instead, so every worker of a fleet reads them with
//! the key file they all hold; a worker whose key does not open the fleet's
//! key-check secret refuses to start.
//!
//! A lost key is never replaced while secrets need it: ferryd refuses to
//! start, naming the key file. Secrets nothing refers to any more (a deleted
//! batch's passwords, a command that failed half-way) are removed.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload, rand_core::RngCore};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ferry_events::SecretRef;

const NONCE: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {0} must hold exactly 32 bytes")]
    BadKey(PathBuf),
    #[error("key file {0} is readable by others; make it mode 0600")]
    OpenKey(PathBuf),
    #[error("secret {0} is missing")]
    Missing(String),
    #[error("secret {0} does not decrypt with this key (wrong key file or a damaged secret)")]
    Undecryptable(String),
    #[error(
        "key file {key} is missing and {count} stored secrets in {dir} cannot be opened without it: \
         restore the key file, or move {dir} away to start without those secrets"
    )]
    LostKey {
        key: PathBuf,
        dir: PathBuf,
        count: usize,
    },
    #[error(
        "key file {0} does not open the fleet's secrets in the shared store: \
         give this worker the key file the other workers use"
    )]
    WrongFleetKey(PathBuf),
    #[error("secrets in the shared store: {0}")]
    Shared(#[from] ferry_events::StoreError),
}

/// Where sealed secrets are kept.
enum Backend {
    /// One file per secret under the data directory.
    Dir(PathBuf),
    /// The fleet's table beside the PostgreSQL event log.
    Shared(Box<ferry_pgstore::PgSecrets>),
}

/// The id of the secret that proves a worker holds the fleet's key.
const KEY_CHECK: &str = "key-check";

pub struct SecretStore {
    backend: Backend,
    cipher: XChaCha20Poly1305,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SecretError + 'a {
    move |source| SecretError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl SecretStore {
    /// Opens the store under `dir`, creating it and the key file when absent;
    /// a missing key file while secrets are stored is an error.
    pub fn open(dir: &Path, key_file: &Path) -> Result<SecretStore, SecretError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("creating", dir))?;
        let count = || Ok(stored(dir)?.len() as u64);
        let cipher = load_key(key_file, count, dir)?;
        Ok(SecretStore {
            backend: Backend::Dir(dir.to_path_buf()),
            cipher,
        })
    }

    /// Opens the fleet's secrets in the shared store. The key file is made
    /// only while the table is empty; the first worker's key is then the
    /// fleet's, and a worker whose key does not open the key check refuses.
    pub fn open_shared(
        table: ferry_pgstore::PgSecrets,
        key_file: &Path,
    ) -> Result<SecretStore, SecretError> {
        let count = || Ok(table.count()?);
        let cipher = load_key(key_file, count, Path::new("the shared store"))?;
        let fleet = table.put_first(KEY_CHECK, &seal(&cipher, KEY_CHECK, KEY_CHECK))?;
        if open_sealed(&cipher, KEY_CHECK, &fleet).is_err() {
            return Err(SecretError::WrongFleetKey(key_file.to_path_buf()));
        }
        Ok(SecretStore {
            backend: Backend::Shared(Box::new(table)),
            cipher,
        })
    }

    /// Stores `secret` and returns the reference events may carry.
    pub fn put(&self, secret: &str) -> Result<SecretRef, SecretError> {
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let id = format!("sec-{}", hex::encode(id));
        let bytes = seal(&self.cipher, &id, secret);
        match &self.backend {
            Backend::Dir(dir) => write_private(&dir.join(&id), &bytes)?,
            Backend::Shared(table) => table.put(&id, &bytes)?,
        }
        Ok(SecretRef(id))
    }

    pub fn get(&self, r: &SecretRef) -> Result<String, SecretError> {
        if r.0.contains('/') || r.0.starts_with('.') {
            return Err(SecretError::Missing(r.0.clone()));
        }
        let bytes = match &self.backend {
            Backend::Dir(dir) => {
                let path = dir.join(&r.0);
                match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(SecretError::Missing(r.0.clone()));
                    }
                    Err(e) => return Err(io("reading", &path)(e)),
                }
            }
            Backend::Shared(table) => table
                .get(&r.0)?
                .ok_or_else(|| SecretError::Missing(r.0.clone()))?,
        };
        open_sealed(&self.cipher, &r.0, &bytes)
    }

    /// Removes a secret nothing refers to any more (a refused command's).
    pub fn remove(&self, r: &SecretRef) {
        match &self.backend {
            Backend::Dir(dir) => {
                let _ = std::fs::remove_file(dir.join(&r.0));
            }
            Backend::Shared(table) => {
                if let Err(e) = table.remove(&r.0) {
                    tracing::warn!("secret {} not removed: {e}", r.0);
                }
            }
        }
    }

    /// Copies every secret under this store's directory into a fleet's
    /// table, sealed as they are (the fleet then uses this store's key
    /// file); returns how many.
    pub fn copy_into(&self, table: &ferry_pgstore::PgSecrets) -> Result<usize, SecretError> {
        let Backend::Dir(dir) = &self.backend else {
            return Ok(0);
        };
        let ids = stored(dir)?;
        for id in &ids {
            let path = dir.join(id);
            let sealed = std::fs::read(&path).map_err(io("reading", &path))?;
            table.put(id, &sealed)?;
        }
        Ok(ids.len())
    }

    /// Removes every stored secret whose id is not in `keep`; returns how
    /// many. Only while no command can be storing one (at start), so never
    /// in a fleet's shared table, where another worker may be storing one.
    pub fn sweep(&self, keep: &HashSet<String>) -> Result<usize, SecretError> {
        let Backend::Dir(dir) = &self.backend else {
            return Ok(0);
        };
        let mut removed = 0;
        for id in stored(dir)? {
            if !keep.contains(&id) {
                self.remove(&SecretRef(id));
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Nonce, then the ciphertext of `secret` bound to `id`.
fn seal(cipher: &XChaCha20Poly1305, id: &str, secret: &str) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: secret.as_bytes(),
                aad: id.as_bytes(),
            },
        )
        .expect("encryption in memory cannot fail");
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    bytes
}

fn open_sealed(cipher: &XChaCha20Poly1305, id: &str, bytes: &[u8]) -> Result<String, SecretError> {
    if bytes.len() < NONCE {
        return Err(SecretError::Undecryptable(id.to_string()));
    }
    let plain = cipher
        .decrypt(
            XNonce::from_slice(&bytes[..NONCE]),
            Payload {
                msg: &bytes[NONCE..],
                aad: id.as_bytes(),
            },
        )
        .map_err(|_| SecretError::Undecryptable(id.to_string()))?;
    String::from_utf8(plain).map_err(|_| SecretError::Undecryptable(id.to_string()))
}

/// Reads the key file, or makes one when no stored secret needs the old
/// key (`count` tells how many are stored, `place` where).
fn load_key(
    key_file: &Path,
    count: impl FnOnce() -> Result<u64, SecretError>,
    place: &Path,
) -> Result<XChaCha20Poly1305, SecretError> {
    let key = match std::fs::read(key_file) {
        Ok(k) => {
            let mode = std::fs::metadata(key_file)
                .map_err(io("reading", key_file))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(SecretError::OpenKey(key_file.to_path_buf()));
            }
            k
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let count = count()?;
            if count > 0 {
                return Err(SecretError::LostKey {
                    key: key_file.to_path_buf(),
                    dir: place.to_path_buf(),
                    count: count as usize,
                });
            }
            let key = XChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
            write_private(key_file, &key)?;
            key
        }
        Err(e) => return Err(io("reading", key_file)(e)),
    };
    XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::BadKey(key_file.to_path_buf()))
}

/// The ids of the secrets stored in `dir`.
fn stored(dir: &Path) -> Result<Vec<String>, SecretError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let name = entry.map_err(io("listing", dir))?.file_name();
        if let Some(name) = name.to_str()
            && name.starts_with("sec-")
            && !name.ends_with(".tmp")
        {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// The secrets a batch refers to: its mailboxes' passwords and its webhook.
pub fn of_batch(
    views: &ferry_projections::Projections,
    batch: &ferry_projections::BatchView,
) -> Vec<SecretRef> {
    let mailboxes = batch
        .mailboxes
        .iter()
        .filter_map(|a| views.mailboxes.get(a))
        .flat_map(|m| [&m.spec.source_secret, &m.spec.destination_secret]);
    mailboxes
        .chain([&batch.notify.webhook])
        .flatten()
        .cloned()
        .collect()
}

/// Every secret the views refer to: endpoints' admin passwords and
/// application credentials, mailboxes' passwords, batches' webhooks and
/// the webhooks of reports still owed.
pub fn referenced(views: &ferry_projections::Projections) -> HashSet<String> {
    let endpoints = views.endpoints.values().map(|e| &e.spec.admin_secret);
    let mailboxes = views
        .mailboxes
        .values()
        .flat_map(|m| [&m.spec.source_secret, &m.spec.destination_secret]);
    let webhooks = views.batches.values().map(|b| &b.notify.webhook);
    let owed = views.notices.owed.iter().map(|n| &n.webhook);
    let sign_ins = views
        .endpoints
        .values()
        .flat_map(|e| e.graph.iter().flat_map(|g| g.credential.secrets()));
    endpoints
        .chain(mailboxes)
        .chain(webhooks)
        .chain(owed)
        .flatten()
        .map(|r| r.0.clone())
        .chain(sign_ins.map(|r| r.0))
        .collect()
}

/// Writes a file readable only by this user, durably (temp, fsync, rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", path))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_encrypted_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        let store = SecretStore::open(&dir.path().join("s"), &key).unwrap();
        let r = store.put("hunter2-päss").unwrap();
        assert_eq!(store.get(&r).unwrap(), "hunter2-päss");
        let on_disk = std::fs::read(dir.path().join("s").join(&r.0)).unwrap();
        assert!(!on_disk.windows(7).any(|w| w == b"hunter2"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Reopened with the same key it still reads; with another key it does not.
        let again = SecretStore::open(&dir.path().join("s"), &key).unwrap();
        assert_eq!(again.get(&r).unwrap(), "hunter2-päss");
        let other_key = dir.path().join("other.key");
        write_private(&other_key, &[9u8; 32]).unwrap();
        let other = SecretStore::open(&dir.path().join("s"), &other_key).unwrap();
        assert!(matches!(other.get(&r), Err(SecretError::Undecryptable(_))));
        assert!(matches!(
            store.get(&SecretRef("sec-none".into())),
            Err(SecretError::Missing(_))
        ));
        assert!(matches!(
            store.get(&SecretRef("../secret.key".into())),
            Err(SecretError::Missing(_))
        ));
    }

    #[test]
    fn a_lost_key_is_not_replaced_while_secrets_need_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        let store = SecretStore::open(&dir.path().join("s"), &key).unwrap();
        let kept = store.put("a").unwrap();
        store.put("b").unwrap();
        std::fs::remove_file(&key).unwrap();
        let err = SecretStore::open(&dir.path().join("s"), &key)
            .err()
            .unwrap();
        assert!(
            matches!(err, SecretError::LostKey { count: 2, .. }),
            "{err}"
        );
        assert!(!key.exists());

        let keep = HashSet::from([kept.0.clone()]);
        assert_eq!(store.sweep(&keep).unwrap(), 1);
        assert_eq!(stored(&dir.path().join("s")).unwrap(), vec![kept.0]);
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, [7u8; 32]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretStore::open(&dir.path().join("s"), &key),
            Err(SecretError::OpenKey(_))
        ));
    }
}
