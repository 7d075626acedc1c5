//! The dashboard feed (`/ws/dashboard`): authenticate with the admin token, then a status
//! snapshot and the live feed.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{info, warn};

use super::{
    CLOSE_UNAUTHORIZED, PING_EVERY, RateLimit, SessionLimits, close_with, on_read_error, send,
};
use crate::registry::Registry;
use crate::token::AdminToken;
use crate::views::DashboardMsg;

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum DashboardIn {
    Auth { token: String },
}

/// Runs a dashboard connection: authenticate, then snapshot and live feed.
pub async fn dashboard_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    registry: Arc<Registry>,
    token: AdminToken,
    limits: SessionLimits,
    mut closing: watch::Receiver<bool>,
) {
    let wt = limits.write_timeout;
    let first = tokio::time::timeout(limits.auth_timeout, ws.next()).await;
    let authed = match first {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<DashboardIn>(&t) {
            Ok(DashboardIn::Auth { token: given }) => token.verify(&given),
            Err(_) => false,
        },
        Ok(Some(Err(e))) => {
            on_read_error(&mut ws, &e, 0, &limits).await;
            return;
        }
        _ => false,
    };
    if !authed {
        info!("dashboard refused: unauthorized");
        let _ = tokio::time::timeout(
            wt,
            close_with(&mut ws, CloseCode::from(CLOSE_UNAUTHORIZED), "unauthorized"),
        )
        .await;
        return;
    }
    info!("dashboard connected");
    let mut feed = registry.subscribe();
    let mut rate = RateLimit::new(limits.messages_per_second);
    let snapshot = |studies| Message::text(DashboardMsg::Snapshot { studies }.to_json());
    if !send(&mut ws, snapshot(registry.statuses().await), wt, 0).await {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            item = feed.recv() => match item {
                Ok(text) => {
                    if !send(&mut ws, Message::text(text.to_string()), wt, 0).await {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if !send(&mut ws, snapshot(registry.statuses().await), wt, 0).await {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            frame = ws.next() => match frame {
                None => break,
                Some(Err(e)) => {
                    on_read_error(&mut ws, &e, 0, &limits).await;
                    break;
                }
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(_)) => {
                    if !rate.allow() {
                        warn!("dashboard: too many messages; closing");
                        let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Policy, "too many messages")).await;
                        break;
                    }
                }
            },
            _ = ping.tick() => {
                if !send(&mut ws, Message::Ping(Default::default()), wt, 0).await {
                    break;
                }
            }
            _ = closing.changed() => {
                let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Away, "relay shutting down")).await;
                break;
            }
        }
    }
    info!("dashboard disconnected");
}
