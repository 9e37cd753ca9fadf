//! nginx `auth_request` in front of an upstream service, with
//! `GET /auth/session` as the check: the setup that the README gives
//! operators for protecting other services. Runs a real nginx as a child
//! process, so it needs nginx installed (`apt-get install nginx`).

mod common;

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use common::{RawRequest, RawResponse, TestServer, FIXTURE_SIGNALS};

/// Maximum wait for nginx to accept connections after it starts.
const NGINX_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Number of nginx starts to try when another process takes the chosen port
/// between its release and nginx's bind.
const NGINX_START_ATTEMPTS: usize = 5;

/// The nginx configuration under test. Its `server` block is the README's,
/// listening on loopback only. The lines around it keep every file that
/// nginx writes inside `@PREFIX@`, so that nginx runs as any user and never
/// touches `/var`.
const NGINX_CONFIG: &str = r#"
daemon off;
master_process off;
worker_processes 1;
pid "@PREFIX@/nginx.pid";
error_log "@PREFIX@/error.log" info;

events {
    worker_connections 64;
}

http {
    access_log "@PREFIX@/access.log";
    client_body_temp_path "@PREFIX@/client_body";
    proxy_temp_path "@PREFIX@/proxy";
    fastcgi_temp_path "@PREFIX@/fastcgi";
    uwsgi_temp_path "@PREFIX@/uwsgi";
    scgi_temp_path "@PREFIX@/scgi";

    server {
        listen 127.0.0.1:@NGINX_PORT@;

        location / {
            auth_request /_auth;
            auth_request_set $signal_id $upstream_http_x_signal_id;
            # Replaces every X-Signal-Id that the client sent.
            proxy_set_header X-Signal-Id $signal_id;
            proxy_pass http://127.0.0.1:@UPSTREAM_PORT@;
        }

        location = /_auth {
            internal;
            proxy_pass http://127.0.0.1:@NEXUS_AUTH_PORT@/auth/session;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization $http_authorization;
        }
    }
}
"#;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct UpstreamRequest {
    /// Path and query string.
    path: String,
    /// Every `X-Signal-Id` value, one per header line, in order.
    signal_ids: Vec<String>,
}

type RequestLog = Mutex<Vec<UpstreamRequest>>;

/// The protected service: records each request and returns 200 with a body
/// that repeats the `X-Signal-Id` values it received.
struct Upstream {
    address: SocketAddr,
    requests: Arc<RequestLog>,
}

impl Upstream {
    fn start() -> Upstream {
        let requests: Arc<RequestLog> = Arc::default();
        let log = web::Data::from(requests.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(log.clone())
                .default_service(web::to(record_request))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Upstream { address, requests }
    }

    fn requests(&self) -> Vec<UpstreamRequest> {
        self.requests.lock().unwrap().clone()
    }

    fn last_request(&self) -> UpstreamRequest {
        self.requests()
            .last()
            .cloned()
            .expect("the upstream received no request")
    }
}

async fn record_request(request: HttpRequest, log: web::Data<RequestLog>) -> HttpResponse {
    let signal_ids: Vec<String> = request
        .headers()
        .get_all("x-signal-id")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    let body = format!("X-Signal-Id: {}", signal_ids.join(", "));
    log.lock().unwrap().push(UpstreamRequest {
        path: request.uri().to_string(),
        signal_ids,
    });
    HttpResponse::Ok().content_type("text/plain").body(body)
}

/// An nginx child process whose configuration, logs and temporary files
/// are in a temporary folder. Dropping it kills the process, so a failed
/// assertion leaves no nginx running.
struct Nginx {
    address: SocketAddr,
    child: Child,
    folder: tempfile::TempDir,
}

/// How an nginx start ended.
enum StartOutcome {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

impl Nginx {
    /// Starts nginx on a free loopback port in front of `upstream`, checking
    /// each request with the nexus-auth server at `nexus_auth`.
    async fn start(binary: &Path, nexus_auth: SocketAddr, upstream: SocketAddr) -> Nginx {
        for attempt in 1..=NGINX_START_ATTEMPTS {
            let mut nginx = Self::spawn(binary, nexus_auth, upstream);
            match nginx.wait_until_ready().await {
                StartOutcome::Ready => return nginx,
                StartOutcome::Exited(_)
                    if attempt < NGINX_START_ATTEMPTS
                        && nginx.logs().contains("Address already in use") =>
                {
                    continue;
                }
                StartOutcome::Exited(status) => {
                    panic!("nginx exited with {status} at start:\n{}", nginx.logs())
                }
                StartOutcome::TimedOut => panic!(
                    "nginx did not accept connections on {} within {NGINX_START_TIMEOUT:?}:\n{}",
                    nginx.address,
                    nginx.logs()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(binary: &Path, nexus_auth: SocketAddr, upstream: SocketAddr) -> Nginx {
        let folder = tempfile::tempdir().unwrap();
        let prefix = folder.path();
        let address = free_loopback_address();
        let config = NGINX_CONFIG
            .replace("@PREFIX@", &prefix.display().to_string())
            .replace("@NGINX_PORT@", &address.port().to_string())
            .replace("@UPSTREAM_PORT@", &upstream.port().to_string())
            .replace("@NEXUS_AUTH_PORT@", &nexus_auth.port().to_string());
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();

        // nginx also writes start-up errors, such as an unknown directive, to
        // standard error.
        let stderr = File::create(prefix.join("stderr.log")).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {}: {error}", binary.display()));
        Nginx {
            address,
            child,
            folder,
        }
    }

    async fn wait_until_ready(&mut self) -> StartOutcome {
        let deadline = Instant::now() + NGINX_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return StartOutcome::Exited(status);
            }
            if tokio::net::TcpStream::connect(self.address).await.is_ok() {
                // A port that accepts while nginx has exited belongs to
                // another process.
                return match self.child.try_wait().unwrap() {
                    None => StartOutcome::Ready,
                    Some(status) => StartOutcome::Exited(status),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        StartOutcome::TimedOut
    }

    /// Returns nginx's standard error and error log, for failure messages.
    fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.folder.path().join(name)).unwrap_or_default();
        format!(
            "--- stderr ---\n{}--- error.log ---\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }

    async fn send(&self, request: &RawRequest) -> RawResponse {
        common::http::send(self.address, request).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback address whose port was free a moment ago. Another
/// process can take it before nginx binds, so `Nginx::start` retries.
fn free_loopback_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Finds nginx on PATH, then at `/usr/sbin/nginx`, where Debian's package
/// installs it and which the PATH of a user other than root often lacks.
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|folder| folder.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|candidate| candidate.is_file())
}

/// Logs in as the fixture signal `signal_id` and returns its JWT.
async fn log_in(server: &TestServer, signal_id: &str) -> String {
    let (_, signal_token, _) = FIXTURE_SIGNALS
        .iter()
        .find(|(id, _, _)| *id == signal_id)
        .expect("a fixture signal");
    server.login(signal_id, signal_token).await
}

/// Returns a GET request for `path` with the given header lines.
fn get(path: &str, headers: &[(&str, &str)]) -> RawRequest {
    let mut request = RawRequest::get(path);
    request.headers = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    request
}

/// Returns `token` with the first character of its signature replaced, so
/// that its header and claims still parse but the signature does not match.
fn with_changed_signature(token: &str) -> String {
    let (signed_part, signature) = token.rsplit_once('.').expect("a JWT");
    let replacement = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{signed_part}.{replacement}{}", &signature[1..])
}

fn body_text(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Checks a request that nginx let through: the client got the upstream's
/// 200, and the upstream got `path` with exactly one `X-Signal-Id`.
fn assert_reached_upstream(
    response: &RawResponse,
    upstream: &Upstream,
    path: &str,
    signal_id: &str,
) {
    assert_eq!(response.status, 200, "body: {}", body_text(response));
    assert_eq!(body_text(response), format!("X-Signal-Id: {signal_id}"));
    let request = upstream.last_request();
    assert_eq!(request.path, path);
    assert_eq!(request.signal_ids, [signal_id]);
}

/// Checks a request that nginx rejected: 401 with the challenge that
/// nginx copies from `/auth/session`.
fn assert_rejected(response: &RawResponse) {
    assert_eq!(response.status, 401, "body: {}", body_text(response));
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[actix_web::test]
async fn nginx_auth_request_guards_upstream() {
    let Some(nginx_binary) = find_nginx() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is not installed (not on PATH, not at /usr/sbin/nginx), and CI is set, \
             so this test must run: install it with `apt-get install nginx`, as .ci/run does"
        );
        // Written to the stderr handle itself, because libtest captures
        // eprintln! output and shows it only for failed tests.
        let _ = writeln!(
            std::io::stderr(),
            "forward_auth: skipped because nginx is not installed. \
             Install it with `apt-get install nginx` to run this test."
        );
        return;
    };

    let server = TestServer::start().await;
    let upstream = Upstream::start();
    let nginx = Nginx::start(&nginx_binary, server.address, upstream.address).await;
    let token = log_in(&server, "fixture-signal").await;
    let bearer = format!("Bearer {token}");

    // A valid token in `Authorization: Bearer` reaches the upstream, which
    // receives the path and query unchanged.
    let response = nginx
        .send(&get("/reports/7?page=2", &[("Authorization", &bearer)]))
        .await;
    assert_reached_upstream(&response, &upstream, "/reports/7?page=2", "fixture-signal");
    assert_eq!(upstream.requests().len(), 1);

    // The scheme is case-insensitive.
    let lower_case_bearer = format!("bearer {token}");
    let response = nginx
        .send(&get("/reports", &[("Authorization", &lower_case_bearer)]))
        .await;
    assert_reached_upstream(&response, &upstream, "/reports", "fixture-signal");
    assert_eq!(upstream.requests().len(), 2);

    // The bare token, without a scheme.
    let response = nginx
        .send(&get("/reports", &[("Authorization", &token)]))
        .await;
    assert_reached_upstream(&response, &upstream, "/reports", "fixture-signal");
    assert_eq!(upstream.requests().len(), 3);

    // A signal id outside printable ASCII arrives percent-encoded.
    let accented_token = log_in(&server, "fixture signal \u{e9}").await;
    let response = nginx
        .send(&get(
            "/reports",
            &[("Authorization", &format!("Bearer {accented_token}"))],
        ))
        .await;
    assert_reached_upstream(
        &response,
        &upstream,
        "/reports",
        "fixture%20signal%20%C3%A9",
    );
    assert_eq!(upstream.requests().len(), 4);

    // No token.
    let response = nginx.send(&get("/reports", &[])).await;
    assert_rejected(&response);
    assert_eq!(upstream.requests().len(), 4);

    // A malformed token, bare and with the scheme.
    let response = nginx
        .send(&get("/reports", &[("Authorization", "not-a-jwt")]))
        .await;
    assert_rejected(&response);
    let response = nginx
        .send(&get("/reports", &[("Authorization", "Bearer not-a-jwt")]))
        .await;
    assert_rejected(&response);
    assert_eq!(upstream.requests().len(), 4);

    // A token whose signature was changed.
    let forged = format!("Bearer {}", with_changed_signature(&token));
    let response = nginx
        .send(&get("/reports", &[("Authorization", &forged)]))
        .await;
    assert_rejected(&response);
    assert_eq!(upstream.requests().len(), 4);

    // A client-sent X-Signal-Id without a token is rejected like no token.
    let response = nginx
        .send(&get("/reports", &[("X-Signal-Id", "admin")]))
        .await;
    assert_rejected(&response);
    assert_eq!(upstream.requests().len(), 4);

    // With a valid token, the upstream receives the token's signal id in
    // place of every X-Signal-Id line that the client sent, in either case.
    let response = nginx
        .send(&get(
            "/reports",
            &[
                ("X-Signal-Id", "admin"),
                ("x-signal-id", "admin"),
                ("Authorization", &bearer),
            ],
        ))
        .await;
    assert_reached_upstream(&response, &upstream, "/reports", "fixture-signal");
    assert_eq!(upstream.requests().len(), 5);

    // Disabling the signal rejects its unexpired token on the next request.
    server
        .store
        .set_signal_enabled("fixture-signal", false)
        .await
        .unwrap();
    let response = nginx
        .send(&get("/reports", &[("Authorization", &bearer)]))
        .await;
    assert_rejected(&response);
    assert_eq!(upstream.requests().len(), 5);
}
