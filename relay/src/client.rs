//! The native patient: a WSS client (rustls, verifying the relay against a given CA) driving
//! the core's [`Patient`] machine through one round.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cohort_core::answer::Answers;
use cohort_core::decimal::Decimal;
use cohort_core::error::{AnswerError, DecodeError, ErrorCode, ProtocolError, ValueError};
use cohort_core::message::{AbandonReason, PatientToRelay, RelayToPatient, RoundResult, Wire};
use cohort_core::protocol::{Patient, PatientEvent};
use cohort_core::roster::SafetyCode;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::clock::Clock;
use crate::tls::{self, TlsSetupError};

/// How long connecting (TCP, TLS and WebSocket handshakes) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message accepted from the relay.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// What to do.
#[derive(Clone)]
pub struct PatientOptions {
    /// The relay's WebSocket URL, `wss://HOST:PORT/ws`. A bare `/ws` gets `?study=ID` added
    /// (see [`study_url`]) so that a load balancer can route by study.
    pub relay: String,
    /// PEM file of the CA(s) to trust for the relay's certificate.
    pub ca: PathBuf,
    /// Study id.
    pub study: String,
    /// The value of a one-question study, as typed (e.g. `"172.5"`); unused when `answers`
    /// is set.
    pub value: String,
    /// The answers to a questionnaire (`--answer ID=VALUE`, `--skip ID`), checked by the core
    /// against the study's questions from the relay's welcome. `None`: answer `value`.
    pub answers: Option<Answers>,
    /// Invite code, for studies that need one.
    pub invite: Option<String>,
    /// Leave right after sending the shares (for dropout tests).
    pub drop_after_shares: bool,
    /// Give up when the relay is silent this long while a round is under way.
    pub timeout: Duration,
    /// Keep a copy of every frame sent (for tests that check what the relay saw).
    pub record_frames: bool,
    /// Keep reconnecting this long (every [`RETRY_EVERY`]) while the relay answers "try again
    /// later" (close code 1013 or HTTP 503: another relay runs the study, or is taking it
    /// over). Zero: never retry.
    pub retry_for: Duration,
}

/// Pause between two attempts when the relay says "try again later".
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// `relay` with `?study=STUDY` added when it is a bare `.../ws` URL (no query); unchanged
/// otherwise.
pub fn study_url(relay: &str, study: &str) -> String {
    if !relay.contains('?') && relay.ends_with("/ws") {
        format!("{relay}?study={study}")
    } else {
        relay.to_owned()
    }
}

impl std::fmt::Debug for PatientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientOptions")
            .field("relay", &self.relay)
            .field("ca", &self.ca)
            .field("study", &self.study)
            .field("drop_after_shares", &self.drop_after_shares)
            .finish_non_exhaustive()
    }
}

impl PatientOptions {
    /// Options with defaults: no invite, stay to the end, 120 s timeout, no recording.
    pub fn new(relay: &str, ca: impl Into<PathBuf>, study: &str, value: &str) -> PatientOptions {
        PatientOptions {
            relay: relay.into(),
            ca: ca.into(),
            study: study.into(),
            value: value.into(),
            answers: None,
            invite: None,
            drop_after_shares: false,
            timeout: Duration::from_secs(120),
            record_frames: false,
            retry_for: Duration::from_secs(30),
        }
    }
}

impl PatientOptions {
    /// Options for answering a questionnaire, with the defaults of [`PatientOptions::new`].
    pub fn with_answers(
        relay: &str,
        ca: impl Into<PathBuf>,
        study: &str,
        answers: Answers,
    ) -> PatientOptions {
        PatientOptions {
            answers: Some(answers),
            ..PatientOptions::new(relay, ca, study, "")
        }
    }
}

/// How the round ended for this patient.
#[derive(Clone, Debug, PartialEq)]
pub enum PatientOutcome {
    /// The round completed.
    Completed(Box<RoundResult>),
    /// The patient left after sending its shares (`drop_after_shares`).
    LeftAfterShares {
        /// Round id.
        round: u64,
    },
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct PatientReport {
    /// How it ended.
    pub outcome: PatientOutcome,
    /// The round's safety code, as this patient computed it.
    pub safety_code: Option<SafetyCode>,
    /// Threshold of the round.
    pub threshold: Option<u32>,
    /// Whether the core recomputed and checked the result on this device
    /// ([`PatientEvent::ResultChecked`]); the result's statistics are then its own computation.
    pub checked_on_device: bool,
    /// Every frame sent, if recording was asked for.
    pub sent_frames: Vec<Wire>,
}

/// Why a run failed. Never contains the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatientError {
    /// The value is malformed or does not fit the study.
    #[error("value rejected: {0}")]
    Value(ValueError),
    /// The answers do not fit the study's questionnaire (names the question, never the answer).
    #[error("answers rejected: {0}")]
    Answer(AnswerError),
    /// The relay URL is unusable.
    #[error("invalid relay URL: {0}")]
    Url(String),
    /// The CA file is unusable.
    #[error("cannot use the CA file: {0}")]
    Ca(#[from] TlsSetupError),
    /// No TCP connection to the relay.
    #[error("cannot reach the relay at {addr}: {reason}")]
    Unreachable {
        /// Host and port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The relay's certificate did not verify against the CA.
    #[error("the relay's certificate was not accepted ({0}); check --ca")]
    Certificate(String),
    /// The TLS or WebSocket handshake failed otherwise.
    #[error("handshake with the relay failed: {0}")]
    Handshake(String),
    /// The relay refused a message (unknown study, wrong invite, study full, ...).
    #[error("the relay refused: {message} ({code})")]
    Refused {
        /// Code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The round was abandoned; nothing was revealed.
    #[error("round {round} was abandoned: {message}")]
    Abandoned {
        /// Round id.
        round: u64,
        /// Why.
        reason: AbandonReason,
        /// In words.
        message: String,
    },
    /// This patient refused to continue (e.g. a roster below the minimum cohort).
    #[error("this patient refused the round: {0}")]
    PatientRefused(ProtocolError),
    /// The relay sent something undecodable.
    #[error("the relay sent an undecodable message: {0}")]
    BadMessage(DecodeError),
    /// The connection closed or failed before the round ended.
    #[error("the connection to the relay was lost: {0}")]
    Connection(String),
    /// The relay asked to try again later (close code 1013 or HTTP 503): the study runs on
    /// another relay, which the load balancer will reach, or is being taken over.
    #[error("the relay asks to try again later: {0}")]
    TryAgainLater(String),
}

impl PatientError {
    /// The process exit code for this error (see docs/API.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            PatientError::Value(_) | PatientError::Answer(_) => 4,
            PatientError::Refused { .. } | PatientError::PatientRefused(_) => 3,
            PatientError::Abandoned { .. } => 5,
            PatientError::Url(_)
            | PatientError::Ca(_)
            | PatientError::Unreachable { .. }
            | PatientError::Certificate(_)
            | PatientError::Handshake(_)
            | PatientError::TryAgainLater(_) => 6,
            PatientError::BadMessage(_) | PatientError::Connection(_) => 1,
        }
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// Classifies a TLS connect error: certificate problems are reported as such.
fn tls_error(e: std::io::Error) -> PatientError {
    if let Some(rustls::Error::InvalidCertificate(c)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return PatientError::Certificate(format!("{c:?}"));
    }
    PatientError::Handshake(e.to_string())
}

/// Parses `wss://HOST:PORT/...` into (host without brackets, port).
pub fn parse_relay_url(url: &str) -> Result<(String, u16), PatientError> {
    let uri: Uri = url.parse().map_err(|_| PatientError::Url(url.into()))?;
    if uri.scheme_str() != Some("wss") {
        return Err(PatientError::Url(format!(
            "{url}: must start with wss:// (TLS is required)"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| PatientError::Url(format!("{url}: no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// A WebSocket over TLS to the relay.
pub type WsClient = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens a WSS connection to `url` (e.g. `wss://127.0.0.1:8443/ws` or `.../ws/dashboard`),
/// verifying the relay's certificate against the CA certificates in `ca`.
pub async fn connect(url: &str, ca: &Path) -> Result<WsClient, PatientError> {
    let (host, port) = parse_relay_url(url)?;
    let config = tls::client_config(ca)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| PatientError::Url(format!("{url}: bad host name")))?;
    let addr = format!("{host}:{port}");
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(PatientError::Unreachable {
                addr,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(PatientError::Unreachable {
                addr,
                reason: "timed out".into(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TlsConnector::from(config).connect(server_name, tcp),
    )
    .await
    .map_err(|_| PatientError::Handshake("TLS handshake timed out".into()))?
    .map_err(tls_error)?;
    let ws_config = crate::ws::config(MAX_MESSAGE_BYTES);
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config)),
    )
    .await
    .map_err(|_| PatientError::Handshake("WebSocket handshake timed out".into()))?
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503 => {
            PatientError::TryAgainLater("HTTP 503".into())
        }
        e => PatientError::Handshake(e.to_string()),
    })?;
    Ok(ws)
}

/// A refusal by this patient's core: a value or answers that do not fit the study are the
/// user's to fix (exit 4); anything else is a refused round.
fn refused(e: ProtocolError) -> PatientError {
    match e {
        ProtocolError::Value(v) => PatientError::Value(v),
        ProtocolError::Answer(a) => PatientError::Answer(a),
        e => PatientError::PatientRefused(e),
    }
}

fn fresh_rng() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random generator failed");
    ChaCha20Rng::from_seed(seed)
}

/// Joins the study, runs one round and returns its result. `on_event` sees every event of the
/// core's Patient (progress, safety code). While the relay says "try again later" (before
/// the patient joined anything), it reconnects with a fresh key for up to
/// [`PatientOptions::retry_for`].
pub async fn run_patient(
    opts: &PatientOptions,
    on_event: &mut (dyn FnMut(&PatientEvent) + Send),
) -> Result<PatientReport, PatientError> {
    let give_up = std::time::Instant::now() + opts.retry_for;
    loop {
        match run_once(opts, on_event).await {
            Err(PatientError::TryAgainLater(why)) if std::time::Instant::now() < give_up => {
                on_event(&PatientEvent::RelayError {
                    code: ErrorCode::Unavailable,
                    message: format!("try again later: {why}"),
                });
                tokio::time::sleep(RETRY_EVERY).await;
            }
            other => return other,
        }
    }
}

async fn run_once(
    opts: &PatientOptions,
    on_event: &mut (dyn FnMut(&PatientEvent) + Send),
) -> Result<PatientReport, PatientError> {
    let answers = match &opts.answers {
        Some(a) => a.clone(),
        None => Answers::single(opts.value.parse::<Decimal>().map_err(PatientError::Value)?),
    };
    let mut ws = connect(&study_url(&opts.relay, &opts.study), &opts.ca).await?;

    let clock = Clock::new();
    let mut rng = fresh_rng();
    let mut patient = Patient::with_answers(
        clock.now_ms(),
        &opts.study,
        answers,
        None,
        opts.invite.clone(),
        &mut rng,
    )
    .map_err(refused)?;
    patient.set_timeout(clock.now_ms(), Some(opts.timeout.as_millis() as u64));
    let mut report = PatientReport {
        outcome: PatientOutcome::LeftAfterShares { round: 0 },
        safety_code: None,
        threshold: None,
        checked_on_device: false,
        sent_frames: Vec::new(),
    };
    let lost = |e: tokio_tungstenite::tungstenite::Error| PatientError::Connection(e.to_string());
    loop {
        while let Some(msg) = patient.poll_output() {
            let shares_round = match &msg {
                PatientToRelay::Shares(s) => Some(s.round),
                _ => None,
            };
            let wire = msg.encode();
            if opts.record_frames {
                report.sent_frames.push(wire.clone());
            }
            ws.send(crate::ws::to_message(wire)).await.map_err(lost)?;
            if let (Some(round), true) = (shares_round, opts.drop_after_shares) {
                // Drain the events so the caller still sees the safety code.
                while let Some(ev) = patient.poll_event() {
                    on_event(&ev);
                    if let PatientEvent::RosterFrozen {
                        safety_code,
                        threshold,
                        ..
                    } = ev
                    {
                        report.safety_code = Some(safety_code);
                        report.threshold = Some(threshold);
                    }
                }
                let _ = ws.close(None).await;
                report.outcome = PatientOutcome::LeftAfterShares { round };
                return Ok(report);
            }
        }
        let mut done = None;
        while let Some(ev) = patient.poll_event() {
            on_event(&ev);
            match ev {
                PatientEvent::RosterFrozen {
                    safety_code,
                    threshold,
                    ..
                } => {
                    report.safety_code = Some(safety_code);
                    report.threshold = Some(threshold);
                }
                PatientEvent::ResultChecked { .. } => report.checked_on_device = true,
                PatientEvent::Completed(r) => done = Some(Ok(r)),
                PatientEvent::Abandoned { round, reason } => {
                    done = Some(Err(PatientError::Abandoned {
                        round,
                        message: reason.to_string(),
                        reason,
                    }));
                }
                // A refused join ends the patient; a refusal later (a message that crossed a
                // deadline on the wire) does not: the hospital's deadlines settle the round.
                PatientEvent::RelayError { code, message } if patient.is_finished() => {
                    done = Some(Err(PatientError::Refused {
                        code: code_name(code),
                        message,
                    }));
                }
                PatientEvent::Refused(e) => done = Some(Err(refused(e))),
                _ => {}
            }
        }
        if let Some(done) = done {
            // Send what the machine queued last (e.g. its `leave`), then close politely.
            while let Some(msg) = patient.poll_output() {
                let _ = ws.send(crate::ws::to_message(msg.encode())).await;
            }
            let _ = ws.close(None).await;
            let drain = async { while let Some(Ok(_)) = ws.next().await {} };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            let result = done?;
            report.outcome = PatientOutcome::Completed(Box::new(result));
            return Ok(report);
        }
        let deadline = patient.poll_timeout().map(|t| clock.instant_at(t));
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = ws.next() => match frame {
                None => return Err(PatientError::Connection("the relay closed the connection".into())),
                Some(Err(e)) => return Err(lost(e)),
                Some(Ok(Message::Text(t))) => {
                    let msg = RelayToPatient::decode_with_limit(&t, MAX_MESSAGE_BYTES)
                        .map_err(PatientError::BadMessage)?;
                    // Fatal errors surface as `Refused` events; others (a stale message) are
                    // ignored, as the machine's state is unchanged.
                    let _ = patient.handle(clock.now_ms(), msg);
                }
                Some(Ok(Message::Binary(b))) => {
                    let msg = RelayToPatient::decode_binary_with_limit(&b, MAX_MESSAGE_BYTES)
                        .map_err(PatientError::BadMessage)?;
                    let _ = patient.handle(clock.now_ms(), msg);
                }
                Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::Again => {
                    return Err(PatientError::TryAgainLater(f.reason.to_string()));
                }
                Some(Ok(Message::Close(_))) => {
                    return Err(PatientError::Connection("the relay closed the connection".into()));
                }
                Some(Ok(_)) => {}
            },
            () = timer => patient.handle_timeout(clock.now_ms()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_urls() {
        assert_eq!(
            study_url("wss://h:1/ws", "height"),
            "wss://h:1/ws?study=height"
        );
        assert_eq!(
            study_url("wss://h:1/ws?study=x", "y"),
            "wss://h:1/ws?study=x"
        );
        assert_eq!(study_url("wss://h:1/other", "y"), "wss://h:1/other");
    }

    #[test]
    fn relay_urls() {
        assert_eq!(
            parse_relay_url("wss://127.0.0.1:8443/ws").unwrap(),
            ("127.0.0.1".to_string(), 8443)
        );
        assert_eq!(
            parse_relay_url("wss://[::1]:9/ws").unwrap(),
            ("::1".to_string(), 9)
        );
        assert_eq!(
            parse_relay_url("wss://localhost/ws").unwrap(),
            ("localhost".to_string(), 443)
        );
        assert!(matches!(
            parse_relay_url("ws://127.0.0.1:8443/ws"),
            Err(PatientError::Url(_))
        ));
        assert!(parse_relay_url("not a url").is_err());
    }
}
