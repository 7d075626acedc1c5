//! Bad input against a running relay: raw TCP, raw TLS, hand-built WebSocket frames and
//! hostile JSON. After each class the same relay still runs a normal round, and a round of
//! another study that was in flight the whole time completes with the exact result.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cohort_core::message::{PatientToRelay, RelayToPatient, Wire};
use cohort_core::protocol::{Patient, PatientEvent};
use cohort_relay::client::WsClient;
use cohort_relay::clock::Clock;
use cohort_relay::ws::to_message;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

// These tests hand-craft and hold the frames of a round at fixed offsets, so their studies run
// without validity proofs; malformed proof frames are tested in core/tests/forging.rs
// (`malformed_proof_messages_are_refused_and_the_round_goes_on`) and core/tests/frames.rs.
const S: &str = "id=s,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10,proofs=off";
const OTHER: &str = "id=other,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10,proofs=off";
const SPARE: &str = "id=spare,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10,proofs=off";
const MAX_MSG: usize = 64 * 1024;

/// A relay with tight limits, so every limit is reachable quickly.
async fn relay() -> TestRelay {
    TestRelay::start_with(&[S, OTHER, SPARE], |c| {
        c.handshake_timeout = Duration::from_secs(2);
        c.write_timeout = Duration::from_secs(1);
        c.max_message_bytes = MAX_MSG;
    })
    .await
}

fn addr(t: &TestRelay) -> SocketAddr {
    t.relay.local_addr()
}

async fn tcp_from(t: &TestRelay, src: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.connect(addr(t)).await
}

async fn tls_from(t: &TestRelay, src: Option<IpAddr>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(t, src).await?;
    let config = cohort_relay::tls::client_config(&t.ca()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

async fn tls(t: &TestRelay) -> TlsStream<TcpStream> {
    tls_from(t, None).await.unwrap()
}

/// Reads until the peer closes (or fails); never hangs past [`LIMIT`].
async fn read_all<R: AsyncReadExt + Unpin>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, r.read_to_end(&mut out))
        .await
        .expect("the relay closed the connection");
    out
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Sends raw bytes over TLS and returns the status of the answer (None: closed unanswered).
/// Reads one whole response, or to the end of the connection.
async fn raw_https(t: &TestRelay, bytes: &[u8]) -> (Option<u16>, String) {
    let mut s = tls(t).await;
    s.write_all(bytes).await.unwrap();
    let fut = async {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(&raw) {
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= n + len {
                    return raw;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return raw,
                Ok(k) => raw.extend_from_slice(&chunk[..k]),
            }
        }
    };
    let raw = tokio::time::timeout(LIMIT, fut)
        .await
        .expect("an answer in time");
    (status_of(&raw), String::from_utf8_lossy(&raw).into_owned())
}

fn upgrade_head(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Opens `/ws` by hand and returns the stream right after the `101`.
async fn raw_ws(t: &TestRelay) -> TlsStream<TcpStream> {
    let mut s = tls(t).await;
    s.write_all(upgrade_head("/ws", "").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    assert_eq!(status_of(&head), Some(101));
    s
}

/// One client frame: `fin`, reserved bits, opcode, masked (as a client must) unless told.
fn frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    masked: bool,
    claimed: Option<u64>,
) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let len = claimed.unwrap_or(payload.len() as u64);
    let m = if masked { 0x80 } else { 0 };
    if len < 126 {
        f.push(m | len as u8);
    } else if len <= 0xffff {
        f.push(m | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    let key = [0x11, 0x22, 0x33, 0x44];
    if masked {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn text(payload: &str) -> Vec<u8> {
    frame(true, 0, 1, payload.as_bytes(), true, None)
}

/// Reads one server frame (servers never mask): (opcode, payload); None on EOF.
async fn read_frame(s: &mut TlsStream<TcpStream>) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => u64::from(s.read_u16().await.ok()?),
        127 => s.read_u64().await.ok()?,
        n => u64::from(n),
    };
    let mut p = vec![0u8; len as usize];
    s.read_exact(&mut p).await.ok()?;
    Some((h[0] & 0x0f, p))
}

/// Reads server frames until a close frame: (text frames seen, close code, close reason).
async fn until_close(s: &mut TlsStream<TcpStream>) -> (Vec<String>, Option<u16>, String) {
    let fut = async {
        let mut texts = Vec::new();
        loop {
            match read_frame(s).await {
                None => return (texts, None, String::new()),
                Some((1, p)) => texts.push(String::from_utf8(p).unwrap()),
                Some((8, p)) if p.len() >= 2 => {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    return (
                        texts,
                        Some(code),
                        String::from_utf8_lossy(&p[2..]).into_owned(),
                    );
                }
                Some((8, _)) => return (texts, None, String::new()),
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("close in time")
}

fn error_code(text: &str) -> String {
    match RelayToPatient::decode(text).unwrap() {
        RelayToPatient::Error(e) => serde_json::to_value(e.code)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A patient driven by hand: the core's machine, with its outgoing messages held back until
/// the test sends them (so a round can be kept in flight, or messages replayed or altered).
struct Manual {
    ws: WsClient,
    p: Patient,
    clock: Clock,
    held: Vec<PatientToRelay>,
    you: u32,
    round: u64,
}

impl Manual {
    async fn join(t: &TestRelay, study: &str, value: &str, seed: u64) -> Manual {
        let ws = cohort_relay::client::connect(&t.ws_url(), &t.ca())
            .await
            .unwrap();
        let clock = Clock::new();
        let p = Patient::new(
            clock.now_ms(),
            study,
            value.parse().unwrap(),
            None,
            None,
            &mut ChaCha20Rng::seed_from_u64(seed),
        )
        .unwrap();
        let mut m = Manual {
            ws,
            p,
            clock,
            held: Vec::new(),
            you: 0,
            round: 0,
        };
        m.collect();
        m.send_held().await;
        m
    }

    fn collect(&mut self) {
        while let Some(msg) = self.p.poll_output() {
            self.held.push(msg);
        }
    }

    async fn send_held(&mut self) -> Vec<Wire> {
        let mut sent = Vec::new();
        for m in std::mem::take(&mut self.held) {
            let w = m.encode();
            self.ws.send(to_message(w.clone())).await.unwrap();
            sent.push(w);
        }
        sent
    }

    async fn send_binary(&mut self, b: &[u8]) {
        self.ws.send(Message::binary(b.to_vec())).await.unwrap();
    }

    /// Sends held reveals at once (the round cannot reach its shares without them); the
    /// tests hold the later messages.
    async fn send_reveals(&mut self) {
        let (reveals, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|m| matches!(m, PatientToRelay::Reveal(_)));
        self.held = rest;
        for m in reveals {
            self.ws.send(to_message(m.encode())).await.unwrap();
        }
    }

    /// Feeds relay messages to the machine until it has revealed its key (after the roster).
    async fn reveal(&mut self) {
        let fut = async {
            loop {
                if self
                    .held
                    .iter()
                    .any(|m| matches!(m, PatientToRelay::Reveal(_)))
                {
                    self.send_reveals().await;
                    return;
                }
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let msg = RelayToPatient::decode(&t).unwrap();
                        let _ = self.p.handle(self.clock.now_ms(), msg);
                        self.collect();
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let msg = RelayToPatient::decode_binary(&b).unwrap();
                        let _ = self.p.handle(self.clock.now_ms(), msg);
                        self.collect();
                    }
                    Some(Ok(_)) => {}
                    other => panic!("socket ended: {other:?}"),
                }
            }
        };
        tokio::time::timeout(LIMIT, fut)
            .await
            .expect("roster in time")
    }

    /// Feeds relay messages to the machine until an event matches.
    async fn until(&mut self, mut pred: impl FnMut(&PatientEvent) -> bool) -> PatientEvent {
        let fut = async {
            loop {
                while let Some(ev) = self.p.poll_event() {
                    self.collect();
                    if let PatientEvent::RosterFrozen { you, round, .. } = &ev {
                        self.you = *you;
                        self.round = *round;
                    }
                    if pred(&ev) {
                        return ev;
                    }
                }
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let msg = RelayToPatient::decode(&t).unwrap();
                        let _ = self.p.handle(self.clock.now_ms(), msg);
                        self.collect();
                        self.send_reveals().await;
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let msg = RelayToPatient::decode_binary(&b).unwrap();
                        let _ = self.p.handle(self.clock.now_ms(), msg);
                        self.collect();
                    }
                    Some(Ok(_)) => {}
                    other => panic!("socket ended: {other:?}"),
                }
            }
        };
        tokio::time::timeout(LIMIT, fut)
            .await
            .expect("event in time")
    }

    async fn refused(&mut self) -> String {
        match self
            .until(|e| matches!(e, PatientEvent::RelayError { .. }))
            .await
        {
            PatientEvent::RelayError { code, .. } => serde_json::to_value(code)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
            _ => unreachable!(),
        }
    }
}

/// A round of study `other` frozen and held in flight (shares not yet sent) while a test
/// throws bad input at the relay.
struct InFlight {
    patients: Vec<Manual>,
    values: Vec<String>,
}

impl InFlight {
    async fn start(t: &TestRelay, seed: u64) -> InFlight {
        let values = random_values(3, seed, 0, 300, 1);
        let mut patients = Vec::new();
        for (i, v) in values.iter().enumerate() {
            patients.push(Manual::join(t, "other", v, seed * 10 + i as u64).await);
        }
        for p in &mut patients {
            p.reveal().await;
        }
        for p in &mut patients {
            p.until(|e| matches!(e, PatientEvent::RosterFrozen { .. }))
                .await;
        }
        InFlight { patients, values }
    }

    /// Lets the round go on; every patient gets the exact statistics.
    async fn finish(mut self) {
        for p in &mut self.patients {
            p.send_held().await;
        }
        let want = expected(&self.values, 0, 300, 1, 10);
        let mut sums = Vec::new();
        for p in &mut self.patients {
            p.until(|e| matches!(e, PatientEvent::PartialSumSent { .. }))
                .await;
            p.send_held().await;
        }
        for p in &mut self.patients {
            match p.until(|e| matches!(e, PatientEvent::Completed(_))).await {
                PatientEvent::Completed(r) => {
                    assert_eq!(r.study, "other");
                    let got = serde_json::to_value(&r.statistics).unwrap();
                    assert_stats(&got, &want);
                    sums.push(r.contributors.clone());
                }
                _ => unreachable!(),
            }
        }
        assert!(sums.iter().all(|c| c == &[1, 2, 3]));
    }
}

/// The relay still runs a normal 3-patient round of study `s`, exactly.
async fn normal_round_works(t: &TestRelay, seed: u64) {
    let values = random_values(3, seed, 0, 300, 1);
    let reports = run_patients(&t.ws_url(), &t.ca(), "s", &values).await;
    let want = expected(&values, 0, 300, 1, 10);
    for r in &reports {
        assert_stats(&result_json(r), &want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_below_http_and_slow_handshakes_are_dropped() {
    let t = relay().await;
    let in_flight = InFlight::start(&t, 601).await;

    // Bytes that are not TLS at all: closed without an answer.
    let mut s = tcp_from(&t, None).await.unwrap();
    s.write_all(b"\x00\x01\x02garbage\xff\xfe").await.unwrap();
    assert!(read_all(&mut s).await.is_empty());
    // A TLS record header followed by garbage: the TLS handshake fails; closed.
    let mut s = tcp_from(&t, None).await.unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello\x16\x03\x01")
        .await
        .unwrap();
    let raw = read_all(&mut s).await;
    assert!(!raw.starts_with(b"HTTP"), "no HTTP answer before TLS");
    // Plain HTTP on the TLS port: a plain-text 400 saying to use https.
    let mut s = tcp_from(&t, None).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let raw = read_all(&mut s).await;
    assert_eq!(
        status_of(&raw),
        Some(400),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(String::from_utf8_lossy(&raw).contains("HTTPS only"));
    // A client that connects and never starts the TLS handshake: closed after the timeout.
    let mut s = tcp_from(&t, None).await.unwrap();
    assert!(read_all(&mut s).await.is_empty());
    // A TLS client that never sends a request (or only half a head): closed after the timeout.
    let mut s = tls(&t).await;
    assert!(read_all(&mut s).await.is_empty());
    let mut s = tls(&t).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut s).await.is_empty());
    // A TLS client that stops in the middle of its handshake (sends half a ClientHello).
    let mut s = tcp_from(&t, None).await.unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .unwrap();
    read_all(&mut s).await;

    in_flight.finish().await;
    normal_round_works(&t, 602).await;
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_oversized_heads_and_bad_upgrades_get_status_codes() {
    let t = relay().await;
    let in_flight = InFlight::start(&t, 611).await;

    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        (0..100)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("not HTTP", b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        ("binary junk", b"\x01\x02\x03\x04\r\n\r\n".to_vec(), 400),
        ("oversized head", big_header.into_bytes(), 431),
        ("too many headers", many_headers.into_bytes(), 431),
        (
            "chunked body",
            b"POST /api/studies HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Content-Length headers",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            400,
        ),
        (
            "Content-Length not a number",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "body too large",
            b"POST /api/studies HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
            413,
        ),
        (
            "header value not UTF-8",
            b"GET / HTTP/1.1\r\nX-A: \xff\xfe\r\n\r\n".to_vec(),
            400,
        ),
        (
            "upgrade on a wrong path",
            upgrade_head("/wsx", "").into_bytes(),
            404,
        ),
        (
            "upgrade on a file path",
            upgrade_head("/index.html", "").into_bytes(),
            200,
        ),
        (
            "no Upgrade header",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x\r\n\r\n"
                .to_vec(),
            426,
        ),
        (
            "wrong WebSocket version",
            upgrade_head("/ws", "").replace("Version: 13", "Version: 8").into_bytes(),
            426,
        ),
        (
            "no WebSocket key",
            upgrade_head("/ws", "")
                .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")
                .into_bytes(),
            400,
        ),
        (
            "foreign Origin",
            upgrade_head("/ws", "Origin: https://evil.example\r\n").into_bytes(),
            403,
        ),
        (
            "dashboard upgrade with a foreign Origin",
            upgrade_head("/ws/dashboard", "Origin: http://127.0.0.1\r\n").into_bytes(),
            403,
        ),
        (
            "other method",
            b"DELETE / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
    ];
    for (what, bytes, want) in cases {
        let (status, raw) = raw_https(&t, &bytes).await;
        assert_eq!(status, Some(want), "{what}: {raw}");
    }

    // A client that asks for a large file again and again and never reads: after the write
    // timeout the relay drops it.
    std::fs::write(t.dir.path("web/big.bin"), vec![7u8; 2 << 20]).unwrap();
    let mut s = tls(&t).await;
    let req = "GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n".repeat(32);
    s.write_all(req.as_bytes()).await.unwrap();
    // The relay is answering (so this connection is counted); then stop reading.
    let mut first = [0u8; 1024];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(status_of(&first), Some(200));
    // Only the three patients of the round in flight stay connected.
    let dropped = async {
        while t.relay.open_connections() > 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, dropped)
        .await
        .expect("the relay dropped the client that does not read");
    let got = read_all(&mut s).await;
    assert!(got.len() < 32 * (2 << 20), "the relay stopped writing");

    in_flight.finish().await;
    normal_round_works(&t, 612).await;
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_frames_close_with_the_right_code() {
    let t = relay().await;
    let in_flight = InFlight::start(&t, 621).await;

    let oversize = vec![b'a'; MAX_MSG + 1];
    let half = vec![b'a'; MAX_MSG / 2 + 1];
    let mut fragmented_oversize = frame(false, 0, 1, &half, true, None);
    fragmented_oversize.extend(frame(true, 0, 0, &half, true, None));
    let mut unfinished = frame(false, 0, 1, b"{\"type\":", true, None);
    unfinished.extend(text("{}"));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8",
            frame(true, 0, 1, b"\xff\xfe\xfd", true, None),
            1007,
        ),
        (
            "reserved data opcode",
            frame(true, 0, 3, b"x", true, None),
            1002,
        ),
        (
            "reserved control opcode",
            frame(true, 0, 0xb, b"x", true, None),
            1002,
        ),
        (
            "reserved bit set",
            frame(true, 4, 1, b"{}", true, None),
            1002,
        ),
        (
            "unmasked client frame",
            frame(true, 0, 1, b"{}", false, None),
            1002,
        ),
        (
            "continuation without a start",
            frame(true, 0, 0, b"x", true, None),
            1002,
        ),
        ("unfinished fragment, then a new message", unfinished, 1002),
        (
            "fragmented control frame",
            frame(false, 0, 9, b"x", true, None),
            1002,
        ),
        (
            "control frame over 125 bytes",
            frame(true, 0, 9, &[0u8; 200], true, None),
            1002,
        ),
        (
            "frame over the size limit",
            frame(true, 0, 1, &oversize, true, None),
            1009,
        ),
        (
            "frame header claiming 2^62 bytes",
            frame(true, 0, 1, b"", true, Some(1 << 62)),
            1009,
        ),
        (
            "fragments adding up to more than the limit",
            fragmented_oversize,
            1009,
        ),
    ];
    for (what, bytes, want) in cases {
        let mut s = raw_ws(&t).await;
        let _ = s.write_all(&bytes).await;
        let (_, code, _) = until_close(&mut s).await;
        assert_eq!(code, Some(want), "{what}");
    }

    // Binary frames get an error and the connection stays usable.
    let mut s = raw_ws(&t).await;
    s.write_all(&frame(true, 0, 2, b"\x01\x02", true, None))
        .await
        .unwrap();
    let (op, p) = read_frame(&mut s).await.unwrap();
    assert_eq!(op, 1);
    assert_eq!(error_code(std::str::from_utf8(&p).unwrap()), "bad_message");
    s.write_all(&text("{\"type\":\"leave\",\"v\":3}"))
        .await
        .unwrap();
    let (_, p) = read_frame(&mut s).await.unwrap();
    assert_eq!(error_code(std::str::from_utf8(&p).unwrap()), "unexpected");

    // A flood of frames (pings here: each costs the relay a pong) is cut off.
    let mut s = raw_ws(&t).await;
    let flood: Vec<u8> = (0..200)
        .flat_map(|_| frame(true, 0, 9, b"p", true, None))
        .collect();
    let _ = s.write_all(&flood).await;
    let (texts, code, reason) = until_close(&mut s).await;
    assert_eq!(code, Some(1008));
    assert_eq!(reason, "too many messages");
    assert_eq!(texts.len(), 1);
    assert_eq!(error_code(&texts[0]), "rate_limited");

    // A connection that half-sends a frame and stalls does not hold anything up.
    let mut stalled = raw_ws(&t).await;
    stalled
        .write_all(&frame(true, 0, 1, b"{\"type\":\"join\"", true, Some(100))[..20])
        .await
        .unwrap();

    in_flight.finish().await;
    normal_round_works(&t, 622).await;
    drop(stalled);
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_gets_bad_message_and_floods_of_it_are_closed() {
    let t = relay().await;
    let in_flight = InFlight::start(&t, 631).await;

    let deep_arrays = "[".repeat(10_000);
    let deep_objects = "{\"a\":".repeat(5_000);
    let cases: Vec<String> = vec![
        "".into(),
        "not json".into(),
        "\u{0}".into(),
        "[]".into(),
        "42".into(),
        "\"join\"".into(),
        "null".into(),
        "{}".into(),
        r#"{"type":"hack","v":3}"#.into(),
        r#"{"type":"join","v":3,"study":"s","public_key":"AAAA","admin":true}"#.into(),
        // A client of protocol version 1.
        r#"{"type":"leave","v":1}"#.into(),
        deep_arrays,
        deep_objects,
        r#"{"type":"leave","v":3e999999}"#.into(),
        r#"{"type":"leave","v":-1}"#.into(),
        // Bulk messages are binary frames only.
        r#"{"type":"partial_sum","v":3,"round":1,"sum":[1]}"#.into(),
    ];
    // Up to 16 bad messages on a connection get an error each.
    let mut ws = cohort_relay::client::connect(&t.ws_url(), &t.ca())
        .await
        .unwrap();
    for c in &cases {
        ws.send(Message::text(c.clone())).await.unwrap();
        match wait_for(&mut ws, |_| true).await {
            RelayToPatient::Error(e) => {
                assert_eq!(
                    serde_json::to_value(e.code).unwrap(),
                    "bad_message",
                    "{c:.40}"
                );
                assert!(e.message.len() < 200, "no echo: {}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }
    // The 17th closes the connection (1008).
    ws.send(Message::text("nope")).await.unwrap();
    let close = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason),
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    };
    let (code, reason) = tokio::time::timeout(LIMIT, close).await.unwrap();
    assert_eq!(code, 1008);
    assert_eq!(reason.as_str(), "too many bad messages");

    in_flight.finish().await;
    normal_round_works(&t, 632).await;
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_binary_frames_get_bad_message_and_floods_of_them_are_closed() {
    let t = relay().await;
    let in_flight = InFlight::start(&t, 651).await;
    let mut shares = b"CO\x03\x01\0\0\0\0".to_vec();
    shares.extend_from_slice(&1u64.to_le_bytes());
    shares.extend_from_slice(&1u32.to_le_bytes());
    shares.extend_from_slice(&48u32.to_le_bytes());
    shares.extend_from_slice(&2u32.to_le_bytes());
    shares.extend_from_slice(&[7; 48]);
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"C".to_vec(),
        b"{\"type\":\"leave\",\"v\":3}".to_vec(),
        vec![0xff; 64],
    ];
    // Each field of a well-formed `shares` frame broken in turn.
    let mut old = shares.clone();
    old[2] = 1;
    let mut kind = shares.clone();
    kind[3] = 9;
    let mut reserved = shares.clone();
    reserved[4] = 1;
    let mut huge = shares.clone();
    huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut long = shares.clone();
    long[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut extra = shares.clone();
    extra.push(0);
    let mut delivery = shares.clone();
    delivery[3] = 2;
    let mut partial = b"CO\x03\x03\0\0\0\0".to_vec();
    partial.extend_from_slice(&1u64.to_le_bytes());
    partial.extend_from_slice(&1u32.to_le_bytes());
    partial.extend_from_slice(&u64::MAX.to_le_bytes());
    cases.extend([
        old,
        kind,
        reserved,
        huge,
        long,
        extra,
        shares[..shares.len() - 1].to_vec(),
        shares[..20].to_vec(),
        delivery,
        partial,
        shares[..8].to_vec(),
        vec![0; 1000],
    ]);
    assert_eq!(cases.len(), 16);
    let mut ws = cohort_relay::client::connect(&t.ws_url(), &t.ca())
        .await
        .unwrap();
    for (i, c) in cases.iter().enumerate() {
        ws.send(Message::binary(c.clone())).await.unwrap();
        match wait_for(&mut ws, |_| true).await {
            RelayToPatient::Error(e) => {
                let code = serde_json::to_value(e.code).unwrap();
                let old_version = i == 4;
                assert_eq!(code, "bad_message", "case {i}");
                if old_version {
                    assert!(e.message.contains("version 1"), "{}", e.message);
                }
                assert!(e.message.len() < 200, "no echo: {}", e.message);
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
    // The 17th closes the connection (1008).
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let close = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason),
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    };
    let (code, reason) = tokio::time::timeout(LIMIT, close).await.unwrap();
    assert_eq!(code, 1008);
    assert_eq!(reason.as_str(), "too many bad messages");

    in_flight.finish().await;
    normal_round_works(&t, 652).await;
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_turn_replayed_and_impersonating_round_messages_are_refused() {
    let t = relay().await;
    let in_flight = InFlight::start(&t, 641).await;
    let values = random_values(3, 642, 0, 300, 1);
    let mut ps = Vec::new();
    for (i, v) in values.iter().enumerate() {
        ps.push(Manual::join(&t, "s", v, 6420 + i as u64).await);
    }
    for p in &mut ps {
        p.reveal().await;
    }
    for p in &mut ps {
        p.until(|e| matches!(e, PatientEvent::RosterFrozen { .. }))
            .await;
    }
    let (a, rest) = ps.split_first_mut().unwrap();
    let Wire::Binary(shares) = a.held[0].encode() else {
        panic!("shares are a binary frame")
    };
    let round = a.round;

    // Shares for another round (the round id is bytes 8..16 of the frame).
    let mut wrong_round = shares.clone();
    wrong_round[8..16].copy_from_slice(&(round + 1).to_le_bytes());
    a.send_binary(&wrong_round).await;
    assert_eq!(a.refused().await, "unexpected");
    // A patient sending a delivery frame (claiming which shares came from whom).
    let delivery = RelayToPatient::Delivery(cohort_core::message::Delivery {
        round,
        contributors: vec![1, 2, 3],
        shares: cohort_core::frame::ShareList::with_capacity(48, 0),
        extra: cohort_core::frame::ShareList::with_capacity(0, 0),
    });
    let Wire::Binary(delivery) = delivery.encode() else {
        panic!("deliveries are binary frames")
    };
    a.send_binary(&delivery).await;
    assert_eq!(a.refused().await, "bad_message");
    // Shares addressed to the sender itself (the first entry's recipient is bytes 24..28).
    let mut to_self = shares.clone();
    to_self[24..28].copy_from_slice(&a.you.to_le_bytes());
    a.send_binary(&to_self).await;
    assert_eq!(a.refused().await, "invalid");
    // A partial sum before the shares phase is over.
    let early = PatientToRelay::PartialSum(cohort_core::message::PartialSum {
        round,
        sum: vec![cohort_core::field::Fe::ZERO; 13],
    });
    a.ws.send(to_message(early.encode())).await.unwrap();
    assert_eq!(a.refused().await, "unexpected");
    // The real shares, then the same frame again (a replay).
    a.send_held().await;
    a.send_binary(&shares).await;
    assert_eq!(a.refused().await, "duplicate");
    // Someone else replays them: a patient of another study...
    let mut stranger = Manual::join(&t, "spare", "100.0", 6429).await;
    stranger
        .until(|e| matches!(e, PatientEvent::Welcomed { .. }))
        .await;
    stranger.send_binary(&shares).await;
    assert_eq!(stranger.refused().await, "unexpected");
    // ...and a connection that never joined.
    let mut nobody = cohort_relay::client::connect(&t.ws_url(), &t.ca())
        .await
        .unwrap();
    nobody.send(Message::binary(shares.clone())).await.unwrap();
    match wait_for(&mut nobody, |_| true).await {
        RelayToPatient::Error(e) => assert_eq!(serde_json::to_value(e.code).unwrap(), "unexpected"),
        other => panic!("{other:?}"),
    }
    // A join for a study that does not exist, and a second join while a member.
    let join_other = PatientToRelay::Join(cohort_core::message::Join {
        v: cohort_core::message::PROTOCOL_VERSION,
        study: "no-such-study".into(),
        commitment: cohort_core::commitment::Commitment([1; 32]),
        invite: None,
    });
    nobody.send(to_message(join_other.encode())).await.unwrap();
    match wait_for(&mut nobody, |_| true).await {
        RelayToPatient::Error(e) => {
            assert_eq!(serde_json::to_value(e.code).unwrap(), "unknown_study")
        }
        other => panic!("{other:?}"),
    }
    a.ws.send(to_message(join_other.encode())).await.unwrap();
    assert_eq!(a.refused().await, "duplicate");

    for p in rest.iter_mut() {
        p.send_held().await;
    }
    // Partial sums: A's twice, and one for a wrong round.
    a.until(|e| matches!(e, PatientEvent::PartialSumSent { .. }))
        .await;
    let Wire::Binary(sum) = a.held[0].encode() else {
        panic!("partial sums are binary frames")
    };
    let mut wrong = sum.clone();
    wrong[8..16].copy_from_slice(&(round + 7).to_le_bytes());
    a.send_binary(&wrong).await;
    assert_eq!(a.refused().await, "unexpected");
    a.send_held().await;
    a.send_binary(&sum).await;
    assert_eq!(a.refused().await, "duplicate");
    for p in rest.iter_mut() {
        p.until(|e| matches!(e, PatientEvent::PartialSumSent { .. }))
            .await;
        p.send_held().await;
    }
    let want = expected(&values, 0, 300, 1, 10);
    for p in &mut ps {
        match p.until(|e| matches!(e, PatientEvent::Completed(_))).await {
            PatientEvent::Completed(r) => {
                assert_stats(&serde_json::to_value(&r.statistics).unwrap(), &want);
                assert_eq!(r.contributors, vec![1, 2, 3]);
            }
            _ => unreachable!(),
        }
    }
    in_flight.finish().await;
    normal_round_works(&t, 643).await;
    t.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_from_one_address_and_oversized_studies_are_refused() {
    let t = TestRelay::start_with(&[S, OTHER], |c| {
        c.max_connections_per_ip = 8;
        c.max_patients_per_study = 50;
    })
    .await;
    let in_flight = InFlight::start(&t, 651).await;
    // 127.0.0.2 is another loopback address: its limit is its own.
    let flood_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            tls_from(&t, Some(flood_ip))
                .await
                .expect("within the limit"),
        );
    }
    for _ in 0..5 {
        assert!(
            tls_from(&t, Some(flood_ip)).await.is_err(),
            "the 9th connection from one address is refused"
        );
    }
    // Patients from other addresses are not affected meanwhile.
    normal_round_works(&t, 652).await;
    drop(held);
    let freed = async {
        while t.relay.open_connections() > 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, freed)
        .await
        .expect("the flood's connections are closed");
    tls_from(&t, Some(flood_ip))
        .await
        .expect("connections are counted down when they close");

    // A study larger than --max-patients-per-study is refused.
    let big = r#"{"spec":"id=huge,size=51,threshold=30,min=0,max=300,decimals=1,buckets=10"}"#;
    let r = t.post("/api/studies", Some(TOKEN), Some(big)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("limit of 50"));

    in_flight.finish().await;
    normal_round_works(&t, 653).await;
    t.relay.shutdown().await;
}

/// The relay fuzzer's seeds and every committed crasher (`relay/fuzz/regressions/`), replayed
/// through the same in-memory connection the `connection` fuzz target uses: each finishes
/// without a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_corpus_and_regressions_replay_over_an_in_memory_stream() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus/connection", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if dir == "regressions" || name.starts_with("seed-") {
                inputs.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    assert!(inputs.len() >= 7, "seeds found: {}", inputs.len());
    let web = TmpDir::new("harness");
    let (handler, _closing) = cohort_relay::harness::handler(web.path("web")).await;
    for (name, data) in inputs {
        let bytes = cohort_relay::harness::connection_bytes(&data);
        let out = cohort_relay::harness::serve_bytes(handler.clone(), &bytes, LIMIT).await;
        if name == "seed-http_get" {
            assert_eq!(status_of(&out), Some(200), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_global_limit_are_refused() {
    let t = TestRelay::start_with(&[S], |c| c.max_connections = 2).await;
    let a = tls(&t).await;
    let b = tls(&t).await;
    assert!(tls_from(&t, None).await.is_err(), "the third is refused");
    drop((a, b));
    let freed = async {
        while t.relay.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, freed).await.expect("freed");
    let mut c = tls(&t).await;
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_all(&mut c).await), Some(200));
    t.relay.shutdown().await;
}
