//! One connection after TLS: HTTP requests with keep-alive, or one WebSocket upgrade. Where
//! each request goes is the router's decision ([`super::router`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use super::IDLE_TIMEOUT;
use super::router::{self, Routed};
use crate::bundle::Bundle;
use crate::http::{self, ReadError, Response};
use crate::registry::Registry;
use crate::token::AdminToken;
use crate::ws;

/// Everything a connection needs once it is past TLS: the studies, the admin token, the web
/// directory and the transport limits. [`serve_stream`] runs one connection over any byte
/// stream, so tests and fuzzers can drive it over an in-memory duplex.
pub struct Handler {
    pub(crate) registry: Arc<Registry>,
    pub(crate) token: AdminToken,
    pub(crate) web: PathBuf,
    pub(crate) bundle: Arc<Bundle>,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) limits: ws::SessionLimits,
    pub(crate) handshake_timeout: Duration,
    pub(crate) closing: watch::Receiver<bool>,
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
        let bundle = match Bundle::load(&web) {
            Ok(b) => {
                if !b.missing().is_empty() {
                    warn!(files = ?b.missing(), "pages name files the web directory lacks (wasm bundle not built?); their integrity is left out");
                }
                b
            }
            Err(e) => {
                warn!(error = %e, "cannot read the web directory; serving no pages");
                Bundle::empty()
            }
        };
        info!(bundle = %bundle.manifest().bundle, files = bundle.manifest().files.len(), "served code hashed");
        Arc::new(Handler {
            registry,
            token,
            web,
            bundle: Arc::new(bundle),
            ws_config: ws::config(limits.max_message_bytes),
            limits,
            handshake_timeout,
            closing,
        })
    }
}

/// Serves one connection after TLS (or over any in-memory stream): HTTP requests with
/// keep-alive, or one WebSocket upgrade, until the peer goes, a limit is hit or the relay
/// closes. Never panics on any input.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Handler>,
    stream: S,
    remote: SocketAddr,
) {
    // The HTTP phase and the WebSocket session are two futures awaited one after the other,
    // so the task is sized by the larger of them, not by both.
    if let Some(up) = http_phase(&ctx, stream, remote).await {
        router::upgrade(ctx, up.socket, up.stream, up.req, up.leftover, remote).await;
    }
}

/// A request that upgrades the connection to a WebSocket, with what was read past its head.
struct Upgrade<S> {
    socket: router::Socket,
    stream: S,
    req: http::Request,
    leftover: Vec<u8>,
}

/// Answers HTTP requests until the connection ends (`None`) or a request upgrades it.
async fn http_phase<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Handler,
    mut stream: S,
    remote: SocketAddr,
) -> Option<Upgrade<S>> {
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
            _ = closing.changed() => return None,
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
                return None;
            }
            Ok(Err(ReadError::BodyTooLarge)) => {
                info!(%remote, "request body too large; answered 413");
                let _ = tokio::time::timeout(
                    wt,
                    refuse(413, "request body too large").write_to(&mut stream, false, false),
                )
                .await;
                return None;
            }
            Ok(Err(ReadError::Malformed)) => {
                info!(%remote, "malformed HTTP request; answered 400");
                let _ = tokio::time::timeout(
                    wt,
                    refuse(400, "malformed request").write_to(&mut stream, false, false),
                )
                .await;
                return None;
            }
            Ok(Err(_)) => return None,
            Err(_) => {
                if first {
                    info!(%remote, "no complete request in time; closing");
                }
                return None;
            }
        };
        first = false;
        let resp = match router::route(ctx, &req).await {
            Routed::Upgrade(socket) => {
                return Some(Upgrade {
                    socket,
                    stream,
                    req,
                    leftover: buf,
                });
            }
            Routed::Response(resp) => resp,
        };
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        debug!(%remote, method = %req.method, path = %req.path, status = resp.status, "http");
        let written =
            tokio::time::timeout(wt, resp.write_to(&mut stream, head_only, keep_alive)).await;
        match written {
            Ok(Ok(())) if keep_alive => {}
            Ok(_) => {
                let _ = tokio::time::timeout(wt, stream.shutdown()).await;
                return None;
            }
            Err(_) => {
                info!(%remote, "write timed out (client not reading); closing");
                return None;
            }
        }
    }
}
