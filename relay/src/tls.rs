//! rustls configurations: TLS 1.3 only, the `ring` provider, no process-wide default.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::certs::{CertError, TlsMaterial, load_certs};

/// The crypto provider every configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The certificate files are unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server configuration: TLS 1.3, ALPN `http/1.1` (HTTPS and WebSocket upgrades).
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting exactly these roots (TLS 1.3, certificate verification on).
pub fn client_config_with_roots(
    roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in a PEM file (e.g. `certs/ca.pem`).
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, TlsSetupError> {
    client_config_with_roots(load_certs(ca_file)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CA_FILE, load_or_generate};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};

    /// Runs a handshake in memory; returns the client's error, if any.
    fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = ClientConnection::new(client, name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            if s.process_new_packets().is_err() {
                // The server's alert reaches the client below.
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn generated_chain_verifies_for_local_names_only() {
        let dir = std::env::temp_dir().join(format!("cohort-tls-{}", std::process::id()));
        let other = dir.join("other");
        let _ = std::fs::remove_dir_all(&dir);
        let material = load_or_generate(&dir).unwrap();
        let server = server_config(&material).unwrap();
        let client = client_config(&dir.join(CA_FILE)).unwrap();
        handshake(client.clone(), server.clone(), "localhost").unwrap();
        handshake(client.clone(), server.clone(), "127.0.0.1").unwrap();
        handshake(client.clone(), server.clone(), "::1").unwrap();
        assert!(handshake(client.clone(), server.clone(), "example.com").is_err());
        // Another CA does not vouch for this server.
        load_or_generate(&other).unwrap();
        let wrong = client_config(&other.join(CA_FILE)).unwrap();
        let err = handshake(wrong, server.clone(), "localhost").unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
        // A leaf re-issued by the existing CA still verifies.
        std::fs::remove_file(dir.join(crate::certs::CERT_FILE)).unwrap();
        std::fs::remove_file(dir.join(crate::certs::KEY_FILE)).unwrap();
        let reissued = server_config(&load_or_generate(&dir).unwrap()).unwrap();
        handshake(client, reissued, "localhost").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
