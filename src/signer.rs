//! The signer: turns an authenticated signal into a signed JWT with the key
//! ring's active key, whose `kid` goes into the token header.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyRing, LoadedKey};
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
        let mut jti = uuid::Uuid::encode_buffer();
        let claims = ClaimsToSign {
            sub: signal_id,
            signal_id,
            iat: now,
            nbf: now,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().hyphenated().encode_lower(&mut jti),
            iss: &self.settings.issuer,
            aud: self.settings.audience.as_deref(),
        };
        let keys = self.ring.current();
        let token = encode(&keys.active, &claims)?;
        Ok(IssuedToken {
            token: Jwt::new(token),
            issued_at: now,
            expires_at,
        })
    }
}

/// `Claims` as the signer writes them, borrowing its strings instead of
/// copying them. Members and their order are those of `Claims`, which a
/// test checks.
#[derive(Serialize)]
struct ClaimsToSign<'a> {
    sub: &'a str,
    #[serde(rename = "signalId")]
    signal_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Encodes and signs a JWT as `jsonwebtoken::encode` does (base64url of the
/// header's and the claims' JSON, then of the signature), with the header
/// and the key that `key` prepared at load.
fn encode(key: &LoadedKey, claims: &ClaimsToSign) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = serde_json::to_vec(claims)?;
    // Base64 turns 3 bytes into 4 characters. The largest signature, RS256's
    // 256 bytes, takes 342 of the 384 characters added for it and the dots.
    let mut token =
        String::with_capacity(key.header_segment.len() + claims.len() * 4 / 3 + 4 + 384);
    token.push_str(&key.header_segment);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = key.prepared.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, load_hmac_secret, SigningAlgorithm};
    use jsonwebtoken::Header;

    #[test]
    fn tokens_match_jsonwebtoken() {
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
        let borrowed = ClaimsToSign {
            sub: &claims.sub,
            signal_id: &claims.signal_id,
            iat: claims.iat,
            nbf: claims.nbf,
            exp: claims.exp,
            jti: &claims.jti,
            iss: &claims.iss,
            aud: claims.aud.as_deref(),
        };
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), [7u8; 48]).unwrap();

        let mut keys = vec![load_hmac_secret(secret.path()).unwrap()];
        for algorithm in [
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
        ] {
            let stored = generate(algorithm, 1_000).unwrap();
            keys.push(LoadedKey::from_stored(&stored).unwrap());
        }

        for key in keys {
            let mut header = Header::new(key.algorithm.jwt_algorithm());
            header.kid = Some(key.kid.clone());

            let ours = encode(&key, &borrowed).unwrap();
            let library = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();

            // HMAC, Ed25519, ECDSA with RFC 6979 nonces and
            // RSASSA-PKCS1-v1_5 are deterministic, so equal inputs give
            // equal tokens.
            assert_eq!(ours, library, "{}", key.algorithm);
        }
    }
}
