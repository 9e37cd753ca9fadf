//! In-memory failed-login counters: the only counters without Redis, and
//! each instance's own counters while Redis cannot be reached.
//!
//! Counters use fixed windows: the first failure of a key opens a window of
//! `window` length, and the key is throttled once its count reaches the
//! limit, until the window ends. Every map is capped at `max_entries`, so
//! memory stays bounded when an attacker sprays addresses or ids.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    lock, throttle, RateLimitSettings, Throttle, ADDRESS_POLICY, KNOWN_CLIENT_TTL, SIGNAL_POLICY,
};

/// Seconds between two warnings that a map is full.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

struct Window {
    started: Instant,
    count: u32,
}

/// A capped map with fixed-window counters.
struct Counters<K> {
    entries: Mutex<Capped<K, Window>>,
    limit: u32,
    window: Duration,
    last_full_warning: Mutex<Option<Instant>>,
}

/// A map of at most `max_entries` keys. When it is full, expired entries
/// are swept out at most once per `sweep_interval`, so a spray of new keys
/// causes a few full scans per window instead of one scan per key.
struct Capped<K, V> {
    map: HashMap<K, V>,
    max_entries: usize,
    sweep_interval: Duration,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq, V> Capped<K, V> {
    fn new(max_entries: usize, sweep_interval: Duration) -> Self {
        Self {
            map: HashMap::new(),
            max_entries,
            sweep_interval,
            last_sweep: None,
        }
    }

    /// Inserts `value` unless the map is full of live entries; returns
    /// whether it did. A sweep keeps the entries for which `live` returns
    /// true.
    fn insert(&mut self, key: K, value: V, now: Instant, live: impl Fn(&V) -> bool) -> bool {
        if self.map.len() >= self.max_entries && !self.map.contains_key(&key) {
            let due = self
                .last_sweep
                .is_none_or(|last| now.duration_since(last) >= self.sweep_interval);
            if due {
                self.map.retain(|_, value| live(value));
                self.last_sweep = Some(now);
            }
            if self.map.len() >= self.max_entries {
                return false;
            }
        }
        self.map.insert(key, value);
        true
    }
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new(limit: u32, window: Duration, max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(Capped::new(max_entries, window / 10)),
            limit,
            window,
            last_full_warning: Mutex::new(None),
        }
    }

    /// Returns the time left in `key`'s window when it has reached the limit.
    /// A limit of 0 turns the counter off.
    fn throttled<Q>(&self, key: &Q, now: Instant) -> Option<Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.limit == 0 {
            return None;
        }
        let entries = lock(&self.entries);
        let window = entries.map.get(key)?;
        let ends = window.started + self.window;
        (window.count >= self.limit && now < ends).then(|| ends - now)
    }

    /// Counts a failure of `key`. Allocates an owned key only when the key
    /// is new to the map.
    fn record_failure<Q>(&self, key: &Q, now: Instant)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.limit == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        if let Some(window) = entries.map.get_mut(key) {
            if now >= window.started + self.window {
                *window = Window {
                    started: now,
                    count: 0,
                };
            }
            window.count = window.count.saturating_add(1);
            return;
        }
        let length = self.window;
        let fresh = Window {
            started: now,
            count: 1,
        };
        let inserted = entries.insert(key.to_owned(), fresh, now, |window| {
            now < window.started + length
        });
        if !inserted {
            // Dropping the new key keeps memory bounded; its failures go
            // uncounted until old windows expire.
            let max_entries = entries.max_entries;
            drop(entries);
            self.warn_full(max_entries);
        }
    }

    fn warn_full(&self, max_entries: usize) {
        let mut last = lock(&self.last_full_warning);
        let now = Instant::now();
        if last.is_none_or(|last| now.duration_since(last) >= FULL_WARNING_INTERVAL) {
            *last = Some(now);
            log::warn!(
                "the failed-login limiter tracks {max_entries} keys, its maximum; new keys go uncounted until windows expire"
            );
        }
    }

    fn len(&self) -> usize {
        lock(&self.entries).map.len()
    }
}

pub struct MemoryLimiter {
    settings: RateLimitSettings,
    addresses: Counters<IpAddr>,
    signals: Counters<String>,
    /// (signal id, address) pairs with a recent successful login.
    known_clients: Mutex<Capped<(String, IpAddr), Instant>>,
}

impl MemoryLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            addresses: Counters::new(settings.per_address, settings.window, settings.max_entries),
            signals: Counters::new(settings.per_signal, settings.window, settings.max_entries),
            known_clients: Mutex::new(Capped::new(settings.max_entries, settings.window / 10)),
            settings,
        }
    }

    /// Checks the address limit, which applies before the body is read.
    pub fn check_address(&self, address: IpAddr, now: Instant) -> Result<(), Throttle> {
        match self.addresses.throttled(&address, now) {
            Some(left) => Err(throttle(&self.settings, ADDRESS_POLICY, left)),
            None => Ok(()),
        }
    }

    /// Checks the signal limit, which applies once the body names a signal.
    /// Addresses with a recent successful login to it pass.
    pub fn check_signal(
        &self,
        signal_id: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), Throttle> {
        let Some(left) = self.signals.throttled(signal_id, now) else {
            return Ok(());
        };
        let known = lock(&self.known_clients)
            .map
            .get(&(signal_id.to_owned(), address))
            .is_some_and(|since| now < *since + KNOWN_CLIENT_TTL);
        if known {
            return Ok(());
        }
        Err(throttle(&self.settings, SIGNAL_POLICY, left))
    }

    pub fn record_failure(&self, signal_id: &str, address: IpAddr, now: Instant) {
        self.addresses.record_failure(&address, now);
        self.signals.record_failure(signal_id, now);
    }

    pub fn record_success(&self, signal_id: &str, address: IpAddr, now: Instant) {
        // Known clients matter only to the signal limit; with it off, a
        // login stores nothing here.
        if self.settings.per_signal == 0 {
            return;
        }
        let key = (signal_id.to_owned(), address);
        lock(&self.known_clients).insert(key, now, now, |since| now < *since + KNOWN_CLIENT_TTL);
    }

    /// Returns the number of tracked addresses, signals and known clients.
    pub fn tracked(&self) -> (usize, usize, usize) {
        (
            self.addresses.len(),
            self.signals.len(),
            lock(&self.known_clients).map.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_address: u32, per_signal: u32, max_entries: usize) -> MemoryLimiter {
        MemoryLimiter::new(RateLimitSettings {
            per_address,
            per_signal,
            window: Duration::from_secs(60),
            max_entries,
            ..RateLimitSettings::default()
        })
    }

    fn address(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn address_throttled_at_limit_until_window_ends() {
        let limiter = limiter(3, 100, 1000);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_address(address(1), start).is_ok());
            limiter.record_failure("s", address(1), start);
        }

        let throttle = limiter.check_address(address(1), start + Duration::from_secs(20));
        assert_eq!(throttle.map_err(|throttle| throttle.retry_after), Err(40));
        assert!(
            limiter.check_address(address(2), start).is_ok(),
            "another address"
        );
        assert!(limiter
            .check_address(address(1), start + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn throttled_signal_admits_known_clients() {
        let limiter = limiter(1000, 5, 1000);
        let now = Instant::now();
        limiter.record_success("sensor", address(9), now);
        for attacker in 0..5 {
            limiter.record_failure("sensor", address(attacker), now);
        }

        assert!(
            limiter.check_signal("sensor", address(100), now).is_err(),
            "stranger"
        );
        assert!(
            limiter.check_signal("sensor", address(9), now).is_ok(),
            "known client"
        );
        assert!(
            limiter.check_signal("other", address(100), now).is_ok(),
            "other signal"
        );
    }

    #[test]
    fn memory_bounded_under_spray() {
        let limiter = limiter(20, 60, 10_000);
        let now = Instant::now();
        for index in 0..1_000_000u32 {
            let spoofed = IpAddr::from(index.to_be_bytes());
            limiter.record_failure(&format!("signal-{index}"), spoofed, now);
            limiter.record_success(&format!("signal-{index}"), spoofed, now);
        }

        let (addresses, signals, known) = limiter.tracked();
        assert!(addresses <= 10_000, "{addresses} addresses tracked");
        assert!(signals <= 10_000, "{signals} signals tracked");
        assert!(known <= 10_000, "{known} known clients tracked");

        // Once the windows have passed, new keys are tracked again.
        let later = now + Duration::from_secs(61);
        limiter.record_failure("fresh", address(1), later);
        assert_eq!(limiter.addresses.throttled(&address(1), later), None);
        assert!(limiter.tracked().0 <= 10_000);
        assert!(lock(&limiter.addresses.entries)
            .map
            .contains_key(&address(1)));
    }
}
