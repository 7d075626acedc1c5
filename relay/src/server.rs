//! The relay: one TLS port serving static files, the API and both WebSockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cohort_core::study::{StudyParams, StudySpec};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{debug, info, warn};

use crate::certs::{self, CertError, CertOrigin};
use crate::clock::Clock;
use crate::http::{self, ReadError, Request, Response};
use crate::registry::{CreateError, Registry};
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsSetupError};
use crate::token::{self, AdminToken, TokenError, TokenSource};
use crate::{api, ws};

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first request head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
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
    /// Studies to run. A study whose id is already stored keeps its stored specification.
    pub studies: Vec<StudySpec>,
    /// The admin token; generated (or read from the data directory) if `None`.
    pub admin_token: Option<String>,
    /// Largest WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
}

impl RelayConfig {
    /// The defaults of the `cohort-relay` binary.
    pub fn new() -> RelayConfig {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            web: "web/www".into(),
            certs: "certs".into(),
            data: "data".into(),
            studies: Vec::new(),
            admin_token: None,
            max_message_bytes: ws::DEFAULT_MAX_MESSAGE_BYTES,
            max_connections: 4096,
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

struct Ctx {
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
    token: AdminToken,
    web: PathBuf,
    ws_config: WebSocketConfig,
    max_message_bytes: usize,
    closing: watch::Receiver<bool>,
}

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
        let store = Arc::new(Store::open(&cfg.data)?);
        let clock = Clock::new();
        let stale = store.abandon_in_flight(clock.now_ms())?;
        if stale > 0 {
            warn!(
                rounds = stale,
                "rounds in flight at the last stop marked abandoned (relay_restarted)"
            );
        }
        let (token, token_source) = token::resolve(cfg.admin_token.as_deref(), &cfg.data)?;
        let registry = Registry::new(store.clone(), clock);
        let restored = registry.restore()?;
        for spec in cfg.studies {
            match store.study(&spec.params.id)? {
                Some(stored) => {
                    if stored != spec {
                        warn!(study = %spec.params.id, "--study differs from the stored study of that id; keeping the stored one");
                    }
                }
                None => {
                    registry.create(spec)?;
                }
            }
        }
        if restored == 0 && registry.list().is_empty() {
            registry.create(StudySpec {
                params: StudyParams::demo(),
                deadlines: Default::default(),
                invite: None,
            })?;
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
        let ctx = Arc::new(Ctx {
            acceptor: TlsAcceptor::from(server_config),
            registry: registry.clone(),
            token,
            web: cfg.web,
            ws_config: ws::config(cfg.max_message_bytes),
            max_message_bytes: cfg.max_message_bytes,
            closing: closing_rx,
        });
        let conns = Arc::new(Semaphore::new(cfg.max_connections));
        let accept = tokio::spawn(accept_loop(listener, ctx, conns.clone()));
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

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, conns: Arc<Semaphore>) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            warn!(%remote, "too many connections; refusing one");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            serve(ctx, tcp, remote).await;
            drop(permit);
        });
    }
}

async fn serve(ctx: Arc<Ctx>, tcp: TcpStream, remote: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, ctx.acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    serve_http(ctx, stream, remote).await;
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Ctx>,
    mut stream: S,
    remote: SocketAddr,
) {
    let mut buf = Vec::new();
    let mut closing = ctx.closing.clone();
    let mut first = true;
    loop {
        let wait = if first { HEAD_TIMEOUT } else { IDLE_TIMEOUT };
        first = false;
        let read = tokio::select! {
            r = tokio::time::timeout(wait, http::read_request(&mut stream, &mut buf)) => r,
            _ = closing.changed() => return,
        };
        let req = match read {
            Ok(Ok(req)) => req,
            Ok(Err(ReadError::TooLarge)) => {
                let _ = Response::error(431, "request too large")
                    .write_to(&mut stream, false, false)
                    .await;
                return;
            }
            Ok(Err(ReadError::Malformed)) => {
                let _ = Response::error(400, "malformed request")
                    .write_to(&mut stream, false, false)
                    .await;
                return;
            }
            Ok(Err(_)) | Err(_) => return,
        };
        if req.path == "/ws" || req.path == "/ws/dashboard" {
            upgrade(ctx, stream, req, buf, remote).await;
            return;
        }
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let resp = route(&ctx, &req).await;
        debug!(%remote, method = %req.method, path = %req.path, status = resp.status, "http");
        if resp
            .write_to(&mut stream, head_only, keep_alive)
            .await
            .is_err()
            || !keep_alive
        {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn route(ctx: &Ctx, req: &Request) -> Response {
    if req.path == "/api" || req.path.starts_with("/api/") {
        return api::handle(&ctx.registry, &ctx.token, req).await;
    }
    match req.method.as_str() {
        "GET" | "HEAD" => http::static_file(&ctx.web, &req.path).await,
        _ => Response::error(405, "method not allowed").with_header("Allow", "GET, HEAD"),
    }
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Ctx>,
    mut stream: S,
    req: Request,
    leftover: Vec<u8>,
    remote: SocketAddr,
) {
    let head = match ws::accept(&req) {
        Ok(h) => h,
        Err(resp) => {
            let _ = resp.write_to(&mut stream, false, false).await;
            return;
        }
    };
    if stream.write_all(head.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let socket =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(ctx.ws_config))
            .await;
    debug!(%remote, path = %req.path, "websocket open");
    if req.path == "/ws" {
        ws::patient_session(
            socket,
            ctx.registry.clone(),
            ctx.max_message_bytes,
            ctx.closing.clone(),
        )
        .await;
    } else {
        ws::dashboard_session(
            socket,
            ctx.registry.clone(),
            ctx.token.clone(),
            ctx.closing.clone(),
        )
        .await;
    }
}
