//! Shared state of the HTTP server, built once at start.

use std::sync::Arc;
use std::time::Duration;

use crate::signer::Signer;
use crate::store::SignalStore;

/// Limits of the login path.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Maximum wait for the store before responding with 503.
    pub store_timeout: Duration,
}

pub struct AppState {
    pub store: Arc<dyn SignalStore>,
    pub signer: Signer,
    pub login: LoginSettings,
}
