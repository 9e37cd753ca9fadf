//! Token verification, following the JWT best practices of RFC 8725.
//!
//! The rules, in the order they apply:
//! 1. A token over `MAX_TOKEN_BYTES` is rejected before any parsing.
//! 2. The header must name a `kid` that the key ring still verifies with,
//!    and exactly that key's algorithm. So a token with `none`, or with an
//!    HMAC algorithm on an asymmetric key's `kid`, is rejected
//!    (`bad_tokens_rejected` in `tests/tokens.rs`).
//! 3. The signature must match.
//! 4. `exp`, `iat`, `sub` and `iss` (and `aud` when configured) must be
//!    present, and `exp` and `nbf` are checked with the configured leeway.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;

use crate::keys::KeyRing;
use crate::signer::Claims;

/// Largest token accepted, in bytes. Issued tokens are under 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Reason a token was rejected. Clients get `message`, and the log gets
/// `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Missing,
    WrongScheme,
    TooLarge,
    Malformed,
    UnknownKey,
    AlgorithmMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    /// The signal was disabled or deleted after the token was issued.
    SignalRevoked,
}

impl TokenRejection {
    pub fn reason(self) -> &'static str {
        match self {
            TokenRejection::Missing => "no token",
            TokenRejection::WrongScheme => "authorization scheme other than Bearer",
            TokenRejection::TooLarge => "token over 8 KiB",
            TokenRejection::Malformed => "malformed token",
            TokenRejection::UnknownKey => "unknown or missing kid",
            TokenRejection::AlgorithmMismatch => "alg does not match the key",
            TokenRejection::BadSignature => "invalid signature",
            TokenRejection::Expired => "expired",
            TokenRejection::NotYetValid => "not yet valid",
            TokenRejection::WrongIssuer => "wrong issuer",
            TokenRejection::WrongAudience => "wrong audience",
            TokenRejection::MissingClaim => "required claim missing",
            TokenRejection::SignalRevoked => "signal disabled or deleted",
        }
    }

    /// Returns the sentence sent to the client. Details that would help an
    /// attacker tune a forgery (which check failed) stay in the log.
    pub fn message(self) -> &'static str {
        match self {
            TokenRejection::Missing => {
                "No token was sent; send Authorization: Bearer <token> from POST /auth/login."
            }
            TokenRejection::WrongScheme => {
                "The Authorization header must use the Bearer scheme: Authorization: Bearer <token>."
            }
            TokenRejection::Expired => "The token has expired; log in again for a new one.",
            TokenRejection::SignalRevoked => {
                "The signal of this token is disabled or deleted; ask the operator to enable it."
            }
            _ => "The token is not valid; log in again for a new one.",
        }
    }
}

/// Claims that every accepted token must carry besides a valid signature.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    pub audience: Option<String>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

pub struct Verifier {
    ring: Arc<KeyRing>,
    settings: VerifierSettings,
}

impl Verifier {
    pub fn new(ring: Arc<KeyRing>, settings: VerifierSettings) -> Self {
        Self { ring, settings }
    }

    /// Verifies `token` and returns its claims. Checks the signature and
    /// claims only, not whether the signal is still enabled.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;

        let keys = self.ring.current();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.verifying_key(kid))
            .ok_or(TokenRejection::UnknownKey)?;
        let algorithm = key.algorithm.jwt_algorithm();
        if header.alg != algorithm {
            return Err(TokenRejection::AlgorithmMismatch);
        }

        let mut validation = Validation::new(algorithm);
        validation.leeway = self.settings.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        let mut required = vec!["exp", "iat", "sub", "iss"];
        match &self.settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // A token that names an audience is meant for someone else.
            None => validation.validate_aud = true,
        }
        validation.set_required_spec_claims(&required);

        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                ErrorKind::ExpiredSignature => TokenRejection::Expired,
                ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
                ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
                ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
                ErrorKind::MissingRequiredClaim(_) => TokenRejection::MissingClaim,
                ErrorKind::InvalidAlgorithm => TokenRejection::AlgorithmMismatch,
                _ => TokenRejection::Malformed,
            })
    }
}
