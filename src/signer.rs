//! The signer: turns an authenticated signal into a signed JWT with the key
//! ring's active key, whose `kid` goes into the token header.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyRing, PreparedKey};
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

        let token = match &keys.active.prepared {
            Some(key) => encode_prepared(&header, &claims, key)?,
            None => jsonwebtoken::encode(&header, &claims, &keys.active.encoding)?,
        };
        Ok(IssuedToken {
            token: Jwt::new(token),
            issued_at: now,
            expires_at,
        })
    }
}

/// Encodes and signs a JWT as `jsonwebtoken::encode` does (base64url of the
/// header's and the claims' JSON, then of the signature), with a key parsed
/// once instead of on every call.
fn encode_prepared(
    header: &Header,
    claims: &Claims,
    key: &PreparedKey,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, LoadedKey, SigningAlgorithm};

    #[test]
    fn prepared_tokens_match_jsonwebtoken() {
        let claims = Claims {
            sub: "sensor".to_owned(),
            signal_id: "sensor".to_owned(),
            iat: 1_000,
            nbf: 1_000,
            exp: 4_600,
            jti: "6f1c3b1e-0000-4000-8000-000000000000".to_owned(),
            iss: "nexus-auth".to_owned(),
            aud: Some("audience".to_owned()),
        };

        for algorithm in [
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
        ] {
            let stored = generate(algorithm, 1_000).unwrap();
            let key = LoadedKey::from_stored(&stored).unwrap();
            let mut header = Header::new(algorithm.jwt_algorithm());
            header.kid = Some(key.kid.clone());

            let ours = encode_prepared(&header, &claims, key.prepared.as_ref().unwrap()).unwrap();
            let library = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();

            // Ed25519, ECDSA with RFC 6979 nonces and RSASSA-PKCS1-v1_5 are
            // deterministic, so equal inputs give equal tokens.
            assert_eq!(ours, library, "{algorithm}");
        }
    }
}
