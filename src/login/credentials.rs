//! `Credentials`, the one type every body extractor produces, and the
//! validation step that turns it into `ValidCredentials`.
//!
//! Extractors record what the body contained, including what is wrong with
//! it: a missing field, a field given twice, a non-string JSON value. They
//! leave every judgement to `validate`, so each format returns the same
//! error for the same mistake.

use crate::error::{ApiError, FieldProblem};
use crate::secret::SignalToken;
use crate::signal_token::MAX_TOKEN_CHARS;

pub const SIGNAL_ID: &str = "signalId";
pub const SIGNAL_TOKEN: &str = "signalToken";

/// Longest accepted value of either field, in characters (Unicode scalar values).
pub const MAX_FIELD_CHARS: usize = MAX_TOKEN_CHARS;

/// One field's value as the body gave it.
#[derive(Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    /// A JSON value that is not a string, by its JSON type name.
    NotText(&'static str),
}

#[derive(Clone, Default, PartialEq, Eq)]
enum Field {
    #[default]
    Missing,
    Given(FieldValue),
    Repeated,
}

/// The credential fields of a login body, not yet validated.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    signal_id: Field,
    signal_token: Field,
}

/// Credentials that passed validation: two non-empty strings of at most
/// `MAX_FIELD_CHARS` characters, exactly as sent.
#[derive(Debug)]
pub struct ValidCredentials {
    pub signal_id: String,
    pub signal_token: SignalToken,
}

impl Credentials {
    /// Records the body member `name`; members other than the two credential
    /// fields are ignored, as the contract allows.
    pub fn insert(&mut self, name: &str, value: FieldValue) {
        let field = match name {
            SIGNAL_ID => &mut self.signal_id,
            SIGNAL_TOKEN => &mut self.signal_token,
            _ => return,
        };
        *field = match field {
            Field::Missing => Field::Given(value),
            Field::Given(_) | Field::Repeated => Field::Repeated,
        };
    }

    /// Checks both fields, `signalId` first, and reports the first problem.
    pub fn validate(self) -> Result<ValidCredentials, ApiError> {
        let signal_id = check_field(SIGNAL_ID, self.signal_id)?;
        let signal_token = check_field(SIGNAL_TOKEN, self.signal_token)?;
        Ok(ValidCredentials {
            signal_id,
            signal_token: SignalToken::new(signal_token),
        })
    }

    /// Returns the signal id if the body gave exactly one string for it, for
    /// log lines about a body that failed validation for another reason.
    pub fn signal_id(&self) -> Option<&str> {
        match &self.signal_id {
            Field::Given(FieldValue::Text(id)) => Some(id),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Credentials {
    // The token field is a secret; show only whether it is present.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("signal_id", &self.signal_id())
            .field("signal_token_given", &(self.signal_token != Field::Missing))
            .finish()
    }
}

fn check_field(name: &'static str, field: Field) -> Result<String, ApiError> {
    let problem = match field {
        Field::Missing => FieldProblem::Missing,
        Field::Repeated => FieldProblem::Repeated,
        Field::Given(FieldValue::NotText(kind)) => FieldProblem::NotString(kind),
        Field::Given(FieldValue::Text(text)) => {
            let length = text.chars().count();
            if length == 0 {
                FieldProblem::Empty
            } else if length > MAX_FIELD_CHARS {
                FieldProblem::TooLong(length)
            } else {
                return Ok(text);
            }
        }
    };
    Err(ApiError::Validation {
        field: name,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> FieldValue {
        FieldValue::Text(value.to_owned())
    }

    fn problem_of(credentials: Credentials) -> (&'static str, FieldProblem) {
        match credentials.validate() {
            Err(ApiError::Validation { field, problem }) => (field, problem),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn valid_pair_kept_exactly() {
        let mut credentials = Credentials::default();
        credentials.insert("signalId", text(" id with spaces "));
        credentials.insert("signalToken", text("token\u{e9}"));
        credentials.insert("other", text("ignored"));

        let valid = credentials.validate().unwrap();

        assert_eq!(valid.signal_id, " id with spaces ");
        assert_eq!(valid.signal_token.expose(), "token\u{e9}");
    }

    #[test]
    fn field_problems_in_order() {
        let long = "\u{e9}".repeat(257);
        let limit = "\u{e9}".repeat(256);
        type Case<'a> = (&'a str, Vec<(&'a str, FieldValue)>, (&'a str, FieldProblem));
        let cases: Vec<Case> = vec![
            ("nothing", vec![], ("signalId", FieldProblem::Missing)),
            (
                "token missing",
                vec![("signalId", text("a"))],
                ("signalToken", FieldProblem::Missing),
            ),
            (
                "id empty",
                vec![("signalId", text("")), ("signalToken", text("t"))],
                ("signalId", FieldProblem::Empty),
            ),
            (
                "id number",
                vec![
                    ("signalId", FieldValue::NotText("a number")),
                    ("signalToken", text("t")),
                ],
                ("signalId", FieldProblem::NotString("a number")),
            ),
            (
                "token too long",
                vec![("signalId", text(&limit)), ("signalToken", text(&long))],
                ("signalToken", FieldProblem::TooLong(257)),
            ),
            (
                "id repeated",
                vec![
                    ("signalId", text("a")),
                    ("signalId", text("a")),
                    ("signalToken", text("t")),
                ],
                ("signalId", FieldProblem::Repeated),
            ),
        ];

        for (name, fields, expected) in cases {
            let mut credentials = Credentials::default();
            for (field, value) in fields {
                credentials.insert(field, value);
            }
            assert_eq!(problem_of(credentials), expected, "case {name}");
        }
    }

    #[test]
    fn debug_hides_token() {
        let mut credentials = Credentials::default();
        credentials.insert("signalId", text("sensor"));
        credentials.insert("signalToken", text("sgt_secret-value"));

        let printed = format!("{credentials:?}");

        assert!(printed.contains("sensor"), "{printed}");
        assert!(!printed.contains("secret-value"), "{printed}");
    }
}
