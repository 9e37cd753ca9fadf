//! In-memory cache of signal lookups, so that under load the store receives
//! at most one lookup per signal id per TTL on each instance.
//!
//! Found and unknown ids are cached alike, so a spray of unknown ids does
//! not reach the store more often than real ones. Concurrent misses for one
//! id share a single store query. The cache holds at most `max_entries`
//! ids. When it is full of live entries, lookups of further ids go to the
//! store uncached.
//!
//! A hit clones a record of the same shape whether or not the signal
//! exists (a placeholder carries the requested id), so a cached unknown id
//! costs the same as a cached wrong token.
//! TODO: a hit still returns faster than a miss, so response times can tell
//! whether anyone looked up an id within the last TTL; a busy real signal
//! is usually cached and an unknown id usually is not.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::signal_token::TokenDigest;
use crate::store::SignalRecord;

/// Minimum interval between two warnings that the cache is full.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Maximum interval between two sweeps of expired entries from a full cache.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct SignalCacheSettings {
    /// Time a lookup result is reused; zero turns the cache off.
    pub ttl: Duration,
    /// Maximum number of signal ids cached at once.
    pub max_entries: usize,
}

impl SignalCacheSettings {
    /// Settings with the cache off, for callers that must see every store
    /// change at once.
    pub fn off() -> SignalCacheSettings {
        SignalCacheSettings {
            ttl: Duration::ZERO,
            max_entries: 0,
        }
    }
}

/// Result of one store lookup, with the record or a placeholder of the same
/// shape.
#[derive(Clone)]
struct Lookup {
    record: SignalRecord,
    found: bool,
    /// Time the store query started; the result is at least this recent.
    queried_at: Instant,
}

/// A lookup that is done or still in flight. Waiters on one in flight share
/// its query.
type Slot = Arc<OnceCell<Lookup>>;

struct Entries {
    map: HashMap<String, Slot>,
    last_sweep: Option<Instant>,
    last_full_warning: Option<Instant>,
}

pub struct SignalCache {
    settings: SignalCacheSettings,
    entries: Mutex<Entries>,
}

impl SignalCache {
    pub fn new(settings: SignalCacheSettings) -> SignalCache {
        SignalCache {
            settings,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                last_sweep: None,
                last_full_warning: None,
            }),
        }
    }

    /// Returns the cached lookup of `id` while it is younger than the TTL,
    /// and otherwise runs `query` once for all concurrent callers and caches
    /// its result. Errors are returned to the caller that ran the query and
    /// never cached; a waiter whose query failed runs it again itself.
    pub async fn find<F, Fut, E>(&self, id: &str, query: F) -> Result<Option<SignalRecord>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<SignalRecord>, E>>,
    {
        if self.settings.ttl.is_zero() {
            return query().await;
        }
        let Some(slot) = self.slot(id) else {
            return query().await;
        };

        let lookup = slot
            .get_or_try_init(|| async {
                let queried_at = Instant::now();
                let result = query().await?;
                Ok(Lookup::new(id, result, queried_at))
            })
            .await?;
        let record = lookup.record.clone();
        Ok(lookup.found.then_some(record))
    }

    /// Returns the slot of `id`: a fresh or in-flight one, or a new empty one
    /// in place of a stale one. Returns `None` when the cache is full of live
    /// entries.
    fn slot(&self, id: &str) -> Option<Slot> {
        let now = Instant::now();
        let ttl = self.settings.ttl;
        let mut entries = lock(&self.entries);

        if let Some(slot) = entries.map.get(id) {
            let stale = slot.get().is_some_and(|lookup| lookup.is_stale(now, ttl));
            if !stale {
                return Some(slot.clone());
            }
        } else if entries.map.len() >= self.settings.max_entries
            && !self.make_room(&mut entries, now)
        {
            return None;
        }

        let slot = Slot::default();
        entries.map.insert(id.to_owned(), slot.clone());
        Some(slot)
    }

    /// Sweeps stale entries out of a full map, at most once per sweep
    /// interval, so that a spray of new ids causes a few scans per TTL
    /// instead of one per id. Returns whether there is room afterwards.
    fn make_room(&self, entries: &mut Entries, now: Instant) -> bool {
        let ttl = self.settings.ttl;
        let interval = ttl.min(MAX_SWEEP_INTERVAL);
        let due = entries
            .last_sweep
            .is_none_or(|last| now.duration_since(last) >= interval);
        if due {
            // A slot without a result stays while a caller has a reference
            // to it, because its query is in flight. Without one, its query
            // failed or timed out, and the slot goes.
            entries.map.retain(|_, slot| match slot.get() {
                Some(lookup) => !lookup.is_stale(now, ttl),
                None => Arc::strong_count(slot) > 1,
            });
            entries.last_sweep = Some(now);
        }
        if entries.map.len() < self.settings.max_entries {
            return true;
        }

        let warn = entries
            .last_full_warning
            .is_none_or(|last| now.duration_since(last) >= FULL_WARNING_INTERVAL);
        if warn {
            entries.last_full_warning = Some(now);
            log::warn!(
                "the signal cache is full ({} ids looked up within {ttl:?}); \
                 lookups of further ids go to the store uncached; raise \
                 --signal-cache-max-entries (NEXUS_AUTH_SIGNAL_CACHE_MAX_ENTRIES) \
                 if this is not an attack",
                entries.map.len()
            );
        }
        false
    }

    /// Returns the number of ids cached or in flight.
    pub fn len(&self) -> usize {
        lock(&self.entries).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Lookup {
    fn new(id: &str, result: Option<SignalRecord>, queried_at: Instant) -> Lookup {
        let found = result.is_some();
        let record = result.unwrap_or_else(|| SignalRecord {
            id: id.to_owned(),
            token_digest: TokenDigest([0; 32]),
            previous_token: None,
            enabled: false,
            created_at: 0,
        });
        Lookup {
            record,
            found,
            queried_at,
        }
    }

    fn is_stale(&self, now: Instant, ttl: Duration) -> bool {
        now.duration_since(self.queried_at) >= ttl
    }
}

fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    entries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn record(id: &str) -> SignalRecord {
        SignalRecord {
            id: id.to_owned(),
            token_digest: TokenDigest([7; 32]),
            previous_token: None,
            enabled: true,
            created_at: 1,
        }
    }

    fn cache(ttl: Duration, max_entries: usize) -> SignalCache {
        SignalCache::new(SignalCacheSettings { ttl, max_entries })
    }

    /// Looks `id` up in `cache`, counting store queries in `queries`; ids
    /// starting with "known" exist.
    async fn find(cache: &SignalCache, queries: &AtomicUsize, id: &str) -> Option<SignalRecord> {
        cache
            .find(id, || async {
                queries.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(id.starts_with("known").then(|| record(id)))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn found_and_unknown_cached() {
        let cache = cache(Duration::from_secs(60), 100);
        let queries = AtomicUsize::new(0);

        let found = find(&cache, &queries, "known-1").await;
        assert_eq!(found.map(|record| record.id), Some("known-1".to_owned()));
        assert!(find(&cache, &queries, "unknown").await.is_none());
        assert_eq!(queries.load(Ordering::SeqCst), 2);

        for _ in 0..5 {
            assert!(find(&cache, &queries, "known-1").await.is_some());
            assert!(find(&cache, &queries, "unknown").await.is_none());
        }
        assert_eq!(queries.load(Ordering::SeqCst), 2, "hits queried the store");
    }

    #[tokio::test]
    async fn entries_expire_after_ttl() {
        let cache = cache(Duration::from_millis(50), 100);
        let queries = AtomicUsize::new(0);
        find(&cache, &queries, "known-1").await;
        find(&cache, &queries, "known-1").await;
        assert_eq!(queries.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_millis(60)).await;
        find(&cache, &queries, "known-1").await;
        assert_eq!(queries.load(Ordering::SeqCst), 2, "stale entry reused");
    }

    #[tokio::test]
    async fn concurrent_misses_share_query() {
        let cache = cache(Duration::from_secs(60), 100);
        let queries = AtomicUsize::new(0);
        let lookups = (0..20).map(|_| {
            cache.find("known-1", || async {
                queries.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, ()>(Some(record("known-1")))
            })
        });
        let results = futures_util::future::join_all(lookups).await;
        assert_eq!(queries.load(Ordering::SeqCst), 1);
        for result in results {
            assert_eq!(
                result.unwrap().map(|record| record.id).as_deref(),
                Some("known-1")
            );
        }
    }

    #[tokio::test]
    async fn errors_not_cached() {
        let cache = cache(Duration::from_secs(60), 100);
        let failed = cache
            .find("known-1", || async {
                Err::<Option<SignalRecord>, _>("down")
            })
            .await;
        assert_eq!(failed.unwrap_err(), "down");

        let queries = AtomicUsize::new(0);
        assert!(find(&cache, &queries, "known-1").await.is_some());
        assert_eq!(queries.load(Ordering::SeqCst), 1, "the error was cached");
    }

    #[tokio::test]
    async fn full_cache_bypasses_new_ids() {
        let cache = cache(Duration::from_secs(60), 3);
        let queries = AtomicUsize::new(0);
        for index in 0..5 {
            find(&cache, &queries, &format!("unknown-{index}")).await;
        }
        assert_eq!(cache.len(), 3);

        // Ids beyond the cap are still served, from the store each time.
        assert!(find(&cache, &queries, "known-9").await.is_some());
        assert!(find(&cache, &queries, "known-9").await.is_some());
        assert_eq!(queries.load(Ordering::SeqCst), 7);
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test]
    async fn full_cache_sweeps_stale_entries() {
        let cache = cache(Duration::from_millis(30), 2);
        let queries = AtomicUsize::new(0);
        find(&cache, &queries, "unknown-1").await;
        find(&cache, &queries, "unknown-2").await;
        tokio::time::sleep(Duration::from_millis(40)).await;

        find(&cache, &queries, "known-3").await;
        find(&cache, &queries, "known-3").await;
        assert_eq!(queries.load(Ordering::SeqCst), 3, "new id not cached");
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn failed_slots_swept() {
        let cache = cache(Duration::from_secs(60), 2);
        for id in ["unknown-1", "unknown-2"] {
            let failed = cache
                .find(id, || async { Err::<Option<SignalRecord>, _>("down") })
                .await;
            assert!(failed.is_err());
        }
        let queries = AtomicUsize::new(0);
        find(&cache, &queries, "known-3").await;
        find(&cache, &queries, "known-3").await;
        assert_eq!(
            queries.load(Ordering::SeqCst),
            1,
            "failed lookups kept the cache full"
        );
    }

    #[tokio::test]
    async fn zero_ttl_always_queries() {
        let cache = SignalCache::new(SignalCacheSettings::off());
        let queries = AtomicUsize::new(0);
        for _ in 0..3 {
            assert!(find(&cache, &queries, "known-1").await.is_some());
        }
        assert_eq!(queries.load(Ordering::SeqCst), 3);
        assert!(cache.is_empty());
    }
}
