//! The signal store: signals, their token digests, and the signing keys.
//!
//! `SignalStore` is the one interface the server and the command line use;
//! each backend implements it in its own module: SQLite for one instance,
//! PostgreSQL for several that share their signals and keys. Times are
//! seconds since the Unix epoch.

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::secret::KeyMaterial;
use crate::signal_token::TokenDigest;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The database URL used when none is given: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://nexus-auth.db";

/// A signal as the login needs it.
#[derive(Debug, Clone)]
pub struct SignalRecord {
    pub id: String,
    pub token_digest: TokenDigest,
    /// The token that the last rotation replaced, with the time at which it
    /// stops being accepted.
    pub previous_token: Option<(TokenDigest, i64)>,
    pub enabled: bool,
    /// Time the signal was created. A token issued before it belongs to an
    /// earlier signal of the same id, since deleted.
    pub created_at: i64,
}

/// A signal as `signals list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalSummary {
    pub id: String,
    pub enabled: bool,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    pub previous_token_expires_at: Option<i64>,
}

/// A signing key pair as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    /// JWS algorithm name, such as `EdDSA`.
    pub algorithm: String,
    pub private_key: KeyMaterial,
    pub public_key: Vec<u8>,
    pub created_at: i64,
    /// Time at which the key stopped signing; `None` while it may sign.
    pub retired_at: Option<i64>,
}

/// Errors of the signal store, worded for the operator who reads them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the signal {0:?} already exists; rotate its token with `signals rotate` or pick another id")]
    AlreadyExists(String),
    #[error("no signal with id {0:?} exists; `signals list` shows the existing ones")]
    NotFound(String),
    #[error("no signing key with id {0:?} exists; `keys list` shows the existing ones")]
    KeyNotFound(String),
    #[error("cannot open the store at {location}: {source}; check --database-url (NEXUS_AUTH_DATABASE_URL)")]
    Open {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Carries the URL's scheme only, because the rest may hold a password.
    #[error("unsupported database URL scheme {0:?}: use sqlite://PATH, a file path, or postgres://USER@HOST:PORT/DATABASE; check --database-url (NEXUS_AUTH_DATABASE_URL)")]
    UnsupportedUrl(String),
    #[error("invalid PostgreSQL URL: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE; check --database-url (NEXUS_AUTH_DATABASE_URL)")]
    InvalidPostgresUrl,
    #[error("no store exists at {0:?}; check --database-url (NEXUS_AUTH_DATABASE_URL), or create one with `serve`, `signals create` or `keys rotate`")]
    NoStore(String),
    #[error("the database URL names no file: use sqlite://PATH or a file path; check --database-url (NEXUS_AUTH_DATABASE_URL)")]
    NoDatabaseFile,
    #[error("the store did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the store failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the store holds an invalid value: {0}")]
    Corrupt(String),
}

/// Storage of signals and signing keys; one implementation per database.
#[async_trait]
pub trait SignalStore: Send + Sync {
    /// Describes where the data lives, without any password, for log lines.
    fn location(&self) -> &str;

    /// Checks that the store responds to a query.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn find_signal(&self, id: &str) -> Result<Option<SignalRecord>, StoreError>;

    async fn count_signals(&self) -> Result<u64, StoreError>;

    /// Lists every signal, ordered by id.
    async fn list_signals(&self) -> Result<Vec<SignalSummary>, StoreError>;

    /// Creates an enabled signal; fails with `AlreadyExists` for a taken id.
    async fn create_signal(
        &self,
        id: &str,
        digest: TokenDigest,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Replaces a signal's token. With `previous_expires_at`, the current
    /// token stays valid until then; without it, it stops at once.
    async fn rotate_signal(
        &self,
        id: &str,
        new_digest: TokenDigest,
        previous_expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;

    async fn set_signal_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError>;

    async fn delete_signal(&self, id: &str) -> Result<(), StoreError>;

    /// Returns the newest key that has not been retired, if any.
    async fn active_signing_key(&self) -> Result<Option<StoredKey>, StoreError>;

    /// Lists every signing key, newest first.
    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Adds `key` as the active signing key and retires every other key
    /// that has not been retired, at `now`, in one transaction.
    async fn add_active_signing_key(&self, key: &StoredKey, now: i64) -> Result<(), StoreError>;

    /// Stops `kid` from signing at `now`. Retiring a retired key changes
    /// nothing.
    async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<(), StoreError>;

    /// Closes every connection. Later calls fail as an unreachable store
    /// does, which is also how tests stand for one.
    async fn close(&self);
}

/// Store settings shared by the server and the command line.
#[derive(Clone)]
pub struct StoreOptions {
    /// May contain a password, so `Debug` leaves it out.
    pub database_url: String,
    /// Maximum wait for a connection or a query before the store counts as
    /// unavailable. Opening a new connection counts against it too.
    pub timeout: Duration,
    /// Connections in the pool at most; `None` takes the backend's default.
    pub max_connections: Option<u32>,
    /// Time after which an unused pooled connection is closed; `None` keeps
    /// idle connections open.
    pub idle_timeout: Option<Duration>,
    /// Creates the store when it does not exist yet: the SQLite file, or
    /// the tables in the PostgreSQL schema. Commands that only read or
    /// change existing data turn it off, so that a mistyped URL fails
    /// instead of creating an empty store. Migrations of an existing store
    /// run either way.
    pub create_if_missing: bool,
}

impl StoreOptions {
    /// Options for `database_url` with the default pool size and idle
    /// timeout.
    pub fn new(database_url: impl Into<String>, timeout: Duration) -> StoreOptions {
        StoreOptions {
            database_url: database_url.into(),
            timeout,
            max_connections: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            create_if_missing: true,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StoreOptions")
            .field("database_url", &"<hidden>")
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// Time after which an unused pooled connection is closed, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Opens the store that `options.database_url` names, creating and migrating
/// it when needed: `postgres://` or `postgresql://` for PostgreSQL, and
/// `sqlite:` or a file path for SQLite.
pub async fn open(options: &StoreOptions) -> Result<Arc<dyn SignalStore>, StoreError> {
    let url = options.database_url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url, options).await?));
    }
    // A PostgreSQL URL with a typo in its scheme would otherwise be taken
    // for a SQLite path, and the error would print its password.
    let lower = url.to_ascii_lowercase();
    let looks_like_credentials = !url.contains("://") && url.contains(':') && url.contains('@');
    if lower.starts_with("postgres") || looks_like_credentials && !lower.starts_with("sqlite:") {
        return Err(StoreError::InvalidPostgresUrl);
    }
    let is_sqlite = url.starts_with("sqlite:") || !url.contains("://");
    if !is_sqlite {
        let scheme = url.split("://").next().unwrap_or_default();
        return Err(StoreError::UnsupportedUrl(scheme.to_owned()));
    }

    // An empty path or an in-memory database would give each pooled
    // connection its own empty database, and lose every signal on restart.
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let in_memory = query.split('&').any(|parameter| parameter == "mode=memory");
    if path.is_empty() || path == ":memory:" || in_memory {
        return Err(StoreError::NoDatabaseFile);
    }
    if !options.create_if_missing && !std::path::Path::new(path).exists() {
        return Err(StoreError::NoStore(path.to_owned()));
    }
    Ok(Arc::new(SqliteStore::open(url, options).await?))
}
