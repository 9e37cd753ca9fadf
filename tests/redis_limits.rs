//! Failed-login limits shared through a real Redis: several `serve`
//! processes reach a limit at the same total as one, and an outage between
//! the servers and Redis leaves each instance counting on its own until
//! Redis returns.
//!
//! The Redis URL comes from `NEXUS_AUTH_TEST_REDIS_URL`
//! (redis://127.0.0.1:6379 by default). When Redis cannot be reached these
//! tests fail if `CI` is set, and otherwise print why they skip.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{http, nexus_auth, RawRequest, RawResponse, FIXTURE_SIGNALS};
use nexus_auth::secret::SignalToken;
use nexus_auth::signal_token::TokenDigest;
use nexus_auth::store::{self, StoreOptions};
use nexus_auth::time::unix_now;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SIGNAL_ID: &str = FIXTURE_SIGNALS[0].0;
const SIGNAL_TOKEN: &str = FIXTURE_SIGNALS[0].1;
const WRONG_TOKEN: &str = "sgt_wrong-guess";

/// Text of the warning that an instance logs when Redis fails.
const FALLBACK_WARNING: &str = "this instance counts failed logins on its own";

/// Returns the Redis URL of the tests, or `None` (after printing why) when
/// Redis cannot be reached outside CI.
async fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("NEXUS_AUTH_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    let error = match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no reply within 2 s".to_owned(),
    };
    let reason = format!(
        "{test}: Redis at NEXUS_AUTH_TEST_REDIS_URL ({url}) cannot be reached: {error}; start it with redis-server or point the variable at one"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{reason}");
    }
    // Written to the stderr handle, which the test harness does not
    // capture, so that the reason shows even though the test passes.
    let _ = writeln!(std::io::stderr(), "skipped {reason}");
    None
}

/// Returns a key prefix of its own for one test run.
fn key_prefix(test: &str) -> String {
    format!("nexus-auth-test:{test}:{}:", uuid::Uuid::new_v4())
}

/// Deletes the keys under `prefix`, which would otherwise expire within an
/// hour.
async fn delete_keys(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// A `nexus-auth serve` process on its own SQLite store, killed on drop.
struct Instance {
    child: Child,
    stderr: mpsc::Receiver<String>,
    /// Lines read from stderr so far.
    log: Vec<String>,
    address: SocketAddr,
}

impl Instance {
    /// Starts `serve` in `folder` on a new store that contains the first
    /// fixture signal, with `args` added.
    async fn start(folder: &Path, args: &[&str]) -> Instance {
        let database = folder.join("nexus-auth.db");
        let options = StoreOptions::new(database.display().to_string(), Duration::from_secs(2));
        let store = store::open(&options).await.unwrap();
        let digest = TokenDigest::of(&SignalToken::new(SIGNAL_TOKEN));
        store
            .create_signal(SIGNAL_ID, digest, unix_now())
            .await
            .unwrap();
        store.close().await;

        let mut child = nexus_auth()
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
            .arg("--database-url")
            .arg(&database)
            .args(args)
            .env("RUST_LOG", "info")
            .current_dir(folder)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });

        let mut instance = Instance {
            child,
            stderr: receiver,
            log: Vec::new(),
            address: "127.0.0.1:0".parse().unwrap(),
        };
        let prefix = "listening on http://";
        let line = instance.wait_for_line(prefix);
        instance.address = line
            .split(prefix)
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap()
            .parse()
            .unwrap();
        instance
    }

    fn wait_for_line(&mut self, pattern: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no line containing {pattern:?} within 20 s"));
            self.log.push(line.clone());
            if line.contains(pattern) {
                return line;
            }
        }
    }

    /// Returns the number of log lines so far that contain `pattern`.
    fn count_lines(&mut self, pattern: &str) -> usize {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        self.log
            .iter()
            .filter(|line| line.contains(pattern))
            .count()
    }

    async fn login(&self, source: IpAddr, signal_id: &str, token: &str) -> RawResponse {
        let body = serde_json::json!({ "signalId": signal_id, "signalToken": token }).to_string();
        let request = RawRequest::post("/auth/login", Some("application/json"), body);
        http::send_from(source, self.address, &request).await
    }

    async fn metrics(&self) -> String {
        let response = http::send(self.address, &RawRequest::get("/metrics")).await;
        String::from_utf8(response.body).unwrap()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Returns the value of the sample `name` in Prometheus text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in the metrics"))
        .parse()
        .unwrap()
}

/// Starts one instance per folder, all sharing `redis_url` under `prefix`.
async fn start_instances(
    folders: &[tempfile::TempDir],
    redis_url: &str,
    prefix: &str,
    limits: &[&str],
) -> Vec<Instance> {
    let mut instances = Vec::new();
    for folder in folders {
        let mut args = vec!["--redis-url", redis_url, "--redis-key-prefix", prefix];
        args.extend_from_slice(limits);
        instances.push(Instance::start(folder.path(), &args).await);
    }
    instances
}

/// A TCP proxy in front of Redis that the test can cut and restore. While
/// cut, it closes every open connection and each new one at once, as a
/// failed network or a restarting Redis would.
struct RedisProxy {
    address: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RedisProxy {
    async fn start(redis_url: &str) -> RedisProxy {
        let client = redis::Client::open(redis_url).unwrap();
        let upstream = client.get_connection_info().addr().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (cut, watcher) = watch::channel(false);

        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watcher.borrow() {
                    drop(client);
                    continue;
                }
                let mut watcher = watcher.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watcher.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        RedisProxy { address, cut, task }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn folders(count: usize) -> Vec<tempfile::TempDir> {
    (0..count).map(|_| tempfile::tempdir().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_limits() {
    let Some(url) = redis_url("three_instances_share_limits").await else {
        return;
    };
    let prefix = key_prefix("three-instances");
    let folders = folders(3);
    let limits = [
        "--rate-limit-per-address",
        "6",
        "--rate-limit-per-signal",
        "6",
    ];
    let instances = start_instances(&folders, &url, &prefix, &limits).await;

    // One instance: six failures, then 429. Each part guesses at an id of
    // its own, so that only the limit under test is reached.
    let single = loopback(21);
    for attempt in 1..=6 {
        let response = instances[0].login(single, "unknown-1", WRONG_TOKEN).await;
        assert_eq!(response.status, 401, "one instance, failure {attempt}");
    }
    let response = instances[0].login(single, "unknown-1", WRONG_TOKEN).await;
    assert_eq!(response.status, 429, "one instance, seventh attempt");

    // Three instances: six failures spread over them, then 429 on each.
    let spread = loopback(22);
    for attempt in 0..6 {
        let instance = &instances[attempt % 3];
        let response = instance.login(spread, "unknown-2", WRONG_TOKEN).await;
        assert_eq!(
            response.status,
            401,
            "failure {} on instance {}",
            attempt + 1,
            attempt % 3
        );
    }
    for (index, instance) in instances.iter().enumerate() {
        let response = instance.login(spread, SIGNAL_ID, SIGNAL_TOKEN).await;
        assert_eq!(response.status, 429, "instance {index} after six failures");
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"failed-logins-per-address\";q=6;w=60"),
            "instance {index}"
        );
    }

    // The signal's budget, spent by six addresses spread over the three
    // instances. A client that logged in on instance 0 before keeps
    // logging in on the other two, which never saw its login.
    let honest = loopback(30);
    let response = instances[0].login(honest, SIGNAL_ID, SIGNAL_TOKEN).await;
    assert_eq!(response.status, 200, "known client's first login");
    for attempt in 0..6u8 {
        let instance = &instances[usize::from(attempt) % 3];
        let response = instance
            .login(loopback(41 + attempt), SIGNAL_ID, WRONG_TOKEN)
            .await;
        assert_eq!(response.status, 401, "guess {} at the signal", attempt + 1);
    }
    let stranger = loopback(50);
    for (index, instance) in instances.iter().enumerate() {
        let response = instance.login(stranger, SIGNAL_ID, SIGNAL_TOKEN).await;
        assert_eq!(response.status, 429, "stranger on instance {index}");
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"failed-logins-per-signal\";q=6;w=60"),
            "stranger on instance {index}"
        );
    }
    for (index, instance) in instances.iter().enumerate().skip(1) {
        let response = instance.login(honest, SIGNAL_ID, SIGNAL_TOKEN).await;
        assert_eq!(response.status, 200, "known client on instance {index}");
    }

    drop(instances);
    delete_keys(&url, &prefix).await;
}

/// Sends failures from `source` to the instances in `order`, then returns
/// the status that one more login from `source` gets on `last`.
async fn fail_then_try(
    instances: &[Instance],
    order: &[usize],
    last: usize,
    source: IpAddr,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for &index in order {
        let response = instances[index]
            .login(source, "unknown-outage", WRONG_TOKEN)
            .await;
        statuses.push(response.status);
    }
    let response = instances[last].login(source, SIGNAL_ID, WRONG_TOKEN).await;
    statuses.push(response.status);
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_per_instance() {
    let Some(url) = redis_url("redis_outage_falls_back_per_instance").await else {
        return;
    };
    let prefix = key_prefix("outage");
    let proxy = RedisProxy::start(&url).await;
    let folders = folders(2);
    let limits = [
        "--rate-limit-per-address",
        "3",
        "--rate-limit-per-signal",
        "0",
        "--redis-timeout",
        "0.25",
    ];
    let mut instances = start_instances(&folders, &proxy.url(), &prefix, &limits).await;

    // Shared: three failures over both instances spend the budget.
    let statuses = fail_then_try(&instances, &[0, 1, 0], 1, loopback(61)).await;
    assert_eq!(statuses, [401, 401, 401, 429], "before the outage");

    // Cut: each instance counts on its own, so an address gets three
    // failures on each before its 429 there, and right tokens still work.
    proxy.cut();
    let source = loopback(62);
    let on_first = fail_then_try(&instances, &[0, 0, 0], 0, source).await;
    assert_eq!(
        on_first,
        [401, 401, 401, 429],
        "instance 0 during the outage"
    );
    let on_second = fail_then_try(&instances, &[1, 1, 1], 1, source).await;
    assert_eq!(
        on_second,
        [401, 401, 401, 429],
        "instance 1 during the outage"
    );
    for (index, instance) in instances.iter().enumerate() {
        let response = instance.login(loopback(63), SIGNAL_ID, SIGNAL_TOKEN).await;
        assert_eq!(
            response.status, 200,
            "login on instance {index} during the outage"
        );
    }
    // Past the reconnection interval, so that failed reconnections are
    // logged too if they were not rate-limited.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for attempt in 0..5 {
        let response = instances[0]
            .login(loopback(64), SIGNAL_ID, SIGNAL_TOKEN)
            .await;
        assert_eq!(
            response.status, 200,
            "late login {attempt} during the outage"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (index, instance) in instances.iter_mut().enumerate() {
        assert_eq!(
            instance.count_lines(FALLBACK_WARNING),
            1,
            "warnings of instance {index}: {:#?}",
            instance.log
        );
    }
    let metrics = instances[0].metrics().await;
    assert_eq!(sample(&metrics, "nexus_auth_rate_limit_shared"), 0.0);
    let errors = sample(&metrics, "nexus_auth_redis_errors_total{kind=\"error\"}")
        + sample(&metrics, "nexus_auth_redis_errors_total{kind=\"timeout\"}");
    assert!(errors >= 1.0, "{metrics}");

    // Restored: within a few seconds, with no restart, three failures over
    // both instances spend one budget again.
    proxy.restore();
    let mut resumed = false;
    for round in 0..20u8 {
        let statuses = fail_then_try(&instances, &[0, 1, 0], 1, loopback(100 + round)).await;
        if statuses == [401, 401, 401, 429] {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(resumed, "shared counting did not resume within 10 s");
    for (index, instance) in instances.iter_mut().enumerate() {
        assert_eq!(
            instance.count_lines("failed-login counters are shared again"),
            1,
            "recovery lines of instance {index}: {:#?}",
            instance.log
        );
        assert_eq!(
            instance.count_lines(FALLBACK_WARNING),
            1,
            "instance {index} after the outage"
        );
    }
    let metrics = instances[0].metrics().await;
    assert_eq!(sample(&metrics, "nexus_auth_rate_limit_shared"), 1.0);

    drop(instances);
    delete_keys(&url, &prefix).await;
}

#[test]
fn invalid_redis_url_hides_password() {
    let folder = tempfile::tempdir().unwrap();
    let output = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--redis-url"])
        .arg("redis://:hunter2-secret@redis.invalid:no-port")
        .current_dir(folder.path())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--redis-url"), "{stderr}");
    assert!(stderr.contains("NEXUS_AUTH_REDIS_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        !folder.path().join("nexus-auth.db").exists(),
        "the store was created before the URL was checked"
    );
}
