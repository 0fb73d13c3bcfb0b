//! The fleet's secrets table: sealed bytes by id, shared by every worker.
//!
//! The table holds only what the daemon sealed with its key file (nonce and
//! ciphertext); PostgreSQL never sees a secret in the clear.

use ferry_events::StoreError;

use crate::threads::{self, Reader};

/// Sealed secrets in the store's database.
pub struct PgSecrets {
    reader: Reader,
}

impl PgSecrets {
    /// A reader of its own on the store's database, whose tables the store
    /// made when it opened.
    pub(crate) fn start(config: postgres::Config, at: String) -> Result<PgSecrets, StoreError> {
        Ok(PgSecrets {
            reader: threads::start_reader(config, at)?,
        })
    }

    /// Stores `sealed` under `id`, replacing what was there.
    pub fn put(&self, id: &str, sealed: &[u8]) -> Result<(), StoreError> {
        let (id, sealed) = (id.to_string(), sealed.to_vec());
        self.reader.call(move |c| {
            c.execute(
                "INSERT INTO ferry_secrets (id, sealed) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET sealed = EXCLUDED.sealed",
                &[&id, &sealed],
            )
            .map(drop)
        })
    }

    /// Stores `sealed` under `id` unless something is there already; returns
    /// what the table holds afterwards (the first writer's bytes win).
    pub fn put_first(&self, id: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (id, sealed) = (id.to_string(), sealed.to_vec());
        self.reader.call(move |c| {
            c.execute(
                "INSERT INTO ferry_secrets (id, sealed) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, &sealed],
            )?;
            let row = c.query_one("SELECT sealed FROM ferry_secrets WHERE id = $1", &[&id])?;
            Ok(row.get(0))
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_string();
        self.reader.call(move |c| {
            let row = c.query_opt("SELECT sealed FROM ferry_secrets WHERE id = $1", &[&id])?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.reader.call(move |c| {
            c.execute("DELETE FROM ferry_secrets WHERE id = $1", &[&id])
                .map(drop)
        })
    }

    /// How many secrets the table holds.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.reader.call(|c| {
            let row = c.query_one("SELECT count(*) FROM ferry_secrets", &[])?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }
}
