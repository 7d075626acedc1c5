//! `cohort-patient verify-page`: downloads what a relay serves over verified TLS and compares
//! it with the bundle built from this source ([`super::Bundle`]).

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::*;

/// The result of comparing a relay's served code with a local build.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The relay's base URL.
    pub relay: String,
    /// The local bundle's hash ([`Manifest::bundle`]).
    pub bundle: String,
    /// Whether every file matched and the relay's manifest is the local one.
    pub verified: bool,
    /// Files compared.
    pub files: usize,
    /// Files whose served bytes differ from the local build.
    pub different: Vec<String>,
    /// Local files the relay did not serve (any status but 200).
    pub not_served: Vec<String>,
    /// Files the relay's manifest lists that the local build does not have.
    pub extra: Vec<String>,
    /// Whether the relay's published manifest equals the local one.
    pub manifest_matches: bool,
}

/// Why a verification could not be carried out (as opposed to finding a difference).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The relay URL is not `https://HOST[:PORT]`.
    #[error("{0}: expected https://HOST[:PORT]")]
    Url(String),
    /// The local bundle could not be read.
    #[error("local bundle: {0}")]
    Local(#[from] BundleError),
    /// TLS set-up (the CA file) failed.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// The relay could not be reached or the connection failed.
    #[error("{path}: {reason}")]
    Fetch {
        /// The path requested.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The relay's manifest is not a manifest.
    #[error("the relay's {MANIFEST_PATH} is not a valid manifest")]
    BadManifest,
}

/// A fetched response: status and body.
struct Fetched {
    status: u16,
    body: Vec<u8>,
}

pub(super) fn parse_https(url: &str) -> Result<(String, u16), VerifyError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| VerifyError::Url(url.into()))?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| VerifyError::Url(url.into()))?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(VerifyError::Url(url.into()));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| VerifyError::Url(url.into()))?,
        None => 443,
    };
    Ok((host, port))
}

/// One HTTPS GET over a fresh connection (`Connection: close`), body bounded.
async fn get(
    config: &Arc<ClientConfig>,
    host: &str,
    port: u16,
    path: &str,
) -> Result<Fetched, VerifyError> {
    let fail = |reason: String| VerifyError::Fetch {
        path: path.to_string(),
        reason,
    };
    let name = ServerName::try_from(host.to_string()).map_err(|_| fail("bad host name".into()))?;
    let timeout = std::time::Duration::from_secs(15);
    let io = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let host_header = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n"
        );
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut buf = Vec::new();
        (&mut tls)
            .take(MAX_FILE_BYTES + 64 * 1024)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok::<_, VerifyError>(buf)
    };
    let buf = tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| fail("timed out".into()))??;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(fail("malformed HTTP response".into())),
    };
    let status = resp.code.unwrap_or(0);
    let length = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = &buf[head_len..];
    let body = match length {
        Some(n) if n <= body.len() => body[..n].to_vec(),
        Some(_) => return Err(fail("response shorter than its Content-Length".into())),
        None => body.to_vec(),
    };
    Ok(Fetched { status, body })
}

/// The request path that serves bundle path `rel`.
fn request_path(rel: &str) -> String {
    format!("/{rel}")
}

/// Downloads the code `relay` (`https://HOST:PORT`) serves and compares it with the bundle
/// built from the web directory `web` on this machine, trusting the CA certificates in `ca`.
pub async fn verify(relay: &str, ca: &Path, web: &Path) -> Result<Verification, VerifyError> {
    let (host, port) = parse_https(relay)?;
    let local = Bundle::load(web)?;
    let config = crate::tls::client_config(ca).map_err(|e| VerifyError::Tls(e.to_string()))?;
    let served = get(&config, &host, port, MANIFEST_PATH).await?;
    if served.status != 200 {
        return Err(VerifyError::Fetch {
            path: MANIFEST_PATH.into(),
            reason: format!("HTTP status {}", served.status),
        });
    }
    let remote: Manifest =
        serde_json::from_slice(&served.body).map_err(|_| VerifyError::BadManifest)?;
    let mut different = Vec::new();
    let mut not_served = Vec::new();
    for (rel, expected) in &local.manifest.files {
        let got = get(&config, &host, port, &request_path(rel)).await?;
        if got.status != 200 {
            not_served.push(rel.clone());
        } else if &sha256_hex(&got.body) != expected {
            different.push(rel.clone());
        }
    }
    let extra: Vec<String> = remote
        .files
        .keys()
        .filter(|k| !local.manifest.files.contains_key(*k))
        .cloned()
        .collect();
    let manifest_matches = remote == local.manifest;
    let verified =
        different.is_empty() && not_served.is_empty() && extra.is_empty() && manifest_matches;
    Ok(Verification {
        relay: relay.to_string(),
        bundle: local.manifest.bundle.clone(),
        verified,
        files: local.manifest.files.len(),
        different,
        not_served,
        extra,
        manifest_matches,
    })
}
