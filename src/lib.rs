//! nexus-auth exchanges a signal's id and API token for a short-lived signed
//! JWT.
//!
//! Layout, in the order a login passes through it:
//! - `server`: the route table and the HTTP server.
//! - `login`: `POST /auth/login`: `login::extract` (one module per body
//!   format), `login::credentials` (the `Credentials` type and its
//!   validation), `login::authenticate` (the token check).
//! - `store`: the `SignalStore` trait and its SQLite and PostgreSQL
//!   backends. `signal_cache`: recent lookups, kept for a few seconds.
//! - `keys`: signing algorithms, key generation and the key ring that
//!   every server reloads from the store. `signer`: JWT issuance.
//! - `verify`: token verification. `session`: the `AuthenticatedSignal`
//!   extractor and `GET /auth/session`. `jwks`: the public keys.
//! - `error`: the JSON body of every error response.
//! - `signal_token`, `secret`, `time`: token generation and digests, masked
//!   secret types, the clock.
//! - `rate_limit`, `client_address`: failed-login limits per address and
//!   per signal.
//! - `operations`, `metrics`: health, readiness and Prometheus metrics.
//!   `openapi`: the OpenAPI document and the `/docs` page.
//! - `app`: shared server state. `tls`: HTTPS certificates. `cli`: the
//!   command line. `log_output`: batched writes of log lines.
//! - `bench_floor`: the load benchmark's baseline route, only with the
//!   `bench-floor` feature.

pub mod app;
#[cfg(feature = "bench-floor")]
pub mod bench_floor;
pub mod cli;
pub mod client_address;
pub mod cors;
pub mod error;
pub mod jwks;
pub mod keys;
pub mod log_output;
pub mod login;
pub mod metrics;
pub mod openapi;
pub mod operations;
pub mod rate_limit;
pub mod secret;
pub mod server;
pub mod session;
pub mod signal_cache;
pub mod signal_token;
pub mod signer;
pub mod store;
pub mod time;
pub mod tls;
pub mod verify;
