//! Studies at run time: one tokio task per study owns that study's core [`Hospital`] and is
//! the only place its protocol state changes. Connections talk to it over a channel.
//!
//! The task feeds the Hospital messages, disconnects and the clock, drains its outputs, sends
//! each message to the connection it names, persists round events before telling anyone about
//! them (so a result a patient has seen is always readable through the API), and publishes
//! them on the dashboard feed. Studies share nothing but the store and the feed, so rounds of
//! different studies run in parallel and never mix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cohort_core::error::{ProtocolError, StudyError};
use cohort_core::message::{ErrorMsg, PROTOCOL_VERSION, PatientToRelay, RelayToPatient};
use cohort_core::protocol::{Hospital, HospitalEvent, HospitalOutput, PeerId};
use cohort_core::study::StudySpec;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::store::{RoundStart, Store, StoreError};
use crate::views::{DashboardMsg, ResultRow, StudyStatusView, reason_kind};

/// Messages a connection may have queued before it counts as too slow and is dropped.
pub const PEER_QUEUE: usize = 256;

/// Dashboard feed frames buffered per subscriber before it lags (and gets a fresh snapshot).
pub const FEED_CAPACITY: usize = 1024;

/// A message for one patient connection, tagged with the study that sent it.
#[derive(Debug)]
pub struct Outbound {
    /// The sending study's id.
    pub study: Arc<str>,
    /// The message, boxed: every connection's queue allocates slots for 32 of these up front,
    /// and an unboxed message would make that about 6 KiB per idle connection.
    pub msg: Box<RelayToPatient>,
}

/// How a study task reaches a patient connection.
#[derive(Clone, Debug)]
pub struct PeerLink {
    /// Queue of messages for the connection.
    pub tx: mpsc::Sender<Outbound>,
    /// Notified when the connection fell too far behind and must close.
    pub kick: Arc<Notify>,
}

/// A command for a study task.
#[derive(Debug)]
pub enum StudyCmd {
    /// A decoded message from a patient connection.
    Patient {
        /// The connection.
        peer: PeerId,
        /// The message.
        msg: PatientToRelay,
        /// Where replies go.
        link: PeerLink,
    },
    /// The connection closed.
    Disconnect {
        /// The connection.
        peer: PeerId,
    },
    /// Start the round now with whoever is enrolled (the dashboard's "start").
    Start {
        /// The new status, or why the round cannot start.
        reply: oneshot::Sender<Result<StudyStatusView, ProtocolError>>,
    },
    /// Report the status.
    Status {
        /// The status.
        reply: oneshot::Sender<StudyStatusView>,
    },
    /// Abandon the running round, tell enrolled patients, and stop.
    Shutdown {
        /// Signalled once done.
        done: oneshot::Sender<()>,
    },
}

/// A handle on a running study.
#[derive(Clone, Debug)]
pub struct StudyHandle {
    id: Arc<str>,
    spec: Arc<StudySpec>,
    tx: mpsc::UnboundedSender<StudyCmd>,
}

impl StudyHandle {
    /// The study id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The study's specification.
    pub fn spec(&self) -> &StudySpec {
        &self.spec
    }

    /// Sends a command; `false` if the study task has stopped.
    pub fn send(&self, cmd: StudyCmd) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// The study's status (`None` if it has stopped).
    pub async fn status(&self) -> Option<StudyStatusView> {
        let (reply, rx) = oneshot::channel();
        self.send(StudyCmd::Status { reply });
        rx.await.ok()
    }

    /// Starts the round now. `Err(None)` if the study has stopped.
    pub async fn start_round(&self) -> Result<StudyStatusView, Option<ProtocolError>> {
        let (reply, rx) = oneshot::channel();
        self.send(StudyCmd::Start { reply });
        match rx.await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    }
}

/// Why a study could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The specification is invalid.
    #[error(transparent)]
    Invalid(#[from] StudyError),
    /// A study with this id exists.
    #[error("a study with id {0:?} already exists")]
    Exists(String),
    /// The cohort size is above this relay's `--max-patients-per-study`.
    #[error("cohort size {size} is above this relay's limit of {max} patients per study")]
    TooLarge {
        /// The study's size.
        size: u32,
        /// The relay's limit.
        max: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every study of this relay, plus the dashboard feed and the connection id counter.
pub struct Registry {
    studies: RwLock<Vec<StudyHandle>>,
    store: Arc<Store>,
    feed: broadcast::Sender<Arc<str>>,
    clock: Clock,
    next_peer: AtomicU64,
    max_size: AtomicU32,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("studies", &self.list().len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry. Must be used inside a tokio runtime (studies are tasks).
    pub fn new(store: Arc<Store>, clock: Clock) -> Arc<Registry> {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Arc::new(Registry {
            studies: RwLock::new(Vec::new()),
            store,
            feed,
            clock,
            next_peer: AtomicU64::new(1),
            max_size: AtomicU32::new(u32::MAX),
            tasks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Refuses new studies (not stored ones) whose cohort size is above `max`.
    pub fn set_max_patients_per_study(&self, max: u32) {
        self.max_size.store(max, Ordering::Relaxed);
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A fresh connection id.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed))
    }

    /// Subscribes to the dashboard feed (JSON text frames).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.feed.subscribe()
    }

    /// The study with this id.
    pub fn get(&self, id: &str) -> Option<StudyHandle> {
        let studies = self.studies.read().unwrap_or_else(|e| e.into_inner());
        studies.iter().find(|h| &*h.id == id).cloned()
    }

    /// Every study, in creation order.
    pub fn list(&self) -> Vec<StudyHandle> {
        self.studies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every study's status, in creation order.
    pub async fn statuses(&self) -> Vec<StudyStatusView> {
        let mut out = Vec::new();
        for h in self.list() {
            if let Some(s) = h.status().await {
                out.push(s);
            }
        }
        out
    }

    /// Starts the studies found in the store. Returns how many.
    pub async fn restore(&self) -> Result<usize, CreateError> {
        let specs = self.store.studies().await?;
        let n = specs.len();
        for spec in specs {
            self.spawn(spec, false).await?;
        }
        Ok(n)
    }

    /// Creates, persists and starts a study.
    pub async fn create(&self, spec: StudySpec) -> Result<StudyHandle, CreateError> {
        self.spawn(spec, true).await
    }

    async fn spawn(&self, spec: StudySpec, new: bool) -> Result<StudyHandle, CreateError> {
        let id = spec.params.id.clone();
        if self.get(&id).is_some() {
            return Err(CreateError::Exists(id));
        }
        let max = self.max_size.load(Ordering::Relaxed);
        if new && spec.params.size > max {
            return Err(CreateError::TooLarge {
                size: spec.params.size,
                max,
            });
        }
        let first_round = self.store.next_round(&id).await?;
        let hospital = Hospital::new(spec.clone(), first_round)?;
        if new && !self.store.insert_study(&spec, self.clock.now_ms()).await? {
            return Err(CreateError::Exists(id));
        }
        let completed = self.store.completed_count(&id).await?;
        // The store calls above hold no lock; the id is checked again under the write lock.
        let mut studies = self.studies.write().unwrap_or_else(|e| e.into_inner());
        if studies.iter().any(|h| *h.id == *id) {
            return Err(CreateError::Exists(id));
        }
        let id: Arc<str> = id.into();
        let spec = Arc::new(spec);
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = StudyHandle {
            id: id.clone(),
            spec: spec.clone(),
            tx,
        };
        let status = StudyStatusView::new(&spec, &hospital.status(), completed);
        let task = StudyTask {
            id: id.clone(),
            spec,
            hospital,
            peers: HashMap::new(),
            store: self.store.clone(),
            feed: self.feed.clone(),
            clock: self.clock,
            completed,
            first_shares: None,
            path_done: None,
        };
        let join = tokio::spawn(task.run(rx));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(join);
        studies.push(handle.clone());
        drop(studies);
        info!(study = %id, first_round, new, "study running");
        let _ = self.feed.send(
            DashboardMsg::StudyCreated { study: status }
                .to_json()
                .into(),
        );
        Ok(handle)
    }

    /// Shuts every study down (running rounds are abandoned with reason `shutdown`) and waits
    /// for their tasks, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let mut waits = Vec::new();
        for h in self.list() {
            let (done, rx) = oneshot::channel();
            if h.send(StudyCmd::Shutdown { done }) {
                waits.push(rx);
            }
        }
        let all = async {
            for w in waits {
                let _ = w.await;
            }
        };
        let _ = tokio::time::timeout(grace, all).await;
    }
}

struct StudyTask {
    id: Arc<str>,
    spec: Arc<StudySpec>,
    hospital: Hospital,
    peers: HashMap<PeerId, PeerLink>,
    store: Arc<Store>,
    feed: broadcast::Sender<Arc<str>>,
    clock: Clock,
    completed: u64,
    /// When the running round's first accepted `shares` frame reached this task.
    first_shares: Option<Instant>,
    /// A completed round and its first-shares instant, logged as `round relay path` once its
    /// results are queued to every member (cohort-bench reads that line).
    path_done: Option<(u64, Instant)>,
}

impl StudyTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<StudyCmd>) {
        loop {
            let deadline = self
                .hospital
                .poll_timeout()
                .map(|t| self.clock.instant_at(t));
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(StudyCmd::Shutdown { done }) => {
                        self.hospital.shutdown(self.clock.now_ms());
                        self.flush().await;
                        info!(study = %self.id, "study stopped");
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => return,
                },
                () = timer => self.hospital.handle_timeout(self.clock.now_ms()),
            }
            self.flush().await;
            if let Some((round, first)) = self.path_done.take() {
                let relay_path_us = first.elapsed().as_micros() as u64;
                info!(study = %self.id, round, relay_path_us, "round relay path");
            }
        }
    }

    fn status(&self) -> StudyStatusView {
        StudyStatusView::new(&self.spec, &self.hospital.status(), self.completed)
    }

    fn reply_error(&self, link: &PeerLink, e: &ProtocolError) {
        let msg = RelayToPatient::Error(ErrorMsg {
            v: PROTOCOL_VERSION,
            code: e.code(),
            message: e.to_string(),
        });
        let _ = link.tx.try_send(Outbound {
            study: self.id.clone(),
            msg: Box::new(msg),
        });
    }

    async fn on_cmd(&mut self, cmd: StudyCmd) {
        let now = self.clock.now_ms();
        match cmd {
            StudyCmd::Patient { peer, msg, link } => {
                let arrived = Instant::now();
                let is_shares = matches!(msg, PatientToRelay::Shares(_));
                let kind = msg.kind();
                let is_join = matches!(msg, PatientToRelay::Join(_));
                let is_leave = matches!(msg, PatientToRelay::Leave(_));
                let known = self.peers.contains_key(&peer);
                if is_join && !known {
                    self.peers.insert(peer, link.clone());
                }
                match self.hospital.handle(now, peer, msg) {
                    Ok(()) => {
                        if is_shares && self.first_shares.is_none() {
                            self.first_shares = Some(arrived);
                        }
                        if is_join {
                            info!(study = %self.id, peer = peer.0, "patient joined");
                        } else {
                            debug!(study = %self.id, peer = peer.0, kind, "message accepted");
                        }
                        if is_leave {
                            info!(study = %self.id, peer = peer.0, "patient left");
                            self.peers.remove(&peer);
                        }
                    }
                    Err(e) => {
                        info!(study = %self.id, peer = peer.0, kind, code = ?e.code(), "message refused");
                        if is_join && !known {
                            self.peers.remove(&peer);
                        }
                        self.reply_error(&link, &e);
                    }
                }
            }
            StudyCmd::Disconnect { peer } => {
                if self.peers.remove(&peer).is_some() {
                    debug!(study = %self.id, peer = peer.0, "member disconnected");
                }
                self.hospital.handle_disconnect(now, peer);
            }
            StudyCmd::Start { reply } => {
                let r = self.hospital.start_round(now);
                if let Err(e) = &r {
                    info!(study = %self.id, code = ?e.code(), "start refused");
                }
                // The roster goes out before the reply.
                self.flush().await;
                let _ = reply.send(r.map(|()| self.status()));
            }
            StudyCmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            StudyCmd::Shutdown { .. } => unreachable!("handled by run"),
        }
    }

    /// Drains the Hospital: persists and publishes events, then delivers messages.
    async fn flush(&mut self) {
        loop {
            let mut sends = Vec::new();
            while let Some(out) = self.hospital.poll_output() {
                match out {
                    HospitalOutput::Send { to, msg } => sends.push((to, msg)),
                    HospitalOutput::Event(e) => self.on_event(e).await,
                }
            }
            if sends.is_empty() {
                return;
            }
            let mut dropped = Vec::new();
            for (to, msg) in sends {
                let last = matches!(
                    msg,
                    RelayToPatient::Result(_) | RelayToPatient::Abandoned(_)
                );
                let Some(link) = self.peers.get(&to) else {
                    debug!(study = %self.id, peer = to.0, "no connection for message");
                    continue;
                };
                let out = Outbound {
                    study: self.id.clone(),
                    msg: Box::new(msg),
                };
                match link.tx.try_send(out) {
                    Ok(()) => {
                        if last {
                            // The round is over for this connection.
                            self.peers.remove(&to);
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        warn!(study = %self.id, peer = to.0, "connection too slow; dropping it");
                        link.kick.notify_one();
                        dropped.push(to);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => dropped.push(to),
                }
            }
            if dropped.is_empty() {
                return;
            }
            let now = self.clock.now_ms();
            for p in dropped {
                self.peers.remove(&p);
                self.hospital.handle_disconnect(now, p);
            }
        }
    }

    fn publish(&self, msg: DashboardMsg) {
        let _ = self.feed.send(msg.to_json().into());
    }

    async fn on_event(&mut self, e: HospitalEvent) {
        match e {
            HospitalEvent::Enrolment {
                study,
                round,
                enrolled,
                size,
            } => {
                debug!(study = %study, round, enrolled, size, "enrolment");
                self.publish(DashboardMsg::Enrolment {
                    study,
                    round,
                    enrolled,
                    size,
                });
            }
            HospitalEvent::RoundStarted {
                study,
                round,
                roster_size,
                threshold,
                safety_code,
                started_ms,
            } => {
                info!(study = %study, round, n = roster_size, threshold, safety_code = %safety_code, "round started");
                let start = RoundStart {
                    study: &study,
                    round,
                    roster_size,
                    threshold,
                    safety_code: safety_code.as_str(),
                    started_at_ms: started_ms,
                };
                if let Err(e) = self.store.round_started(&start).await {
                    error!(study = %study, round, error = %e, "cannot store round start");
                }
                self.publish(DashboardMsg::RoundStarted {
                    study,
                    round,
                    roster_size,
                    threshold,
                    safety_code: safety_code.to_string(),
                });
            }
            HospitalEvent::SharesDelivered {
                study,
                round,
                contributors,
            } => {
                info!(study = %study, round, contributors, "shares delivered");
                self.publish(DashboardMsg::SharesDelivered {
                    study,
                    round,
                    contributors,
                });
            }
            HospitalEvent::Completed(o) => {
                self.path_done = self.first_shares.take().map(|t| (o.round, t));
                info!(
                    study = %o.study,
                    round = o.round,
                    n = o.roster_size,
                    contributors = o.contributors.len(),
                    partial_sums = o.partial_sums,
                    safety_code = %o.safety_code,
                    "round completed"
                );
                if let Err(e) = self.store.round_completed(&o).await {
                    error!(study = %o.study, round = o.round, error = %e, "cannot store result");
                }
                self.completed += 1;
                self.publish(DashboardMsg::Completed {
                    result: ResultRow::from_outcome(&self.spec.params, &o),
                });
            }
            HospitalEvent::Abandoned {
                study,
                round,
                reason,
                finished_ms,
                ..
            } => {
                self.first_shares = None;
                let kind = reason_kind(&reason);
                info!(study = %study, round, reason = %kind, "round abandoned");
                if let Err(e) = self
                    .store
                    .round_abandoned(&study, round, &reason, finished_ms)
                    .await
                {
                    error!(study = %study, round, error = %e, "cannot store abandonment");
                }
                self.publish(DashboardMsg::Abandoned {
                    study,
                    round,
                    reason: kind,
                    message: reason.to_string(),
                });
            }
            other => {
                debug!(study = %self.id, event = ?std::mem::discriminant(&other), "unhandled event")
            }
        }
    }
}
