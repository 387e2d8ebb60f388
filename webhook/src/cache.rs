//! The caches' parts: keys hashed from their parts, weights in bytes,
//! counters, and a stale-while-revalidate layer over moka (the caches
//! themselves are in `registry/lookup.rs`).
//!
//! moka coalesces concurrent misses (`try_get_with`) but has no notion of
//! "serve the old value while one task refreshes it"; that small part is
//! written here.

use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::metrics::{Counter, Metrics};
use crate::registry::RegistryError;

/// A cache key: 128 bits of SipHash-1-3 under a key drawn at random when the
/// process starts, over the key's parts (each with its length, so parts
/// cannot run into each other). Nobody who does not know the process key can
/// aim two names at one entry, and a key costs 16 bytes instead of the
/// hundred or more of its text.
pub type Key = u128;

/// The process-wide hashing key.
fn hasher() -> &'static std::collections::hash_map::RandomState {
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    STATE.get_or_init(std::collections::hash_map::RandomState::new)
}

/// Builds a [`Key`] from parts.
#[derive(Clone)]
pub struct KeyBuilder {
    a: std::hash::DefaultHasher,
    b: std::hash::DefaultHasher,
}

impl KeyBuilder {
    /// A key for cache `kind` (keys of different caches never meet, but
    /// this keeps them apart in any case).
    pub fn new(kind: &str) -> Self {
        let mut a = hasher().build_hasher();
        let mut b = hasher().build_hasher();
        // Two independent outputs of one keyed function: distinct prefixes.
        0u8.hash(&mut a);
        1u8.hash(&mut b);
        let mut k = KeyBuilder { a, b };
        k.push(kind);
        k
    }

    /// Adds a part.
    pub fn push(&mut self, part: &str) -> &mut Self {
        part.hash(&mut self.a);
        part.hash(&mut self.b);
        self
    }

    /// Adds a number.
    pub fn push_u64(&mut self, part: u64) -> &mut Self {
        part.hash(&mut self.a);
        part.hash(&mut self.b);
        self
    }

    /// The key.
    pub fn finish(&self) -> Key {
        (u128::from(self.a.finish()) << 64) | u128::from(self.b.finish())
    }
}

/// Bytes an entry is weighed at: its own plus moka's per-entry overhead.
pub fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

/// What moka costs per entry beyond the key and value: its entry record,
/// access and write order nodes, timer and hash table slot (measured with
/// `bench_memory`: see BENCHMARKS.md; errs high so the bound holds).
pub const ENTRY_OVERHEAD: usize = 160;

#[derive(Clone)]
struct Stamped<V> {
    value: V,
    fresh_until: Instant,
    serve_stale: bool,
}

/// How long a fetched value is fresh, and whether it may be served stale.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Fresh for this long.
    pub ttl: Duration,
    /// After that, served while a refresh runs (else: refetched first).
    pub serve_stale: bool,
}

/// Lookup counters of one cache, resolved once.
#[derive(Clone)]
pub struct Counters {
    hit: Counter,
    stale: Counter,
    miss: Counter,
}

impl Counters {
    /// `portcullis_cache_lookups_total{cache=name}` by result.
    pub fn new(metrics: &Metrics, name: &'static str) -> Self {
        Counters {
            hit: metrics.cache_counter(name, "hit"),
            stale: metrics.cache_counter(name, "stale"),
            miss: metrics.cache_counter(name, "miss"),
        }
    }

    /// A hit.
    pub fn hit(&self) {
        self.hit.inc();
    }

    /// A stale hit.
    pub fn stale(&self) {
        self.stale.inc();
    }

    /// A miss.
    pub fn miss(&self) {
        self.miss.inc();
    }
}

/// A cache of values that change over time (tag → digest, referrer lists).
#[derive(Clone)]
pub struct SwrCache<V: Clone + Send + Sync + 'static> {
    inner: Cache<Key, Stamped<V>>,
    refreshing: Cache<Key, ()>,
    counters: Counters,
}

impl<V: Clone + Send + Sync + 'static> SwrCache<V> {
    /// At most `max_bytes` (as weighed by `bytes_of`), each entry kept at most
    /// `max_stale` after it was fetched.
    pub fn new(
        name: &'static str,
        max_bytes: u64,
        max_stale: Duration,
        bytes_of: fn(&V) -> usize,
        metrics: &Metrics,
    ) -> Self {
        SwrCache {
            inner: Cache::builder()
                .weigher(move |_: &Key, v: &Stamped<V>| weight(16 + bytes_of(&v.value)))
                .max_capacity(max_bytes)
                .time_to_live(max_stale)
                .build(),
            refreshing: Cache::builder()
                .weigher(|_: &Key, _: &()| weight(16))
                .max_capacity((max_bytes / 8).max(64 * 1024))
                .time_to_live(Duration::from_secs(60))
                .build(),
            counters: Counters::new(metrics, name),
        }
    }

    /// The value for `key` and until when it is fresh: fresh from the
    /// cache; stale from the cache while one background refresh runs (unless
    /// `fresh_only`: then a stale value is fetched again first); or fetched,
    /// with concurrent callers for the same key sharing one fetch. Errors are
    /// not cached.
    pub async fn get_with<F, Fut>(
        &self,
        key: Key,
        fresh_only: bool,
        fetch: F,
    ) -> Result<(V, Instant), Arc<RegistryError>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(V, Freshness), RegistryError>> + Send + 'static,
    {
        if let Some(entry) = self.inner.get(&key).await {
            if entry.fresh_until > Instant::now() {
                self.counters.hit();
                return Ok((entry.value, entry.fresh_until));
            }
            if entry.serve_stale && !fresh_only {
                self.counters.stale();
                // `is_fresh` is true for exactly one caller: one refresh per key.
                let first = self.refreshing.entry(key).or_insert(()).await.is_fresh();
                if first {
                    let inner = self.inner.clone();
                    let refreshing = self.refreshing.clone();
                    tokio::spawn(async move {
                        if let Ok((value, f)) = fetch().await {
                            inner.insert(key, stamp(value, f)).await;
                        }
                        refreshing.invalidate(&key).await;
                    });
                }
                return Ok((entry.value, entry.fresh_until));
            }
            self.inner.invalidate(&key).await;
        }
        self.counters.miss();
        self.inner
            .try_get_with(key, async move { fetch().await.map(|(v, f)| stamp(v, f)) })
            .await
            .map(|s| (s.value, s.fresh_until))
    }

    /// Forgets `key` (a value that turned out unusable).
    pub async fn invalidate(&self, key: Key) {
        self.inner.invalidate(&key).await;
    }
}

fn stamp<V>(value: V, f: Freshness) -> Stamped<V> {
    Stamped {
        value,
        fresh_until: Instant::now() + f.ttl,
        serve_stale: f.serve_stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_parts_and_kinds() {
        let k = |kind: &str, parts: &[&str]| {
            let mut b = KeyBuilder::new(kind);
            for p in parts {
                b.push(p);
            }
            b.finish()
        };
        assert_eq!(k("tag", &["a", "b"]), k("tag", &["a", "b"]));
        assert_ne!(k("tag", &["ab", ""]), k("tag", &["a", "b"]));
        assert_ne!(k("tag", &["a"]), k("manifest", &["a"]));
    }
}
