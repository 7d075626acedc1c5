//! Studies at run time, seen from outside: the [`Registry`] of every study and the
//! [`StudyHandle`] through which connections and the API reach one study's task (the actor
//! itself is in [`crate::study`]).
//!
//! Each study has a bounded command queue: a connection that sends faster than its study
//! works waits for room (back-pressure), it never grows the queue. Studies share nothing but
//! the store and the feed, so rounds of different studies run in parallel and never mix.

mod handle;

pub use handle::{Outbound, PeerLink, StudyCmd, StudyHandle};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cohort_core::error::{ProtocolError, StudyError};
use cohort_core::message::{PatientToRelay, RelayToPatient};
use cohort_core::protocol::StudyStatus;
use cohort_core::protocol::{Hospital, PeerId};
use cohort_core::study::StudySpec;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::cluster::Leases;
use crate::store::{Store, StoreError};
use crate::study::StudyTask;
use crate::views::{DashboardMsg, StudyStatusView};

/// Messages a connection may have queued before it counts as too slow and is dropped.
pub const PEER_QUEUE: usize = 256;

/// Dashboard feed frames buffered per subscriber before it lags (and gets a fresh snapshot).
pub const FEED_CAPACITY: usize = 1024;

/// Commands a study's queue holds before senders wait for room.
pub const STUDY_QUEUE: usize = 1024;

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

/// What [`Registry::acquire`] found for a study id.
#[derive(Debug)]
pub enum Acquired {
    /// The study runs on this relay (it was already, or its lease was just taken).
    Local(StudyHandle),
    /// Another relay holds the study's lease: the client should try again later.
    Elsewhere,
    /// No such study (neither running here nor stored).
    Unknown,
    /// The database could not be asked; the client should try again later.
    Unavailable,
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
    /// With PostgreSQL: the leases saying which studies this relay runs (see
    /// [`crate::cluster`]). `None`: every stored study runs here (SQLite, one relay).
    leases: Option<Arc<Leases>>,
    /// Serializes lease takeovers so that one study is never spawned twice.
    taking: tokio::sync::Mutex<()>,
    draining: AtomicBool,
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
        Registry::with_leases(store, clock, None)
    }

    /// An empty registry whose studies run only while this relay holds their lease in the
    /// store (`leases`), or, with `None`, like [`Registry::new`].
    pub fn with_leases(
        store: Arc<Store>,
        clock: Clock,
        leases: Option<Arc<Leases>>,
    ) -> Arc<Registry> {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Arc::new(Registry {
            studies: RwLock::new(Vec::new()),
            store,
            feed,
            clock,
            next_peer: AtomicU64::new(1),
            max_size: AtomicU32::new(u32::MAX),
            tasks: std::sync::Mutex::new(Vec::new()),
            leases,
            taking: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
        })
    }

    /// The leases of a clustered relay (`None` with SQLite).
    pub fn leases(&self) -> Option<&Arc<Leases>> {
        self.leases.as_ref()
    }

    /// Marks the relay as shutting down (`/healthz` answers 503 from now on).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the relay is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Publishes a JSON frame on this relay's dashboard feed.
    pub fn publish(&self, frame: Arc<str>) {
        let _ = self.feed.send(frame);
    }

    /// The study `id`, running here: already, or after taking its lease (free or expired)
    /// from the store. A study taken over has its round in flight, if any, recorded abandoned
    /// with reason `relay_restarted` (the relay that ran it is gone) and starts its next
    /// round here. Without leases (SQLite) this is [`Registry::get`].
    pub async fn acquire(&self, id: &str) -> Acquired {
        if let Some(h) = self.get(id) {
            return Acquired::Local(h);
        }
        let Some(leases) = &self.leases else {
            return Acquired::Unknown;
        };
        if self.is_draining() {
            return Acquired::Unavailable;
        }
        let _one = self.taking.lock().await;
        if let Some(h) = self.get(id) {
            return Acquired::Local(h);
        }
        match self.take_over(leases, id).await {
            Ok(found) => found,
            Err(e) => {
                warn!(study = %id, error = %e, "cannot take the study's lease");
                Acquired::Unavailable
            }
        }
    }

    async fn take_over(&self, leases: &Leases, id: &str) -> Result<Acquired, CreateError> {
        let Some(spec) = self.store.study(id).await? else {
            return Ok(Acquired::Unknown);
        };
        let Some(held) = leases.take(id).await? else {
            return Ok(Acquired::Elsewhere);
        };
        let stale = self
            .store
            .abandon_in_flight_of(id, self.clock.now_ms())
            .await;
        let started = match stale {
            Ok(n) => {
                if n > 0 {
                    warn!(study = %id, rounds = n, "took over a study: its round in flight is recorded abandoned (relay_restarted)");
                }
                self.spawn(spec, false).await
            }
            Err(e) => Err(e.into()),
        };
        match started {
            Ok(h) => {
                leases.held(id, held);
                info!(study = %id, "study lease taken; the study runs here");
                Ok(Acquired::Local(h))
            }
            Err(e) => {
                leases.give_up(id).await;
                Err(e)
            }
        }
    }

    /// Stops study `id` on this relay at once, without writing anything (its lease was lost:
    /// another relay may run it already). Its connections see [`StudyHandle::stopped`].
    pub fn stop_now(&self, id: &str) -> Option<StudyHandle> {
        let h = self.remove(id)?;
        h.abort.abort();
        warn!(study = %id, "study stopped on this relay: its lease is lost");
        Some(h)
    }

    /// Shuts study `id` down on this relay (a running round is abandoned with reason
    /// `shutdown`) and waits for it, at most `grace`.
    pub async fn stop(&self, id: &str, grace: Duration) -> Option<StudyHandle> {
        let h = self.remove(id)?;
        let (done, rx) = oneshot::channel();
        if h.send(StudyCmd::Shutdown { done }).await {
            let _ = tokio::time::timeout(grace, rx).await;
        }
        Some(h)
    }

    /// Stops an idle study here and releases its lease (see [`crate::cluster`]), unless a
    /// patient arrived meanwhile.
    pub async fn release_idle(&self, id: &str) {
        let Some(leases) = &self.leases else {
            return;
        };
        let _one = self.taking.lock().await;
        if let Some(h) = self.get(id)
            && let Some(s) = h.status().await
            && (s.status.enrolled > 0 || s.status.running.is_some())
        {
            return;
        }
        self.stop(id, Duration::from_secs(3)).await;
        leases.give_up(id).await;
        info!(study = %id, "idle study stopped here; its lease is released");
    }

    /// The status of a stored study that runs on another relay (or nowhere right now): its
    /// specification and stored counters, nobody enrolled here, no round known to run.
    pub async fn remote_status(&self, id: &str) -> Result<Option<StudyStatusView>, StoreError> {
        let Some(spec) = self.store.study(id).await? else {
            return Ok(None);
        };
        let status = StudyStatus {
            enrolling_round: self.store.next_round(id).await?,
            enrolled: 0,
            size: spec.params.size,
            running: None,
        };
        let completed = self.store.completed_count(id).await?;
        Ok(Some(StudyStatusView::new(&spec, status, completed)))
    }

    fn remove(&self, id: &str) -> Option<StudyHandle> {
        let mut studies = self.studies.write().unwrap_or_else(|e| e.into_inner());
        let i = studies.iter().position(|h| &*h.id == id)?;
        Some(studies.remove(i))
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

    /// Every study's status: those running here in creation order, then (with leases) the
    /// stored studies running on other relays, as [`Registry::remote_status`].
    pub async fn statuses(&self) -> Vec<StudyStatusView> {
        let mut out = Vec::new();
        for h in self.list() {
            if let Some(s) = h.status().await {
                out.push(s);
            }
        }
        if self.leases.is_some() {
            match self.store.studies().await {
                Ok(specs) => {
                    for spec in specs {
                        let id = &spec.params.id;
                        if out.iter().any(|s| s.params.id == *id) {
                            continue;
                        }
                        match self.remote_status(id).await {
                            Ok(Some(s)) => out.push(s),
                            Ok(None) => {}
                            Err(e) => warn!(study = %id, error = %e, "cannot read a stored study"),
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot list the stored studies"),
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

    /// With leases: checks and stores a new study without running it here; it runs on the
    /// relay that first takes its lease (where the load balancer sends its patients).
    /// Returns its status. Without leases: [`Registry::create`].
    pub async fn create_stored(&self, spec: StudySpec) -> Result<StudyStatusView, CreateError> {
        if self.leases.is_none() {
            let h = self.create(spec).await?;
            let id = h.id().to_string();
            return match h.status().await {
                Some(s) => Ok(s),
                None => Err(CreateError::Exists(id)),
            };
        }
        let id = spec.params.id.clone();
        let max = self.max_size.load(Ordering::Relaxed);
        if spec.params.size > max {
            return Err(CreateError::TooLarge {
                size: spec.params.size,
                max,
            });
        }
        Hospital::new(spec.clone(), 1)?;
        if !self.store.insert_study(&spec, self.clock.now_ms()).await? {
            return Err(CreateError::Exists(id));
        }
        let status = self
            .remote_status(&id)
            .await?
            .ok_or_else(|| CreateError::Exists(id.clone()))?;
        let _ = self.feed.send(
            DashboardMsg::Status {
                study: Box::new(status.clone()),
                ended: None,
            }
            .to_json()
            .into(),
        );
        info!(study = %id, "study stored; it runs where its lease is taken");
        Ok(status)
    }

    /// Creates, persists and starts a study (with leases: and takes its lease).
    pub async fn create(&self, spec: StudySpec) -> Result<StudyHandle, CreateError> {
        let Some(leases) = &self.leases else {
            return self.spawn(spec, true).await;
        };
        let id = spec.params.id.clone();
        let _one = self.taking.lock().await;
        if self.get(&id).is_some() || self.store.study(&id).await?.is_some() {
            return Err(CreateError::Exists(id));
        }
        let Some(held) = leases.take(&id).await? else {
            return Err(CreateError::Exists(id));
        };
        match self.spawn(spec, true).await {
            Ok(h) => {
                leases.held(&id, held);
                Ok(h)
            }
            Err(e) => {
                leases.give_up(&id).await;
                Err(e)
            }
        }
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
        let status = StudyStatusView::new(&spec, hospital.status(), completed);
        let task = StudyTask {
            id: id.clone(),
            spec: spec.clone(),
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
        let handle = StudyHandle {
            id: id.clone(),
            spec: spec.clone(),
            tx,
            abort: join.abort_handle(),
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(join);
        drop(tasks);
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
