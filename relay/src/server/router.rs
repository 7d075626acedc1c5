//! The one router: every path the relay serves (`/ws`, `/ws/dashboard`, `/api/...`,
//! `/healthz`, static pages) is decided here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{debug, info};

use super::conn::Handler;
use crate::bundle;
use crate::http::{self, Request, Response};
use crate::{api, ws};

/// Which WebSocket a request upgrades to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// `/ws`: a patient.
    Patient,
    /// `/ws/dashboard`: the hospital's dashboard feed.
    Dashboard,
}

/// What the router decided for one request.
#[derive(Debug)]
pub enum Routed {
    /// Upgrade the connection to this WebSocket.
    Upgrade(Socket),
    /// Answer with this response.
    Response(Response),
}

/// Routes one request.
pub async fn route(ctx: &Handler, req: &Request) -> Routed {
    let resp = match req.path.as_str() {
        "/ws" => return Routed::Upgrade(Socket::Patient),
        "/ws/dashboard" => return Routed::Upgrade(Socket::Dashboard),
        "/healthz" => healthz(ctx),
        // Boxed: the API's future (store calls) is several KiB; inline, it would size every
        // connection's task, WebSocket sessions included.
        p if p == "/api" || p.starts_with("/api/") => {
            Box::pin(api::handle(&ctx.registry, &ctx.token, req)).await
        }
        _ => match req.method.as_str() {
            "GET" | "HEAD" => {
                if req.path == bundle::MANIFEST_PATH {
                    let body = ctx.bundle.manifest_json().to_vec();
                    Response::new(200, "application/json", body)
                } else {
                    match bundle::page_for(&req.path).and_then(|p| ctx.bundle.page(p)) {
                        Some(page) => Response::new(200, "text/html; charset=utf-8", page.to_vec()),
                        None => Box::pin(http::static_file(&ctx.web, &req.path)).await,
                    }
                }
            }
            _ => Response::error(405, "method not allowed").with_header("Allow", "GET, HEAD"),
        },
    };
    Routed::Response(resp)
}

/// `GET /healthz`: 200 and `{"relay": ID, "studies": [IDS RUNNING HERE]}`, or 503 while the
/// relay shuts down (a load balancer's health check).
fn healthz(ctx: &Handler) -> Response {
    let registry = &ctx.registry;
    let studies: Vec<String> = registry.list().iter().map(|h| h.id().to_string()).collect();
    let body = serde_json::json!({
        "relay": registry.leases().map(|l| l.owner()).unwrap_or(crate::store::LOCAL_OWNER),
        "studies": studies,
        "status": if registry.is_draining() { "shutting_down" } else { "ok" },
    });
    let status = if registry.is_draining() { 503 } else { 200 };
    Response::json(status, &body).with_header("Cache-Control", "no-store")
}

/// The `study` parameter of a query string (`/ws?study=ID`), if present and not empty.
pub fn study_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "study")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Upgrades the connection to `socket` (or refuses the upgrade) and runs its session.
pub(crate) async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Handler>,
    socket_kind: Socket,
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
    if socket_kind == Socket::Patient {
        let study = study_param(req.query.as_deref()).map(str::to_owned);
        ws::patient_session(
            socket,
            ctx.registry.clone(),
            ctx.limits,
            ctx.closing.clone(),
            study,
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

#[cfg(test)]
mod tests {
    use super::study_param;

    #[test]
    fn the_study_parameter() {
        assert_eq!(study_param(Some("study=height")), Some("height"));
        assert_eq!(study_param(Some("x=1&study=a-b")), Some("a-b"));
        assert_eq!(study_param(Some("study=")), None);
        assert_eq!(study_param(Some("studies=a")), None);
        assert_eq!(study_param(None), None);
    }
}
