//! The HTTP server: the route table that the binary and the tests share,
//! and the function that starts it on a bound listener.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::dev::Service;
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};

use crate::app::AppState;
use crate::error::ApiError;
use crate::{jwks, login, openapi, operations, session};

/// Seconds that a graceful shutdown waits for requests in flight.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 10;

/// Registers every route without CORS. Unknown paths get the contract's
/// JSON 404 when the app uses `not_found` as its default service, as
/// `start` does.
pub fn configure(config: &mut web::ServiceConfig) {
    configure_with_cors(config, &[]);
}

/// Registers every route, with CORS for `cors_origins` on the routes that
/// browsers call (login, session, JWKS).
pub fn configure_with_cors(config: &mut web::ServiceConfig, cors_origins: &[String]) {
    login::configure(config, cors_origins);
    session::configure(config, cors_origins);
    jwks::configure(config, cors_origins);
    operations::configure(config);
    openapi::configure(config);
    #[cfg(feature = "bench-floor")]
    crate::bench_floor::configure(config);
}

/// Path of every resource that `configure` registers, as the OpenAPI
/// document names it (`{file}` stands for the Swagger UI files).
pub const ROUTE_PATHS: [&str; 9] = [
    login::PATH,
    session::PATH,
    jwks::PATH,
    operations::HEALTHZ_PATH,
    operations::READYZ_PATH,
    operations::METRICS_PATH,
    openapi::OPENAPI_PATH,
    openapi::DOCS_PATH,
    openapi::DOCS_FILES_DOCUMENTED_PATH,
];

/// Server settings beyond the routes and the shared state.
#[derive(Debug, Default)]
pub struct ServerOptions {
    /// Worker threads; one per CPU core when `None`.
    pub workers: Option<usize>,
    /// Serves HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<rustls::ServerConfig>,
    /// Maximum time to receive a request's head (request line and headers)
    /// before responding with 408 and closing; actix-web's 5 s when `None`.
    pub header_timeout: Option<Duration>,
    /// Idle time after which a kept-alive connection is closed; zero turns
    /// keep-alive off, and `None` keeps actix-web's 5 s.
    pub keep_alive: Option<Duration>,
}

/// Starts serving on `listener`. The returned `Server` runs until its
/// handle stops it; signals are left to the caller (see `stop_on_signal`).
/// After a graceful stop, requests in flight get `SHUTDOWN_TIMEOUT_SECONDS`
/// to finish.
pub fn start(
    listener: TcpListener,
    state: web::Data<AppState>,
    options: ServerOptions,
) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || {
        let timed_state = state.clone();
        let cors_origins = state.cors_origins.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |request, service| {
                let started = std::time::Instant::now();
                let method = method_label(request.method());
                let state = timed_state.clone();
                let response = service.call(request);
                async move {
                    let response = response.await?;
                    // Route patterns, not paths, keep the label set small.
                    let route = response.request().match_pattern();
                    state
                        .metrics
                        .request_duration
                        .with_label_values(&[route.as_deref().unwrap_or("unmatched"), method])
                        .observe(started.elapsed().as_secs_f64());
                    Ok(response)
                }
            })
            .configure(move |config| configure_with_cors(config, &cors_origins))
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
    .disable_signals();
    if let Some(workers) = options.workers {
        server = server.workers(workers);
    }
    if let Some(timeout) = options.header_timeout {
        server = server.client_request_timeout(timeout);
    }
    if let Some(idle) = options.keep_alive {
        server = server.keep_alive(match idle.is_zero() {
            true => KeepAlive::Disabled,
            false => KeepAlive::Timeout(idle),
        });
    }

    let server = match options.tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Stops `server` gracefully on the first SIGINT or SIGTERM. actix-web's own
/// handling treats SIGINT as a forced stop, which would cut logins in flight
/// when an operator presses Ctrl-C. The handlers are registered before this
/// returns, so a signal sent right after start-up is not lost.
#[cfg(unix)]
pub fn stop_on_signal(server: &Server) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        log::info!("{name} received; stopping after requests in flight finish");
        handle.stop(true).await;
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn stop_on_signal(server: &Server) -> std::io::Result<()> {
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        log::info!("Ctrl-C received; stopping after requests in flight finish");
        handle.stop(true).await;
    });
    Ok(())
}

/// Returns the metrics label of a method: its name for the standard ones,
/// `other` for extension methods, which clients can invent without limit.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(standard, _)| standard == method)
        .map_or("other", |(_, label)| label)
}

/// Returns the contract's JSON 404 for a path with no route.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
