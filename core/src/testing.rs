//! The simulated network (feature `test-util`; for tests and benchmarks, never for production):
//! N patients and a [`Hospital`] in memory, a virtual clock, optional dropouts, every message
//! through its wire encoding. `no_std` + `alloc`, so the same code runs natively and on wasm32.
//!
//! [`Network`] is the loop, generic over the patient side ([`SimPatient`]: core's [`Patient`],
//! or a wrapper such as the wasm layer's); [`run_round`] and [`check_round`] run and check one
//! whole round of core patients; [`transpose`] builds the delivery a hospital owes a member.
//! Patients here draw keys from seeded generators: their keys are not secret.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::answer::Answers;
use crate::decimal::Decimal;
use crate::frame::ShareList;
use crate::message::{
    AbandonReason, Delivery, PatientToRelay, RelayToPatient, RoundResult, Shares, Wire,
};
use crate::protocol::{Hospital, HospitalEvent, HospitalOutput, Patient, PatientEvent, PeerId};
use crate::study::StudySpec;

/// How a simulated patient behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs the whole round.
    Honest,
    /// Disconnects instead of sending its shares.
    VanishBeforeShares,
    /// Sends its shares, then disconnects.
    VanishAfterShares,
    /// Its shares never reach the relay (lost, or too late for the deadline), but it stays
    /// connected and answers everything else: a live member that is not a contributor. It
    /// still holds shares of the contributors' values, checks their proofs and sends a
    /// partial sum.
    LateShares,
    /// Contributes its vector changed by this forgery, with the best proof it can make, and
    /// otherwise follows the protocol.
    Forge(crate::proof::Forgery),
}

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Patient to relay.
    Up,
    /// Relay to patient.
    Down,
}

/// One message on the simulated wire, in its encoded form.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Which way it went.
    pub dir: Dir,
    /// The patient that sent or received it (its index, also its [`PeerId`]).
    pub peer: u64,
    /// The virtual time it was sent at.
    pub now_ms: u64,
    /// Its wire encoding (JSON text or a binary frame).
    pub wire: Wire,
}

/// Which frames a [`Network`] keeps in [`Network::frames`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// Every frame.
    All,
    /// Only the frames to and from this patient.
    Peer(u64),
    /// None (large rounds).
    Nothing,
}

/// A patient the [`Network`] can drive: core's [`Patient`], or a wrapper around it.
pub trait SimPatient {
    /// What the patient reports to its user.
    type Event;
    /// Its next message to the relay.
    fn poll_output(&mut self) -> Option<PatientToRelay>;
    /// Hands it a message from the relay; `Err` (with a description) if it refused it.
    fn handle(&mut self, now_ms: u64, msg: RelayToPatient) -> Result<(), String>;
    /// Its next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// Whether its round has ended, one way or another.
    fn is_finished(&self) -> bool;
}

impl SimPatient for Patient {
    type Event = PatientEvent;

    fn poll_output(&mut self) -> Option<PatientToRelay> {
        Patient::poll_output(self)
    }

    fn handle(&mut self, now_ms: u64, msg: RelayToPatient) -> Result<(), String> {
        Patient::handle(self, now_ms, msg).map_err(|e| format!("{e}"))
    }

    fn poll_event(&mut self) -> Option<PatientEvent> {
        Patient::poll_event(self)
    }

    fn is_finished(&self) -> bool {
        Patient::is_finished(self)
    }
}

/// The simulated network: a hospital, its patients (patient `i` is [`PeerId`]`(i)`), and what
/// they did. Drive it with [`Network::run`], or step by step for custom delivery.
pub struct Network<P: SimPatient> {
    /// The relay's state machine.
    pub hospital: Hospital,
    /// The patients, by index.
    pub patients: Vec<P>,
    /// How each patient behaves.
    pub behaviour: Vec<Behaviour>,
    /// Whether each patient has disconnected.
    pub gone: Vec<bool>,
    /// The virtual clock, ms.
    pub now_ms: u64,
    /// Each patient's events, in order.
    pub events: Vec<Vec<P::Event>>,
    /// The hospital's events, in order.
    pub hospital_events: Vec<HospitalEvent>,
    /// The recorded frames (see [`Record`]), in order.
    pub frames: Vec<Frame>,
    /// Each patient's messages from the hospital, not handed over yet.
    pub inbox: Vec<Vec<RelayToPatient>>,
    record: Record,
}

impl<P: SimPatient> Network<P> {
    /// A network of these patients (behaving as given) around this hospital, at time 0,
    /// recording every frame.
    pub fn new(hospital: Hospital, patients: Vec<P>, behaviour: Vec<Behaviour>) -> Self {
        let n = patients.len();
        assert_eq!(n, behaviour.len(), "one behaviour per patient");
        Network {
            hospital,
            patients,
            behaviour,
            gone: vec![false; n],
            now_ms: 0,
            events: (0..n).map(|_| Vec::new()).collect(),
            hospital_events: Vec::new(),
            frames: Vec::new(),
            inbox: (0..n).map(|_| Vec::new()).collect(),
            record: Record::All,
        }
    }

    /// Keeps only these frames from now on.
    pub fn record(mut self, record: Record) -> Self {
        self.record = record;
        self
    }

    fn keep(&mut self, dir: Dir, peer: u64, wire: Wire) {
        let keep = match self.record {
            Record::All => true,
            Record::Peer(p) => p == peer,
            Record::Nothing => false,
        };
        if keep {
            self.frames.push(Frame {
                dir,
                peer,
                now_ms: self.now_ms,
                wire,
            });
        }
    }

    /// Moves every patient's queued messages (through their wire encoding) to the hospital,
    /// applying the patients' behaviours, and collects the patients' events. Returns whether
    /// any message moved.
    pub fn patients_to_hospital(&mut self) -> bool {
        let now = self.now_ms;
        let mut moved = false;
        for i in 0..self.patients.len() {
            let peer = PeerId(i as u64);
            while let Some(msg) = self.patients[i].poll_output() {
                if self.gone[i] {
                    continue;
                }
                moved = true;
                let is_shares = matches!(msg, PatientToRelay::Shares(_));
                if is_shares && self.behaviour[i] == Behaviour::LateShares {
                    continue;
                }
                if is_shares && self.behaviour[i] == Behaviour::VanishBeforeShares {
                    self.gone[i] = true;
                    self.hospital.handle_disconnect(now, peer);
                    continue;
                }
                let wire = msg.encode();
                let msg = PatientToRelay::decode_wire(&wire).expect("patient messages decode");
                self.keep(Dir::Up, i as u64, wire);
                if let Err(e) = self.hospital.handle(now, peer, msg) {
                    // Only a message that crossed the end of the round on the wire may be refused.
                    assert!(
                        self.patients[i].is_finished(),
                        "hospital refused patient {i}: {e}"
                    );
                }
                if is_shares && self.behaviour[i] == Behaviour::VanishAfterShares {
                    self.gone[i] = true;
                    self.hospital.handle_disconnect(now, peer);
                }
            }
            while let Some(e) = self.patients[i].poll_event() {
                self.events[i].push(e);
            }
        }
        moved
    }

    /// Puts one relay message, through its wire encoding (once, as a driver does for a
    /// broadcast), into the inbox of each live patient in `to`.
    fn down(&mut self, to: &[PeerId], msg: &RelayToPatient) {
        let wire = msg.encode();
        for p in to {
            let i = p.0 as usize;
            if self.gone[i] {
                continue; // a real driver drops frames for a closed connection
            }
            let msg = RelayToPatient::decode_wire(&wire).expect("relay messages decode");
            self.keep(Dir::Down, p.0, wire.clone());
            self.inbox[i].push(msg);
        }
    }

    /// Drains the hospital's outputs: its messages (through their wire encoding) into the live
    /// patients' [`Network::inbox`] (a closed connection's are dropped, as a real driver
    /// does), its events into [`Network::hospital_events`]. Returns whether anything came out.
    pub fn hospital_outputs(&mut self) -> bool {
        let mut moved = false;
        while let Some(o) = self.hospital.poll_output() {
            moved = true;
            match o {
                HospitalOutput::Send { to, msg } => self.down(&[to], &msg),
                HospitalOutput::Broadcast { to, msg } => self.down(&to, &msg),
                HospitalOutput::Event(e) => self.hospital_events.push(e),
                HospitalOutput::Attached { .. } | HospitalOutput::Detached { .. } => {}
            }
        }
        moved
    }

    /// Hands every patient its inbox, in order; panics if a patient refuses a message.
    pub fn deliver(&mut self) {
        let now = self.now_ms;
        for (i, (p, inbox)) in self.patients.iter_mut().zip(&mut self.inbox).enumerate() {
            for msg in inbox.drain(..) {
                if let Err(e) = p.handle(now, msg) {
                    panic!("patient {i} refused a hospital message: {e}");
                }
            }
        }
    }

    /// Advances the clock to the hospital's next deadline and fires it; false if it has none.
    pub fn advance_clock(&mut self) -> bool {
        match self.hospital.poll_timeout() {
            Some(t) => {
                self.now_ms = self.now_ms.max(t);
                self.hospital.handle_timeout(self.now_ms);
                true
            }
            None => false,
        }
    }

    /// Runs until nothing moves and the hospital has no deadline left, delivering with
    /// [`Network::deliver`].
    pub fn run(&mut self) {
        self.run_with(Self::deliver);
    }

    /// Like [`Network::run`], with a custom delivery step (for example one that hands the
    /// inboxes over on several threads); `deliver` must empty [`Network::inbox`].
    pub fn run_with(&mut self, mut deliver: impl FnMut(&mut Self)) {
        for _ in 0..1_000_000 {
            let up = self.patients_to_hospital();
            let down = self.hospital_outputs();
            deliver(self);
            if !up && !down && !self.advance_clock() {
                return;
            }
        }
        panic!("the simulated network did not settle");
    }
}

/// What a round of [`run_round`] produced.
pub struct Outcome {
    /// The result each patient saw, if any.
    pub results: Vec<Option<RoundResult>>,
    /// The abandonment each patient saw, if any.
    pub abandoned: Vec<Option<AbandonReason>>,
    /// The safety code each patient showed, if it got a roster.
    pub safety_codes: Vec<Option<String>>,
    /// The hospital's events.
    pub events: Vec<HospitalEvent>,
    /// Every frame, in order.
    pub frames: Vec<Frame>,
}

/// Runs one round of `spec` with core patients of these values and behaviours. Patients draw
/// their keys and share randomness from one ChaCha20 generator seeded with `seed`, so a round
/// is a pure function of its arguments. Panics if a patient refuses the round.
pub fn run_round(
    spec: &StudySpec,
    values: &[Decimal],
    behaviour: &[Behaviour],
    seed: u64,
) -> Outcome {
    let answers: Vec<Answers> = values.iter().map(|v| Answers::single(*v)).collect();
    run_round_answers(spec, &answers, behaviour, seed)
}

/// [`run_round`] for a questionnaire: each core patient joins with its [`Answers`].
pub fn run_round_answers(
    spec: &StudySpec,
    answers: &[Answers],
    behaviour: &[Behaviour],
    seed: u64,
) -> Outcome {
    assert_eq!(answers.len(), behaviour.len());
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let hospital = Hospital::new(spec.clone(), 1).expect("valid spec");
    let patients: Vec<Patient> = answers
        .iter()
        .zip(behaviour)
        .map(|(a, b)| {
            let p = Patient::with_answers(
                0,
                &spec.params.id,
                a.clone(),
                Some(spec.params.clone()),
                spec.invite.clone(),
                &mut rng,
            )
            .expect("valid value");
            match b {
                Behaviour::Forge(f) => p.forging(*f),
                _ => p,
            }
        })
        .collect();
    let n = patients.len();
    let mut net = Network::new(hospital, patients, behaviour.to_vec());
    net.run();
    let mut out = Outcome {
        results: vec![None; n],
        abandoned: vec![None; n],
        safety_codes: vec![None; n],
        events: net.hospital_events,
        frames: net.frames,
    };
    for (i, events) in net.events.into_iter().enumerate() {
        for e in events {
            match e {
                PatientEvent::Completed(r) => out.results[i] = Some(r),
                PatientEvent::Abandoned { reason, .. } => out.abandoned[i] = Some(reason),
                PatientEvent::RosterFrozen { safety_code, .. } => {
                    out.safety_codes[i] = Some(safety_code.as_str().to_owned())
                }
                PatientEvent::Refused(err) => panic!("patient {i} refused: {err}"),
                _ => {}
            }
        }
    }
    out
}

/// A study in flag form with `n` patients, threshold `t` and a minimum cohort of `min_cohort`
/// (id `sim`, 0 to 300 with one decimal, ten buckets).
pub fn spec(n: usize, t: usize, min_cohort: usize) -> StudySpec {
    format!(
        "id=sim,size={n},threshold={t},min=0,max=300,decimals=1,buckets=10,min_cohort={min_cohort}"
    )
    .parse()
    .expect("valid study")
}

/// Values `0.0..=300.0` with one decimal from a seeded generator.
pub fn values(n: usize, seed: u64) -> Vec<Decimal> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| Decimal::new((rng.next_u64() % 3001) as i64, 1).expect("small"))
        .collect()
}

/// Checks a result of a [`spec`] study against the values it should include: count, histogram
/// and (one decimal) sum exactly, mean and standard deviation to float precision.
pub fn assert_exact(r: &RoundResult, included: &[Decimal]) {
    let xs: Vec<f64> = included.iter().map(|v| v.to_f64()).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = libm::sqrt(xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n);
    let s = r
        .statistics
        .as_ref()
        .expect("a one-question study's statistics");
    assert_eq!(s.count, included.len() as u64);
    assert!(libm::fabs(s.mean - mean) < 1e-9, "mean");
    assert!(libm::fabs(s.stddev - sd) < 1e-6, "stddev");
    let sum: i64 = included
        .iter()
        .map(|v| v.to_scaled(1).expect("1 decimal"))
        .sum();
    assert!(libm::fabs(s.sum - sum as f64 / 10.0) < 1e-6, "sum");
    let mut hist = vec![0u64; 10];
    for v in included {
        let x = v.to_scaled(1).expect("1 decimal") as usize;
        hist[(x * 10 / 3000).min(9)] += 1;
    }
    assert_eq!(s.histogram, hist);
}

/// Runs a round of [`spec`]`(n, t, min(3, n))` over [`values`]`(n, seed)` and checks it: every
/// patient shows one safety code; every honest patient sees the same exact result, or (when
/// `expect_abandon` is given) every honest patient sees that abandonment and nothing is
/// revealed.
pub fn check_round(
    n: usize,
    t: usize,
    behaviour: &[Behaviour],
    seed: u64,
    expect_abandon: Option<AbandonReason>,
) -> Outcome {
    let spec = spec(n, t, 3.min(n));
    let vals = values(n, seed);
    let out = run_round(&spec, &vals, behaviour, seed);
    let honest: Vec<usize> = (0..n)
        .filter(|&i| behaviour[i] == Behaviour::Honest)
        .collect();
    let codes: Vec<&String> = out.safety_codes.iter().flatten().collect();
    assert_eq!(codes.len(), n, "every patient saw the roster");
    assert!(codes.iter().all(|c| *c == codes[0]), "one safety code");
    match expect_abandon {
        None => {
            let included: Vec<Decimal> = vals
                .iter()
                .zip(included(&spec, behaviour))
                .filter(|(_, inc)| *inc)
                .map(|(v, _)| *v)
                .collect();
            let first = out.results[honest[0]].clone().expect("round completed");
            assert_exact(&first, &included);
            assert_eq!(first.safety_code.as_str(), codes[0].as_str());
            for (r, b) in out.results.iter().zip(behaviour) {
                assert_eq!(r.is_some(), stays_connected(*b));
                if let Some(r) = r {
                    assert_eq!(r, &first, "every patient sees the same result");
                }
            }
            assert!(out.events.iter().any(
                |e| matches!(e, HospitalEvent::Completed(o) if o.statistics == first.statistics)
            ));
        }
        Some(reason) => {
            for &i in &honest {
                assert!(out.results[i].is_none());
                assert_eq!(out.abandoned[i].as_ref(), Some(&reason));
            }
            assert!(
                !out.events
                    .iter()
                    .any(|e| matches!(e, HospitalEvent::Completed(_)))
            );
            assert!(!out.frames.iter().any(|f| {
                f.wire
                    .as_text()
                    .is_some_and(|t| t.contains("\"type\":\"result\""))
            }));
        }
    }
    out
}

/// Whether a patient behaving so stays to the end of the round (and so sees its result).
pub fn stays_connected(b: Behaviour) -> bool {
    matches!(b, Behaviour::Honest | Behaviour::LateShares)
}

/// Which members' values a round with `behaviour` includes: those that sent their shares; in a
/// study with validity proofs, those that also stayed for the delivery (to check the others)
/// and of whose next two members (cyclically) one stayed to check their proof (a proof nobody
/// could check is left out as `not_verified`).
pub fn included(spec: &StudySpec, behaviour: &[Behaviour]) -> Vec<bool> {
    let n = behaviour.len();
    (0..n)
        .map(|i| {
            if spec.params.proofs {
                // A contributor must stay to check the others, and one of the next two members
                // must have stayed to check it (see `proof::checker_of`).
                let stays = |j: usize| behaviour[j % n] == Behaviour::Honest && j % n != i;
                behaviour[i] == Behaviour::Honest && (stays(i + 1) || stays(i + 2))
            } else {
                !matches!(
                    behaviour[i],
                    Behaviour::VanishBeforeShares | Behaviour::LateShares
                )
            }
        })
        .collect()
}

/// The delivery the hospital owes roster member `to` (1-based) in `round` when every member
/// contributed: the share from each other member, in index order, as the core's Hospital
/// builds it. `by_member[k]` is member k + 1's `shares` message. `None` if a member sent
/// nothing to `to`.
pub fn transpose(by_member: &[Shares], to: u32, round: u64) -> Option<Delivery> {
    let n = by_member.len() as u32;
    let sealed_len = by_member.first()?.shares.sealed_len();
    let mut shares = ShareList::with_capacity(sealed_len, by_member.len().saturating_sub(1));
    for from in (1..=n).filter(|&i| i != to) {
        let sent = &by_member[from as usize - 1].shares;
        // A patient lists its shares in roster order, skipping itself: try that place first.
        let pos = if to < from { to - 1 } else { to - 2 } as usize;
        let sealed = match (pos < sent.len()).then(|| sent.get(pos)) {
            Some((j, s)) if j == to => s,
            _ => sent.iter().find(|(j, _)| *j == to)?.1,
        };
        if !shares.push(from, sealed) {
            return None;
        }
    }
    // The correction of the dealer `to` leads (additive rounds with proofs): its checkee's.
    let checkee = if to == 1 { n } else { to - 1 };
    let mut extra = ShareList::with_capacity(0, 0);
    if let Some((j, sealed)) = by_member[checkee as usize - 1].extra.iter().next()
        && j == to
        && checkee != to
    {
        extra = ShareList::with_capacity(sealed.len(), 1);
        extra.push(checkee, sealed);
    }
    Some(Delivery {
        round,
        contributors: (1..=n).collect(),
        shares,
        extra,
    })
}
