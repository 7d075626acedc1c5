//! The admin bearer token for `/api/studies*` and `/ws/dashboard`.
//!
//! Taken from `--admin-token` / `COHORT_ADMIN_TOKEN`, else read from `DATA/admin-token`, else
//! generated (32 random bytes, hex), written there with mode 0600 and printed once. Only its
//! SHA-256 digest is kept in memory, and candidates are compared digest to digest in constant
//! time. The token is never logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// File name of the stored token inside the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A token that was not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Too short or contains whitespace or control characters.
    #[error(
        "the admin token must be at least {MIN_TOKEN_LEN} characters without spaces or control characters"
    )]
    Weak,
    /// The token file could not be read or written.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The operating system's random generator failed.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// The admin token, kept as a digest. `Debug` does not show it.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Where the token came from, for the startup message.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// From the command line or the environment.
    Given,
    /// Read from this file.
    Stored(PathBuf),
    /// Generated now and written to this file; the token is shown once.
    Generated {
        /// The file it was written to.
        path: PathBuf,
        /// The token, to print once.
        token: String,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Given => f.write_str("Given"),
            TokenSource::Stored(p) => write!(f, "Stored({})", p.display()),
            TokenSource::Generated { path, .. } => write!(f, "Generated({})", path.display()),
        }
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn acceptable(token: &str) -> bool {
    token.chars().count() >= MIN_TOKEN_LEN
        && !token.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl AdminToken {
    /// Wraps a token after checking it is acceptable.
    pub fn new(token: &str) -> Result<AdminToken, TokenError> {
        if !acceptable(token) {
            return Err(TokenError::Weak);
        }
        Ok(AdminToken {
            digest: digest(token),
        })
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    pub fn verify(&self, candidate: &str) -> bool {
        bool::from(digest(candidate).ct_eq(&self.digest))
    }

    /// Whether an `Authorization` header value is `Bearer <the token>`.
    pub fn verify_bearer(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let mut parts = h.trim().splitn(2, ' ');
        let scheme = parts.next().unwrap_or("");
        let token = parts.next().unwrap_or("").trim();
        scheme.eq_ignore_ascii_case("bearer") && self.verify(token)
    }
}

/// Generates a fresh random token: 64 hex digits.
pub fn generate() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `contents` to a new file readable only by its owner (mode 0600 on Unix). The file
/// is created under a temporary name and renamed into place.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Resolves the token: `given`, else the stored file in `data_dir`, else a new one.
pub fn resolve(
    given: Option<&str>,
    data_dir: &Path,
) -> Result<(AdminToken, TokenSource), TokenError> {
    if let Some(t) = given {
        return Ok((AdminToken::new(t)?, TokenSource::Given));
    }
    let path = data_dir.join(TOKEN_FILE);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            return Ok((AdminToken::new(s.trim())?, TokenSource::Stored(path)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let token = generate()?;
    write_private(&path, format!("{token}\n").as_bytes()).map_err(io)?;
    Ok((
        AdminToken::new(&token)?,
        TokenSource::Generated { path, token },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_token() {
        let t = AdminToken::new("correct-horse-battery").unwrap();
        assert!(t.verify("correct-horse-battery"));
        assert!(!t.verify("correct-horse-batterY"));
        assert!(!t.verify(""));
        assert!(t.verify_bearer(Some("Bearer correct-horse-battery")));
        assert!(t.verify_bearer(Some("bearer  correct-horse-battery ")));
        assert!(!t.verify_bearer(Some("Basic correct-horse-battery")));
        assert!(!t.verify_bearer(Some("correct-horse-battery")));
        assert!(!t.verify_bearer(None));
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("has a space in it!!").is_err());
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("cohort-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (t1, src) = resolve(None, &dir).unwrap();
        let TokenSource::Generated { path, token } = src else {
            panic!("expected a generated token")
        };
        assert_eq!(token.len(), 64);
        assert!(t1.verify(&token));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t2, src) = resolve(None, &dir).unwrap();
        assert_eq!(src, TokenSource::Stored(path));
        assert!(t2.verify(&token));
        let (t3, src) = resolve(Some("given-token-0123456789"), &dir).unwrap();
        assert_eq!(src, TokenSource::Given);
        assert!(!t3.verify(&token));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
