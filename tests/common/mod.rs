//! Test support: a real server on a free loopback port with a fresh SQLite
//! store, a raw HTTP/1.1 client, and the fixture file format.

#![allow(dead_code)]

pub mod fixtures;
pub mod http;
pub mod postgres;
pub mod process;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use nexus_auth::app::{AppState, LoginSettings, Settings};
use nexus_auth::keys::SigningAlgorithm;
use nexus_auth::rate_limit::RateLimitSettings;
use nexus_auth::secret::SignalToken;
use nexus_auth::server::ServerOptions;
use nexus_auth::signal_cache::SignalCacheSettings;
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::signer::TokenSettings;
use nexus_auth::store::{self, SignalStore, StoreOptions, StoredKey};
use nexus_auth::time::unix_now;

pub use http::{RawRequest, RawResponse};

/// Returns a command that runs the built `nexus-auth` binary with every
/// `NEXUS_AUTH_*` variable removed, so settings come from flags only,
/// whatever the environment of the test run.
pub fn nexus_auth() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nexus-auth"));
    for (name, _) in std::env::vars() {
        if name.starts_with("NEXUS_AUTH_") {
            command.env_remove(name);
        }
    }
    command
}

/// Signals that the fixtures log in with: (id, token, enabled).
pub const FIXTURE_SIGNALS: &[(&str, &str, bool)] = &[
    (
        "fixture-signal",
        "sgt_FixtureToken0123456789abcdefghijklmnop",
        true,
    ),
    (
        "fixture signal \u{e9}",
        "sgt_fixture+plus token/slash=equals&amp_0123456789",
        true,
    ),
    (
        "fixture-disabled",
        "sgt_DisabledToken0123456789abcdefghijklmn",
        false,
    ),
];

pub const TEST_ISSUER: &str = "nexus-auth-test";
pub const TEST_AUDIENCE: &str = "fixture-audience";
pub const TEST_TTL_SECONDS: u64 = 3600;
pub const TEST_BODY_LIMIT: usize = 16 * 1024;

/// A running server with its own store in a temporary folder.
pub struct TestServer {
    pub address: SocketAddr,
    pub store: Arc<dyn SignalStore>,
    pub state: web::Data<AppState>,
    pub database_path: PathBuf,
    pub folder: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server whose store contains `FIXTURE_SIGNALS`.
    pub async fn start() -> TestServer {
        Self::start_with(test_settings(Duration::from_secs(2))).await
    }

    /// Starts a server with `settings` whose store contains
    /// `FIXTURE_SIGNALS`.
    pub async fn start_with(settings: Settings) -> TestServer {
        Self::start_custom(settings, ServerOptions::default()).await
    }

    /// Starts a server with `settings` and `options` (timeouts, keep-alive)
    /// whose store contains `FIXTURE_SIGNALS`.
    pub async fn start_custom(settings: Settings, options: ServerOptions) -> TestServer {
        let folder = tempfile::tempdir().unwrap();
        let server = Self::start_in(folder, settings, options).await;
        for (id, token, enabled) in FIXTURE_SIGNALS {
            let digest = TokenDigest::of(&SignalToken::new(*token));
            server
                .store
                .create_signal(id, digest, unix_now())
                .await
                .unwrap();
            if !enabled {
                server.store.set_signal_enabled(id, false).await.unwrap();
            }
        }
        server
    }

    /// Starts a server whose store contains no signal.
    pub async fn start_empty() -> TestServer {
        let folder = tempfile::tempdir().unwrap();
        let settings = test_settings(Duration::from_secs(2));
        Self::start_in(folder, settings, ServerOptions::default()).await
    }

    async fn start_in(
        folder: tempfile::TempDir,
        settings: Settings,
        options: ServerOptions,
    ) -> TestServer {
        let database_path = folder.path().join("nexus-auth.db");
        let store = open_store(&database_path).await;
        let state = AppState::open(store.clone(), settings, unix_now())
            .await
            .unwrap();
        let state = web::Data::new(state);
        let address = start_state_with(state.clone(), options);
        TestServer {
            address,
            store,
            state,
            database_path,
            folder,
        }
    }

    /// Starts a server in front of `store`, which waits at most
    /// `store_timeout` for it.
    pub async fn start_with_store(
        store: Arc<dyn SignalStore>,
        store_timeout: Duration,
    ) -> SocketAddr {
        let state = AppState::open(store, test_settings(store_timeout), unix_now())
            .await
            .unwrap();
        start_state(web::Data::new(state))
    }

    /// Starts a server on an existing database file, such as one that the
    /// command line manages or another server uses.
    pub async fn start_on(database_path: &Path) -> (SocketAddr, Arc<dyn SignalStore>) {
        let (address, store, _state) =
            Self::start_on_with(database_path, test_settings(Duration::from_secs(2))).await;
        (address, store)
    }

    pub async fn start_on_with(
        database_path: &Path,
        settings: Settings,
    ) -> (SocketAddr, Arc<dyn SignalStore>, web::Data<AppState>) {
        let store = open_store(database_path).await;
        let state = AppState::open(store.clone(), settings, unix_now())
            .await
            .unwrap();
        let state = web::Data::new(state);
        (start_state(state.clone()), store, state)
    }

    pub async fn send(&self, request: &RawRequest) -> RawResponse {
        http::send(self.address, request).await
    }

    pub async fn signing_key(&self) -> StoredKey {
        self.store
            .active_signing_key()
            .await
            .unwrap()
            .expect("a signing key")
    }

    /// Logs in as a fixture signal with a JSON body and returns the JWT.
    pub async fn login(&self, signal_id: &str, token: &str) -> String {
        let body = serde_json::json!({ "signalId": signal_id, "signalToken": token }).to_string();
        let response = self
            .send(&RawRequest::post(
                "/auth/login",
                Some("application/json"),
                body,
            ))
            .await;
        assert_eq!(
            response.status,
            200,
            "login: {}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()["token"].as_str().unwrap().to_owned()
    }
}

async fn open_store(path: &Path) -> Arc<dyn SignalStore> {
    let options = StoreOptions::new(path.display().to_string(), Duration::from_secs(2));
    store::open(&options).await.unwrap()
}

/// Settings of every test server: EdDSA, a fixed issuer and audience.
pub fn test_settings(store_timeout: Duration) -> Settings {
    Settings {
        token: TokenSettings {
            issuer: TEST_ISSUER.to_owned(),
            audience: Some(TEST_AUDIENCE.to_owned()),
            ttl_seconds: TEST_TTL_SECONDS,
        },
        signing_algorithm: SigningAlgorithm::EdDsa,
        hmac_secret_file: None,
        clock_leeway: 30,
        key_refresh: 10,
        login: LoginSettings {
            body_limit: TEST_BODY_LIMIT,
            store_timeout,
            body_timeout: Duration::from_secs(10),
            // The fixture sweeps send hundreds of failed logins from one
            // address; tests of the limits set their own.
            rate_limit: RateLimitSettings {
                per_address: 0,
                per_signal: 0,
                ..RateLimitSettings::default()
            },
            trust_proxy_headers: false,
        },
        cors_origins: Vec::new(),
        // Tests change signals through the store and expect the next request
        // to see the change; tests of the cache turn it on.
        signal_cache: SignalCacheSettings::off(),
    }
}

/// Serves `state` on a free loopback port; returns the address.
pub fn start_state(state: web::Data<AppState>) -> SocketAddr {
    start_state_with(state, ServerOptions::default())
}

/// Serves `state` with `options`, on two workers unless they set another count.
pub fn start_state_with(state: web::Data<AppState>, mut options: ServerOptions) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    options.workers = options.workers.or(Some(2));
    let server = nexus_auth::server::start(listener, state, options).unwrap();
    actix_web::rt::spawn(server);
    address
}
