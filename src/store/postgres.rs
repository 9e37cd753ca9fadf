//! PostgreSQL backend of the signal store, for several instances that share
//! their signals and signing keys. The schema is the SQLite one in
//! PostgreSQL types, created by the first instance that starts.

use std::borrow::Cow;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};

use super::{SignalRecord, SignalStore, SignalSummary, StoreError, StoreOptions, StoredKey};
use crate::secret::KeyMaterial;
use crate::signal_token::TokenDigest;

/// Token digest of the placeholder row that `find_signal` decodes when no
/// signal has the id.
const PLACEHOLDER_DIGEST: [u8; 32] = [0; 32];

/// Applies the migrations. sqlx's PostgreSQL migrator holds an advisory lock
/// on the database while it runs, so instances that start together on an
/// empty database apply each migration once, one after the other.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Default pool size per instance. A login or session check uses a
/// connection for one indexed read only. The PostgreSQL server's own limit
/// (`max_connections`, 100 by default) is shared by every instance and the
/// command line.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

pub struct PostgresStore {
    pool: PgPool,
    location: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`)
    /// and applies pending migrations in the first schema of the
    /// connection's `search_path`, which the URL can set with
    /// `options=-c search_path=SCHEMA` (`public` by default).
    pub async fn open(url: &str, settings: &StoreOptions) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|error| StoreError::Open {
            location: "the PostgreSQL URL".to_owned(),
            source: Box::new(error),
        })?;
        let location = describe(&options);

        // The pool reports a failed connection only as a timeout, so one
        // connection is opened first to give the operator the cause, such
        // as a refused connection or a failed password authentication.
        match tokio::time::timeout(settings.timeout, PgConnection::connect_with(&options)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
            }
            Ok(Err(error)) => return Err(open_error(&location, error)),
            Err(_) => {
                return Err(open_error(
                    &location,
                    StoreError::TimedOut(settings.timeout),
                ))
            }
        }

        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .min_connections(0)
            .acquire_timeout(settings.timeout)
            .idle_timeout(settings.idle_timeout)
            // A connection that the server or the network dropped is found
            // and replaced before a request uses it, so that the store
            // recovers from an outage without a restart.
            .test_before_acquire(true)
            .connect_with(options)
            .await
            .map_err(|error| open_error(&location, error))?;

        if !settings.create_if_missing {
            // Commands that only read or change existing data must not
            // create the tables in a schema that a mistyped URL selects.
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('signals') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .map_err(|error| open_error(&location, error))?;
            if !exists {
                pool.close().await;
                return Err(StoreError::NoStore(location));
            }
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|error| open_error(&location, error))?;

        Ok(Self { pool, location })
    }
}

/// Describes the database as `postgres://USER@HOST:PORT/DATABASE`, leaving
/// out the password and every other parameter.
fn describe(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_owned(),
    };
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        host,
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

fn open_error(location: &str, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Open {
        location: location.to_owned(),
        source: Box::new(error),
    }
}

const SELECT_KEYS: &str =
    "SELECT kid, algorithm, private_key, public_key, created_at, retired_at FROM signing_keys";

fn key_from_row(row: &PgRow) -> Result<StoredKey, StoreError> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        algorithm: row.try_get("algorithm")?,
        private_key: KeyMaterial::new(row.try_get::<Vec<u8>, _>("private_key")?),
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

fn digest_column(row: &PgRow, column: &str) -> Result<TokenDigest, StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    TokenDigest::from_slice(&bytes).ok_or_else(|| {
        StoreError::Corrupt(format!("{column} is {} bytes, expected 32", bytes.len()))
    })
}

/// Maps "no row changed" to `NotFound` for updates and deletes by id.
fn require_changed(result: PgQueryResult, id: &str) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    Ok(())
}

#[async_trait]
impl SignalStore for PostgresStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn find_signal(&self, id: &str) -> Result<Option<SignalRecord>, StoreError> {
        // PostgreSQL text cannot contain NUL, and binding one fails the
        // query. No signal has such an id, so the lookup runs on the id
        // without its NULs, for the same work, and reports "not found".
        let storable = !id.contains('\0');
        let lookup_id = if storable {
            Cow::Borrowed(id)
        } else {
            Cow::Owned(id.replace('\0', ""))
        };

        // The query returns exactly one row whether or not the signal
        // exists, after one index probe: the signal, or placeholders of the
        // same shape. Reading and decoding it is then the same work on both
        // paths, so a login with an unknown id does not return measurably
        // faster.
        let row = sqlx::query(
            "SELECT wanted.id AS id,
                    COALESCE(signals.token_digest, $2) AS token_digest,
                    signals.previous_token_digest, signals.previous_token_expires_at,
                    COALESCE(signals.enabled, FALSE) AS enabled,
                    COALESCE(signals.created_at, 0) AS created_at,
                    signals.id IS NOT NULL AS found
             FROM (SELECT $1::TEXT AS id) AS wanted
             LEFT JOIN signals ON signals.id = wanted.id",
        )
        .bind(lookup_id.as_ref())
        .bind(&PLACEHOLDER_DIGEST[..])
        .fetch_one(&self.pool)
        .await?;

        let previous_token = match row.try_get::<Option<i64>, _>("previous_token_expires_at")? {
            Some(expires_at) => Some((digest_column(&row, "previous_token_digest")?, expires_at)),
            None => None,
        };
        let record = SignalRecord {
            id: id.to_owned(),
            token_digest: digest_column(&row, "token_digest")?,
            previous_token,
            enabled: row.try_get("enabled")?,
            created_at: row.try_get("created_at")?,
        };
        let found: bool = row.try_get("found")?;
        Ok((found && storable).then_some(record))
    }

    async fn count_signals(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signals")
            .fetch_one(&self.pool)
            .await?;
        Ok(count.max(0) as u64)
    }

    async fn list_signals(&self) -> Result<Vec<SignalSummary>, StoreError> {
        // Byte order ("C" collation), as SQLite sorts text, whatever the
        // database's default collation.
        let rows = sqlx::query(
            "SELECT id, enabled, created_at, rotated_at, previous_token_expires_at
             FROM signals ORDER BY id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SignalSummary {
                    id: row.try_get("id")?,
                    enabled: row.try_get("enabled")?,
                    created_at: row.try_get("created_at")?,
                    rotated_at: row.try_get("rotated_at")?,
                    previous_token_expires_at: row.try_get("previous_token_expires_at")?,
                })
            })
            .collect()
    }

    async fn create_signal(
        &self,
        id: &str,
        digest: TokenDigest,
        now: i64,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO signals (id, token_digest, enabled, created_at) VALUES ($1, $2, TRUE, $3)",
        )
        .bind(id)
        .bind(&digest.0[..])
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(StoreError::AlreadyExists(id.to_owned()))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn rotate_signal(
        &self,
        id: &str,
        new_digest: TokenDigest,
        previous_expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        // Without a grace period the old digest is dropped, so that nothing
        // of a token that no longer works stays in the store.
        let result = sqlx::query(
            "UPDATE signals SET
                previous_token_digest = CASE WHEN $1::BIGINT IS NULL THEN NULL ELSE token_digest END,
                previous_token_expires_at = $1,
                token_digest = $2,
                rotated_at = $3
             WHERE id = $4",
        )
        .bind(previous_expires_at)
        .bind(&new_digest.0[..])
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        require_changed(result, id)
    }

    async fn set_signal_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE signals SET enabled = $1 WHERE id = $2")
            .bind(enabled)
            .bind(id)
            .execute(&self.pool)
            .await?;
        require_changed(result, id)
    }

    async fn delete_signal(&self, id: &str) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM signals WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        require_changed(result, id)
    }

    async fn active_signing_key(&self) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query(&format!(
            "{SELECT_KEYS} WHERE retired_at IS NULL
             ORDER BY created_at DESC, insertion_order DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_KEYS} ORDER BY created_at DESC, insertion_order DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn add_active_signing_key(&self, key: &StoredKey, now: i64) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        // Two instances that start together on an empty database both add a
        // key. The lock makes the second one's UPDATE see and retire the
        // first one's key, so that exactly one key stays active. Readers
        // are not blocked.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_key.expose()[..])
        .bind(&key.public_key)
        .bind(key.created_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE signing_keys SET retired_at = COALESCE(retired_at, $1) WHERE kid = $2",
        )
        .bind(now)
        .bind(kid)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::KeyNotFound(kid.to_owned()));
        }
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
