//! `nexus-auth serve`: opens the store, makes sure a signing key exists,
//! creates a first signal on an empty store, and runs the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::web;
use clap::Args;

use super::StoreArgs;
use crate::app::{AppState, LoginSettings, Settings};
use crate::keys::SigningAlgorithm;
use crate::rate_limit::{RateLimitSettings, RedisSettings};
use crate::secret::RedisUrl;
use crate::server::ServerOptions;
use crate::signal_cache::SignalCacheSettings;
use crate::signer::TokenSettings;
use crate::store::{self, SignalStore, StoreError};
use crate::time::unix_now;
use crate::{server, signal_token, tls};

/// Id of the signal that `serve` creates on an empty store.
const BOOTSTRAP_SIGNAL_ID: &str = "demo";

/// Maximum token lifetime, in seconds (7 days).
const MAX_TOKEN_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Maximum body limit, in bytes (1 MiB). A login body needs under
/// 1 KiB; the limit only leaves room for what clients add around it.
const MAX_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "NEXUS_AUTH_BIND", default_value = "127.0.0.1:8080", value_name = "ADDR", value_parser = super::parse_bind)]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Lifetime of issued tokens, in seconds (at most 604800, 7 days).
    #[arg(long, env = "NEXUS_AUTH_TOKEN_TTL", default_value = "3600", value_name = "SECONDS", value_parser = parse_token_ttl)]
    pub token_ttl: u64,

    /// Value of the `iss` claim in issued tokens.
    #[arg(long, env = "NEXUS_AUTH_ISSUER", default_value = "nexus-auth", value_parser = parse_claim)]
    pub issuer: String,

    /// Value of the `aud` claim in issued tokens; none by default.
    #[arg(long, env = "NEXUS_AUTH_AUDIENCE", value_parser = parse_claim)]
    pub audience: Option<String>,

    /// Largest accepted request body: bytes, or a number with KiB or MiB.
    #[arg(long, env = "NEXUS_AUTH_BODY_LIMIT", default_value = "16KiB", value_name = "SIZE", value_parser = parse_body_limit)]
    pub body_limit: usize,

    /// Algorithm of the signing key generated at start when the store has
    /// no active key of it: EdDSA, ES256, RS256 (2048-bit) or HS256.
    #[arg(
        long,
        env = "NEXUS_AUTH_SIGNING_ALG",
        default_value = "EdDSA",
        value_name = "ALG"
    )]
    pub signing_alg: SigningAlgorithm,

    /// File with the HS256 secret (at least 32 bytes); needed with
    /// --signing-alg HS256 and read only then.
    #[arg(long, env = "NEXUS_AUTH_HS256_SECRET_FILE", value_name = "PATH")]
    pub hs256_secret_file: Option<PathBuf>,

    /// Clock skew allowed when checking a token's exp and nbf, in seconds.
    #[arg(long, env = "NEXUS_AUTH_CLOCK_LEEWAY", default_value = "30", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=300))]
    pub clock_leeway: u64,

    /// Seconds between reloads of the signing keys from the store, which
    /// bounds how soon a rotation made elsewhere takes effect here.
    #[arg(long, env = "NEXUS_AUTH_KEY_REFRESH", default_value = "10", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub key_refresh: u64,

    /// Seconds a signal lookup is reused before the store is asked again,
    /// which bounds how long a disabled, deleted or rotated signal keeps
    /// working here; 0 reads the store on every request.
    #[arg(long, env = "NEXUS_AUTH_SIGNAL_CACHE_TTL", default_value = "5", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=300))]
    pub signal_cache_ttl: u64,

    /// Maximum number of signal ids in the signal cache. Lookups of further
    /// ids go to the store uncached until entries expire.
    #[arg(long, env = "NEXUS_AUTH_SIGNAL_CACHE_MAX_ENTRIES", default_value = "50000", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub signal_cache_max_entries: u64,

    /// Failed logins allowed from one client address per window; 0 turns
    /// the limit off.
    #[arg(
        long,
        env = "NEXUS_AUTH_RATE_LIMIT_PER_ADDRESS",
        default_value = "20",
        value_name = "COUNT"
    )]
    pub rate_limit_per_address: u32,

    /// Failed logins allowed against one signal id, from all addresses, per
    /// window; 0 turns the limit off.
    #[arg(
        long,
        env = "NEXUS_AUTH_RATE_LIMIT_PER_SIGNAL",
        default_value = "60",
        value_name = "COUNT"
    )]
    pub rate_limit_per_signal: u32,

    /// Length of the failed-login window, in seconds.
    #[arg(long, env = "NEXUS_AUTH_RATE_LIMIT_WINDOW", default_value = "60", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub rate_limit_window: u64,

    /// Redis server that shares the failed-login counters between instances,
    /// such as redis://127.0.0.1:6379 or redis://:PASSWORD@host:6379/0;
    /// each instance counts on its own without it.
    #[arg(long, env = "NEXUS_AUTH_REDIS_URL", value_name = "URL", value_parser = read_redis_url)]
    pub redis_url: Option<RedisUrl>,

    /// Prefix of the Redis keys, so that several deployments can share one
    /// Redis server.
    #[arg(long, env = "NEXUS_AUTH_REDIS_KEY_PREFIX", default_value = "nexus-auth:", value_name = "PREFIX", value_parser = parse_claim)]
    pub redis_key_prefix: String,

    /// Maximum wait for one Redis call, in seconds; past it, a login uses
    /// this instance's own counters.
    #[arg(long, env = "NEXUS_AUTH_REDIS_TIMEOUT", default_value = "0.25", value_name = "SECONDS", value_parser = parse_redis_timeout)]
    pub redis_timeout: Duration,

    /// Count failed logins against the client address that a reverse proxy
    /// reports in Forwarded or X-Forwarded-For (the last entry), not the
    /// socket's peer. Set it only behind a proxy that sets those headers.
    #[arg(long, env = "NEXUS_AUTH_TRUST_PROXY_HEADERS")]
    pub trust_proxy_headers: bool,

    /// Seconds to receive a request's line and headers before responding
    /// with 408.
    #[arg(long, env = "NEXUS_AUTH_HEADER_TIMEOUT", default_value = "5", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout: u64,

    /// Seconds to receive a login body before responding with 408.
    #[arg(long, env = "NEXUS_AUTH_BODY_TIMEOUT", default_value = "10", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=300))]
    pub body_timeout: u64,

    /// Seconds an idle kept-alive connection stays open; 0 closes every
    /// connection after its response.
    #[arg(long, env = "NEXUS_AUTH_KEEP_ALIVE", default_value = "5", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub keep_alive: u64,

    /// Origin allowed to call the login, session and JWKS routes from a
    /// browser, such as https://app.example.com; repeat it for several, or
    /// give `*` for any. No CORS headers are sent without it.
    #[arg(long = "cors-origin", env = "NEXUS_AUTH_CORS_ORIGINS", value_delimiter = ',', value_name = "ORIGIN", value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Do not create the `demo` signal on a new store (no signal and no
    /// signing key yet).
    #[arg(long, env = "NEXUS_AUTH_NO_BOOTSTRAP")]
    pub no_bootstrap: bool,

    /// PEM file with the certificate chain (leaf first) to serve HTTPS
    /// with; needs --tls-key. Plain HTTP without it.
    #[arg(
        long,
        env = "NEXUS_AUTH_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert.
    #[arg(
        long,
        env = "NEXUS_AUTH_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Number of worker threads; one per CPU core by default.
    #[arg(long, env = "NEXUS_AUTH_WORKERS", value_name = "COUNT", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
}

fn parse_token_ttl(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(seconds) if (1..=MAX_TOKEN_TTL_SECONDS).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "expected a whole number of seconds from 1 to {MAX_TOKEN_TTL_SECONDS}"
        )),
    }
}

/// Accepts `*` or an origin: a scheme, `://` and a host with an optional
/// port, without a path, as browsers send it in `Origin`.
fn parse_origin(value: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected * or an origin such as https://app.example.com or http://127.0.0.1:3000, without a path";
    if value == "*" {
        return Ok(value.to_owned());
    }
    // actix-cors parses each origin as a URI only when the workers start,
    // and a value it rejects there stops every worker.
    let uri: actix_web::http::Uri = value.parse().map_err(|_| EXPECTED.to_owned())?;
    let authority = uri.authority().ok_or_else(|| EXPECTED.to_owned())?;
    let port = &authority.as_str()[authority.host().len()..];
    let port_is_valid = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|number| number.parse::<u16>().is_ok());
    let valid = uri.scheme().is_some()
        && !authority.host().is_empty()
        && port_is_valid
        && value.ends_with(authority.as_str())
        && !value.contains(['?', '#', ' ', '@']);
    if !valid {
        return Err(EXPECTED.to_owned());
    }
    Ok(value.to_owned())
}

fn parse_claim(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("expected a non-empty value".to_owned());
    }
    Ok(value.to_owned())
}

/// Wraps the URL unchecked: clap repeats a rejected value in its message,
/// which would print a password, so `redis_settings` checks it instead.
fn read_redis_url(value: &str) -> Result<RedisUrl, String> {
    Ok(RedisUrl::new(value))
}

/// Builds the Redis settings from `--redis-url` and its companions. The
/// error never repeats the URL, which may carry a password.
fn redis_settings(args: &ServeArgs) -> Result<Option<RedisSettings>, String> {
    let Some(url) = &args.redis_url else {
        return Ok(None);
    };
    let client = redis::Client::open(url.expose().as_str()).map_err(|error| {
        format!(
            "invalid value for --redis-url (NEXUS_AUTH_REDIS_URL): {error}; expected a URL such as redis://127.0.0.1:6379 or redis://:PASSWORD@host:6379/0"
        )
    })?;
    Ok(Some(RedisSettings {
        client,
        key_prefix: args.redis_key_prefix.clone(),
        timeout: args.redis_timeout,
    }))
}

fn parse_redis_timeout(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| "expected a number of seconds, such as 0.25 or 1".to_owned())?;
    if !(0.01..=10.0).contains(&seconds) {
        return Err("expected from 0.01 to 10 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_body_limit(value: &str) -> Result<usize, String> {
    let invalid = || "expected a size from 1KiB to 1MiB, such as 16384, 16KiB or 1MiB".to_owned();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(index) => value.split_at(index),
        None => (value, ""),
    };
    let multiplier = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return Err(invalid()),
    };
    let bytes = number
        .parse::<usize>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(invalid)?;
    if !(1024..=MAX_BODY_LIMIT).contains(&bytes) {
        return Err(invalid());
    }
    Ok(bytes)
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    // Certificate, HS256 secret, Redis URL and listen address problems are
    // found before the store is touched, so that a typo changes nothing.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::load_server_config(cert, key).map_err(|error| error.to_string())?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if args.signing_alg == SigningAlgorithm::Hs256 {
        let path = args
            .hs256_secret_file
            .as_ref()
            .ok_or_else(|| crate::keys::KeyError::MissingHmacSecret.to_string())?;
        crate::keys::load_hmac_secret(path).map_err(|error| error.to_string())?;
    }

    let redis = redis_settings(&args)?;
    let listener = TcpListener::bind(args.bind).map_err(|error| {
        format!(
            "cannot listen on {}: {error}; choose another address with --bind (NEXUS_AUTH_BIND)",
            args.bind
        )
    })?;

    let store = store::open(&args.store.options())
        .await
        .map_err(|error| error.to_string())?;

    if !args.no_bootstrap {
        bootstrap(store.as_ref()).await?;
    }

    let settings = Settings {
        token: TokenSettings {
            issuer: args.issuer.clone(),
            audience: args.audience.clone(),
            ttl_seconds: args.token_ttl,
        },
        signing_algorithm: args.signing_alg,
        hmac_secret_file: args.hs256_secret_file.clone(),
        clock_leeway: args.clock_leeway,
        key_refresh: args.key_refresh,
        login: LoginSettings {
            body_limit: args.body_limit,
            store_timeout: args.store.store_timeout,
            body_timeout: Duration::from_secs(args.body_timeout),
            rate_limit: RateLimitSettings {
                per_address: args.rate_limit_per_address,
                per_signal: args.rate_limit_per_signal,
                window: Duration::from_secs(args.rate_limit_window),
                redis,
                ..RateLimitSettings::default()
            },
            trust_proxy_headers: args.trust_proxy_headers,
        },
        cors_origins: args.cors_origins.clone(),
        signal_cache: SignalCacheSettings {
            ttl: Duration::from_secs(args.signal_cache_ttl),
            max_entries: usize::try_from(args.signal_cache_max_entries).unwrap_or(usize::MAX),
        },
    };
    let state = AppState::open(store.clone(), settings, unix_now())
        .await
        .map_err(|error| error.to_string())?;
    let ring = state.key_ring().clone();
    ring.clone()
        .refresh_every(store.clone(), Duration::from_secs(args.key_refresh));

    let state = web::Data::new(state);
    let options = ServerOptions {
        workers: args.workers.map(usize::from),
        tls,
        header_timeout: Some(Duration::from_secs(args.header_timeout)),
        keep_alive: Some(Duration::from_secs(args.keep_alive)),
    };
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let server = server::start(listener, state, options).map_err(|error| error.to_string())?;
    server::stop_on_signal(&server)
        .map_err(|error| format!("cannot install the SIGINT and SIGTERM handlers: {error}"))?;
    log::info!(
        "nexus-auth {} listening on {scheme}://{address}; store {}; signing key {} ({})",
        env!("CARGO_PKG_VERSION"),
        store.location(),
        ring.current().active.kid,
        ring.current().active.algorithm,
    );

    server
        .await
        .map_err(|error| format!("the server stopped with an error: {error}"))?;

    store.close().await;
    log::info!("nexus-auth stopped");
    Ok(())
}

/// Creates the `demo` signal on a new store, one with no signal and no
/// signing key yet, and prints its token once on standard output (never to
/// the log), so that a first request works right after the first start. A
/// store whose signals an operator deleted gets no `demo` signal back.
async fn bootstrap(store: &dyn SignalStore) -> Result<(), String> {
    let count = store
        .count_signals()
        .await
        .map_err(|error| error.to_string())?;
    let has_key = store
        .active_signing_key()
        .await
        .map_err(|error| error.to_string())?
        .is_some();
    if count > 0 || has_key {
        return Ok(());
    }
    let token = signal_token::generate().map_err(|error| error.to_string())?;
    let digest = signal_token::TokenDigest::of(&token);
    match store
        .create_signal(BOOTSTRAP_SIGNAL_ID, digest, unix_now())
        .await
    {
        Ok(()) => {}
        // Another process started on the same empty store first.
        Err(StoreError::AlreadyExists(_)) => return Ok(()),
        Err(error) => return Err(error.to_string()),
    }

    log::info!("created the signal {BOOTSTRAP_SIGNAL_ID:?} because the store is new");
    println!(
        "The store is new, so this signal was created. Its token is shown only this once:\n\n\
         \x20 signalId:    {BOOTSTRAP_SIGNAL_ID}\n\
         \x20 signalToken: {}\n\n\
         Start with --no-bootstrap (NEXUS_AUTH_NO_BOOTSTRAP=true) to skip this on a new store.\n",
        token.expose()
    );
    Ok(())
}
