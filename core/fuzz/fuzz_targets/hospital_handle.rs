//! A `Hospital` fed arbitrary message sequences from eight fake peers (joins with commitments
//! to pool keys under fixed nonces, reveals that open them or not, shares, partial sums), with
//! disconnects, "start now", shutdowns and a clock the input moves. Must never panic; every
//! message it sends must survive the wire; `handle_timeout` must make progress; it attaches a
//! peer at most once and sends broadcasts, welcomes and deliveries only to attached peers; the
//! roster holds, in broadcast order, the commitments its recipients joined with; `keys` carries
//! only reveals that open the roster's commitments, in index order, to revealed members only;
//! every delivery and result is over the contributor set of the round.
//!
//! Two studies have validity proofs (one additive, one Shamir): the peers then also send
//! `verify` frames (honest ones, and ones with items of the wrong length, non-canonical
//! elements, dealers out of order, repeated, not contributing or the sender itself) and
//! `verdict` frames (honest ones, from non-checkers, repeated, with tags missing, added or
//! misaddressed). Then also: every `checks` goes to the dealer's checker (`proof::checker_of`)
//! and carries exactly the accepted entries for that dealer (their sum in additive rounds);
//! every `verdicts` lists exactly the contributors without an accepted `valid` verdict and
//! carries the sum of the accepted tags addressed to its recipient; a result is over exactly
//! the contributors whose proof was found valid, the others excluded.
#![no_main]

use arbitrary::Arbitrary;
use cohort_core::commitment::{Commitment, Nonce};
use cohort_core::envelope::PublicKey;
use cohort_core::envelope::TAG_LEN;
use cohort_core::error::ProtocolError;
use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    AbandonReason, Join, Leave, PROTOCOL_VERSION, PartialSum, PatientToRelay, RelayToPatient,
    Reveal, Shares, Verdict as VerdictMsg, Verify,
};
use cohort_core::proof::{
    self, CHECK_SEEDS_LEN, NO_VERDICT, ProofSetup, VERDICT_TAG_LEN, VERIFY_ENTRY_LEN, Verdict,
};
use cohort_core::protocol::{Hospital, HospitalEvent, HospitalOutput, PeerId, RoundPhase};
use cohort_core::roster::Roster;
use cohort_core::sharing::Scheme;
use cohort_core::study::{StudyParams, StudySpec};
use libfuzzer_sys::fuzz_target;

mod common;
use common::KeySel;

const SPECS: [&str; 7] = [
    "id=f,size=3,min=0,max=300,decimals=1,buckets=10,proofs=off",
    "id=f,size=5,threshold=3,min_cohort=2,min=0,max=300,decimals=1,buckets=4,enrol_s=5,shares_s=2,partials_s=2,proofs=off",
    "id=f,size=4,threshold=3,min_cohort=2,min=-10,max=10,buckets=3,enrol_s=0,shares_s=0,partials_s=0,invite=code,proofs=off",
    "id=f,size=2,min=0,max=1,decimals=0,buckets=1,shares_s=0,partials_s=0,proofs=off",
    "id=f,size=8,threshold=5,min_cohort=3,min=0,max=1000000,decimals=0,buckets=1000,enrol_s=1,proofs=off",
    // With validity proofs: an additive round and a Shamir round.
    "id=f,size=3,min=0,max=300,decimals=1,buckets=10,proofs=on",
    "id=f,size=5,threshold=3,min_cohort=2,min=0,max=10,decimals=0,buckets=2,enrol_s=5,shares_s=2,partials_s=2,proofs=on",
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

/// How a `verify` frame is made from the honest one (one masked entry, 32 bytes, for every
/// contributor other than the sender that it does not check itself, ascending).
#[derive(Arbitrary, Debug)]
enum VerifySel {
    Honest,
    /// Entry `k`'s item not four canonical elements (one element `p`, or all bytes 0xff).
    NonCanonical {
        k: u8,
        all_ff: bool,
    },
    /// Items of another length (mod 65).
    ItemLen(u8),
    /// The honest dealers in descending order.
    Reversed,
    /// An entry for the sender itself added.
    WithSelf,
    /// Entry `k` twice.
    Duplicate(u8),
    /// Dealers chosen outright (mod 10), canonical items.
    Dealers(Vec<u8>),
    Empty,
}

/// Which dealer a `verdict` is about.
#[derive(Arbitrary, Debug)]
enum DealerSel {
    /// The k-th proof the sender checks (its checkees, mod their number; 1 if none).
    Checkee(u8),
    /// Any index (mod 10).
    Any(u8),
}

/// How a `verdict`'s tags are made from the honest list (one 8-byte tag for every other keyed
/// member, ascending).
#[derive(Arbitrary, Debug)]
enum TagSel {
    Honest,
    /// Tag `k` left out.
    Drop(u8),
    /// A tag for the sender itself added.
    WithSelf,
    /// Recipients chosen outright (mod 10).
    Recipients(Vec<u8>),
    /// Tags of another length (mod 65).
    ItemLen(u8),
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
    /// A `verify` frame (rounds with proofs).
    Verify {
        peer: u8,
        round: RoundSel,
        how: VerifySel,
    },
    /// A `verdict` frame (rounds with proofs): the verdict's code mod 3.
    Verdict {
        peer: u8,
        round: RoundSel,
        dealer: DealerSel,
        verdict: u8,
        tags: TagSel,
    },
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

/// The entries of one `verify`: dealer and masked entry.
type Entries = Vec<(u32, [u8; VERIFY_ENTRY_LEN])>;

/// One accepted `verdict`: dealer, verdict, and its tags by recipient.
type AcceptedVerdict = (u32, Verdict, Vec<(u32, u64)>);

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
    /// Whether the study has validity proofs, and its rounds are additive (n of n).
    proofs: bool,
    /// The `verify` entries the hospital accepted in the running round, by member (index − 1).
    verifies: [Option<Entries>; 8],
    /// The dealers whose `checks` went out in the running round.
    checked: Vec<u32>,
    /// The verdicts the hospital accepted in the running round: dealer, verdict, tags (by
    /// recipient).
    verdicts: Vec<AcceptedVerdict>,
    /// The contributor set of the partial sums, from the last `verdicts`.
    accepted: Option<Vec<u32>>,
}

impl Seen {
    /// The checker of `dealer`'s proof in the running round, if it has one.
    fn checker(&self, dealer: u32) -> Option<u32> {
        let c = self.contributors.as_ref()?;
        proof::checker_of(&self.keyed, c, dealer).map(|(k, _)| k)
    }

    /// The dealers whose entries member `me` sends in an honest `verify`.
    fn verify_dealers(&self, me: u32) -> Vec<u32> {
        let c = self.contributors.clone().unwrap_or_default();
        c.into_iter()
            .filter(|&d| d != me && self.checker(d).is_some_and(|k| k != me))
            .collect()
    }

    /// The dealers whose proofs member `me` checks.
    fn checkees(&self, me: u32) -> Vec<u32> {
        let c = self.contributors.clone().unwrap_or_default();
        c.into_iter()
            .filter(|&d| d != me && self.checker(d) == Some(me))
            .collect()
    }

    /// The verdict the hospital accepted for `dealer`, if any.
    fn verdict(&self, dealer: u32) -> Option<Verdict> {
        self.verdicts
            .iter()
            .find(|(d, _, _)| *d == dealer)
            .map(|(_, v, _)| *v)
    }
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
                        if !d.extra.is_empty() {
                            // The correction of the member this one leads, and nothing else.
                            assert!(seen.proofs, "a correction without proofs");
                            assert_eq!(d.extra.len(), 1);
                            assert_eq!(
                                Some(d.extra.get(0).0),
                                proof::before(&seen.keyed, me, 1),
                                "a correction from another member than the one led"
                            );
                        }
                        let from: Vec<u32> = d.shares.iter().map(|(f, _)| f).collect();
                        let want: Vec<u32> = c.iter().copied().filter(|&j| j != me).collect();
                        assert_eq!(from, want, "a delivery that is not the contributor set");
                        if let Some(prev) = &seen.contributors {
                            assert_eq!(prev, c, "two contributor sets in one round");
                        }
                        seen.contributors = Some(c.clone());
                    }
                    RelayToPatient::Checks(c) => {
                        common::probe("checks");
                        assert!(seen.proofs, "checks without proofs");
                        assert!(seen.attached[i], "checks to an unattached connection");
                        let k = seen.index[i].expect("checks to a non-member");
                        assert_eq!(
                            seen.checker(c.dealer),
                            Some(k),
                            "checks to another member than the dealer's checker"
                        );
                        assert!(!seen.checked.contains(&c.dealer), "checks twice");
                        seen.checked.push(c.dealer);
                        // Exactly the accepted entries for the dealer: their sum (additive),
                        // each tagged with its verifier (Shamir).
                        let entries: Vec<(u32, [u8; VERIFY_ENTRY_LEN])> = seen
                            .verifies
                            .iter()
                            .enumerate()
                            .filter_map(|(j, l)| {
                                let e = l.as_ref()?.iter().find(|(d, _)| *d == c.dealer)?;
                                Some((j as u32 + 1, e.1))
                            })
                            .collect();
                        let additive = seen.roster.as_ref().is_some_and(|r| r.threshold == r.n());
                        if additive && entries.is_empty() {
                            assert!(c.checks.is_empty(), "a sum of no entries");
                        } else if additive {
                            assert_eq!(c.checks.len(), 1, "additive checks are one sum");
                            let (count, bytes) = c.checks.get(0);
                            assert_eq!(count as usize, entries.len(), "checks miscounted");
                            let mut sum = [Fe::ZERO; 4];
                            for (_, e) in &entries {
                                let x = proof::read_entry(e).expect("accepted entries read");
                                for (s, x) in sum.iter_mut().zip(x) {
                                    *s += x;
                                }
                            }
                            let want: Vec<u8> = sum.iter().flat_map(|x| x.to_le_bytes()).collect();
                            assert_eq!(bytes, &want[..], "checks are not the entries' sum");
                        } else {
                            let got: Vec<(u32, Vec<u8>)> =
                                c.checks.iter().map(|(j, b)| (j, b.to_vec())).collect();
                            let want: Vec<(u32, Vec<u8>)> =
                                entries.iter().map(|(j, e)| (*j, e.to_vec())).collect();
                            assert_eq!(got, want, "checks are not the verifiers' entries");
                        }
                    }
                    RelayToPatient::Verdicts(v) => {
                        common::probe("verdicts");
                        assert!(seen.proofs, "verdicts without proofs");
                        assert!(seen.attached[i], "verdicts to an unattached connection");
                        let m = seen.index[i].expect("verdicts to a non-member");
                        let c = seen
                            .contributors
                            .clone()
                            .expect("verdicts before a delivery");
                        let want: Vec<(u32, u8)> = c
                            .iter()
                            .filter_map(|&d| match seen.verdict(d) {
                                Some(Verdict::Valid) => None,
                                Some(v) => Some((d, v.code())),
                                None => Some((d, NO_VERDICT)),
                            })
                            .collect();
                        let got: Vec<(u32, u8)> = v.listed.iter().map(|(d, b)| (d, b[0])).collect();
                        assert_eq!(got, want, "verdicts list other verdicts than accepted");
                        // Additive rounds need every contributor: any exclusion abandons.
                        let additive = seen.roster.as_ref().is_some_and(|r| r.threshold == r.n());
                        assert!(
                            !additive || got.is_empty(),
                            "additive verdicts with exclusions"
                        );
                        let tag = seen
                            .verdicts
                            .iter()
                            .flat_map(|(_, _, t)| t)
                            .filter(|(to, _)| *to == m)
                            .fold(0u64, |a, (_, t)| a.wrapping_add(*t));
                        assert_eq!(v.tag, tag, "verdicts carry another tag sum");
                        let accepted: Vec<u32> = c
                            .into_iter()
                            .filter(|&d| seen.verdict(d) == Some(Verdict::Valid))
                            .collect();
                        if let Some(prev) = &seen.accepted {
                            assert_eq!(prev, &accepted, "two verdict lists in one round");
                        }
                        seen.accepted = Some(accepted);
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
                        seen.verifies = Default::default();
                        seen.checked.clear();
                        seen.verdicts.clear();
                        seen.accepted = None;
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
                    RelayToPatient::Result(res) if seen.proofs => {
                        // Over exactly the contributors whose proof was found valid; the
                        // other contributors excluded, with the verdict that excluded them.
                        let accepted = seen.accepted.as_ref().expect("a result before verdicts");
                        assert_eq!(
                            &res.contributors, accepted,
                            "a result over another set than the valid contributors"
                        );
                        for c in &res.contributors {
                            assert_eq!(
                                seen.verdict(*c),
                                Some(Verdict::Valid),
                                "a result with a contributor whose proof was not found valid"
                            );
                        }
                        let delivered = seen.contributors.as_ref().expect("delivered");
                        let excluded: Vec<(u32, Verdict)> =
                            res.excluded.iter().map(|e| (e.index, e.reason)).collect();
                        let want: Vec<(u32, Verdict)> = delivered
                            .iter()
                            .filter(|c| !accepted.contains(c))
                            .map(|&c| (c, seen.verdict(c).unwrap_or(Verdict::NotVerified)))
                            .collect();
                        assert_eq!(excluded, want, "a result's exclusions are not the verdicts");
                        assert_eq!(res.questionnaire.count, res.contributors.len() as u64);
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
                HospitalEvent::ProofsChecked { .. } => "proofs checked",
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

/// The sealed length of one share of an `n`-member round of threshold `t` (with proofs: the
/// proven share and the check seeds), and of the sealed correction (additive rounds with
/// proofs).
fn share_lens(
    setup: Option<&ProofSetup>,
    params: &StudyParams,
    n: u32,
    t: u32,
) -> (usize, Option<usize>) {
    let Ok(scheme) = Scheme::new(n.max(2), t.clamp(2, n.max(2))) else {
        return (32 + TAG_LEN, None);
    };
    match setup {
        Some(s) => (
            s.payload_len(scheme) + CHECK_SEEDS_LEN + TAG_LEN,
            matches!(scheme, Scheme::Additive { .. }).then(|| s.share_len() * 8 + TAG_LEN),
        ),
        None => (scheme.payload_len(params.vector_len()) + TAG_LEN, None),
    }
}

/// One share for every other keyed member, in roster order, and the correction for the
/// sender's leader (additive rounds with proofs), as an honest patient sends them.
fn honest_shares(
    seen: &Seen,
    setup: Option<&ProofSetup>,
    params: &StudyParams,
    me: u32,
    n: u32,
    t: u32,
) -> (ShareList, ShareList) {
    let (len, correction) = share_lens(setup, params, n, t);
    let sealed = vec![7; len];
    let mut shares = ShareList::with_capacity(len, n as usize);
    for &to in seen.keyed.iter().filter(|&&j| j != me) {
        shares.push(to, &sealed);
    }
    let mut extra = ShareList::with_capacity(0, 0);
    if let (Some(len), Some(to)) = (correction, proof::after(&seen.keyed, me, 1)) {
        extra = ShareList::with_capacity(len, 1);
        extra.push(to, &vec![9; len]);
    }
    (shares, extra)
}

/// A masked `verify` entry: four canonical elements (uniform to the hospital in a real round).
fn entry(value: u16, me: u32, dealer: u32) -> [u8; VERIFY_ENTRY_LEN] {
    let mut e = [0; VERIFY_ENTRY_LEN];
    for (k, chunk) in e.chunks_exact_mut(8).enumerate() {
        let x = (u64::from(value) << 32 | u64::from(me) << 16 | u64::from(dealer) << 4 | k as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&Fe::new(x).to_le_bytes());
    }
    e
}

/// A verdict tag (8 bytes; what they are is up to the patients).
fn tag(me: u32, dealer: u32, to: u32, verdict: u8) -> u64 {
    (u64::from(me) << 48 | u64::from(dealer) << 32 | u64::from(to) << 8 | u64::from(verdict))
        .wrapping_mul(0xd6e8_feb8_6659_fd93)
}

/// Hands the hospital a `verify` from connection `p`, noting its entries if accepted.
fn send_verify(
    h: &mut Hospital,
    seen: &mut Seen,
    now: u64,
    p: u8,
    v: Verify,
) -> Result<(), ProtocolError> {
    let msg = PatientToRelay::Verify(v.clone());
    common::patient_round_trip(&msg);
    let r = h.handle(now, PeerId(u64::from(p)), msg);
    common::probe(if r.is_ok() {
        "verify accepted"
    } else {
        "verify refused"
    });
    if r.is_ok() {
        let me = seen.index[usize::from(p)].expect("a verify accepted from a non-member");
        assert!(seen.proofs, "a verify accepted without proofs");
        assert!(
            seen.verifies[me as usize - 1].is_none(),
            "a second verify accepted"
        );
        let c = seen
            .contributors
            .as_ref()
            .expect("a verify before a delivery");
        let mut entries = Vec::with_capacity(v.checks.len());
        let mut last = 0;
        for (dealer, bytes) in v.checks.iter() {
            assert!(
                dealer > last && dealer != me && c.contains(&dealer),
                "a verify accepted with dealer {dealer} (sender {me}, contributors {c:?})"
            );
            last = dealer;
            entries.push((dealer, bytes.try_into().expect("32-byte entries")));
        }
        seen.verifies[me as usize - 1] = Some(entries);
    }
    r
}

/// Hands the hospital a `verdict` from connection `p`, noting it if accepted.
fn send_verdict(
    h: &mut Hospital,
    seen: &mut Seen,
    now: u64,
    p: u8,
    v: VerdictMsg,
) -> Result<(), ProtocolError> {
    let msg = PatientToRelay::Verdict(v.clone());
    common::patient_round_trip(&msg);
    let r = h.handle(now, PeerId(u64::from(p)), msg);
    common::probe(if r.is_ok() {
        "verdict accepted"
    } else {
        "verdict refused"
    });
    if r.is_ok() {
        let me = seen.index[usize::from(p)].expect("a verdict accepted from a non-member");
        assert_eq!(
            seen.checker(v.dealer),
            Some(me),
            "a verdict accepted from another member than the dealer's checker"
        );
        assert!(
            seen.verdict(v.dealer).is_none(),
            "a second verdict accepted"
        );
        let others: Vec<u32> = seen.keyed.iter().copied().filter(|&j| j != me).collect();
        let to: Vec<u32> = v.tags.iter().map(|(j, _)| j).collect();
        assert_eq!(to, others, "a verdict accepted with misaddressed tags");
        let tags = v
            .tags
            .iter()
            .map(|(j, b)| (j, u64::from_le_bytes(b.try_into().expect("8-byte tags"))))
            .collect();
        seen.verdicts.push((v.dealer, v.verdict, tags));
    }
    r
}

/// The honest `verify` of member `me`: one entry for every contributor it does not check.
fn honest_verify(seen: &Seen, me: u32, round: u64, value: u16) -> Verify {
    let dealers = seen.verify_dealers(me);
    let mut checks = ShareList::with_capacity(VERIFY_ENTRY_LEN, dealers.len());
    for d in dealers {
        checks.push(d, &entry(value, me, d));
    }
    Verify { round, checks }
}

/// The honest `verdict` of checker `me` on `dealer`: a tag for every other keyed member.
fn honest_verdict(seen: &Seen, me: u32, round: u64, dealer: u32, verdict: Verdict) -> VerdictMsg {
    let mut tags = ShareList::with_capacity(VERDICT_TAG_LEN, seen.keyed.len());
    for &j in seen.keyed.iter().filter(|&&j| j != me) {
        tags.push(j, &tag(me, dealer, j, verdict.code()).to_le_bytes());
    }
    VerdictMsg {
        round,
        dealer,
        verdict,
        tags,
    }
}

/// Mostly `valid` (so rounds complete), sometimes not.
fn verdict_of(value: u16) -> Verdict {
    match value % 8 {
        6 => Verdict::InvalidProof,
        7 => Verdict::NotVerified,
        _ => Verdict::Valid,
    }
}

/// What an honest patient on connection `p` sends next, if it is in the running round.
fn honest(
    h: &mut Hospital,
    seen: &mut Seen,
    setup: Option<&ProofSetup>,
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
            let (shares, extra) =
                honest_shares(seen, setup, params, me, r.roster_size, r.threshold);
            let msg = PatientToRelay::Shares(Shares {
                round: r.round,
                shares,
                extra,
            });
            h.handle(now, peer, msg)
        }
        (Some(r), Some(me)) if r.phase == RoundPhase::AwaitingVerify => {
            let v = honest_verify(seen, me, r.round, value);
            send_verify(h, seen, now, p, v)
        }
        (Some(r), Some(me)) if r.phase == RoundPhase::AwaitingVerdicts => {
            let mut res = Ok(());
            for d in seen.checkees(me) {
                let v = honest_verdict(seen, me, r.round, d, verdict_of(value));
                res = res.and(send_verdict(h, seen, now, p, v));
            }
            res
        }
        (Some(r), Some(me)) => {
            // The aggregate is `contributors` copies of one encoded value (its count must be the
            // contributor set: with proofs, the valid ones). Additive: member 1 carries it, the
            // others zeros; Shamir: a constant polynomial, everyone sends it.
            let k = if seen.proofs {
                seen.accepted.as_ref().map_or(0, Vec::len)
            } else {
                seen.contributors.as_ref().map_or(0, Vec::len)
            };
            let sum = if r.threshold < r.roster_size || me == 1 {
                let k = Fe::new(k as u64);
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
    let setup = params
        .proofs
        .then(|| ProofSetup::new(&params).expect("a small study"));
    let setup = setup.as_ref();
    let Ok(mut h) = Hospital::new(spec, input.first_round) else {
        return;
    };
    let mut now = 0u64;
    let mut seen = Seen {
        proofs: params.proofs,
        ..Seen::default()
    };
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
                let right = share_lens(setup, &params, n, t).0 - TAG_LEN;
                let sealed = |len: &LenSel| {
                    let bytes = match len {
                        LenSel::Right => right,
                        LenSel::Bytes(b) => usize::from(*b % 2048),
                    };
                    vec![0xa5; bytes + 16]
                };
                let mut extra = ShareList::with_capacity(0, 0);
                let list = if *all {
                    // What an honest patient sends: one well-formed share for every other
                    // keyed member, and the correction for its leader (additive, proofs).
                    let me = seen.index[usize::from(p % 8)].unwrap_or(0);
                    let (l, e) = honest_shares(&seen, setup, &params, me, n, t);
                    extra = e;
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
                    extra,
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
            Op::Honest { peer: p, value } => {
                honest(&mut h, &mut seen, setup, &params, *p, *value, now)
            }
            Op::HonestAll(value) => {
                let mut r = Ok(());
                for p in 0..8u8 {
                    r = r.and(honest(&mut h, &mut seen, setup, &params, p, *value, now));
                    drain(&mut h, &mut seen);
                }
                r
            }
            Op::Verify {
                peer: p,
                round,
                how,
            } => {
                let p = p % 8;
                let me = seen.index[usize::from(p)].unwrap_or(1);
                let round = round_of(&h, round);
                let honest = honest_verify(&seen, me, round, 1);
                let mut entries: Vec<(u32, Vec<u8>)> =
                    honest.checks.iter().map(|(d, e)| (d, e.to_vec())).collect();
                let at = |k: &u8, len: usize| usize::from(*k) % len.max(1);
                match how {
                    VerifySel::Honest => {}
                    VerifySel::NonCanonical { k, all_ff } => {
                        let i = at(k, entries.len());
                        if let Some((_, e)) = entries.get_mut(i) {
                            if *all_ff {
                                e.fill(0xff);
                            } else {
                                let j = 8 * (i % 4);
                                e[j..j + 8].copy_from_slice(&((1u64 << 61) - 1).to_le_bytes());
                            }
                        }
                    }
                    VerifySel::ItemLen(b) => {
                        for (_, e) in &mut entries {
                            e.resize(usize::from(*b % 65), 3);
                        }
                    }
                    VerifySel::Reversed => entries.reverse(),
                    VerifySel::WithSelf => {
                        let i = entries.partition_point(|(d, _)| *d < me);
                        entries.insert(i, (me, entry(1, me, me).to_vec()));
                    }
                    VerifySel::Duplicate(k) => {
                        let i = at(k, entries.len());
                        if let Some(e) = entries.get(i).cloned() {
                            entries.insert(i, e);
                        }
                    }
                    VerifySel::Dealers(ds) => {
                        entries = ds
                            .iter()
                            .take(16)
                            .map(|&d| (u32::from(d % 10), entry(2, me, u32::from(d)).to_vec()))
                            .collect();
                    }
                    VerifySel::Empty => entries.clear(),
                }
                let len = entries.first().map_or(VERIFY_ENTRY_LEN, |(_, e)| e.len());
                let mut checks = ShareList::with_capacity(len, entries.len());
                for (d, e) in &entries {
                    checks.push(*d, e);
                }
                send_verify(&mut h, &mut seen, now, p, Verify { round, checks })
            }
            Op::Verdict {
                peer: p,
                round,
                dealer,
                verdict,
                tags,
            } => {
                let p = p % 8;
                let me = seen.index[usize::from(p)].unwrap_or(1);
                let round = round_of(&h, round);
                let dealer = match dealer {
                    DealerSel::Checkee(k) => {
                        let c = seen.checkees(me);
                        c.get(usize::from(*k) % c.len().max(1))
                            .copied()
                            .unwrap_or(1)
                    }
                    DealerSel::Any(d) => u32::from(d % 10),
                };
                let verdict = Verdict::from_code(verdict % 3).expect("codes 0..3");
                let honest = honest_verdict(&seen, me, round, dealer, verdict);
                let mut list: Vec<(u32, Vec<u8>)> =
                    honest.tags.iter().map(|(j, t)| (j, t.to_vec())).collect();
                let one = |j: u32| tag(me, dealer, j, verdict.code()).to_le_bytes().to_vec();
                match tags {
                    TagSel::Honest => {}
                    TagSel::Drop(k) => {
                        if !list.is_empty() {
                            list.remove(usize::from(*k) % list.len());
                        }
                    }
                    TagSel::WithSelf => {
                        let i = list.partition_point(|(j, _)| *j < me);
                        list.insert(i, (me, one(me)));
                    }
                    TagSel::Recipients(js) => {
                        list = js
                            .iter()
                            .take(16)
                            .map(|&j| (u32::from(j % 10), one(u32::from(j % 10))))
                            .collect();
                    }
                    TagSel::ItemLen(b) => {
                        for (_, t) in &mut list {
                            t.resize(usize::from(*b % 65), 5);
                        }
                    }
                }
                let len = list.first().map_or(VERDICT_TAG_LEN, |(_, t)| t.len());
                let mut tags = ShareList::with_capacity(len, list.len());
                for (j, t) in &list {
                    tags.push(*j, t);
                }
                let v = VerdictMsg {
                    round,
                    dealer,
                    verdict,
                    tags,
                };
                send_verdict(&mut h, &mut seen, now, p, v)
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
