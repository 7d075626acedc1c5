//! The connection-scale run: N idle patient connections (WSS, full TLS 1.3 handshakes) held by
//! one relay, optionally each joined to a study that never fills.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_core::envelope::KeyPair;
use cohort_core::message::{Join, PROTOCOL_VERSION, PatientToRelay, RelayToPatient};
use futures_util::{SinkExt, StreamExt};
use rand_core::SeedableRng;
use rustls::ClientConfig;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::patients::{Ws, client_ws_config, connect};

/// N held connections.
pub struct IdleFleet {
    stop: watch::Sender<bool>,
    closed: mpsc::UnboundedReceiver<()>,
    /// Connections established.
    pub n: usize,
    /// From the first connect to the last connection admitted (joined, if asked), in ms.
    pub admit_ms: f64,
    /// Per-connection time to admit (TCP + TLS + WebSocket upgrade [+ join]), in ms.
    pub each_ms: Vec<f64>,
}

impl std::fmt::Debug for IdleFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleFleet").field("n", &self.n).finish()
    }
}

/// Joins `study` on `ws` and waits for the welcome.
async fn join(ws: &mut Ws, study: &str) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed({
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).map_err(|e| e.to_string())?;
        s
    });
    let key = KeyPair::generate(&mut rng).public();
    let msg = PatientToRelay::Join(Join {
        v: PROTOCOL_VERSION,
        study: study.into(),
        commitment: cohort_core::commitment::commit(
            study,
            &key,
            &cohort_core::commitment::Nonce([0; 32]),
        ),
        invite: None,
    });
    ws.send(cohort_relay::ws::to_message(msg.encode()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                match RelayToPatient::decode(&t).map_err(|e| e.to_string())? {
                    RelayToPatient::Welcome(_) => return Ok(()),
                    RelayToPatient::Enrolment(_) => {}
                    other => return Err(format!("join answered with {}", other.kind())),
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

impl IdleFleet {
    /// Opens `n` connections with at most `concurrency` handshakes in flight, each joining
    /// `study` if given, and keeps them open (answering pings) until [`IdleFleet::close`].
    pub async fn open(
        addr: SocketAddr,
        tls: Arc<ClientConfig>,
        n: usize,
        concurrency: usize,
        study: Option<String>,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<IdleFleet, String> {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<f64, String>>();
        let (closed_tx, closed) = mpsc::unbounded_channel::<()>();
        let study: Option<Arc<str>> = study.map(Into::into);
        let t0 = Instant::now();
        for _ in 0..n {
            let (sem, tls, ready_tx, closed_tx) = (
                sem.clone(),
                tls.clone(),
                ready_tx.clone(),
                closed_tx.clone(),
            );
            let (mut stop_rx, study) = (stop_rx.clone(), study.clone());
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await;
                let start = Instant::now();
                let mut ws = match connect(addr, tls, client_ws_config()).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Some(study) = &study
                    && let Err(e) = join(&mut ws, study).await
                {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                drop(permit);
                let _ = ready_tx.send(Ok(start.elapsed().as_secs_f64() * 1e3));
                drop(ready_tx);
                loop {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        _ = stop_rx.changed() => {
                            let _ = ws.close(None).await;
                            break;
                        }
                    }
                }
                let _ = closed_tx.send(());
            });
        }
        drop(ready_tx);
        let mut each_ms = Vec::with_capacity(n);
        while each_ms.len() < n {
            // Every task sends exactly one readiness report, then keeps its sender while open.
            let r = ready_rx
                .recv()
                .await
                .ok_or("a connection task ended early")?;
            each_ms.push(r.map_err(|e| format!("connection {}: {e}", each_ms.len()))?);
            progress(each_ms.len());
        }
        let admit_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(IdleFleet {
            stop,
            closed,
            n: each_ms.len(),
            admit_ms,
            each_ms,
        })
    }

    /// Closes every connection (waits at most `limit`).
    pub async fn close(mut self, limit: Duration) {
        let _ = self.stop.send(true);
        let all = async {
            for _ in 0..self.n {
                if self.closed.recv().await.is_none() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }
}
