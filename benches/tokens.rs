//! Criterion micro-benchmarks of JWT signing and verification with every
//! supported algorithm: EdDSA, ES256, RS256 (2048-bit) and HS256.
//!
//! Run with `cargo bench --bench tokens`. Keys are generated into a SQLite
//! store in a temporary folder, as `serve` generates them, and the HS256
//! secret is a 48-byte file there.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use nexus_auth::keys::{KeyRing, KeyRingSettings, SigningAlgorithm};
use nexus_auth::signer::{Signer, TokenSettings};
use nexus_auth::store::{self, StoreOptions};
use nexus_auth::time::unix_now;
use nexus_auth::verify::{Verifier, VerifierSettings};

const ISSUER: &str = "nexus-auth";
const TTL_SECONDS: u64 = 3600;
const SIGNAL_ID: &str = "bench-signal";

/// Builds a signer and a verifier for `algorithm` over one key ring, with
/// its keys in a fresh store in `folder`.
async fn open_signer(algorithm: SigningAlgorithm, folder: &std::path::Path) -> (Signer, Verifier) {
    let database = folder.join(format!("{}.db", algorithm.name()));
    let options = StoreOptions::new(
        format!("sqlite://{}", database.display()),
        Duration::from_secs(5),
    );
    let store = store::open(&options).await.expect("open the bench store");

    let secret_file = folder.join("hs256.secret");
    std::fs::write(&secret_file, [0x5a; 48]).unwrap();
    let settings = KeyRingSettings {
        algorithm,
        hmac_secret_file: Some(secret_file),
        token_ttl: TTL_SECONDS,
        leeway: 30,
        refresh_interval: 10,
    };
    let ring = std::sync::Arc::new(
        KeyRing::open(store.as_ref(), settings, unix_now())
            .await
            .expect("open the key ring"),
    );
    store.close().await;

    let signer = Signer::new(
        ring.clone(),
        TokenSettings {
            issuer: ISSUER.to_owned(),
            audience: None,
            ttl_seconds: TTL_SECONDS,
        },
    );
    let verifier = Verifier::new(
        ring,
        VerifierSettings {
            issuer: ISSUER.to_owned(),
            audience: None,
            leeway: 30,
        },
    );
    (signer, verifier)
}

fn sign_and_verify(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let folder = tempfile::tempdir().unwrap();

    let mut signing = criterion.benchmark_group("sign");
    let mut tokens = Vec::new();
    for algorithm in SigningAlgorithm::ALL {
        let (signer, verifier) = runtime.block_on(open_signer(algorithm, folder.path()));
        let now = unix_now();
        signing.bench_function(algorithm.name(), |bencher| {
            bencher.iter(|| signer.sign(SIGNAL_ID, now).unwrap())
        });
        let token = signer.sign(SIGNAL_ID, now).unwrap().token;
        tokens.push((algorithm, verifier, token));
    }
    signing.finish();

    let mut verifying = criterion.benchmark_group("verify");
    for (algorithm, verifier, token) in &tokens {
        let claims = verifier.verify(token.expose()).unwrap();
        assert_eq!(claims.sub, SIGNAL_ID, "{algorithm}");
        verifying.bench_function(algorithm.name(), |bencher| {
            bencher.iter(|| verifier.verify(token.expose()).unwrap())
        });
    }
    verifying.finish();
}

criterion_group!(benches, sign_and_verify);
criterion_main!(benches);
