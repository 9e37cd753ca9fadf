//! Checks a signal token against the store's record of the signal.
//!
//! Unknown signal, wrong token and disabled signal get one response and take
//! the same work. On every path the token is hashed and compared against two
//! digests, and a placeholder digest replaces a signal or previous
//! token that does not exist.

use crate::secret::SignalToken;
use crate::signal_token::TokenDigest;
use crate::store::SignalRecord;

/// Reason a login was rejected, for the server's log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownSignal,
    WrongToken,
    Disabled,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::UnknownSignal => "unknown signal",
            Rejection::WrongToken => "wrong token",
            Rejection::Disabled => "signal disabled",
        }
    }
}

/// Digest that no token hashes to in practice, compared against when there
/// is nothing real to compare with.
const PLACEHOLDER_DIGEST: TokenDigest = TokenDigest([0xa5; 32]);

/// Accepts `token` for `record` if it matches the current token, or the
/// previous one before its grace period ends at `previous_expires_at`.
/// `now` is in seconds since the epoch.
pub fn check_token(
    record: Option<&SignalRecord>,
    token: &SignalToken,
    now: i64,
) -> Result<(), Rejection> {
    let presented = TokenDigest::of(token);
    let current = record.map_or(PLACEHOLDER_DIGEST, |record| record.token_digest);
    let (previous, previous_expires_at) = record
        .and_then(|record| record.previous_token)
        .unwrap_or((PLACEHOLDER_DIGEST, i64::MIN));

    // Both comparisons run on every path; `&` rather than `||` keeps the
    // second from being skipped.
    let matches_current = presented.matches(&current);
    let matches_previous = presented.matches(&previous) & (now < previous_expires_at);

    let Some(record) = record else {
        return Err(Rejection::UnknownSignal);
    };
    if !(matches_current | matches_previous) {
        return Err(Rejection::WrongToken);
    }
    if !record.enabled {
        return Err(Rejection::Disabled);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: &str, previous: Option<(&str, i64)>, enabled: bool) -> SignalRecord {
        SignalRecord {
            id: "sensor".to_owned(),
            token_digest: TokenDigest::of(&SignalToken::new(token)),
            previous_token: previous
                .map(|(token, until)| (TokenDigest::of(&SignalToken::new(token)), until)),
            enabled,
            created_at: 0,
        }
    }

    #[test]
    fn token_outcomes() {
        let token = |value: &str| SignalToken::new(value);
        let rotated = record("new", Some(("old", 1_000)), true);

        assert_eq!(
            check_token(Some(&record("t", None, true)), &token("t"), 0),
            Ok(())
        );
        assert_eq!(
            check_token(Some(&record("t", None, true)), &token("u"), 0),
            Err(Rejection::WrongToken)
        );
        assert_eq!(
            check_token(Some(&record("t", None, false)), &token("t"), 0),
            Err(Rejection::Disabled)
        );
        assert_eq!(
            check_token(None, &token("t"), 0),
            Err(Rejection::UnknownSignal)
        );
        assert_eq!(check_token(Some(&rotated), &token("new"), 5_000), Ok(()));
        assert_eq!(check_token(Some(&rotated), &token("old"), 999), Ok(()));
        assert_eq!(
            check_token(Some(&rotated), &token("old"), 1_000),
            Err(Rejection::WrongToken)
        );
    }
}
