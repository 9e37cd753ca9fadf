//! The signer: turns an authenticated signal into a signed JWT.
//!
//! The signing key is generated on first start and kept in the store, so
//! that a restart keeps issued tokens verifiable. Its `kid` is the RFC 7638
//! JWK thumbprint of the public key, which any verifier can recompute.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::{Jwt, KeyMaterial};
use crate::signal_token::{fill_random, RandomError};
use crate::store::{SignalStore, StoreError, StoredKey};

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

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("loading or saving the signing key failed: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("the stored signing key {kid} uses algorithm {algorithm:?}, which this version cannot sign with")]
    UnsupportedAlgorithm { kid: String, algorithm: String },
    #[error("the stored signing key {kid} is not a valid {algorithm} key")]
    InvalidKey { kid: String, algorithm: String },
    #[error("signing the token failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

pub struct Signer {
    key_id: String,
    algorithm: Algorithm,
    encoding_key: EncodingKey,
    settings: TokenSettings,
}

impl Signer {
    /// Loads the active signing key from the store, generating and saving an
    /// Ed25519 key when the store has none.
    pub async fn load_or_create(
        store: &dyn SignalStore,
        settings: TokenSettings,
        now: i64,
    ) -> Result<Self, SignerError> {
        let key = match store.active_signing_key().await? {
            Some(key) => key,
            None => {
                let key = generate_ed25519_key(now)?;
                store.insert_signing_key(&key).await?;
                log::info!("generated signing key {} ({})", key.kid, key.algorithm);
                key
            }
        };
        Self::from_stored_key(&key, settings)
    }

    pub fn from_stored_key(key: &StoredKey, settings: TokenSettings) -> Result<Self, SignerError> {
        // TODO: ES256, RS256 and HS256 keys, and verification with the
        // public keys of every key still in its verification window.
        if key.algorithm != "EdDSA" {
            return Err(SignerError::UnsupportedAlgorithm {
                kid: key.kid.clone(),
                algorithm: key.algorithm.clone(),
            });
        }
        if ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_der(key.private_key.expose())
            .map(|_: ed25519_dalek::SigningKey| ())
            .is_err()
        {
            return Err(SignerError::InvalidKey {
                kid: key.kid.clone(),
                algorithm: key.algorithm.clone(),
            });
        }
        Ok(Self {
            key_id: key.kid.clone(),
            algorithm: Algorithm::EdDSA,
            encoding_key: EncodingKey::from_ed_der(key.private_key.expose()),
            settings,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Signs a token for `signal_id`, valid from `now` (seconds since the
    /// epoch) for the configured lifetime.
    pub fn sign(&self, signal_id: &str, now: i64) -> Result<IssuedToken, SignerError> {
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
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.key_id.clone());

        let token = jsonwebtoken::encode(&header, &claims, &self.encoding_key)?;
        Ok(IssuedToken {
            token: Jwt::new(token),
            issued_at: now,
            expires_at,
        })
    }
}

/// Generates an Ed25519 key pair from the operating system's random
/// generator, in the form the store keeps.
pub fn generate_ed25519_key(now: i64) -> Result<StoredKey, SignerError> {
    let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
    fill_random(&mut seed)?;
    let signing_key = ed25519_dalek::SigningKey::from_bytes(&seed);
    seed.fill(0);

    let private_key = signing_key
        .to_pkcs8_der()
        .map_err(|_| SignerError::InvalidKey {
            kid: "(new)".to_owned(),
            algorithm: "EdDSA".to_owned(),
        })?;
    let public_key = signing_key.verifying_key().to_bytes().to_vec();
    Ok(StoredKey {
        kid: ed25519_thumbprint(&public_key),
        algorithm: "EdDSA".to_owned(),
        private_key: KeyMaterial::new(private_key.as_bytes().to_vec()),
        public_key,
        created_at: now,
    })
}

/// Computes the RFC 7638 thumbprint of an Ed25519 public key: SHA-256 of
/// the JWK's required members in lexicographic order, base64url-encoded.
pub fn ed25519_thumbprint(public_key: &[u8]) -> String {
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "nexus-auth".to_owned(),
            audience: Some("billing".to_owned()),
            ttl_seconds: 600,
        }
    }

    #[test]
    fn signed_token_verifies_with_public_key() {
        let key = generate_ed25519_key(1_700_000_000).unwrap();
        let signer = Signer::from_stored_key(&key, settings()).unwrap();
        let now = jsonwebtoken::get_current_timestamp() as i64;

        let issued = signer.sign("sensor-7", now).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["billing"]);
        validation.set_issuer(&["nexus-auth"]);
        let decoded = jsonwebtoken::decode::<Claims>(
            issued.token.expose(),
            &DecodingKey::from_ed_der(&key.public_key),
            &validation,
        )
        .unwrap();

        assert_eq!(decoded.header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(decoded.claims.sub, "sensor-7");
        assert_eq!(decoded.claims.signal_id, "sensor-7");
        assert_eq!(decoded.claims.exp - decoded.claims.iat, 600);
        assert_eq!(issued.expires_at - issued.issued_at, 600);
    }

    #[test]
    fn jti_differs_between_tokens() {
        let key = generate_ed25519_key(0).unwrap();
        let signer = Signer::from_stored_key(&key, settings()).unwrap();
        let first = signer.sign("a", 0).unwrap();
        let second = signer.sign("a", 0).unwrap();

        assert_ne!(first.token, second.token);
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037, appendix A.3: the thumbprint of the example public key.
        let public_key = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();

        assert_eq!(
            ed25519_thumbprint(&public_key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
