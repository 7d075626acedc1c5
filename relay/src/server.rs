//! The relay: one TLS port serving static files, the API and both WebSockets.
//!
//! By concern: [`config`] (what it starts with), [`listener`] (accepting, limits, TLS),
//! [`conn`] (one connection's HTTP loop), [`router`] (every path). This module starts and
//! stops the whole.

pub mod config;
pub mod conn;
pub mod listener;
pub mod router;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use cohort_core::study::{StudyParams, StudySpec};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use config::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_PATIENTS_PER_STUDY,
    HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, RelayConfig, SHUTDOWN_GRACE, StartError, WRITE_TIMEOUT,
};
pub use conn::{Handler, serve_stream};

use crate::certs::{self, CertOrigin};
use crate::clock::Clock;
use crate::registry::Registry;
use crate::store::Store;
use crate::token::{self, TokenSource};
use crate::{tls, ws};
use listener::accept_loop;

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    registry: Arc<Registry>,
    token_source: TokenSource,
    cert_origin: CertOrigin,
    ca: Option<PathBuf>,
    closing: watch::Sender<bool>,
    accept: JoinHandle<()>,
    conns: Arc<Semaphore>,
    max_connections: usize,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Loads or generates certificates, opens the store (marking rounds that were in flight
    /// as abandoned), restores and creates studies, and starts listening.
    pub async fn start(cfg: RelayConfig) -> Result<Relay, StartError> {
        let material = certs::load_or_generate(&cfg.certs)?;
        match material.origin {
            CertOrigin::Generated => {
                info!(dir = %cfg.certs.display(), "generated a development CA and a localhost certificate")
            }
            CertOrigin::IssuedByExistingCa => {
                info!(dir = %cfg.certs.display(), "issued a localhost certificate from the existing CA")
            }
            CertOrigin::Loaded => info!(dir = %cfg.certs.display(), "loaded certificates"),
        }
        let server_config = tls::server_config(&material)?;
        if !cfg.web.join("index.html").is_file() {
            warn!(dir = %cfg.web.display(), "no index.html in the web directory; pages will 404");
        }
        let store = Arc::new(match &cfg.database {
            Some(url) => Store::connect_postgres(url).await?,
            None => Store::open(&cfg.data)?,
        });
        let clock = Clock::new();
        let stale = store.abandon_in_flight(clock.now_ms()).await?;
        if stale > 0 {
            warn!(
                rounds = stale,
                "rounds in flight at the last stop marked abandoned (relay_restarted)"
            );
        }
        let (token, token_source) = token::resolve(cfg.admin_token.as_deref(), &cfg.data)?;
        let registry = Registry::new(store.clone(), clock);
        registry.set_max_patients_per_study(cfg.max_patients_per_study);
        let restored = registry.restore().await?;
        for spec in cfg.studies {
            match store.study(&spec.params.id).await? {
                Some(stored) => {
                    if stored != spec {
                        warn!(study = %spec.params.id, "--study differs from the stored study of that id; keeping the stored one");
                    }
                }
                None => {
                    registry.create(spec).await?;
                }
            }
        }
        if restored == 0 && registry.list().is_empty() {
            registry
                .create(StudySpec {
                    params: StudyParams::demo(),
                    deadlines: Default::default(),
                    invite: None,
                })
                .await?;
        }
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let (closing, closing_rx) = watch::channel(false);
        let limits = ws::SessionLimits {
            max_message_bytes: cfg.max_message_bytes,
            messages_per_second: cfg.max_messages_per_second,
            write_timeout: cfg.write_timeout,
            auth_timeout: cfg.handshake_timeout,
        };
        let handler = Handler::new(
            registry.clone(),
            token,
            cfg.web,
            limits,
            cfg.handshake_timeout,
            closing_rx,
        );
        let conns = Arc::new(Semaphore::new(cfg.max_connections));
        let accept = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(server_config),
            handler,
            conns.clone(),
            cfg.max_connections_per_ip.max(1),
        ));
        info!(%addr, "listening");
        Ok(Relay {
            addr,
            registry,
            token_source,
            cert_origin: material.origin,
            ca: material.ca,
            closing,
            accept,
            conns,
            max_connections: cfg.max_connections,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://HOST:PORT`, with `localhost` for an unspecified address.
    pub fn base_url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("https://{host}:{}", self.addr.port())
    }

    /// The three startup lines of docs/API.md: listening URL, patient page, dashboard.
    pub fn startup_lines(&self) -> [String; 3] {
        let base = self.base_url();
        let first = self
            .registry
            .list()
            .first()
            .map(|h| h.id().to_string())
            .unwrap_or_default();
        [
            format!("listening on {base}"),
            format!("patient page: {base}/?study={first}"),
            format!("dashboard: {base}/hospital"),
        ]
    }

    /// Where the admin token came from.
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    /// Whether the certificates were loaded or generated.
    pub fn cert_origin(&self) -> &CertOrigin {
        &self.cert_origin
    }

    /// The CA certificate file in the certs directory, if any.
    pub fn ca_file(&self) -> Option<&PathBuf> {
        self.ca.as_ref()
    }

    /// How many connections are open right now.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.conns.available_permits()
    }

    /// The studies.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stops accepting, abandons running rounds (reason `shutdown`, stored and sent to their
    /// patients), closes connections and waits for them, at most a few seconds.
    pub async fn shutdown(self) {
        self.accept.abort();
        self.registry.shutdown(SHUTDOWN_GRACE).await;
        let _ = self.closing.send(true);
        let all = self.conns.acquire_many(self.max_connections as u32);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, all).await;
        info!("relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
