//! Failed-login counters in Redis, shared by every instance that uses the
//! same server and key prefix.
//!
//! Keys, each under the prefix and each with a TTL so that none outlives
//! its window:
//! - `addr:<address>`: failures from one client address, for one window.
//! - `signal:<hash>`: failures against one signal id, for one window.
//! - `known:<hash>`: a successful login of one address to one signal, for
//!   `KNOWN_CLIENT_TTL`.
//! - `new:addr`, `new:signal`, `new:known`: the number of keys of each kind
//!   created in the current budget period (one window, or `KNOWN_CLIENT_TTL`
//!   for known clients). Past `max_entries`, new keys go uncounted as in
//!   memory, so an attacker who sprays addresses or ids makes Redis store
//!   at most twice `max_entries` live keys of each kind.
//!
//! Signal ids appear only as SHA-256 hashes, because a client may paste its
//! token into the id field. The hash also fixes the key length whatever the
//! id's length.
//!
//! Every call carries `timeout`. A failed or timed-out call drops the
//! connection, and until a background task reconnects (at most once per
//! `RECONNECT_INTERVAL`) the instance checks its in-memory counters.

use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use sha2::{Digest, Sha256};

use super::{
    lock, throttle, RateLimitSettings, RedisMetrics, Throttle, ADDRESS_POLICY, KNOWN_CLIENT_TTL,
    SIGNAL_POLICY,
};

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The server; its `Debug` masks the password.
    pub client: Client,
    /// Prefix of every key, so that several deployments can share a server.
    pub key_prefix: String,
    /// Maximum wait for one Redis call or connection attempt.
    pub timeout: Duration,
}

/// Minimum time between two connection attempts.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// Minimum time between two log lines about Redis failing, recovering or
/// holding its maximum of new keys.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Counts one failure on each (counter, budget) pair of keys.
/// ARGV[1] is the window in milliseconds and ARGV[2] the maximum number of
/// new counters per window. Returns the number of new counters dropped
/// because the budget was spent.
const RECORD_FAILURES: &str = r#"
local window = tonumber(ARGV[1])
local max_new = tonumber(ARGV[2])
local dropped = 0
for i = 1, #KEYS, 2 do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then
    redis.call('PEXPIRE', KEYS[i], window)
    local created = redis.call('INCR', KEYS[i + 1])
    if created == 1 then
      redis.call('PEXPIRE', KEYS[i + 1], window)
    end
    if created > max_new then
      redis.call('DEL', KEYS[i])
      dropped = dropped + 1
    end
  elseif redis.call('PTTL', KEYS[i]) == -1 then
    -- A counter without a TTL would throttle its key forever.
    redis.call('PEXPIRE', KEYS[i], window)
  end
end
return dropped
"#;

/// Stores KEYS[1] (a known client) for ARGV[1] milliseconds, counting a new
/// key on the budget KEYS[2], of at most ARGV[2] new keys per period.
/// Returns 0 when the budget was spent and nothing was stored.
const RECORD_KNOWN_CLIENT: &str = r#"
local ttl = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  local created = redis.call('INCR', KEYS[2])
  if created == 1 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  if created > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], '1', 'PX', ttl)
return 1
"#;

/// Cause of a Redis call that returned no value.
enum Failure {
    Timeout,
    Error(RedisError),
}

/// The Redis side of the limiter. Cloning shares the connection.
#[derive(Clone)]
pub(super) struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisSettings,
    limits: RateLimitSettings,
    /// Host and port (or socket path) for log lines, without credentials.
    server: String,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// Whether a connection attempt is running.
    connecting: AtomicBool,
    /// When the next connection attempt may start.
    next_attempt: Mutex<Option<Instant>>,
    /// Whether a call failed since the last connection.
    failing: AtomicBool,
    last_failure_warning: Mutex<Option<Instant>>,
    last_recovery_log: Mutex<Option<Instant>>,
    last_full_warning: Mutex<Option<Instant>>,
    record_failures: Script,
    record_known_client: Script,
    metrics: RedisMetrics,
}

impl RedisLimiter {
    pub(super) fn new(
        redis: RedisSettings,
        limits: &RateLimitSettings,
        metrics: RedisMetrics,
    ) -> Self {
        let server = redis.client.get_connection_info().addr().to_string();
        Self {
            inner: Arc::new(Inner {
                redis,
                limits: RateLimitSettings {
                    redis: None,
                    ..limits.clone()
                },
                server,
                connection: Mutex::new(None),
                connecting: AtomicBool::new(false),
                next_attempt: Mutex::new(None),
                failing: AtomicBool::new(false),
                last_failure_warning: Mutex::new(None),
                last_recovery_log: Mutex::new(None),
                last_full_warning: Mutex::new(None),
                record_failures: Script::new(RECORD_FAILURES),
                record_known_client: Script::new(RECORD_KNOWN_CLIENT),
                metrics,
            }),
        }
    }

    /// Opens the connection now and logs the outcome.
    pub(super) async fn connect(&self) {
        self.inner.connecting.store(true, Ordering::SeqCst);
        let opened = self.inner.open().await;
        self.inner.connecting.store(false, Ordering::SeqCst);
        match opened {
            Ok(()) => log::info!(
                "failed-login counters are shared through Redis at {} under the key prefix {:?}",
                self.inner.server,
                self.inner.redis.key_prefix
            ),
            Err(failure) => self.inner.fail(failure),
        }
    }

    /// Returns the address verdict from Redis, or `None` when there is no
    /// connection or the call fails.
    pub(super) async fn check_address(&self, address: IpAddr) -> Option<Result<(), Throttle>> {
        let limits = &self.inner.limits;
        if limits.per_address == 0 {
            return Some(Ok(()));
        }
        let key = self.inner.address_key(address);
        let (count, left): (Option<u32>, i64) = self
            .inner
            .call(|mut connection| async move {
                redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        match self.inner.time_left(count, left, limits.per_address) {
            Some(left) => Some(Err(throttle(limits, ADDRESS_POLICY, left))),
            None => Some(Ok(())),
        }
    }

    /// Returns the signal verdict from Redis, or `None` when there is no
    /// connection or the call fails. Known clients of the signal pass.
    pub(super) async fn check_signal(
        &self,
        signal_id: &str,
        address: IpAddr,
    ) -> Option<Result<(), Throttle>> {
        let limits = &self.inner.limits;
        if limits.per_signal == 0 {
            return Some(Ok(()));
        }
        let counter = self.inner.signal_key(signal_id);
        let known_client = self.inner.known_client_key(signal_id, address);
        let (count, left, known): (Option<u32>, i64, bool) = self
            .inner
            .call(|mut connection| async move {
                redis::pipe()
                    .get(&counter)
                    .pttl(&counter)
                    .exists(&known_client)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        match self.inner.time_left(count, left, limits.per_signal) {
            Some(left) if !known => Some(Err(throttle(limits, SIGNAL_POLICY, left))),
            _ => Some(Ok(())),
        }
    }

    pub(super) async fn record_failure(&self, signal_id: &str, address: IpAddr) {
        let inner = &self.inner;
        let mut invocation = inner.record_failures.prepare_invoke();
        if inner.limits.per_address > 0 {
            invocation
                .key(inner.address_key(address))
                .key(inner.budget_key("addr"));
        }
        if inner.limits.per_signal > 0 {
            invocation
                .key(inner.signal_key(signal_id))
                .key(inner.budget_key("signal"));
        }
        if inner.limits.per_address == 0 && inner.limits.per_signal == 0 {
            return;
        }
        invocation
            .arg(duration_millis(inner.limits.window))
            .arg(inner.limits.max_entries);

        let dropped: Option<u32> = inner
            .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await;
        if dropped.is_some_and(|dropped| dropped > 0) {
            inner.warn_full("failed-login counters");
        }
    }

    pub(super) async fn record_success(&self, signal_id: &str, address: IpAddr) {
        // Known clients matter only to the signal limit.
        let inner = &self.inner;
        if inner.limits.per_signal == 0 {
            return;
        }
        let mut invocation = inner.record_known_client.prepare_invoke();
        invocation
            .key(inner.known_client_key(signal_id, address))
            .key(inner.budget_key("known"))
            .arg(duration_millis(KNOWN_CLIENT_TTL))
            .arg(inner.limits.max_entries);

        let stored: Option<u32> = inner
            .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await;
        if stored == Some(0) {
            inner.warn_full("known clients");
        }
    }
}

impl Inner {
    /// Runs `operation` on the connection within the timeout. Returns `None`
    /// without calling it when there is no connection, and on failure.
    async fn call<T, F, Fut>(self: &Arc<Self>, operation: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let connection = self.connection()?;
        match tokio::time::timeout(self.redis.timeout, operation(connection)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.fail(Failure::Error(error));
                None
            }
            Err(_) => {
                self.fail(Failure::Timeout);
                None
            }
        }
    }

    /// Returns the open connection. Without one, starts a connection
    /// attempt in the background when one is due, and returns `None`.
    fn connection(self: &Arc<Self>) -> Option<MultiplexedConnection> {
        if let Some(connection) = lock(&self.connection).as_ref() {
            return Some(connection.clone());
        }

        let now = Instant::now();
        {
            let mut next_attempt = lock(&self.next_attempt);
            if next_attempt.is_some_and(|next| now < next) {
                return None;
            }
            if self.connecting.swap(true, Ordering::SeqCst) {
                return None;
            }
            *next_attempt = Some(now + RECONNECT_INTERVAL);
        }

        let inner = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(failure) = inner.open().await {
                inner.fail(failure);
            }
            inner.connecting.store(false, Ordering::SeqCst);
        });
        None
    }

    /// Opens a connection within the timeout and makes it the one that
    /// calls use.
    async fn open(&self) -> Result<(), Failure> {
        let timeout = self.redis.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let opening = self
            .redis
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let connection = match tokio::time::timeout(timeout, opening).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(Failure::Error(error)),
            Err(_) => return Err(Failure::Timeout),
        };

        *lock(&self.connection) = Some(connection);
        self.metrics.shared.set(1);
        if self.failing.swap(false, Ordering::SeqCst) && due(&self.last_recovery_log) {
            log::info!(
                "Redis at {} answers again; failed-login counters are shared again",
                self.server
            );
        }
        Ok(())
    }

    /// Drops the connection after a failed call, so that the next calls use
    /// the in-memory counters until a new connection is open.
    fn fail(&self, failure: Failure) {
        lock(&self.connection).take();
        {
            let mut next_attempt = lock(&self.next_attempt);
            let retry = Instant::now() + RECONNECT_INTERVAL;
            if next_attempt.is_none_or(|next| next < retry) {
                *next_attempt = Some(retry);
            }
        }
        self.failing.store(true, Ordering::SeqCst);
        self.metrics.shared.set(0);

        let (kind, cause) = match failure {
            Failure::Timeout => (
                "timeout",
                format!("timed out after {:?}", self.redis.timeout),
            ),
            // The client's own connection and response timeouts end in an
            // I/O error of kind TimedOut.
            Failure::Error(error) if error.is_timeout() => ("timeout", error.to_string()),
            Failure::Error(error) => ("error", error.to_string()),
        };
        self.metrics.errors.with_label_values(&[kind]).inc();
        if due(&self.last_failure_warning) {
            log::warn!(
                "Redis at {} failed ({cause}); this instance counts failed logins on its own until Redis answers again, retrying every {} s",
                self.server,
                RECONNECT_INTERVAL.as_secs()
            );
        }
    }

    fn warn_full(&self, kind: &str) {
        if due(&self.last_full_warning) {
            log::warn!(
                "Redis holds the maximum of {} new {kind} per period; new keys go uncounted until the period ends",
                self.limits.max_entries
            );
        }
    }

    /// Returns the time left in a window whose counter `count` has reached
    /// `limit`, given the counter's PTTL in milliseconds.
    fn time_left(&self, count: Option<u32>, pttl: i64, limit: u32) -> Option<Duration> {
        let count = count?;
        if count < limit {
            return None;
        }
        match u64::try_from(pttl) {
            Ok(millis) => Some(Duration::from_millis(millis)),
            // The counter expired between GET and PTTL (-2).
            Err(_) if pttl == -2 => None,
            // No TTL (-1): the next failure sets one, so the key waits at
            // most one window.
            Err(_) => Some(self.limits.window),
        }
    }

    fn address_key(&self, address: IpAddr) -> String {
        format!("{}addr:{address}", self.redis.key_prefix)
    }

    fn signal_key(&self, signal_id: &str) -> String {
        let hash = hash_hex(&[b"signal", signal_id.as_bytes()]);
        format!("{}signal:{hash}", self.redis.key_prefix)
    }

    fn known_client_key(&self, signal_id: &str, address: IpAddr) -> String {
        let address = address.to_string();
        let hash = hash_hex(&[b"known", signal_id.as_bytes(), address.as_bytes()]);
        format!("{}known:{hash}", self.redis.key_prefix)
    }

    fn budget_key(&self, kind: &str) -> String {
        format!("{}new:{kind}", self.redis.key_prefix)
    }
}

/// Returns the first 128 bits of SHA-256 over `parts`, in hex. Each part is
/// preceded by its length, so that no two lists of parts hash alike.
fn hash_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Returns whether `WARNING_INTERVAL` has passed since `last`, and if so
/// sets `last` to now.
fn due(last: &Mutex<Option<Instant>>) -> bool {
    let now = Instant::now();
    let mut last = lock(last);
    if last.is_some_and(|last| now.duration_since(last) < WARNING_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::rate_limit::LoginLimiter;

    fn limiter_for(url: &str, metrics: &Metrics) -> LoginLimiter {
        let settings = RateLimitSettings {
            per_address: 2,
            per_signal: 2,
            redis: Some(RedisSettings {
                client: Client::open(url).unwrap(),
                key_prefix: "nexus-auth-unit:".to_owned(),
                timeout: Duration::from_millis(100),
            }),
            ..RateLimitSettings::default()
        };
        LoginLimiter::new(settings, metrics.redis())
    }

    #[test]
    fn keys_hide_signal_ids() {
        let metrics = Metrics::new();
        let limiter = limiter_for("redis://127.0.0.1:1", &metrics);
        let inner = &limiter.shared.as_ref().unwrap().inner;
        let address = IpAddr::from([192, 0, 2, 7]);
        let token_like_id = "sgt_FixtureToken0123456789abcdefghijklmnop";

        let signal_key = inner.signal_key(token_like_id);
        assert!(!signal_key.contains("sgt_"), "{signal_key}");
        assert_eq!(signal_key.len(), inner.signal_key(&"x".repeat(256)).len());
        let known_key = inner.known_client_key(token_like_id, address);
        assert!(!known_key.contains("sgt_"), "{known_key}");
        assert_ne!(
            known_key,
            inner.known_client_key(token_like_id, IpAddr::from([192, 0, 2, 8])),
            "another address"
        );
        assert_eq!(inner.address_key(address), "nexus-auth-unit:addr:192.0.2.7");
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        assert_ne!(hash_hex(&[b"ab", b"c"]), hash_hex(&[b"a", b"bc"]));
    }

    #[tokio::test]
    async fn silent_redis_falls_back_to_memory() {
        // A server that accepts connections and never replies, like a Redis
        // host that hangs.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let metrics = Metrics::new();
        let limiter = limiter_for(&url, &metrics);
        let address = IpAddr::from([192, 0, 2, 9]);

        let started = Instant::now();
        limiter.connect().await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "connect took {:?}",
            started.elapsed()
        );
        assert_eq!(metrics.rate_limit_shared.get(), 0);
        assert!(metrics.redis_errors.with_label_values(&["timeout"]).get() >= 1);

        let started = Instant::now();
        let now = Instant::now();
        for _ in 0..2 {
            assert!(limiter.check_address(address, now).await.is_ok());
            limiter.record_failure("sensor", address, now).await;
        }
        let throttled = limiter.check_address(address, now).await;
        assert_eq!(
            throttled.map_err(|throttle| throttle.policy),
            Err(ADDRESS_POLICY),
            "the in-memory counters apply"
        );
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "logins waited {:?} for a connection",
            started.elapsed()
        );
        held.abort();
    }
}
