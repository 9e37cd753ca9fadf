//! TLS for the HTTP server: a certificate chain and private key from PEM
//! files, served with rustls and its `ring` crypto provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read a PEM certificate chain from {path}: {message}; check --tls-cert (NEXUS_AUTH_TLS_CERT)")]
    Certificate { path: String, message: String },
    #[error("cannot read a PEM private key from {path}: {message}; check --tls-key (NEXUS_AUTH_TLS_KEY)")]
    PrivateKey { path: String, message: String },
    #[error("the TLS certificate and private key do not form a usable pair: {0}")]
    Config(#[from] rustls::Error),
}

/// Builds the rustls configuration for the certificate chain in `cert_path`
/// (leaf first) and the PKCS#8, PKCS#1 or SEC1 key in `key_path`.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsError> {
    let certificate_error = |message: String| TlsError::Certificate {
        path: cert_path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|error| certificate_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| certificate_error(error.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error(
            "the file holds no CERTIFICATE block".to_owned(),
        ));
    }

    let key_error = |message: String| TlsError::PrivateKey {
        path: key_path.display().to_string(),
        message,
    };
    let key_pem = std::fs::read(key_path).map_err(|error| key_error(error.to_string()))?;
    // The parse error is not shown, because it could quote key bytes.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| key_error("no PKCS#8, PKCS#1 or SEC1 private key block found".to_owned()))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
