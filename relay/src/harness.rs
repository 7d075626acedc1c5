//! In-memory connections, for tests and the fuzzer (`relay/fuzz`): one connection's bytes go
//! through exactly the code a TLS connection runs after its handshake ([`serve_stream`]),
//! over a `tokio::io::duplex` pipe instead of a socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cohort_core::study::StudySpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::registry::Registry;
use crate::server::{Handler, serve_stream};
use crate::store::Store;
use crate::token::AdminToken;
use crate::ws::SessionLimits;

/// The admin token of [`handler`].
pub const TOKEN: &str = "harness-admin-token-0123456789abcdef";

/// The head of a patient WebSocket upgrade that the relay accepts.
pub const PATIENT_UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// The head of a dashboard WebSocket upgrade that the relay accepts.
pub const DASHBOARD_UPGRADE: &[u8] = b"GET /ws/dashboard HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A connection handler over an in-memory store with one study `s` (3 patients), admin
/// token [`TOKEN`], small limits and short timeouts. Must be called inside a tokio runtime.
/// The returned sender closes every connection when set to `true`.
pub async fn handler(web: PathBuf) -> (Arc<Handler>, watch::Sender<bool>) {
    let store = Arc::new(Store::open_in_memory().expect("in-memory store"));
    let registry = Registry::new(store, Clock::new());
    let spec: StudySpec = "id=s,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10"
        .parse()
        .expect("study spec");
    registry.create(spec).await.expect("study");
    let (tx, rx) = watch::channel(false);
    let limits = SessionLimits {
        max_message_bytes: 64 * 1024,
        messages_per_second: 0,
        write_timeout: Duration::from_secs(1),
        auth_timeout: Duration::from_secs(1),
    };
    let token = AdminToken::new(TOKEN).expect("token");
    let h = Handler::new(registry, token, web, limits, Duration::from_secs(1), rx);
    (h, tx)
}

/// One masked client frame (FIN set) with this opcode and payload.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | (opcode & 0x0f)];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = [0x5a, 0x13, 0xc7, 0x02];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Turns fuzzer input into connection bytes. The first byte picks a mode: raw bytes; a patient
/// upgrade then raw frame bytes; a patient upgrade then the rest split at `\n` into text
/// frames; a dashboard upgrade then the rest as text frames.
pub fn connection_bytes(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    let frames = |head: &[u8]| {
        let mut out = head.to_vec();
        for part in rest.split(|&b| b == b'\n') {
            out.extend(client_frame(1, part));
        }
        out
    };
    match mode % 4 {
        0 => rest.to_vec(),
        1 => [PATIENT_UPGRADE, rest].concat(),
        2 => frames(PATIENT_UPGRADE),
        _ => frames(DASHBOARD_UPGRADE),
    }
}

/// Runs one connection that sends `input` and then closes its sending side; returns what the
/// relay wrote. Panics if the relay does not finish with the connection within `limit`
/// (a hang on some input is a bug).
pub async fn serve_bytes(handler: Arc<Handler>, input: &[u8], limit: Duration) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let remote = SocketAddr::from(([127, 0, 0, 1], 9));
    let serve = tokio::spawn(serve_stream(handler, server, remote));
    let input = input.to_vec();
    let talk = async move {
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let write = async {
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let ((), out) = tokio::join!(write, read);
        out
    };
    let out = tokio::time::timeout(limit, talk)
        .await
        .expect("the relay finished the connection in time");
    tokio::time::timeout(limit, serve)
        .await
        .expect("the connection task ended in time")
        .expect("the connection task did not panic");
    out
}
