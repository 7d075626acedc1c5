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
    HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, RelayConfig, SHUTDOWN_GRACE, StartError, StudyFileError,
    WRITE_TIMEOUT, read_study_file,
};
pub use conn::{Handler, serve_stream};

use crate::certs::{self, CertOrigin};
use crate::clock::Clock;
use crate::cluster::{self, Leases};
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
    first_study: String,
    /// The lease loop and the cross-relay event bridge (PostgreSQL only).
    cluster_tasks: Vec<JoinHandle<()>>,
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
        let (token, token_source) = token::resolve(cfg.admin_token.as_deref(), &cfg.data)?;
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
        let leases = store.is_postgres().then(|| {
            let id = cfg
                .relay_id
                .clone()
                .unwrap_or_else(|| default_relay_id(addr.port()));
            Leases::new(store.clone(), &id, cfg.lease_times)
        });
        let registry = Registry::with_leases(store.clone(), clock, leases.clone());
        registry.set_max_patients_per_study(cfg.max_patients_per_study);
        let mut first_study = None;
        if let Some(leases) = &leases {
            // Several relays share the database: a study runs where its lease is taken, on
            // demand (see crate::cluster). Nothing is marked abandoned here: the rounds in
            // flight of another, live relay are not this relay's to judge.
            info!(relay = %leases.owner(), "clustered: studies run where their lease is taken");
            let mut specs = cfg.studies;
            if specs.is_empty() && store.studies().await?.is_empty() {
                specs.push(StudySpec {
                    params: StudyParams::demo(),
                    deadlines: Default::default(),
                    invite: None,
                });
            }
            for spec in specs {
                if store.insert_study(&spec, clock.now_ms()).await? {
                    info!(study = %spec.params.id, "study stored");
                } else if store.study(&spec.params.id).await?.as_ref() != Some(&spec) {
                    warn!(study = %spec.params.id, "--study differs from the stored study of that id; keeping the stored one");
                }
            }
            first_study = store.studies().await?.first().map(|s| s.params.id.clone());
        } else {
            let stale = store.abandon_in_flight(clock.now_ms()).await?;
            if stale > 0 {
                warn!(
                    rounds = stale,
                    "rounds in flight at the last stop marked abandoned (relay_restarted)"
                );
            }
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
        }
        let first_study = first_study
            .or_else(|| registry.list().first().map(|h| h.id().to_string()))
            .unwrap_or_default();
        let cluster_tasks = if leases.is_some() {
            vec![
                tokio::spawn(cluster::run_leases(registry.clone())),
                tokio::spawn(cluster::bridge_events(registry.clone())),
            ]
        } else {
            Vec::new()
        };
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
            first_study,
            cluster_tasks,
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
        let first = &self.first_study;
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

    /// This relay's id in the study leases (PostgreSQL only).
    pub fn relay_id(&self) -> Option<&str> {
        self.registry.leases().map(|l| l.owner())
    }

    /// Stops accepting, abandons running rounds (reason `shutdown`, stored and sent to their
    /// patients), releases its study leases, closes connections and waits for them, at most a
    /// few seconds.
    pub async fn shutdown(self) {
        self.registry.set_draining();
        self.accept.abort();
        for t in &self.cluster_tasks {
            t.abort();
        }
        self.registry.shutdown(SHUTDOWN_GRACE).await;
        if let Some(leases) = self.registry.leases() {
            leases.release_all().await;
        }
        let _ = self.closing.send(true);
        let all = self.conns.acquire_many(self.max_connections as u32);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, all).await;
        info!("relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        for t in &self.cluster_tasks {
            t.abort();
        }
    }
}

/// `HOSTNAME:PORT:PID`: unique among live relays, different for a restarted one.
fn default_relay_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".to_owned());
    format!("{host}:{port}:{}", std::process::id())
}
