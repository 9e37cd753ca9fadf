//! PostgreSQL outages seen by a real `serve` process: a TCP proxy between
//! the server and PostgreSQL either closes every connection and resets new
//! ones, or stops forwarding, and then lets connections through again.

mod common;

use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::{test_database_url, TestSchema};
use common::process::{run_command, ServeProcess};
use common::{RawRequest, RawResponse};
use nexus_auth::store::{self, StoreOptions};
use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// `--store-timeout` of the server, in seconds.
const STORE_TIMEOUT_SECONDS: u64 = 1;
/// `--signal-cache-ttl` of the server, in seconds.
const CACHE_TTL_SECONDS: u64 = 1;
/// Allowance for process scheduling and HTTP round trips on top of a bound.
const MARGIN: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Forwards every connection.
    None,
    /// Closes every connection and resets new ones, as when PostgreSQL is
    /// down or restarting.
    Cut,
    /// Stops forwarding but keeps every connection open, and accepts new
    /// ones without forwarding them, as when the network drops packets.
    /// Held connections close when the outage ends, because bytes were lost.
    Stall,
}

/// A TCP proxy to PostgreSQL that the test can interrupt and restore. It
/// runs on a thread and runtime of its own, so that it keeps forwarding
/// while the test thread blocks.
struct OutageProxy {
    address: SocketAddr,
    mode: watch::Sender<Outage>,
    /// Tasks that forward one connection each. The lock also orders
    /// accepting against cutting, so that no connection slips through a cut.
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl OutageProxy {
    fn start(upstream: SocketAddr) -> OutageProxy {
        let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, mode_receiver) = watch::channel(Outage::None);
        let connections = Arc::new(Mutex::new(Vec::new()));

        let task_connections = connections.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(accept(listener, upstream, mode_receiver, task_connections));
        });
        OutageProxy {
            address,
            mode,
            connections,
        }
    }

    fn begin(&self, outage: Outage) {
        let mut connections = self.connections.lock().unwrap();
        self.mode.send_replace(outage);
        if outage == Outage::Cut {
            for connection in connections.drain(..) {
                connection.abort();
            }
        }
    }

    fn restore(&self) {
        self.mode.send_replace(Outage::None);
    }
}

async fn accept(
    listener: StdTcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Outage>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
) {
    let listener = TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut connections = connections.lock().unwrap();
        if *mode.borrow() == Outage::Cut {
            // A zero linger makes the close a reset, as a refused
            // connection looks to the client.
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let task = tokio::spawn(forward(client, upstream, mode.clone()));
        connections.push(task.abort_handle());
    }
}

/// Forwards one connection until either side closes it, a cut aborts this
/// task, or a stall ends.
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Outage>) {
    if *mode.borrow() == Outage::Stall {
        let _ = mode.wait_for(|mode| *mode != Outage::Stall).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let stalled = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = mode.wait_for(|mode| *mode == Outage::Stall) => true,
    };
    if stalled {
        let _ = mode.wait_for(|mode| *mode != Outage::Stall).await;
    }
}

/// Returns `url` with its host and port replaced by `address`.
fn url_via(url: &str, address: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = match authority.rsplit_once('@') {
        Some((user, _)) => format!("{user}@"),
        None => String::new(),
    };
    format!("{scheme}://{user}{address}/{path}")
}

/// Sends `request` and returns the response with the time it took.
async fn timed(address: SocketAddr, request: &RawRequest) -> (RawResponse, Duration) {
    let started = Instant::now();
    let response = common::http::send(address, request).await;
    (response, started.elapsed())
}

/// Reads the signals and keys of the store, to compare before and after.
async fn snapshot(url: &str) -> (Vec<String>, Vec<String>) {
    let store = store::open(&StoreOptions::new(url, Duration::from_secs(5)))
        .await
        .unwrap();
    let signals = store
        .list_signals()
        .await
        .unwrap()
        .into_iter()
        .map(|signal| format!("{signal:?}"))
        .collect();
    let keys = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|key| {
            format!(
                "{} {} {:?} {} {:?}",
                key.kid, key.algorithm, key.public_key, key.created_at, key.retired_at
            )
        })
        .collect();
    store.close().await;
    (signals, keys)
}

#[actix_web::test]
async fn postgres_cut_and_recovery() {
    check_outage(Outage::Cut, "postgres_cut_and_recovery").await;
}

#[actix_web::test]
async fn postgres_stall_and_recovery() {
    check_outage(Outage::Stall, "postgres_stall_and_recovery").await;
}

/// Runs a server through `outage`: before it, logins and readiness work.
/// During it, once the cached lookups have expired, logins, session checks
/// and readiness get 503 within the store timeout and nothing is issued.
/// After it, both recover without a restart, and the store is unchanged.
async fn check_outage(outage: Outage, test_name: &str) {
    let Some(schema) = TestSchema::create(test_name).await else {
        return;
    };
    let options = PgConnectOptions::from_str(&test_database_url()).unwrap();
    let upstream = (options.get_host(), options.get_port())
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = OutageProxy::start(upstream);
    let proxied_url = url_via(&schema.url, proxy.address);

    let token = run_command(&["signals", "create", "sensor", "--database-url", &schema.url]);
    let token = token.trim();
    let store_timeout = STORE_TIMEOUT_SECONDS.to_string();
    let cache_ttl = CACHE_TTL_SECONDS.to_string();
    let mut serve = ServeProcess::start(&[
        "--database-url",
        &proxied_url,
        "--no-bootstrap",
        "--store-timeout",
        &store_timeout,
        "--signal-cache-ttl",
        &cache_ttl,
        "--key-refresh",
        "1",
    ]);
    let address = serve.address;

    let (login, _) = timed(address, &RawRequest::login_json("sensor", token)).await;
    assert_eq!(login.status, 200, "login before the outage");
    let jwt = login.json()["token"].as_str().unwrap().to_owned();
    let (ready, _) = timed(address, &RawRequest::get("/readyz")).await;
    assert_eq!(ready.status, 200, "readyz before the outage");
    let before = snapshot(&schema.url).await;

    proxy.begin(outage);
    // Cached lookups are still served for up to the TTL; wait past it.
    tokio::time::sleep(Duration::from_secs(CACHE_TTL_SECONDS) + Duration::from_millis(200)).await;

    let bound = Duration::from_secs(STORE_TIMEOUT_SECONDS) + MARGIN;
    for round in 0..3 {
        let cases = [
            ("login", RawRequest::login_json("sensor", token)),
            (
                "login of an unknown id",
                RawRequest::login_json("no-such-signal", token),
            ),
            ("session", RawRequest::session(&jwt)),
            ("readyz", RawRequest::get("/readyz")),
        ];
        for (name, request) in cases {
            let (response, elapsed) = timed(address, &request).await;
            assert_eq!(
                response.status, 503,
                "{name} during the outage, round {round}"
            );
            assert_eq!(
                response.json()["error"]["code"],
                "unavailable",
                "{name} during the outage, round {round}"
            );
            assert!(
                response.json().get("token").is_none(),
                "{name} issued a token during the outage"
            );
            assert!(
                elapsed <= bound,
                "{name} took {elapsed:?} during the {outage:?} outage, over {bound:?}"
            );
        }
    }
    // Key reloads fail during the outage too; the server keeps running.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(serve.is_running(), "the server exited during the outage");

    proxy.restore();
    let restored_at = Instant::now();
    let recovery_bound = Duration::from_secs(2 * STORE_TIMEOUT_SECONDS) + MARGIN;
    loop {
        let (login, _) = timed(address, &RawRequest::login_json("sensor", token)).await;
        let (ready, _) = timed(address, &RawRequest::get("/readyz")).await;
        if login.status == 200 && ready.status == 200 {
            break;
        }
        assert!(
            restored_at.elapsed() < recovery_bound,
            "no recovery {:?} after the {outage:?} outage: login {}, readyz {}",
            restored_at.elapsed(),
            login.status,
            ready.status
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    let (session, _) = timed(address, &RawRequest::session(&jwt)).await;
    assert_eq!(session.status, 200, "token issued before the outage");
    let after = snapshot(&schema.url).await;
    assert_eq!(before.0, after.0, "signals changed across the outage");
    assert_eq!(before.1, after.1, "signing keys changed across the outage");
    assert!(serve.is_running(), "the server exited");

    let log = serve.log_lines().join("\n");
    assert!(
        log.contains("store lookup"),
        "no store error logged:\n{log}"
    );
    drop(serve);
    drop(schema);
}
