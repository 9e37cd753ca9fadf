//! The signal cache in front of a real store: how many lookups reach the
//! store under load, and how long a disabled signal keeps working.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{test_settings, RawRequest, TestServer, FIXTURE_SIGNALS};
use nexus_auth::signal_cache::SignalCacheSettings;
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::store::{SignalRecord, SignalStore, SignalSummary, StoreError, StoredKey};

const SIGNAL_ID: &str = FIXTURE_SIGNALS[0].0;
const SIGNAL_TOKEN: &str = FIXTURE_SIGNALS[0].1;

/// A store that counts signal lookups and delays each by `delay`, so that
/// concurrent requests overlap.
struct CountingStore {
    inner: Arc<dyn SignalStore>,
    lookups: AtomicUsize,
    delay: Duration,
}

#[async_trait::async_trait]
impl SignalStore for CountingStore {
    fn location(&self) -> &str {
        self.inner.location()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn find_signal(&self, id: &str) -> Result<Option<SignalRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.inner.find_signal(id).await
    }
    async fn count_signals(&self) -> Result<u64, StoreError> {
        self.inner.count_signals().await
    }
    async fn list_signals(&self) -> Result<Vec<SignalSummary>, StoreError> {
        self.inner.list_signals().await
    }
    async fn create_signal(
        &self,
        id: &str,
        digest: TokenDigest,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.create_signal(id, digest, now).await
    }
    async fn rotate_signal(
        &self,
        id: &str,
        digest: TokenDigest,
        previous_expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .rotate_signal(id, digest, previous_expires_at, now)
            .await
    }
    async fn set_signal_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        self.inner.set_signal_enabled(id, enabled).await
    }
    async fn delete_signal(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete_signal(id).await
    }
    async fn active_signing_key(&self) -> Result<Option<StoredKey>, StoreError> {
        self.inner.active_signing_key().await
    }
    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.inner.list_signing_keys().await
    }
    async fn add_active_signing_key(&self, key: &StoredKey, now: i64) -> Result<(), StoreError> {
        self.inner.add_active_signing_key(key, now).await
    }
    async fn retire_signing_key(&self, kid: &str, now: i64) -> Result<(), StoreError> {
        self.inner.retire_signing_key(kid, now).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

#[actix_web::test]
async fn one_lookup_per_id_under_load() {
    let backing = TestServer::start().await;
    let store = Arc::new(CountingStore {
        inner: backing.store.clone(),
        lookups: AtomicUsize::new(0),
        delay: Duration::from_millis(100),
    });
    let mut settings = test_settings(Duration::from_secs(2));
    settings.signal_cache = SignalCacheSettings {
        ttl: Duration::from_secs(60),
        max_entries: 1000,
    };
    let state =
        nexus_auth::app::AppState::open(store.clone(), settings, nexus_auth::time::unix_now())
            .await
            .unwrap();
    let address = common::start_state(actix_web::web::Data::new(state));

    // Right and wrong tokens for one signal, and an unknown id, all at once.
    let requests: Vec<(RawRequest, u16)> = (0..30)
        .map(|index| match index % 3 {
            0 => (RawRequest::login_json(SIGNAL_ID, SIGNAL_TOKEN), 200),
            1 => (RawRequest::login_json(SIGNAL_ID, "sgt_wrong"), 401),
            _ => (RawRequest::login_json("no-such-signal", SIGNAL_TOKEN), 401),
        })
        .collect();
    let responses = futures_util::future::join_all(
        requests
            .iter()
            .map(|(request, _)| common::http::send(address, request)),
    )
    .await;
    for (index, (response, (_, expected))) in responses.iter().zip(&requests).enumerate() {
        assert_eq!(response.status, *expected, "request {index}");
    }
    assert_eq!(
        store.lookups.load(Ordering::SeqCst),
        2,
        "store lookups for one known and one unknown id"
    );

    // Later requests within the TTL are served from the cache too.
    let response =
        common::http::send(address, &RawRequest::login_json("no-such-signal", "x")).await;
    assert_eq!(response.status, 401);
    assert_eq!(store.lookups.load(Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn disable_takes_effect_after_ttl() {
    let ttl = Duration::from_secs(1);
    let mut settings = test_settings(Duration::from_secs(2));
    settings.signal_cache = SignalCacheSettings {
        ttl,
        max_entries: 1000,
    };
    let server = TestServer::start_with(settings).await;
    let jwt = server.login(SIGNAL_ID, SIGNAL_TOKEN).await;
    assert_eq!(server.send(&RawRequest::session(&jwt)).await.status, 200);

    server
        .store
        .set_signal_enabled(SIGNAL_ID, false)
        .await
        .unwrap();
    let disabled_at = Instant::now();

    // Within the TTL the cached record may still be used; past it, never.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(disabled_at.elapsed() > ttl);
    let session = server.send(&RawRequest::session(&jwt)).await;
    assert_eq!(session.status, 401, "session of a disabled signal");
    let login = server
        .send(&RawRequest::login_json(SIGNAL_ID, SIGNAL_TOKEN))
        .await;
    assert_eq!(login.status, 401, "login of a disabled signal");
}
