//! The hospital's side of one study, round after round. Runs inside the relay.
//!
//! ```text
//!            join × size (or start_round with ≥ min cohort, or enrolment deadline)
//! Enrolling ─────────────────────────────────────────────▶ AwaitingReveals ──all reveals──▶ AwaitingShares
//!   ▲                                                         │ all live members sent shares,
//!   │                                                         │ or the shares deadline
//!   │            result / abandoned                           ▼
//!   └──────────────────────────────────────────────── AwaitingPartialSums ◀──┐
//!                                                  all live members sent,  │ all verdicts,
//!                                                  or the deadline         │ or the deadline
//!                                                                          │
//!   with validity proofs, after the shares: AwaitingVerify ──all verify──▶ AwaitingVerdicts
//! ```
//!
//! With validity proofs (the study's `proofs`, on by default) the delivery is followed by the
//! proof steps (`hospital/verification.rs`): the hospital adds up (additive rounds) or routes
//! (Shamir rounds) the masked verifier entries for each checker, forwards the verdicts with the
//! sum of each member's verdict tags, and the contributor set of the partial sums is
//! the contributors whose proof a checker found valid.
//!
//! Patients that join while a round runs enrol for the next one. The hospital never sees a
//! share in clear: it routes sealed shares (batched per recipient), and reconstructs only the
//! aggregate from partial sums.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::commitment::{Commitment, Revealed};
use crate::encoding::Statistics;
use crate::envelope::PublicKey;
use crate::error::{ProtocolError, StudyError};
use crate::field::Fe;
use crate::frame::ShareList;
use crate::message::{
    AbandonReason, Abandoned, Delivery, Enrolment, ErrorMsg, Join, Keys, PROTOCOL_VERSION,
    PartialSumOf, PatientToRelay, RelayToPatient, Reveal, RosterMsg, RoundResult, Welcome,
};
use crate::proof::{Exclusion, ProofSetup, Verdict};
use crate::protocol::aggregate::aggregate;
use crate::questionnaire::QuestionnaireResult;
use crate::roster::{Member, Roster, SafetyCode};
use crate::sharing::Scheme;
use crate::study::StudySpec;

mod verification;

/// How often, at most, enrolment progress is broadcast to waiting patients.
pub const ENROLMENT_BROADCAST_MS: u64 = 250;

/// The driver's name for a connection. Unique per relay for the connection's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

/// What the hospital wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum HospitalOutput {
    /// Send a message to a patient.
    Send {
        /// Recipient connection.
        to: PeerId,
        /// The message.
        msg: RelayToPatient,
    },
    /// Send one message to each of these patients, in this order: the same bytes for all, so
    /// a driver encodes it once (the enrolment, roster, keys, result and abandonment).
    Broadcast {
        /// Recipient connections.
        to: Vec<PeerId>,
        /// The message.
        msg: RelayToPatient,
    },
    /// Something the dashboard and the store should know.
    Event(HospitalEvent),
    /// `peer`'s join was accepted: it is a member of this study until a matching
    /// [`HospitalOutput::Detached`]. The driver routes the connection's messages here.
    Attached {
        /// The connection.
        peer: PeerId,
    },
    /// `peer` is not (or no longer) a member of this study: its join was refused, it left or
    /// disconnected, or its round ended (after the `result` or `abandoned` sent to it). The
    /// driver stops routing the connection's messages here; the connection may join again.
    Detached {
        /// The connection.
        peer: PeerId,
    },
}

/// A completed round, as stored and shown on the dashboard. Its JSON is the API's `ResultRow`
/// without `bucket_edges`: the statistics' fields are flattened into the object and the times
/// are `started_at_ms` / `finished_at_ms` (docs/API.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundOutcome {
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// Revealed statistics of a one-question study (`None` for a study with `questions`;
    /// flattened into the JSON object).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    /// Revealed result of the questionnaire (a one-question study's one question is `value`).
    pub questionnaire: QuestionnaireResult,
    /// Roster size.
    pub roster_size: u32,
    /// Threshold used.
    pub threshold: u32,
    /// Indices whose values are included.
    pub contributors: Vec<u32>,
    /// Partial sums received.
    pub partial_sums: u32,
    /// Members left out because their validity proof failed or could not be checked (omitted
    /// from JSON when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Exclusion>,
    /// Safety code of the round.
    pub safety_code: SafetyCode,
    /// When the roster was frozen (driver's clock, ms).
    #[serde(rename = "started_at_ms")]
    pub started_ms: u64,
    /// When the result was computed (driver's clock, ms).
    #[serde(rename = "finished_at_ms")]
    pub finished_ms: u64,
}

/// Events for the dashboard and the store.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HospitalEvent {
    /// Enrolment changed.
    Enrolment {
        /// Study id.
        study: String,
        /// Round being enrolled.
        round: u64,
        /// Patients enrolled.
        enrolled: u32,
        /// Cohort size.
        size: u32,
    },
    /// A roster was frozen.
    RoundStarted {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Roster size.
        roster_size: u32,
        /// Threshold.
        threshold: u32,
        /// The relay's safety code for the round.
        safety_code: SafetyCode,
        /// When (ms).
        started_ms: u64,
    },
    /// The members revealed their keys; the round's safety code is now known. (`RoundStarted`
    /// came at the roster freeze, with [`SafetyCode::pending`].)
    KeysRevealed {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Roster size.
        roster_size: u32,
        /// Threshold.
        threshold: u32,
        /// Members whose reveals were forwarded (the others are left out like dropouts).
        revealed: u32,
        /// The relay's safety code for the round.
        safety_code: SafetyCode,
    },
    /// Shares were delivered to the contributor set.
    SharesDelivered {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Number of contributors.
        contributors: u32,
    },
    /// Every checker's verdict is in (rounds with validity proofs): the contributor set of the
    /// partial sums is fixed.
    ProofsChecked {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Contributors whose proof held.
        accepted: u32,
        /// Contributors left out, with the reason.
        excluded: Vec<Exclusion>,
    },
    /// A round completed.
    Completed(RoundOutcome),
    /// A round was abandoned; nothing was revealed.
    Abandoned {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Why.
        reason: AbandonReason,
        /// Safety code of the round.
        safety_code: SafetyCode,
        /// When the roster was frozen (ms).
        started_ms: u64,
        /// When it was abandoned (ms).
        finished_ms: u64,
    },
}

/// What a running round waits for. On the wire and in the API: `"awaiting shares"` or
/// `"awaiting partial sums"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundPhase {
    /// Each member's `reveal` (its key and nonce, checked against its commitment).
    #[serde(rename = "awaiting reveals")]
    AwaitingReveals,
    /// Each member's `shares`.
    #[serde(rename = "awaiting shares")]
    AwaitingShares,
    /// Each member's `verify` (its verifier shares; rounds with proofs).
    #[serde(rename = "awaiting verifier shares")]
    AwaitingVerify,
    /// Each checker's `verdict` (rounds with proofs).
    #[serde(rename = "awaiting verdicts")]
    AwaitingVerdicts,
    /// Each member's `partial_sum`.
    #[serde(rename = "awaiting partial sums")]
    AwaitingPartialSums,
}

impl RoundPhase {
    /// The phase as shown in the API and in errors, e.g. `"awaiting shares"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundPhase::AwaitingReveals => "awaiting reveals",
            RoundPhase::AwaitingShares => "awaiting shares",
            RoundPhase::AwaitingVerify => "awaiting verifier shares",
            RoundPhase::AwaitingVerdicts => "awaiting verdicts",
            RoundPhase::AwaitingPartialSums => "awaiting partial sums",
        }
    }
}

impl core::fmt::Display for RoundPhase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The running round's phase and counters, for the dashboard and the API (`running` in
/// docs/API.md's `StudyStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundStatus {
    /// Round id.
    pub round: u64,
    /// What the round waits for.
    pub phase: RoundPhase,
    /// Roster size.
    pub roster_size: u32,
    /// Threshold.
    pub threshold: u32,
    /// Members still connected.
    pub live: u32,
    /// Shares frames or partial sums received in this phase.
    pub received: u32,
    /// The relay's safety code.
    pub safety_code: SafetyCode,
}

/// A study's status, for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyStatus {
    /// Round being enrolled.
    pub enrolling_round: u64,
    /// Patients enrolled for it.
    pub enrolled: u32,
    /// Cohort size.
    pub size: u32,
    /// The running round, if any.
    pub running: Option<RoundStatus>,
}

#[allow(clippy::enum_variant_names)] // named by what each state waits for, as in patient.rs
enum RoundState {
    AwaitingReveals {
        reveals: Vec<Option<Revealed>>,
        count: u32,
    },
    AwaitingShares {
        /// Each sender's sealed shares as they arrived: one buffer per sender, one entry per
        /// other keyed member in ascending roster order (checked on arrival), and its sealed
        /// correction (additive rounds with proofs; else empty).
        received: Vec<Option<(ShareList, ShareList)>>,
        count: u32,
    },
    AwaitingVerify {
        contributors: Vec<u32>,
        /// Which members sent their `verify`.
        received: Vec<bool>,
        /// Additive rounds: the running sums of the entries, by dealer.
        sums: crate::proof::CheckSums,
        /// Shamir rounds: each member's entries (tagged with the dealer), forwarded as they are.
        lists: Vec<Option<ShareList>>,
        count: u32,
    },
    AwaitingVerdicts {
        contributors: Vec<u32>,
        /// By dealer (index − 1): the checker of its proof, if any.
        checkers: Vec<Option<u32>>,
        /// By dealer: the checker's verdict.
        received: Vec<Option<Verdict>>,
        /// By recipient: the sum of the verdict tags addressed to it.
        tags: crate::proof::VerdictTags,
        count: u32,
    },
    AwaitingPartialSums {
        contributors: Vec<u32>,
        excluded: Vec<Exclusion>,
        partials: Vec<Option<Vec<Fe>>>,
        count: u32,
    },
}

impl RoundState {
    /// The phase this state waits in.
    fn phase(&self) -> RoundPhase {
        match self {
            RoundState::AwaitingReveals { .. } => RoundPhase::AwaitingReveals,
            RoundState::AwaitingShares { .. } => RoundPhase::AwaitingShares,
            RoundState::AwaitingVerify { .. } => RoundPhase::AwaitingVerify,
            RoundState::AwaitingVerdicts { .. } => RoundPhase::AwaitingVerdicts,
            RoundState::AwaitingPartialSums { .. } => RoundPhase::AwaitingPartialSums,
        }
    }
}

struct Round {
    roster: Roster,
    scheme: Scheme,
    peers: Vec<PeerId>,
    index_of: BTreeMap<PeerId, u32>,
    live: Vec<bool>,
    safety: SafetyCode,
    /// Members whose keys were forwarded in `keys` (all false before).
    keyed: Vec<bool>,
    /// How many.
    revealed: u32,
    started_ms: u64,
    deadline: u64,
    state: RoundState,
}

impl Round {
    fn live_count(&self) -> u32 {
        self.live.iter().filter(|&&l| l).count() as u32
    }

    /// The connections of the members still in the round, in roster order.
    fn live_peers(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .zip(&self.live)
            .filter(|(_, l)| **l)
            .map(|(p, _)| *p)
            .collect()
    }
}

/// The hospital's state machine for one study.
pub struct Hospital {
    spec: StudySpec,
    next_round: u64,
    enrolling: Vec<(PeerId, Commitment)>,
    enrol_started: Option<u64>,
    broadcast_due: Option<u64>,
    round: Option<Round>,
    out: VecDeque<HospitalOutput>,
    /// The study's proof system, if it has validity proofs.
    proofs: Option<ProofSetup>,
}

impl core::fmt::Debug for Hospital {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hospital")
            .field("study", &self.spec.params.id)
            .field("next_round", &self.next_round)
            .field("enrolled", &self.enrolling.len())
            .field("running", &self.round.as_ref().map(|r| r.roster.round))
            .finish()
    }
}

/// The encodings of X25519 public keys of low order, top bit clear (libsodium's list): 0, 1,
/// the two points of order 8, p − 1, and the non-canonical p and p + 1 (p = 2^255 − 19). A
/// clamped scalar is a multiple of the cofactor and below the prime order, so X25519 with
/// one of these (and only these) gives an all-zero shared secret.
const LOW_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether an X25519 public key is a low-order point (its shared secret with anyone is zero).
/// A table lookup: it runs on every join, in the study's one task, and an X25519 probe there
/// cost about 53 µs per join (cohort-bench, docs/BENCHMARKS.md).
fn is_weak_key(key: &PublicKey) -> bool {
    let mut u = key.0;
    u[31] &= 0x7f; // X25519 ignores the top bit.
    LOW_ORDER.contains(&u)
}

impl Hospital {
    /// A hospital for `spec` whose first round will be `first_round` (the driver passes one
    /// past the last round it has stored, so round ids never repeat across restarts).
    pub fn new(spec: StudySpec, first_round: u64) -> Result<Hospital, StudyError> {
        spec.validate()?;
        let proofs = if spec.params.proofs {
            Some(ProofSetup::new(&spec.params).map_err(|_| StudyError::TooLarge)?)
        } else {
            None
        };
        Ok(Hospital {
            spec,
            next_round: first_round,
            enrolling: Vec::new(),
            enrol_started: None,
            broadcast_due: None,
            round: None,
            out: VecDeque::new(),
            proofs,
        })
    }

    /// The study.
    pub fn spec(&self) -> &StudySpec {
        &self.spec
    }

    /// Current status.
    pub fn status(&self) -> StudyStatus {
        StudyStatus {
            enrolling_round: self.next_round,
            enrolled: self.enrolling.len() as u32,
            size: self.spec.params.size,
            running: self.round.as_ref().map(|r| {
                let (phase, received) = match &r.state {
                    RoundState::AwaitingReveals { count, .. } => {
                        (RoundPhase::AwaitingReveals, *count)
                    }
                    RoundState::AwaitingShares { count, .. } => {
                        (RoundPhase::AwaitingShares, *count)
                    }
                    RoundState::AwaitingVerify { count, .. } => {
                        (RoundPhase::AwaitingVerify, *count)
                    }
                    RoundState::AwaitingVerdicts { count, .. } => {
                        (RoundPhase::AwaitingVerdicts, *count)
                    }
                    RoundState::AwaitingPartialSums { count, .. } => {
                        (RoundPhase::AwaitingPartialSums, *count)
                    }
                };
                RoundStatus {
                    round: r.roster.round,
                    phase,
                    roster_size: r.roster.n(),
                    threshold: r.roster.threshold,
                    live: r.live_count(),
                    received,
                    safety_code: r.safety.clone(),
                }
            }),
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<HospitalOutput> {
        self.out.pop_front()
    }

    /// The earliest time [`Hospital::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        let enrol = match (
            self.enrol_started,
            self.spec.deadlines.enrol_ms,
            &self.round,
        ) {
            // No enrolment deadline once round ids are exhausted (start_round would refuse).
            (Some(t0), Some(ms), None)
                if self.enrolling.len() as u32 >= self.min_to_start()
                    && self.next_round < u64::MAX =>
            {
                Some(t0.saturating_add(ms))
            }
            _ => None,
        };
        [
            enrol,
            self.broadcast_due,
            self.round.as_ref().map(|r| r.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acts on every deadline that has passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.broadcast_due.is_some_and(|t| now_ms >= t) {
            self.broadcast_due = None;
            self.broadcast_enrolment();
        }
        if self.round.as_ref().is_some_and(|r| now_ms >= r.deadline) {
            match self.round.as_ref().map(|r| &r.state) {
                Some(RoundState::AwaitingReveals { count, .. }) => {
                    let got = *count;
                    self.reveals_settled(now_ms, got);
                }
                Some(RoundState::AwaitingShares { .. }) => self.deliver(now_ms),
                Some(RoundState::AwaitingVerify { .. }) => self.send_checks(now_ms),
                Some(RoundState::AwaitingVerdicts { .. }) => self.settle_verdicts(now_ms),
                Some(RoundState::AwaitingPartialSums { .. }) => self.finish(now_ms),
                None => {}
            }
        }
        if let (Some(t0), Some(ms), None) = (
            self.enrol_started,
            self.spec.deadlines.enrol_ms,
            &self.round,
        ) && now_ms >= t0.saturating_add(ms)
            && self.enrolling.len() as u32 >= self.min_to_start()
        {
            let _ = self.start_round(now_ms);
        }
    }

    fn min_to_start(&self) -> u32 {
        self.spec.params.min_cohort.max(2)
    }

    fn emit(&mut self, to: PeerId, msg: RelayToPatient) {
        self.out.push_back(HospitalOutput::Send { to, msg });
    }

    /// One message for each of `to` (nothing if `to` is empty).
    fn broadcast(&mut self, to: Vec<PeerId>, msg: RelayToPatient) {
        if !to.is_empty() {
            self.out.push_back(HospitalOutput::Broadcast { to, msg });
        }
    }

    fn detach_all(&mut self, peers: Vec<PeerId>) {
        for peer in peers {
            self.out.push_back(HospitalOutput::Detached { peer });
        }
    }

    fn event(&mut self, e: HospitalEvent) {
        self.out.push_back(HospitalOutput::Event(e));
    }

    fn enrolment_event(&mut self) {
        self.event(HospitalEvent::Enrolment {
            study: self.spec.params.id.clone(),
            round: self.next_round,
            enrolled: self.enrolling.len() as u32,
            size: self.spec.params.size,
        });
    }

    fn broadcast_enrolment(&mut self) {
        let msg = Enrolment {
            v: PROTOCOL_VERSION,
            round: self.next_round,
            enrolled: self.enrolling.len() as u32,
            size: self.spec.params.size,
        };
        let to: Vec<PeerId> = self.enrolling.iter().map(|(p, _)| *p).collect();
        self.broadcast(to, RelayToPatient::Enrolment(msg));
    }

    fn schedule_broadcast(&mut self, now_ms: u64) {
        if self.broadcast_due.is_none() {
            self.broadcast_due = Some(now_ms + ENROLMENT_BROADCAST_MS);
        }
    }

    /// Handles one message from connection `from`.
    ///
    /// A refused message is answered here: the `error` reply to send is queued as a
    /// [`HospitalOutput::Send`] (and a refused join is followed by
    /// [`HospitalOutput::Detached`]), so the driver only logs the returned error.
    pub fn handle(
        &mut self,
        now_ms: u64,
        from: PeerId,
        msg: PatientToRelay,
    ) -> Result<(), ProtocolError> {
        let is_join = matches!(msg, PatientToRelay::Join(_));
        let r = match msg {
            PatientToRelay::Join(j) => self.on_join(now_ms, from, j),
            PatientToRelay::Reveal(r) => self.on_reveal(now_ms, from, r),
            PatientToRelay::Shares(s) => self.on_shares(now_ms, from, s.round, s.shares, s.extra),
            PatientToRelay::Verify(v) => self.on_verify(now_ms, from, v),
            PatientToRelay::Verdict(v) => self.on_verdict(now_ms, from, v),
            PatientToRelay::PartialSum(p) => self.on_partial(now_ms, from, p.round, p.sum),
            PatientToRelay::Leave(_) => {
                self.handle_disconnect(now_ms, from);
                Ok(())
            }
        };
        if let Err(e) = &r {
            self.emit(from, RelayToPatient::Error(ErrorMsg::refusing(e)));
            if is_join && !self.is_member(from) {
                self.out.push_back(HospitalOutput::Detached { peer: from });
            }
        }
        r
    }

    fn is_member(&self, peer: PeerId) -> bool {
        self.enrolling.iter().any(|(p, _)| *p == peer)
            || self.round.as_ref().is_some_and(|r| {
                r.index_of
                    .get(&peer)
                    .is_some_and(|&i| r.live[i as usize - 1])
            })
    }

    fn on_join(&mut self, now_ms: u64, from: PeerId, j: Join) -> Result<(), ProtocolError> {
        if j.study != self.spec.params.id {
            return Err(ProtocolError::WrongStudy);
        }
        if let Some(code) = &self.spec.invite {
            let given = j.invite.as_deref().unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(code.as_bytes())) {
                return Err(ProtocolError::BadInvite);
            }
        }
        if self.is_member(from) {
            return Err(ProtocolError::AlreadyJoined);
        }
        if self.enrolling.len() as u32 >= self.spec.params.size {
            return Err(ProtocolError::StudyFull);
        }
        if self.enrolling.iter().any(|(_, k)| *k == j.commitment) {
            return Err(ProtocolError::DuplicateKey);
        }
        self.enrolling.push((from, j.commitment));
        if self.enrol_started.is_none() {
            self.enrol_started = Some(now_ms);
        }
        self.out.push_back(HospitalOutput::Attached { peer: from });
        self.emit(
            from,
            RelayToPatient::Welcome(Welcome {
                v: PROTOCOL_VERSION,
                study: self.spec.params.clone(),
                round: self.next_round,
                enrolled: self.enrolling.len() as u32,
            }),
        );
        self.enrolment_event();
        if self.round.is_none() && self.enrolling.len() as u32 >= self.spec.params.size {
            self.start_round(now_ms)?;
        } else {
            self.schedule_broadcast(now_ms);
        }
        Ok(())
    }

    /// Freezes the roster from the patients enrolled so far (the dashboard's "start now"; also
    /// called when enrolment is full or its deadline passes). Needs no running round and at
    /// least the study's minimum cohort.
    pub fn start_round(&mut self, now_ms: u64) -> Result<(), ProtocolError> {
        if self.round.is_some() {
            return Err(ProtocolError::WrongState {
                state: "a round is running",
                got: "start",
            });
        }
        let enrolled = self.enrolling.len() as u32;
        if enrolled < self.min_to_start() {
            return Err(ProtocolError::NotEnoughPatients {
                enrolled,
                needed: self.min_to_start(),
            });
        }
        // Round ids never repeat: after u64::MAX there is none left (found by fuzzing: a
        // hospital created with first_round = u64::MAX overflowed here).
        let Some(next_round) = self.next_round.checked_add(1) else {
            return Err(ProtocolError::WrongState {
                state: "out of round ids",
                got: "start",
            });
        };
        let n = enrolled.min(self.spec.params.size);
        let taken: Vec<(PeerId, Commitment)> = self.enrolling.drain(..n as usize).collect();
        let roster = Roster {
            study: self.spec.params.clone(),
            round: self.next_round,
            threshold: self.spec.params.round_threshold(n),
            members: taken
                .iter()
                .enumerate()
                .map(|(i, (_, k))| Member {
                    index: i as u32 + 1,
                    commitment: *k,
                })
                .collect(),
        };
        self.next_round = next_round;
        self.enrol_started = if self.enrolling.is_empty() {
            None
        } else {
            Some(now_ms)
        };
        self.broadcast_due = None;
        let safety = SafetyCode::pending();
        let peers: Vec<PeerId> = taken.iter().map(|(p, _)| *p).collect();
        self.broadcast(
            peers.clone(),
            RelayToPatient::Roster(RosterMsg {
                v: PROTOCOL_VERSION,
                roster: roster.clone(),
            }),
        );
        self.event(HospitalEvent::RoundStarted {
            study: self.spec.params.id.clone(),
            round: roster.round,
            roster_size: n,
            threshold: roster.threshold,
            safety_code: safety.clone(),
            started_ms: now_ms,
        });
        let index_of = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32 + 1))
            .collect();
        let scheme = Scheme::new(n, roster.threshold).map_err(|_| ProtocolError::BadRoster)?;
        self.round = Some(Round {
            scheme,
            state: RoundState::AwaitingReveals {
                reveals: (0..n).map(|_| None).collect(),
                count: 0,
            },
            live: alloc::vec![true; n as usize],
            roster,
            peers,
            index_of,
            safety,
            keyed: alloc::vec![false; n as usize],
            revealed: 0,
            started_ms: now_ms,
            deadline: now_ms.saturating_add(self.spec.deadlines.shares_ms),
        });
        if !self.enrolling.is_empty() {
            self.enrolment_event();
            self.schedule_broadcast(now_ms);
        }
        Ok(())
    }

    fn member_index(&self, from: PeerId, round: u64) -> Result<u32, ProtocolError> {
        let r = self.round.as_ref().ok_or(ProtocolError::WrongState {
            state: "enrolling",
            got: "round message",
        })?;
        let i = *r.index_of.get(&from).ok_or(ProtocolError::NotInRoster)?;
        if !r.live[i as usize - 1] {
            return Err(ProtocolError::NotInRoster);
        }
        if round != r.roster.round {
            return Err(ProtocolError::WrongRound {
                got: round,
                current: r.roster.round,
            });
        }
        Ok(i)
    }

    fn on_reveal(&mut self, now_ms: u64, from: PeerId, rv: Reveal) -> Result<(), ProtocolError> {
        let me = self.member_index(from, rv.round)?;
        let r = self.round.as_mut().expect("member_index checked");
        let study = &r.roster.study.id;
        let commitment = r.roster.members[me as usize - 1].commitment;
        let RoundState::AwaitingReveals { reveals, count } = &mut r.state else {
            return Err(ProtocolError::WrongState {
                state: "awaiting shares or partial sums",
                got: "reveal",
            });
        };
        if reveals[me as usize - 1].is_some() {
            return Err(ProtocolError::DuplicateShares);
        }
        let revealed = Revealed {
            index: me,
            public_key: rv.public_key,
            nonce: rv.nonce,
        };
        if !revealed.opens(study, &commitment) {
            return Err(ProtocolError::RevealMismatch { index: me });
        }
        if is_weak_key(&rv.public_key) {
            return Err(ProtocolError::WeakKey);
        }
        if reveals
            .iter()
            .flatten()
            .any(|o| o.public_key == rv.public_key)
        {
            return Err(ProtocolError::DuplicateKey);
        }
        reveals[me as usize - 1] = Some(revealed);
        *count += 1;
        let got = *count;
        if self.all_live_reported() {
            self.reveals_settled(now_ms, got);
        }
        Ok(())
    }

    /// Every live member revealed, or the deadline passed: go on with the revealed members if
    /// the round can still complete (at least t, at least the minimum cohort, and all n in an
    /// additive round), else abandon. Members that did not reveal are left out like dropouts.
    fn reveals_settled(&mut self, now_ms: u64, got: u32) {
        let Some(r) = &self.round else { return };
        let n = r.roster.n();
        let needed = if r.roster.threshold == n {
            n
        } else {
            r.roster.threshold.max(r.roster.study.min_cohort)
        };
        if got < needed {
            self.abandon(now_ms, AbandonReason::MissingReveals { got, needed });
        } else {
            self.publish_keys(now_ms);
        }
    }

    /// All members revealed: forward every reveal to every member, fix the safety code and
    /// wait for shares.
    fn publish_keys(&mut self, now_ms: u64) {
        let Some(mut r) = self.round.take() else {
            return;
        };
        let RoundState::AwaitingReveals { reveals, .. } = &mut r.state else {
            self.round = Some(r);
            return;
        };
        // A connected member without a valid reveal is told and detached: the round goes on
        // without it (found by the hospital_handle fuzz target: it used to stay attached).
        let mut left_out = Vec::new();
        for (i, rv) in reveals.iter().enumerate() {
            if rv.is_none() && r.live[i] {
                r.live[i] = false;
                left_out.push(r.peers[i]);
            }
        }
        let round = r.roster.round;
        for peer in left_out {
            let e = ProtocolError::RevealTooLate { round };
            self.emit(peer, RelayToPatient::Error(ErrorMsg::refusing(&e)));
            self.out.push_back(HospitalOutput::Detached { peer });
        }
        let reveals: Vec<Revealed> = reveals.drain(..).flatten().collect();
        let revealed = reveals.len() as u32;
        for rv in &reveals {
            r.keyed[rv.index as usize - 1] = true;
        }
        r.revealed = revealed;
        r.safety = r.roster.safety_code(&reveals);
        let msg = Keys {
            v: PROTOCOL_VERSION,
            round: r.roster.round,
            reveals,
        };
        let live = r.live_peers();
        self.broadcast(live, RelayToPatient::Keys(msg));
        self.event(HospitalEvent::KeysRevealed {
            study: self.spec.params.id.clone(),
            round: r.roster.round,
            roster_size: r.roster.n(),
            threshold: r.roster.threshold,
            revealed,
            safety_code: r.safety.clone(),
        });
        let n = r.roster.n();
        r.state = RoundState::AwaitingShares {
            received: (0..n).map(|_| None).collect(),
            count: 0,
        };
        r.deadline = now_ms.saturating_add(self.spec.deadlines.shares_ms);
        self.round = Some(r);
    }

    fn on_shares(
        &mut self,
        now_ms: u64,
        from: PeerId,
        round: u64,
        shares: ShareList,
        extra: ShareList,
    ) -> Result<(), ProtocolError> {
        let me = self.member_index(from, round)?;
        let r = self.round.as_mut().expect("member_index checked");
        let n = r.roster.n();
        let len = match &self.proofs {
            Some(setup) => setup.payload_len(r.scheme) + crate::proof::CHECK_SEEDS_LEN,
            None => r.scheme.payload_len(r.roster.study.vector_len()),
        };
        let RoundState::AwaitingShares { received, count } = &mut r.state else {
            return Err(ProtocolError::WrongState {
                state: r.state.phase().as_str(),
                got: "shares",
            });
        };
        if received[me as usize - 1].is_some() {
            return Err(ProtocolError::DuplicateShares);
        }
        // Exactly one share for every other member that revealed its key, in ascending roster
        // order, each as long as a sealed payload of this round's scheme.
        if shares.len() != r.revealed as usize - 1
            || shares.sealed_len() != len + crate::envelope::TAG_LEN
        {
            return Err(ProtocolError::BadShares);
        }
        let keyed = &r.keyed;
        let in_order = shares
            .iter()
            .zip((1..=n).filter(|&j| j != me && keyed[j as usize - 1]))
            .all(|((to, _), want)| to == want);
        if !in_order {
            return Err(ProtocolError::BadShares);
        }
        // The correction: one, for the leader, in additive rounds with proofs; else none.
        let keyed_list: Vec<u32> = (1..=n).filter(|&j| keyed[j as usize - 1]).collect();
        let extra_ok = match (&self.proofs, r.scheme) {
            (Some(setup), Scheme::Additive { .. }) => {
                extra.len() == 1
                    && Some(extra.get(0).0) == crate::proof::after(&keyed_list, me, 1)
                    && extra.sealed_len() == setup.share_len() * 8 + crate::envelope::TAG_LEN
            }
            _ => extra.is_empty(),
        };
        if !extra_ok {
            return Err(ProtocolError::BadShares);
        }
        received[me as usize - 1] = Some((shares, extra));
        *count += 1;
        if self.all_live_reported() {
            self.deliver(now_ms);
        }
        Ok(())
    }

    fn all_live_reported(&self) -> bool {
        let Some(r) = &self.round else { return false };
        let have = |i: usize| match &r.state {
            RoundState::AwaitingReveals { reveals, .. } => reveals[i].is_some(),
            RoundState::AwaitingShares { received, .. } => received[i].is_some(),
            RoundState::AwaitingVerify { received, .. } => received[i],
            // Verdicts are checked below, by dealer.
            RoundState::AwaitingVerdicts { .. } => true,
            RoundState::AwaitingPartialSums { partials, .. } => partials[i].is_some(),
        };
        if let RoundState::AwaitingVerdicts {
            checkers, received, ..
        } = &r.state
        {
            // Every proof whose checker is still live has its verdict.
            return checkers
                .iter()
                .zip(received)
                .all(|(k, got)| k.is_none_or(|k| !r.live[k as usize - 1]) || got.is_some());
        }
        (0..r.live.len()).all(|i| !r.live[i] || have(i))
    }

    fn deliver(&mut self, now_ms: u64) {
        let Some(mut r) = self.round.take() else {
            return;
        };
        let live_count = r.live_count();
        let RoundState::AwaitingShares { received, .. } = &mut r.state else {
            self.round = Some(r);
            return;
        };
        let n = r.roster.n() as usize;
        // With proofs, a contributor must also stay to check the others' proofs: one that left
        // after sending its shares is left out (its value with it) rather than leaving every
        // proof without one of its checks.
        let proofs = self.proofs.is_some();
        let contributors: Vec<u32> = (0..n)
            .filter(|&i| received[i].is_some() && (!proofs || r.live[i]))
            .map(|i| i as u32 + 1)
            .collect();
        let min = r.roster.study.min_cohort;
        let t = r.roster.threshold;
        if (contributors.len() as u32) < min {
            let got = contributors.len() as u32;
            self.round = Some(r);
            self.abandon(
                now_ms,
                AbandonReason::TooFewContributors { got, needed: min },
            );
            return;
        }
        if live_count < t {
            let got = live_count;
            self.round = Some(r);
            self.abandon(now_ms, AbandonReason::TooFewPartialSums { got, needed: t });
            return;
        }
        // Transpose without decoding: each live recipient's delivery is one buffer, built by
        // copying its fixed-size entry out of every other contributor's frame.
        let sealed_len = match &self.proofs {
            Some(setup) => setup.payload_len(r.scheme) + crate::proof::CHECK_SEEDS_LEN,
            None => r.scheme.payload_len(r.roster.study.vector_len()),
        } + crate::envelope::TAG_LEN;
        let keyed_list: Vec<u32> = (1..=n as u32)
            .filter(|&j| r.keyed[j as usize - 1])
            .collect();
        // rank[j]: how many members before j revealed a key; a sender lists the keyed members
        // other than itself in roster order, so member `to` sits at rank[to] in a frame from a
        // later member and at rank[to] - 1 in one from an earlier member.
        let mut rank = Vec::with_capacity(n);
        let mut seen = 0u32;
        for &k in &r.keyed {
            rank.push(seen);
            seen += u32::from(k);
        }
        for (i, &at_rank) in rank.iter().enumerate() {
            if r.live[i] {
                let to = i as u32 + 1;
                let mut shares = ShareList::with_capacity(sealed_len, contributors.len());
                for &c in contributors.iter().filter(|&&c| c != to) {
                    let (from, _) = received[c as usize - 1]
                        .as_ref()
                        .expect("contributors sent shares");
                    let at = if to < c { at_rank } else { at_rank - 1 };
                    let (got, sealed) = from.get(at as usize);
                    debug_assert_eq!(got, to);
                    let pushed = shares.push(c, sealed);
                    debug_assert!(pushed, "lengths checked on arrival");
                }
                // The correction of the member this one leads (additive rounds with proofs).
                let mut extra = ShareList::with_capacity(0, 0);
                if let Some(c0) = crate::proof::before(&keyed_list, to, 1)
                    && c0 != to
                    && let Some((_, ex)) = &received[c0 as usize - 1]
                    && ex.len() == 1
                {
                    extra = ShareList::with_capacity(ex.sealed_len(), 1);
                    let (_, sealed) = ex.get(0);
                    extra.push(c0, sealed);
                }
                let msg = Delivery {
                    round: r.roster.round,
                    contributors: contributors.clone(),
                    shares,
                    extra,
                };
                self.out.push_back(HospitalOutput::Send {
                    to: r.peers[i],
                    msg: RelayToPatient::Delivery(msg),
                });
            }
        }
        self.event(HospitalEvent::SharesDelivered {
            study: self.spec.params.id.clone(),
            round: r.roster.round,
            contributors: contributors.len() as u32,
        });
        r.state = if self.proofs.is_some() {
            RoundState::AwaitingVerify {
                contributors,
                received: alloc::vec![false; n],
                sums: crate::proof::CheckSums::new(match r.scheme {
                    Scheme::Additive { .. } => n,
                    Scheme::Shamir { .. } => 0,
                }),
                lists: (0..n).map(|_| None).collect(),
                count: 0,
            }
        } else {
            RoundState::AwaitingPartialSums {
                contributors,
                excluded: Vec::new(),
                partials: (0..n).map(|_| None).collect(),
                count: 0,
            }
        };
        r.deadline = now_ms.saturating_add(self.spec.deadlines.partials_ms);
        self.round = Some(r);
    }

    fn on_partial(
        &mut self,
        now_ms: u64,
        from: PeerId,
        round: u64,
        sum: Vec<Fe>,
    ) -> Result<(), ProtocolError> {
        let me = self.member_index(from, round)?;
        let len = self.spec.params.vector_len();
        let r = self.round.as_mut().expect("member_index checked");
        let RoundState::AwaitingPartialSums {
            partials, count, ..
        } = &mut r.state
        else {
            return Err(ProtocolError::WrongState {
                state: r.state.phase().as_str(),
                got: "partial_sum",
            });
        };
        if partials[me as usize - 1].is_some() {
            return Err(ProtocolError::DuplicatePartialSum);
        }
        if sum.len() != len {
            return Err(ProtocolError::BadPartialSum);
        }
        partials[me as usize - 1] = Some(sum);
        *count += 1;
        if self.all_live_reported() {
            self.finish(now_ms);
        }
        Ok(())
    }

    fn finish(&mut self, now_ms: u64) {
        let Some(r) = self.round.take() else { return };
        let RoundState::AwaitingPartialSums {
            contributors,
            excluded,
            partials,
            count,
        } = &r.state
        else {
            self.round = Some(r);
            return;
        };
        let t = r.roster.threshold;
        if *count < t {
            let got = *count;
            self.round = Some(r);
            self.abandon(now_ms, AbandonReason::TooFewPartialSums { got, needed: t });
            return;
        }
        // With proofs, only the partial sums of the members whose shares every proof was
        // checked with (`proof::partial_sum_senders`): the keyed members (additive) or the
        // contributors as delivered (Shamir).
        let senders = self.proofs.as_ref().map(|_| {
            let keyed: Vec<u32> = (1..=r.roster.n())
                .filter(|&j| r.keyed[j as usize - 1])
                .collect();
            let mut delivered: Vec<u32> = contributors
                .iter()
                .copied()
                .chain(excluded.iter().map(|e| e.index))
                .collect();
            delivered.sort_unstable();
            crate::proof::partial_sum_senders(r.scheme, &keyed, &delivered)
        });
        let points: Vec<(u32, &[Fe])> = partials
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                senders
                    .as_ref()
                    .is_none_or(|s| s.binary_search(&(*i as u32 + 1)).is_ok())
            })
            .filter_map(|(i, p)| p.as_ref().map(|v| (i as u32 + 1, v.as_slice())))
            .collect();
        // The same computation every patient repeats on the published partial sums.
        let Ok(decoded) = aggregate(&r.roster, contributors, &points) else {
            self.round = Some(r);
            self.abandon(now_ms, AbandonReason::InconsistentAggregate);
            return;
        };
        let published: Vec<PartialSumOf> = points
            .iter()
            .map(|(i, s)| PartialSumOf {
                from: *i,
                sum: s.to_vec(),
            })
            .collect();
        let result = RoundResult {
            v: PROTOCOL_VERSION,
            study: self.spec.params.id.clone(),
            round: r.roster.round,
            statistics: decoded.statistics.clone(),
            questionnaire: decoded.questionnaire.clone(),
            roster_size: r.roster.n(),
            contributors: contributors.clone(),
            partial_sums: points.len() as u32,
            excluded: excluded.clone(),
            safety_code: r.safety.clone(),
            partials: published,
        };
        let live = r.live_peers();
        self.broadcast(live.clone(), RelayToPatient::Result(result));
        self.detach_all(live);
        self.event(HospitalEvent::Completed(RoundOutcome {
            study: self.spec.params.id.clone(),
            round: r.roster.round,
            statistics: decoded.statistics,
            questionnaire: decoded.questionnaire,
            roster_size: r.roster.n(),
            threshold: t,
            contributors: contributors.clone(),
            partial_sums: points.len() as u32,
            excluded: excluded.clone(),
            safety_code: r.safety.clone(),
            started_ms: r.started_ms,
            finished_ms: now_ms,
        }));
        self.after_round(now_ms);
    }

    /// Abandons the running round, if any, telling its live members and the dashboard why.
    pub fn abandon(&mut self, now_ms: u64, reason: AbandonReason) {
        let Some(r) = self.round.take() else { return };
        let msg = Abandoned {
            v: PROTOCOL_VERSION,
            round: r.roster.round,
            reason: reason.clone(),
            message: reason.to_string(),
        };
        let live = r.live_peers();
        self.broadcast(live.clone(), RelayToPatient::Abandoned(msg));
        self.detach_all(live);
        self.event(HospitalEvent::Abandoned {
            study: self.spec.params.id.clone(),
            round: r.roster.round,
            reason,
            safety_code: r.safety,
            started_ms: r.started_ms,
            finished_ms: now_ms,
        });
        self.after_round(now_ms);
    }

    /// Shuts the study down: abandons the running round and tells enrolled patients.
    pub fn shutdown(&mut self, now_ms: u64) {
        self.halt(now_ms, AbandonReason::Shutdown);
    }

    /// Stops the study for `reason`: abandons the running round and tells every member,
    /// enrolled ones included, which are all detached. The driver may then drop this machine
    /// (e.g. to restart the study with a fresh one).
    pub fn halt(&mut self, now_ms: u64, reason: AbandonReason) {
        self.abandon(now_ms, reason.clone());
        let msg = Abandoned {
            v: PROTOCOL_VERSION,
            round: self.next_round,
            message: reason.to_string(),
            reason,
        };
        let enrolled: Vec<PeerId> = core::mem::take(&mut self.enrolling)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        self.broadcast(enrolled.clone(), RelayToPatient::Abandoned(msg));
        self.detach_all(enrolled);
        self.broadcast_due = None;
        self.enrol_started = None;
    }

    fn after_round(&mut self, now_ms: u64) {
        if self.enrolling.len() as u32 >= self.spec.params.size {
            let _ = self.start_round(now_ms);
        }
    }

    /// The connection `peer` closed or left. If it was a member, [`HospitalOutput::Detached`]
    /// says so before anything else this causes.
    pub fn handle_disconnect(&mut self, now_ms: u64, peer: PeerId) {
        if let Some(pos) = self.enrolling.iter().position(|(p, _)| *p == peer) {
            self.out.push_back(HospitalOutput::Detached { peer });
            self.enrolling.remove(pos);
            if self.enrolling.is_empty() {
                self.enrol_started = None;
            }
            self.enrolment_event();
            self.schedule_broadcast(now_ms);
            return;
        }
        let Some(r) = self.round.as_mut() else { return };
        let Some(&i) = r.index_of.get(&peer) else {
            return;
        };
        if !core::mem::replace(&mut r.live[i as usize - 1], false) {
            return;
        }
        self.out.push_back(HospitalOutput::Detached { peer });
        let t = r.roster.threshold;
        match &r.state {
            RoundState::AwaitingReveals { count, .. } => {
                let got = *count;
                if self.all_live_reported() {
                    self.reveals_settled(now_ms, got);
                }
            }
            RoundState::AwaitingShares { .. } => {
                if self.all_live_reported() {
                    self.deliver(now_ms);
                }
            }
            RoundState::AwaitingVerify { .. } => {
                if self.all_live_reported() {
                    self.send_checks(now_ms);
                }
            }
            RoundState::AwaitingVerdicts { .. } => {
                if self.all_live_reported() {
                    self.settle_verdicts(now_ms);
                }
            }
            RoundState::AwaitingPartialSums {
                partials, count, ..
            } => {
                let pending = (0..partials.len())
                    .filter(|&j| r.live[j] && partials[j].is_none())
                    .count() as u32;
                if count + pending < t {
                    let got = count + pending;
                    self.abandon(now_ms, AbandonReason::TooFewPartialSums { got, needed: t });
                } else if self.all_live_reported() {
                    self.finish(now_ms);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::KeyPair;
    use crate::message::{Leave, PartialSum, Shares};
    use alloc::vec;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};

    /// These tests send hand-made shares, so their studies have no validity proofs (the
    /// rounds with proofs are tested with real patients in core/tests/forging.rs).
    fn spec(s: &str) -> StudySpec {
        let mut spec: StudySpec = s.parse().unwrap();
        spec.params.proofs = false;
        spec
    }

    fn key(i: u64) -> PublicKey {
        KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(i)).public()
    }

    fn nonce(i: u64) -> crate::commitment::Nonce {
        crate::commitment::Nonce([i as u8; 32])
    }

    fn join(study: &str, i: u64, invite: Option<&str>) -> PatientToRelay {
        PatientToRelay::Join(Join {
            v: 2,
            study: study.into(),
            commitment: crate::commitment::commit(study, &key(i), &nonce(i)),
            invite: invite.map(Into::into),
        })
    }

    fn reveal(i: u64, round: u64) -> PatientToRelay {
        PatientToRelay::Reveal(Reveal {
            v: 2,
            round,
            public_key: key(i),
            nonce: nonce(i),
        })
    }

    /// Every peer in `peers` reveals for `round`.
    fn reveal_all(h: &mut Hospital, peers: impl IntoIterator<Item = u64>, round: u64) {
        for i in peers {
            h.handle(0, PeerId(i), reveal(i, round)).unwrap();
        }
    }

    /// Every output, a broadcast expanded to one `Send` per recipient (in order).
    fn drain(h: &mut Hospital) -> Vec<HospitalOutput> {
        let mut out = Vec::new();
        while let Some(o) = h.poll_output() {
            match o {
                HospitalOutput::Broadcast { to, msg } => {
                    out.extend(to.into_iter().map(|to| HospitalOutput::Send {
                        to,
                        msg: msg.clone(),
                    }));
                }
                o => out.push(o),
            }
        }
        out
    }

    fn rostered(h: &mut Hospital, n: u64) -> u64 {
        for i in 0..n {
            h.handle(0, PeerId(i), join("s", i, None)).unwrap();
        }
        let out = drain(h);
        let round = out
            .iter()
            .find_map(|o| match o {
                HospitalOutput::Send {
                    msg: RelayToPatient::Roster(r),
                    ..
                } => Some(r.roster.round),
                _ => None,
            })
            .expect("roster sent");
        reveal_all(h, 0..n, round);
        drain(h);
        round
    }

    fn shares_from(me: u32, n: u32, round: u64) -> PatientToRelay {
        shares_of_len(me, n, round, 32)
    }

    fn shares_of_len(me: u32, n: u32, round: u64, plain: usize) -> PatientToRelay {
        let sealed = vec![0u8; plain + crate::envelope::TAG_LEN];
        PatientToRelay::Shares(Shares {
            round,
            shares: list(&sealed, (1..=n).filter(|&j| j != me)),
            extra: ShareList::with_capacity(0, 0),
        })
    }

    fn list(sealed: &[u8], to: impl Iterator<Item = u32>) -> ShareList {
        let mut l = ShareList::with_capacity(sealed.len(), 0);
        for j in to {
            assert!(l.push(j, sealed));
        }
        l
    }

    /// The former check: X25519 with a fixed clamped scalar, zero output = low order.
    fn probe_says_weak(key: &[u8; 32]) -> bool {
        !StaticSecret::from([0x5a; 32])
            .diffie_hellman(&DalekPublic::from(*key))
            .was_contributory()
    }

    #[test]
    fn a_weak_key_is_refused_at_its_reveal_and_the_round_goes_on_without_it() {
        // Member 1 committed to a low-order key (the all-zero point): its commitment is
        // well-formed, so only the reveal can show it. The hospital refuses the reveal; the
        // Shamir round continues with the members that revealed good keys.
        let mut h = Hospital::new(spec("id=s,size=3,threshold=2,min_cohort=2"), 1).unwrap();
        let weak = PublicKey([0; 32]);
        let bad_nonce = nonce(77);
        h.handle(
            0,
            PeerId(0),
            PatientToRelay::Join(Join {
                v: 2,
                study: "s".into(),
                commitment: crate::commitment::commit("s", &weak, &bad_nonce),
                invite: None,
            }),
        )
        .unwrap();
        h.handle(0, PeerId(1), join("s", 1, None)).unwrap();
        h.handle(0, PeerId(2), join("s", 2, None)).unwrap();
        drain(&mut h);
        let got = h.handle(
            0,
            PeerId(0),
            PatientToRelay::Reveal(Reveal {
                v: 2,
                round: 1,
                public_key: weak,
                nonce: bad_nonce,
            }),
        );
        assert_eq!(got, Err(ProtocolError::WeakKey));
        let out = drain(&mut h);
        let refusal = ErrorMsg::refusing(&ProtocolError::WeakKey);
        assert!(out.iter().any(|o| matches!(o,
            HospitalOutput::Send { to: PeerId(0), msg: RelayToPatient::Error(e) } if *e == refusal)));
        reveal_all(&mut h, [1, 2], 1);
        let deadline = h.poll_timeout().expect("reveal deadline");
        h.handle_timeout(deadline);
        let out = drain(&mut h);
        let keys: Vec<&Keys> = out
            .iter()
            .filter_map(|o| match o {
                HospitalOutput::Send {
                    msg: RelayToPatient::Keys(k),
                    ..
                } => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(keys.len(), 2, "the two good members get the keys");
        // The member left out is told why and detached (it does not wait for a round that
        // goes on without it).
        let told = ErrorMsg::refusing(&ProtocolError::RevealTooLate { round: 1 });
        assert!(out.iter().any(|o| matches!(o,
            HospitalOutput::Send { to: PeerId(0), msg: RelayToPatient::Error(e) } if *e == told)));
        assert!(
            out.iter()
                .any(|o| matches!(o, HospitalOutput::Detached { peer: PeerId(0) }))
        );
        assert!(keys[0].reveals.iter().all(|r| r.public_key != weak));
        assert_eq!(
            keys[0].reveals.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn weak_key_table_agrees_with_an_x25519_probe() {
        let mut keys: Vec<[u8; 32]> = Vec::new();
        for low in LOW_ORDER {
            keys.push(low);
            let mut high = low;
            high[31] |= 0x80;
            keys.push(high);
        }
        // Small values and everything from p − 300 to 2^256 − 1 (non-canonical encodings).
        for i in 0u16..300 {
            let mut k = [0u8; 32];
            k[..2].copy_from_slice(&i.to_le_bytes());
            keys.push(k);
            let mut top = [0xff; 32];
            top[..2].copy_from_slice(&(0xffff - i).to_le_bytes());
            keys.push(top);
            top[31] = 0x7f;
            keys.push(top);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        for _ in 0..2000 {
            keys.push(KeyPair::generate(&mut rng).public().0);
            let mut k = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut k);
            keys.push(k);
        }
        keys.sort_unstable();
        keys.dedup();
        let weak = keys.iter().filter(|k| is_weak_key(&PublicKey(**k))).count();
        assert_eq!(weak, 14, "7 encodings, each with the top bit clear or set");
        for k in &keys {
            assert_eq!(is_weak_key(&PublicKey(*k)), probe_says_weak(k), "{k:02x?}");
        }
    }

    #[test]
    fn join_rules() {
        let mut h = Hospital::new(spec("id=s,size=3,invite=sesame"), 1).unwrap();
        assert_eq!(
            h.handle(0, PeerId(1), join("s", 1, None)),
            Err(ProtocolError::BadInvite)
        );
        assert_eq!(
            h.handle(0, PeerId(1), join("s", 1, Some("sesame!"))),
            Err(ProtocolError::BadInvite)
        );
        assert_eq!(
            h.handle(0, PeerId(1), join("t", 1, Some("sesame"))),
            Err(ProtocolError::WrongStudy)
        );
        h.handle(0, PeerId(1), join("s", 1, Some("sesame")))
            .unwrap();
        assert_eq!(
            h.handle(0, PeerId(1), join("s", 2, Some("sesame"))),
            Err(ProtocolError::AlreadyJoined)
        );
        assert_eq!(
            h.handle(0, PeerId(2), join("s", 1, Some("sesame"))),
            Err(ProtocolError::DuplicateKey)
        );
        assert_eq!(h.status().enrolled, 1);
    }

    #[test]
    fn early_start_needs_minimum_cohort_and_full_enrolment_waits() {
        let mut h = Hospital::new(spec("id=s,size=5,threshold=3,min_cohort=3"), 10).unwrap();
        h.handle(0, PeerId(1), join("s", 1, None)).unwrap();
        h.handle(0, PeerId(2), join("s", 2, None)).unwrap();
        assert_eq!(
            h.start_round(5),
            Err(ProtocolError::NotEnoughPatients {
                enrolled: 2,
                needed: 3
            })
        );
        h.handle(0, PeerId(3), join("s", 3, None)).unwrap();
        drain(&mut h);
        h.start_round(5).unwrap();
        let st = h.status();
        let running = st.running.unwrap();
        assert_eq!(
            (running.round, running.roster_size, running.threshold),
            (10, 3, 3)
        );
        assert_eq!(st.enrolling_round, 11);
        // While the round runs, new joins enrol for the next round, up to the cohort size.
        for i in 4..9 {
            h.handle(6, PeerId(i), join("s", i, None)).unwrap();
        }
        assert_eq!(
            h.handle(6, PeerId(9), join("s", 9, None)),
            Err(ProtocolError::StudyFull)
        );
    }

    #[test]
    fn enrolment_broadcasts_are_throttled() {
        let mut h = Hospital::new(spec("id=s,size=50"), 1).unwrap();
        for i in 0..20 {
            h.handle(i, PeerId(i), join("s", i, None)).unwrap();
        }
        let sent = drain(&mut h)
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    HospitalOutput::Send {
                        msg: RelayToPatient::Enrolment(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(sent, 0, "no broadcast before the throttle interval");
        assert_eq!(h.poll_timeout(), Some(ENROLMENT_BROADCAST_MS));
        h.handle_timeout(ENROLMENT_BROADCAST_MS);
        let sent = drain(&mut h)
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    HospitalOutput::Send {
                        msg: RelayToPatient::Enrolment(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(sent, 20, "one update per waiting patient");
    }

    #[test]
    fn enrolment_deadline_starts_with_the_minimum() {
        let mut h = Hospital::new(spec("id=s,size=10,min_cohort=3,enrol_s=30"), 1).unwrap();
        for i in 0..3 {
            h.handle(1000, PeerId(i), join("s", i, None)).unwrap();
        }
        assert_eq!(h.poll_timeout(), Some(1000 + ENROLMENT_BROADCAST_MS));
        h.handle_timeout(1000 + ENROLMENT_BROADCAST_MS);
        assert_eq!(h.poll_timeout(), Some(31_000));
        h.handle_timeout(31_000);
        assert_eq!(h.status().running.map(|r| r.roster_size), Some(3));
    }

    #[test]
    fn round_messages_are_checked() {
        let mut h = Hospital::new(spec("id=s,size=3"), 1).unwrap();
        let round = rostered(&mut h, 3);
        assert_eq!(
            h.handle(1, PeerId(99), shares_from(1, 3, round)),
            Err(ProtocolError::NotInRoster)
        );
        assert_eq!(
            h.handle(1, PeerId(0), shares_from(1, 3, round + 1)),
            Err(ProtocolError::WrongRound {
                got: round + 1,
                current: round
            })
        );
        // Wrong count, self-addressed, duplicate recipient, wrong length.
        // Wrong count, self-addressed, duplicate recipient, out of order, wrong length.
        let seed = [0u8; 48];
        for bad in [
            list(&seed, [2].into_iter()),
            list(&seed, [2, 3, 1].into_iter()),
            list(&seed, [1, 3].into_iter()),
            list(&seed, [2, 2].into_iter()),
            list(&seed, [3, 2].into_iter()),
            list(&[0u8; 40], [2, 3].into_iter()),
        ] {
            let msg = PatientToRelay::Shares(Shares {
                round,
                shares: bad,
                extra: ShareList::with_capacity(0, 0),
            });
            assert_eq!(h.handle(1, PeerId(0), msg), Err(ProtocolError::BadShares));
        }
        h.handle(1, PeerId(0), shares_from(1, 3, round)).unwrap();
        assert_eq!(
            h.handle(1, PeerId(0), shares_from(1, 3, round)),
            Err(ProtocolError::DuplicateShares)
        );
        let early = PatientToRelay::PartialSum(PartialSum {
            round,
            sum: vec![Fe::ZERO; 13],
        });
        assert!(matches!(
            h.handle(1, PeerId(0), early),
            Err(ProtocolError::WrongState { .. })
        ));
        h.handle(1, PeerId(1), shares_from(2, 3, round)).unwrap();
        h.handle(1, PeerId(2), shares_from(3, 3, round)).unwrap();
        let deliveries: Vec<(PeerId, Delivery)> = drain(&mut h)
            .into_iter()
            .filter_map(|o| match o {
                HospitalOutput::Send {
                    to,
                    msg: RelayToPatient::Delivery(d),
                } => Some((to, d)),
                _ => None,
            })
            .collect();
        assert_eq!(deliveries.len(), 3, "one frame per recipient");
        for (to, d) in &deliveries {
            assert_eq!(d.contributors, vec![1, 2, 3]);
            assert_eq!(d.shares.len(), 2);
            assert!(d.shares.iter().all(|(from, _)| u64::from(from) != to.0 + 1));
        }
        let short = PatientToRelay::PartialSum(PartialSum {
            round,
            sum: vec![Fe::ZERO; 12],
        });
        assert_eq!(
            h.handle(2, PeerId(0), short),
            Err(ProtocolError::BadPartialSum)
        );
        let ok = PatientToRelay::PartialSum(PartialSum {
            round,
            sum: vec![Fe::ZERO; 13],
        });
        h.handle(2, PeerId(0), ok.clone()).unwrap();
        assert_eq!(
            h.handle(2, PeerId(0), ok),
            Err(ProtocolError::DuplicatePartialSum)
        );
    }

    #[test]
    fn garbage_partial_sums_abandon_instead_of_revealing() {
        let mut h = Hospital::new(spec("id=s,size=3"), 1).unwrap();
        let round = rostered(&mut h, 3);
        for i in 0..3u32 {
            h.handle(1, PeerId(u64::from(i)), shares_from(i + 1, 3, round))
                .unwrap();
        }
        for i in 0..3u64 {
            let sum = vec![Fe::new(12345 + i); 13];
            h.handle(
                2,
                PeerId(i),
                PatientToRelay::PartialSum(PartialSum { round, sum }),
            )
            .unwrap();
        }
        let abandoned = drain(&mut h).into_iter().any(|o| {
            matches!(
                o,
                HospitalOutput::Event(HospitalEvent::Abandoned {
                    reason: AbandonReason::InconsistentAggregate,
                    ..
                })
            )
        });
        assert!(abandoned);
        assert!(h.status().running.is_none());
    }

    #[test]
    fn shares_deadline_leaves_out_the_silent_and_leave_counts_as_gone() {
        let mut h =
            Hospital::new(spec("id=s,size=4,threshold=3,min_cohort=3,shares_s=10"), 1).unwrap();
        let round = rostered(&mut h, 4);
        for i in 0..3u32 {
            h.handle(
                100,
                PeerId(u64::from(i)),
                shares_of_len(i + 1, 4, round, 13 * 8),
            )
            .unwrap();
        }
        assert_eq!(h.poll_timeout(), Some(10_000));
        h.handle_timeout(10_000);
        let contributors = drain(&mut h).into_iter().find_map(|o| match o {
            HospitalOutput::Send {
                msg: RelayToPatient::Delivery(d),
                ..
            } => Some(d.contributors),
            _ => None,
        });
        assert_eq!(contributors, Some(vec![1, 2, 3]));
        h.handle(10_001, PeerId(3), PatientToRelay::Leave(Leave { v: 1 }))
            .unwrap();
        h.handle(10_001, PeerId(2), PatientToRelay::Leave(Leave { v: 1 }))
            .unwrap();
        // Two of four gone with t = 3: at most 2 partial sums can come; abandon now.
        let reason = drain(&mut h).into_iter().find_map(|o| match o {
            HospitalOutput::Event(HospitalEvent::Abandoned { reason, .. }) => Some(reason),
            _ => None,
        });
        assert_eq!(
            reason,
            Some(AbandonReason::TooFewPartialSums { got: 2, needed: 3 })
        );
    }

    #[test]
    fn shutdown_tells_everyone() {
        let mut h = Hospital::new(spec("id=s,size=3"), 1).unwrap();
        rostered(&mut h, 3);
        h.handle(0, PeerId(10), join("s", 10, None)).unwrap();
        drain(&mut h);
        h.shutdown(5);
        let told = drain(&mut h)
            .iter()
            .filter(|o| matches!(o, HospitalOutput::Send { msg: RelayToPatient::Abandoned(a), .. } if a.reason == AbandonReason::Shutdown))
            .count();
        assert_eq!(told, 4);
    }

    #[test]
    fn membership_and_refusals_are_outputs() {
        use crate::error::ErrorCode;
        let mut h = Hospital::new(spec("id=s,size=2,min_cohort=2"), 1).unwrap();
        h.handle(0, PeerId(1), join("s", 1, None)).unwrap();
        let out = drain(&mut h);
        assert!(matches!(
            out[0],
            HospitalOutput::Attached { peer: PeerId(1) }
        ));
        // A refused join: the error reply, then the detach.
        let e = h.handle(0, PeerId(2), join("s", 1, None)).unwrap_err();
        assert_eq!(e, ProtocolError::DuplicateKey);
        let out = drain(&mut h);
        assert!(matches!(
            &out[..],
            [
                HospitalOutput::Send { to: PeerId(2), msg: RelayToPatient::Error(m) },
                HospitalOutput::Detached { peer: PeerId(2) },
            ] if m.code == ErrorCode::Duplicate
        ));
        // A refused round message from a member: the reply only, it stays attached.
        h.handle(0, PeerId(1), shares_from(1, 2, 7)).unwrap_err();
        let out = drain(&mut h);
        assert!(matches!(
            &out[..],
            [HospitalOutput::Send {
                to: PeerId(1),
                msg: RelayToPatient::Error(_)
            }]
        ));
        // The round runs; each member is detached right after its result or abandonment.
        h.handle(0, PeerId(2), join("s", 2, None)).unwrap();
        reveal_all(&mut h, [1, 2], 1);
        h.handle(0, PeerId(1), shares_from(1, 2, 1)).unwrap();
        h.handle(0, PeerId(2), shares_from(2, 2, 1)).unwrap();
        drain(&mut h);
        h.handle(1, PeerId(1), PatientToRelay::Leave(Leave { v: 1 }))
            .unwrap();
        let out = drain(&mut h);
        let detached: Vec<PeerId> = out
            .iter()
            .filter_map(|o| match o {
                HospitalOutput::Detached { peer } => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(detached, vec![PeerId(1), PeerId(2)]);
        let told = out.iter().position(|o| {
            matches!(
                o,
                HospitalOutput::Send {
                    to: PeerId(2),
                    msg: RelayToPatient::Abandoned(_)
                }
            )
        });
        let detached = out
            .iter()
            .position(|o| matches!(o, HospitalOutput::Detached { peer: PeerId(2) }));
        assert!(
            told.is_some() && told < detached,
            "abandoned, then detached"
        );
    }
}
