//! PostgreSQL for tests: each test gets its own schema in the test database,
//! dropped when the test ends, so that parallel tests and runs never see
//! each other's rows.
//!
//! The database is `NEXUS_AUTH_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`. When it cannot be reached, a
//! test fails if the `CI` environment variable is set, and otherwise prints
//! why it is skipped and returns.

use std::io::Write;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// Environment variable with the URL of the database that tests create
/// their schemas in.
pub const TEST_POSTGRES_URL_VARIABLE: &str = "NEXUS_AUTH_TEST_POSTGRES_URL";

/// Database used when `NEXUS_AUTH_TEST_POSTGRES_URL` is not set: the local
/// server with trust authentication.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Maximum wait for the test database to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns the URL of the test database.
pub fn test_database_url() -> String {
    std::env::var(TEST_POSTGRES_URL_VARIABLE)
        .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned())
}

/// A schema of its own in the test database, dropped with everything in it
/// when the value is dropped.
pub struct TestSchema {
    pub name: String,
    /// URL of the test database with `search_path` set to this schema, so
    /// that a store opened on it creates and reads its tables there.
    pub url: String,
    database_url: String,
}

impl TestSchema {
    /// Creates a schema with a unique name. Returns `None` after printing
    /// the reason when PostgreSQL is unreachable and `CI` is not set; panics
    /// when it is unreachable and `CI` is set.
    pub async fn create(test_name: &str) -> Option<TestSchema> {
        let database_url = test_database_url();
        let mut connection = match connect(&database_url).await {
            Ok(connection) => connection,
            Err(reason) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{test_name}: PostgreSQL is unreachable at {} ({reason}), and CI is set, so \
                     this test must run: start PostgreSQL or set {TEST_POSTGRES_URL_VARIABLE}",
                    without_password(&database_url)
                );
                // Written to the stderr handle itself, because libtest
                // captures eprintln! output and shows it only for failed
                // tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test_name}: skipped because PostgreSQL is unreachable at {} ({reason}). \
                     Start it or set {TEST_POSTGRES_URL_VARIABLE} to run this test.",
                    without_password(&database_url)
                );
                return None;
            }
        };

        let name = format!("nexus_auth_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{test_name}: cannot create schema {name}: {error}"));
        let _ = connection.close().await;

        let separator = if database_url.contains('?') { '&' } else { '?' };
        let url = format!("{database_url}{separator}options=-c%20search_path%3D{name}");
        Some(TestSchema {
            name,
            url,
            database_url,
        })
    }
}

impl Drop for TestSchema {
    /// Drops the schema on a thread of its own, because `Drop` cannot await
    /// and the test's runtime may be the one that is being dropped.
    fn drop(&mut self) {
        let database_url = self.database_url.clone();
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut connection = connect(&database_url).await?;
                sqlx::query(&statement)
                    .execute(&mut connection)
                    .await
                    .map_err(|error| error.to_string())?;
                let _ = connection.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "cannot drop test schema {}: {error}",
                self.name
            );
        }
    }
}

async fn connect(database_url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(database_url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
    }
}

/// Returns `url` with the password, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((user_info, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
