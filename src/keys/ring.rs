//! The key ring: the key that signs new tokens and every key that still
//! verifies old ones, reloaded from the store so that a rotation made by the
//! command line or by another instance reaches every server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::material::{generate, load_hmac_secret, LoadedKey};
use super::{KeyError, SigningAlgorithm};
use crate::store::SignalStore;

/// Settings that decide which keys the ring generates and keeps.
#[derive(Debug, Clone)]
pub struct KeyRingSettings {
    /// Algorithm of the key generated when the store has no active key of
    /// it, at start-up.
    pub algorithm: SigningAlgorithm,
    /// File with the HS256 secret; used only when `algorithm` is HS256.
    pub hmac_secret_file: Option<PathBuf>,
    /// Lifetime of issued tokens, in seconds.
    pub token_ttl: u64,
    /// Clock skew allowed when checking `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// Seconds between reloads from the store. A server may sign with a
    /// replaced key for up to this long after the replacement.
    pub refresh_interval: u64,
}

/// The keys in force at one moment.
#[derive(Debug)]
pub struct KeySet {
    pub active: Arc<LoadedKey>,
    verifying: HashMap<String, Arc<LoadedKey>>,
}

impl KeySet {
    /// Returns the key that `kid` names if it is still inside its
    /// verification window.
    pub fn verifying_key(&self, kid: &str) -> Option<&LoadedKey> {
        self.verifying.get(kid).map(Arc::as_ref)
    }

    /// Returns the public JWKs of every verifying key, newest first; empty
    /// with HS256.
    pub fn public_jwks(&self) -> Vec<serde_json::Value> {
        let mut keys: Vec<&LoadedKey> = self.verifying.values().map(Arc::as_ref).collect();
        keys.sort_by(|first, second| {
            second
                .created_at
                .cmp(&first.created_at)
                .then(first.kid.cmp(&second.kid))
        });
        keys.iter().filter_map(|key| key.jwk.clone()).collect()
    }

    pub fn verifying_kids(&self) -> Vec<&str> {
        self.verifying.keys().map(String::as_str).collect()
    }
}

/// Minimum time between two reloads that an unknown `kid` triggers, so
/// that tokens with made-up kids cannot make every request query the store.
const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

pub struct KeyRing {
    settings: KeyRingSettings,
    current: RwLock<Arc<KeySet>>,
    /// Time of the last reload that an unknown `kid` triggered.
    last_unknown_kid_reload: Mutex<Option<Instant>>,
}

impl KeyRing {
    /// Builds the ring at server start. With an asymmetric algorithm, a key
    /// of that algorithm is generated and made active when the store's
    /// active key is missing or of another algorithm. The previous key then
    /// keeps verifying through its window.
    pub async fn open(
        store: &dyn SignalStore,
        settings: KeyRingSettings,
        now: i64,
    ) -> Result<KeyRing, KeyError> {
        if settings.algorithm.is_asymmetric() {
            let active = store.active_signing_key().await?;
            let matches = active
                .as_ref()
                .is_some_and(|key| key.algorithm == settings.algorithm.name());
            if !matches {
                let key = generate(settings.algorithm, now)?;
                store.add_active_signing_key(&key, now).await?;
                log::info!(
                    "generated signing key {} ({}) and made it active",
                    key.kid,
                    key.algorithm
                );
            }
        }
        let set = load_set(store, &settings, now, None).await?;
        Ok(KeyRing {
            settings,
            current: RwLock::new(Arc::new(set)),
            last_unknown_kid_reload: Mutex::new(None),
        })
    }

    /// Reloads the keys when a token names a `kid` this ring does not
    /// know, at most once per `UNKNOWN_KID_RELOAD_INTERVAL`. Another
    /// instance may have rotated the key since the last timed reload, and
    /// its fresh tokens would otherwise be rejected here until then.
    /// Returns whether the ring was reloaded.
    pub async fn reload_for_unknown_kid(&self, store: &dyn SignalStore, now: i64) -> bool {
        {
            let mut last = self
                .last_unknown_kid_reload
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|last| last.elapsed() < UNKNOWN_KID_RELOAD_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.refresh(store, now).await {
            Ok(()) => true,
            Err(error) => {
                log::warn!("reloading the signing keys for an unknown kid failed: {error}");
                false
            }
        }
    }

    /// Reloads the keys from the store. Keys whose window has ended drop
    /// out; a key made active elsewhere becomes the signing key here.
    pub async fn refresh(&self, store: &dyn SignalStore, now: i64) -> Result<(), KeyError> {
        let previous = self.current();
        let set = load_set(store, &self.settings, now, Some(&previous)).await?;
        if set.active.kid != previous.active.kid {
            log::info!(
                "signing key changed from {} to {} ({})",
                previous.active.kid,
                set.active.kid,
                set.active.algorithm
            );
        }
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(set);
        Ok(())
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn settings(&self) -> &KeyRingSettings {
        &self.settings
    }

    /// Reloads the ring from `store` every `interval` on the current actix
    /// runtime, until the runtime stops. A failed reload keeps the keys in
    /// force and is logged.
    pub fn refresh_every(
        self: Arc<Self>,
        store: Arc<dyn SignalStore>,
        interval: std::time::Duration,
    ) {
        actix_web::rt::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(error) = self.refresh(store.as_ref(), crate::time::unix_now()).await {
                    log::warn!("reloading signing keys failed, keeping the current ones: {error}");
                }
            }
        });
    }
}

/// Loads the active key and every key still inside its verification window.
/// A key is inside it until a token lifetime plus the leeway plus one
/// refresh interval have passed since it was retired. By then every token
/// it signed, on any server, has expired.
async fn load_set(
    store: &dyn SignalStore,
    settings: &KeyRingSettings,
    now: i64,
    previous: Option<&KeySet>,
) -> Result<KeySet, KeyError> {
    if settings.algorithm == SigningAlgorithm::Hs256 {
        if let Some(previous) = previous {
            return Ok(KeySet {
                active: previous.active.clone(),
                verifying: previous.verifying.clone(),
            });
        }
        let path = settings
            .hmac_secret_file
            .as_ref()
            .ok_or(KeyError::MissingHmacSecret)?;
        let key = Arc::new(load_hmac_secret(path)?);
        let verifying = HashMap::from([(key.kid.clone(), key.clone())]);
        return Ok(KeySet {
            active: key,
            verifying,
        });
    }

    // A server learns of a replacement up to one refresh interval late and
    // signs with the old key until then, so its last tokens expire at most
    // ttl + refresh interval after the replacement, plus the leeway.
    let window = settings
        .token_ttl
        .saturating_add(settings.leeway)
        .saturating_add(settings.refresh_interval) as i64;
    let mut verifying = HashMap::new();
    let mut active: Option<Arc<LoadedKey>> = None;
    for stored in store.list_signing_keys().await? {
        let in_window = stored
            .retired_at
            .is_none_or(|retired_at| now <= retired_at.saturating_add(window));
        if !in_window {
            continue;
        }
        // An unreadable row is logged and skipped, so that one damaged key
        // does not stop the keys that still work.
        let key = match previous.and_then(|set| set.verifying.get(&stored.kid)) {
            Some(loaded) if loaded.retired_at == stored.retired_at => loaded.clone(),
            _ => match LoadedKey::from_stored(&stored) {
                Ok(key) => Arc::new(key),
                Err(error) => {
                    log::error!("skipping signing key {}: {error}", stored.kid);
                    continue;
                }
            },
        };
        // Keys come newest first, so the first one not retired signs.
        if active.is_none() && key.retired_at.is_none() {
            active = Some(key.clone());
        }
        verifying.insert(key.kid.clone(), key);
    }

    let active = match (active, previous) {
        (Some(active), _) => active,
        (None, Some(previous)) => {
            log::warn!(
                "the store has no active signing key; still signing with {}. Run `nexus-auth keys rotate`",
                previous.active.kid
            );
            previous.active.clone()
        }
        (None, None) => {
            return Err(KeyError::Store(crate::store::StoreError::Corrupt(
                "the store has no active signing key".to_owned(),
            )))
        }
    };
    if active.algorithm != settings.algorithm {
        log::warn!(
            "the active signing key {} uses {}, not the configured {}; instances sharing a store should set the same --signing-alg",
            active.kid,
            active.algorithm,
            settings.algorithm
        );
    }
    verifying.insert(active.kid.clone(), active.clone());
    Ok(KeySet { active, verifying })
}
