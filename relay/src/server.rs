//! The relay: one TLS port serving static files, the API and both WebSockets.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Studies to run. A study whose id is already stored keeps its stored specification.
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

/// Everything a connection needs once it is past TLS: the studies, the admin token, the web
/// directory and the transport limits. [`serve_stream`] runs one connection over any byte
/// stream, so tests and fuzzers can drive it over an in-memory duplex.
pub struct Handler {
    registry: Arc<Registry>,
    token: AdminToken,
    web: PathBuf,
    ws_config: WebSocketConfig,
    limits: ws::SessionLimits,
    handshake_timeout: Duration,
    closing: watch::Receiver<bool>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("web", &self.web)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// A handler over these studies. `closing` turning `true` ends every connection.
    pub fn new(
        registry: Arc<Registry>,
        token: AdminToken,
        web: PathBuf,
        limits: ws::SessionLimits,
        handshake_timeout: Duration,
        closing: watch::Receiver<bool>,
    ) -> Arc<Handler> {
        Arc::new(Handler {
            registry,
            token,
            web,
            ws_config: ws::config(limits.max_message_bytes),
            limits,
            handshake_timeout,
            closing,
        })
    }
}

/// Logs at most one line per second for a noisy class of refusals, counting the rest.
struct Throttle {
    last_s: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    const fn new() -> Throttle {
        Throttle {
            last_s: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` (n lines suppressed since the last one) if a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_s.load(Ordering::Relaxed);
        if now != last
            && self
                .last_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

static REFUSED_CONNECTIONS: Throttle = Throttle::new();

/// Open connections per IP address.
#[derive(Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    fn try_add(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpGuard> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpGuard {
            per_ip: self.clone(),
            ip,
        })
    }
}

struct IpGuard {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self.per_ip.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
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

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler>,
    conns: Arc<Semaphore>,
    per_ip_max: usize,
) {
    let per_ip = Arc::new(PerIp::default());
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
            if let Some(suppressed) = REFUSED_CONNECTIONS.allow() {
                warn!(%remote, suppressed, "too many connections; refusing");
            }
            continue;
        };
        let Some(ip_guard) = per_ip.try_add(remote.ip(), per_ip_max) else {
            if let Some(suppressed) = REFUSED_CONNECTIONS.allow() {
                warn!(%remote, suppressed, "too many connections from this address; refusing");
            }
            continue;
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            serve(handler, acceptor, tcp, remote).await;
            drop(ip_guard);
            drop(permit);
        });
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

async fn serve(
    handler: Arc<Handler>,
    acceptor: TlsAcceptor,
    mut tcp: TcpStream,
    remote: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let limit = handler.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(limit, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return,
        Err(_) => {
            info!(%remote, "handshake timed out (no bytes)");
            return;
        }
    }
    if first[0] != TLS_HANDSHAKE {
        if first[0].is_ascii_uppercase() {
            info!(%remote, "plain HTTP on the TLS port; answered 400");
            let host = tcp
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "HOST:PORT".into());
            let body = format!("this port speaks HTTPS only: use https://{host}/\n");
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(limit, async {
                let _ = tcp.write_all(resp.as_bytes()).await;
                let _ = tcp.shutdown().await;
                // Read what the client sent, so closing does not reset the connection before
                // it reads the answer.
                let mut sink = [0u8; 4096];
                let mut total = 0usize;
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await {
                    total += n;
                    if n == 0 || total > http::MAX_HEAD_BYTES {
                        break;
                    }
                }
            })
            .await;
        } else {
            info!(%remote, "not TLS; closing");
        }
        return;
    }
    let stream = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            info!(%remote, "TLS handshake timed out");
            return;
        }
    };
    serve_stream(handler, stream, remote).await;
}

/// Serves one connection after TLS (or over any in-memory stream): HTTP requests with
/// keep-alive, or one WebSocket upgrade, until the peer goes, a limit is hit or the relay
/// closes. Never panics on any input.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Handler>,
    mut stream: S,
    remote: SocketAddr,
) {
    let mut buf = Vec::new();
    let mut closing = ctx.closing.clone();
    let mut first = true;
    let wt = ctx.limits.write_timeout;
    loop {
        let wait = if first {
            ctx.handshake_timeout
        } else {
            IDLE_TIMEOUT
        };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, http::read_request(&mut stream, &mut buf)) => r,
            _ = closing.changed() => return,
        };
        let refuse = |status, msg| Response::error(status, msg);
        let req = match read {
            Ok(Ok(req)) => req,
            Ok(Err(ReadError::TooLarge)) => {
                info!(%remote, "request head too large; answered 431");
                let _ = tokio::time::timeout(
                    wt,
                    refuse(431, "request head too large").write_to(&mut stream, false, false),
                )
                .await;
                return;
            }
            Ok(Err(ReadError::BodyTooLarge)) => {
                info!(%remote, "request body too large; answered 413");
                let _ = tokio::time::timeout(
                    wt,
                    refuse(413, "request body too large").write_to(&mut stream, false, false),
                )
                .await;
                return;
            }
            Ok(Err(ReadError::Malformed)) => {
                info!(%remote, "malformed HTTP request; answered 400");
                let _ = tokio::time::timeout(
                    wt,
                    refuse(400, "malformed request").write_to(&mut stream, false, false),
                )
                .await;
                return;
            }
            Ok(Err(_)) => return,
            Err(_) => {
                if first {
                    info!(%remote, "no complete request in time; closing");
                }
                return;
            }
        };
        first = false;
        if req.path == "/ws" || req.path == "/ws/dashboard" {
            upgrade(ctx, stream, req, buf, remote).await;
            return;
        }
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let resp = route(&ctx, &req).await;
        debug!(%remote, method = %req.method, path = %req.path, status = resp.status, "http");
        let written =
            tokio::time::timeout(wt, resp.write_to(&mut stream, head_only, keep_alive)).await;
        match written {
            Ok(Ok(())) if keep_alive => {}
            Ok(_) => {
                let _ = tokio::time::timeout(wt, stream.shutdown()).await;
                return;
            }
            Err(_) => {
                info!(%remote, "write timed out (client not reading); closing");
                return;
            }
        }
    }
}

async fn route(ctx: &Handler, req: &Request) -> Response {
    if req.path == "/api" || req.path.starts_with("/api/") {
        return api::handle(&ctx.registry, &ctx.token, req).await;
    }
    match req.method.as_str() {
        "GET" | "HEAD" => http::static_file(&ctx.web, &req.path).await,
        _ => Response::error(405, "method not allowed").with_header("Allow", "GET, HEAD"),
    }
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Handler>,
    mut stream: S,
    req: Request,
    leftover: Vec<u8>,
    remote: SocketAddr,
) {
    let wt = ctx.limits.write_timeout;
    let head = match ws::accept(&req) {
        Ok(h) => h,
        Err(resp) => {
            info!(%remote, path = %req.path, status = resp.status, "WebSocket upgrade refused");
            let _ = tokio::time::timeout(wt, resp.write_to(&mut stream, false, false)).await;
            return;
        }
    };
    let sent = tokio::time::timeout(wt, async {
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
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
            ctx.limits,
            ctx.closing.clone(),
        )
        .await;
    } else {
        ws::dashboard_session(
            socket,
            ctx.registry.clone(),
            ctx.token.clone(),
            ctx.limits,
            ctx.closing.clone(),
        )
        .await;
    }
}
