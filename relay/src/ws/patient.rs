//! The patient socket (`/ws`): decodes frames with the core's strict decoder and hands each
//! message to the study the core's [`Membership`] routes it to. The session keeps no protocol
//! rule of its own: which study it belongs to changes only by the core's decisions (its
//! routing of a `join` or `leave`, and the study's attach / detach outputs).
//!
//! A socket opened as `/ws?study=ID` belongs to that study only (the core's
//! [`Membership::bound`]). With several relays (PostgreSQL), a study must run here before a
//! patient can join it: the session asks [`Registry::acquire`] (which may take the study's
//! lease) and, if another relay runs it, closes with 1013 "try again later"; it closes the
//! same way when the study stops here because its lease was lost.

use std::sync::Arc;

use cohort_core::error::ProtocolError;
use cohort_core::message::{ErrorMsg, PatientToRelay, RelayToPatient};
use cohort_core::protocol::{Membership, PeerId, Route};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, info, warn};

use super::{
    BadFrames, PING_EVERY, RateLimit, SessionLimits, close_with, on_read_error, send, to_message,
};
use crate::registry::{Acquired, Outbound, PEER_QUEUE, PeerLink, Registry, StudyCmd, StudyHandle};

/// Close reason when another relay runs the study (close code 1013, "try again later").
pub const ELSEWHERE: &str = "study runs on another relay; try again later";

/// Whether this session may go on with `study`: `Some(handle)` to watch (it runs here),
/// `None` if it is unknown (a join is then refused by the core), `Err(())` if the client
/// must try again later.
async fn acquire(registry: &Registry, study: &str) -> Result<Option<StudyHandle>, ()> {
    if registry.leases().is_none() {
        return Ok(None);
    }
    // Boxed: taking a lease awaits the store (several KiB of future), which would otherwise
    // size every session's task; it only runs with several relays, once per join.
    match Box::pin(registry.acquire(study)).await {
        Acquired::Local(h) => Ok(Some(h)),
        Acquired::Unknown => Ok(None),
        Acquired::Elsewhere | Acquired::Unavailable => Err(()),
    }
}

async fn stopped(watched: &Option<StudyHandle>) {
    match watched {
        Some(h) => h.stopped().await,
        None => std::future::pending().await,
    }
}

fn refusal(e: &ProtocolError) -> RelayToPatient {
    RelayToPatient::Error(ErrorMsg::refusing(e))
}

/// Runs a patient connection until it closes.
pub async fn patient_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    registry: Arc<Registry>,
    limits: SessionLimits,
    mut closing: watch::Receiver<bool>,
    study: Option<String>,
) {
    let peer = registry.peer_id();
    let (tx, mut rx) = mpsc::channel(PEER_QUEUE);
    let kick = Arc::new(Notify::new());
    let link = PeerLink {
        tx,
        kick: kick.clone(),
    };
    let mut at: Membership<StudyHandle> = match &study {
        Some(s) => Membership::bound(s),
        None => Membership::new(),
    };
    let wt = limits.write_timeout;
    // The study this session depends on (with leases): if it stops here, the client retries.
    let mut watched = None;
    if let Some(s) = &study {
        match acquire(&registry, s).await {
            Ok(h) => watched = h,
            Err(()) => {
                info!(peer = peer.0, study = %s, "study runs elsewhere; client told to retry");
                let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Again, ELSEWHERE))
                    .await;
                return;
            }
        }
    }
    let mut bad = BadFrames::default();
    let mut rate = RateLimit::new(limits.messages_per_second);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    info!(peer = peer.0, "patient connected");
    loop {
        tokio::select! {
            // What the study queued first: a round's result is queued together with the
            // detach that ends its membership, and a patient that answers the result with
            // its next `join` must find the membership ended (else: "already joined").
            biased;
            out = rx.recv() => {
                let Some(out) = out else { break };
                match out {
                    Outbound::Message(msg) => {
                        if matches!(*msg, RelayToPatient::Error(_)) {
                            // The study refused one of this connection's messages.
                            if !bad.refuse(&mut ws, &msg, &limits, peer.0).await {
                                break;
                            }
                        } else if !send(&mut ws, to_message(msg.encode()), wt, peer.0).await {
                            break;
                        }
                    }
                    // Progress (a join accepted, a round over): the budget starts over.
                    Outbound::Frame(frame) => {
                        if !send(&mut ws, frame, wt, peer.0).await {
                            break;
                        }
                    }
                    Outbound::Attached(study) => {
                        if at.attached(&study) {
                            bad.reset();
                        }
                    }
                    Outbound::Detached(study) => {
                        if at.detached(&study) {
                            bad.reset();
                        }
                    }
                }
            }
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
                    let reply = refusal(&ProtocolError::RateLimited);
                    let _ = send(&mut ws, to_message(reply.encode()), wt, peer.0).await;
                    let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Policy, "too many messages")).await;
                    break;
                }
                let decoded = match frame {
                    Message::Text(t) => PatientToRelay::decode_with_limit(&t, limits.max_message_bytes)
                        .map_err(ProtocolError::Decode),
                    Message::Binary(b) => PatientToRelay::decode_binary_with_limit(&b, limits.max_message_bytes)
                        .map_err(ProtocolError::Decode),
                    // Pings are answered by tungstenite; a close is answered on the next read.
                    _ => continue,
                };
                if let Ok(PatientToRelay::Join(j)) = &decoded
                    && watched.is_none()
                    && at.bound_study().is_none_or(|b| b == j.study)
                {
                    match acquire(&registry, &j.study).await {
                        Ok(h) => watched = h,
                        Err(()) => {
                            info!(peer = peer.0, "study runs elsewhere; client told to retry");
                            let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Again, ELSEWHERE)).await;
                            break;
                        }
                    }
                }
                let reply = match decoded {
                    Ok(msg) => route(&registry, &mut at, peer, msg, &link).await,
                    Err(e) => {
                        if bad.is_first() {
                            warn!(peer = peer.0, error = %e, "undecodable message");
                        } else {
                            debug!(peer = peer.0, error = %e, "undecodable message");
                        }
                        Some(refusal(&e))
                    }
                };
                if let Some(reply) = reply
                    && !bad.refuse(&mut ws, &reply, &limits, peer.0).await
                {
                    break;
                }
            }
            () = stopped(&watched) => {
                // The study stopped here: lease lost (retry, another relay runs it next) or
                // the relay is shutting down. Deliver what it queued first.
                while let Ok(out) = rx.try_recv() {
                    let frame = match out {
                        Outbound::Message(msg) => to_message(msg.encode()),
                        Outbound::Frame(frame) => frame,
                        _ => continue,
                    };
                    if !send(&mut ws, frame, wt, peer.0).await {
                        break;
                    }
                }
                let (code, why) = if registry.is_draining() {
                    (CloseCode::Away, "relay shutting down")
                } else {
                    (CloseCode::Again, ELSEWHERE)
                };
                let _ = tokio::time::timeout(wt, close_with(&mut ws, code, why)).await;
                break;
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
                    let frame = match out {
                        Outbound::Message(msg) => to_message(msg.encode()),
                        Outbound::Frame(frame) => frame,
                        _ => continue,
                    };
                    if !send(&mut ws, frame, wt, peer.0).await {
                        break;
                    }
                }
                let _ = tokio::time::timeout(wt, close_with(&mut ws, CloseCode::Away, "relay shutting down")).await;
                break;
            }
        }
    }
    if let Some(h) = at.take() {
        h.send(StudyCmd::Disconnect { peer }).await;
    }
    info!(peer = peer.0, "patient disconnected");
}

/// Hands one decoded message to the study the core routes it to; returns the reply to send
/// at once if it goes nowhere.
async fn route(
    registry: &Registry,
    at: &mut Membership<StudyHandle>,
    peer: PeerId,
    msg: PatientToRelay,
    link: &PeerLink,
) -> Option<RelayToPatient> {
    let kind = msg.kind();
    match at.route(&msg, |id| registry.get(id)) {
        Route::Refuse(reply) => {
            info!(
                peer = peer.0,
                kind, "message refused by the connection's membership"
            );
            Some(RelayToPatient::Error(reply))
        }
        Route::Study(h) => {
            let cmd = StudyCmd::Patient {
                peer,
                msg,
                link: link.clone(),
            };
            if h.send(cmd).await {
                None
            } else {
                Some(at.unavailable())
            }
        }
    }
}
