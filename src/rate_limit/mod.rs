//! Limits on failed logins, per client address and per signal id.
//!
//! Counters use fixed windows: the first failure of a key opens a window of
//! `window` length, and the key is throttled once its count reaches the
//! limit, until the window ends. Only 401s count, so honest clients never
//! spend the budget. A throttled signal is slowed, not locked: addresses
//! that logged in to it successfully in the last `KNOWN_CLIENT_TTL` keep
//! logging in while strangers get 429, so an attacker with a signal id
//! cannot lock its real clients out.
//!
//! The counters live in this process (`memory`) or, with `--redis-url`, in
//! Redis (`shared`), where every instance shares them. Each instance keeps
//! its in-memory counters up to date in both cases, and checks them while
//! Redis cannot be reached.

mod memory;
mod shared;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge};

use memory::MemoryLimiter;
use shared::RedisLimiter;
pub use shared::RedisSettings;

/// How long a successful login keeps its address exempt from its signal's
/// throttle.
const KNOWN_CLIENT_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Failed logins allowed from one client address per window; 0 turns
    /// the limit off.
    pub per_address: u32,
    /// Failed logins allowed against one signal id, from all addresses, per
    /// window; 0 turns the limit off.
    pub per_signal: u32,
    pub window: Duration,
    /// Maximum number of keys that each map tracks at once. In Redis, the
    /// maximum number of new keys of each kind per window.
    pub max_entries: usize,
    /// Redis server that instances share their counters through; `None`
    /// keeps them in this process only.
    pub redis: Option<RedisSettings>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_address: 20,
            per_signal: 60,
            window: Duration::from_secs(60),
            max_entries: 100_000,
            redis: None,
        }
    }
}

/// The limit a client reached, for the 429 and its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Policy name, as the RateLimit header fields show it.
    pub policy: &'static str,
    pub quota: u32,
    pub window_seconds: u64,
    /// Seconds until the window ends, at least 1.
    pub retry_after: u64,
}

pub const ADDRESS_POLICY: &str = "failed-logins-per-address";
pub const SIGNAL_POLICY: &str = "failed-logins-per-signal";

/// Builds the throttle of `policy` with `left` until its window ends.
fn throttle(settings: &RateLimitSettings, policy: &'static str, left: Duration) -> Throttle {
    let quota = if policy == ADDRESS_POLICY {
        settings.per_address
    } else {
        settings.per_signal
    };
    Throttle {
        policy,
        quota,
        window_seconds: settings.window.as_secs(),
        retry_after: left.as_secs_f64().ceil().max(1.0) as u64,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves only counters, a connection
    // handle or a timestamp behind, which are safe to keep using.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Metrics that the Redis backend updates.
#[derive(Clone)]
pub struct RedisMetrics {
    /// Failed or timed-out Redis calls, by `kind` (`timeout` or `error`).
    pub errors: IntCounterVec,
    /// 1 while the counters are shared through Redis, 0 while this
    /// instance counts alone.
    pub shared: IntGauge,
}

/// The failed-login limiter of one server: in-memory counters, and shared
/// ones in Redis when configured.
pub struct LoginLimiter {
    memory: MemoryLimiter,
    shared: Option<RedisLimiter>,
}

impl LoginLimiter {
    pub fn new(settings: RateLimitSettings, metrics: RedisMetrics) -> Self {
        let shared = settings
            .redis
            .clone()
            .map(|redis| RedisLimiter::new(redis, &settings, metrics));
        Self {
            memory: MemoryLimiter::new(settings),
            shared,
        }
    }

    /// Connects to Redis, when configured, and logs whether that worked.
    /// Logins never wait for a connection: without one they use the
    /// in-memory counters while the connection is retried.
    pub async fn connect(&self) {
        if let Some(shared) = &self.shared {
            shared.connect().await;
        }
    }

    /// Checks the address limit, which applies before the body is read.
    // TODO: a failure is recorded only when its login ends, so concurrent
    // logins that pass this check before any of them is recorded can
    // exceed the limit by their number. Reserving a count here and
    // releasing it on success would close that gap.
    pub async fn check_address(&self, address: IpAddr, now: Instant) -> Result<(), Throttle> {
        if let Some(shared) = &self.shared {
            if let Some(verdict) = shared.check_address(address).await {
                return verdict;
            }
        }
        self.memory.check_address(address, now)
    }

    /// Checks the signal limit, which applies once the body names a signal.
    /// Addresses with a recent successful login to it pass.
    pub async fn check_signal(
        &self,
        signal_id: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), Throttle> {
        if let Some(shared) = &self.shared {
            if let Some(verdict) = shared.check_signal(signal_id, address).await {
                return verdict;
            }
        }
        self.memory.check_signal(signal_id, address, now)
    }

    pub async fn record_failure(&self, signal_id: &str, address: IpAddr, now: Instant) {
        self.memory.record_failure(signal_id, address, now);
        if let Some(shared) = &self.shared {
            shared.record_failure(signal_id, address).await;
        }
    }

    pub async fn record_success(&self, signal_id: &str, address: IpAddr, now: Instant) {
        self.memory.record_success(signal_id, address, now);
        if let Some(shared) = &self.shared {
            shared.record_success(signal_id, address).await;
        }
    }

    /// Returns the number of addresses, signals and known clients that the
    /// in-memory counters track.
    pub fn tracked(&self) -> (usize, usize, usize) {
        self.memory.tracked()
    }
}
