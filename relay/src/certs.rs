//! TLS certificates: load them from the certs directory, or create a local development CA and a
//! `localhost` certificate signed by it.
//!
//! Files in the directory:
//! - `cert.pem`: the server's certificate chain (leaf first), `key.pem`: its private key. Any
//!   real PEM certificate and key placed under these names are used unchanged.
//! - `ca.pem`: the development CA that signed a generated `cert.pem` (what browsers and
//!   `cohort-patient --ca` trust), `ca-key.pem`: its private key.
//!
//! If `cert.pem` and `key.pem` are both missing, a leaf certificate for `localhost`,
//! `127.0.0.1` and `::1` is issued by the CA in `ca.pem` + `ca-key.pem`, which are generated
//! first if they are missing too. Private keys are written with mode 0600. The generated CA is
//! name-constrained to `localhost` and loopback addresses, so trusting it in a browser cannot
//! be abused to impersonate any other site even if its key leaks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::token::write_private;

/// The server certificate chain file.
pub const CERT_FILE: &str = "cert.pem";
/// The server private key file.
pub const KEY_FILE: &str = "key.pem";
/// The development CA certificate file.
pub const CA_FILE: &str = "ca.pem";
/// The development CA private key file.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Names a generated server certificate is valid for.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Days a generated server certificate is valid (below the 825 days some platforms allow).
pub const LEAF_DAYS: i64 = 800;

/// A certificate problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file has no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Only one of a certificate/key pair exists.
    #[error("{present} exists but {missing} does not; provide both or remove {present}")]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// Generating a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What happened to the certificates at startup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertOrigin {
    /// Existing `cert.pem` and `key.pem` were loaded.
    Loaded,
    /// A new server certificate was issued by the existing CA.
    IssuedByExistingCa,
    /// A new development CA and server certificate were generated.
    Generated,
}

/// The server's certificate chain and key.
pub struct TlsMaterial {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Whether they were loaded or generated.
    pub origin: CertOrigin,
    /// The CA file, if there is one in the directory.
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain", &self.chain.len())
            .field("origin", &self.origin)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_public(path: &Path, pem: &str) -> Result<(), CertError> {
    std::fs::write(path, pem).map_err(io_err(path))
}

fn write_key(path: &Path, pem: &str) -> Result<(), CertError> {
    write_private(path, pem.as_bytes()).map_err(io_err(path))
}

/// Today's date as (year, month, day), `offset_days` from now, in UTC.
fn civil_date(offset_days: i64) -> (i32, u8, u8) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Howard Hinnant's days-to-civil algorithm.
    let z = secs.div_euclid(86_400) + offset_days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// The CA's parameters, derived from its key so that a CA can be re-created as an issuer
/// from `ca-key.pem` alone with exactly the distinguished name it was generated with.
fn ca_params(ca_key: &KeyPair) -> CertificateParams {
    let id: String = Sha256::digest(ca_key.public_key_raw())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "cohort (development only)");
    dn.push(DnType::CommonName, format!("cohort development CA {id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([127, 0, 0, 0], 8)),
            GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(
                Ipv6Addr::LOCALHOST.octets(),
                128,
            )),
        ],
        excluded_subtrees: vec![],
    });
    params
}

/// Generates a development CA. Returns (certificate PEM, key PEM).
pub fn generate_ca() -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(&key).self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a server certificate for [`LOCAL_NAMES`] signed by the CA whose key is `ca_key_pem`.
/// Returns (certificate PEM, key PEM).
pub fn issue_local_cert(ca_key_pem: &str) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params(&ca_key), ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let (y, m, d) = civil_date(-1);
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = civil_date(LEAF_DAYS);
    params.not_after = date_time_ymd(y, m, d);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem_err = |what: String| CertError::Pem {
        path: path.to_path_buf(),
        what,
    };
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// Loads the first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable private key ({e})"),
    })
}

/// Loads `cert.pem` + `key.pem` from `dir`, generating what is missing (see the module docs).
pub fn load_or_generate(dir: &Path) -> Result<TlsMaterial, CertError> {
    let [cert, key, ca, ca_key] = [CERT_FILE, KEY_FILE, CA_FILE, CA_KEY_FILE].map(|f| dir.join(f));
    let pair = |a: &Path, b: &Path| -> Result<bool, CertError> {
        match (a.exists(), b.exists()) {
            (true, true) => Ok(true),
            (false, false) => Ok(false),
            (true, false) => Err(CertError::Incomplete {
                present: a.to_path_buf(),
                missing: b.to_path_buf(),
            }),
            (false, true) => Err(CertError::Incomplete {
                present: b.to_path_buf(),
                missing: a.to_path_buf(),
            }),
        }
    };
    let origin = if pair(&cert, &key)? {
        CertOrigin::Loaded
    } else {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let origin = if pair(&ca, &ca_key)? {
            CertOrigin::IssuedByExistingCa
        } else {
            let (ca_pem, ca_key_pem) = generate_ca()?;
            write_key(&ca_key, &ca_key_pem)?;
            write_public(&ca, &ca_pem)?;
            CertOrigin::Generated
        };
        let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(io_err(&ca_key))?;
        let (cert_pem, key_pem) = issue_local_cert(&ca_key_pem)?;
        write_key(&key, &key_pem)?;
        write_public(&cert, &cert_pem)?;
        origin
    };
    Ok(TlsMaterial {
        chain: load_certs(&cert)?,
        key: load_key(&key)?,
        origin,
        ca: ca.exists().then_some(ca),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let (y, m, d) = civil_date(0);
        assert!(y >= 2024 && (1..=12).contains(&m) && (1..=31).contains(&d));
        let (y2, ..) = civil_date(800);
        assert!(y2 == y + 2 || y2 == y + 3);
    }

    #[test]
    fn generates_then_reuses_with_private_keys_0600() {
        let dir = std::env::temp_dir().join(format!("cohort-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_generate(&dir).unwrap();
        assert_eq!(first.origin, CertOrigin::Generated);
        assert_eq!(first.chain.len(), 1);
        #[cfg(unix)]
        for f in [KEY_FILE, CA_KEY_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let again = load_or_generate(&dir).unwrap();
        assert_eq!(again.origin, CertOrigin::Loaded);
        assert_eq!(again.chain, first.chain);
        // Removing the leaf re-issues it from the same CA.
        std::fs::remove_file(dir.join(CERT_FILE)).unwrap();
        assert!(matches!(
            load_or_generate(&dir),
            Err(CertError::Incomplete { .. })
        ));
        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let ca_before = std::fs::read(dir.join(CA_FILE)).unwrap();
        let reissued = load_or_generate(&dir).unwrap();
        assert_eq!(reissued.origin, CertOrigin::IssuedByExistingCa);
        assert_ne!(reissued.chain, first.chain);
        assert_eq!(std::fs::read(dir.join(CA_FILE)).unwrap(), ca_before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
