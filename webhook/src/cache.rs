//! A stale-while-revalidate layer over moka. moka coalesces concurrent misses
//! (`try_get_with`) but has no notion of "serve the old value while one task
//! refreshes it"; that small part is written here.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::metrics::Metrics;
use crate::registry::RegistryError;

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

/// A cache of values that change over time (tag → digest, referrer lists).
#[derive(Clone)]
pub struct SwrCache<V: Clone + Send + Sync + 'static> {
    name: &'static str,
    inner: Cache<String, Stamped<V>>,
    refreshing: Cache<String, ()>,
    metrics: Arc<Metrics>,
}

/// Bytes an entry is weighed at: its own plus moka's per-entry overhead.
pub fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

/// What moka and the key's allocation cost per entry beyond the value
/// (measured order of magnitude; errs high so the bound holds).
pub const ENTRY_OVERHEAD: usize = 160;

impl<V: Clone + Send + Sync + 'static> SwrCache<V> {
    /// At most `max_bytes` (as weighed by `bytes_of`), each entry kept at most
    /// `max_stale` after it was fetched.
    pub fn new(
        name: &'static str,
        max_bytes: u64,
        max_stale: Duration,
        bytes_of: fn(&V) -> usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        SwrCache {
            name,
            inner: Cache::builder()
                .weigher(move |k: &String, v: &Stamped<V>| weight(k.len() + bytes_of(&v.value)))
                .max_capacity(max_bytes)
                .time_to_live(max_stale)
                .build(),
            refreshing: Cache::builder()
                .weigher(|k: &String, _: &()| weight(k.len()))
                .max_capacity((max_bytes / 8).max(64 * 1024))
                .time_to_live(Duration::from_secs(60))
                .build(),
            metrics,
        }
    }

    /// The value for `key`: fresh from the cache; stale from the cache while
    /// one background refresh runs; or fetched, with concurrent callers for
    /// the same key sharing one fetch. Errors are not cached.
    pub async fn get_with<F, Fut>(&self, key: String, fetch: F) -> Result<V, Arc<RegistryError>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(V, Freshness), RegistryError>> + Send + 'static,
    {
        if let Some(entry) = self.inner.get(&key).await {
            if entry.fresh_until > Instant::now() {
                self.metrics.cache(self.name, "hit");
                return Ok(entry.value);
            }
            if entry.serve_stale {
                self.metrics.cache(self.name, "stale");
                // `is_fresh` is true for exactly one caller: one refresh per key.
                let first = self
                    .refreshing
                    .entry(key.clone())
                    .or_insert(())
                    .await
                    .is_fresh();
                if first {
                    let inner = self.inner.clone();
                    let refreshing = self.refreshing.clone();
                    tokio::spawn(async move {
                        if let Ok((value, f)) = fetch().await {
                            inner.insert(key.clone(), stamp(value, f)).await;
                        }
                        refreshing.invalidate(&key).await;
                    });
                }
                return Ok(entry.value);
            }
            self.inner.invalidate(&key).await;
        }
        self.metrics.cache(self.name, "miss");
        self.inner
            .try_get_with(key, async move { fetch().await.map(|(v, f)| stamp(v, f)) })
            .await
            .map(|s| s.value)
    }
}

fn stamp<V>(value: V, f: Freshness) -> Stamped<V> {
    Stamped {
        value,
        fresh_until: Instant::now() + f.ttl,
        serve_stale: f.serve_stale,
    }
}
