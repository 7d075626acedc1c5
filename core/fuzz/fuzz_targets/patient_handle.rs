//! A `Patient` fed arbitrary relay message sequences: raw text, and structured messages built
//! so that the deep states are reachable (rosters that hold the patient's commitment, `keys`
//! whose reveals open the other members' commitments (pool keys, fixed nonces) or not,
//! deliveries sealed by the revealed keys, results recomputable from the patient's own partial
//! sum). Must never panic; everything it sends must survive the wire; a finished patient has
//! no deadline and sends nothing more; `handle_timeout` makes progress; and it never releases
//! a partial sum it must not: at most one, only in answer to a delivery for the round whose
//! roster held its commitment, after its shares went out on `keys` whose every reveal opens
//! that roster's commitments, over a contributor set of at least the minimum cohort of keyed
//! members that names every sender.
//!
//! Two studies have validity proofs (one additive, one Shamir): deliveries then carry proof
//! shares with check seeds (and the additive correction), and the relay side also sends
//! `checks` (honest: the right dealer and count, entries of four canonical elements; or with
//! another dealer, count or verifiers, items of another length, non-canonical elements) and
//! `verdicts` (honest: every contributor not found valid, with the tag sum the checkers' verdict
//! tags give, computed from the pool keys; or with the tag sum off, codes changed, other dealers
//! listed, out of order, repeated). Then also: it sends `verify` only on a delivery (entries for
//! contributors other than itself that it does not check, ascending), a `verdict` only on
//! `checks` for a proof it checks (once per proof, a tag for every other keyed member), a
//! partial sum only on `verdicts` it could check; every `verdicts` that differs from the honest
//! one (when the harness can compute the honest one) is refused with a typed error; and no
//! partial sum or result is over a contributor the accepted `verdicts` listed as not valid.
#![no_main]

use arbitrary::Arbitrary;
use cohort_core::commitment::{Nonce, Revealed};
use cohort_core::decimal::Decimal;
use cohort_core::encoding::Statistics;
use cohort_core::envelope::{Binding, DirectionKey, PublicKey};
use cohort_core::error::ErrorCode;
use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    AbandonReason, Abandoned, Checks, Delivery, Enrolment, ErrorMsg, Keys, PROTOCOL_VERSION,
    PartialSumOf, PatientToRelay, RelayToPatient, RosterMsg, RoundResult, Verdicts, Welcome,
};
use cohort_core::proof::{
    self, CHECK_SEEDS_LEN, CORRECTION_LABEL, Exclusion, NO_VERDICT, ProofSetup, VERIFY_ENTRY_LEN,
    Verdict,
};
use cohort_core::protocol::aggregate::aggregate;
use cohort_core::protocol::{Patient, PatientEvent};
use cohort_core::questionnaire::QuestionnaireResult;
use cohort_core::rand_core::SeedableRng;
use cohort_core::roster::{Member, Roster, SafetyCode};
use cohort_core::study::{StudyParams, StudySpec};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;

mod common;
use common::KeySel;

const SPECS: [&str; 5] = [
    "id=f,size=8,threshold=8,min=0,max=300,decimals=1,buckets=10,min_cohort=2,proofs=off",
    "id=f,size=8,threshold=5,min_cohort=2,min=-10,max=10,decimals=2,buckets=3,proofs=off",
    "id=f,size=3,min=0,max=1,decimals=0,buckets=1,proofs=off",
    // With validity proofs: additive rounds and Shamir rounds (t = 3).
    "id=f,size=8,min=0,max=10,decimals=0,buckets=2,min_cohort=2,proofs=on",
    "id=f,size=5,threshold=3,min_cohort=2,min=0,max=10,decimals=0,buckets=2,proofs=on",
];

#[derive(Arbitrary, Debug)]
enum ParamSel {
    Joined,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum RoundSel {
    Roster,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum PayloadSel {
    /// Field elements (reduced), or seed bytes, sealed by the real sender with the right length.
    Sealed(Vec<u64>),
    /// Sealed by the real sender with whatever length.
    SealedLen(Vec<u8>),
    /// Raw bytes that are not a valid seal.
    Garbage(Vec<u8>),
    /// Base64url text that is not a whole number of bytes.
    BadText(u8),
}

#[derive(Arbitrary, Debug)]
struct DShare {
    from: u8,
    payload: PayloadSel,
}

/// One entry of a `keys` message.
#[derive(Arbitrary, Debug)]
struct RevealSel {
    /// Roster index (mod n + 2: 0 and n + 1 are outside the roster).
    index: u8,
    /// Another key than the member committed to.
    key: Option<KeySel>,
    /// Another nonce than the member committed with.
    nonce: Option<u8>,
}

/// How a result is made.
#[derive(Arbitrary, Debug)]
enum ResultSel {
    /// Partial sums that lie on one polynomial with the patient's own (or add up with it), to
    /// an aggregate of `value` times the contributor set: one the patient can recompute.
    Honest { value: u16, tamper: Option<Tamper> },
    /// Statistics from nowhere, no partial sums.
    Bogus { count: u64, mean: f64 },
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    Statistics,
    OwnPartial,
    OtherPartial(u8),
    DropPartial(u8),
    Contributors,
    RosterSize,
    PartialCount,
}

/// How a `checks` frame is made from the honest one (rounds with proofs): for the patient's
/// next unchecked checkee; additive rounds one entry tagged with the number of other verifiers,
/// Shamir rounds one entry per other verifier; entries of four canonical elements.
#[derive(Arbitrary, Debug)]
enum ChecksSel {
    Honest,
    /// Another dealer (mod 10).
    Dealer(u8),
    /// The additive count, or the first Shamir verifier, moved by this much (mod 4, + 1).
    Count(u8),
    /// Verifiers (or the count) chosen outright (mod 10).
    Entries(Vec<u8>),
    /// Items of another length (mod 65).
    ItemLen(u8),
    /// Entry `k` (mod the count) of bytes 0xff (not canonical).
    Garbage(u8),
}

/// How a `verdicts` frame is made from the honest one (every contributor not found valid with
/// its verdict byte, the sum of the verdict tags addressed to the patient).
#[derive(Arbitrary, Debug)]
enum VerdictsSel {
    Honest,
    /// The tag sum plus `d` (mod 3, − 1: off by one either way, or right).
    TagOff(u8),
    /// Listed entry `k` (or a new one for contributor `k`) with code `b`.
    Code(u8, u8),
    /// Listed dealers chosen outright (mod 10), code 1.
    Listed(Vec<u8>),
    /// The listed entries in descending order.
    Reversed,
    /// Listed entry `k` twice.
    Repeat(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Raw(String),
    Welcome {
        params: ParamSel,
        round: u64,
        enrolled: u32,
    },
    Enrolment {
        round: u64,
        enrolled: u32,
        size: u32,
    },
    /// Members other than the patient commit to `others` (default: pool key i − 1) with nonce
    /// `[i; 32]`; the patient's own commitment sits at `me_at` unless `without_me`.
    Roster {
        params: ParamSel,
        round: u64,
        n: u8,
        me_at: u8,
        without_me: bool,
        threshold: Option<u32>,
        others: Vec<KeySel>,
    },
    /// `all`: every member's reveal of what it committed to (the patient's own from its
    /// join), in index order, but for `skip`; else the listed entries.
    Keys {
        round: RoundSel,
        all: bool,
        skip: Option<u8>,
        reveals: Vec<RevealSel>,
    },
    Delivery {
        round: RoundSel,
        contributors: Vec<u8>,
        all: bool,
        shares: Vec<DShare>,
    },
    Result {
        round: RoundSel,
        result: ResultSel,
    },
    Abandoned {
        round: u64,
        reason: u8,
    },
    Error {
        code: u8,
    },
    Advance(u16),
    Leave,
    /// What an honest relay would send next in the patient's current state.
    Next {
        n: u8,
        me_at: u8,
        value: u16,
    },
    Checks {
        round: RoundSel,
        how: ChecksSel,
    },
    /// `codes[i]`: the verdict the relay claims for the i-th contributor (other than those the
    /// patient checks, or that nobody could check): 1 and 2 listed, 0xFF listed without a
    /// verdict, anything else valid.
    Verdicts {
        round: RoundSel,
        codes: Vec<u8>,
        how: VerdictsSel,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    spec: u8,
    seed: u64,
    value: u16,
    expected: bool,
    timeout: Option<u16>,
    ops: Vec<Op>,
}

fn params_for(joined: &StudyParams, sel: &ParamSel) -> StudyParams {
    match sel {
        ParamSel::Joined => joined.clone(),
        ParamSel::Other(i) => {
            let mut p = joined.clone();
            match i % 4 {
                0 => p.max = Decimal::from_int(999).unwrap(),
                1 => p.min_cohort = 8,
                2 => p.id = "g".into(),
                _ => {
                    p = SPECS[usize::from(*i) % SPECS.len()]
                        .parse::<StudySpec>()
                        .unwrap()
                        .params
                }
            }
            p
        }
    }
}

/// The last roster sent, with what each member committed to (the patient's own: its key and
/// the nonce of its join), to build `keys` and seal deliveries under it.
#[derive(Clone)]
struct Sent {
    roster: Roster,
    me: Option<u32>,
    members: Vec<(PublicKey, Nonce)>,
}

/// What the patient accepted so far (learnt from what it sent), to check it releases nothing
/// it must not.
#[derive(Default)]
struct Accepted {
    /// The roster it revealed for, and its index there.
    roster: Option<(Roster, u32)>,
    /// The reveals of the `keys` it sent its shares on.
    keys: Option<Vec<Revealed>>,
    /// The contributor set and partial sum it answered with.
    partial: Option<(Vec<u32>, Vec<Fe>)>,
    /// Rounds with proofs: the contributor set of the delivery it answered with `verify`.
    delivered: Option<Vec<u32>>,
    /// Its verdicts on the proofs it checks.
    verdicts: Vec<(u32, Verdict)>,
    /// The exclusions of the `verdicts` it accepted.
    excluded: Option<Vec<Exclusion>>,
}

impl Accepted {
    /// The keyed members of the `keys` it dealt on (ascending).
    fn keyed(&self) -> Vec<u32> {
        let mut k: Vec<u32> = self
            .keys
            .as_ref()
            .map_or_else(Vec::new, |ks| ks.iter().map(|r| r.index).collect());
        k.sort_unstable();
        k
    }

    /// The checker of `dealer`'s proof.
    fn checker(&self, dealer: u32) -> Option<u32> {
        let c = self.delivered.as_ref()?;
        proof::checker_of(&self.keyed(), c, dealer).map(|(k, _)| k)
    }

    /// The proofs it checks, ascending.
    fn checkees(&self) -> Vec<u32> {
        let Some((_, me)) = &self.roster else {
            return vec![];
        };
        let c = self.delivered.clone().unwrap_or_default();
        c.into_iter()
            .filter(|&d| d != *me && self.checker(d) == Some(*me))
            .collect()
    }

    /// The key of the direction `from` → the patient, if `from` revealed a pool key.
    fn key_from(&self, from: u32, me_key: &PublicKey) -> Option<DirectionKey> {
        let (r, me) = self.roster.as_ref()?;
        let their = self
            .keys
            .as_ref()?
            .iter()
            .find(|k| k.index == from)?
            .public_key;
        let pair = common::pool_pair(&their)?;
        let b = Binding {
            study: &r.study.id,
            round: r.round,
            from,
            to: *me,
            from_key: &their,
            to_key: me_key,
        };
        pair.agree(me_key).ok().map(|s| s.direction_key(&b))
    }
}

/// The honest `verdicts`: every contributor not found valid (the claims in `codes` for the
/// proofs others check, the patient's own verdicts for those it checks, 0xFF for those nobody
/// checks), ascending, and the sum of the verdict tags addressed to the patient. `None` for the
/// sum if a checker's key is not a pool key.
fn honest_verdicts(
    a: &Accepted,
    me_key: &PublicKey,
    codes: &[u8],
) -> (Vec<(u32, u8)>, Option<u64>) {
    let me = a.roster.as_ref().map_or(0, |(_, me)| *me);
    let mut listed = vec![];
    let mut tag = Some(0u64);
    for (i, &c) in a.delivered.clone().unwrap_or_default().iter().enumerate() {
        let code = match a.checker(c) {
            None => Some(NO_VERDICT),
            Some(k) if k == me => {
                let own = a
                    .verdicts
                    .iter()
                    .find(|(d, _)| *d == c)
                    .map_or(Verdict::NotVerified, |(_, v)| *v);
                (own != Verdict::Valid).then_some(own.code())
            }
            Some(k) => {
                let code = match codes.get(i).copied().unwrap_or(0) {
                    b @ (1 | 2 | NO_VERDICT) => Some(b),
                    _ => None,
                };
                if code != Some(NO_VERDICT) {
                    let v = code.map_or(Verdict::Valid, |b| Verdict::from_code(b).expect("1, 2"));
                    tag = tag.and_then(|t| {
                        let key = a.key_from(k, me_key)?;
                        Some(t.wrapping_add(proof::verdict_tag(&key, c, v)))
                    });
                }
                code
            }
        };
        if let Some(b) = code {
            listed.push((c, b));
        }
    }
    (listed, tag)
}

/// A result the patient can recompute: the aggregate is `value` encoded, times the contributor
/// set; the other members' partial sums are chosen so that together with the patient's own
/// they give it (additive: one other member carries the difference; Shamir: the line through
/// (0, aggregate) and (me, own)).
fn honest_result(r: &Roster, me: u32, contributors: &[u32], own: &[Fe], value: u16) -> RoundResult {
    let n = r.n();
    let k = Fe::new(contributors.len() as u64);
    let a: Vec<Fe> = common::encoded(&r.study, value)
        .into_iter()
        .map(|x| x * k)
        .collect();
    let carrier = if me == 1 { 2 } else { 1 };
    let slope = Fe::new(u64::from(me)).inverse();
    let partials: Vec<PartialSumOf> = (1..=n)
        .map(|j| {
            let sum = if j == me {
                own.to_vec()
            } else if r.threshold >= n {
                if j == carrier {
                    a.iter().zip(own).map(|(&x, &y)| x - y).collect()
                } else {
                    vec![Fe::ZERO; own.len()]
                }
            } else {
                let c = Fe::new(u64::from(j)) * slope;
                a.iter().zip(own).map(|(&x, &y)| x + (y - x) * c).collect()
            };
            PartialSumOf { from: j, sum }
        })
        .collect();
    let points: Vec<(u32, &[Fe])> = partials
        .iter()
        .map(|p| (p.from, p.sum.as_slice()))
        .collect();
    let (statistics, questionnaire) = match aggregate(r, contributors, &points) {
        Ok(d) => (d.statistics, d.questionnaire),
        Err(_) => {
            let s = Statistics {
                count: 0,
                sum: 0.0,
                mean: 0.0,
                stddev: 0.0,
                histogram: vec![],
            };
            (Some(s.clone()), QuestionnaireResult::from_statistics(&s))
        }
    };
    RoundResult {
        v: PROTOCOL_VERSION,
        study: r.study.id.clone(),
        round: r.round,
        statistics,
        questionnaire,
        roster_size: n,
        contributors: contributors.to_vec(),
        partial_sums: n,
        excluded: Vec::new(),
        safety_code: SafetyCode::pending(),
        partials,
    }
}

fn tamper(r: &mut RoundResult, me: u32, t: &Tamper) {
    let bump = |v: &mut Vec<Fe>| {
        if let Some(x) = v.first_mut() {
            *x += Fe::ONE;
        }
    };
    let n = r.partials.len().max(1);
    match t {
        Tamper::Statistics => {
            if let Some(s) = r.statistics.as_mut() {
                s.mean += 1.0;
            }
        }
        Tamper::OwnPartial => {
            if let Some(p) = r.partials.iter_mut().find(|p| p.from == me) {
                bump(&mut p.sum);
            }
        }
        Tamper::OtherPartial(i) => {
            if let Some(p) = r.partials.get_mut(usize::from(*i) % n) {
                bump(&mut p.sum);
            }
        }
        Tamper::DropPartial(i) => {
            let i = usize::from(*i) % n;
            if i < r.partials.len() {
                r.partials.remove(i);
                r.partial_sums = r.partials.len() as u32;
            }
        }
        Tamper::Contributors => {
            r.contributors.pop();
        }
        Tamper::RosterSize => r.roster_size += 1,
        Tamper::PartialCount => r.partial_sums += 1,
    }
}

fuzz_target!(|input: Input| {
    let spec: StudySpec = SPECS[usize::from(input.spec) % SPECS.len()]
        .parse()
        .expect("valid");
    let joined = spec.params;
    let lo = joined.min.to_scaled(joined.decimals).unwrap();
    let off = i64::from(input.value) % (joined.range_scaled() as i64 + 2); // may be out of range
    let value = Decimal::new(lo + off, joined.decimals).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(input.seed);
    let expected = input.expected.then(|| joined.clone());
    let Ok(mut p) = Patient::new(0, "f", value, expected, None, &mut rng) else {
        return;
    };
    let mut now = 0u64;
    p.set_timeout(now, input.timeout.map(u64::from));
    let me_key = p.public_key();
    let pool = common::pool();
    let mut sent: Option<Sent> = None;
    // The indices whose reveals the last `keys` carried (an honest delivery comes from them).
    let mut keyed: Vec<u32> = vec![];
    let mut accepted = Accepted::default();
    let mut partial_sums = 0u32;
    // The first output is the join.
    let mut first = true;
    for op in input.ops.iter().take(128) {
        let next;
        let op = match op {
            Op::Next { n, me_at, value } => {
                next = match p.state_name() {
                    "awaiting welcome" => Op::Welcome {
                        params: ParamSel::Joined,
                        round: 5,
                        enrolled: 1,
                    },
                    "awaiting roster" => Op::Roster {
                        params: ParamSel::Joined,
                        round: 5,
                        n: *n,
                        me_at: *me_at,
                        without_me: false,
                        threshold: None,
                        others: vec![],
                    },
                    "awaiting keys" => Op::Keys {
                        round: RoundSel::Roster,
                        all: true,
                        skip: None,
                        reveals: vec![],
                    },
                    "awaiting delivery" => Op::Delivery {
                        round: RoundSel::Roster,
                        contributors: vec![],
                        all: true,
                        shares: vec![],
                    },
                    "awaiting checks" => Op::Checks {
                        round: RoundSel::Roster,
                        how: ChecksSel::Honest,
                    },
                    "awaiting verdicts" => Op::Verdicts {
                        round: RoundSel::Roster,
                        codes: vec![],
                        how: VerdictsSel::Honest,
                    },
                    _ => Op::Result {
                        round: RoundSel::Roster,
                        result: ResultSel::Honest {
                            value: *value,
                            tamper: None,
                        },
                    },
                };
                &next
            }
            other => other,
        };
        // Before the op: `Leave` finishes the patient itself.
        let was_finished = p.is_finished();
        // The `verdicts` this op sends (its listed entries), and whether it must be refused.
        let mut verdicts_sent: Option<(Vec<(u32, u8)>, bool)> = None;
        let msg = match op {
            Op::Raw(text) => RelayToPatient::decode(text).ok(),
            Op::Welcome {
                params,
                round,
                enrolled,
            } => Some(RelayToPatient::Welcome(Welcome {
                v: PROTOCOL_VERSION,
                study: params_for(&joined, params),
                round: *round,
                enrolled: *enrolled,
            })),
            Op::Enrolment {
                round,
                enrolled,
                size,
            } => Some(RelayToPatient::Enrolment(Enrolment {
                v: PROTOCOL_VERSION,
                round: *round,
                enrolled: *enrolled,
                size: *size,
            })),
            Op::Roster {
                params,
                round,
                n,
                me_at,
                without_me,
                threshold,
                others,
            } => {
                let study = params_for(&joined, params);
                let n = 2 + u32::from(*n % 7);
                let me_at = 1 + u32::from(*me_at) % n;
                let me = (!without_me).then_some(me_at);
                let members: Vec<(PublicKey, Nonce)> = (1..=n)
                    .map(|index| {
                        if Some(index) == me {
                            (me_key, p.revealed(index).nonce)
                        } else {
                            let key = others
                                .get(index as usize - 1)
                                .map_or(pool[index as usize - 1].public(), |k| k.key());
                            (key, common::nonce(index as u8))
                        }
                    })
                    .collect();
                let roster = Roster {
                    threshold: threshold.unwrap_or(study.round_threshold(n)),
                    members: members
                        .iter()
                        .zip(1..)
                        .map(|((key, nonce), index)| Member {
                            index,
                            commitment: cohort_core::commitment::commit(&study.id, key, nonce),
                        })
                        .collect(),
                    study,
                    round: *round,
                };
                sent = Some(Sent {
                    roster: roster.clone(),
                    me,
                    members,
                });
                Some(RelayToPatient::Roster(RosterMsg {
                    v: PROTOCOL_VERSION,
                    roster,
                }))
            }
            Op::Keys {
                round,
                all,
                skip,
                reveals,
            } => {
                let s = sent.clone().unwrap_or_else(|| Sent {
                    roster: Roster {
                        study: joined.clone(),
                        round: 0,
                        threshold: 2,
                        members: vec![],
                    },
                    me: None,
                    members: vec![],
                });
                let n = s.roster.n();
                let member = |i: u32| {
                    s.members
                        .get((i as usize).wrapping_sub(1))
                        .copied()
                        .unwrap_or((pool[0].public(), common::nonce(0)))
                };
                let reveals: Vec<Revealed> = if *all {
                    let skip = skip.map(|k| 1 + u32::from(k) % n.max(1));
                    (1..=n)
                        .filter(|&i| Some(i) != skip)
                        .map(|index| {
                            let (public_key, nonce) = member(index);
                            Revealed {
                                index,
                                public_key,
                                nonce,
                            }
                        })
                        .collect()
                } else {
                    reveals
                        .iter()
                        .take(16)
                        .map(|rv| {
                            let index = u32::from(rv.index) % (n + 2);
                            let (key, nonce) = member(index);
                            Revealed {
                                index,
                                public_key: rv.key.map_or(key, |k| k.key()),
                                nonce: rv.nonce.map_or(nonce, common::nonce),
                            }
                        })
                        .collect()
                };
                keyed = reveals.iter().map(|r| r.index).collect();
                Some(RelayToPatient::Keys(Keys {
                    v: PROTOCOL_VERSION,
                    round: match round {
                        RoundSel::Roster => s.roster.round,
                        RoundSel::Any(x) => *x,
                    },
                    reveals,
                }))
            }
            Op::Delivery {
                round,
                contributors,
                all,
                shares,
            } => {
                let (r, me, members) = sent.clone().map_or_else(
                    || {
                        (
                            Roster {
                                study: joined.clone(),
                                round: 0,
                                threshold: 2,
                                members: vec![],
                            },
                            1,
                            vec![],
                        )
                    },
                    |s| (s.roster, s.me.unwrap_or(1), s.members),
                );
                let round = match round {
                    RoundSel::Roster => r.round,
                    RoundSel::Any(x) => *x,
                };
                let contributors: Vec<u32> = if *all {
                    let mut c: Vec<u32> = keyed.clone();
                    c.sort_unstable();
                    c.dedup();
                    c
                } else {
                    contributors
                        .iter()
                        .take(16)
                        .map(|&c| u32::from(c % 10))
                        .collect()
                };
                // With proofs: the proof share and the check seeds (canonical elements either
                // way: every byte below 16).
                let setup = r
                    .study
                    .proofs
                    .then(|| ProofSetup::new(&r.study).ok())
                    .flatten();
                let payload_len = r.scheme().map_or(32, |s| match &setup {
                    Some(p) => p.payload_len(s) + CHECK_SEEDS_LEN,
                    None => s.payload_len(r.study.vector_len()),
                });
                let key_from = |from: u32| -> Option<DirectionKey> {
                    // The sender's committed key if it is a pool key, else pool key 0.
                    let sender = members
                        .get((from as usize).wrapping_sub(1))
                        .and_then(|(k, _)| common::pool_pair(k))
                        .unwrap_or(&pool[0]);
                    let from_key = sender.public();
                    let b = Binding {
                        study: &r.study.id,
                        round: r.round,
                        from,
                        to: me,
                        from_key: &from_key,
                        to_key: &me_key,
                    };
                    sender.agree(&me_key).ok().map(|s| s.direction_key(&b))
                };
                let seal = |from: u32, plain: &[u8]| -> Vec<u8> {
                    key_from(from).map_or_else(|| plain.to_vec(), |k| k.seal_bytes(plain))
                };
                let entries: Vec<(u32, Vec<u8>)> = if *all {
                    contributors
                        .iter()
                        .filter(|&&c| c != me)
                        .map(|&from| {
                            let plain: Vec<u8> =
                                (0..payload_len).map(|i| (i as u8) & 0x0f).collect();
                            (from, seal(from, &plain))
                        })
                        .collect()
                } else {
                    shares
                        .iter()
                        .take(16)
                        .map(|s| {
                            let from = u32::from(s.from % 10);
                            let sealed = match &s.payload {
                                PayloadSel::Sealed(xs) => {
                                    let mut plain: Vec<u8> =
                                        xs.iter().flat_map(|&x| Fe::new(x).to_le_bytes()).collect();
                                    plain.resize(payload_len, 0);
                                    seal(from, &plain)
                                }
                                PayloadSel::SealedLen(b) => seal(from, b),
                                PayloadSel::Garbage(b) => b.clone(),
                                PayloadSel::BadText(k) => vec![0x41; usize::from(k % 8) * 3 + 1],
                            };
                            (from, sealed)
                        })
                        .collect()
                };
                // A binary frame has one sealed length: the first entry's (others are cut or
                // padded to it).
                let len = entries.first().map_or(payload_len + 16, |(_, s)| s.len());
                let mut list = ShareList::with_capacity(len, entries.len());
                for (from, mut sealed) in entries {
                    sealed.resize(len, 0);
                    list.push(from, &sealed);
                }
                // Additive rounds with proofs: the correction of the member the patient leads,
                // if it contributed (sealed under that member's key; canonical elements).
                let mut extra = ShareList::with_capacity(0, 0);
                let mut sorted = keyed.clone();
                sorted.sort_unstable();
                if let (Some(setup), Ok(cohort_core::sharing::Scheme::Additive { .. })) =
                    (&setup, r.scheme())
                    && let Some(led) = proof::before(&sorted, me, 1)
                    && led != me
                    && contributors.contains(&led)
                {
                    let plain: Vec<u8> =
                        (0..setup.share_len() * 8).map(|i| (i as u8) & 7).collect();
                    let sealed = key_from(led).map_or(plain.clone(), |k| {
                        k.derive(CORRECTION_LABEL).seal_bytes(&plain)
                    });
                    extra = ShareList::with_capacity(sealed.len(), 1);
                    extra.push(led, &sealed);
                }
                Some(RelayToPatient::Delivery(Delivery {
                    round,
                    contributors,
                    shares: list,
                    extra,
                }))
            }
            Op::Result { round, result } => {
                let honest = match (result, &accepted.roster, &accepted.partial) {
                    (ResultSel::Honest { value, tamper: t }, Some((r, me)), Some((c, own))) => {
                        let mut res = honest_result(r, *me, c, own, *value);
                        res.excluded = accepted.excluded.clone().unwrap_or_default();
                        if let Some(t) = t {
                            tamper(&mut res, *me, t);
                        }
                        Some(res)
                    }
                    _ => None,
                };
                let mut res = honest.unwrap_or_else(|| {
                    let (count, mean) = match result {
                        ResultSel::Bogus { count, mean } => (*count, *mean),
                        ResultSel::Honest { value, .. } => (3, f64::from(*value)),
                    };
                    let mean = if mean.is_finite() { mean } else { 0.0 };
                    let statistics = Statistics {
                        count,
                        sum: mean,
                        mean,
                        stddev: 0.0,
                        histogram: vec![count],
                    };
                    RoundResult {
                        v: PROTOCOL_VERSION,
                        study: "f".into(),
                        round: 0,
                        questionnaire: QuestionnaireResult::from_statistics(&statistics),
                        statistics: Some(statistics),
                        roster_size: 3,
                        contributors: vec![1, 2, 3],
                        partial_sums: 3,
                        excluded: Vec::new(),
                        safety_code: serde_json::from_str("\"0000 0000 0000\"").unwrap(),
                        partials: vec![],
                    }
                });
                res.round = match (round, &sent) {
                    (RoundSel::Roster, Some(s)) => s.roster.round,
                    (RoundSel::Roster, None) => 0,
                    (RoundSel::Any(x), _) => *x,
                };
                Some(RelayToPatient::Result(res))
            }
            Op::Abandoned { round, reason } => {
                let reason = match reason % 4 {
                    0 => AbandonReason::TooFewContributors { got: 1, needed: 2 },
                    1 => AbandonReason::TooFewPartialSums { got: 1, needed: 2 },
                    2 => AbandonReason::InconsistentAggregate,
                    _ => AbandonReason::Shutdown,
                };
                Some(RelayToPatient::Abandoned(Abandoned {
                    v: PROTOCOL_VERSION,
                    round: *round,
                    message: reason.to_string(),
                    reason,
                }))
            }
            Op::Error { code } => Some(RelayToPatient::Error(ErrorMsg {
                v: PROTOCOL_VERSION,
                code: match code % 3 {
                    0 => ErrorCode::BadMessage,
                    1 => ErrorCode::RateLimited,
                    _ => ErrorCode::Invalid,
                },
                message: "x".into(),
            })),
            Op::Advance(ms) => {
                now += u64::from(*ms);
                None
            }
            Op::Leave => {
                p.leave();
                None
            }
            Op::Checks { round, how } => {
                let me = accepted.roster.as_ref().map_or(1, |(_, me)| *me);
                let dealer = accepted
                    .checkees()
                    .into_iter()
                    .find(|d| !accepted.verdicts.iter().any(|(x, _)| x == d))
                    .unwrap_or(1);
                let c = accepted.delivered.clone().unwrap_or_default();
                let others: Vec<u32> = c
                    .iter()
                    .copied()
                    .filter(|&j| j != dealer && j != me)
                    .collect();
                let additive = accepted
                    .roster
                    .as_ref()
                    .is_some_and(|(r, _)| r.threshold == r.n());
                let item = |j: u32| -> Vec<u8> {
                    (0..4u64)
                        .flat_map(|k| Fe::new(u64::from(j) * 1000 + k).to_le_bytes())
                        .collect()
                };
                let mut entries: Vec<(u32, Vec<u8>)> = if additive {
                    vec![(others.len() as u32, item(0))]
                } else {
                    others.iter().map(|&j| (j, item(j))).collect()
                };
                let mut dealer = dealer;
                match how {
                    ChecksSel::Honest => {}
                    ChecksSel::Dealer(d) => dealer = u32::from(d % 10),
                    ChecksSel::Count(d) => {
                        if let Some(e) = entries.first_mut() {
                            e.0 = e.0.wrapping_add(1 + u32::from(d % 4));
                        }
                    }
                    ChecksSel::Entries(js) => {
                        entries = js
                            .iter()
                            .take(16)
                            .map(|&j| (u32::from(j % 10), item(u32::from(j % 10))))
                            .collect();
                    }
                    ChecksSel::ItemLen(b) => {
                        for (_, e) in &mut entries {
                            e.resize(usize::from(b % 65), 1);
                        }
                    }
                    ChecksSel::Garbage(k) => {
                        let n = entries.len().max(1);
                        if let Some((_, e)) = entries.get_mut(usize::from(*k) % n) {
                            e.fill(0xff);
                        }
                    }
                }
                let len = entries.first().map_or(VERIFY_ENTRY_LEN, |(_, e)| e.len());
                let mut checks = ShareList::with_capacity(len, entries.len());
                for (j, e) in &entries {
                    checks.push(*j, e);
                }
                Some(RelayToPatient::Checks(Checks {
                    round: match (round, &accepted.roster) {
                        (RoundSel::Roster, Some((r, _))) => r.round,
                        (RoundSel::Roster, None) => 0,
                        (RoundSel::Any(x), _) => *x,
                    },
                    dealer,
                    checks,
                }))
            }
            Op::Verdicts { round, codes, how } => {
                let (honest, tag) = honest_verdicts(&accepted, &me_key, codes);
                let mut listed = honest.clone();
                let mut sum = tag.unwrap_or(0);
                match how {
                    VerdictsSel::Honest => {}
                    VerdictsSel::TagOff(d) => {
                        sum = sum.wrapping_add(u64::from(d % 3)).wrapping_sub(1)
                    }
                    VerdictsSel::Code(k, b) => {
                        let k = u32::from(*k);
                        match listed.iter_mut().find(|(d, _)| *d == k) {
                            Some(e) => e.1 = *b,
                            None => {
                                let i = listed.partition_point(|(d, _)| *d < k);
                                listed.insert(i, (k, *b));
                            }
                        }
                    }
                    VerdictsSel::Listed(ds) => {
                        listed = ds
                            .iter()
                            .take(16)
                            .map(|&d| (u32::from(d % 10), 1))
                            .collect();
                    }
                    VerdictsSel::Reversed => listed.reverse(),
                    VerdictsSel::Repeat(k) => {
                        let n = listed.len().max(1);
                        if let Some(e) = listed.get(usize::from(*k) % n).copied() {
                            listed.insert(usize::from(*k) % n, e);
                        }
                    }
                }
                // Refused unless it is the honest one (when the harness knows that).
                let must_refuse = tag.is_some() && (listed != honest || Some(sum) != tag);
                let mut l = ShareList::with_capacity(1, listed.len());
                for (d, b) in &listed {
                    l.push(*d, &[*b]);
                }
                verdicts_sent = Some((listed, must_refuse));
                Some(RelayToPatient::Verdicts(Verdicts {
                    round: match (round, &accepted.roster) {
                        (RoundSel::Roster, Some((r, _))) => r.round,
                        (RoundSel::Roster, None) => 0,
                        (RoundSel::Any(x), _) => *x,
                    },
                    tag: sum,
                    listed: l,
                }))
            }
            Op::Next { .. } => unreachable!("replaced above"),
        };
        let mut handled: Option<(RelayToPatient, bool)> = None;
        if let Some(msg) = msg {
            // What the relay sends survives the wire (so the patient sees what was meant).
            let wire = msg.encode();
            if let Ok(back) = RelayToPatient::decode_wire(&wire) {
                let r = p.handle(now, back.clone());
                if let Err(e) = &r {
                    let _ = (e.to_string(), e.code());
                }
                if let Some((_, forged)) = &verdicts_sent {
                    common::probe(match (forged, r.is_ok()) {
                        (true, _) => "forged verdicts refused",
                        (false, true) => "verdicts accepted",
                        (false, false) => "verdicts refused",
                    });
                }
                if let (Some((_, true)), Ok(())) = (&verdicts_sent, &r) {
                    panic!("a forged verdicts accepted: {back:?}");
                }
                if let (RelayToPatient::Verdicts(_), Ok(())) = (&back, &r) {
                    assert!(
                        accepted.delivered.is_some(),
                        "verdicts accepted before a delivery"
                    );
                    // What the patient now excludes: every listed contributor.
                    let listed = verdicts_sent
                        .as_ref()
                        .map_or_else(Vec::new, |(l, _)| l.clone());
                    accepted.excluded = Some(
                        listed
                            .iter()
                            .map(|&(index, b)| Exclusion {
                                index,
                                reason: Verdict::from_code(b).unwrap_or(Verdict::NotVerified),
                            })
                            .collect(),
                    );
                }
                handled = Some((back, r.is_ok()));
            }
        }
        let pc = std::cell::RefCell::new(&mut p);
        common::settle(
            || pc.borrow().poll_timeout(),
            |t| pc.borrow_mut().handle_timeout(t),
            now,
        );
        while let Some(out) = p.poll_output() {
            common::patient_round_trip(&out);
            if first {
                assert!(matches!(out, PatientToRelay::Join(_)), "join first");
                first = false;
                continue;
            }
            assert!(!was_finished, "a finished patient sent {}", out.kind());
            match (&out, &handled) {
                (PatientToRelay::Join(_), _) => panic!("a second join"),
                (PatientToRelay::Leave(_), _) => {}
                (PatientToRelay::Reveal(rv), Some((RelayToPatient::Roster(m), true))) => {
                    let mine = p.commitment();
                    let me = m
                        .roster
                        .members
                        .iter()
                        .find(|x| x.commitment == mine)
                        .map(|x| x.index)
                        .expect("a reveal for a roster without the patient's commitment");
                    assert!(accepted.roster.is_none(), "a second reveal");
                    assert_eq!(rv.round, m.roster.round);
                    assert_eq!(rv.public_key, me_key);
                    assert!(p.revealed(me).opens(&m.roster.study.id, &mine));
                    accepted.roster = Some((m.roster.clone(), me));
                }
                (PatientToRelay::Shares(s), Some((RelayToPatient::Keys(k), true))) => {
                    let (r, me) = accepted.roster.as_ref().expect("shares before a reveal");
                    assert!(accepted.keys.is_none(), "shares twice");
                    assert_eq!(s.round, r.round);
                    assert_eq!(k.round, r.round);
                    for rv in &k.reveals {
                        let m = r.member(rv.index).expect("a reveal outside the roster");
                        assert!(
                            rv.opens(&r.study.id, &m.commitment),
                            "shares sent on a reveal that does not open its commitment"
                        );
                    }
                    assert!(k.reveals.contains(&p.revealed(*me)), "own reveal missing");
                    // One share for every other revealed member, in roster order.
                    let to: Vec<u32> = s.shares.iter().map(|(j, _)| j).collect();
                    let want: Vec<u32> = k
                        .reveals
                        .iter()
                        .map(|r| r.index)
                        .filter(|i| i != me)
                        .collect();
                    assert_eq!(to, want);
                    accepted.keys = Some(k.reveals.clone());
                }
                (PatientToRelay::Verify(v), Some((RelayToPatient::Delivery(d), true))) => {
                    let (r, me) = accepted.roster.as_ref().expect("a verify before a reveal");
                    assert!(accepted.keys.is_some(), "a verify before shares");
                    assert!(r.study.proofs, "a verify without proofs");
                    assert!(accepted.delivered.is_none(), "a second verify");
                    assert_eq!(v.round, r.round);
                    assert_eq!(d.round, r.round);
                    let c = &d.contributors;
                    assert!(
                        c.windows(2).all(|w| w[0] < w[1]),
                        "contributors not ascending"
                    );
                    for (from, _) in d.shares.iter() {
                        assert!(c.contains(&from), "a delivery that omits a sender");
                    }
                    accepted.delivered = Some(c.clone());
                    let mut last = 0;
                    for (dealer, e) in v.checks.iter() {
                        assert!(dealer > last, "verify entries not ascending");
                        last = dealer;
                        assert!(
                            c.contains(&dealer) && dealer != *me,
                            "an entry for {dealer}"
                        );
                        assert!(
                            accepted.checker(dealer).is_some_and(|k| k != *me),
                            "an entry for a proof it checks itself or nobody checks"
                        );
                        assert!(proof::read_entry(e).is_some(), "an entry not of elements");
                    }
                }
                (PatientToRelay::Verdict(v), Some((RelayToPatient::Checks(c), true))) => {
                    let (r, me) = accepted.roster.as_ref().expect("a verdict before a reveal");
                    assert_eq!(v.round, r.round);
                    assert_eq!(v.dealer, c.dealer, "a verdict on another proof");
                    assert!(
                        accepted.checkees().contains(&v.dealer),
                        "a verdict on a proof it does not check"
                    );
                    assert!(
                        !accepted.verdicts.iter().any(|(d, _)| *d == v.dealer),
                        "a second verdict on one proof"
                    );
                    let to: Vec<u32> = v.tags.iter().map(|(j, _)| j).collect();
                    let want: Vec<u32> = accepted.keyed().into_iter().filter(|j| j != me).collect();
                    assert_eq!(to, want, "verdict tags not for every other keyed member");
                    accepted.verdicts.push((v.dealer, v.verdict));
                }
                (PatientToRelay::PartialSum(ps), Some((RelayToPatient::Verdicts(_), true))) => {
                    partial_sums += 1;
                    assert_eq!(partial_sums, 1, "a second partial sum");
                    let (r, _) = accepted
                        .roster
                        .as_ref()
                        .expect("a partial sum before a reveal");
                    assert_eq!(ps.round, r.round);
                    let excluded = accepted.excluded.as_ref().expect("verdicts accepted");
                    let c: Vec<u32> = accepted
                        .delivered
                        .clone()
                        .expect("a partial sum before a delivery")
                        .into_iter()
                        .filter(|c| !excluded.iter().any(|e| e.index == *c))
                        .collect();
                    assert!(
                        c.len() as u32 >= r.study.min_cohort.max(r.threshold).min(r.n()),
                        "a partial sum below the minimum cohort"
                    );
                    accepted.partial = Some((c, ps.sum.clone()));
                }
                (PatientToRelay::PartialSum(ps), Some((RelayToPatient::Delivery(d), true))) => {
                    partial_sums += 1;
                    assert_eq!(partial_sums, 1, "a second partial sum");
                    let (r, me) = accepted
                        .roster
                        .as_ref()
                        .expect("a partial sum before a reveal");
                    let keys = accepted.keys.as_ref().expect("a partial sum before shares");
                    assert_eq!(ps.round, r.round);
                    assert_eq!(d.round, r.round);
                    let c = &d.contributors;
                    assert!(
                        c.windows(2).all(|w| w[0] < w[1]),
                        "contributors not ascending"
                    );
                    assert!(
                        c.len() as u32 >= r.study.min_cohort,
                        "a partial sum below the minimum cohort"
                    );
                    for i in c.iter().filter(|&i| i != me) {
                        assert!(
                            keys.iter().any(|k| k.index == *i),
                            "a contributor without a revealed key"
                        );
                    }
                    for (from, _) in d.shares.iter() {
                        assert!(c.contains(&from), "a delivery that omits a sender");
                    }
                    accepted.partial = Some((c.clone(), ps.sum.clone()));
                }
                (out, handled) => panic!(
                    "{} sent on {:?}",
                    out.kind(),
                    handled.as_ref().map(|(m, ok)| (m.kind(), ok))
                ),
            }
        }
        while let Some(e) = p.poll_event() {
            common::probe(match &e {
                PatientEvent::Welcomed { .. } => "welcomed",
                PatientEvent::RosterFrozen { .. } => "roster frozen",
                PatientEvent::SharesSent { .. } => "shares sent",
                PatientEvent::PartialSumSent { .. } => "partial sum sent",
                PatientEvent::ProofChecked { .. } => "proof checked",
                PatientEvent::ProofsChecked { .. } => "proofs checked",
                PatientEvent::ResultChecked { .. } => "result checked",
                PatientEvent::Completed(_) => "completed",
                PatientEvent::Abandoned { .. } => "abandoned",
                PatientEvent::Refused(_) => "refused",
                _ => "other event",
            });
            if let PatientEvent::Completed(r) = &e {
                let (c, _) = accepted
                    .partial
                    .as_ref()
                    .expect("completed without a partial sum");
                assert_eq!(&r.contributors, c, "completed over another contributor set");
                if let Some(x) = &accepted.excluded {
                    for e in x {
                        assert!(
                            !r.contributors.contains(&e.index),
                            "a result over a contributor it was told is not valid"
                        );
                    }
                }
            }
            let _ = format!("{e:?}");
        }
        if p.is_finished() {
            assert_eq!(p.poll_timeout(), None, "a finished patient has no deadline");
        }
        let _ = p.state_name();
    }
});
