//! A `Hospital` fed arbitrary message sequences from eight fake peers (joins with commitments
//! to pool keys under fixed nonces, reveals that open them or not, shares, partial sums), with
//! disconnects, "start now", shutdowns and a clock the input moves. Must never panic; every
//! message it sends must survive the wire; `handle_timeout` must make progress; it attaches a
//! peer at most once and sends broadcasts, welcomes and deliveries only to attached peers; the
//! roster holds, in broadcast order, the commitments its recipients joined with; `keys` carries
//! only reveals that open the roster's commitments, in index order, to revealed members only;
//! every delivery and result is over the contributor set of the round.
#![no_main]

use arbitrary::Arbitrary;
use cohort_core::commitment::{Commitment, Nonce};
use cohort_core::envelope::PublicKey;
use cohort_core::error::ProtocolError;
use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    AbandonReason, Join, Leave, PROTOCOL_VERSION, PartialSum, PatientToRelay, RelayToPatient,
    Reveal, Shares,
};
use cohort_core::protocol::{Hospital, HospitalEvent, HospitalOutput, PeerId, RoundPhase};
use cohort_core::roster::Roster;
use cohort_core::sharing::Scheme;
use cohort_core::study::{StudyParams, StudySpec};
use libfuzzer_sys::fuzz_target;

mod common;
use common::KeySel;

const SPECS: [&str; 5] = [
    "id=f,size=3,min=0,max=300,decimals=1,buckets=10,proofs=off",
    "id=f,size=5,threshold=3,min_cohort=2,min=0,max=300,decimals=1,buckets=4,enrol_s=5,shares_s=2,partials_s=2,proofs=off",
    "id=f,size=4,threshold=3,min_cohort=2,min=-10,max=10,buckets=3,enrol_s=0,shares_s=0,partials_s=0,invite=code,proofs=off",
    "id=f,size=2,min=0,max=1,decimals=0,buckets=1,shares_s=0,partials_s=0,proofs=off",
    "id=f,size=8,threshold=5,min_cohort=3,min=0,max=1000000,decimals=0,buckets=1000,enrol_s=1,proofs=off",
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

/// What a join commits to.
#[derive(Arbitrary, Debug)]
enum CommitSel {
    /// A key (pool, weak or raw) with the fixed nonce `[nonce; 32]`.
    Key { key: KeySel, nonce: u8 },
    /// Raw bytes: no reveal opens it.
    Raw([u8; 32]),
}

/// What a reveal reveals.
#[derive(Arbitrary, Debug)]
enum RevealSel {
    /// What this peer committed to in its last join (pool key `peer` with nonce `peer` if
    /// unknown).
    Committed,
    /// The committed key with another nonce.
    OtherNonce(u8),
    /// Another key with the committed nonce.
    OtherKey(KeySel),
    /// Anything.
    Any { key: KeySel, nonce: u8 },
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
        commit: CommitSel,
        invite: Option<bool>,
    },
    Reveal {
        peer: u8,
        round: RoundSel,
        reveal: RevealSel,
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
    /// What an honest patient on this connection would send next (its reveal while the
    /// hospital awaits reveals, full shares while it awaits shares, a consistent partial sum
    /// while it awaits partial sums).
    Honest {
        peer: u8,
        value: u16,
    },
    /// `Honest` for every connection in turn.
    HonestAll(u16),
    /// Connections 0..k join with commitments to distinct pool keys (and the right invite).
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

/// What the harness learnt from what it sent and what the hospital sent back.
#[derive(Default)]
struct Seen {
    /// What each connection committed to in its last join (key and nonce when known).
    committed: [Option<(Commitment, Option<(PublicKey, Nonce)>)>; 8],
    /// The connection and commitment of the join being handled, until it is attached.
    pending: Option<(u8, Commitment)>,
    /// The commitment each attached connection joined with.
    joined: [Option<Commitment>; 8],
    /// Connections the hospital attached and has not detached.
    attached: [bool; 8],
    /// Connections that are members of the running round and not detached since its roster.
    in_round: [bool; 8],
    /// The running round's roster and each connection's index in it: the i-th recipient of
    /// the roster broadcast is member i + 1.
    roster: Option<Roster>,
    index: [Option<u32>; 8],
    /// Indices whose reveals the last `keys` carried.
    keyed: Vec<u32>,
    /// The contributor set last delivered.
    contributors: Option<Vec<u32>>,
}

fn slot(p: PeerId) -> usize {
    assert!(p.0 < 8, "a message to a connection that never spoke: {p:?}");
    p.0 as usize
}

fn drain(h: &mut Hospital, seen: &mut Seen) {
    while let Some(out) = h.poll_output() {
        match out {
            HospitalOutput::Send { to, msg } => {
                common::relay_round_trip(&msg);
                let i = slot(to);
                match &msg {
                    RelayToPatient::Welcome(_) => {
                        assert!(seen.attached[i], "a welcome to an unattached connection");
                    }
                    RelayToPatient::Delivery(d) => {
                        assert!(seen.attached[i], "a delivery to an unattached connection");
                        let me = seen.index[i].expect("a delivery to a non-member");
                        let c = &d.contributors;
                        assert!(c.windows(2).all(|w| w[0] < w[1]), "contributors unordered");
                        assert!(
                            c.iter().all(|j| seen.keyed.contains(j)),
                            "a contributor without a revealed key"
                        );
                        let from: Vec<u32> = d.shares.iter().map(|(f, _)| f).collect();
                        let want: Vec<u32> = c.iter().copied().filter(|&j| j != me).collect();
                        assert_eq!(from, want, "a delivery that is not the contributor set");
                        if let Some(prev) = &seen.contributors {
                            assert_eq!(prev, c, "two contributor sets in one round");
                        }
                        seen.contributors = Some(c.clone());
                    }
                    RelayToPatient::Error(_) => {}
                    other => panic!("{} sent to one connection", other.kind()),
                }
            }
            HospitalOutput::Broadcast { to, msg } => {
                common::relay_round_trip(&msg);
                assert!(!to.is_empty(), "a broadcast to nobody");
                let mut once = [false; 8];
                for p in &to {
                    let i = slot(*p);
                    assert!(
                        seen.attached[i],
                        "{} to an unattached connection",
                        msg.kind()
                    );
                    assert!(
                        !std::mem::replace(&mut once[i], true),
                        "a broadcast repeats {p:?}"
                    );
                }
                match &msg {
                    RelayToPatient::Roster(m) => {
                        // Broadcast in roster order: the i-th recipient is member i + 1, and
                        // the roster holds the commitment it joined with.
                        assert_eq!(to.len(), m.roster.members.len());
                        seen.index = [None; 8];
                        for ((i, p), member) in to.iter().enumerate().zip(&m.roster.members) {
                            assert_eq!(member.index, i as u32 + 1);
                            assert_eq!(
                                seen.joined[slot(*p)],
                                Some(member.commitment),
                                "a roster member's commitment is not what it joined with"
                            );
                            seen.index[slot(*p)] = Some(i as u32 + 1);
                            seen.in_round[slot(*p)] = true;
                        }
                        seen.roster = Some(m.roster.clone());
                        seen.keyed.clear();
                        seen.contributors = None;
                    }
                    RelayToPatient::Keys(k) => {
                        let r = seen.roster.as_ref().expect("keys before a roster");
                        assert_eq!(k.round, r.round);
                        assert!(k.reveals.windows(2).all(|w| w[0].index < w[1].index));
                        for rv in &k.reveals {
                            let m = r.member(rv.index).expect("a reveal outside the roster");
                            assert!(
                                rv.opens(&r.study.id, &m.commitment),
                                "keys forwards a reveal that does not open its commitment"
                            );
                        }
                        seen.keyed = k.reveals.iter().map(|r| r.index).collect();
                        // A member left out here (no valid reveal in time) was told and
                        // detached before the keys went out.
                        for i in 0..8 {
                            assert!(
                                !(seen.in_round[i]
                                    && seen.index[i].is_some_and(|j| !seen.keyed.contains(&j))),
                                "a member left out at keys is still in the round"
                            );
                        }
                        for p in &to {
                            let i = seen.index[slot(*p)].expect("keys to a non-member");
                            assert!(
                                seen.keyed.contains(&i),
                                "keys to a member that did not reveal"
                            );
                        }
                    }
                    RelayToPatient::Result(res) => {
                        assert_eq!(
                            Some(&res.contributors),
                            seen.contributors.as_ref(),
                            "a result over another contributor set than delivered"
                        );
                        assert_eq!(res.questionnaire.count, res.contributors.len() as u64);
                    }
                    RelayToPatient::Enrolment(_) | RelayToPatient::Abandoned(_) => {}
                    other => panic!("{} broadcast", other.kind()),
                }
            }
            HospitalOutput::Attached { peer } => {
                let i = slot(peer);
                assert!(
                    !std::mem::replace(&mut seen.attached[i], true),
                    "attached twice"
                );
                let (p, c) = seen.pending.take().expect("attached without a join");
                assert_eq!(
                    usize::from(p),
                    i,
                    "attached another connection than the joiner"
                );
                seen.joined[i] = Some(c);
            }
            HospitalOutput::Detached { peer } => {
                let i = slot(peer);
                seen.attached[i] = false;
                seen.in_round[i] = false;
                seen.joined[i] = None;
            }
            HospitalOutput::Event(e) => common::probe(match e {
                HospitalEvent::Enrolment { .. } => "enrolment",
                HospitalEvent::RoundStarted { .. } => "round started",
                HospitalEvent::KeysRevealed { .. } => "keys revealed",
                HospitalEvent::SharesDelivered { .. } => "shares delivered",
                HospitalEvent::Completed(_) => "completed",
                HospitalEvent::Abandoned { .. } => "abandoned",
                _ => "other event",
            }),
        }
    }
    seen.pending = None;
}

/// Hands the hospital a message from connection `p` (a join: noting what it commits to, to
/// check the roster against) and drains what it sends.
fn join(
    h: &mut Hospital,
    seen: &mut Seen,
    now: u64,
    p: u8,
    msg: PatientToRelay,
) -> Result<(), ProtocolError> {
    if let PatientToRelay::Join(j) = &msg {
        seen.pending = Some((p, j.commitment));
    }
    let r = h.handle(now, PeerId(u64::from(p)), msg);
    drain(h, seen);
    r
}

/// The key and nonce connection `p` committed to (pool key `p` with nonce `p` if unknown).
fn opening(seen: &Seen, p: u8) -> (PublicKey, Nonce) {
    seen.committed[usize::from(p)]
        .and_then(|(_, o)| o)
        .unwrap_or_else(|| (common::pool()[usize::from(p)].public(), common::nonce(p)))
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
    let p = p % 8;
    let peer = PeerId(u64::from(p));
    let encoded = |x: u16| common::encoded(params, x);
    match (h.status().running, seen.index[usize::from(p)]) {
        (Some(r), Some(_)) if r.phase == RoundPhase::AwaitingReveals => {
            let (public_key, nonce) = opening(seen, p);
            let msg = PatientToRelay::Reveal(Reveal {
                v: PROTOCOL_VERSION,
                round: r.round,
                public_key,
                nonce,
            });
            h.handle(now, peer, msg)
        }
        (Some(r), Some(me)) if r.phase == RoundPhase::AwaitingShares => {
            let len = Scheme::new(r.roster_size, r.threshold)
                .map_or(32, |s| s.payload_len(params.vector_len()));
            let sealed = vec![7; len + 16];
            let mut shares = ShareList::with_capacity(sealed.len(), r.roster_size as usize);
            // One share for every other member whose key was forwarded, in roster order.
            for &to in seen.keyed.iter().filter(|&&j| j != me) {
                shares.push(to, &sealed);
            }
            let msg = PatientToRelay::Shares(Shares {
                round: r.round,
                shares,
                extra: ShareList::with_capacity(0, 0),
            });
            h.handle(now, peer, msg)
        }
        (Some(r), Some(me)) => {
            // The aggregate is `contributors` copies of one encoded value (its count must be the
            // contributor set). Additive: member 1 carries it, the others zeros; Shamir: a
            // constant polynomial, everyone sends it.
            let sum = if r.threshold < r.roster_size || me == 1 {
                let k = Fe::new(seen.contributors.as_ref().map_or(0, |c| c.len() as u64));
                encoded(value).into_iter().map(|x| x * k).collect()
            } else {
                vec![Fe::ZERO; params.vector_len()]
            };
            let msg = PatientToRelay::PartialSum(PartialSum {
                round: r.round,
                sum,
            });
            h.handle(now, peer, msg)
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
    let encoded = |x: u16| common::encoded(&params, x);
    let params_invite = spec_invite;
    for op in input.ops.iter().take(256) {
        let result = match op {
            Op::Raw { peer: p, text } => match PatientToRelay::decode(text) {
                Ok(msg) => join(&mut h, &mut seen, now, p % 8, msg),
                Err(_) => Ok(()),
            },
            Op::Join {
                peer: p,
                wrong_study,
                commit,
                invite,
            } => {
                let (commitment, opening) = match commit {
                    CommitSel::Key { key, nonce } => (
                        common::commitment("f", &key.key(), *nonce),
                        Some((key.key(), common::nonce(*nonce))),
                    ),
                    CommitSel::Raw(b) => (Commitment(*b), None),
                };
                let msg = PatientToRelay::Join(Join {
                    v: PROTOCOL_VERSION,
                    study: if *wrong_study { "g".into() } else { "f".into() },
                    commitment,
                    invite: invite.map(|ok| if ok { "code".into() } else { "nope".into() }),
                });
                common::patient_round_trip(&msg);
                seen.committed[usize::from(p % 8)] = Some((commitment, opening));
                join(&mut h, &mut seen, now, p % 8, msg)
            }
            Op::Reveal {
                peer: p,
                round,
                reveal,
            } => {
                let (key, nonce) = opening(&seen, p % 8);
                let (public_key, nonce) = match reveal {
                    RevealSel::Committed => (key, nonce),
                    RevealSel::OtherNonce(b) => (key, common::nonce(*b)),
                    RevealSel::OtherKey(k) => (k.key(), nonce),
                    RevealSel::Any { key, nonce } => (key.key(), common::nonce(*nonce)),
                };
                let msg = PatientToRelay::Reveal(Reveal {
                    v: PROTOCOL_VERSION,
                    round: round_of(&h, round),
                    public_key,
                    nonce,
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
                    // One well-formed share for every other keyed member, as an honest patient
                    // sends.
                    let me = seen.index[usize::from(p % 8)].unwrap_or(0);
                    let one = sealed(&LenSel::Right);
                    let mut l = ShareList::with_capacity(one.len(), n as usize);
                    for &to in seen.keyed.iter().filter(|&&j| j != me) {
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
                    extra: ShareList::with_capacity(0, 0),
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
                    let key = KeySel::Pool(p).key();
                    let commitment = common::commitment("f", &key, p);
                    let msg = PatientToRelay::Join(Join {
                        v: PROTOCOL_VERSION,
                        study: "f".into(),
                        commitment,
                        invite: params_invite.clone(),
                    });
                    seen.committed[usize::from(p)] =
                        Some((commitment, Some((key, common::nonce(p)))));
                    r = r.and(join(&mut h, &mut seen, now, p, msg));
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
