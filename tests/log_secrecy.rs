//! The `nexus-auth` binary, logging at trace level, writes no signal token,
//! no JWT and no signing key to its standard output or standard error while
//! it responds to every login fixture. None of its responses contains a
//! fixture signal token.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use common::fixtures::{self, Fixture};
use common::FIXTURE_SIGNALS;
use nexus_auth::store::{self, StoreOptions};

/// Maximum wait for the server's start-up line and for its exit.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

use common::nexus_auth;

/// Runs `nexus-auth signals <args> --database-url <database>`, writing
/// `stdin` to its standard input. Panics unless it succeeds.
fn signals(database: &Path, args: &[&str], stdin: &str) {
    let mut child = nexus_auth()
        .arg("signals")
        .args(args)
        .arg("--database-url")
        .arg(database)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "signals {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Imports the fixture signals with their known tokens, so that `serve`
/// finds a non-empty store and prints no bootstrap token.
fn import_fixture_signals(database: &Path) {
    for (signal_id, token, enabled) in FIXTURE_SIGNALS {
        signals(
            database,
            &["create", signal_id, "--token-stdin"],
            &format!("{token}\n"),
        );
        if !enabled {
            signals(database, &["disable", signal_id], "");
        }
    }
}

/// Everything a child wrote to one stream, read on a thread. Each line is
/// also sent on `lines`, so that a test can wait for one.
struct Capture {
    lines: mpsc::Receiver<String>,
    reader: JoinHandle<Vec<u8>>,
}

impl Capture {
    fn start(stream: impl Read + Send + 'static) -> Capture {
        let (sender, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut all = Vec::new();
            let mut line = Vec::new();
            // Ends at end of file, which comes when the child exits.
            while reader
                .read_until(b'\n', &mut line)
                .is_ok_and(|count| count > 0)
            {
                let _ = sender.send(String::from_utf8_lossy(&line).into_owned());
                all.append(&mut line);
            }
            all
        });
        Capture { lines, reader }
    }

    fn wait_for_line(&self, pattern: &str) -> String {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no line containing {pattern:?} within {PROCESS_TIMEOUT:?}")
            });
            if line.contains(pattern) {
                return line;
            }
        }
    }

    /// Returns every byte of the stream. Call it after the child has exited.
    fn finish(self) -> Vec<u8> {
        self.reader.join().expect("the reader thread panicked")
    }
}

/// Stops `child` with SIGTERM and waits for it to exit.
fn stop(child: &mut Child) {
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success(), "kill -TERM failed");
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("the server did not exit within {PROCESS_TIMEOUT:?} of SIGTERM");
}

/// Loads the login fixtures to send: all but those that need a closed
/// store, the ones expecting 200 first. Should a failed-login limit still
/// apply, it then cannot reject any of them before its JWT is issued.
fn fixtures_to_send() -> Vec<Fixture> {
    let mut fixtures: Vec<Fixture> = fixtures::load_all(&fixtures::login_folder())
        .into_iter()
        .filter(|fixture| !fixture.store_unavailable)
        .collect();
    fixtures.sort_by_key(|fixture| fixture.expect_status != 200);
    fixtures
}

/// Returns a secret's forms that a log line could contain, each with a
/// label for the failure message.
fn key_forms(label: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![
        (format!("{label} as raw bytes"), bytes.to_vec()),
        (
            format!("{label} as Debug bytes"),
            format!("{bytes:?}").into_bytes(),
        ),
    ];
    for (name, text) in [
        ("base64", STANDARD.encode(bytes)),
        ("unpadded base64", STANDARD_NO_PAD.encode(bytes)),
        ("base64url", URL_SAFE.encode(bytes)),
        ("unpadded base64url", URL_SAFE_NO_PAD.encode(bytes)),
    ] {
        forms.push((format!("{label} as {name}"), text.into_bytes()));
    }
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    forms.push((
        format!("{label} as upper-case hex"),
        hex.to_uppercase().into_bytes(),
    ));
    forms.push((format!("{label} as hex"), hex.into_bytes()));
    forms
}

/// Returns a fragment of `token` that survives every encoding the fixtures
/// use: the first 16 characters of its longest run of ASCII letters, digits
/// and `_`, in lower case. Searching the lower-cased output for it also
/// finds near copies, such as the token in another case or with its end
/// changed.
fn token_fragment(token: &str) -> String {
    let run = token
        .split(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
        .max_by_key(|run| run.len())
        .unwrap();
    run[..run.len().min(16)].to_ascii_lowercase()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[actix_web::test]
async fn trace_log_holds_no_secrets() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("nexus-auth.db");
    import_fixture_signals(&database);

    let mut child = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
        // Every fixture comes from one address, and its failed logins would
        // soon turn the rest into 429s that never reach the login code.
        .args([
            "--rate-limit-per-address",
            "0",
            "--rate-limit-per-signal",
            "0",
        ])
        .arg("--database-url")
        .arg(&database)
        .env("RUST_LOG", "trace")
        .current_dir(folder.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Capture::start(child.stdout.take().unwrap());
    let stderr = Capture::start(child.stderr.take().unwrap());
    let listening = stderr.wait_for_line("listening on http://");
    let address: SocketAddr = listening
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .parse()
        .unwrap();

    let fixtures = fixtures_to_send();
    let expected_issued = fixtures
        .iter()
        .filter(|fixture| fixture.expect_status == 200)
        .count();
    let mut jwts = Vec::new();
    let mut responses = Vec::new();
    for fixture in &fixtures {
        let response = common::http::send(address, &fixture.request).await;
        if response.status == 200 {
            jwts.push(response.json()["token"].as_str().unwrap().to_owned());
        }
        responses.push((fixture.name.as_str(), response));
    }

    stop(&mut child);
    let stdout = stdout.finish();
    let stderr = stderr.finish();
    let mut output = stdout.clone();
    output.extend_from_slice(&stderr);
    let lower_case_output = output.to_ascii_lowercase();

    let options = StoreOptions::new(database.display().to_string(), Duration::from_secs(5));
    let key = store::open(&options)
        .await
        .unwrap()
        .active_signing_key()
        .await
        .unwrap()
        .expect("the server created a signing key");
    let private_key = key.private_key.expose();

    // The checks below can only fail if the server logged its logins and
    // issued tokens, so make sure it did.
    assert!(
        jwts.len() >= expected_issued,
        "{} JWTs issued for {expected_issued} fixtures that expect 200",
        jwts.len()
    );
    let log = String::from_utf8_lossy(&stderr);
    assert!(log.contains("login issued"), "no login lines:\n{log}");
    assert!(
        log.contains("login failed"),
        "no failed-login lines:\n{log}"
    );
    assert!(
        !String::from_utf8_lossy(&stdout).contains("signalToken:"),
        "serve printed a bootstrap token although the store held signals"
    );

    let mut leaks = Vec::new();
    for (signal_id, token, _) in FIXTURE_SIGNALS {
        if contains(&output, token.as_bytes()) {
            leaks.push(format!("the token of {signal_id:?}"));
        }
        let fragment = token_fragment(token);
        if contains(&lower_case_output, fragment.as_bytes()) {
            leaks.push(format!("{fragment:?}, part of the token of {signal_id:?}"));
        }
    }
    for (index, jwt) in jwts.iter().enumerate() {
        let signature = jwt.rsplit('.').next().unwrap();
        if contains(&output, jwt.as_bytes()) {
            leaks.push(format!("JWT {index}"));
        } else if contains(&output, signature.as_bytes()) {
            leaks.push(format!("the signature of JWT {index}"));
        }
    }
    let mut forms = key_forms("the private key", private_key);
    // An Ed25519 PKCS#8 key ends with its 32-byte seed, the secret itself.
    if key.algorithm == "EdDSA" && private_key.len() > 32 {
        forms.extend(key_forms(
            "the Ed25519 seed",
            &private_key[private_key.len() - 32..],
        ));
    }
    for (label, form) in forms {
        if contains(&output, &form) {
            leaks.push(label);
        }
    }

    assert!(
        leaks.is_empty(),
        "the server output contains {}:\n{}",
        leaks.join(", "),
        String::from_utf8_lossy(&output)
    );

    // Error messages must not quote the body, which may contain a token.
    let mut leaking_responses = Vec::new();
    for (name, response) in &responses {
        let mut text = String::new();
        for (header, value) in &response.headers {
            text.push_str(&format!("{header}: {value}\n"));
        }
        text.push_str(&String::from_utf8_lossy(&response.body));
        let text = text.to_ascii_lowercase();
        for (signal_id, token, _) in FIXTURE_SIGNALS {
            if text.contains(&token_fragment(token)) {
                leaking_responses.push(format!(
                    "{name}: the token of {signal_id:?} in {}",
                    String::from_utf8_lossy(&response.body)
                ));
            }
        }
    }
    assert!(
        leaking_responses.is_empty(),
        "responses contain a signal token:\n{}",
        leaking_responses.join("\n")
    );
}
