//! A `Hospital` fed arbitrary message sequences from eight fake peers, with disconnects,
//! "start now", shutdowns and a clock the input moves. Must never panic; every message it
//! sends must survive the wire; `handle_timeout` must make progress.
#![no_main]

use arbitrary::Arbitrary;
use cohort_core::decimal::Decimal;
use cohort_core::encoding::encode;
use cohort_core::error::ProtocolError;
use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    AbandonReason, Join, Leave, PROTOCOL_VERSION, PartialSum, PatientToRelay, RelayToPatient,
    Shares,
};
use cohort_core::protocol::{Hospital, HospitalEvent, HospitalOutput, PeerId};
use cohort_core::sharing::Scheme;
use cohort_core::study::{StudyParams, StudySpec};
use libfuzzer_sys::fuzz_target;

mod common;
use common::KeySel;

const SPECS: [&str; 5] = [
    "id=f,size=3,min=0,max=300,decimals=1,buckets=10",
    "id=f,size=5,threshold=3,min_cohort=2,min=0,max=300,decimals=1,buckets=4,enrol_s=5,shares_s=2,partials_s=2",
    "id=f,size=4,threshold=2,min_cohort=2,min=-10,max=10,buckets=3,enrol_s=0,shares_s=0,partials_s=0,invite=code",
    "id=f,size=2,min=0,max=1,decimals=0,buckets=1,shares_s=0,partials_s=0",
    "id=f,size=8,threshold=5,min_cohort=3,min=0,max=1000000,decimals=0,buckets=1000,enrol_s=1",
];

#[derive(Arbitrary, Debug)]
enum RoundSel {
    Current,
    Next,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum LenSel {
    Right,
    Bytes(u16),
}

#[derive(Arbitrary, Debug)]
struct ShareSel {
    to: u8,
    len: LenSel,
}

#[derive(Arbitrary, Debug)]
enum SumSel {
    /// The encoded value itself (every Shamir holder sending it interpolates to it; one
    /// additive holder sending it and the others zeros sums to it).
    Encoded(u16),
    Zero,
    Elements(Vec<u64>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Raw {
        peer: u8,
        text: String,
    },
    Join {
        peer: u8,
        wrong_study: bool,
        key: KeySel,
        invite: Option<bool>,
    },
    Shares {
        peer: u8,
        round: RoundSel,
        shares: Vec<ShareSel>,
        all: bool,
    },
    Partial {
        peer: u8,
        round: RoundSel,
        sum: SumSel,
    },
    Leave {
        peer: u8,
    },
    Disconnect {
        peer: u8,
    },
    /// What an honest patient on this connection would send next (full shares while the
    /// hospital awaits shares, a consistent partial sum while it awaits partial sums).
    Honest {
        peer: u8,
        value: u16,
    },
    /// `Honest` for every connection in turn.
    HonestAll(u16),
    /// Connections 0..k join with distinct good keys (and the right invite).
    JoinMany(u8),
    Start,
    Advance(u16),
    Jump(u32),
    Abandon,
    Shutdown,
}

#[derive(Arbitrary, Debug)]
struct Input {
    spec: u8,
    first_round: u64,
    ops: Vec<Op>,
}

fn round_of(h: &Hospital, sel: &RoundSel) -> u64 {
    let s = h.status();
    let current = s.running.map_or(s.enrolling_round, |r| r.round);
    match sel {
        RoundSel::Current => current,
        RoundSel::Next => current.wrapping_add(1),
        RoundSel::Any(r) => *r,
    }
}

/// Roster indices of the peers in the running round, learnt from the roster messages sent.
#[derive(Default)]
struct Seen {
    index: [Option<u32>; 8],
    /// Size of the last contributor set delivered.
    contributors: u64,
}

fn drain(h: &mut Hospital, seen: &mut Seen) {
    while let Some(out) = h.poll_output() {
        match out {
            HospitalOutput::Send { msg, .. } => {
                common::relay_round_trip(&msg);
                if let RelayToPatient::Delivery(d) = &msg {
                    seen.contributors = d.contributors.len() as u64;
                }
            }
            HospitalOutput::Broadcast { to, msg } => {
                common::relay_round_trip(&msg);
                if let RelayToPatient::Roster(_) = &msg {
                    // Broadcast in roster order: the i-th recipient is member i + 1.
                    seen.index = [None; 8];
                    for (i, p) in to.iter().enumerate() {
                        seen.index[p.0 as usize % 8] = Some(i as u32 + 1);
                    }
                }
            }
            HospitalOutput::Event(e) => common::probe(match e {
                HospitalEvent::Enrolment { .. } => "enrolment",
                HospitalEvent::RoundStarted { .. } => "round started",
                HospitalEvent::SharesDelivered { .. } => "shares delivered",
                HospitalEvent::Completed(_) => "completed",
                HospitalEvent::Abandoned { .. } => "abandoned",
                _ => "other event",
            }),
        }
    }
}

fn encoded(params: &StudyParams, x: u16) -> Vec<Fe> {
    let lo = params.min.to_scaled(params.decimals).unwrap_or(0);
    let off = (u64::from(x) % (params.range_scaled() + 1)) as i64;
    Decimal::new(lo + off, params.decimals)
        .ok()
        .and_then(|d| encode(params, &d).ok())
        .map_or_else(
            || vec![Fe::ZERO; params.vector_len()],
            |e| e.as_slice().to_vec(),
        )
}

/// What an honest patient on connection `p` sends next, if it is in the running round.
fn honest(
    h: &mut Hospital,
    seen: &Seen,
    params: &StudyParams,
    p: u8,
    value: u16,
    now: u64,
) -> Result<(), ProtocolError> {
    let peer = |p: &u8| PeerId(u64::from(*p % 8));
    let p = &p;
    let value = &value;
    let encoded = |x: u16| encoded(params, x);
    match (h.status().running, seen.index[usize::from(p % 8)]) {
        (Some(r), Some(me)) if r.phase == cohort_core::protocol::RoundPhase::AwaitingShares => {
            let len = Scheme::new(r.roster_size, r.threshold)
                .map_or(32, |s| s.payload_len(params.vector_len()));
            let sealed = vec![7; len + 16];
            let mut shares = ShareList::with_capacity(sealed.len(), r.roster_size as usize);
            for to in (1..=r.roster_size).filter(|&j| j != me) {
                shares.push(to, &sealed);
            }
            let msg = PatientToRelay::Shares(Shares {
                round: r.round,
                shares,
            });
            h.handle(now, peer(p), msg)
        }
        (Some(r), Some(me)) => {
            // The aggregate is `contributors` copies of one encoded value (its count must be the
            // contributor set). Additive: member 1 carries it, the others zeros; Shamir: a
            // constant polynomial, everyone sends it.
            let sum = if r.threshold < r.roster_size || me == 1 {
                let k = Fe::new(seen.contributors);
                encoded(*value).into_iter().map(|x| x * k).collect()
            } else {
                vec![Fe::ZERO; params.vector_len()]
            };
            let msg = PatientToRelay::PartialSum(PartialSum {
                round: r.round,
                sum,
            });
            h.handle(now, peer(p), msg)
        }
        _ => Ok(()),
    }
}

fuzz_target!(|input: Input| {
    let spec: StudySpec = SPECS[usize::from(input.spec) % SPECS.len()]
        .parse()
        .expect("valid");
    let params = spec.params.clone();
    let spec_invite = spec.invite.clone();
    let Ok(mut h) = Hospital::new(spec, input.first_round) else {
        return;
    };
    let mut now = 0u64;
    let mut seen = Seen::default();
    let peer = |p: &u8| PeerId(u64::from(*p % 8));
    let encoded = |x: u16| encoded(&params, x);
    let params_invite = spec_invite;
    for op in input.ops.iter().take(256) {
        let result = match op {
            Op::Raw { peer: p, text } => match PatientToRelay::decode(text) {
                Ok(msg) => h.handle(now, peer(p), msg),
                Err(_) => Ok(()),
            },
            Op::Join {
                peer: p,
                wrong_study,
                key,
                invite,
            } => {
                let msg = PatientToRelay::Join(Join {
                    v: PROTOCOL_VERSION,
                    study: if *wrong_study { "g".into() } else { "f".into() },
                    public_key: key.key(),
                    invite: invite.map(|ok| if ok { "code".into() } else { "nope".into() }),
                });
                common::patient_round_trip(&msg);
                h.handle(now, peer(p), msg)
            }
            Op::Shares {
                peer: p,
                round,
                shares,
                all,
            } => {
                let n = h.status().running.map_or(3, |r| r.roster_size);
                let t = h.status().running.map_or(3, |r| r.threshold);
                let right = Scheme::new(n.max(2), t.clamp(2, n.max(2)))
                    .map_or(32, |s| s.payload_len(params.vector_len()));
                let sealed = |len: &LenSel| {
                    let bytes = match len {
                        LenSel::Right => right,
                        LenSel::Bytes(b) => usize::from(*b % 2048),
                    };
                    vec![0xa5; bytes + 16]
                };
                let list = if *all {
                    // One well-formed share for every other member, as an honest patient sends.
                    let me = seen.index[usize::from(p % 8)].unwrap_or(0);
                    let one = sealed(&LenSel::Right);
                    let mut l = ShareList::with_capacity(one.len(), n as usize);
                    for to in (1..=n).filter(|&j| j != me) {
                        l.push(to, &one);
                    }
                    l
                } else {
                    // A frame has one sealed length: the first entry's.
                    let one = shares
                        .first()
                        .map_or_else(|| sealed(&LenSel::Right), |s| sealed(&s.len));
                    let mut l = ShareList::with_capacity(one.len(), 16);
                    for s in shares.iter().take(16) {
                        l.push(u32::from(s.to % 10), &one);
                    }
                    l
                };
                let msg = PatientToRelay::Shares(Shares {
                    round: round_of(&h, round),
                    shares: list,
                });
                h.handle(now, peer(p), msg)
            }
            Op::Partial {
                peer: p,
                round,
                sum,
            } => {
                let len = params.vector_len();
                let sum = match sum {
                    SumSel::Encoded(x) => encoded(*x),
                    SumSel::Zero => vec![Fe::ZERO; len],
                    SumSel::Elements(v) => v.iter().take(2048).map(|&x| Fe::new(x)).collect(),
                };
                let msg = PatientToRelay::PartialSum(PartialSum {
                    round: round_of(&h, round),
                    sum,
                });
                h.handle(now, peer(p), msg)
            }
            Op::Leave { peer: p } => h.handle(
                now,
                peer(p),
                PatientToRelay::Leave(Leave {
                    v: PROTOCOL_VERSION,
                }),
            ),
            Op::Disconnect { peer: p } => {
                h.handle_disconnect(now, peer(p));
                Ok(())
            }
            Op::Honest { peer: p, value } => honest(&mut h, &seen, &params, *p, *value, now),
            Op::HonestAll(value) => {
                let mut r = Ok(());
                for p in 0..8u8 {
                    r = r.and(honest(&mut h, &seen, &params, p, *value, now));
                    drain(&mut h, &mut seen);
                }
                r
            }
            Op::JoinMany(k) => {
                let mut r = Ok(());
                for p in 0..(k % 9) {
                    let msg = PatientToRelay::Join(Join {
                        v: PROTOCOL_VERSION,
                        study: "f".into(),
                        public_key: KeySel::Pool(p).key(),
                        invite: params_invite.clone(),
                    });
                    r = r.and(h.handle(now, PeerId(u64::from(p)), msg));
                    drain(&mut h, &mut seen);
                }
                r
            }
            Op::Start => h.start_round(now),
            Op::Advance(ms) => {
                now += u64::from(*ms);
                Ok(())
            }
            Op::Jump(ms) => {
                now += u64::from(*ms) * 16;
                Ok(())
            }
            Op::Abandon => {
                h.abandon(now, AbandonReason::RelayRestarted);
                Ok(())
            }
            Op::Shutdown => {
                h.shutdown(now);
                Ok(())
            }
        };
        if let Err(e) = result {
            let _ = (e.to_string(), e.code());
        }
        drain(&mut h, &mut seen);
        let hp = std::cell::RefCell::new(&mut h);
        common::settle(
            || hp.borrow().poll_timeout(),
            |t| hp.borrow_mut().handle_timeout(t),
            now,
        );
        drain(&mut h, &mut seen);
        let _ = h.status();
    }
});
