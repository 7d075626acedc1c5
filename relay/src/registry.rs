//! Studies at run time, seen from outside: the [`Registry`] of every study and the
//! [`StudyHandle`] through which connections and the API reach one study's task (the actor
//! itself is in [`crate::study`]).
//!
//! Each study has a bounded command queue: a connection that sends faster than its study
//! works waits for room (back-pressure), it never grows the queue. Studies share nothing but
//! the store and the feed, so rounds of different studies run in parallel and never mix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cohort_core::error::{ProtocolError, StudyError};
use cohort_core::message::{PatientToRelay, RelayToPatient};
use cohort_core::protocol::{Hospital, PeerId};
use cohort_core::study::StudySpec;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::study::StudyTask;
use crate::views::{DashboardMsg, StudyStatusView};

/// Messages a connection may have queued before it counts as too slow and is dropped.
pub const PEER_QUEUE: usize = 256;

/// Dashboard feed frames buffered per subscriber before it lags (and gets a fresh snapshot).
pub const FEED_CAPACITY: usize = 1024;

/// Commands a study's queue holds before senders wait for room.
pub const STUDY_QUEUE: usize = 1024;

/// What a study task sends one patient connection.
#[derive(Debug)]
pub enum Outbound {
    /// A message to send. Boxed: every connection's queue allocates slots for 32 of these up
    /// front, and an unboxed message would make that about 6 KiB per idle connection.
    Message(Box<RelayToPatient>),
    /// The study with this id attached the connection (its join was accepted).
    Attached(Arc<str>),
    /// The study with this id detached the connection (refused join, round over, dropped).
    Detached(Arc<str>),
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
    /// Make the study task panic (tests of its recovery only).
    #[cfg(test)]
    Panic,
}

/// A handle on a running study.
#[derive(Clone, Debug)]
pub struct StudyHandle {
    id: Arc<str>,
    spec: Arc<StudySpec>,
    tx: mpsc::Sender<StudyCmd>,
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

    /// Sends a command, waiting while the study's queue is full; `false` if the study task
    /// has stopped.
    pub async fn send(&self, cmd: StudyCmd) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    /// The study's status (`None` if it has stopped).
    pub async fn status(&self) -> Option<StudyStatusView> {
        let (reply, rx) = oneshot::channel();
        self.send(StudyCmd::Status { reply }).await;
        rx.await.ok()
    }

    /// Starts the round now. `Err(None)` if the study has stopped.
    pub async fn start_round(&self) -> Result<StudyStatusView, Option<ProtocolError>> {
        let (reply, rx) = oneshot::channel();
        self.send(StudyCmd::Start { reply }).await;
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
        let (tx, rx) = mpsc::channel(STUDY_QUEUE);
        let handle = StudyHandle {
            id: id.clone(),
            spec: spec.clone(),
            tx,
        };
        let status = StudyStatusView::new(&spec, hospital.status(), completed);
        let task = StudyTask {
            id: id.clone(),
            spec,
            hospital,
            peers: HashMap::new(),
            current: None,
            effects: Vec::new(),
            start_reply: None,
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
        let created = DashboardMsg::Status {
            study: Box::new(status),
            ended: None,
        };
        let _ = self.feed.send(created.to_json().into());
        Ok(handle)
    }

    /// Shuts every study down (running rounds are abandoned with reason `shutdown`) and waits
    /// for their tasks, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let mut waits = Vec::new();
        for h in self.list() {
            let (done, rx) = oneshot::channel();
            if h.send(StudyCmd::Shutdown { done }).await {
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
