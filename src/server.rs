//! The HTTP server: the route table that the binary and the tests share,
//! and the function that starts it on a bound listener.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};

use crate::app::AppState;
use crate::error::ApiError;
use crate::login;

/// Seconds that a graceful shutdown waits for requests in flight.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 10;

/// Registers every route. Unknown paths get the contract's JSON 404.
pub fn configure(config: &mut web::ServiceConfig) {
    login::configure(config);
}

/// Starts serving on `listener`. The returned `Server` runs until its
/// handle stops it; signals are left to the caller (see `stop_on_signal`).
/// After a graceful stop, requests in flight get `SHUTDOWN_TIMEOUT_SECONDS`
/// to finish.
pub fn start(
    listener: TcpListener,
    state: web::Data<AppState>,
    workers: Option<usize>,
) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(configure)
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
    .disable_signals()
    .listen(listener)?;

    let server = match workers {
        Some(count) => server.workers(count),
        None => server,
    };
    Ok(server.run())
}

/// Stops `server` gracefully on the first SIGINT or SIGTERM. actix-web's own
/// handling treats SIGINT as a forced stop, which would cut logins in flight
/// when an operator presses Ctrl-C.
pub fn stop_on_signal(server: &Server) {
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let name = wait_for_shutdown_signal().await;
        log::info!("{name} received; stopping after requests in flight finish");
        handle.stop(true).await;
    });
}

#[cfg(unix)]
async fn wait_for_shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            log::error!(
                "cannot listen for SIGTERM: {error}; only SIGINT stops the server gracefully"
            );
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

#[cfg(not(unix))]
async fn wait_for_shutdown_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
