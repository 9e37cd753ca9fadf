//! `serve` with a standard error that no process reads: requests and health
//! checks go on, lines past the buffer are dropped and counted, SIGTERM
//! stops the process, and once standard error is read again one line
//! reports how many lines were dropped.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::http::{send, RawRequest};
use common::nexus_auth;

/// Requests sent while standard error is blocked. At `trace` level each
/// logs about 2 KiB of lines, so together they log about four times what
/// the 1 MiB buffer and the pipe's own buffer take.
const FLOOD_REQUESTS: usize = 2_000;

/// Concurrent connections of the flood.
const FLOOD_TASKS: usize = 8;

/// Maximum wait for the start-up line, a response or the process's exit.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `serve` on a new store, logging at `trace`, and reads its
/// standard error up to the line with its address. The rest of standard
/// error stays unread in the returned reader.
fn start_unread(folder: &std::path::Path) -> (Child, SocketAddr, BufReader<ChildStderr>) {
    let (child, stderr) = spawn_serve(folder);
    let mut stderr = BufReader::new(stderr);
    let prefix = "listening on http://";
    let mut line = String::new();
    loop {
        line.clear();
        let read = stderr.read_line(&mut line).unwrap();
        assert!(read > 0, "serve exited before it logged {prefix:?}");
        if let Some(rest) = line.split(prefix).nth(1) {
            let address = rest.split(';').next().unwrap().trim().parse().unwrap();
            return (child, address, stderr);
        }
    }
}

/// Spawns `serve` with its standard error piped, and returns the process
/// and that pipe.
fn spawn_serve(folder: &std::path::Path) -> (Child, ChildStderr) {
    let mut child = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
        .arg("--database-url")
        .arg(folder.join("store.db"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nexus-auth serve");
    let stderr = child.stderr.take().unwrap();
    (child, stderr)
}

/// Sends `FLOOD_REQUESTS` requests for an unsupported media type, each of
/// which the login logs, and checks that every one gets its 415.
async fn flood(address: SocketAddr) {
    let request = RawRequest::post("/auth/login", Some("application/xml"), "<login/>");
    let mut tasks = Vec::new();
    for _ in 0..FLOOD_TASKS {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..FLOOD_REQUESTS / FLOOD_TASKS {
                let response = tokio::time::timeout(PROCESS_TIMEOUT, send(address, &request))
                    .await
                    .expect("a login was not answered while standard error was blocked");
                assert_eq!(response.status, 415);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Returns the value of the dropped-lines counter on `/metrics`.
async fn dropped_lines(address: SocketAddr) -> u64 {
    let response = send(address, &RawRequest::get("/metrics")).await;
    assert_eq!(response.status, 200);
    let body = String::from_utf8(response.body).unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix("nexus_auth_log_lines_dropped_total "))
        .expect("no nexus_auth_log_lines_dropped_total on /metrics")
        .trim()
        .parse()
        .unwrap()
}

fn terminate(child: &Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
}

/// Waits up to `PROCESS_TIMEOUT` for `child` to exit; returns the wait.
fn wait_exit(child: &mut Child) -> Duration {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > PROCESS_TIMEOUT {
            let _ = child.kill();
            panic!("serve did not exit within {PROCESS_TIMEOUT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[tokio::test]
async fn blocked_stderr_keeps_serving() {
    let folder = tempfile::tempdir().unwrap();
    let (mut child, address, stderr) = start_unread(folder.path());

    flood(address).await;

    let health = tokio::time::timeout(
        Duration::from_secs(2),
        send(address, &RawRequest::get("/healthz")),
    )
    .await
    .expect("/healthz was not answered while standard error was blocked");
    assert_eq!(health.status, 200);
    assert!(dropped_lines(address).await > 0);

    // Standard error is still unread, so the last lines cannot be written;
    // the process must exit anyway.
    terminate(&child);
    let waited = wait_exit(&mut child);
    assert!(
        waited < Duration::from_secs(10),
        "serve took {waited:?} to exit"
    );
    drop(stderr);
}

#[tokio::test]
async fn dropped_lines_reported_after_unblock() {
    let folder = tempfile::tempdir().unwrap();
    let (mut child, address, stderr) = start_unread(folder.path());

    flood(address).await;
    let dropped = dropped_lines(address).await;
    assert!(dropped > 0);

    // Reading standard error again lets the writer thread write its batch
    // and the line that reports the drops.
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let report = loop {
        let line = received
            .recv_timeout(PROCESS_TIMEOUT.saturating_sub(started.elapsed()))
            .expect("no line reported the dropped log lines");
        if line.contains("nexus_auth::log_output] dropped ") {
            break line;
        }
    };
    assert!(
        report.ends_with("log lines because standard error did not take writes"),
        "{report}"
    );
    let reported: u64 = report
        .split("dropped ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap();
    assert!(reported > 0);
    assert!(reported <= dropped_lines(address).await);

    // Once standard error is quiet, the shutdown lines must all arrive.
    // The report follows the last line written before the gap, and every
    // login line of the flood was logged before it.
    while let Ok(line) = received.recv_timeout(Duration::from_millis(300)) {
        assert!(
            !line.contains("login failed"),
            "a login line came after the report of dropped lines: {line}"
        );
    }
    terminate(&child);
    wait_exit(&mut child);
    reader.join().unwrap();
    let rest: Vec<String> = received.try_iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("nexus-auth stopped")),
        "the stop line is missing after SIGTERM; the last lines: {:#?}",
        &rest[rest.len().saturating_sub(8)..]
    );
}
