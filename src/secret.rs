//! Wrapper types for secrets: signal tokens, JWTs and private key material.
//!
//! Their `Debug` and `Display` print a fixed mask, so that a secret that ends
//! up in a log line, an error or a panic message shows as `***` instead of
//! its value. Code that needs the value calls `expose`, which makes every use
//! easy to find.

use std::fmt;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name($inner);

        impl $name {
            pub fn new(value: impl Into<$inner>) -> Self {
                Self(value.into())
            }

            /// Returns the secret value itself. Never log or format it.
            pub fn expose(&self) -> &$inner {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, concat!(stringify!($name), "(***)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("***")
            }
        }
    };
}

secret_type!(
    /// A signal token as a client sent it or as the command line generated it.
    SignalToken(String)
);

secret_type!(
    /// A signed JWT, which authorizes requests until it expires.
    Jwt(String)
);

secret_type!(
    /// A Redis URL, which may carry a password.
    RedisUrl(String)
);

secret_type!(
    /// Private key material, such as a PKCS#8 DER signing key.
    KeyMaterial(Vec<u8>)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_mask_value() {
        let token = SignalToken::new("sgt_visible-only-through-expose");
        let jwt = Jwt::new("eyJhbGciOiJFZERTQSJ9.e30.c2ln");
        let key = KeyMaterial::new(vec![0x30, 0x2e, 0x02, 0x01]);

        assert_eq!(format!("{token:?}"), "SignalToken(***)");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{jwt:?}"), "Jwt(***)");
        assert_eq!(format!("{jwt}"), "***");
        assert_eq!(format!("{key:?}"), "KeyMaterial(***)");
        assert!(!format!("{:?}", Some(&token)).contains("visible"));
        assert_eq!(token.expose(), "sgt_visible-only-through-expose");
    }
}
