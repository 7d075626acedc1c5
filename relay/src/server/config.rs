//! What the relay is started with: [`RelayConfig`], its defaults, and why a start fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cohort_core::study::StudySpec;

use crate::certs::CertError;
use crate::cluster::LeaseTimes;
use crate::registry::CreateError;
use crate::store::StoreError;
use crate::tls::TlsSetupError;
use crate::token::TokenError;
use crate::ws;

/// Default for how long a connection may take to finish its TLS handshake, and then again to
/// send its first complete request head (and a dashboard its `auth` frame).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for how long one write may block before the client counts as not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default most simultaneous connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Default largest cohort size a new study may have.
pub const DEFAULT_MAX_PATIENTS_PER_STUDY: u32 = 1000;
/// How long a kept-alive HTTP connection may sit idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for studies and connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Everything the relay needs to start.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory of the static pages.
    pub web: PathBuf,
    /// Directory of the TLS certificates.
    pub certs: PathBuf,
    /// Directory of the database and the admin token.
    pub data: PathBuf,
    /// PostgreSQL URL (`postgres://USER@HOST:PORT/DB`) of the store; SQLite in `data` if `None`.
    pub database: Option<String>,
    /// This relay's name in the study leases (PostgreSQL only); `HOSTNAME:PORT:PID` if `None`.
    pub relay_id: Option<String>,
    /// Lease timing (PostgreSQL only).
    pub lease_times: LeaseTimes,
    /// Studies to run. A study whose id is already stored keeps its stored specification.
    /// With PostgreSQL they are stored, and run on whichever relay takes their lease first.
    pub studies: Vec<StudySpec>,
    /// The admin token; generated (or read from the data directory) if `None`.
    pub admin_token: Option<String>,
    /// Largest WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Average WebSocket frames per second allowed per connection (bursts of twice that);
    /// 0 = unlimited.
    pub max_messages_per_second: u32,
    /// Largest cohort size (`size`) of a study created by this relay (`--study` or the API).
    pub max_patients_per_study: u32,
    /// Time allowed for the TLS handshake, and then for the first request head.
    pub handshake_timeout: Duration,
    /// Time one write may block before the client counts as not reading and is dropped.
    pub write_timeout: Duration,
}

impl RelayConfig {
    /// The defaults of the `cohort-relay` binary.
    pub fn new() -> RelayConfig {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            web: "web/www".into(),
            certs: "certs".into(),
            data: "data".into(),
            database: None,
            relay_id: None,
            lease_times: LeaseTimes::default(),
            studies: Vec::new(),
            admin_token: None,
            max_message_bytes: ws::DEFAULT_MAX_MESSAGE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_messages_per_second: ws::DEFAULT_MESSAGES_PER_SECOND,
            max_patients_per_study: DEFAULT_MAX_PATIENTS_PER_STUDY,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig::new()
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Certificates unusable.
    #[error("certificates: {0}")]
    Certs(#[from] CertError),
    /// TLS configuration refused.
    #[error("TLS: {0}")]
    Tls(#[from] TlsSetupError),
    /// Database unusable.
    #[error("data: {0}")]
    Store(#[from] StoreError),
    /// Admin token unusable.
    #[error("admin token: {0}")]
    Token(#[from] TokenError),
    /// A study could not be started.
    #[error("study: {0}")]
    Study(#[from] CreateError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a `--study-file` could not be used. Names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudyFileError {
    /// The file could not be read.
    #[error("study file {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an acceptable study ([`StudySpec::from_json`]).
    #[error("study file {}: {}{source}", path.display(), key_prefix(source))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why (names the key; [`cohort_core::error::StudyError::key`]).
        source: cohort_core::error::StudyError,
    },
}

/// `key `K`: ` for an error about a key, nothing otherwise.
fn key_prefix(e: &cohort_core::error::StudyError) -> String {
    e.key().map(|k| format!("key `{k}`: ")).unwrap_or_default()
}

/// Reads one study in its JSON form ([`StudySpec::from_json`]) from a `--study-file`.
pub fn read_study_file(path: &std::path::Path) -> Result<StudySpec, StudyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| StudyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    StudySpec::from_json(&text).map_err(|source| StudyFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}
