//! WebSocket sessions on the shared TLS port: the patient socket (`/ws`) and the dashboard
//! feed (`/ws/dashboard`).
//!
//! A patient session decodes frames with the core's strict decoder and routes them to the
//! study the connection joined; it holds no protocol state beyond *which* study that is
//! (learnt from the study's own replies: `welcome` attaches, a refused join, `result` or
//! `abandoned` detaches). Frames are never logged.

use std::sync::Arc;
use std::time::Duration;

use cohort_core::error::{ErrorCode, ProtocolError};
use cohort_core::message::{ErrorMsg, PROTOCOL_VERSION, PatientToRelay, RelayToPatient, Wire};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tracing::{debug, info, warn};

use crate::http::{Request, Response};
use crate::registry::{Outbound, PEER_QUEUE, PeerLink, Registry, StudyCmd, StudyHandle};
use crate::token::AdminToken;
use crate::views::DashboardMsg;

/// Default largest WebSocket message (and frame), in bytes: the core decoder's own limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = cohort_core::message::MAX_MESSAGE_BYTES;

/// Default most messages (frames of any kind) per second per connection, on average.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 20;

/// Close code for a frame that is not valid UTF-8 (RFC 6455).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// Transport limits of one WebSocket session.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Largest message accepted, in bytes (text after decoding).
    pub max_message_bytes: usize,
    /// Average frames per second allowed (bursts of twice that); 0 = unlimited.
    pub messages_per_second: u32,
    /// Longest a single write may take before the client counts as not reading.
    pub write_timeout: Duration,
    /// How long a dashboard has to authenticate.
    pub auth_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            messages_per_second: DEFAULT_MESSAGES_PER_SECOND,
            write_timeout: Duration::from_secs(30),
            auth_timeout: AUTH_TIMEOUT,
        }
    }
}

/// A token bucket: `rate` frames per second on average, bursts of `2 × rate`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl RateLimit {
    /// A full bucket; `rate` 0 never limits.
    pub fn new(rate: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate),
            tokens: f64::from(rate) * 2.0,
            last: tokio::time::Instant::now(),
        }
    }

    /// Takes one token; `false` if the bucket is empty.
    pub fn allow(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = tokio::time::Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a session stops reading: a transport-level refusal, with its close code and reason.
fn read_failure(e: &tokio_tungstenite::tungstenite::Error) -> Option<(CloseCode, &'static str)> {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Capacity(_) => Some((CloseCode::Size, "message too big")),
        E::Utf8(_) => Some((CloseCode::from(CLOSE_INVALID_PAYLOAD), "invalid UTF-8")),
        E::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => None,
        E::Protocol(_) => Some((CloseCode::Protocol, "WebSocket protocol error")),
        _ => None,
    }
}

/// Sends one message within the write timeout; `false` if the connection must end.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    msg: Message,
    limit: Duration,
    peer: u64,
) -> bool {
    match tokio::time::timeout(limit, ws.send(msg)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            warn!(peer, "write timed out (client not reading); closing");
            false
        }
    }
}

/// Handles a failed read: one log line, and a close frame for a transport refusal.
async fn on_read_error<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    e: &tokio_tungstenite::tungstenite::Error,
    peer: u64,
    limits: &SessionLimits,
) {
    match read_failure(e) {
        Some((code, reason)) => {
            warn!(peer, close = u16::from(code), error = %e, "bad WebSocket frame; closing");
            let _ = tokio::time::timeout(limits.write_timeout, close_with(ws, code, reason)).await;
        }
        None => debug!(peer, error = %e, "socket error"),
    }
}

/// How often an idle socket is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(25);

/// How long a dashboard has to authenticate.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Undecodable or refused messages tolerated on one connection (between two joins or
/// results) before it is closed.
pub const MAX_BAD_FRAMES: u32 = 16;

/// The close code sent to a dashboard with a wrong token.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

/// How much a WebSocket reads from the TLS stream at a time. tungstenite's default (128 KiB)
/// is zero-filled before every read, which made it the relay's largest CPU cost with large
/// frames and kept 128 KiB resident per idle connection (cohort-bench, docs/BENCHMARKS.md).
/// A large message still gets a buffer of its own size when its header arrives.
pub const READ_BUFFER_BYTES: usize = 4096;

/// The WebSocket configuration with message and frame size limits.
pub fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Checks an upgrade request and returns the `101 Switching Protocols` head to write, or the
/// error response to send instead.
pub fn accept(req: &Request) -> Result<String, Response> {
    if !req.is_websocket_upgrade() {
        return Err(
            Response::error(426, "this endpoint needs a WebSocket upgrade")
                .with_header("Upgrade", "websocket"),
        );
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(Response::error(426, "WebSocket version 13 required")
            .with_header("Sec-WebSocket-Version", "13"));
    }
    let Some(key) = req.header("sec-websocket-key").filter(|k| !k.is_empty()) else {
        return Err(Response::error(400, "missing Sec-WebSocket-Key"));
    };
    // Browsers always send Origin; a page from another origin may not open our sockets.
    if let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) {
        let same = origin
            .strip_prefix("https://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(Response::error(403, "cross-origin WebSocket refused"));
        }
    }
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    ))
}

/// The WebSocket message for one encoded wire message: text for control messages, binary for
/// the bulk frames.
pub fn to_message(wire: Wire) -> Message {
    match wire {
        Wire::Text(t) => Message::text(t),
        Wire::Binary(b) => Message::binary(b),
    }
}

fn error_frame(e: &ProtocolError) -> Message {
    error_frame_raw(e.code(), e.to_string())
}

fn error_frame_raw(code: ErrorCode, message: String) -> Message {
    let msg = RelayToPatient::Error(ErrorMsg {
        v: PROTOCOL_VERSION,
        code,
        message,
    });
    to_message(msg.encode())
}

async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    if ws.close(Some(frame)).await.is_ok() {
        // Let the peer answer the close, briefly.
        let drain = async { while let Some(Ok(_)) = ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}

/// Which study a patient connection belongs to.
#[derive(Default)]
struct Attachment {
    study: Option<StudyHandle>,
    /// A join was forwarded and its answer has not arrived yet.
    joining: bool,
}

impl Attachment {
    fn detach(&mut self) -> Option<StudyHandle> {
        self.joining = false;
        self.study.take()
    }

    /// Follows the study's replies: `welcome` confirms the join; a refused join, `result` or
    /// `abandoned` ends the membership.
    fn observe(&mut self, out: &Outbound) {
        let ours = self.study.as_ref().is_some_and(|h| **h.id() == *out.study);
        if !ours {
            return;
        }
        match &*out.msg {
            RelayToPatient::Welcome(_) => self.joining = false,
            RelayToPatient::Error(_) if self.joining => {
                self.detach();
            }
            RelayToPatient::Result(_) | RelayToPatient::Abandoned(_) => {
                self.detach();
            }
            _ => {}
        }
    }
}

/// Runs a patient connection until it closes.
pub async fn patient_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    registry: Arc<Registry>,
    limits: SessionLimits,
    mut closing: watch::Receiver<bool>,
) {
    let peer = registry.peer_id();
    let (tx, mut rx) = mpsc::channel(PEER_QUEUE);
    let kick = Arc::new(Notify::new());
    let link = PeerLink {
        tx,
        kick: kick.clone(),
    };
    let mut at = Attachment::default();
    let mut bad = 0u32;
    let mut rate = RateLimit::new(limits.messages_per_second);
    let wt = limits.write_timeout;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    info!(peer = peer.0, "patient connected");
    loop {
        tokio::select! {
            frame = ws.next() => {
                let frame = match frame {
                    None => break,
                    Some(Err(e)) => {
                        on_read_error(&mut ws, &e, peer.0, &limits).await;
                        break;
                    }
                    Some(Ok(f)) => f,
                };
                if !matches!(frame, Message::Close(_)) && !rate.allow() {
                    warn!(peer = peer.0, "too many messages; closing");
                    let reply = error_frame_raw(
                        ErrorCode::RateLimited,
                        "too many messages; slow down".into(),
                    );
                    let _ = send(&mut ws, reply, wt, peer.0).await;
                    let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Policy, "too many messages")).await;
                    break;
                }
                // Control messages are JSON text; the bulk messages are binary frames.
                let decoded = match &frame {
                    Message::Text(t) => PatientToRelay::decode_with_limit(t, limits.max_message_bytes),
                    Message::Binary(b) => PatientToRelay::decode_binary_with_limit(b, limits.max_message_bytes),
                    // Pings are answered by tungstenite; a close is answered on the next read.
                    _ => continue,
                };
                let msg = match decoded {
                    Ok(m) => m,
                    Err(e) => {
                        bad += 1;
                        if bad == 1 {
                            warn!(peer = peer.0, error = %e, "undecodable message");
                        } else {
                            debug!(peer = peer.0, error = %e, "undecodable message");
                        }
                        let reply = error_frame(&ProtocolError::Decode(e));
                        if !send(&mut ws, reply, wt, peer.0).await {
                            break;
                        }
                        if bad > MAX_BAD_FRAMES {
                            warn!(peer = peer.0, "too many bad messages; closing");
                            close_with(&mut ws, CloseCode::Policy, "too many bad messages").await;
                            break;
                        }
                        continue;
                    }
                };
                if let Some(reply) = route(&registry, &mut at, peer, msg, &link) {
                    bad += 1;
                    if !send(&mut ws, reply, wt, peer.0).await {
                        break;
                    }
                    if bad > MAX_BAD_FRAMES {
                        warn!(peer = peer.0, "too many refused messages; closing");
                        close_with(&mut ws, CloseCode::Policy, "too many refused messages").await;
                        break;
                    }
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                at.observe(&out);
                if matches!(*out.msg, RelayToPatient::Welcome(_) | RelayToPatient::Result(_)) {
                    // Progress: the budget for bad or refused messages starts over.
                    bad = 0;
                }
                let refused = matches!(*out.msg, RelayToPatient::Error(_));
                if !send(&mut ws, to_message(out.msg.encode()), wt, peer.0).await {
                    break;
                }
                if refused {
                    bad += 1;
                    if bad > MAX_BAD_FRAMES {
                        warn!(peer = peer.0, "too many refused messages; closing");
                        close_with(&mut ws, CloseCode::Policy, "too many refused messages").await;
                        break;
                    }
                }
            }
            () = kick.notified() => {
                let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Policy, "too slow")).await;
                break;
            }
            _ = ping.tick() => {
                if !send(&mut ws, Message::Ping(Default::default()), wt, peer.0).await {
                    break;
                }
            }
            _ = closing.changed() => {
                // Deliver what the studies queued (e.g. "abandoned: shutting down"), then go.
                while let Ok(out) = rx.try_recv() {
                    if !send(&mut ws, to_message(out.msg.encode()), wt, peer.0).await {
                        break;
                    }
                }
                let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Away, "relay shutting down")).await;
                break;
            }
        }
    }
    if let Some(h) = at.detach() {
        h.send(StudyCmd::Disconnect { peer });
    }
    info!(peer = peer.0, "patient disconnected");
}

/// Routes one decoded message; returns a reply to send at once if the connection itself
/// must refuse it.
fn route(
    registry: &Registry,
    at: &mut Attachment,
    peer: cohort_core::protocol::PeerId,
    msg: PatientToRelay,
    link: &PeerLink,
) -> Option<Message> {
    if let PatientToRelay::Join(j) = &msg {
        if at.study.is_some() {
            info!(peer = peer.0, "second join on one connection refused");
            return Some(error_frame(&ProtocolError::AlreadyJoined));
        }
        let Some(h) = registry.get(&j.study) else {
            info!(peer = peer.0, "join for an unknown study");
            return Some(error_frame(&ProtocolError::UnknownStudy));
        };
        let cmd = StudyCmd::Patient {
            peer,
            msg,
            link: link.clone(),
        };
        if !h.send(cmd) {
            return Some(error_frame_raw(
                ErrorCode::Unavailable,
                "the study is not running".into(),
            ));
        }
        at.study = Some(h);
        at.joining = true;
        return None;
    }
    let Some(h) = at.study.clone() else {
        info!(
            peer = peer.0,
            kind = msg.kind(),
            "round message before joining refused"
        );
        return Some(error_frame(&ProtocolError::WrongState {
            state: "not joined",
            got: msg.kind(),
        }));
    };
    let leave = matches!(msg, PatientToRelay::Leave(_));
    h.send(StudyCmd::Patient {
        peer,
        msg,
        link: link.clone(),
    });
    if leave {
        at.detach();
    }
    None
}

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
