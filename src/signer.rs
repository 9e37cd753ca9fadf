//! The signer: turns an authenticated signal into a signed JWT with the key
//! ring's active key, whose `kid` goes into the token header.

use std::sync::Arc;

use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;
use crate::secret::Jwt;

/// Claims of an issued token. Field names are the registered JWT claim names
/// (RFC 7519), plus `signalId` for clients that read it by that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(rename = "signalId")]
    pub signal_id: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Claims and lifetime shared by every token: issuer, audience, ttl.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: Option<String>,
    /// Token lifetime in seconds.
    pub ttl_seconds: u64,
}

/// A token just signed, with the times the login response reports.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: Jwt,
    pub issued_at: i64,
    pub expires_at: i64,
}

pub struct Signer {
    ring: Arc<KeyRing>,
    settings: TokenSettings,
}

impl Signer {
    pub fn new(ring: Arc<KeyRing>, settings: TokenSettings) -> Self {
        Self { ring, settings }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// Signs a token for `signal_id`, valid from `now` (seconds since the
    /// epoch) for the configured lifetime.
    pub fn sign(
        &self,
        signal_id: &str,
        now: i64,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let expires_at = now.saturating_add_unsigned(self.settings.ttl_seconds);
        let claims = Claims {
            sub: signal_id.to_owned(),
            signal_id: signal_id.to_owned(),
            iat: now,
            nbf: now,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().to_string(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
        };
        let keys = self.ring.current();
        let mut header = Header::new(keys.active.algorithm.jwt_algorithm());
        header.kid = Some(keys.active.kid.clone());

        let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding)?;
        Ok(IssuedToken {
            token: Jwt::new(token),
            issued_at: now,
            expires_at,
        })
    }
}
