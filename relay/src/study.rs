//! The study actor: one tokio task per study owns that study's core [`Hospital`] and is the
//! only place its protocol state changes. Connections and the API reach it through a
//! [`StudyHandle`](crate::registry::StudyHandle).
//!
//! The task feeds the Hospital messages, disconnects and the clock, drains its outputs, sends
//! each message (and each attach / detach) to the connection it names, persists round events
//! before telling anyone about them (so a result a patient has seen is always readable
//! through the API), and publishes the study's status (with the round that ended, if any) on
//! the dashboard feed.
//!
//! A panic while the Hospital handles a step is caught and logged; the study's running round
//! is abandoned with reason `study_restarted` (stored, and sent to its members) and the study
//! goes on with a fresh Hospital. It is never left silently dead.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use cohort_core::message::{AbandonReason, PatientToRelay, RelayToPatient};
use cohort_core::protocol::{Hospital, HospitalEvent, HospitalOutput, PeerId};
use cohort_core::study::StudySpec;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info, warn};

mod effects;

pub(crate) use effects::{Effect, StartReply, Write};

use crate::clock::Clock;
use crate::registry::{Outbound, PeerLink, StudyCmd};
use crate::store::Store;
use crate::views::{Abandonment, DashboardMsg, ResultRow, RoundEnd, StudyStatusView};

/// One study's actor state.
pub(crate) struct StudyTask {
    pub(crate) id: Arc<str>,
    pub(crate) spec: Arc<StudySpec>,
    pub(crate) hospital: Hospital,
    /// Connections attached to this study.
    pub(crate) peers: HashMap<PeerId, PeerLink>,
    /// The connection whose message is being handled, until it is attached or refused.
    pub(crate) current: Option<(PeerId, PeerLink)>,
    pub(crate) store: Arc<Store>,
    pub(crate) feed: broadcast::Sender<Arc<str>>,
    pub(crate) clock: Clock,
    pub(crate) completed: u64,
    /// When the running round's first accepted `shares` frame reached this task.
    pub(crate) first_shares: Option<Instant>,
    /// A completed round and its first-shares instant, logged as `round relay path` once its
    /// results are queued to every member (cohort-bench reads that line).
    pub(crate) path_done: Option<(u64, Instant)>,
    /// What the Hospital's last step asked for, in its order: writes to the store, dashboard
    /// messages and deliveries. Applied by [`StudyTask::settle`], which awaits each write
    /// before anything after it is published or sent.
    pub(crate) effects: Vec<Effect>,
    /// A `start` command's reply, sent once the roster is out.
    pub(crate) start_reply: Option<StartReply>,
}

impl StudyTask {
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<StudyCmd>) {
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
            let (step, stopped) = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(StudyCmd::Shutdown { done }) => {
                        let now = self.clock.now_ms();
                        (self.guarded(|t| t.hospital.shutdown(now)), Some(done))
                    }
                    Some(cmd) => (self.guarded(|t| t.on_cmd(cmd)), None),
                    None => return,
                },
                () = timer => {
                    let now = self.clock.now_ms();
                    (self.guarded(|t| t.hospital.handle_timeout(now)), None)
                }
            };
            let mut panicked = step.is_err();
            loop {
                if panicked {
                    self.restart().await;
                }
                panicked = self.settle().await;
                if !panicked {
                    break;
                }
            }
            if let Some((reply, r)) = self.start_reply.take() {
                let _ = reply.send(r.map(|()| self.status()));
            }
            if let Some(done) = stopped {
                info!(study = %self.id, "study stopped");
                let _ = done.send(());
                return;
            }
            if let Some((round, first)) = self.path_done.take() {
                let relay_path_us = first.elapsed().as_micros() as u64;
                info!(study = %self.id, round, relay_path_us, "round relay path");
            }
        }
    }

    /// Runs one step and drains the Hospital's outputs into [`StudyTask::effects`]; `Err` if
    /// either panicked (the caller restarts the study).
    fn guarded(&mut self, f: impl FnOnce(&mut StudyTask)) -> Result<(), ()> {
        catch_unwind(AssertUnwindSafe(|| {
            f(self);
            self.drain();
        }))
        .map_err(|_| ())
    }

    /// After a panic: abandon the running round (reason `study_restarted`), tell and detach
    /// every member, and continue with a fresh Hospital for the next round.
    async fn restart(&mut self) {
        error!(study = %self.id, "study task panicked; abandoning its round and restarting the study");
        self.current = None;
        self.first_shares = None;
        self.path_done = None;
        self.effects.clear();
        let now = self.clock.now_ms();
        let halted = catch_unwind(AssertUnwindSafe(|| {
            self.hospital.halt(now, AbandonReason::StudyRestarted);
            self.drain();
        }));
        if halted.is_err() {
            error!(study = %self.id, "the study could not be halted cleanly; its members are detached");
            self.effects.clear();
            let running = catch_unwind(AssertUnwindSafe(|| self.hospital.status().running))
                .ok()
                .flatten();
            if let Some(r) = running {
                let reason = AbandonReason::StudyRestarted;
                if let Err(e) = self
                    .store
                    .round_abandoned(&self.id, r.round, &reason, now)
                    .await
                {
                    error!(study = %self.id, round = r.round, error = %e, "cannot store abandonment");
                }
            }
            for link in std::mem::take(&mut self.peers).into_values() {
                let _ = link.tx.try_send(Outbound::Detached(self.id.clone()));
            }
        }
        let fresh = match self.store.next_round(&self.id).await {
            Ok(first) => Hospital::new((*self.spec).clone(), first).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match fresh {
            Ok(h) => {
                // The old machine's last outputs (in `effects`) still go to its members.
                self.hospital = h;
                info!(study = %self.id, "study restarted");
            }
            Err(e) => {
                error!(study = %self.id, error = %e, "study restart failed; keeping the halted state machine")
            }
        }
        self.publish(None);
    }

    fn status(&self) -> StudyStatusView {
        StudyStatusView::new(&self.spec, self.hospital.status(), self.completed)
    }

    fn on_cmd(&mut self, cmd: StudyCmd) {
        let now = self.clock.now_ms();
        match cmd {
            StudyCmd::Patient { peer, msg, link } => {
                let arrived = Instant::now();
                let is_shares = matches!(msg, PatientToRelay::Shares(_));
                let kind = msg.kind();
                if !self.peers.contains_key(&peer) {
                    self.current = Some((peer, link));
                }
                match self.hospital.handle(now, peer, msg) {
                    Ok(()) => {
                        if is_shares && self.first_shares.is_none() {
                            self.first_shares = Some(arrived);
                        }
                        debug!(study = %self.id, peer = peer.0, kind, "message accepted");
                    }
                    Err(e) => {
                        info!(study = %self.id, peer = peer.0, kind, code = e.code().as_str(), "message refused");
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
                    info!(study = %self.id, code = e.code().as_str(), "start refused");
                }
                // The roster goes out before the reply.
                self.start_reply = Some((reply, r));
            }
            StudyCmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            StudyCmd::Shutdown { .. } => unreachable!("handled by run"),
            #[cfg(test)]
            StudyCmd::Panic => panic!("study task panic requested by a test"),
        }
    }

    /// The link to `peer`: an attached connection, or the one whose message is being handled.
    fn link(&self, peer: PeerId) -> Option<&PeerLink> {
        self.peers.get(&peer).or(match &self.current {
            Some((p, l)) if *p == peer => Some(l),
            _ => None,
        })
    }

    /// Drains the Hospital's outputs into [`StudyTask::effects`] (events become store writes
    /// and dashboard messages, in order).
    fn drain(&mut self) {
        while let Some(out) = self.hospital.poll_output() {
            match out {
                HospitalOutput::Event(e) => self.on_event(e),
                other => self.effects.push(Effect::Out(other)),
            }
        }
    }

    /// Applies the pending effects: the step's store writes first (awaited), then the
    /// dashboard messages and deliveries in order, so a round or result a patient has seen is
    /// always stored.
    /// Connections that fell behind are dropped and their disconnects handled, until nothing
    /// is left. Returns `true` if the Hospital panicked on such a disconnect.
    async fn settle(&mut self) -> bool {
        loop {
            let effects = std::mem::take(&mut self.effects);
            if effects.is_empty() {
                self.current = None;
                return false;
            }
            // Every write of the step first (the Hospital emits a round's event after the
            // messages that go with it, e.g. the roster before `RoundStarted`), then the rest
            // in order: nothing reaches a patient or the dashboard before it is stored.
            let (writes, rest): (Vec<Effect>, Vec<Effect>) = effects
                .into_iter()
                .partition(|e| matches!(e, Effect::Store(_)));
            for w in writes {
                if let Effect::Store(w) = w {
                    self.persist(w).await;
                }
            }
            // Peers this step detaches: each gets its detach right behind its last message (a
            // broadcast result or abandonment), so its connection ends the membership before
            // it can read that patient's next `join`.
            let detaching: std::collections::HashSet<PeerId> = rest
                .iter()
                .filter_map(|e| match e {
                    Effect::Out(HospitalOutput::Detached { peer }) => Some(*peer),
                    _ => None,
                })
                .collect();
            let mut dropped = Vec::new();
            for effect in rest {
                match effect {
                    Effect::Store(_) => unreachable!("writes were applied above"),
                    Effect::Publish(m) => {
                        let _ = self.feed.send(m.to_json().into());
                    }
                    Effect::Out(out) => self.send_out(out, &detaching, &mut dropped),
                }
            }
            if dropped.is_empty() {
                continue;
            }
            let now = self.clock.now_ms();
            let handled = self.guarded(|t| {
                for p in dropped {
                    t.peers.remove(&p);
                    t.hospital.handle_disconnect(now, p);
                }
            });
            if handled.is_err() {
                return true;
            }
        }
    }

    /// Delivers one message, attach or detach to the connection it names (a broadcast to
    /// each, encoded once).
    fn send_out(
        &mut self,
        out: HospitalOutput,
        detaching: &std::collections::HashSet<PeerId>,
        dropped: &mut Vec<PeerId>,
    ) {
        let (to, item) = match out {
            HospitalOutput::Send { to, msg } => (to, Outbound::Message(Box::new(msg))),
            HospitalOutput::Broadcast { to, msg } => {
                let frame = crate::ws::to_message(msg.encode());
                let last = matches!(
                    msg,
                    RelayToPatient::Result(_) | RelayToPatient::Abandoned(_)
                );
                for peer in to {
                    self.send_item(peer, Outbound::Frame(frame.clone()), dropped);
                    if last && detaching.contains(&peer) {
                        self.detach(peer, dropped);
                    }
                }
                return;
            }
            HospitalOutput::Attached { peer } => {
                if let Some((p, link)) = self.current.take_if(|(p, _)| *p == peer) {
                    info!(study = %self.id, peer = peer.0, "patient joined");
                    self.peers.insert(p, link);
                }
                (peer, Outbound::Attached(self.id.clone()))
            }
            HospitalOutput::Detached { peer } => {
                if self.peers.contains_key(&peer) {
                    self.detach(peer, dropped);
                    return;
                }
                if self.current.as_ref().is_none_or(|(p, _)| *p != peer) {
                    return; // already detached right behind its last message
                }
                (peer, Outbound::Detached(self.id.clone()))
            }
            HospitalOutput::Event(_) => unreachable!("events become effects in drain"),
        };
        self.send_item(to, item, dropped);
    }

    /// Ends an attached connection's membership of this study.
    fn detach(&mut self, peer: PeerId, dropped: &mut Vec<PeerId>) {
        if let Some(link) = self.peers.remove(&peer) {
            debug!(study = %self.id, peer = peer.0, "patient detached");
            if deliver(&link, Outbound::Detached(self.id.clone())).is_err() {
                dropped.push(peer);
            }
        }
    }

    /// Queues one item for `to`'s connection; a connection that fell behind is dropped.
    fn send_item(&self, to: PeerId, item: Outbound, dropped: &mut Vec<PeerId>) {
        let Some(link) = self.link(to) else {
            debug!(study = %self.id, peer = to.0, "no connection for message");
            return;
        };
        if let Err(slow) = deliver(link, item) {
            if slow {
                warn!(study = %self.id, peer = to.0, "connection too slow; dropping it");
            }
            dropped.push(to);
        }
    }

    /// Publishes the study's current status on the dashboard feed, with the round that just
    /// ended if any. A status without an ended round that is still the last pending effect is
    /// replaced: the status is read after the whole Hospital step, so it would repeat it.
    fn publish(&mut self, ended: Option<RoundEnd>) {
        if let Some(Effect::Publish(DashboardMsg::Status { ended: None, .. })) = self.effects.last()
        {
            self.effects.pop();
        }
        let study = Box::new(self.status());
        let ended = ended.map(Box::new);
        self.effects
            .push(Effect::Publish(DashboardMsg::Status { study, ended }));
    }

    fn on_event(&mut self, e: HospitalEvent) {
        match e {
            HospitalEvent::Enrolment {
                study,
                round,
                enrolled,
                size,
            } => {
                debug!(study = %study, round, enrolled, size, "enrolment");
                self.publish(None);
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
                self.effects.push(Effect::Store(Write::Started {
                    study,
                    round,
                    roster_size,
                    threshold,
                    safety_code: safety_code.to_string(),
                    started_ms,
                }));
                self.publish(None);
            }
            HospitalEvent::KeysRevealed {
                study,
                round,
                safety_code,
                ..
            } => {
                info!(study = %study, round, safety_code = %safety_code, "keys revealed");
                // The status now carries the round's safety code (it was pending).
                self.publish(None);
            }
            HospitalEvent::SharesDelivered {
                study,
                round,
                contributors,
            } => {
                info!(study = %study, round, contributors, "shares delivered");
                self.publish(None);
            }
            HospitalEvent::ProofsChecked {
                study,
                round,
                accepted,
                excluded,
            } => {
                // Roster indices and reasons only: which proofs failed, never any value.
                let left_out: Vec<String> = excluded
                    .iter()
                    .map(|e| format!("#{} {}", e.index, e.reason.as_str()))
                    .collect();
                info!(study = %study, round, accepted, excluded = ?left_out, "proofs checked");
                self.publish(None);
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
                self.completed += 1;
                let result = ResultRow::from_outcome(&self.spec.params, &o);
                self.effects
                    .push(Effect::Store(Write::Completed(Box::new(o))));
                self.publish(Some(RoundEnd::Completed(result)));
            }
            HospitalEvent::Abandoned {
                study,
                round,
                reason,
                safety_code,
                started_ms,
                finished_ms,
            } => {
                self.first_shares = None;
                info!(study = %study, round, reason = reason.kind(), "round abandoned");
                let ended = Abandonment::new(
                    study.clone(),
                    round,
                    &reason,
                    safety_code,
                    started_ms,
                    finished_ms,
                );
                self.effects.push(Effect::Store(Write::Abandoned {
                    study,
                    round,
                    reason,
                    finished_ms,
                }));
                self.publish(Some(RoundEnd::Abandoned(ended)));
            }
            other => {
                debug!(study = %self.id, event = ?std::mem::discriminant(&other), "unhandled event")
            }
        }
    }
}

/// Queues one item for a connection. `Err(true)`: the connection fell too far behind and was
/// told to close; `Err(false)`: it is gone.
fn deliver(link: &PeerLink, item: Outbound) -> Result<(), bool> {
    match link.tx.try_send(item) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            link.kick.notify_one();
            Err(true)
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(false),
    }
}

#[cfg(test)]
mod tests;
