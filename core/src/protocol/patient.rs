//! One patient's side of one round.
//!
//! ```text
//! new() ──Join(commitment)──▶ AwaitingWelcome ──Welcome──▶ AwaitingRoster ──Roster──▶ (check)
//! ──Reveal──▶ AwaitingKeys ──Keys──▶ (check reveals, safety code, split, seal) ──Shares──▶
//! AwaitingDelivery ──Delivery──▶ (open, sum) ──PartialSum──▶ AwaitingResult ──Result──▶
//! (recompute, check) ──▶ Finished
//!
//! with validity proofs (see [`crate::proof`]), from the delivery on:
//! AwaitingDelivery ──Delivery──▶ (open, verifier shares) ──Verify──▶ AwaitingChecks
//! ──Checks──▶ (decide on its checkee) ──Verdict──▶ AwaitingVerdicts ──Verdicts──▶ (valid set)
//! ──PartialSum──▶ AwaitingResult  (or, if the round cannot complete, AwaitingAbandon)
//!         any state ──Abandoned / refusal / timeout──▶ Finished
//!   AwaitingWelcome ──Error (join refused)──▶ Finished
//! ```
//!
//! An `error` from the relay after the welcome is reported as [`PatientEvent::RelayError`] and
//! does not end the patient: it refuses a message that crossed a deadline on the wire, and the
//! hospital's deadlines settle the round.
//!
//! The patient refuses (sends `leave`, emits [`PatientEvent::Refused`]) a roster whose study
//! parameters differ from those it joined, a roster or contributor set below the study's
//! minimum cohort, a roster for another round than the one it was welcomed to, a roster without
//! its own commitment at its index, and any share that fails to open. Against a relay that
//! deviates it also refuses (each error names the attack): a round id it has seen before for
//! the study ([`SeenRounds`]), a roster listing one member twice, a threshold that breaks
//! 2t > n + c, a reveal that does not open its frozen commitment, a second partial-sum request
//! in a round, a delivery that leaves out a sender whose share it carries, and a result it
//! cannot recompute itself from the published partial sums over its own contributor set (with
//! proofs: its own exclusions, from verdicts sealed by each checker).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};
use zeroize::Zeroize;

use crate::answer::Answers;
use crate::commitment::{Commitment, Nonce, Revealed, commit};
use crate::decimal::Decimal;
use crate::envelope::{Binding, DirectionKey, KeyPair, PublicKey};
use crate::error::{AnswerError, ErrorCode, ProtocolError, SealError};
use crate::field::Fe;
use crate::frame::ShareList;
use crate::message::{
    AbandonReason, Delivery, Join, Keys, Leave, PROTOCOL_VERSION, PartialSum, PatientToRelay,
    RelayToPatient, Reveal, RosterMsg, RoundResult, Shares,
};
use crate::proof::{Exclusion, ProofSetup, Verdict};
use crate::protocol::aggregate::{AggregateFailure, aggregate};
use crate::protocol::proving::ProofRound;
use crate::protocol::seen::SeenRounds;
use crate::roster::{Roster, SafetyCode};
use crate::study::StudyParams;

/// What happened, for the patient's user interface.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum PatientEvent {
    /// The relay accepted the join.
    Welcomed {
        /// The study's parameters.
        study: StudyParams,
        /// Round being enrolled.
        round: u64,
        /// Patients enrolled so far.
        enrolled: u32,
    },
    /// Enrolment progress.
    Enrolment {
        /// Patients enrolled so far.
        enrolled: u32,
        /// Cohort size.
        size: u32,
    },
    /// The roster is frozen; show the safety code.
    RosterFrozen {
        /// Round id.
        round: u64,
        /// Roster size.
        n: u32,
        /// Threshold.
        threshold: u32,
        /// This patient's index.
        you: u32,
        /// The safety code to compare.
        safety_code: SafetyCode,
    },
    /// Sealed shares were queued for sending.
    SharesSent {
        /// Round id.
        round: u64,
    },
    /// This patient checked its checkee's validity proof (rounds with proofs).
    ProofChecked {
        /// Round id.
        round: u64,
        /// The roster index whose proof was checked.
        dealer: u32,
        /// The verdict.
        verdict: Verdict,
    },
    /// Every checker's verdict is in (rounds with proofs): these members are left out of the
    /// result (empty if every proof held).
    ProofsChecked {
        /// Round id.
        round: u64,
        /// Members left out, with the reason.
        excluded: Vec<Exclusion>,
    },
    /// The partial sum was queued for sending.
    PartialSumSent {
        /// Round id.
        round: u64,
        /// Size of the contributor set.
        contributors: u32,
    },
    /// The result was recomputed on this device from the published partial sums over the
    /// contributor set this patient was given, and agrees with the relay's: "checked on this
    /// device". Always immediately followed by [`PatientEvent::Completed`].
    ResultChecked {
        /// Round id.
        round: u64,
        /// Size of the contributor set.
        contributors: u32,
        /// Partial sums the check used.
        partial_sums: u32,
    },
    /// The round completed; the statistics are this device's own computation (see
    /// [`PatientEvent::ResultChecked`]).
    Completed(RoundResult),
    /// The relay abandoned the round; nothing was revealed.
    Abandoned {
        /// Round id.
        round: u64,
        /// Why.
        reason: AbandonReason,
    },
    /// The relay refused a message of ours.
    RelayError {
        /// Code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// This patient refused to continue (see the module docs), or timed out.
    Refused(ProtocolError),
}

enum State {
    AwaitingWelcome,
    AwaitingRoster {
        params: StudyParams,
        round: u64,
    },
    AwaitingKeys {
        roster: Roster,
        me: u32,
    },
    AwaitingDelivery {
        roster: Roster,
        me: u32,
        own: Vec<Fe>,
        /// Opening key for each member's share to us (index − 1); `None` for ourselves.
        from_keys: Vec<Option<DirectionKey>>,
        /// With validity proofs: everything the proof steps need (then `own` and `from_keys`
        /// are empty and kept here instead).
        proof: Option<Box<ProofRound>>,
    },
    AwaitingChecks {
        roster: Roster,
        me: u32,
        proof: Box<ProofRound>,
    },
    AwaitingVerdicts {
        roster: Roster,
        me: u32,
        proof: Box<ProofRound>,
    },
    AwaitingResult {
        roster: Roster,
        me: u32,
        contributors: Vec<u32>,
        excluded: Vec<Exclusion>,
        sent: Vec<Fe>,
        /// With proofs: the members whose partial sums the result may use
        /// ([`crate::proof::partial_sum_senders`]).
        senders: Option<Vec<u32>>,
    },
    /// Proofs left too few valid contributors: no partial sum is sent; the hospital abandons.
    AwaitingAbandon,
    Finished,
}

impl State {
    /// The round under way, in the states after the delivery.
    fn round_after_delivery(&self) -> Option<u64> {
        match self {
            State::AwaitingChecks { roster, .. }
            | State::AwaitingVerdicts { roster, .. }
            | State::AwaitingResult { roster, .. } => Some(roster.round),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            State::AwaitingWelcome => "awaiting welcome",
            State::AwaitingRoster { .. } => "awaiting roster",
            State::AwaitingKeys { .. } => "awaiting keys",
            State::AwaitingDelivery { .. } => "awaiting delivery",
            State::AwaitingChecks { .. } => "awaiting checks",
            State::AwaitingVerdicts { .. } => "awaiting verdicts",
            State::AwaitingResult { .. } => "awaiting result",
            State::AwaitingAbandon => "awaiting abandonment",
            State::Finished => "finished",
        }
    }
}

/// A patient in one round. `Debug` shows the state only.
pub struct Patient {
    study: String,
    answers: Answers,
    expected: Option<StudyParams>,
    keys: KeyPair,
    nonce: Nonce,
    seen: SeenRounds,
    rng: ChaCha20Rng,
    state: State,
    out: VecDeque<PatientToRelay>,
    events: VecDeque<PatientEvent>,
    timeout_ms: Option<u64>,
    deadline: Option<u64>,
    /// A forging patient's change to its own vector or dealing (attack tests only).
    #[cfg(any(feature = "forge", feature = "test-util"))]
    forgery: Option<crate::proof::Forgery>,
}

impl core::fmt::Debug for Patient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Patient")
            .field("study", &self.study)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl Patient {
    /// Starts a patient that will join the one-question study `study` with `value` (the answer
    /// to its question `value`; see [`Patient::with_answers`]). If `expected` is given (from the
    /// study list the user saw), the value is checked against it now and the relay's parameters
    /// must match it exactly. Draws a fresh key pair and a seed for its own CSPRNG from `rng`.
    /// Queues the `join` message.
    pub fn new<R: CryptoRng + ?Sized>(
        now_ms: u64,
        study: &str,
        value: Decimal,
        expected: Option<StudyParams>,
        invite: Option<String>,
        rng: &mut R,
    ) -> Result<Patient, ProtocolError> {
        Patient::with_answers(now_ms, study, Answers::single(value), expected, invite, rng)
    }

    /// Starts a patient that will join `study` with `answers` to its questionnaire. If
    /// `expected` is given (from the study list the user saw), the answers are checked against
    /// it now ([`check_answers`]); otherwise they are checked against the parameters of the
    /// relay's welcome, before anything is shared. The relay's parameters must match `expected`
    /// exactly. Draws a fresh key pair and a seed for its own CSPRNG from `rng`. Queues the
    /// `join` message.
    pub fn with_answers<R: CryptoRng + ?Sized>(
        now_ms: u64,
        study: &str,
        answers: Answers,
        expected: Option<StudyParams>,
        invite: Option<String>,
        rng: &mut R,
    ) -> Result<Patient, ProtocolError> {
        if let Some(p) = &expected {
            check_answers(p, &answers)?;
        }
        let keys = KeyPair::generate(rng);
        let mut nonce = Nonce([0; 32]);
        rng.fill_bytes(&mut nonce.0);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let own_rng = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        let mut p = Patient {
            study: study.into(),
            answers,
            expected,
            keys,
            nonce,
            seen: SeenRounds::new(study),
            rng: own_rng,
            state: State::AwaitingWelcome,
            out: VecDeque::new(),
            events: VecDeque::new(),
            timeout_ms: None,
            deadline: None,
            #[cfg(any(feature = "forge", feature = "test-util"))]
            forgery: None,
        };
        p.out.push_back(PatientToRelay::Join(Join {
            v: PROTOCOL_VERSION,
            study: p.study.clone(),
            commitment: p.commitment(),
            invite,
        }));
        p.touch(now_ms);
        Ok(p)
    }

    /// Makes this patient a forger (feature `forge`, for attack tests and `cohort-forger`):
    /// it contributes its vector changed by `forgery`, with the best proof it can make, or,
    /// for a dealing forgery ([`crate::proof::Forgery::DEALING`]), its honest vector dealt
    /// wrongly. Its own checks of others stay honest.
    #[cfg(any(feature = "forge", feature = "test-util"))]
    pub fn forging(mut self, forgery: crate::proof::Forgery) -> Patient {
        self.forgery = Some(forgery);
        self
    }

    /// Gives up (with [`ProtocolError::TimedOut`]) when the relay is silent for `ms` while a
    /// round is under way. Enrolment is never timed out: waiting for others is normal.
    pub fn set_timeout(&mut self, now_ms: u64, ms: Option<u64>) {
        self.timeout_ms = ms;
        self.touch(now_ms);
    }

    fn touch(&mut self, now_ms: u64) {
        self.deadline = match (&self.state, self.timeout_ms) {
            (State::AwaitingRoster { .. } | State::Finished, _) | (_, None) => None,
            (_, Some(ms)) => Some(now_ms.saturating_add(ms)),
        };
    }

    /// This patient's public key for the round (sent only in the reveal).
    pub fn public_key(&self) -> PublicKey {
        self.keys.public()
    }

    /// This patient's commitment to its key (sent in the join).
    pub fn commitment(&self) -> Commitment {
        commit(&self.study, &self.keys.public(), &self.nonce)
    }

    /// This patient's reveal (sent once the roster is frozen).
    pub fn revealed(&self, index: u32) -> Revealed {
        Revealed {
            index,
            public_key: self.keys.public(),
            nonce: self.nonce,
        }
    }

    /// Adds rounds this patient's user has already taken part in for this study (e.g. kept in
    /// the browser's `sessionStorage` across reconnects); a roster for one of them, or a second
    /// partial-sum request in one, is refused. Rounds of another study are ignored.
    pub fn remember_rounds(&mut self, seen: &SeenRounds) {
        self.seen.merge(seen);
    }

    /// The rounds seen so far, to keep for the next connection.
    pub fn seen_rounds(&self) -> &SeenRounds {
        &self.seen
    }

    /// What the patient waits for, e.g. `"awaiting roster"`.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// Whether the round is over for this patient (completed, abandoned or refused).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The next message to send to the relay.
    pub fn poll_output(&mut self) -> Option<PatientToRelay> {
        self.out.pop_front()
    }

    /// The next event for the user interface.
    pub fn poll_event(&mut self) -> Option<PatientEvent> {
        self.events.pop_front()
    }

    /// When to call [`Patient::handle_timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    /// Gives up if the deadline has passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.deadline.is_some_and(|d| now_ms >= d) {
            self.refuse(ProtocolError::TimedOut);
        }
    }

    /// Leaves the study: queues `leave` and finishes.
    pub fn leave(&mut self) {
        if !self.is_finished() {
            self.out.push_back(PatientToRelay::Leave(Leave {
                v: PROTOCOL_VERSION,
            }));
            self.finish();
        }
    }

    fn finish(&mut self) {
        // Dropping the state wipes the own share and the opening keys.
        if let State::AwaitingDelivery { own, .. } = &mut self.state {
            own.zeroize();
        }
        self.state = State::Finished;
        self.deadline = None;
    }

    fn refuse(&mut self, e: ProtocolError) {
        self.events.push_back(PatientEvent::Refused(e));
        self.leave();
    }

    /// Handles one message from the relay. An error means the message was not acceptable in
    /// this state; refusals that end the round are reported as [`PatientEvent::Refused`] and
    /// also returned.
    pub fn handle(&mut self, now_ms: u64, msg: RelayToPatient) -> Result<(), ProtocolError> {
        let result = self.dispatch(msg);
        if let Err(e) = &result
            && !self.is_finished()
            && is_fatal(e)
        {
            self.refuse(e.clone());
        }
        self.touch(now_ms);
        result
    }

    fn dispatch(&mut self, msg: RelayToPatient) -> Result<(), ProtocolError> {
        let state = core::mem::replace(&mut self.state, State::Finished);
        let (next, result) = self.step(state, msg);
        self.state = next;
        result
    }

    fn step(&mut self, state: State, msg: RelayToPatient) -> (State, Result<(), ProtocolError>) {
        // `checks`, `verdicts` and `result` of another round than the one under way: refused,
        // the state kept. (Deliveries and keys are checked with their other rules.)
        let got = match &msg {
            RelayToPatient::Checks(c) => Some(c.round),
            RelayToPatient::Verdicts(v) => Some(v.round),
            RelayToPatient::Result(r) => Some(r.round),
            _ => None,
        };
        if let (Some(got), Some(current)) = (got, state.round_after_delivery())
            && got != current
        {
            return (state, Err(ProtocolError::WrongRound { got, current }));
        }
        match (state, msg) {
            (state, RelayToPatient::Error(e)) => {
                self.events.push_back(PatientEvent::RelayError {
                    code: e.code,
                    message: e.message,
                });
                // A refused join ends this patient; later, a refusal is of a message that crossed
                // a deadline on the wire, and the hospital's deadlines settle the round.
                match state {
                    State::AwaitingWelcome => (State::Finished, Ok(())),
                    other => (other, Ok(())),
                }
            }
            (State::AwaitingWelcome, RelayToPatient::Welcome(w)) => {
                if w.study.id != self.study || self.expected.as_ref().is_some_and(|e| *e != w.study)
                {
                    return (State::AwaitingWelcome, Err(ProtocolError::ParamsMismatch));
                }
                if let Err(e) = check_answers(&w.study, &self.answers) {
                    return (State::AwaitingWelcome, Err(e));
                }
                if self.seen.contains(w.round) {
                    return (
                        State::AwaitingWelcome,
                        Err(ProtocolError::ReplayedRound { round: w.round }),
                    );
                }
                self.events.push_back(PatientEvent::Welcomed {
                    study: w.study.clone(),
                    round: w.round,
                    enrolled: w.enrolled,
                });
                (
                    State::AwaitingRoster {
                        params: w.study,
                        round: w.round,
                    },
                    Ok(()),
                )
            }
            (s @ State::AwaitingRoster { .. }, RelayToPatient::Enrolment(e)) => {
                self.events.push_back(PatientEvent::Enrolment {
                    enrolled: e.enrolled,
                    size: e.size,
                });
                (s, Ok(()))
            }
            (State::AwaitingRoster { params, round }, RelayToPatient::Roster(r)) => {
                match self.on_roster(&params, round, r) {
                    Ok(next) => (next, Ok(())),
                    Err(e) => (State::AwaitingRoster { params, round }, Err(e)),
                }
            }
            (State::AwaitingKeys { roster, me }, RelayToPatient::Keys(k)) => {
                match self.on_keys(&roster, me, k) {
                    Ok((own, from_keys, proof)) => (
                        State::AwaitingDelivery {
                            roster,
                            me,
                            own,
                            from_keys,
                            proof,
                        },
                        Ok(()),
                    ),
                    Err(e) => (State::AwaitingKeys { roster, me }, Err(e)),
                }
            }
            (
                State::AwaitingDelivery {
                    roster,
                    me,
                    own,
                    from_keys,
                    proof: Some(mut proof),
                },
                RelayToPatient::Delivery(d),
            ) => match self.on_proven_delivery(&roster, me, &mut proof, d) {
                Ok(()) if !proof.checkees(me).is_empty() => {
                    (State::AwaitingChecks { roster, me, proof }, Ok(()))
                }
                Ok(()) => (State::AwaitingVerdicts { roster, me, proof }, Ok(())),
                Err(e) => (
                    State::AwaitingDelivery {
                        roster,
                        me,
                        own,
                        from_keys,
                        proof: Some(proof),
                    },
                    Err(e),
                ),
            },
            (
                State::AwaitingDelivery {
                    roster,
                    me,
                    own,
                    from_keys,
                    proof: None,
                },
                RelayToPatient::Delivery(d),
            ) => match self.on_delivery(&roster, me, &own, &from_keys, d) {
                Ok((contributors, sent)) => (
                    State::AwaitingResult {
                        roster,
                        me,
                        contributors,
                        excluded: Vec::new(),
                        sent,
                        senders: None,
                    },
                    Ok(()),
                ),
                Err(e) => (
                    State::AwaitingDelivery {
                        roster,
                        me,
                        own,
                        from_keys,
                        proof: None,
                    },
                    Err(e),
                ),
            },
            (
                State::AwaitingChecks {
                    roster,
                    me,
                    mut proof,
                },
                RelayToPatient::Checks(c),
            ) => match proof.on_checks(me, &c) {
                Ok(verdict) => {
                    self.events.push_back(PatientEvent::ProofChecked {
                        round: roster.round,
                        dealer: verdict.dealer,
                        verdict: verdict.verdict,
                    });
                    self.out.push_back(PatientToRelay::Verdict(verdict));
                    if proof.checked_all(me) {
                        (State::AwaitingVerdicts { roster, me, proof }, Ok(()))
                    } else {
                        (State::AwaitingChecks { roster, me, proof }, Ok(()))
                    }
                }
                Err(e) => (State::AwaitingChecks { roster, me, proof }, Err(e)),
            },
            (
                State::AwaitingVerdicts {
                    roster,
                    me,
                    mut proof,
                },
                RelayToPatient::Verdicts(v),
            ) => match self.on_verdicts(&roster, me, &mut proof, &v) {
                Ok(Some((contributors, excluded, sent))) => {
                    let senders = Some(crate::proof::partial_sum_senders(
                        proof.scheme,
                        &proof.keyed,
                        &proof.contributors,
                    ));
                    (
                        State::AwaitingResult {
                            roster,
                            me,
                            contributors,
                            excluded,
                            sent,
                            senders,
                        },
                        Ok(()),
                    )
                }
                Ok(None) => (State::AwaitingAbandon, Ok(())),
                Err(e) => (State::AwaitingVerdicts { roster, me, proof }, Err(e)),
            },
            (s @ State::AwaitingResult { .. }, RelayToPatient::Delivery(d)) => {
                let round = d.round;
                (s, Err(ProtocolError::SecondPartialSumRequest { round }))
            }
            (
                State::AwaitingResult {
                    roster,
                    me,
                    contributors,
                    excluded,
                    sent,
                    senders,
                },
                RelayToPatient::Result(r),
            ) => {
                match check_result(
                    &roster,
                    me,
                    (&contributors, &excluded),
                    senders.as_deref(),
                    &sent,
                    r,
                ) {
                    Ok(checked) => {
                        self.events.push_back(PatientEvent::ResultChecked {
                            round: checked.round,
                            contributors: checked.contributors.len() as u32,
                            partial_sums: checked.partials.len() as u32,
                        });
                        self.events.push_back(PatientEvent::Completed(checked));
                        (State::Finished, Ok(()))
                    }
                    Err(e) => (
                        State::AwaitingResult {
                            roster,
                            me,
                            contributors,
                            excluded,
                            sent,
                            senders,
                        },
                        Err(e),
                    ),
                }
            }
            (state, RelayToPatient::Abandoned(a)) if !matches!(state, State::Finished) => {
                self.events.push_back(PatientEvent::Abandoned {
                    round: a.round,
                    reason: a.reason,
                });
                (State::Finished, Ok(()))
            }
            (state, msg) => {
                let err = ProtocolError::WrongState {
                    state: state.name(),
                    got: msg.kind(),
                };
                (state, Err(err))
            }
        }
    }

    fn on_roster(
        &mut self,
        params: &StudyParams,
        round: u64,
        r: RosterMsg,
    ) -> Result<State, ProtocolError> {
        let roster = r.roster;
        if roster.study != *params {
            return Err(ProtocolError::ParamsMismatch);
        }
        // The round id is covered by the safety code; pinning it to the welcome's keeps the
        // relay from choosing it freely.
        if roster.round != round {
            return Err(ProtocolError::BadRoster);
        }
        if self.seen.contains(roster.round) {
            return Err(ProtocolError::ReplayedRound {
                round: roster.round,
            });
        }
        roster.check()?;
        let n = roster.n();
        if n < params.min_cohort {
            return Err(ProtocolError::BelowMinimumCohort {
                got: n,
                min: params.min_cohort,
            });
        }
        // This patient is the member with its commitment (unique: `check` refuses duplicates).
        let mine = self.commitment();
        let Some(me) = roster
            .members
            .iter()
            .find(|m| m.commitment == mine)
            .map(|m| m.index)
        else {
            return Err(ProtocolError::BadRoster);
        };
        self.seen.insert(roster.round);
        self.out.push_back(PatientToRelay::Reveal(Reveal {
            v: PROTOCOL_VERSION,
            round: roster.round,
            public_key: self.keys.public(),
            nonce: self.nonce,
        }));
        Ok(State::AwaitingKeys { roster, me })
    }

    /// Checks every reveal against the frozen commitments, shows the safety code, and deals,
    /// seals and queues the shares.
    #[allow(clippy::type_complexity)]
    fn on_keys(
        &mut self,
        roster: &Roster,
        me: u32,
        k: Keys,
    ) -> Result<(Vec<Fe>, Vec<Option<DirectionKey>>, Option<Box<ProofRound>>), ProtocolError> {
        if k.round != roster.round {
            return Err(ProtocolError::WrongRound {
                got: k.round,
                current: roster.round,
            });
        }
        let n = roster.n();
        let params = &roster.study;
        // Members that did not reveal are left out like dropouts: a Shamir round goes on with
        // at least t of them; an additive round needs all.
        let needed = if roster.threshold == n {
            n
        } else {
            roster.threshold.max(params.min_cohort)
        };
        if k.reveals.windows(2).any(|w| w[0].index >= w[1].index)
            || (k.reveals.len() as u32) < needed
        {
            return Err(ProtocolError::BadRoster);
        }
        for rv in &k.reveals {
            let m = roster.member(rv.index).ok_or(ProtocolError::BadRoster)?;
            if !rv.opens(&params.id, &m.commitment) {
                return Err(ProtocolError::RevealMismatch { index: m.index });
            }
        }
        if !k.reveals.iter().any(|r| *r == self.revealed(me)) {
            return Err(ProtocolError::RevealMismatch { index: me });
        }
        let mut keys: Vec<&PublicKey> = k.reveals.iter().map(|r| &r.public_key).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(ProtocolError::DuplicateRosterMember);
        }
        let scheme = roster.scheme()?;
        let encoded = params
            .layout()?
            .encode(&self.answers)
            .map_err(|e| answer_error(params, e))?;
        #[allow(unused_mut)]
        let mut stats = zeroize::Zeroizing::new(encoded.as_slice().to_vec());
        #[cfg(any(feature = "forge", feature = "test-util"))]
        if let Some(f) = self.forgery {
            f.apply(params, &mut stats);
        }
        let my_key = self.keys.public();
        // Both directions' keys with every other keyed member, in roster order.
        let mut to_keys: Vec<Option<DirectionKey>> = (0..n).map(|_| None).collect();
        let mut from_keys: Vec<Option<DirectionKey>> = (0..n).map(|_| None).collect();
        for m in &k.reveals {
            if m.index == me {
                continue;
            }
            let pair = self
                .keys
                .agree(&m.public_key)
                .map_err(|_| ProtocolError::RevealMismatch { index: m.index })?;
            let to = Binding {
                study: &params.id,
                round: roster.round,
                from: me,
                to: m.index,
                from_key: &my_key,
                to_key: &m.public_key,
            };
            let from = Binding {
                from: m.index,
                to: me,
                from_key: &m.public_key,
                to_key: &my_key,
                ..to
            };
            to_keys[m.index as usize - 1] = Some(pair.direction_key(&to));
            from_keys[m.index as usize - 1] = Some(pair.direction_key(&from));
        }
        let (sealed, extra, own, from_keys, proof) = if params.proofs {
            let setup = ProofSetup::new(params).map_err(|_| ProtocolError::BadRoster)?;
            let mut check_seed = zeroize::Zeroizing::new([0u8; crate::proof::CHECK_SEEDS_LEN]);
            rand_core::Rng::fill_bytes(&mut self.rng, &mut check_seed[..]);
            let mut round = Box::new(ProofRound {
                setup,
                scheme,
                keyed: k.reveals.iter().map(|r| r.index).collect(),
                check_seed,
                to_keys,
                from_keys,
                own: Vec::new(),
                contributors: Vec::new(),
                held: BTreeMap::new(),
                local: BTreeMap::new(),
                verdicts: BTreeMap::new(),
                #[cfg(any(feature = "forge", feature = "test-util"))]
                forgery: self
                    .forgery
                    .filter(|f| f.is_dealing())
                    .map(|f| (f, crate::proof::Forgery::dealing_entry(params))),
            });
            let dealt = round.deal(me, &stats, &mut self.rng);
            (
                dealt.shares,
                dealt.extra,
                Vec::new(),
                Vec::new(),
                Some(round),
            )
        } else {
            let mut deal = scheme.deal(&stats, me, &mut self.rng);
            let sealed_len = scheme.payload_len(stats.len()) + crate::envelope::TAG_LEN;
            let mut sealed = ShareList::with_capacity(sealed_len, k.reveals.len());
            // Payloads come in roster order, as do the reveals: one pass finds each.
            let mut payloads = deal.payloads.iter();
            for m in &k.reveals {
                if m.index == me {
                    continue;
                }
                let (_, payload) = payloads
                    .find(|(j, _)| *j == m.index)
                    .expect("one payload per other member");
                let key = to_keys[m.index as usize - 1].as_ref().expect("keyed");
                let pushed = sealed.push(m.index, &key.seal_bytes(payload));
                debug_assert!(pushed, "every payload of a scheme has one length");
            }
            let own = core::mem::take(&mut deal.own);
            (sealed, ShareList::with_capacity(0, 0), own, from_keys, None)
        };
        self.events.push_back(PatientEvent::RosterFrozen {
            round: roster.round,
            n,
            threshold: roster.threshold,
            you: me,
            safety_code: roster.safety_code(&k.reveals),
        });
        self.out.push_back(PatientToRelay::Shares(Shares {
            round: roster.round,
            shares: sealed,
            extra,
        }));
        self.events.push_back(PatientEvent::SharesSent {
            round: roster.round,
        });
        Ok((own, from_keys, proof))
    }

    /// The checks every delivery gets (contributor set well-formed and large enough, no second
    /// partial-sum request, exactly one share from each other contributor).
    fn check_delivery(&self, roster: &Roster, me: u32, d: &Delivery) -> Result<(), ProtocolError> {
        if d.round != roster.round {
            return Err(ProtocolError::WrongRound {
                got: d.round,
                current: roster.round,
            });
        }
        let n = roster.n();
        let c = &d.contributors;
        if c.windows(2).any(|w| w[0] >= w[1]) || c.iter().any(|&i| i == 0 || i > n) {
            return Err(ProtocolError::BadDelivery);
        }
        let min = roster.study.min_cohort;
        if (c.len() as u32) < min {
            return Err(ProtocolError::BelowMinimumCohort {
                got: c.len() as u32,
                min,
            });
        }
        if self.seen.answered(roster.round) {
            return Err(ProtocolError::SecondPartialSumRequest {
                round: roster.round,
            });
        }
        if let Some((from, _)) = d
            .shares
            .iter()
            .find(|(from, _)| c.binary_search(from).is_err())
        {
            return Err(ProtocolError::DeliveryOmitsSender { from });
        }
        let expected: Vec<u32> = c.iter().copied().filter(|&i| i != me).collect();
        let mut got: Vec<u32> = d.shares.iter().map(|(from, _)| from).collect();
        got.sort_unstable();
        if got != expected {
            return Err(ProtocolError::BadDelivery);
        }
        Ok(())
    }

    /// A delivery in a round with proofs: open everything, queue the verifier shares.
    fn on_proven_delivery(
        &mut self,
        roster: &Roster,
        me: u32,
        proof: &mut ProofRound,
        d: Delivery,
    ) -> Result<(), ProtocolError> {
        self.check_delivery(roster, me, &d)?;
        let verify = proof.on_delivery(me, &d)?;
        self.out.push_back(PatientToRelay::Verify(verify));
        Ok(())
    }

    /// The verdicts of a round with proofs: the contributor set is the contributors whose proof
    /// held. Sends the partial sum over it, or nothing if the round cannot complete (too few
    /// valid contributors, or any exclusion in an additive round): the hospital abandons it.
    #[allow(clippy::type_complexity)]
    fn on_verdicts(
        &mut self,
        roster: &Roster,
        me: u32,
        proof: &mut ProofRound,
        v: &crate::message::Verdicts,
    ) -> Result<Option<(Vec<u32>, Vec<Exclusion>, Vec<Fe>)>, ProtocolError> {
        let (accepted, excluded) = proof.on_verdicts(me, v)?;
        self.events.push_back(PatientEvent::ProofsChecked {
            round: roster.round,
            excluded: excluded.clone(),
        });
        let additive = matches!(proof.scheme, crate::sharing::Scheme::Additive { .. });
        let needed =
            crate::proof::contributors_needed(proof.scheme, roster.study.min_cohort, roster.n());
        if (additive && !excluded.is_empty()) || (accepted.len() as u32) < needed {
            return Ok(None);
        }
        let sum = proof.partial_sum(me, &accepted);
        self.seen.mark_answered(roster.round);
        self.out.push_back(PatientToRelay::PartialSum(PartialSum {
            round: roster.round,
            sum: sum.clone(),
        }));
        self.events.push_back(PatientEvent::PartialSumSent {
            round: roster.round,
            contributors: accepted.len() as u32,
        });
        Ok(Some((accepted, excluded, sum)))
    }

    fn on_delivery(
        &mut self,
        roster: &Roster,
        me: u32,
        own: &[Fe],
        from_keys: &[Option<DirectionKey>],
        d: Delivery,
    ) -> Result<(Vec<u32>, Vec<Fe>), ProtocolError> {
        self.check_delivery(roster, me, &d)?;
        let c = &d.contributors;
        if !d.extra.is_empty() {
            return Err(ProtocolError::BadDelivery);
        }
        let len = own.len();
        let scheme = roster.scheme()?;
        let payload_len = scheme.payload_len(len);
        let mut sum = if c.contains(&me) {
            own.to_vec()
        } else {
            vec![Fe::ZERO; len]
        };
        for (from, sealed) in d.shares.iter() {
            let key = from_keys[from as usize - 1]
                .as_ref()
                .ok_or(ProtocolError::BadDelivery)?;
            let payload = key
                .open_bytes(sealed, payload_len)
                .map_err(|source| ProtocolError::Seal { from, source })?;
            let mut share = scheme.receive(&payload, len).ok_or(ProtocolError::Seal {
                from,
                source: SealError::OpenFailed,
            })?;
            for (a, b) in sum.iter_mut().zip(&share) {
                *a += *b;
            }
            share.zeroize();
        }
        self.seen.mark_answered(roster.round);
        self.out.push_back(PatientToRelay::PartialSum(PartialSum {
            round: roster.round,
            sum: sum.clone(),
        }));
        self.events.push_back(PatientEvent::PartialSumSent {
            round: roster.round,
            contributors: c.len() as u32,
        });
        Ok((d.contributors, sum))
    }
}

/// Recomputes the result from the published partial sums and checks it: the contributor set is
/// the one this patient answered for, its own partial sum is there unaltered, the partial sums
/// give one consistent aggregate (on one polynomial in Shamir rounds), and the relay's
/// questionnaire result (and one-question statistics) are exactly that. Returns the result with
/// this device's own computation.
fn check_result(
    roster: &Roster,
    me: u32,
    (contributors, excluded): (&[u32], &[Exclusion]),
    senders: Option<&[u32]>,
    sent: &[Fe],
    mut r: RoundResult,
) -> Result<RoundResult, ProtocolError> {
    if r.contributors != contributors || r.excluded != excluded {
        return Err(ProtocolError::ContributorSetChanged);
    }
    // With proofs, only the partial sums of the members whose shares were checked (see
    // `proof::partial_sum_senders`).
    if let Some(senders) = senders
        && r.partials
            .iter()
            .any(|p| senders.binary_search(&p.from).is_err())
    {
        return Err(ProtocolError::InconsistentPartialSums);
    }
    // Its own partial sum must be there unaltered, unless proofs leave it out (a Shamir
    // round's member whose own shares never arrived: its point was not checked).
    let mine_used = senders.is_none_or(|s| s.binary_search(&me).is_ok());
    if mine_used && !r.partials.iter().any(|p| p.from == me && p.sum == sent) {
        return Err(ProtocolError::OwnPartialSumAltered);
    }
    let points: Vec<(u32, &[Fe])> = r
        .partials
        .iter()
        .map(|p| (p.from, p.sum.as_slice()))
        .collect();
    let own = aggregate(roster, contributors, &points).map_err(|e| match e {
        AggregateFailure::Malformed
        | AggregateFailure::NotOnePolynomial
        | AggregateFailure::Inconsistent => ProtocolError::InconsistentPartialSums,
    })?;
    if own.statistics != r.statistics
        || own.questionnaire != r.questionnaire
        || r.roster_size != roster.n()
        || r.partial_sums as usize != points.len()
    {
        return Err(ProtocolError::LyingResult);
    }
    r.statistics = own.statistics;
    r.questionnaire = own.questionnaire;
    Ok(r)
}

/// Checks answers against a study's questionnaire without encoding them (the study's layout
/// must be valid too). For a one-question study a bad value is [`ProtocolError::Value`], as it
/// always was; otherwise [`ProtocolError::Answer`] names the question.
pub fn check_answers(params: &StudyParams, answers: &Answers) -> Result<(), ProtocolError> {
    params
        .layout()?
        .check(answers)
        .map(|_| ())
        .map_err(|e| answer_error(params, e))
}

/// A one-question study's value error stays a [`ProtocolError::Value`] (its question is
/// implicit); any other answer error names the question.
fn answer_error(params: &StudyParams, e: AnswerError) -> ProtocolError {
    match e {
        AnswerError::Value { source, .. } if params.is_single() => ProtocolError::Value(source),
        other => ProtocolError::Answer(other),
    }
}

/// Errors after which the patient must not go on with the round.
fn is_fatal(e: &ProtocolError) -> bool {
    !matches!(
        e,
        ProtocolError::WrongState { .. } | ProtocolError::WrongRound { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::PublicKey;
    use crate::message::{Enrolment, ErrorMsg, Welcome};
    use crate::roster::Member;
    use rand_chacha::ChaCha20Rng;

    fn params() -> StudyParams {
        StudyParams {
            proofs: false,
            size: 4,
            threshold: 4,
            min_cohort: 3,
            ..StudyParams::demo()
        }
    }

    fn welcomed(seed: u64) -> Patient {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut p = Patient::new(
            0,
            "demo",
            "170.5".parse().unwrap(),
            Some(params()),
            None,
            &mut rng,
        )
        .unwrap();
        assert!(matches!(p.poll_output(), Some(PatientToRelay::Join(_))));
        p.handle(
            1,
            RelayToPatient::Welcome(Welcome {
                v: 2,
                study: params(),
                round: 7,
                enrolled: 1,
            }),
        )
        .unwrap();
        p
    }

    fn roster_for(p: &Patient, n: u32, you: u32) -> RosterMsg {
        let members = (1..=n)
            .map(|i| Member {
                index: i,
                commitment: if i == you { p.commitment() } else { other(i).0 },
            })
            .collect();
        RosterMsg {
            v: 2,
            roster: Roster {
                study: params(),
                round: 7,
                threshold: n.min(4),
                members,
            },
        }
    }

    fn other_key(i: u32) -> PublicKey {
        KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(1000 + u64::from(i))).public()
    }

    /// Another member's commitment and reveal.
    fn other(i: u32) -> (Commitment, Revealed) {
        let r = Revealed {
            index: i,
            public_key: other_key(i),
            nonce: Nonce([i as u8; 32]),
        };
        (commit("demo", &r.public_key, &r.nonce), r)
    }

    /// The keys message for `roster_for(p, n, you)`.
    fn keys_for(p: &Patient, n: u32, you: u32) -> RelayToPatient {
        RelayToPatient::Keys(Keys {
            v: 2,
            round: 7,
            reveals: (1..=n)
                .map(|i| if i == you { p.revealed(i) } else { other(i).1 })
                .collect(),
        })
    }

    /// Roster and keys, as a relay that follows the protocol sends them.
    fn frozen(p: &mut Patient, t: u64, n: u32, you: u32) {
        p.handle(t, RelayToPatient::Roster(roster_for(p, n, you)))
            .unwrap();
        assert!(matches!(p.poll_output(), Some(PatientToRelay::Reveal(_))));
        let k = keys_for(p, n, you);
        p.handle(t, k).unwrap();
    }

    fn refused(p: &mut Patient) -> Option<ProtocolError> {
        let mut found = None;
        while let Some(e) = p.poll_event() {
            if let PatientEvent::Refused(err) = e {
                found = Some(err);
            }
        }
        found
    }

    #[test]
    fn checks_value_before_joining() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let err = Patient::new(
            0,
            "demo",
            "300.5".parse().unwrap(),
            Some(params()),
            None,
            &mut rng,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Value(crate::error::ValueError::OutOfRange)
        );
    }

    #[test]
    fn refuses_roster_with_other_parameters() {
        let mut p = welcomed(2);
        let mut r = roster_for(&p, 4, 1);
        r.roster.study.max = Decimal::from_int(250).unwrap();
        assert_eq!(
            p.handle(2, RelayToPatient::Roster(r)),
            Err(ProtocolError::ParamsMismatch)
        );
        assert_eq!(refused(&mut p), Some(ProtocolError::ParamsMismatch));
        assert!(p.is_finished());
        assert!(matches!(p.poll_output(), Some(PatientToRelay::Leave(_))));
    }

    #[test]
    fn refuses_roster_below_minimum_cohort() {
        let mut p = welcomed(3);
        let r = roster_for(&p, 2, 1);
        let err = ProtocolError::BelowMinimumCohort { got: 2, min: 3 };
        assert_eq!(p.handle(2, RelayToPatient::Roster(r)), Err(err.clone()));
        assert_eq!(refused(&mut p), Some(err));
    }

    #[test]
    fn refuses_roster_for_another_round() {
        let mut p = welcomed(11);
        let mut r = roster_for(&p, 4, 1);
        r.roster.round = 8;
        assert_eq!(
            p.handle(2, RelayToPatient::Roster(r)),
            Err(ProtocolError::BadRoster)
        );
        assert_eq!(refused(&mut p), Some(ProtocolError::BadRoster));
    }

    #[test]
    fn refuses_roster_without_its_own_key() {
        let mut p = welcomed(4);
        let mut r = roster_for(&p, 4, 2);
        r.roster.members[1].commitment = other(9).0;
        assert_eq!(
            p.handle(2, RelayToPatient::Roster(r)),
            Err(ProtocolError::BadRoster)
        );
    }

    #[test]
    fn refuses_small_contributor_sets_and_tampered_shares() {
        let mut p = welcomed(5);
        frozen(&mut p, 2, 4, 1);
        let Some(PatientToRelay::Shares(sent)) = p.poll_output() else {
            panic!("shares expected")
        };
        assert_eq!(sent.shares.len(), 3);
        // Contributor set {1, 2}: below the minimum cohort of 3.
        let mut one = ShareList::with_capacity(sent.shares.sealed_len(), 1);
        assert!(one.push(2, sent.shares.get(0).1));
        let small = Delivery {
            round: 7,
            contributors: vec![1, 2],
            shares: one,
            extra: ShareList::with_capacity(0, 0),
        };
        let err = ProtocolError::BelowMinimumCohort { got: 2, min: 3 };
        assert_eq!(p.handle(3, RelayToPatient::Delivery(small)), Err(err));
        assert!(p.is_finished());

        let mut p = welcomed(6);
        frozen(&mut p, 2, 4, 1);
        let Some(PatientToRelay::Shares(sent)) = p.poll_output() else {
            panic!("shares expected")
        };
        // Our own sealed shares (to 2, 3, 4) replayed as if from 2, 3, 4: keys differ, so they
        // must fail to open.
        // (The entries of a `shares` list are tagged with the recipient; read as a delivery they
        // claim to come from it.)
        let forged = sent.shares.clone();
        assert_eq!(forged.iter().map(|(i, _)| i).collect::<Vec<_>>(), [2, 3, 4]);
        let d = Delivery {
            round: 7,
            contributors: vec![1, 2, 3, 4],
            shares: forged,
            extra: ShareList::with_capacity(0, 0),
        };
        assert!(matches!(
            p.handle(3, RelayToPatient::Delivery(d)),
            Err(ProtocolError::Seal { from: 2, .. })
        ));
        assert!(
            !core::iter::from_fn(|| p.poll_output())
                .any(|m| matches!(m, PatientToRelay::PartialSum(_)))
        );
    }

    #[test]
    fn wrong_state_messages_are_typed_errors_not_panics() {
        let mut p = welcomed(7);
        let d = Delivery {
            round: 7,
            contributors: vec![],
            shares: ShareList::with_capacity(48, 0),
            extra: ShareList::with_capacity(0, 0),
        };
        assert!(matches!(
            p.handle(2, RelayToPatient::Delivery(d)),
            Err(ProtocolError::WrongState { .. })
        ));
        assert!(!p.is_finished(), "a stray message does not end the round");
        p.handle(
            3,
            RelayToPatient::Enrolment(Enrolment {
                v: 2,
                round: 7,
                enrolled: 2,
                size: 4,
            }),
        )
        .unwrap();
        let events: Vec<PatientEvent> = core::iter::from_fn(|| p.poll_event()).collect();
        assert!(matches!(
            events.last(),
            Some(PatientEvent::Enrolment {
                enrolled: 2,
                size: 4
            })
        ));
    }

    #[test]
    fn refused_join_finishes_and_debug_hides_the_value() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let mut p =
            Patient::new(0, "demo", "170.5".parse().unwrap(), None, None, &mut rng).unwrap();
        assert!(!format!("{p:?}").contains("170"));
        let e = ErrorMsg {
            v: 2,
            code: ErrorCode::UnknownStudy,
            message: "no such study".into(),
        };
        p.handle(1, RelayToPatient::Error(e)).unwrap();
        assert!(p.is_finished());
    }

    #[test]
    fn times_out_only_after_enrolment() {
        let mut p = welcomed(9);
        p.set_timeout(10, Some(1000));
        assert_eq!(
            p.poll_timeout(),
            None,
            "waiting for others is never timed out"
        );
        frozen(&mut p, 20, 4, 1);
        assert_eq!(p.poll_timeout(), Some(1020));
        p.handle_timeout(1020);
        assert_eq!(refused(&mut p), Some(ProtocolError::TimedOut));
    }
}
