//! The `nexus-auth` binary as an operator runs it: signal management
//! against a store that a real server reads, `serve` start-up and shutdown,
//! and the messages for bad settings.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{RawRequest, TestServer};

use common::nexus_auth;

/// Runs `nexus-auth signals <args> --database-url <database>`.
fn signals(database: &Path, args: &[&str]) -> Output {
    nexus_auth()
        .arg("signals")
        .args(args)
        .arg("--database-url")
        .arg(database)
        .output()
        .unwrap()
}

/// Runs a `signals` command that must succeed; returns its standard output.
fn signals_ok(database: &Path, args: &[&str]) -> String {
    let output = signals(database, args);
    assert!(
        output.status.success(),
        "signals {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Creates a signal and returns the token printed for it.
fn create_signal(database: &Path, id: &str) -> String {
    let token = signals_ok(database, &["create", id]).trim().to_owned();
    assert!(
        token.starts_with("sgt_"),
        "unexpected token output {token:?}"
    );
    token
}

fn rotate(database: &Path, id: &str, grace: Option<&str>) -> String {
    let mut args = vec!["rotate", id];
    if let Some(grace) = grace {
        args.extend(["--grace", grace]);
    }
    signals_ok(database, &args).trim().to_owned()
}

async fn login_status(address: SocketAddr, id: &str, token: &str) -> u16 {
    let body = serde_json::json!({ "signalId": id, "signalToken": token }).to_string();
    let request = RawRequest::post("/auth/login", Some("application/json"), body);
    common::http::send(address, &request).await.status
}

#[actix_web::test]
async fn signal_lifecycle() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("cli.db");
    let first = create_signal(&database, "sensor-7");
    let (address, _store) = TestServer::start_on(&database).await;

    assert_eq!(
        login_status(address, "sensor-7", &first).await,
        200,
        "new signal"
    );
    let listing = signals_ok(&database, &["list"]);
    assert!(
        listing.contains("sensor-7") && listing.contains("enabled"),
        "{listing}"
    );

    let second = rotate(&database, "sensor-7", None);
    assert_eq!(
        login_status(address, "sensor-7", &first).await,
        401,
        "token replaced without grace"
    );
    assert_eq!(
        login_status(address, "sensor-7", &second).await,
        200,
        "token after rotation"
    );

    let third = rotate(&database, "sensor-7", Some("1h"));
    assert_eq!(
        login_status(address, "sensor-7", &second).await,
        200,
        "previous token inside grace"
    );
    assert_eq!(
        login_status(address, "sensor-7", &third).await,
        200,
        "new token inside grace"
    );
    assert_eq!(
        login_status(address, "sensor-7", &first).await,
        401,
        "token two rotations back"
    );

    signals_ok(&database, &["disable", "sensor-7"]);
    assert_eq!(
        login_status(address, "sensor-7", &third).await,
        401,
        "disabled signal"
    );
    assert!(signals_ok(&database, &["list"]).contains("disabled"));

    signals_ok(&database, &["enable", "sensor-7"]);
    assert_eq!(
        login_status(address, "sensor-7", &third).await,
        200,
        "enabled again"
    );

    signals_ok(&database, &["delete", "sensor-7"]);
    assert_eq!(
        login_status(address, "sensor-7", &third).await,
        401,
        "deleted signal"
    );

    let again = signals(&database, &["delete", "sensor-7"]);
    assert!(!again.status.success(), "deleting twice succeeded");
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(
        message.contains("no signal with id \"sensor-7\""),
        "{message}"
    );
}

#[actix_web::test]
async fn grace_period_ends() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("cli.db");
    let old = create_signal(&database, "meter");
    let (address, _store) = TestServer::start_on(&database).await;

    let new = rotate(&database, "meter", Some("2s"));
    assert_eq!(
        login_status(address, "meter", &old).await,
        200,
        "inside the grace period"
    );

    // Grace ends at whole seconds, so 2 s of grace ends within 3 s.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        login_status(address, "meter", &old).await,
        401,
        "after the grace period"
    );
    assert_eq!(
        login_status(address, "meter", &new).await,
        200,
        "new token after grace"
    );
}

#[actix_web::test]
async fn token_from_stdin() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("cli.db");
    let import = |token: &str| {
        let mut child = nexus_auth()
            .args([
                "signals",
                "create",
                "legacy-client",
                "--token-stdin",
                "--database-url",
            ])
            .arg(&database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
        child.wait_with_output().unwrap()
    };

    let short = import("too-short-to-be-random");
    assert!(!short.status.success(), "a 22-character token was accepted");
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32"));

    let token = "legacy-token-0123456789-abcdefghijklmnop";
    let imported = import(token);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        imported.stdout.is_empty(),
        "an imported token is not printed again"
    );

    let (address, _store) = TestServer::start_on(&database).await;
    assert_eq!(login_status(address, "legacy-client", token).await, 200);
}

#[test]
fn operator_errors_in_plain_words() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("cli.db");
    create_signal(&database, "sensor-7");

    let duplicate = signals(&database, &["create", "sensor-7"]);
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let control = signals(&database, &["create", "bad\tid"]);
    assert_eq!(control.status.code(), Some(2), "id with a tab");

    let unknown = signals(&database, &["disable", "missing"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no signal with id \"missing\""));

    let unopenable = folder.path().join("no-such-folder/cli.db");
    let output = signals(&unopenable, &["create", "sensor-8"]);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(message.contains("cannot open the store at"), "{message}");
    assert!(message.contains("no-such-folder/cli.db"), "{message}");
    assert!(message.contains("--database-url"), "{message}");
}

#[test]
fn bad_setting_names_flag_and_variable() {
    let from_flag = nexus_auth()
        .args(["serve", "--token-ttl", "soon"])
        .output()
        .unwrap();
    let from_env = nexus_auth()
        .arg("serve")
        .env("NEXUS_AUTH_BODY_LIMIT", "huge")
        .output()
        .unwrap();
    let bad_bind = nexus_auth()
        .args(["serve", "--bind", "localhost"])
        .output()
        .unwrap();

    for (output, flag, variable) in [
        (from_flag, "--token-ttl", "NEXUS_AUTH_TOKEN_TTL"),
        (from_env, "--body-limit", "NEXUS_AUTH_BODY_LIMIT"),
        (bad_bind, "--bind", "NEXUS_AUTH_BIND"),
    ] {
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {message}");
        assert!(message.contains(flag), "{flag}: {message}");
        assert!(message.contains(variable), "{flag}: {message}");
    }
}

#[test]
fn bad_cors_origin_rejected_before_start() {
    let folder = tempfile::tempdir().unwrap();
    for origin in [
        "http://a\"b",
        "http://[::1",
        "http://exa%mple",
        "https://app.example.com:99999",
        "https://app.example.com/path",
        "app.example.com",
    ] {
        let output = nexus_auth()
            .args(["serve", "--bind", "127.0.0.1:0", "--cors-origin", origin])
            .current_dir(folder.path())
            .output()
            .unwrap();
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{origin}: {message}");
        assert!(message.contains("--cors-origin"), "{origin}: {message}");
        assert!(
            message.contains("NEXUS_AUTH_CORS_ORIGINS"),
            "{origin}: {message}"
        );
    }
    assert!(
        !folder.path().join("nexus-auth.db").exists(),
        "the store was created"
    );
}

#[test]
fn missing_store_not_created() {
    let folder = tempfile::tempdir().unwrap();
    let typo = folder.path().join("typo.db");

    for args in [
        vec!["signals", "list"],
        vec!["signals", "disable", "sensor-7"],
        vec!["keys", "list"],
        vec!["keys", "retire", "some-kid"],
    ] {
        let output = nexus_auth()
            .args(&args)
            .arg("--database-url")
            .arg(&typo)
            .output()
            .unwrap();
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert!(message.contains("no store exists"), "{args:?}: {message}");
        assert!(!typo.exists(), "{args:?} created the store");
    }

    let in_memory = nexus_auth()
        .args([
            "signals",
            "list",
            "--database-url",
            "sqlite://m.db?mode=memory",
        ])
        .current_dir(folder.path())
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&in_memory.stderr);
    assert_eq!(in_memory.status.code(), Some(1), "{message}");
    assert!(message.contains("names no file"), "{message}");
}

#[test]
fn taken_port_leaves_store_untouched() {
    let folder = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = occupied.local_addr().unwrap().to_string();

    let output = nexus_auth()
        .args(["serve", "--bind", &address])
        .current_dir(folder.path())
        .output()
        .unwrap();

    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(message.contains("cannot listen on"), "{message}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("signalToken"),
        "a demo token was printed"
    );
    assert!(
        !folder.path().join("nexus-auth.db").exists(),
        "the store was created"
    );
}

/// Reads lines of a child's stream on a thread, so that a test can wait
/// for a line with a deadline.
fn line_reader(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn wait_for_line(lines: &mpsc::Receiver<String>, pattern: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no line containing {pattern:?} within 20 s"));
        if line.contains(pattern) {
            return line;
        }
    }
}

/// A `nexus-auth serve` process started on a new store, with the `demo`
/// token it printed and the address it logged.
struct ServeProcess {
    child: std::process::Child,
    stderr: mpsc::Receiver<String>,
    address: SocketAddr,
    demo_token: String,
}

/// Starts `serve --bind 127.0.0.1:0 --workers 1` plus `args` in `folder`
/// and waits for its `scheme://` listening line.
fn start_serve(
    folder: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    scheme: &str,
) -> ServeProcess {
    let mut child = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = line_reader(child.stdout.take().unwrap());
    let stderr = line_reader(child.stderr.take().unwrap());

    let token_line = wait_for_line(&stdout, "signalToken:");
    let demo_token = token_line.split_whitespace().last().unwrap().to_owned();
    let prefix = format!("listening on {scheme}://");
    let listening = wait_for_line(&stderr, &prefix);
    assert!(listening.contains("signing key"), "{listening}");
    let address = listening
        .split(&prefix)
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    ServeProcess {
        child,
        stderr,
        address,
        demo_token,
    }
}

impl ServeProcess {
    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(mut self) -> (std::process::ExitStatus, mpsc::Receiver<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        (self.child.wait().unwrap(), self.stderr)
    }
}

#[actix_web::test]
async fn serve_bootstraps_and_stops_on_sigterm() {
    let folder = tempfile::tempdir().unwrap();
    let serve = start_serve(folder.path(), &[], &[], "http");
    assert!(
        folder.path().join("nexus-auth.db").exists(),
        "default database file"
    );

    let token = serve.demo_token.clone();
    assert_eq!(
        login_status(serve.address, "demo", &token).await,
        200,
        "bootstrap signal"
    );

    let (status, stderr) = serve.terminate();
    wait_for_line(&stderr, "SIGTERM received");
    wait_for_line(&stderr, "nexus-auth stopped");
    assert!(status.success(), "exit status {status}");

    let listing = signals_ok(&folder.path().join("nexus-auth.db"), &["list"]);
    assert!(listing.contains("demo"), "{listing}");
}

#[test]
fn no_bootstrap_leaves_store_empty() {
    let folder = tempfile::tempdir().unwrap();
    let mut child = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--no-bootstrap"])
        .current_dir(folder.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = line_reader(child.stderr.take().unwrap());
    wait_for_line(&stderr, "listening on http://");

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();

    assert!(output.status.success());
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let database = folder.path().join("nexus-auth.db");
    assert!(
        signals(&database, &["list"]).stdout.is_empty(),
        "signals were created"
    );
}

/// Sends `request` over TLS to `address`, trusting only `certificate`.
fn send_over_tls(address: SocketAddr, certificate: &[u8], request: &RawRequest) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::Read;
    use std::sync::Arc;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(certificate.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::IpAddress(address.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);

    stream.write_all(&request.to_bytes()).unwrap();
    let mut response = Vec::new();
    // The server may close without close_notify; what arrived still counts.
    let _ = stream.read_to_end(&mut response);
    response
}

#[test]
fn serve_over_tls() {
    let folder = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_path = folder.path().join("cert.pem");
    let key_path = folder.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let tls_args = [
        std::ffi::OsStr::new("--tls-cert"),
        cert_path.as_os_str(),
        std::ffi::OsStr::new("--tls-key"),
        key_path.as_os_str(),
    ];
    let serve = start_serve(folder.path(), &tls_args, &[], "https");

    let body =
        serde_json::json!({ "signalId": "demo", "signalToken": serve.demo_token }).to_string();
    let request = RawRequest::post("/auth/login", Some("application/json"), body);
    let response = send_over_tls(serve.address, certified.cert.der(), &request);
    serve.terminate();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("\"token\":\"ey"), "{response}");
}

#[test]
fn tls_settings_checked_before_start() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("missing-cert.pem");

    let unreadable = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&missing)
        .current_dir(folder.path())
        .output()
        .unwrap();
    let half = nexus_auth()
        .args(["serve", "--tls-cert", "cert.pem"])
        .current_dir(folder.path())
        .output()
        .unwrap();

    let message = String::from_utf8_lossy(&unreadable.stderr);
    assert!(!unreadable.status.success());
    assert!(
        message.contains("missing-cert.pem") && message.contains("--tls-cert"),
        "{message}"
    );
    assert!(
        !folder.path().join("nexus-auth.db").exists(),
        "the store was created"
    );
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
}

#[actix_web::test]
async fn logs_hold_no_secrets() {
    let folder = tempfile::tempdir().unwrap();
    let serve = start_serve(folder.path(), &[], &[("RUST_LOG", "trace")], "http");
    let (address, token) = (serve.address, serve.demo_token.clone());

    let wrong_token = "sgt_WrongTokenThatMustNotBeLogged0123456789";
    let login = |id: &str, token: &str| {
        let body = serde_json::json!({ "signalId": id, "signalToken": token }).to_string();
        RawRequest::post("/auth/login", Some("application/json"), body)
    };
    let issued = common::http::send(address, &login("demo", &token)).await;
    let jwt = issued.json()["token"].as_str().unwrap().to_owned();
    common::http::send(address, &login("demo", wrong_token)).await;
    // A client that swaps the fields sends its token as the id.
    common::http::send(address, &login(&token, "demo")).await;
    let form = format!("signalId=demo&signalToken={wrong_token}");
    common::http::send(address, &RawRequest::post("/auth/login", None, form)).await;

    let (_status, stderr) = serve.terminate();
    // The reader thread ends its channel when the process's stderr closes.
    let mut lines = Vec::new();
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    let log = lines.join("\n");

    assert!(
        log.contains("login issued"),
        "the log has no login lines:\n{log}"
    );
    assert!(!log.contains(&token), "the signal token is in the log");
    assert!(
        !log.contains(wrong_token),
        "a presented token is in the log"
    );
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the JWT is in the log");
}

/// Runs `nexus-auth keys <args> --database-url <database>`.
fn keys(database: &Path, args: &[&str]) -> Output {
    nexus_auth()
        .arg("keys")
        .args(args)
        .arg("--database-url")
        .arg(database)
        .output()
        .unwrap()
}

#[test]
fn keys_rotate_and_retire() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("cli.db");
    create_signal(&database, "sensor-7");
    let empty = keys(&database, &["list"]);
    assert!(empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("No signing key exists yet"));

    let first = keys(&database, &["rotate"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first_kid = String::from_utf8(first.stdout).unwrap().trim().to_owned();
    let second = keys(&database, &["rotate", "--signing-alg", "RS256"]);
    let second_kid = String::from_utf8(second.stdout).unwrap().trim().to_owned();
    assert_ne!(first_kid, second_kid);

    let listing = String::from_utf8(keys(&database, &["list"]).stdout).unwrap();
    let line_of = |kid: &str| {
        listing
            .lines()
            .find(|line| line.starts_with(kid))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line_of(&second_kid).contains("RS256") && line_of(&second_kid).contains("(active)"),
        "{listing}"
    );
    assert!(
        line_of(&first_kid).contains("EdDSA") && !line_of(&first_kid).contains("(active)"),
        "{listing}"
    );

    // Retiring the active key hands signing to a new key of its algorithm.
    let retired = keys(&database, &["retire", &second_kid]);
    let message = String::from_utf8_lossy(&retired.stderr);
    assert!(retired.status.success(), "{message}");
    assert!(
        message.contains("a new RS256 key signs from now on"),
        "{message}"
    );
    let listing = String::from_utf8(keys(&database, &["list"]).stdout).unwrap();
    let active: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains("(active)"))
        .collect();
    assert_eq!(active.len(), 1, "{listing}");
    assert!(
        active[0].contains("RS256") && !active[0].starts_with(&second_kid),
        "{listing}"
    );

    let unknown = keys(&database, &["retire", "no-such-kid"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no signing key with id \"no-such-kid\"")
    );
    let hmac = keys(&database, &["rotate", "--signing-alg", "HS256"]);
    assert!(!hmac.status.success());
    assert!(String::from_utf8_lossy(&hmac.stderr).contains("HS256 keys are not stored"));
}

#[test]
fn hs256_needs_secret_file() {
    let folder = tempfile::tempdir().unwrap();
    let short = folder.path().join("short.secret");
    std::fs::write(&short, "too-short").unwrap();

    let missing = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--signing-alg", "HS256"])
        .current_dir(folder.path())
        .output()
        .unwrap();
    let too_short = nexus_auth()
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--signing-alg",
            "HS256",
            "--hs256-secret-file",
        ])
        .arg(&short)
        .current_dir(folder.path())
        .output()
        .unwrap();
    let unknown = nexus_auth()
        .args(["serve", "--signing-alg", "none"])
        .output()
        .unwrap();

    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(message.contains("--hs256-secret-file"), "{message}");
    let message = String::from_utf8_lossy(&too_short.stderr);
    assert!(message.contains("at least 32"), "{message}");
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(message.contains("NEXUS_AUTH_SIGNING_ALG"), "{message}");
}
