//! The `SignalStore` contract, checked against both backends: each check
//! runs once on a new SQLite file and once in a new PostgreSQL schema, as
//! `CHECK::sqlite` and `CHECK::postgres`. A few PostgreSQL-only tests at
//! the end cover its URL handling.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::postgres::TestSchema;
use nexus_auth::keys::{self, SigningAlgorithm};
use nexus_auth::secret::SignalToken;
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::store::{self, SignalStore, StoreError, StoreOptions};

const TIMEOUT: Duration = Duration::from_secs(5);

/// What keeps a test database alive until the check has run: the SQLite
/// file's folder or the PostgreSQL schema.
struct Database {
    _folder: Option<tempfile::TempDir>,
    _schema: Option<TestSchema>,
}

/// Returns options for a database that no store has opened yet, or `None`
/// when PostgreSQL is unreachable and the test may be skipped.
async fn empty_database(postgres: bool, test_name: &str) -> Option<(StoreOptions, Database)> {
    if postgres {
        let schema = TestSchema::create(test_name).await?;
        let options = StoreOptions {
            max_connections: Some(4),
            ..StoreOptions::new(schema.url.clone(), TIMEOUT)
        };
        let database = Database {
            _folder: None,
            _schema: Some(schema),
        };
        return Some((options, database));
    }
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("store.db");
    let options = StoreOptions::new(path.display().to_string(), TIMEOUT);
    let database = Database {
        _folder: Some(folder),
        _schema: None,
    };
    Some((options, database))
}

async fn open(options: &StoreOptions) -> Arc<dyn SignalStore> {
    store::open(options).await.unwrap()
}

fn digest(token: &str) -> TokenDigest {
    TokenDigest::of(&SignalToken::new(token))
}

/// Defines `CHECK::sqlite` and `CHECK::postgres` for each named check, an
/// `async fn(StoreOptions)` that receives options for an empty database.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        $(
            mod $check {
                #[actix_web::test]
                async fn sqlite() {
                    let name = concat!(stringify!($check), "::sqlite");
                    let (options, database) = super::empty_database(false, name).await.unwrap();
                    super::$check(options).await;
                    drop(database);
                }

                #[actix_web::test]
                async fn postgres() {
                    let name = concat!(stringify!($check), "::postgres");
                    let Some((options, database)) = super::empty_database(true, name).await
                    else {
                        return;
                    };
                    super::$check(options).await;
                    drop(database);
                }
            }
        )*
    };
}

on_both_backends!(
    signal_lifecycle,
    lookup_of_unusual_ids,
    rotation_keeps_previous_only_with_grace,
    list_in_byte_order,
    signing_key_rotation_and_retirement,
    same_second_keys_in_insertion_order,
    concurrent_first_open,
    concurrent_create_of_one_id,
    concurrent_key_generation,
    closed_store_fails,
);

async fn signal_lifecycle(options: StoreOptions) {
    let store = open(&options).await;
    assert_eq!(store.count_signals().await.unwrap(), 0, "new store");
    assert!(store.find_signal("sensor").await.unwrap().is_none());

    store
        .create_signal("sensor", digest("token-1"), 1_000)
        .await
        .unwrap();
    let record = store.find_signal("sensor").await.unwrap().expect("created");
    assert_eq!(record.id, "sensor");
    assert!(record.token_digest.matches(&digest("token-1")));
    assert!(record.previous_token.is_none());
    assert!(record.enabled);
    assert_eq!(record.created_at, 1_000);
    assert_eq!(store.count_signals().await.unwrap(), 1);

    let duplicate = store
        .create_signal("sensor", digest("token-2"), 2_000)
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::AlreadyExists(ref id)) if id == "sensor"),
        "{duplicate:?}"
    );
    let record = store.find_signal("sensor").await.unwrap().unwrap();
    assert!(
        record.token_digest.matches(&digest("token-1")),
        "a failed create changed the token"
    );

    store.set_signal_enabled("sensor", false).await.unwrap();
    assert!(!store.find_signal("sensor").await.unwrap().unwrap().enabled);
    store.set_signal_enabled("sensor", true).await.unwrap();
    assert!(store.find_signal("sensor").await.unwrap().unwrap().enabled);

    let listing = store.list_signals().await.unwrap();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].id, "sensor");
    assert!(listing[0].enabled);
    assert_eq!(listing[0].created_at, 1_000);
    assert_eq!(listing[0].rotated_at, None);

    for (operation, result) in [
        (
            "enable",
            store.set_signal_enabled("missing", true).await.err(),
        ),
        (
            "rotate",
            store
                .rotate_signal("missing", digest("x"), None, 1)
                .await
                .err(),
        ),
        ("delete", store.delete_signal("missing").await.err()),
    ] {
        assert!(
            matches!(result, Some(StoreError::NotFound(ref id)) if id == "missing"),
            "{operation} of an unknown signal: {result:?}"
        );
    }

    store.delete_signal("sensor").await.unwrap();
    assert!(store.find_signal("sensor").await.unwrap().is_none());
    assert_eq!(store.count_signals().await.unwrap(), 0);

    // An id may be reused after a delete; the new signal has its own
    // creation time, which keeps the old signal's tokens dead.
    store
        .create_signal("sensor", digest("token-3"), 3_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_signal("sensor")
            .await
            .unwrap()
            .unwrap()
            .created_at,
        3_000
    );
    store.close().await;
}

async fn lookup_of_unusual_ids(options: StoreOptions) {
    let store = open(&options).await;
    let long_id = "\u{e9}".repeat(256);
    for id in [
        "fixture signal \u{e9}",
        long_id.as_str(),
        "trailing ",
        "Case",
    ] {
        store.create_signal(id, digest(id), 1).await.unwrap();
        let record = store.find_signal(id).await.unwrap();
        assert_eq!(
            record.map(|record| record.id),
            Some(id.to_owned()),
            "{id:?}"
        );
    }

    // Ids match byte for byte: no case folding, trimming or normalization.
    for id in ["case", "CASE", "trailing", "fixture signal e\u{301}", ""] {
        let record = store.find_signal(id).await.unwrap();
        assert!(record.is_none(), "{id:?} matched another signal");
    }

    // A NUL may arrive in a login's signalId. PostgreSQL text cannot hold
    // it, so the lookup must return "not found" rather than fail.
    for id in ["Case\0", "\0", "tra\0iling "] {
        let record = store.find_signal(id).await;
        assert!(matches!(record, Ok(None)), "{id:?}: {record:?}");
    }
    store.close().await;
}

async fn rotation_keeps_previous_only_with_grace(options: StoreOptions) {
    let store = open(&options).await;
    store
        .create_signal("sensor", digest("first"), 100)
        .await
        .unwrap();

    store
        .rotate_signal("sensor", digest("second"), Some(5_000), 200)
        .await
        .unwrap();
    let record = store.find_signal("sensor").await.unwrap().unwrap();
    assert!(record.token_digest.matches(&digest("second")));
    let (previous, expires_at) = record.previous_token.expect("grace period");
    assert!(previous.matches(&digest("first")));
    assert_eq!(expires_at, 5_000);
    let listing = store.list_signals().await.unwrap();
    assert_eq!(listing[0].rotated_at, Some(200));
    assert_eq!(listing[0].previous_token_expires_at, Some(5_000));

    store
        .rotate_signal("sensor", digest("third"), None, 300)
        .await
        .unwrap();
    let record = store.find_signal("sensor").await.unwrap().unwrap();
    assert!(record.token_digest.matches(&digest("third")));
    assert!(
        record.previous_token.is_none(),
        "a rotation without grace kept the previous token"
    );
    let listing = store.list_signals().await.unwrap();
    assert_eq!(listing[0].rotated_at, Some(300));
    assert_eq!(listing[0].previous_token_expires_at, None);
    assert_eq!(listing[0].created_at, 100, "rotation changed created_at");
    store.close().await;
}

async fn list_in_byte_order(options: StoreOptions) {
    let store = open(&options).await;
    for id in ["b", "\u{e9}", "B", "a-2", "a", "Z", "a 1"] {
        store.create_signal(id, digest(id), 1).await.unwrap();
    }
    let ids: Vec<String> = store
        .list_signals()
        .await
        .unwrap()
        .into_iter()
        .map(|summary| summary.id)
        .collect();
    assert_eq!(ids, ["B", "Z", "a", "a 1", "a-2", "b", "\u{e9}"]);
    store.close().await;
}

async fn signing_key_rotation_and_retirement(options: StoreOptions) {
    let store = open(&options).await;
    assert!(store.active_signing_key().await.unwrap().is_none());

    let first = keys::generate(SigningAlgorithm::EdDsa, 1_000).unwrap();
    store.add_active_signing_key(&first, 1_000).await.unwrap();
    let active = store.active_signing_key().await.unwrap().unwrap();
    assert_eq!(active.kid, first.kid);
    assert_eq!(active.algorithm, "EdDSA");
    assert_eq!(active.private_key.expose(), first.private_key.expose());
    assert_eq!(active.public_key, first.public_key);
    assert_eq!(active.retired_at, None);

    let second = keys::generate(SigningAlgorithm::Es256, 2_000).unwrap();
    store.add_active_signing_key(&second, 2_000).await.unwrap();
    let active = store.active_signing_key().await.unwrap().unwrap();
    assert_eq!(active.kid, second.kid);
    assert_eq!(active.algorithm, "ES256");

    let listed = store.list_signing_keys().await.unwrap();
    let kids: Vec<&str> = listed.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(
        kids,
        [second.kid.as_str(), first.kid.as_str()],
        "newest first"
    );
    assert_eq!(listed[1].retired_at, Some(2_000), "replaced key retired");

    store.retire_signing_key(&second.kid, 3_000).await.unwrap();
    assert!(store.active_signing_key().await.unwrap().is_none());
    // Retiring again keeps the first retirement time.
    store.retire_signing_key(&second.kid, 4_000).await.unwrap();
    let listed = store.list_signing_keys().await.unwrap();
    assert_eq!(listed[0].retired_at, Some(3_000));

    let missing = store.retire_signing_key("no-such-kid", 5_000).await;
    assert!(
        matches!(missing, Err(StoreError::KeyNotFound(ref kid)) if kid == "no-such-kid"),
        "{missing:?}"
    );
    store.close().await;
}

async fn same_second_keys_in_insertion_order(options: StoreOptions) {
    let store = open(&options).await;
    let mut added = Vec::new();
    for _ in 0..4 {
        let key = keys::generate(SigningAlgorithm::EdDsa, 7_000).unwrap();
        store.add_active_signing_key(&key, 7_000).await.unwrap();
        added.push(key.kid);
    }
    let active = store.active_signing_key().await.unwrap().unwrap();
    assert_eq!(&active.kid, added.last().unwrap(), "last added is active");

    let listed: Vec<String> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|key| key.kid)
        .collect();
    added.reverse();
    assert_eq!(listed, added, "newest first, by insertion within a second");
    store.close().await;
}

/// Several processes starting on one empty database must not fail on each
/// other's migrations.
async fn concurrent_first_open(options: StoreOptions) {
    let opened = futures_util::future::join_all((0..4).map(|_| store::open(&options))).await;
    let mut stores = Vec::new();
    for (index, result) in opened.into_iter().enumerate() {
        match result {
            Ok(store) => stores.push(store),
            Err(error) => panic!("open {index} failed: {error}"),
        }
    }

    stores[0]
        .create_signal("sensor", digest("token"), 1)
        .await
        .unwrap();
    for (index, store) in stores.iter().enumerate() {
        assert!(
            store.find_signal("sensor").await.unwrap().is_some(),
            "store {index} does not see the shared signal"
        );
        store.close().await;
    }
}

async fn concurrent_create_of_one_id(options: StoreOptions) {
    let store = open(&options).await;
    let results = futures_util::future::join_all(
        (0..8).map(|index| store.create_signal("contested", digest(&format!("t{index}")), 1)),
    )
    .await;
    let created = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for result in &results {
        assert!(
            matches!(result, Ok(()) | Err(StoreError::AlreadyExists(_))),
            "{result:?}"
        );
    }
    store.close().await;
}

/// Two servers starting on an empty store both generate a key; one key
/// must stay active, not two.
async fn concurrent_key_generation(options: StoreOptions) {
    let first_store = open(&options).await;
    let second_store = open(&options).await;
    for round in 0..5 {
        let first = keys::generate(SigningAlgorithm::EdDsa, 10 + round).unwrap();
        let second = keys::generate(SigningAlgorithm::EdDsa, 10 + round).unwrap();
        let (first_result, second_result) = futures_util::future::join(
            first_store.add_active_signing_key(&first, 10 + round),
            second_store.add_active_signing_key(&second, 10 + round),
        )
        .await;
        first_result.unwrap();
        second_result.unwrap();

        let active: Vec<String> = first_store
            .list_signing_keys()
            .await
            .unwrap()
            .into_iter()
            .filter(|key| key.retired_at.is_none())
            .map(|key| key.kid)
            .collect();
        assert_eq!(active.len(), 1, "round {round}: active keys {active:?}");
        assert!(
            active[0] == first.kid || active[0] == second.kid,
            "round {round}"
        );
    }
    first_store.close().await;
    second_store.close().await;
}

async fn closed_store_fails(options: StoreOptions) {
    let store = open(&options).await;
    store.ping().await.unwrap();
    store.close().await;
    assert!(store.ping().await.is_err(), "ping after close");
    assert!(
        store.find_signal("sensor").await.is_err(),
        "lookup after close"
    );
}

/// Inserts `password` into `url` after its user name.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').expect("the test URL names a user");
    let user = user.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

#[actix_web::test]
async fn postgres_location_hides_password() {
    let Some(schema) = TestSchema::create("postgres_location_hides_password").await else {
        return;
    };
    // The test server trusts local connections, so it accepts any password.
    let password = "Pa55word-that-must-not-leak";
    let options = StoreOptions::new(with_password(&schema.url, password), TIMEOUT);
    let store = store::open(&options).await.unwrap();
    let location = store.location().to_owned();
    assert!(!location.contains(password), "{location}");
    if std::env::var_os(common::postgres::TEST_POSTGRES_URL_VARIABLE).is_none() {
        assert_eq!(location, "postgres://postgres@127.0.0.1:5432/test");
    }
    assert!(
        !format!("{options:?}").contains(password),
        "StoreOptions Debug shows the URL"
    );
    store.close().await;
}

#[actix_web::test]
async fn postgresql_scheme_accepted() {
    let Some(schema) = TestSchema::create("postgresql_scheme_accepted").await else {
        return;
    };
    let url = schema.url.replacen("postgres://", "postgresql://", 1);
    let store = store::open(&StoreOptions::new(url, TIMEOUT)).await.unwrap();
    store.create_signal("sensor", digest("t"), 1).await.unwrap();
    assert_eq!(store.count_signals().await.unwrap(), 1);
    store.close().await;
}

#[actix_web::test]
async fn open_errors_hide_password() {
    let password = "Pa55word-that-must-not-leak";
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let unreachable = format!("postgres://postgres:{password}@127.0.0.1:1/test");
    let unsupported = format!("mysql://root:{password}@127.0.0.1:3306/test");
    for (url, expected) in [
        (unreachable, "postgres://postgres@127.0.0.1:1/test"),
        (unsupported, "\"mysql\""),
    ] {
        let options = StoreOptions::new(url.clone(), Duration::from_secs(1));
        let error = match store::open(&options).await {
            Ok(_) => panic!("{url}: opened"),
            Err(error) => error.to_string(),
        };
        assert!(!error.contains(password), "{error}");
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("--database-url"), "{error}");
    }
    // The cause is kept, not only a pool timeout.
    let options = StoreOptions::new(
        format!("postgres://postgres:{password}@127.0.0.1:1/test"),
        Duration::from_secs(1),
    );
    let error = store::open(&options).await.err().unwrap().to_string();
    assert!(!error.contains("pool timed out"), "{error}");
}

#[actix_web::test]
async fn open_without_create_needs_tables() {
    let Some(schema) = TestSchema::create("open_without_create_needs_tables").await else {
        return;
    };
    let existing_only = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::new(schema.url.clone(), TIMEOUT)
    };
    match store::open(&existing_only).await {
        Err(StoreError::NoStore(_)) => {}
        Err(error) => panic!("expected NoStore, got {error}"),
        Ok(_) => panic!("opened a schema without tables"),
    }

    // Nothing was created, so a store that may create one starts empty.
    let store = store::open(&StoreOptions::new(schema.url.clone(), TIMEOUT))
        .await
        .unwrap();
    store.close().await;
    let store = store::open(&existing_only).await.unwrap();
    assert_eq!(store.count_signals().await.unwrap(), 0);
    store.close().await;

    let password = "Pa55word-that-must-not-leak";
    for mistyped in [
        format!("postgres:/postgres:{password}@127.0.0.1/test"),
        format!("postgres//postgres:{password}@127.0.0.1/test"),
        format!("postgres:{password}@127.0.0.1/test"),
    ] {
        let error = match store::open(&StoreOptions::new(mistyped.clone(), TIMEOUT)).await {
            Ok(_) => panic!("{mistyped}: opened"),
            Err(error) => error.to_string(),
        };
        assert!(!error.contains(password), "{error}");
        assert!(error.contains("invalid PostgreSQL URL"), "{error}");
    }
}
