//! Browser tests in headless Chromium. The `/docs` page sends a login in
//! each of the four body formats and shows its 200. A page on another
//! loopback origin logs in through CORS, and is blocked when its origin is
//! not allowed.
//!
//! They need Debian's `chromium` (`.ci/run` installs it). Without it they
//! fail when `CI` is set and are skipped with a message otherwise. The
//! screenshot of the docs page goes to `target/test-artifacts/`.

mod common;

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use common::{test_settings, RawRequest, TestServer, FIXTURE_SIGNALS};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

const CHROMIUM: &str = "/usr/bin/chromium";
const SIGNAL_ID: &str = FIXTURE_SIGNALS[0].0;
const SIGNAL_TOKEN: &str = FIXTURE_SIGNALS[0].1;
/// Maximum wait for the page to render or respond, on a loaded 2-core CI
/// machine.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts headless Chromium with a fresh profile and no background
/// traffic, or returns `None` (skip) when it is missing outside CI.
fn launch_chromium(profile: &Path) -> Option<Browser> {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing; install Debian's chromium package"
        );
        eprintln!("skipped: {CHROMIUM} is missing; install Debian's chromium package");
        return None;
    }
    // Without the background-networking flags, Chromium tries to reach
    // Google's hosts at every start.
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .user_data_dir(Some(profile.to_path_buf()))
        .window_size(Some((1280, 1600)))
        .idle_browser_timeout(Duration::from_secs(120))
        .args(args)
        .build()
        .unwrap();
    Some(Browser::new(options).expect("Chromium failed to start"))
}

/// Evaluates `expression` (which may return a promise) and returns its
/// value as a string.
fn evaluate(tab: &Tab, expression: &str) -> String {
    let result = tab.evaluate(expression, true).unwrap();
    match result.value {
        Some(serde_json::Value::String(text)) => text,
        other => panic!("{expression} returned {other:?}"),
    }
}

/// Polls `expression` until it returns `true` or `PAGE_TIMEOUT` passes.
fn wait_until(tab: &Tab, expression: &str) {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let value = tab.evaluate(expression, false).unwrap().value;
        if value == Some(serde_json::Value::Bool(true)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {expression}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn artifact_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let folder = target.join("test-artifacts");
    std::fs::create_dir_all(&folder).unwrap();
    folder.join(name)
}

/// Returns the login attempts that `/metrics` counts for `outcome` and
/// body `format`.
async fn login_count(address: SocketAddr, outcome: &str, format: &str) -> u64 {
    let metrics = common::http::send(address, &RawRequest::get("/metrics")).await;
    let text = String::from_utf8(metrics.body).unwrap();
    let series =
        format!("nexus_auth_login_attempts_total{{format=\"{format}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// Defines `sendLogin(mediaType, signalId, signalToken)` on the docs page:
/// it picks the media type of the expanded login operation, fills in the
/// fields the way that media type shows them, presses Execute, and returns
/// the status the page shows. React owns the fields' values, so each value
/// goes through the native setter and an event, as typing would.
const SEND_LOGIN_SCRIPT: &str = r#"
window.sendLogin = async (mediaType, signalId, signalToken) => {
  const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
  const setValue = (element, value, event) => {
    const prototype = Object.getPrototypeOf(element);
    Object.getOwnPropertyDescriptor(prototype, 'value').set.call(element, value);
    element.dispatchEvent(new Event(event, {bubbles: true}));
  };
  const operation = document.querySelector('#operations-login-post_login');
  const clear = operation.querySelector('button.btn-clear');
  if (clear) {
    clear.click();
    await sleep(200);
  }
  const select = operation.querySelector('.opblock-section-request-body select');
  if (select.value !== mediaType) {
    setValue(select, mediaType, 'change');
    await sleep(300);
  }
  if (mediaType === 'application/json') {
    const body = operation.querySelector('textarea.body-param__text');
    setValue(body, JSON.stringify({signalId, signalToken}), 'input');
  } else if (mediaType === 'text/plain') {
    const body = operation.querySelector('textarea.body-param__text');
    const pairs = 'signalId=' + encodeURIComponent(signalId)
      + '&signalToken=' + encodeURIComponent(signalToken);
    setValue(body, pairs, 'input');
  } else {
    // Swagger UI fills the form fields with example values after a media
    // type change, sometimes after this script's first write, so the
    // fields are written until they keep the values.
    const fields = [['signalId', signalId], ['signalToken', signalToken]];
    const input = name => operation.querySelector(`tr[data-property-name="${name}"] input`);
    for (let attempt = 0; attempt < 50; attempt++) {
      if (fields.every(([name, value]) => input(name) && input(name).value === value)) {
        break;
      }
      for (const [name, value] of fields) {
        if (input(name)) {
          setValue(input(name), value, 'input');
        }
      }
      await sleep(200);
    }
  }
  // Swagger UI's form fields pass their value on after a debounce delay.
  await sleep(1000);
  operation.querySelector('button.execute').click();
  for (let attempt = 0; attempt < 300; attempt++) {
    const status = operation.querySelector('.live-responses-table tbody .response-col_status');
    if (status) {
      return status.textContent.trim();
    }
    await sleep(100);
  }
  return 'no response shown';
};
'ready'
"#;

/// Body formats of the docs page's login, with their metrics label.
const PAGE_FORMATS: [(&str, &str); 4] = [
    ("application/json", "json"),
    ("text/plain", "text"),
    ("application/x-www-form-urlencoded", "form"),
    ("multipart/form-data", "multipart"),
];

#[actix_web::test]
async fn docs_page_sends_every_format() {
    let server = TestServer::start().await;
    let address = server.address;

    let profile = tempfile::tempdir().unwrap();
    let screenshot = artifact_path("docs-json-login.png");
    let page_statuses = tokio::task::spawn_blocking({
        let profile = profile.path().to_path_buf();
        let screenshot = screenshot.clone();
        move || -> Option<Vec<String>> {
            let browser = launch_chromium(&profile)?;
            let tab = browser.new_tab().unwrap();
            tab.set_default_timeout(PAGE_TIMEOUT);
            // The fragment is Swagger UI's deep link, which expands the
            // login operation.
            tab.navigate_to(&format!("http://{address}/docs#/login/post_login"))
                .unwrap()
                .wait_until_navigated()
                .unwrap();
            wait_until(
                &tab,
                "!!document.querySelector('#operations-login-post_login textarea.body-param__text')",
            );
            assert_eq!(evaluate(&tab, SEND_LOGIN_SCRIPT), "ready");

            let mut statuses = Vec::new();
            for (media_type, _) in PAGE_FORMATS {
                let call =
                    format!("sendLogin({media_type:?}, {SIGNAL_ID:?}, {SIGNAL_TOKEN:?})");
                statuses.push(evaluate(&tab, &call));
                if media_type == "application/json" {
                    let png = tab
                        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                        .unwrap();
                    std::fs::write(&screenshot, png).unwrap();
                }
            }

            // Every file, script and request of the page went to this
            // server: the page works with no internet access.
            let resources = evaluate(
                &tab,
                "JSON.stringify(performance.getEntriesByType('resource').map(entry => entry.name))",
            );
            let resources: Vec<String> = serde_json::from_str(&resources).unwrap();
            assert!(resources.len() >= 4, "the page loaded only {resources:?}");
            for url in &resources {
                assert!(
                    url.starts_with(&format!("http://{address}/")),
                    "the page loaded {url} from another host"
                );
            }
            Some(statuses)
        }
    })
    .await
    .unwrap();
    let Some(page_statuses) = page_statuses else {
        return;
    };

    for ((media_type, label), status) in PAGE_FORMATS.iter().zip(&page_statuses) {
        assert_eq!(status, "200", "the page shows {status} for {media_type}");
        assert_eq!(
            login_count(address, "issued", label).await,
            1,
            "the server issued no token for the page's {media_type} login"
        );
    }
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

/// A page that logs in three ways and reports what it could read.
const CORS_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>nexus-auth CORS check</title>
<script>
async function logIn(api, signalId, signalToken) {
  const results = {};
  try {
    const response = await fetch(api + '/auth/login', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({signalId, signalToken}),
    });
    results.json = {status: response.status, signalId: (await response.json()).signalId};
  } catch (error) {
    results.json = {error: error.name};
  }
  try {
    const form = new FormData();
    form.append('signalId', signalId);
    form.append('signalToken', signalToken);
    const response = await fetch(api + '/auth/login', {method: 'POST', body: form});
    results.multipart = {status: response.status, signalId: (await response.json()).signalId};
  } catch (error) {
    results.multipart = {error: error.name};
  }
  // A string body goes out as text/plain;charset=UTF-8, and its response
  // cannot be read: sendBeacon only reports whether it was queued.
  results.beaconQueued = navigator.sendBeacon(api + '/auth/login', JSON.stringify({signalId, signalToken}));
  return JSON.stringify(results);
}
</script>
"#;

/// Serves `CORS_PAGE` on a free loopback port: a second origin.
fn start_page_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .body(CORS_PAGE)
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    address
}

/// Runs `logIn` from the page at `page` against `api`; returns the page's
/// results, or `None` when Chromium is missing outside CI.
async fn log_in_from_page(page: SocketAddr, api: SocketAddr) -> Option<serde_json::Value> {
    let profile = tempfile::tempdir().unwrap();
    let results = tokio::task::spawn_blocking({
        let profile = profile.path().to_path_buf();
        move || -> Option<String> {
            let browser = launch_chromium(&profile)?;
            let tab = browser.new_tab().unwrap();
            tab.set_default_timeout(PAGE_TIMEOUT);
            tab.navigate_to(&format!("http://{page}/"))
                .unwrap()
                .wait_until_navigated()
                .unwrap();
            let call = format!("logIn('http://{api}', {SIGNAL_ID:?}, {SIGNAL_TOKEN:?})");
            let results = evaluate(&tab, &call);
            // The beacon leaves after the call returns; closing the
            // browser at once could cancel it.
            std::thread::sleep(Duration::from_secs(1));
            Some(results)
        }
    })
    .await
    .unwrap()?;
    Some(serde_json::from_str(&results).unwrap())
}

/// Polls `/metrics` until `format` logins issued reach `expected`.
async fn wait_for_issued(address: SocketAddr, format: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = login_count(address, "issued", format).await;
        if count >= expected || Instant::now() > deadline {
            return count;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_with_cors(origins: Vec<String>) -> TestServer {
    let mut settings = test_settings(Duration::from_secs(2));
    settings.cors_origins = origins;
    TestServer::start_with(settings).await
}

#[actix_web::test]
async fn cors_allowed_origin_logs_in() {
    let page = start_page_server();
    let server = start_with_cors(vec![format!("http://{page}")]).await;

    let Some(results) = log_in_from_page(page, server.address).await else {
        return;
    };

    assert_eq!(results["json"]["status"], 200, "{results}");
    assert_eq!(results["json"]["signalId"], SIGNAL_ID, "{results}");
    assert_eq!(results["multipart"]["status"], 200, "{results}");
    assert_eq!(results["multipart"]["signalId"], SIGNAL_ID, "{results}");
    assert_eq!(results["beaconQueued"], true, "{results}");
    assert_eq!(wait_for_issued(server.address, "text", 1).await, 1);
    assert_eq!(login_count(server.address, "issued", "json").await, 1);
    assert_eq!(login_count(server.address, "issued", "multipart").await, 1);
}

#[actix_web::test]
async fn cors_other_origin_is_blocked() {
    let page = start_page_server();
    let server = start_with_cors(vec!["https://app.example".to_owned()]).await;

    let Some(results) = log_in_from_page(page, server.address).await else {
        return;
    };

    // The browser hides both responses from the page.
    assert_eq!(results["json"]["error"], "TypeError", "{results}");
    assert_eq!(results["multipart"]["error"], "TypeError", "{results}");
    // The JSON login needs a preflight, which fails, so the POST is never
    // sent. Multipart and text/plain bodies are CORS-safelisted and need
    // none: the browser sends them and only withholds the response, which
    // is why the token in it never reaches the page.
    assert_eq!(login_count(server.address, "issued", "json").await, 0);
    assert_eq!(wait_for_issued(server.address, "text", 1).await, 1);
}
