//! Walking a folder a page of metadata at a time, so no folder is ever
//! listed into memory whole.

use std::collections::HashSet;

use crate::{ItemMeta, MailSession, Result};

/// Items per page of metadata.
pub const PAGE: usize = 1000;

/// A cursor over the open folder's items.
pub struct Pages {
    next: Option<u32>,
}

impl Pages {
    pub fn from(uid: u32) -> Self {
        Pages {
            next: Some(uid.max(1)),
        }
    }

    /// The next page, or `None` past the last item.
    pub async fn next(&mut self, s: &mut dyn MailSession) -> Result<Option<Vec<ItemMeta>>> {
        let Some(from) = self.next else {
            return Ok(None);
        };
        let page = s.list_items(from, PAGE).await?;
        self.next = page.last().and_then(|m| m.uid.checked_add(1));
        Ok(Some(page).filter(|p| !p.is_empty()))
    }
}

/// Metadata of specific UIDs in the session's open folder.
pub async fn metas_in(s: &mut dyn MailSession, uids: &[u32]) -> Result<Vec<ItemMeta>> {
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    let mut out = Vec::new();
    let (Some(min), Some(max)) = (uids.iter().min(), uids.iter().max()) else {
        return Ok(out);
    };
    let mut pages = Pages::from(*min);
    while let Some(page) = pages.next(s).await? {
        let past = page.last().is_some_and(|m| m.uid >= *max);
        out.extend(page.into_iter().filter(|m| wanted.contains(&m.uid)));
        if past {
            break;
        }
    }
    Ok(out)
}

/// Items and bytes in the open folder.
pub async fn count(s: &mut dyn MailSession) -> Result<(u64, u64)> {
    let (mut items, mut bytes) = (0u64, 0u64);
    let mut pages = Pages::from(1);
    while let Some(page) = pages.next(s).await? {
        items += page.len() as u64;
        bytes += page.iter().map(|m| m.size).sum::<u64>();
    }
    Ok((items, bytes))
}

/// Splits items into fetch groups bounded by count and bytes in flight.
pub fn groups(metas: Vec<ItemMeta>, max_count: usize, max_bytes: u64) -> Vec<Vec<ItemMeta>> {
    let mut out: Vec<Vec<ItemMeta>> = Vec::new();
    let mut bytes = 0u64;
    for m in metas {
        let start_new = match out.last() {
            None => true,
            Some(g) => g.len() >= max_count || bytes + m.size > max_bytes,
        };
        if start_new {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += m.size;
        out.last_mut().expect("just pushed").push(m);
    }
    out
}
