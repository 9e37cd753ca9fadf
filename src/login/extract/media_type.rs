//! A `Content-Type` parser that follows RFC 9110, section 8.3.1, exactly:
//! `type/subtype`, then parameters whose values are tokens or quoted
//! strings. Empty parameters (`;;`) are allowed, as the grammar allows them.

/// A parsed media type: the lower-case `type/subtype` and its parameters,
/// names in lower case and quoted values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    pub parameters: Vec<(String, String)>,
}

impl MediaType {
    /// Returns the value of the parameter `name` (lower case).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn is_token_char(character: char) -> bool {
    character.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(character)
}

fn token(input: &str) -> (&str, &str) {
    let end = input
        .find(|c: char| !is_token_char(c))
        .unwrap_or(input.len());
    input.split_at(end)
}

/// Parses a quoted string at the start of `input`. Returns its value and
/// the rest, or `None` when it is not closed or contains a control
/// character.
fn quoted_string(input: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut characters = input.strip_prefix('"')?.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return Some((value, &input[index + 2..])),
            '\\' => value.push(characters.next()?.1),
            '\t' | ' '..='~' => value.push(character),
            _ => return None,
        }
    }
    None
}

/// Parses a `Content-Type` value; `None` when it breaks the grammar.
pub fn parse(value: &str) -> Option<MediaType> {
    let (media_type, rest) = token(value.trim_start_matches([' ', '\t']));
    let (subtype, mut rest) = token(rest.strip_prefix('/')?);
    if media_type.is_empty() || subtype.is_empty() {
        return None;
    }

    let mut parameters = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(';')?.trim_start_matches([' ', '\t']);
        if rest.is_empty() || rest.starts_with(';') {
            continue;
        }
        let (name, after_name) = token(rest);
        let after_equals = after_name.strip_prefix('=')?;
        if name.is_empty() {
            return None;
        }
        let (value, after_value) = if after_equals.starts_with('"') {
            quoted_string(after_equals)?
        } else {
            let (value, after_value) = token(after_equals);
            if value.is_empty() {
                return None;
            }
            (value.to_owned(), after_value)
        };
        parameters.push((name.to_ascii_lowercase(), value));
        rest = after_value;
    }

    Some(MediaType {
        essence: format!("{}/{}", media_type, subtype).to_ascii_lowercase(),
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_media_types() {
        let parsed = parse("Multipart/Form-Data; BOUNDARY=\"a;b \\\"c\"").unwrap();
        assert_eq!(parsed.essence, "multipart/form-data");
        assert_eq!(parsed.parameter("boundary"), Some("a;b \"c"));

        let cases = [
            ("application/json", "application/json"),
            ("application/json;;charset=utf-8;", "application/json"),
            ("text/plain ; charset=UTF-8", "text/plain"),
            ("multipart/form-data; boundary=\"\"", "multipart/form-data"),
        ];
        for (value, essence) in cases {
            assert_eq!(
                parse(value).map(|parsed| parsed.essence),
                Some(essence.to_owned()),
                "{value}"
            );
        }
    }

    #[test]
    fn invalid_media_types() {
        for value in [
            "",
            "json",
            "text/",
            "/plain",
            "not a media type",
            "application/json; charset",
            "application/json; charset=",
            "multipart/form-data; boundary=",
            "application/json; charset=\"utf-8",
            "application/json, text/plain",
            "application/json; a=b c",
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
    }
}
