//! Criterion micro-benchmarks of the login steps before signing: each body
//! extractor on its fixture, credential validation, the token digest and
//! its comparison, and the store lookup.
//!
//! Run with `cargo bench --bench login_steps`. The store lookup runs on a
//! SQLite store in a temporary folder, and also on the store that
//! `NEXUS_AUTH_BENCH_DATABASE_URL` names when that variable is set (for
//! example a PostgreSQL URL). That store gets a signal `bench-signal`,
//! created or rotated to the bench token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use nexus_auth::login::authenticate::check_token;
use nexus_auth::login::credentials::Credentials;
use nexus_auth::login::extract::find_format;
use nexus_auth::secret::SignalToken;
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::store::{self, SignalRecord, SignalStore, StoreError, StoreOptions};
use nexus_auth::time::unix_now;

/// One successful login per body format, as clients send it; all log in
/// with the fixtures' credential 1.
const FORMAT_FIXTURES: [(&str, &str); 4] = [
    ("json", "json-basic.http"),
    ("multipart", "multipart-curl.http"),
    ("text", "text-plain-ampersand-pairs.http"),
    ("form", "form-curl-d.http"),
];

/// Credential 1 of `fixtures/README.md`.
const FIXTURE_SIGNAL_ID: &str = "fixture-signal";
const FIXTURE_TOKEN: &str = "sgt_FixtureToken0123456789abcdefghijklmnop";

/// Environment variable with the URL of an extra store to benchmark.
const DATABASE_URL_VARIABLE: &str = "NEXUS_AUTH_BENCH_DATABASE_URL";

/// Reads a fixture's `content-type` and `header` lines into a header map,
/// and the bytes after the first empty line as the body, as the fixture
/// format in `fixtures/README.md` defines them.
fn read_fixture(name: &str) -> (HeaderMap, Bytes) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/login")
        .join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let split = bytes
        .windows(2)
        .position(|window| window == b"\n\n")
        .unwrap_or_else(|| panic!("{name}: no empty line after the header block"));
    let head = std::str::from_utf8(&bytes[..split]).expect("the header block is UTF-8");

    let mut headers = HeaderMap::new();
    for line in head.lines() {
        if let Some(value) = line.strip_prefix("content-type: ") {
            headers.append(
                HeaderName::from_static("content-type"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        } else if let Some((name, value)) = line
            .strip_prefix("header: ")
            .and_then(|header| header.split_once(": "))
        {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
    }
    (headers, Bytes::copy_from_slice(&bytes[split + 2..]))
}

/// Runs a format's extractor to completion. Every extractor works on a body
/// that is already read, so its future never waits.
fn extract(headers: &HeaderMap, body: Bytes) -> Credentials {
    let format = find_format(headers).expect("a supported media type");
    format
        .extract(headers, body)
        .now_or_never()
        .expect("extraction completes without waiting")
        .expect("the fixture extracts")
}

fn extractors(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("extract");
    for (format, fixture) in FORMAT_FIXTURES {
        let (headers, body) = read_fixture(fixture);
        let valid = extract(&headers, body.clone()).validate().unwrap();
        assert_eq!(valid.signal_id, FIXTURE_SIGNAL_ID, "{fixture}");

        // `Bytes::clone` only bumps a reference count, so each iteration
        // measures the extractor and not a copy of the body.
        group.bench_function(format, |bencher| {
            bencher.iter(|| extract(&headers, body.clone()))
        });
    }
    group.finish();
}

fn validation(criterion: &mut Criterion) {
    let (headers, body) = read_fixture("json-basic.http");
    let credentials = extract(&headers, body);

    criterion.bench_function("validate", |bencher| {
        bencher.iter_batched(
            || credentials.clone(),
            |credentials| credentials.validate().unwrap(),
            BatchSize::SmallInput,
        )
    });
}

fn token_digest(criterion: &mut Criterion) {
    let token = SignalToken::new(FIXTURE_TOKEN);
    let stored = TokenDigest::of(&token);
    let record = SignalRecord {
        id: FIXTURE_SIGNAL_ID.to_owned(),
        token_digest: stored,
        previous_token: None,
        enabled: true,
        created_at: 0,
    };
    let now = unix_now();

    let mut group = criterion.benchmark_group("token_digest");
    group.bench_function("sha256", |bencher| bencher.iter(|| TokenDigest::of(&token)));
    group.bench_function("compare", |bencher| {
        bencher.iter(|| std::hint::black_box(stored).matches(&stored))
    });
    // The whole check a login makes: one digest and two comparisons.
    group.bench_function("check_token", |bencher| {
        bencher.iter(|| check_token(Some(&record), &token, now).unwrap())
    });
    group.finish();
}

/// Opens the store at `url` and makes `FIXTURE_SIGNAL_ID` log in with
/// `FIXTURE_TOKEN`, whether or not the signal exists already.
async fn open_seeded(url: &str) -> Arc<dyn SignalStore> {
    let options = StoreOptions::new(url, Duration::from_secs(5));
    let store = store::open(&options)
        .await
        .unwrap_or_else(|error| panic!("cannot open the bench store: {error}"));
    let digest = TokenDigest::of(&SignalToken::new(FIXTURE_TOKEN));
    match store
        .create_signal(FIXTURE_SIGNAL_ID, digest, unix_now())
        .await
    {
        Ok(()) => {}
        Err(StoreError::AlreadyExists(_)) => {
            store
                .rotate_signal(FIXTURE_SIGNAL_ID, digest, None, unix_now())
                .await
                .unwrap();
            store
                .set_signal_enabled(FIXTURE_SIGNAL_ID, true)
                .await
                .unwrap();
        }
        Err(error) => panic!("cannot create the bench signal: {error}"),
    }
    store
}

fn store_lookup(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", folder.path().join("bench.db").display());

    let mut stores = vec![("sqlite", runtime.block_on(open_seeded(&sqlite_url)))];
    if let Ok(url) = std::env::var(DATABASE_URL_VARIABLE) {
        stores.push(("from_env", runtime.block_on(open_seeded(&url))));
    }

    let mut group = criterion.benchmark_group("store_lookup");
    for (name, store) in &stores {
        for (case, id) in [("found", FIXTURE_SIGNAL_ID), ("unknown", "no-such-signal")] {
            let found = runtime.block_on(store.find_signal(id)).unwrap();
            assert_eq!(found.is_some(), case == "found", "{name} {case}");
            group.bench_function(format!("{name}/{case}"), |bencher| {
                bencher.iter(|| runtime.block_on(store.find_signal(id)).unwrap())
            });
        }
    }
    group.finish();

    for (_, store) in stores {
        runtime.block_on(store.close());
    }
}

criterion_group!(benches, extractors, validation, token_digest, store_lookup);
criterion_main!(benches);
