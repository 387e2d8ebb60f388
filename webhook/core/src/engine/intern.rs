//! Vulnerability IDs interned process-wide: a summary keeps a `u32` handle
//! per finding instead of a string, and a rule keeps handles for the IDs it
//! ignores or forbids, so the engine compares integers.
//!
//! Entries are counted: each summary holds one reference per distinct ID it
//! contains, each rule one per ID it names. When the last reference goes (a
//! summary evicted from a cache and dropped, a rule replaced), the string is
//! freed and its handle reused: the table is pruned with the caches.
//!
//! The table is bounded for what summaries add ([`Interner::set_max_bytes`],
//! part of `--cache-max-bytes`): a summary whose new IDs do not fit keeps
//! those IDs itself, where its cache entry pays for them. IDs named by
//! rules are always interned (rules are written by administrators and their
//! size is bounded elsewhere). Bytes are estimated per entry as the string
//! plus [`ENTRY_OVERHEAD`].

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What one entry costs beyond its text: the string's allocation header and
/// rounding, the map's bucket and the slot (measured order of magnitude;
/// errs high).
pub const ENTRY_OVERHEAD: usize = 112;

/// Handles at or above this are a summary's own IDs (`LOCAL | index`).
pub(crate) const LOCAL: u32 = 1 << 31;

/// The process-wide table of vulnerability IDs.
#[derive(Debug, Default)]
pub struct Interner {
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<Arc<str>, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Estimated bytes of every live entry.
    bytes: usize,
    /// Bound on `bytes` for entries summaries add (`None`: unbounded).
    max_bytes: Option<usize>,
}

#[derive(Debug, Default)]
struct Slot {
    text: Option<Arc<str>>,
    refs: u32,
}

/// How much the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternerStats {
    /// Live entries.
    pub entries: usize,
    /// Their estimated bytes.
    pub bytes: usize,
}

fn cost(text: &str) -> usize {
    text.len() + ENTRY_OVERHEAD
}

impl Interner {
    /// The process-wide table.
    pub fn global() -> &'static Interner {
        static GLOBAL: OnceLock<Interner> = OnceLock::new();
        GLOBAL.get_or_init(Interner::default)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        // A poisoned table still holds consistent entries: every update
        // completes before it can panic.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bounds what summaries may add (`None`: unbounded, the default).
    pub fn set_max_bytes(&self, max: Option<usize>) {
        self.write().max_bytes = max;
    }

    /// Entries and estimated bytes held.
    pub fn stats(&self) -> InternerStats {
        let t = self.read();
        InternerStats {
            entries: t.map.len(),
            bytes: t.bytes,
        }
    }

    /// The handle of `text`, if interned.
    pub fn lookup(&self, text: &str) -> Option<u32> {
        self.read().map.get(text).copied()
    }

    /// The text of a handle (an empty string for a handle no longer held,
    /// which a caller holding a reference never sees).
    pub fn resolve(&self, handle: u32) -> Arc<str> {
        self.read().text(handle)
    }

    /// The texts of `handles`, under one read of the table (a CVE list of a
    /// warning is up to ten IDs; a lock per ID was most of its cost).
    pub fn resolve_all(&self, handles: impl Iterator<Item = u32>) -> Vec<Arc<str>> {
        let t = self.read();
        handles.map(|h| t.text(h)).collect()
    }

    /// One reference to `text`, interned whatever the bound (rules).
    pub fn pin(&self, text: &str) -> u32 {
        let mut t = self.write();
        t.acquire(text, true).unwrap_or(0)
    }

    /// References to distinct `texts` for a summary: each is an interned
    /// handle, or `LOCAL | i` for `texts[i]` when the bound leaves no room
    /// (the caller keeps that text itself).
    pub(crate) fn acquire_all<'a>(&self, texts: impl Iterator<Item = &'a str>) -> Vec<u32> {
        let mut t = self.write();
        texts
            .enumerate()
            .map(|(i, text)| {
                t.acquire(text, false)
                    .unwrap_or(LOCAL | u32::try_from(i).unwrap_or(LOCAL - 1))
            })
            .collect()
    }

    /// One more reference per handle (local handles are ignored).
    pub(crate) fn retain_all(&self, handles: impl Iterator<Item = u32>) {
        let mut t = self.write();
        for h in handles {
            if let Some(slot) = t.slots.get_mut(h as usize)
                && slot.text.is_some()
            {
                slot.refs = slot.refs.saturating_add(1);
            }
        }
    }

    /// Gives back one reference per handle (local handles are ignored).
    pub(crate) fn release_all(&self, handles: impl Iterator<Item = u32>) {
        let mut t = self.write();
        for h in handles {
            t.release(h);
        }
    }

    /// Gives back one reference.
    pub fn unpin(&self, handle: u32) {
        self.write().release(handle);
    }
}

impl Table {
    /// The text of `handle` (empty for a handle no longer held).
    fn text(&self, handle: u32) -> Arc<str> {
        self.slots
            .get(handle as usize)
            .and_then(|s| s.text.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    fn acquire(&mut self, text: &str, always: bool) -> Option<u32> {
        if let Some(&h) = self.map.get(text) {
            if let Some(slot) = self.slots.get_mut(h as usize) {
                slot.refs = slot.refs.saturating_add(1);
            }
            return Some(h);
        }
        let c = cost(text);
        if !always && self.max_bytes.is_some_and(|max| self.bytes + c > max) {
            return None;
        }
        let handle = match self.free.pop() {
            Some(h) => h,
            None => {
                let h = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|h| *h < LOCAL)?;
                self.slots.push(Slot::default());
                h
            }
        };
        let text: Arc<str> = Arc::from(text);
        self.slots[handle as usize] = Slot {
            text: Some(text.clone()),
            refs: 1,
        };
        self.map.insert(text, handle);
        self.bytes += c;
        Some(handle)
    }

    fn release(&mut self, handle: u32) {
        if handle >= LOCAL {
            return;
        }
        let Some(slot) = self.slots.get_mut(handle as usize) else {
            return;
        };
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs > 0 {
            return;
        }
        if let Some(text) = slot.text.take() {
            self.bytes = self.bytes.saturating_sub(cost(&text));
            self.map.remove(&*text);
            self.free.push(handle);
        }
    }
}

/// A vulnerability ID a rule names, held in the process-wide table for the
/// rule's lifetime.
#[derive(Debug)]
pub struct Pinned {
    handle: u32,
    text: Arc<str>,
}

impl Pinned {
    /// Pins `text`.
    pub fn new(text: &str) -> Self {
        let handle = Interner::global().pin(text);
        Pinned {
            handle,
            text: Arc::from(text),
        }
    }

    /// The handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The text.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl Clone for Pinned {
    fn clone(&self) -> Self {
        Pinned::new(&self.text)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        Interner::global().unpin(self.handle);
    }
}

impl std::ops::Deref for Pinned {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Pinned {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Pinned {}

impl PartialOrd for Pinned {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pinned {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}
