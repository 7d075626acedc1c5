//! WebSocket sessions on the shared TLS port: the transport pieces both sessions share
//! (limits, upgrade, sending with a timeout, closing, the bad-frame budget), the patient
//! socket `/ws` ([`patient`]) and the dashboard feed `/ws/dashboard` ([`dashboard`]).
//! Frames are never logged.

pub mod dashboard;
pub mod patient;

pub use dashboard::dashboard_session;
pub use patient::patient_session;

use std::time::Duration;

use cohort_core::error::ErrorCode;
use cohort_core::message::{RelayToPatient, Wire};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tracing::{debug, warn};

use crate::http::{Request, Response};

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
pub(crate) async fn send<S: AsyncRead + AsyncWrite + Unpin>(
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
pub(crate) async fn on_read_error<S: AsyncRead + AsyncWrite + Unpin>(
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

/// Sends a close frame and lets the peer answer it, briefly.
/// The WebSocket message for one encoded wire message: text for control messages, binary for
/// the bulk frames.
pub fn to_message(wire: Wire) -> Message {
    match wire {
        Wire::Text(t) => Message::text(t),
        Wire::Binary(b) => Message::binary(b),
    }
}

pub(crate) async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(
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

/// Undecodable or refused messages on one connection since its last progress (a join
/// accepted, a round ended): more than [`MAX_BAD_FRAMES`] close it.
#[derive(Debug, Default)]
pub(crate) struct BadFrames(u32);

impl BadFrames {
    /// Progress: the budget starts over.
    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }

    /// Sends the `error` reply for one bad or refused message and counts it; `false` if the
    /// connection must end (write failed, or the budget is spent and a close was sent).
    pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        reply: &RelayToPatient,
        limits: &SessionLimits,
        peer: u64,
    ) -> bool {
        if !send(ws, to_message(reply.encode()), limits.write_timeout, peer).await {
            return false;
        }
        self.0 += 1;
        if self.0 > MAX_BAD_FRAMES {
            let undecodable =
                matches!(reply, RelayToPatient::Error(e) if e.code == ErrorCode::BadMessage);
            let reason = if undecodable {
                "too many bad messages"
            } else {
                "too many refused messages"
            };
            warn!(peer, reason, "closing");
            let close = close_with(ws, CloseCode::Policy, reason);
            let _ = tokio::time::timeout(limits.write_timeout, close).await;
            return false;
        }
        true
    }

    /// Whether this is the first bad message since the last progress (logged louder).
    pub(crate) fn is_first(&self) -> bool {
        self.0 == 0
    }
}
