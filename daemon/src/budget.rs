//! The daemon-wide allowance of message bytes held in memory: copies,
//! settling, adoption, verify passes and `batch plan` all fetch within it.

use ferry_connectors::ItemMeta;
use ferry_connectors::index::Allowance;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Bytes in KiB units. A fetch group holds its size (capped at the whole
/// allowance, so one huge item still fits) from before its FETCH until its
/// bytes are written or digested.
pub struct Budget {
    kib: Semaphore,
    total: u32,
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        let total = (bytes / 1024).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Budget {
            kib: Semaphore::new(total as usize),
            total,
        }
    }

    /// Waits until `items` fit, and holds their bytes until the guard drops.
    pub async fn hold(&self, items: &[ItemMeta]) -> SemaphorePermit<'_> {
        let bytes: u64 = items.iter().map(|m| m.size).sum();
        let kib = (bytes.div_ceil(1024)).clamp(1, u64::from(self.total)) as u32;
        self.kib.acquire_many(kib).await.expect("never closed")
    }

    /// KiB free now.
    pub fn available(&self) -> usize {
        self.kib.available_permits()
    }
}

impl Allowance for Budget {
    type Held<'a> = SemaphorePermit<'a>;

    fn hold(&self, items: &[ItemMeta]) -> impl Future<Output = Self::Held<'_>> + Send {
        Budget::hold(self, items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> ItemMeta {
        ItemMeta {
            uid: 1,
            size,
            flags: Vec::new(),
            internal_date: None,
            modseq: None,
            refused: None,
        }
    }

    #[tokio::test]
    async fn a_pairing_fetch_holds_its_bytes_until_done() {
        let b = Budget::new(100 * 1024);
        let held = Allowance::hold(&b, &[meta(30 * 1024), meta(10 * 1024 + 1)]).await;
        assert_eq!(b.available(), 100 - 41);
        // One item larger than the whole allowance still fits, alone.
        drop(held);
        let whole = Allowance::hold(&b, &[meta(1 << 30)]).await;
        assert_eq!(b.available(), 0);
        let one = [meta(1)];
        let waiting = Allowance::hold(&b, &one);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(whole);
        let _small = waiting.await;
        assert_eq!(b.available(), 99);
    }
}
