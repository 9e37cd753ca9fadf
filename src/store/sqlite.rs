//! SQLite backend of the signal store: one file beside the server, created
//! and migrated on first use.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

use super::{SignalRecord, SignalStore, SignalSummary, StoreError, StoreOptions, StoredKey};
use crate::secret::KeyMaterial;
use crate::signal_token::TokenDigest;

/// Token digest of the placeholder row that `find_signal` decodes when no
/// signal has the id.
const PLACEHOLDER_DIGEST: [u8; 32] = [0; 32];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Default pool size. SQLite permits one writer at a time; a few connections
/// serve concurrent reads without queueing behind each other.
const DEFAULT_MAX_CONNECTIONS: u32 = 4;

pub struct SqliteStore {
    pool: SqlitePool,
    location: String,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, which is either a
    /// `sqlite:` URL or a file path, and applies pending migrations.
    pub async fn open(url: &str, settings: &StoreOptions) -> Result<Self, StoreError> {
        let timeout = settings.timeout;
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(|error| StoreError::Open {
                location: url.to_owned(),
                source: Box::new(error),
            })?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let path = options.get_filename().to_path_buf();
        let location = path.display().to_string();
        let is_new = !path.exists();

        let options = options
            .create_if_missing(settings.create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(timeout)
            .idle_timeout(settings.idle_timeout)
            .connect_with(options)
            .await
            .map_err(|error| open_error(&location, error))?;

        if is_new {
            restrict_to_owner(&path).map_err(|error| open_error(&location, error))?;
        }
        migrate(&pool)
            .await
            .map_err(|error| open_error(&location, error))?;

        Ok(Self { pool, location })
    }
}

/// Applies pending migrations. SQLite offers sqlx no migration lock, so two
/// processes that start on a new file together can both try the first
/// migration. The loser retries once the winner has recorded it.
async fn migrate(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < ATTEMPTS => {
                log::info!("migrating the store failed ({error}); retrying, as another process may be migrating it");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn open_error(location: &str, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Open {
        location: location.to_owned(),
        source: Box::new(error),
    }
}

/// Makes a new database file readable and writable by its owner only,
/// because it contains the private signing key.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path != Path::new(":memory:") && path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

const SELECT_KEYS: &str =
    "SELECT kid, algorithm, private_key, public_key, created_at, retired_at FROM signing_keys";

fn key_from_row(row: &SqliteRow) -> Result<StoredKey, StoreError> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        algorithm: row.try_get("algorithm")?,
        private_key: KeyMaterial::new(row.try_get::<Vec<u8>, _>("private_key")?),
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

fn digest_column(row: &SqliteRow, column: &str) -> Result<TokenDigest, StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    TokenDigest::from_slice(&bytes).ok_or_else(|| {
        StoreError::Corrupt(format!("{column} is {} bytes, expected 32", bytes.len()))
    })
}

/// Maps "no row changed" to `NotFound` for updates and deletes by id.
fn require_changed(result: sqlx::sqlite::SqliteQueryResult, id: &str) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    Ok(())
}

#[async_trait]
impl SignalStore for SqliteStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn find_signal(&self, id: &str) -> Result<Option<SignalRecord>, StoreError> {
        // The query returns exactly one row whether or not the signal
        // exists, after one index probe: the signal, or placeholders of the
        // same shape. Reading and decoding it is then the same work on both
        // paths, so a login with an unknown id does not return measurably faster.
        let row = sqlx::query(
            "SELECT wanted.id AS id,
                    COALESCE(signals.token_digest, ?2) AS token_digest,
                    signals.previous_token_digest, signals.previous_token_expires_at,
                    COALESCE(signals.enabled, 0) AS enabled,
                    COALESCE(signals.created_at, 0) AS created_at,
                    signals.id IS NOT NULL AS found
             FROM (SELECT ?1 AS id) AS wanted
             LEFT JOIN signals ON signals.id = wanted.id",
        )
        .bind(id)
        .bind(&PLACEHOLDER_DIGEST[..])
        .fetch_one(&self.pool)
        .await?;

        let previous_token = match row.try_get::<Option<i64>, _>("previous_token_expires_at")? {
            Some(expires_at) => Some((digest_column(&row, "previous_token_digest")?, expires_at)),
            None => None,
        };
        let record = SignalRecord {
            id: row.try_get("id")?,
            token_digest: digest_column(&row, "token_digest")?,
            previous_token,
            enabled: row.try_get("enabled")?,
            created_at: row.try_get("created_at")?,
        };
        let found: bool = row.try_get("found")?;
        Ok(found.then_some(record))
    }

    async fn count_signals(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signals")
            .fetch_one(&self.pool)
            .await?;
        Ok(count.max(0) as u64)
    }

    async fn list_signals(&self) -> Result<Vec<SignalSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, enabled, created_at, rotated_at, previous_token_expires_at
             FROM signals ORDER BY id",
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
            "INSERT INTO signals (id, token_digest, enabled, created_at) VALUES (?, ?, 1, ?)",
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
                previous_token_digest = CASE WHEN ?1 IS NULL THEN NULL ELSE token_digest END,
                previous_token_expires_at = ?1,
                token_digest = ?2,
                rotated_at = ?3
             WHERE id = ?4",
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
        let result = sqlx::query("UPDATE signals SET enabled = ? WHERE id = ?")
            .bind(enabled)
            .bind(id)
            .execute(&self.pool)
            .await?;
        require_changed(result, id)
    }

    async fn delete_signal(&self, id: &str) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM signals WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        require_changed(result, id)
    }

    async fn active_signing_key(&self) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query(&format!(
            "{SELECT_KEYS} WHERE retired_at IS NULL ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_KEYS} ORDER BY created_at DESC, rowid DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn add_active_signing_key(&self, key: &StoredKey, now: i64) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at)
             VALUES (?, ?, ?, ?, ?)",
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
            "UPDATE signing_keys SET retired_at = COALESCE(retired_at, ?) WHERE kid = ?",
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
