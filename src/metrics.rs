//! Prometheus metrics: login outcomes, request latency, store errors, rate
//! limiting, Redis errors, the active signing key and dropped log lines.
//!
//! Labels never carry a signal id, a token or a client address: their
//! values come from small fixed sets (outcomes, body formats, route
//! patterns), so the number of series stays bounded whatever clients send.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::rate_limit::RedisMetrics;

/// The `outcome` label of a login that issued a token.
pub const ISSUED: &str = "issued";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct Metrics {
    registry: Registry,
    /// Login attempts by `outcome` (`issued` or the error code) and
    /// `format` (the body format, or `unknown` before it is known).
    login_attempts: IntCounterVec,
    /// The `issued` series of `login_attempts` by format name, resolved
    /// once at start, because looking up a series hashes its label values
    /// and every successful login counts one.
    issued: Vec<(&'static str, IntCounter)>,
    /// Request latency by `route` pattern and `method`.
    pub request_duration: HistogramVec,
    /// Failed or timed-out store queries.
    pub store_errors: IntCounter,
    /// Requests rejected with 429, by `policy`.
    pub rate_limited: IntCounterVec,
    /// Failed or timed-out Redis calls of the rate limiter, by `kind`.
    pub redis_errors: IntCounterVec,
    /// 1 while the rate-limit counters are shared through Redis.
    pub rate_limit_shared: IntGauge,
    /// 1 for the key that signs new tokens, by `kid` and `alg`.
    signing_key: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let login_attempts = IntCounterVec::new(
            Opts::new(
                "nexus_auth_login_attempts_total",
                "Login attempts by outcome and body format.",
            ),
            &["outcome", "format"],
        )
        .expect("valid metric");
        let issued = crate::login::extract::format_names()
            .map(|format| {
                let counter = login_attempts.with_label_values(&[ISSUED, format]);
                (format, counter)
            })
            .collect();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "nexus_auth_http_request_duration_seconds",
                "Time from request head to response, by route pattern and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let store_errors = IntCounter::new(
            "nexus_auth_store_errors_total",
            "Store queries that failed or timed out.",
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "nexus_auth_rate_limited_total",
                "Requests answered 429, by limit.",
            ),
            &["policy"],
        )
        .expect("valid metric");
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "nexus_auth_redis_errors_total",
                "Rate-limit calls to Redis that failed (kind error) or timed out (kind timeout).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        // Both series exist from the start, so that a rate over them works
        // before the first error.
        for kind in ["error", "timeout"] {
            redis_errors.with_label_values(&[kind]);
        }
        let rate_limit_shared = IntGauge::new(
            "nexus_auth_rate_limit_shared",
            "1 while failed-login counters are shared through Redis, 0 while this instance counts alone.",
        )
        .expect("valid metric");
        let signing_key = IntGaugeVec::new(
            Opts::new(
                "nexus_auth_signing_key_info",
                "The key that signs new tokens (value 1).",
            ),
            &["kid", "alg"],
        )
        .expect("valid metric");

        let registry = Registry::new();
        for collector in [
            Box::new(login_attempts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(store_errors.clone()),
            Box::new(rate_limited.clone()),
            Box::new(redis_errors.clone()),
            Box::new(rate_limit_shared.clone()),
            Box::new(signing_key.clone()),
            Box::new(crate::log_output::dropped_lines_counter()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            login_attempts,
            issued,
            request_duration,
            store_errors,
            rate_limited,
            redis_errors,
            rate_limit_shared,
            signing_key,
        }
    }

    /// Counts one login attempt with its `outcome` and body `format`.
    pub fn count_login(&self, outcome: &str, format: &str) {
        if outcome == ISSUED {
            if let Some((_, counter)) = self.issued.iter().find(|(name, _)| *name == format) {
                counter.inc();
                return;
            }
        }
        self.login_attempts
            .with_label_values(&[outcome, format])
            .inc();
    }

    /// Returns the metrics that the rate limiter's Redis backend updates.
    pub fn redis(&self) -> RedisMetrics {
        RedisMetrics {
            errors: self.redis_errors.clone(),
            shared: self.rate_limit_shared.clone(),
        }
    }

    /// Renders every metric in the Prometheus text format, with the signing
    /// key gauge set to the key that signs now.
    pub fn render(&self, kid: &str, algorithm: &str) -> String {
        self.signing_key.reset();
        self.signing_key.with_label_values(&[kid, algorithm]).set(1);

        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            log::error!("encoding the metrics failed: {error}");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
