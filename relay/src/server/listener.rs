//! The TCP listener and its limits: connections in total and per IP address, the TLS
//! handshake (with a plain-HTTP hint), then [`serve_stream`](super::conn::serve_stream).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::conn::{Handler, serve_stream};
use crate::http;

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

/// Accepts connections until aborted, within the total and per-address limits.
pub(crate) async fn accept_loop(
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
    // Boxed: every future below takes the stream by value and keeps room for it (as an
    // argument and again as a local), so an inline stream (~1.2 KiB of rustls state) was
    // counted several times in each connection's task (docs/BENCHMARKS.md §3).
    serve_stream(handler, Box::new(stream), remote).await;
}
