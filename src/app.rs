//! Shared state of the HTTP server, built once at start from the store and
//! the settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiError;
use crate::keys::{KeyError, KeyRing, KeyRingSettings, SigningAlgorithm};
use crate::metrics::Metrics;
use crate::rate_limit::{LoginLimiter, RateLimitSettings};
use crate::signal_cache::{SignalCache, SignalCacheSettings};
use crate::signer::{Signer, TokenSettings};
use crate::store::{SignalRecord, SignalStore};
use crate::verify::{Verifier, VerifierSettings};

/// Limits of the login path.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Maximum wait for the store before responding with 503.
    pub store_timeout: Duration,
    /// Maximum time to receive the whole body before responding with 408.
    pub body_timeout: Duration,
    pub rate_limit: RateLimitSettings,
    /// Counts failed logins against the address in `Forwarded` or
    /// `X-Forwarded-For` instead of the socket's peer.
    pub trust_proxy_headers: bool,
}

/// Everything the server needs besides the store.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token: TokenSettings,
    pub signing_algorithm: SigningAlgorithm,
    pub hmac_secret_file: Option<PathBuf>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub clock_leeway: u64,
    /// Seconds between reloads of the signing keys from the store.
    pub key_refresh: u64,
    pub login: LoginSettings,
    /// Origins allowed to call the browser-facing routes; `*` for any.
    pub cors_origins: Vec<String>,
    pub signal_cache: SignalCacheSettings,
}

pub struct AppState {
    pub store: Arc<dyn SignalStore>,
    pub signal_cache: SignalCache,
    pub signer: Signer,
    pub verifier: Verifier,
    pub limiter: LoginLimiter,
    pub metrics: Metrics,
    pub login: LoginSettings,
    pub cors_origins: Vec<String>,
}

impl AppState {
    /// Loads the key ring (generating a signing key if needed) and builds
    /// the signer and verifier around it.
    pub async fn open(
        store: Arc<dyn SignalStore>,
        settings: Settings,
        now: i64,
    ) -> Result<AppState, KeyError> {
        let ring_settings = KeyRingSettings {
            algorithm: settings.signing_algorithm,
            hmac_secret_file: settings.hmac_secret_file,
            token_ttl: settings.token.ttl_seconds,
            leeway: settings.clock_leeway,
            refresh_interval: settings.key_refresh,
        };
        let ring = Arc::new(KeyRing::open(store.as_ref(), ring_settings, now).await?);
        let verifier = Verifier::new(
            ring.clone(),
            VerifierSettings {
                issuer: settings.token.issuer.clone(),
                audience: settings.token.audience.clone(),
                leeway: settings.clock_leeway,
            },
        );
        let metrics = Metrics::new();
        let limiter = LoginLimiter::new(settings.login.rate_limit.clone(), metrics.redis());
        limiter.connect().await;
        Ok(AppState {
            store,
            signal_cache: SignalCache::new(settings.signal_cache),
            signer: Signer::new(ring, settings.token),
            verifier,
            limiter,
            metrics,
            login: settings.login,
            cors_origins: settings.cors_origins,
        })
    }

    pub fn key_ring(&self) -> &Arc<KeyRing> {
        self.signer.ring()
    }

    /// Reads a signal through the signal cache, from the store within the
    /// store timeout on a miss. The lookup is the only step of a request
    /// that waits on something outside the process, so it alone carries a
    /// deadline. Past it, or on a store error, the request gets 503 and
    /// nothing is issued.
    pub async fn find_signal(&self, id: &str) -> Result<Option<SignalRecord>, ApiError> {
        let timeout = self.login.store_timeout;
        let lookup = self.signal_cache.find(id, || self.store.find_signal(id));
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(error)) => {
                self.metrics.store_errors.inc();
                log::error!("store lookup failed: {error}");
                Err(ApiError::Unavailable)
            }
            Err(_) => {
                self.metrics.store_errors.inc();
                log::error!("store lookup timed out after {timeout:?}");
                Err(ApiError::Unavailable)
            }
        }
    }
}
