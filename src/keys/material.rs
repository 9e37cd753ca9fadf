//! Key material of each algorithm: generation, parsing, and the public key
//! as a JWK with its RFC 7638 thumbprint, which is also its `kid`.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{KeyError, SigningAlgorithm};
use crate::secret::KeyMaterial;
use crate::signal_token::fill_random;
use crate::store::StoredKey;

/// RSA modulus size of generated RS256 keys, in bits. RFC 7518 requires at
/// least 2048.
pub const RSA_KEY_BITS: usize = 2048;

/// Shortest HS256 secret accepted, in bytes: the 256 bits that RFC 7518,
/// section 3.2, requires of an HS256 key.
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// A key ready to sign or verify with.
pub struct LoadedKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub encoding: EncodingKey,
    /// The private key or HMAC secret, parsed once here.
    pub prepared: PreparedKey,
    /// The token header (`typ`, `alg`, `kid`) as jsonwebtoken serializes
    /// it, base64url-encoded once here, because it is the same in every
    /// token this key signs.
    pub header_segment: String,
    pub decoding: DecodingKey,
    /// The public key as published in the JWKS; `None` for HS256.
    pub jwk: Option<Value>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoadedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A private key or HMAC secret ready to sign with. jsonwebtoken 12 parses
/// the DER key on every signature, and for EdDSA and ES256 also derives the
/// public key. `cargo bench --bench tokens` on a 2-core machine measured
/// medians of 42.8 µs for an EdDSA and 361 µs for an ES256 signature that
/// way, and 22.6 and 103 µs with a prepared key.
pub enum PreparedKey {
    /// The HMAC state after the key block, so that a signature hashes the
    /// message only.
    Hmac(Hmac<Sha256>),
    /// An AWS-LC key. On the same machine, on a day when it ran faster, an
    /// EdDSA token took 13.9 µs with ed25519-dalek and 8.0 µs with AWS-LC.
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    P256(p256::ecdsa::SigningKey),
    Rsa(rsa::pkcs1v15::SigningKey<sha2::Sha256>),
}

impl PreparedKey {
    /// Signs `message` as jsonwebtoken's RustCrypto backend does:
    /// HMAC-SHA-256, Ed25519, ECDSA P-256 with SHA-256 as the fixed-size
    /// `r || s`, or RSASSA-PKCS1-v1_5 with SHA-256.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use jsonwebtoken::signature::{SignatureEncoding, Signer};

        match self {
            PreparedKey::Hmac(keyed) => {
                let mut mac = keyed.clone();
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            PreparedKey::Ed25519(key) => key.sign(message).as_ref().to_vec(),
            PreparedKey::P256(key) => key.sign_recoverable(message).0.to_vec(),
            PreparedKey::Rsa(key) => key.sign(message).to_vec(),
        }
    }
}

/// Returns the base64url encoding of the JSON header of tokens that `kid`
/// signs with `algorithm`, byte for byte as `jsonwebtoken::encode` writes it.
fn header_segment(algorithm: SigningAlgorithm, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm.jwt_algorithm());
    header.kid = Some(kid.to_owned());
    let json = serde_json::to_vec(&header).expect("a JWT header serializes");
    URL_SAFE_NO_PAD.encode(json)
}

/// Generates a key pair of an asymmetric algorithm from the operating
/// system's random generator, in the form the store keeps.
pub fn generate(algorithm: SigningAlgorithm, now: i64) -> Result<StoredKey, KeyError> {
    let (private_key, public_key) = match algorithm {
        SigningAlgorithm::EdDsa => generate_ed25519()?,
        SigningAlgorithm::Es256 => generate_p256()?,
        SigningAlgorithm::Rs256 => generate_rsa()?,
        SigningAlgorithm::Hs256 => return Err(KeyError::HmacNotStored),
    };
    let jwk_members =
        public_members(algorithm, &public_key).ok_or(KeyError::Generation(algorithm))?;
    Ok(StoredKey {
        kid: thumbprint(&jwk_members),
        algorithm: algorithm.name().to_owned(),
        private_key: KeyMaterial::new(private_key),
        public_key,
        created_at: now,
        retired_at: None,
    })
}

fn generate_ed25519() -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
    fill_random(&mut seed)?;
    let signing_key = ed25519_dalek::SigningKey::from_bytes(&seed);
    seed.fill(0);
    let private_key = signing_key
        .to_pkcs8_der()
        .map_err(|_| KeyError::Generation(SigningAlgorithm::EdDsa))?;
    let public_key = signing_key.verifying_key().to_bytes().to_vec();
    Ok((private_key.as_bytes().to_vec(), public_key))
}

fn generate_p256() -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    use p256::pkcs8::EncodePrivateKey;

    // A random 32-byte string is a valid scalar unless it is zero or at
    // least the group order, which happens with probability below 2^-32.
    let secret_key = loop {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes)?;
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            break key;
        }
    };
    let private_key = secret_key
        .to_pkcs8_der()
        .map_err(|_| KeyError::Generation(SigningAlgorithm::Es256))?;
    let public_key = secret_key.public_key().to_sec1_bytes().to_vec();
    Ok((private_key.as_bytes().to_vec(), public_key))
}

fn generate_rsa() -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};

    let failed = || KeyError::Generation(SigningAlgorithm::Rs256);
    let private_key =
        rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_KEY_BITS).map_err(|_| failed())?;
    let private_der = private_key.to_pkcs1_der().map_err(|_| failed())?;
    let public_der = private_key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(|_| failed())?;
    Ok((
        private_der.as_bytes().to_vec(),
        public_der.as_bytes().to_vec(),
    ))
}

/// Returns the members of the public JWK that RFC 7638 requires, which are
/// also what a verifier needs: `None` when `public_key` is malformed.
fn public_members(
    algorithm: SigningAlgorithm,
    public_key: &[u8],
) -> Option<BTreeMap<&'static str, String>> {
    let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let members: Vec<(&str, String)> = match algorithm {
        SigningAlgorithm::EdDsa if public_key.len() == 32 => vec![
            ("kty", "OKP".to_owned()),
            ("crv", "Ed25519".to_owned()),
            ("x", encode(public_key)),
        ],
        // An uncompressed SEC1 point: 0x04, then x and y of 32 bytes each.
        SigningAlgorithm::Es256 if public_key.len() == 65 && public_key[0] == 4 => vec![
            ("kty", "EC".to_owned()),
            ("crv", "P-256".to_owned()),
            ("x", encode(&public_key[1..33])),
            ("y", encode(&public_key[33..])),
        ],
        SigningAlgorithm::Rs256 => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::PublicKey::from_pkcs1_der(public_key).ok()?;
            vec![
                ("kty", "RSA".to_owned()),
                ("n", encode(&key.n().to_be_bytes_trimmed_vartime())),
                ("e", encode(&key.e().to_be_bytes_trimmed_vartime())),
            ]
        }
        _ => return None,
    };
    Some(members.into_iter().collect())
}

/// Computes the RFC 7638 thumbprint: SHA-256 of the required members in
/// lexicographic order with no white space, base64url-encoded.
pub fn thumbprint(members: &BTreeMap<&'static str, String>) -> String {
    // serde_json writes a BTreeMap in key order and without white space.
    let canonical = serde_json::to_string(members).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Returns the public JWK of a stored key as the JWKS publishes it, with
/// `kid`, `alg` and `use`.
pub fn public_jwk(key: &StoredKey, algorithm: SigningAlgorithm) -> Option<Value> {
    let members = public_members(algorithm, &key.public_key)?;
    let mut jwk = json!(members);
    jwk["kid"] = json!(key.kid);
    jwk["alg"] = json!(algorithm.name());
    jwk["use"] = json!("sig");
    Some(jwk)
}

impl LoadedKey {
    /// Parses a stored key, checking that its private half matches its
    /// algorithm, so that a damaged row fails at load and not at signing.
    pub fn from_stored(key: &StoredKey) -> Result<LoadedKey, KeyError> {
        let algorithm: SigningAlgorithm =
            key.algorithm
                .parse()
                .map_err(|_| KeyError::UnsupportedAlgorithm {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm.clone(),
                })?;
        let invalid = || KeyError::InvalidKey {
            kid: key.kid.clone(),
            algorithm,
        };
        let private_key = key.private_key.expose();
        let (encoding, prepared, decoding) = match algorithm {
            SigningAlgorithm::EdDsa => {
                let prepared = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(private_key)
                    .map_err(|_| invalid())?;
                (
                    EncodingKey::from_ed_der(private_key),
                    PreparedKey::Ed25519(prepared),
                    DecodingKey::from_ed_der(&key.public_key),
                )
            }
            SigningAlgorithm::Es256 => {
                use p256::pkcs8::DecodePrivateKey;
                let prepared =
                    p256::ecdsa::SigningKey::from_pkcs8_der(private_key).map_err(|_| invalid())?;
                (
                    EncodingKey::from_ec_der(private_key),
                    PreparedKey::P256(prepared),
                    DecodingKey::from_ec_der(&key.public_key),
                )
            }
            SigningAlgorithm::Rs256 => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                let prepared =
                    rsa::PrivateKey::from_pkcs1_der(private_key).map_err(|_| invalid())?;
                (
                    EncodingKey::from_rsa_der(private_key),
                    PreparedKey::Rsa(rsa::pkcs1v15::SigningKey::new(prepared)),
                    DecodingKey::from_rsa_der(&key.public_key),
                )
            }
            SigningAlgorithm::Hs256 => return Err(KeyError::HmacNotStored),
        };
        let jwk = public_jwk(key, algorithm).ok_or_else(invalid)?;
        Ok(LoadedKey {
            kid: key.kid.clone(),
            algorithm,
            encoding,
            prepared,
            header_segment: header_segment(algorithm, &key.kid),
            decoding,
            jwk: Some(jwk),
            created_at: key.created_at,
            retired_at: key.retired_at,
        })
    }
}

/// Reads an HS256 secret from `path`, dropping one trailing line break, and
/// derives its `kid` from a hash so that the id reveals nothing usable.
pub fn load_hmac_secret(path: &Path) -> Result<LoadedKey, KeyError> {
    let failure = |message: String| KeyError::HmacSecret {
        path: path.display().to_string(),
        message,
    };
    let mut secret = std::fs::read(path).map_err(|error| failure(error.to_string()))?;
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(failure(format!(
            "the secret has {} bytes and at least {MIN_HMAC_SECRET_BYTES} are required; generate one with `openssl rand -base64 48`",
            secret.len()
        )));
    }

    let mut hasher = Sha256::new();
    hasher.update(b"nexus-auth HS256 key id\0");
    hasher.update(&secret);
    let kid = URL_SAFE_NO_PAD.encode(&hasher.finalize()[..16]);
    let empty_secret = || failure("the secret is empty".to_owned());
    let key = LoadedKey {
        header_segment: header_segment(SigningAlgorithm::Hs256, &kid),
        kid,
        algorithm: SigningAlgorithm::Hs256,
        encoding: EncodingKey::from_secret(&secret).map_err(|_| empty_secret())?,
        prepared: PreparedKey::Hmac(
            Hmac::<Sha256>::new_from_slice(&secret).map_err(|_| empty_secret())?,
        ),
        decoding: DecodingKey::from_secret(&secret).map_err(|_| empty_secret())?,
        jwk: None,
        created_at: 0,
        retired_at: None,
    };
    secret.fill(0);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037, appendix A.3: the thumbprint of the example public key.
        let public_key = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let members = public_members(SigningAlgorithm::EdDsa, &public_key).unwrap();

        assert_eq!(
            thumbprint(&members),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn generated_keys_load_for_every_algorithm() {
        for algorithm in [
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
        ] {
            let stored = generate(algorithm, 1_700_000_000).unwrap();
            let loaded = LoadedKey::from_stored(&stored).unwrap();
            let jwk = loaded.jwk.as_ref().unwrap();

            assert_eq!(loaded.algorithm, algorithm);
            assert_eq!(jwk["kid"], stored.kid.as_str(), "{algorithm}");
            assert_eq!(jwk["alg"], algorithm.name());
            assert_eq!(jwk["use"], "sig");
        }
    }

    #[test]
    fn algorithm_names_parse() {
        for algorithm in SigningAlgorithm::ALL {
            assert_eq!(algorithm.name().parse::<SigningAlgorithm>(), Ok(algorithm));
        }
        assert_eq!(
            "eddsa".parse::<SigningAlgorithm>(),
            Ok(SigningAlgorithm::EdDsa)
        );
        assert!("none".parse::<SigningAlgorithm>().is_err());
        assert!("HS512".parse::<SigningAlgorithm>().is_err());
    }
}
