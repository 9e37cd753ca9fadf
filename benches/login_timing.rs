//! Timing of failed logins: unknown signal, wrong token and disabled
//! signal must cost the same, so that response times reveal nothing about
//! which signal ids exist. Writes `target/bench-reports/login-timing.md`.
//!
//! Run with `cargo bench --bench login_timing`. It drives the real login
//! handler and a real SQLite store through actix-web's test service, so it
//! measures everything but the socket. It runs twice: with the signal cache
//! off, so that every lookup queries the store, and with every lookup a
//! cache hit. Rate limits are off here, because
//! failed logins from one address would otherwise be refused with 429
//! after a few dozen requests.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{test, web, App};
use nexus_auth::app::{AppState, LoginSettings, Settings};
use nexus_auth::keys::SigningAlgorithm;
use nexus_auth::rate_limit::RateLimitSettings;
use nexus_auth::secret::SignalToken;
use nexus_auth::signal_cache::SignalCacheSettings;
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::signer::TokenSettings;
use nexus_auth::store::{self, SignalStore, StoreOptions};
use nexus_auth::time::unix_now;

/// Requests per case. The cases run interleaved, in a random order each
/// round, so slow drift of the machine (frequency scaling, other
/// processes) and order effects hit them alike.
const ROUNDS: usize = 20_000;
const WARM_UP_ROUNDS: usize = 500;

const TOKEN: &str = "sgt_TimingBenchToken0123456789abcdefghijklmnop";

struct Case {
    name: &'static str,
    signal_id: &'static str,
    token: &'static str,
    expected_status: u16,
    samples: Vec<Duration>,
}

/// Shuffles `items` with xorshift64 (Fisher-Yates); the fixed seed makes
/// runs comparable.
fn shuffle(items: &mut [usize], state: &mut u64) {
    for index in (1..items.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        items.swap(index, (*state % (index as u64 + 1)) as usize);
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(samples: &[Duration], fraction: f64) -> Duration {
    samples[((samples.len() - 1) as f64 * fraction) as usize]
}

async fn open_state(
    folder: &std::path::Path,
    signal_cache: SignalCacheSettings,
) -> (Arc<dyn SignalStore>, AppState) {
    let options = StoreOptions::new(
        folder.join("timing.db").display().to_string(),
        Duration::from_secs(2),
    );
    let store = store::open(&options).await.expect("open the store");
    let digest = TokenDigest::of(&SignalToken::new(TOKEN));
    store
        .create_signal("enabled-signal", digest, unix_now())
        .await
        .unwrap();
    store
        .create_signal("disabled-signal", digest, unix_now())
        .await
        .unwrap();
    store
        .set_signal_enabled("disabled-signal", false)
        .await
        .unwrap();

    let settings = Settings {
        token: TokenSettings {
            issuer: "nexus-auth".to_owned(),
            audience: None,
            ttl_seconds: 3600,
        },
        signing_algorithm: SigningAlgorithm::EdDsa,
        hmac_secret_file: None,
        clock_leeway: 30,
        key_refresh: 10,
        login: LoginSettings {
            body_limit: 16 * 1024,
            store_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(10),
            rate_limit: RateLimitSettings {
                per_address: 0,
                per_signal: 0,
                ..RateLimitSettings::default()
            },
            trust_proxy_headers: false,
        },
        cors_origins: Vec::new(),
        signal_cache,
    };
    let state = AppState::open(store.clone(), settings, unix_now())
        .await
        .unwrap();
    (store, state)
}

fn main() {
    actix_web::rt::System::new().block_on(run());
}

async fn run() {
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    let mut report = String::new();
    writeln!(report, "# Failed-login timing\n").unwrap();
    writeln!(
        report,
        "`cargo bench --bench login_timing`: {ROUNDS} requests per case, interleaved in a random order each round, after {WARM_UP_ROUNDS} warm-up rounds, in-process through actix-web's test service with a SQLite store; {cores} cores.\n",
    )
    .unwrap();

    writeln!(
        report,
        "## Signal cache off: every lookup queries the store\n"
    )
    .unwrap();
    report.push_str(&measure(SignalCacheSettings::off()).await);
    // The TTL outlasts the run, so after the warm-up every lookup is a hit.
    let cached = SignalCacheSettings {
        ttl: Duration::from_secs(3600),
        max_entries: 1000,
    };
    writeln!(report, "\n## Signal cache on: every lookup a cache hit\n").unwrap();
    report.push_str(&measure(cached).await);

    print!("{report}");
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-reports");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("login-timing.md"), &report).unwrap();
    println!("\nwritten to target/bench-reports/login-timing.md");
}

/// Measures every case with `signal_cache` and returns the Markdown table.
async fn measure(signal_cache: SignalCacheSettings) -> String {
    let folder = tempfile::tempdir().unwrap();
    let (_store, state) = open_state(folder.path(), signal_cache).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(nexus_auth::server::configure),
    )
    .await;

    let mut cases = [
        Case {
            name: "unknown signal",
            signal_id: "no-such-signal",
            token: TOKEN,
            expected_status: 401,
            samples: Vec::new(),
        },
        Case {
            name: "wrong token",
            signal_id: "enabled-signal",
            token: "sgt_TimingBenchToken0123456789abcdefghijklmnoq",
            expected_status: 401,
            samples: Vec::new(),
        },
        Case {
            name: "disabled signal",
            signal_id: "disabled-signal",
            token: TOKEN,
            expected_status: 401,
            samples: Vec::new(),
        },
        Case {
            name: "valid (reference)",
            signal_id: "enabled-signal",
            token: TOKEN,
            expected_status: 200,
            samples: Vec::new(),
        },
    ];

    let mut order: Vec<usize> = (0..cases.len()).collect();
    let mut random_state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..WARM_UP_ROUNDS + ROUNDS {
        // A fresh random order each round, so that no case always follows
        // the same case or always gets the same pooled connection.
        shuffle(&mut order, &mut random_state);
        for &index in &order {
            let case = &mut cases[index];
            let body = format!(
                r#"{{"signalId":"{}","signalToken":"{}"}}"#,
                case.signal_id, case.token
            );
            let request = test::TestRequest::post()
                .uri("/auth/login")
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body)
                .to_request();
            let started = Instant::now();
            let response = test::call_service(&app, request).await;
            let elapsed = started.elapsed();
            assert_eq!(
                response.status().as_u16(),
                case.expected_status,
                "{}",
                case.name
            );
            if round >= WARM_UP_ROUNDS {
                case.samples.push(elapsed);
            }
        }
    }

    let reference = median(&mut cases[1].samples.clone());
    let mut report = String::new();
    writeln!(
        report,
        "| case | median (µs) | p90 (µs) | median / wrong token |"
    )
    .unwrap();
    writeln!(report, "| --- | ---: | ---: | ---: |").unwrap();
    for case in cases.iter_mut() {
        let middle = median(&mut case.samples);
        let p90 = percentile(&case.samples, 0.9);
        writeln!(
            report,
            "| {} | {:.1} | {:.1} | {:.3} |",
            case.name,
            middle.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6,
            middle.as_secs_f64() / reference.as_secs_f64()
        )
        .unwrap();
    }
    report
}
