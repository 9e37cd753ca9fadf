//! Signal tokens: generation, import rules and the digest that the store keeps.
//!
//! The store keeps `SHA-256(token)`, never the token. A fast hash is enough
//! here because generated tokens carry 256 bits from the operating system's
//! random generator. Finding a preimage of the digest is then as hard as
//! guessing the token, so a slow password hash (Argon2, bcrypt) would add
//! cost to every login and no security. Short, human-chosen secrets lack that
//! randomness, which is why imported tokens need `MIN_IMPORTED_TOKEN_CHARS`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::SignalToken;

/// Prefix of generated tokens, so that a leaked token is recognizable in
/// secret scanners and code review.
pub const TOKEN_PREFIX: &str = "sgt_";

/// Random bytes in a generated token (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

/// Shortest token that `signals create --token-stdin` accepts, in characters.
pub const MIN_IMPORTED_TOKEN_CHARS: usize = 32;

/// Maximum token length that a client can send, in characters. Longer
/// values fail validation.
pub const MAX_TOKEN_CHARS: usize = 256;

/// SHA-256 digest of a signal token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    pub fn of(token: &SignalToken) -> Self {
        Self(Sha256::digest(token.expose().as_bytes()).into())
    }

    /// Compares two digests in time that does not depend on where they differ.
    pub fn matches(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A digest of a random token is not a secret, but it is not useful in
        // a log either: print nothing that could be matched across systems.
        formatter.write_str("TokenDigest(..)")
    }
}

/// Error from reading the operating system's random generator.
#[derive(Debug, thiserror::Error)]
#[error("reading the operating system's random generator failed: {0}")]
pub struct RandomError(String);

/// Fills `buffer` from the operating system's random generator.
pub fn fill_random(buffer: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buffer).map_err(|error| RandomError(error.to_string()))
}

/// Generates a new token: `sgt_` and 32 random bytes, base64url without padding.
pub fn generate() -> Result<SignalToken, RandomError> {
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    fill_random(&mut random)?;
    Ok(SignalToken::new(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random)
    )))
}

/// Reason why an imported token is rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the token has {0} characters, and at least {MIN_IMPORTED_TOKEN_CHARS} are required so that it is hard to guess; generate one with `signals create` instead")]
    TooShort(usize),
    #[error("the token has {0} characters, and at most {MAX_TOKEN_CHARS} are accepted at login")]
    TooLong(usize),
    #[error("the token contains a control character (such as a line break or tab)")]
    ControlCharacter,
    #[error("the token starts or ends with white space, which is usually a copy-and-paste accident; remove it")]
    OuterWhitespace,
}

/// Checks a token that an operator imports instead of generating one.
pub fn check_imported(token: &SignalToken) -> Result<(), ImportError> {
    let value = token.expose();
    let length = value.chars().count();
    if length < MIN_IMPORTED_TOKEN_CHARS {
        return Err(ImportError::TooShort(length));
    }
    if length > MAX_TOKEN_CHARS {
        return Err(ImportError::TooLong(length));
    }
    // Clients can send any character, but a control character in a stored
    // token is almost always a copy-and-paste accident that would make every
    // login fail.
    if value.chars().any(char::is_control) {
        return Err(ImportError::ControlCharacter);
    }
    if value.trim() != value {
        return Err(ImportError::OuterWhitespace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_shape() {
        let token = generate().unwrap();
        let value = token.expose();
        let encoded = value.strip_prefix(TOKEN_PREFIX).expect("prefix");

        assert_eq!(encoded.len(), 43, "32 bytes are 43 base64url characters");
        assert_eq!(URL_SAFE_NO_PAD.decode(encoded).unwrap().len(), 32);
        assert_ne!(generate().unwrap(), token);
    }

    #[test]
    fn digest_matches_only_same_token() {
        let first = TokenDigest::of(&SignalToken::new("sgt_first-token-0123456789abcdefghij"));
        let again = TokenDigest::of(&SignalToken::new("sgt_first-token-0123456789abcdefghij"));
        let other = TokenDigest::of(&SignalToken::new("sgt_first-token-0123456789abcdefghiJ"));

        assert!(first.matches(&again));
        assert!(!first.matches(&other));
    }

    #[test]
    fn imported_token_rules() {
        let short = SignalToken::new("x".repeat(31));
        let shortest = SignalToken::new("x".repeat(32));
        let long = SignalToken::new("x".repeat(257));
        let tab = SignalToken::new(format!("{}\t", "x".repeat(40)));

        assert_eq!(check_imported(&short), Err(ImportError::TooShort(31)));
        assert_eq!(check_imported(&shortest), Ok(()));
        assert_eq!(check_imported(&long), Err(ImportError::TooLong(257)));
        assert_eq!(check_imported(&tab), Err(ImportError::ControlCharacter));
        let padded = SignalToken::new(format!(" {}", "x".repeat(40)));
        assert_eq!(check_imported(&padded), Err(ImportError::OuterWhitespace));
    }
}
