//! Several relays on one PostgreSQL database: which relay runs which study, and dashboard
//! events across relays (see docs/DEPLOY.md).
//!
//! A study runs on one relay at a time: the one holding its lease in the store
//! ([`Store::try_acquire`]). A relay takes a lease on demand (a patient or the dashboard asks
//! for a study it does not run, see [`Registry::acquire`]), renews every lease it holds every
//! [`LeaseTimes::renew_every`], and stops a study at once when its lease is lost: a renew
//! answers that another relay holds it, or renews have failed for so long that the lease may
//! expire at the database before the next one ([`LeaseTimes::stop_after`]). A study idle for
//! [`LeaseTimes::idle_release`] is stopped and its lease released, so that the relay a load
//! balancer routes the study to can take it.
//!
//! With SQLite there are no leases: the one relay runs every study.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tracing::{debug, info, warn};

use crate::registry::Registry;
use cohort_core::roster::SafetyCode;

use crate::store::{Store, StoreError};
use crate::views::{Abandonment, DashboardMsg, RoundEnd};

/// Lease timing. The defaults: ttl 6 s, renew every 2 s, stop after 4 s without a successful
/// renew, release after 30 s idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    /// How long a taken or renewed lease lasts at the database.
    pub ttl: Duration,
    /// How often held leases are renewed (also the longest a renew may take).
    pub renew_every: Duration,
    /// A study whose lease was last renewed this long ago is stopped: the lease may expire at
    /// the database soon and another relay take it. Less than `ttl`.
    pub stop_after: Duration,
    /// A study with nobody enrolled and no round running for this long is stopped here and
    /// its lease released.
    pub idle_release: Duration,
}

impl Default for LeaseTimes {
    fn default() -> LeaseTimes {
        LeaseTimes {
            ttl: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
            stop_after: Duration::from_secs(4),
            idle_release: Duration::from_secs(30),
        }
    }
}

/// Proof that a lease was taken, and when the request was sent (the lease lasts at least
/// `ttl` from then).
#[derive(Debug)]
pub struct Taken(Instant);

#[derive(Debug)]
struct Held {
    /// When the last successful take or renew was sent.
    renewed: Instant,
    /// Since when the study has been seen idle.
    idle_since: Option<Instant>,
}

/// The leases this relay holds.
pub struct Leases {
    store: Arc<Store>,
    owner: Arc<str>,
    times: LeaseTimes,
    held: Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("owner", &self.owner)
            .field("held", &self.owned().len())
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// Leases in `store` held under the name `owner` (this relay's id).
    pub fn new(store: Arc<Store>, owner: &str, times: LeaseTimes) -> Arc<Leases> {
        Arc::new(Leases {
            store,
            owner: owner.into(),
            times,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// This relay's id (the owner name in the lease rows).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The timing.
    pub fn times(&self) -> LeaseTimes {
        self.times
    }

    /// The studies whose lease this relay holds, sorted.
    pub fn owned(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tries to take the lease on `study` (free, expired or already ours).
    pub async fn take(&self, study: &str) -> Result<Option<Taken>, StoreError> {
        let sent = Instant::now();
        let ok = tokio::time::timeout(
            self.times.renew_every,
            self.store.try_acquire(study, &self.owner, self.times.ttl),
        )
        .await
        .map_err(|_| StoreError::Closed)??;
        Ok(ok.then_some(Taken(sent)))
    }

    /// Records a lease taken with [`Leases::take`] as held (its study now runs here).
    pub fn held(&self, study: &str, taken: Taken) {
        self.lock().insert(
            study.to_owned(),
            Held {
                renewed: taken.0,
                idle_since: None,
            },
        );
    }

    /// Forgets and releases the lease on `study` (best effort).
    pub async fn give_up(&self, study: &str) {
        self.lock().remove(study);
        if let Err(e) = self.store.release(study, &self.owner).await {
            debug!(study, error = %e, "cannot release the lease; it will expire");
        }
    }

    /// Releases every lease (a relay shutting down), so that another relay can take its
    /// studies at once instead of after the ttl.
    pub async fn release_all(&self) {
        let ids = self.owned();
        join_all(ids.iter().map(|id| self.give_up(id))).await;
    }

    /// Renews every held lease once; returns the studies that must stop.
    async fn renew_all(&self) -> Vec<String> {
        let ids = self.owned();
        let renews = ids.iter().map(|id| async move {
            let sent = Instant::now();
            let r = tokio::time::timeout(
                self.times.renew_every,
                self.store.renew(id, &self.owner, self.times.ttl),
            )
            .await;
            (id, sent, r)
        });
        let mut lost = Vec::new();
        for (id, sent, r) in join_all(renews).await {
            let mut held = self.lock();
            let Some(h) = held.get_mut(id.as_str()) else {
                continue;
            };
            match r {
                Ok(Ok(true)) => h.renewed = sent,
                Ok(Ok(false)) => {
                    warn!(study = %id, "lease taken by another relay or expired");
                    held.remove(id.as_str());
                    lost.push(id.clone());
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    if h.renewed.elapsed() >= self.times.stop_after {
                        warn!(study = %id, error = %why, "lease not renewed in time; giving the study up");
                        held.remove(id.as_str());
                        lost.push(id.clone());
                    } else {
                        warn!(study = %id, error = %why, "lease renew failed; retrying");
                    }
                }
            }
        }
        lost
    }

    /// Notes whether `study` is idle now; `true` once it has been idle for `idle_release`.
    fn idle(&self, study: &str, idle_now: bool) -> bool {
        let mut held = self.lock();
        let Some(h) = held.get_mut(study) else {
            return false;
        };
        if !idle_now {
            h.idle_since = None;
            return false;
        }
        let since = *h.idle_since.get_or_insert_with(Instant::now);
        since.elapsed() >= self.times.idle_release
    }
}

/// The lease loop of a clustered relay: renews held leases every `renew_every`, stops the
/// studies whose lease is lost, and releases idle ones. Runs until aborted.
pub async fn run_leases(registry: Arc<Registry>) {
    let Some(leases) = registry.leases().cloned() else {
        return;
    };
    let every = leases.times.renew_every;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for id in leases.renew_all().await {
            registry.stop_now(&id);
        }
        for id in leases.owned() {
            let Some(h) = registry.get(&id) else {
                continue;
            };
            let idle_now = match tokio::time::timeout(every, h.status()).await {
                Ok(Some(s)) => s.status.enrolled == 0 && s.status.running.is_none(),
                _ => false,
            };
            if leases.idle(&id, idle_now) {
                registry.release_idle(&id).await;
            }
        }
    }
}

/// Dashboard events across relays (PostgreSQL LISTEN/NOTIFY). Outgoing: a round of a study
/// running here started, completed or was abandoned → `notify_changed(study)` (the id only).
/// Incoming: a notification for a study running elsewhere → its latest round, read from the
/// database, is published on this relay's dashboard feed. Runs until aborted.
pub async fn bridge_events(registry: Arc<Registry>) {
    let out = tokio::spawn(notify_local_changes(registry.clone()));
    let _abort_out = AbortOnDrop(out);
    loop {
        match registry.store().listen_changes().await {
            Ok(mut changes) => {
                info!("listening for study changes of other relays");
                while let Some(study) = changes.next().await {
                    if registry.get(&study).is_none() {
                        publish_remote(&registry, &study).await;
                    }
                }
                warn!("study change notifications lost; reconnecting");
            }
            Err(e) => warn!(error = %e, "cannot listen for study changes; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The study a local dashboard frame is about, for the frames other relays need.
fn changed_study(frame: &str) -> Option<String> {
    // A `status` frame whose round just ended or just started (enrolment counts stay local).
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    if v.get("type")?.as_str()? != "status" {
        return None;
    }
    let study = v.get("study")?;
    let ended = !v.get("ended")?.is_null();
    let started = study
        .get("running")
        .and_then(|r| r.get("phase"))
        .and_then(|p| p.as_str())
        == Some("awaiting reveals");
    if !(ended || started) {
        return None;
    }
    Some(study.get("params")?.get("id")?.as_str()?.to_owned())
}

async fn notify_local_changes(registry: Arc<Registry>) {
    let mut feed = registry.subscribe();
    loop {
        let frame = match feed.recv().await {
            Ok(f) => f,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(study) = changed_study(&frame) else {
            continue;
        };
        // Frames about remote studies were published here by `publish_remote`: not ours.
        if registry.get(&study).is_none() {
            continue;
        }
        if let Err(e) = registry.store().notify_changed(&study).await {
            debug!(study, error = %e, "cannot notify other relays");
        }
    }
}

async fn publish_remote(registry: &Registry, study: &str) {
    let rows = match registry.store().rounds(study).await {
        Ok(r) => r,
        Err(e) => {
            debug!(study, error = %e, "cannot read a remote study's rounds");
            return;
        }
    };
    let Some(last) = rows.last().cloned() else {
        return;
    };
    let ended = match last.status.as_str() {
        "completed" => match last.clone().result() {
            Some(row) => Some(Box::new(RoundEnd::Completed(row))),
            None => return,
        },
        "abandoned" => Some(Box::new(RoundEnd::Abandoned(Abandonment {
            study: last.study.clone(),
            round: last.round,
            reason: last.reason.clone().unwrap_or_default(),
            message: last.message.clone().unwrap_or_default(),
            safety_code: SafetyCode::from_stored(last.safety_code.clone()),
            started_at_ms: last.started_at_ms,
            finished_at_ms: last.finished_at_ms.unwrap_or(last.started_at_ms),
        }))),
        "running" => None,
        _ => return,
    };
    let status = match registry.remote_status(study).await {
        Ok(Some(s)) => s,
        _ => return,
    };
    let msg = DashboardMsg::Status {
        study: Box::new(status),
        ended,
    };
    registry.publish(msg.to_json().into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_that_concern_other_relays() {
        let status = |running: &str, ended: &str| {
            format!(
                r#"{{"type":"status","study":{{"params":{{"id":"a"}},"running":{running}}},"ended":{ended}}}"#
            )
        };
        // A round ended, or one just started: other relays' dashboards hear of it.
        let ended = status("null", r#"{"status":"completed","study":"a","round":1}"#);
        assert_eq!(changed_study(&ended).as_deref(), Some("a"));
        let started = status(r#"{"round":2,"phase":"awaiting reveals"}"#, "null");
        assert_eq!(changed_study(&started).as_deref(), Some("a"));
        // Enrolment and a round moving on stay local.
        assert_eq!(changed_study(&status("null", "null")), None);
        let moving = status(r#"{"round":2,"phase":"awaiting shares"}"#, "null");
        assert_eq!(changed_study(&moving), None);
        assert_eq!(changed_study(r#"{"type":"snapshot","studies":[]}"#), None);
        assert_eq!(changed_study("not json"), None);
    }

    #[test]
    fn defaults_stop_before_the_lease_can_expire() {
        let t = LeaseTimes::default();
        assert!(t.stop_after + t.renew_every <= t.ttl);
        assert!(t.renew_every < t.stop_after);
    }
}
