//! A `Patient` fed arbitrary relay message sequences: raw text, and structured messages built
//! so that the deep states are reachable (rosters that hold the patient's key, deliveries
//! sealed by the other members' real keys). Must never panic; everything it sends must
//! survive the wire; a finished patient has no deadline; `handle_timeout` makes progress.
#![no_main]

use arbitrary::Arbitrary;
use cohort_core::decimal::Decimal;
use cohort_core::encoding::Statistics;
use cohort_core::envelope::{Binding, PublicKey};
use cohort_core::error::ErrorCode;
use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    AbandonReason, Abandoned, Delivery, Enrolment, ErrorMsg, PROTOCOL_VERSION, RelayToPatient,
    RosterMsg, RoundResult, Welcome,
};
use cohort_core::protocol::{Patient, PatientEvent};
use cohort_core::rand_core::SeedableRng;
use cohort_core::roster::{Member, Roster};
use cohort_core::study::{StudyParams, StudySpec};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;

mod common;
use common::KeySel;

const SPECS: [&str; 3] = [
    "id=f,size=8,min=0,max=300,decimals=1,buckets=10,min_cohort=2",
    "id=f,size=8,threshold=3,min_cohort=2,min=-10,max=10,decimals=2,buckets=3",
    "id=f,size=3,min=0,max=1,decimals=0,buckets=1",
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
    Roster {
        params: ParamSel,
        round: u64,
        n: u8,
        me_at: u8,
        threshold: Option<u32>,
        others: Vec<KeySel>,
    },
    Delivery {
        round: RoundSel,
        contributors: Vec<u8>,
        all: bool,
        shares: Vec<DShare>,
    },
    Result {
        round: RoundSel,
        count: u64,
        mean: f64,
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
    // The last roster sent, to seal deliveries under it.
    let mut roster: Option<(Roster, u32)> = None;
    for op in input.ops.iter().take(128) {
        let next;
        let op = match op {
            Op::Next { n, me_at } => {
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
                        threshold: None,
                        others: vec![],
                    },
                    "awaiting delivery" => Op::Delivery {
                        round: RoundSel::Roster,
                        contributors: vec![],
                        all: true,
                        shares: vec![],
                    },
                    _ => Op::Result {
                        round: RoundSel::Roster,
                        count: 3,
                        mean: 1.5,
                    },
                };
                &next
            }
            other => other,
        };
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
                threshold,
                others,
            } => {
                let study = params_for(&joined, params);
                let n = 2 + u32::from(*n % 7);
                let me_at = 1 + u32::from(*me_at) % n;
                let members: Vec<Member> = (1..=n)
                    .map(|index| {
                        let public_key = if index == me_at {
                            me_key
                        } else {
                            others
                                .get(index as usize - 1)
                                .map_or(pool[index as usize - 1].public(), |k| k.key())
                        };
                        Member { index, public_key }
                    })
                    .collect();
                let r = Roster {
                    threshold: threshold.unwrap_or(study.round_threshold(n)),
                    study,
                    round: *round,
                    members,
                };
                roster = Some((r.clone(), me_at));
                Some(RelayToPatient::Roster(RosterMsg {
                    v: PROTOCOL_VERSION,
                    roster: r,
                }))
            }
            Op::Delivery {
                round,
                contributors,
                all,
                shares,
            } => {
                let (r, me) = roster.clone().unwrap_or_else(|| {
                    (
                        Roster {
                            study: joined.clone(),
                            round: 0,
                            threshold: 2,
                            members: vec![],
                        },
                        1,
                    )
                });
                let round = match round {
                    RoundSel::Roster => r.round,
                    RoundSel::Any(x) => *x,
                };
                let contributors: Vec<u32> = if *all {
                    (1..=r.n()).collect()
                } else {
                    contributors
                        .iter()
                        .take(16)
                        .map(|&c| u32::from(c % 10))
                        .collect()
                };
                let payload_len = r
                    .scheme()
                    .map_or(32, |s| s.payload_len(r.study.vector_len()));
                let seal = |from: u32, plain: &[u8]| -> Vec<u8> {
                    // The real sender's key if it is a pool key, else pool key 0.
                    let sender = r
                        .member(from)
                        .and_then(|m| pool.iter().find(|k| k.public() == m.public_key))
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
                    match sender.agree(&me_key) {
                        Ok(s) => s.direction_key(&b).seal_bytes(plain),
                        Err(_) => plain.to_vec(),
                    }
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
                Some(RelayToPatient::Delivery(Delivery {
                    round,
                    contributors,
                    shares: list,
                }))
            }
            Op::Result { round, count, mean } => {
                let round = match (round, &roster) {
                    (RoundSel::Roster, Some((r, _))) => r.round,
                    (RoundSel::Roster, None) => 0,
                    (RoundSel::Any(x), _) => *x,
                };
                let mean = if mean.is_finite() { *mean } else { 0.0 };
                let statistics = Statistics {
                    count: *count,
                    sum: mean,
                    mean,
                    stddev: 0.0,
                    histogram: vec![*count],
                };
                Some(RelayToPatient::Result(RoundResult {
                    v: PROTOCOL_VERSION,
                    study: "f".into(),
                    round,
                    questionnaire:
                        cohort_core::questionnaire::QuestionnaireResult::from_statistics(
                            &statistics,
                        ),
                    statistics: Some(statistics),
                    roster_size: 3,
                    contributors: vec![1, 2, 3],
                    partial_sums: 3,
                    safety_code: serde_json::from_str("\"0000 0000 0000\"").unwrap(),
                    partials: Vec::new(),
                }))
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
            Op::Next { .. } => unreachable!("replaced above"),
        };
        if let Some(msg) = msg {
            // What the relay sends survives the wire (so the patient sees what was meant).
            let text = msg.encode();
            if let Ok(back) = RelayToPatient::decode_wire(&text) {
                if let Err(e) = p.handle(now, back) {
                    let _ = (e.to_string(), e.code());
                }
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
        }
        while let Some(e) = p.poll_event() {
            common::probe(match &e {
                PatientEvent::Welcomed { .. } => "welcomed",
                PatientEvent::RosterFrozen { .. } => "roster frozen",
                PatientEvent::SharesSent { .. } => "shares sent",
                PatientEvent::PartialSumSent { .. } => "partial sum sent",
                PatientEvent::Completed(_) => "completed",
                PatientEvent::Abandoned { .. } => "abandoned",
                PatientEvent::Refused(_) => "refused",
                _ => "other event",
            });
            let _ = format!("{e:?}");
        }
        if p.is_finished() {
            assert_eq!(p.poll_timeout(), None, "a finished patient has no deadline");
        }
        let _ = p.state_name();
        let _ = PublicKey(me_key.0);
    }
});
