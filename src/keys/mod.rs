//! Signing keys: the algorithms tokens are signed with, key generation, the
//! public forms that verifiers use, and the key ring that servers share.
//!
//! Asymmetric keys (EdDSA, ES256, RS256) live in the store, so that every
//! instance on it signs and verifies with the same keys. An HS256 secret is
//! read from a file instead and never stored. Each key is bound to one
//! algorithm, and a token is checked only with the algorithm of the key its
//! `kid` names, which rules out algorithm confusion (RFC 8725, section 2.1).

mod material;
mod ring;

pub use material::{
    generate, load_hmac_secret, public_jwk, thumbprint, LoadedKey, PreparedKey, RSA_KEY_BITS,
};
pub use ring::{KeyRing, KeyRingSettings, KeySet};

use std::fmt;
use std::str::FromStr;

/// An algorithm that nexus-auth signs tokens with, by its JWS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    EdDsa,
    Es256,
    Rs256,
    Hs256,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 4] = [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Hs256,
    ];

    /// Returns the `alg` value of RFC 7518 and RFC 8037.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDsa => "EdDSA",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Hs256 => "HS256",
        }
    }

    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            SigningAlgorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
        }
    }

    /// Returns true when the key has a public half that the JWKS publishes.
    pub fn is_asymmetric(self) -> bool {
        self != SigningAlgorithm::Hs256
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        SigningAlgorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(value))
            .ok_or_else(|| format!("expected one of EdDSA, ES256, RS256 or HS256, got {value:?}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("loading or saving signing keys failed: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Random(#[from] crate::signal_token::RandomError),
    #[error("the stored signing key {kid} uses algorithm {algorithm:?}, which this version does not support")]
    UnsupportedAlgorithm { kid: String, algorithm: String },
    #[error("the stored signing key {kid} is not a valid {algorithm} key")]
    InvalidKey {
        kid: String,
        algorithm: SigningAlgorithm,
    },
    #[error("generating a {0} key failed")]
    Generation(SigningAlgorithm),
    #[error("HS256 needs a secret: set --hs256-secret-file (NEXUS_AUTH_HS256_SECRET_FILE)")]
    MissingHmacSecret,
    #[error("cannot read the HS256 secret from {path}: {message}; check --hs256-secret-file (NEXUS_AUTH_HS256_SECRET_FILE)")]
    HmacSecret { path: String, message: String },
    #[error("HS256 keys are not stored: rotate by replacing the secret file and restarting")]
    HmacNotStored,
}
