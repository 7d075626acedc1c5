//! A hostile hospital: every test plays one deviation of the relay against real `Patient`
//! machines (through their public API and wire encoding) and checks that no patient releases a
//! partial sum it must not (or shows a result it did not check), and that the patient's error
//! names the attack.

use cohort_core::commitment::{Commitment, Nonce, Revealed, commit};
use cohort_core::decimal::Decimal;
use cohort_core::envelope::KeyPair;
use cohort_core::error::ProtocolError;
use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    Delivery, Keys, PROTOCOL_VERSION, PartialSumOf, PatientToRelay, RelayToPatient, RosterMsg,
    RoundResult, Shares, Welcome,
};
use cohort_core::protocol::aggregate::aggregate;
use cohort_core::protocol::{Patient, PatientEvent, SeenRounds};
use cohort_core::roster::{Member, Roster};
use cohort_core::sharing::Scheme;
use cohort_core::study::{StudyParams, StudySpec};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const ROUND: u64 = 7;

/// The study of `spec`, without validity proofs: these tests drive the patient by hand through
/// the delivery, and the proof steps are attacked in core/tests/forging.rs.
fn params(spec: &str) -> StudyParams {
    let mut p = spec.parse::<StudySpec>().expect("valid study").params;
    p.proofs = false;
    p
}

/// Sends a relay message through its wire encoding.
fn send(p: &mut Patient, msg: RelayToPatient) -> Result<(), ProtocolError> {
    let msg = RelayToPatient::decode_wire(&msg.encode()).expect("relay messages decode");
    p.handle(0, msg)
}

/// Everything the patient sent, through the wire encoding.
fn sent(p: &mut Patient) -> Vec<PatientToRelay> {
    std::iter::from_fn(|| p.poll_output())
        .map(|m| PatientToRelay::decode_wire(&m.encode()).expect("patient messages decode"))
        .collect()
}

fn events(p: &mut Patient) -> Vec<PatientEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn refusal(evs: &[PatientEvent]) -> Option<ProtocolError> {
    evs.iter().find_map(|e| match e {
        PatientEvent::Refused(err) => Some(err.clone()),
        _ => None,
    })
}

fn partial_sums(msgs: &[PatientToRelay]) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, PatientToRelay::PartialSum(_)))
        .count()
}

/// A deviating relay's view of one round: n real patients welcomed to `ROUND`.
struct Round {
    params: StudyParams,
    patients: Vec<Patient>,
    commitments: Vec<Commitment>,
    reveals: Vec<Revealed>,
    shares: Vec<Shares>,
    partials: Vec<Option<Vec<Fe>>>,
}

impl Round {
    fn welcomed(spec: &str, values: &[&str], seed: u64) -> Round {
        let params = params(spec);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut patients = Vec::new();
        let mut commitments = Vec::new();
        for v in values {
            let value: Decimal = v.parse().unwrap();
            let mut p = Patient::new(0, &params.id, value, None, None, &mut rng).unwrap();
            let Some(PatientToRelay::Join(j)) = sent(&mut p).pop() else {
                panic!("join expected")
            };
            commitments.push(j.commitment);
            send(&mut p, welcome(&params, ROUND)).unwrap();
            patients.push(p);
        }
        let n = patients.len();
        Round {
            params,
            patients,
            commitments,
            reveals: Vec::new(),
            shares: Vec::new(),
            partials: vec![None; n],
        }
    }

    fn n(&self) -> u32 {
        self.patients.len() as u32
    }

    fn roster_of(&self, commitments: &[Commitment]) -> Roster {
        let n = commitments.len() as u32;
        Roster {
            study: self.params.clone(),
            round: ROUND,
            threshold: self.params.round_threshold(n),
            members: commitments
                .iter()
                .enumerate()
                .map(|(i, c)| Member {
                    index: i as u32 + 1,
                    commitment: *c,
                })
                .collect(),
        }
    }

    fn roster(&self) -> Roster {
        self.roster_of(&self.commitments)
    }

    /// Freezes the honest roster and collects every reveal.
    fn freeze(&mut self) {
        let roster = self.roster();
        for (i, p) in self.patients.iter_mut().enumerate() {
            let msg = RelayToPatient::Roster(RosterMsg {
                v: PROTOCOL_VERSION,
                roster: roster.clone(),
            });
            send(p, msg).unwrap();
            let Some(PatientToRelay::Reveal(r)) = sent(p).pop() else {
                panic!("reveal expected")
            };
            self.reveals.push(Revealed {
                index: i as u32 + 1,
                public_key: r.public_key,
                nonce: r.nonce,
            });
        }
    }

    fn keys(&self) -> RelayToPatient {
        RelayToPatient::Keys(Keys {
            v: PROTOCOL_VERSION,
            round: ROUND,
            reveals: self.reveals.clone(),
        })
    }

    /// Forwards the honest reveals and collects every patient's shares.
    fn share(&mut self) {
        let keys = self.keys();
        for p in &mut self.patients {
            send(p, keys.clone()).unwrap();
            let Some(PatientToRelay::Shares(s)) = sent(p).pop() else {
                panic!("shares expected")
            };
            self.shares.push(s);
        }
    }

    /// The delivery to `to` (1-based) over the contributor set `set`.
    fn delivery(&self, to: u32, set: &[u32]) -> RelayToPatient {
        let sealed_len = self.shares[0].shares.sealed_len();
        let mut shares = ShareList::with_capacity(sealed_len, set.len());
        for &from in set.iter().filter(|&&from| from != to) {
            let s = &self.shares[from as usize - 1];
            let (_, sealed) = s.shares.iter().find(|(j, _)| *j == to).expect("addressed");
            assert!(shares.push(from, sealed));
        }
        RelayToPatient::Delivery(Delivery {
            round: ROUND,
            contributors: set.to_vec(),
            shares,
            extra: ShareList::with_capacity(0, 0),
        })
    }

    /// Delivers `set` to `to` and records its partial sum, if it sends one.
    fn deliver(&mut self, to: u32, set: &[u32]) -> Result<(), ProtocolError> {
        let d = self.delivery(to, set);
        let p = &mut self.patients[to as usize - 1];
        let r = send(p, d);
        for m in sent(p) {
            if let PatientToRelay::PartialSum(s) = m {
                self.partials[to as usize - 1] = Some(s.sum);
            }
        }
        r
    }

    /// The honest result over `set` from every partial sum the relay holds.
    fn result(&self, set: &[u32]) -> RoundResult {
        let partials: Vec<PartialSumOf> = self
            .partials
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.as_ref().map(|s| PartialSumOf {
                    from: i as u32 + 1,
                    sum: s.clone(),
                })
            })
            .collect();
        let points: Vec<(u32, &[Fe])> = partials
            .iter()
            .map(|p| (p.from, p.sum.as_slice()))
            .collect();
        let roster = self.roster();
        let decoded = aggregate(&roster, set, &points).expect("honest aggregate");
        RoundResult {
            v: PROTOCOL_VERSION,
            study: self.params.id.clone(),
            round: ROUND,
            statistics: decoded.statistics,
            questionnaire: decoded.questionnaire,
            excluded: Vec::new(),
            roster_size: self.n(),
            contributors: set.to_vec(),
            partial_sums: partials.len() as u32,
            safety_code: roster.safety_code(&self.reveals),
            partials,
        }
    }
}

fn welcome(params: &StudyParams, round: u64) -> RelayToPatient {
    RelayToPatient::Welcome(Welcome {
        v: PROTOCOL_VERSION,
        study: params.clone(),
        round,
        enrolled: 1,
    })
}

const SHAMIR: &str = "id=h,size=5,threshold=3,min_cohort=3";
const VALUES: [&str; 5] = ["150", "160", "170", "180", "190.5"];

#[test]
fn hostile_baseline_honest_round_is_checked_on_every_device() {
    let mut r = Round::welcomed(SHAMIR, &VALUES, 1);
    r.freeze();
    r.share();
    let all = [1, 2, 3, 4, 5];
    for i in 1..=5 {
        r.deliver(i, &all).unwrap();
    }
    let result = r.result(&all);
    for p in &mut r.patients {
        events(p);
        send(p, RelayToPatient::Result(result.clone())).unwrap();
        let evs = events(p);
        assert!(matches!(
            evs[0],
            PatientEvent::ResultChecked {
                round: ROUND,
                contributors: 5,
                partial_sums: 5
            }
        ));
        let PatientEvent::Completed(c) = &evs[1] else {
            panic!("completed expected")
        };
        let s = c.statistics.as_ref().expect("one-question statistics");
        assert_eq!(s.count, 5);
        assert_eq!(s.sum, 850.5);
    }
}

#[test]
fn hostile_different_contributor_sets_to_two_groups() {
    // n = 5, t = 3, c = 0: 2t > n + c. The relay gives {1,2,3} the set {1..5} and {3,4,5} the
    // set {2..5} (patient 1 "dropped"), hoping to subtract the two aggregates. Patient 3 is in
    // both groups (pigeonhole: 3 + 3 > 5) and answers once only.
    let mut r = Round::welcomed(SHAMIR, &VALUES, 2);
    r.freeze();
    r.share();
    let s1 = [1, 2, 3, 4, 5];
    let s2 = [2, 3, 4, 5];
    for i in [1, 2, 3] {
        r.deliver(i, &s1).unwrap();
    }
    events(&mut r.patients[2]);
    let before = r.partials[2].clone();
    let err = r.deliver(3, &s2).unwrap_err();
    assert_eq!(err, ProtocolError::SecondPartialSumRequest { round: ROUND });
    assert_eq!(r.partials[2], before, "patient 3 released no second sum");
    assert_eq!(
        refusal(&events(&mut r.patients[2])),
        Some(ProtocolError::SecondPartialSumRequest { round: ROUND })
    );
    let mut second: Vec<(u32, Vec<Fe>)> = Vec::new();
    for i in [4, 5] {
        r.deliver(i, &s2).unwrap();
        second.push((i, r.partials[i as usize - 1].clone().unwrap()));
    }
    // Over {2..5} the relay holds only 2 < t partial sums: nothing to reconstruct.
    let points: Vec<(u32, &[Fe])> = second.iter().map(|(i, s)| (*i, s.as_slice())).collect();
    assert!(Scheme::new(5, 3).unwrap().reconstruct(&points).is_err());
    // And the second group refuses a result over the first set.
    let group_a: Vec<(u32, Vec<Fe>)> = (1..=3)
        .map(|i| (i, r.partials[i as usize - 1].clone().unwrap()))
        .collect();
    // Mixing the two sets' partial sums is not one polynomial (the check every patient runs).
    let mixed = r.partials.iter().all(Option::is_some);
    assert!(mixed);
    let points: Vec<(u32, &[Fe])> = r
        .partials
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32 + 1, p.as_deref().unwrap()))
        .collect();
    assert!(aggregate(&r.roster(), &s1, &points).is_err());
    r.partials[3] = None;
    r.partials[4] = None;
    let mut lie = r.result(&s1);
    lie.partials = group_a
        .iter()
        .map(|(i, s)| PartialSumOf {
            from: *i,
            sum: s.clone(),
        })
        .collect();
    lie.partial_sums = 3;
    let p5 = &mut r.patients[4];
    events(p5);
    assert_eq!(
        send(p5, RelayToPatient::Result(lie)),
        Err(ProtocolError::ContributorSetChanged)
    );
    assert!(
        !events(p5)
            .iter()
            .any(|e| matches!(e, PatientEvent::Completed(_)))
    );
}

#[test]
fn hostile_withheld_share_with_a_false_dropped() {
    // The relay says patient 2 dropped but still hands over its share.
    let mut r = Round::welcomed(SHAMIR, &VALUES, 3);
    r.freeze();
    r.share();
    let mut d = r.delivery(1, &[1, 2, 3, 4, 5]);
    if let RelayToPatient::Delivery(d) = &mut d {
        d.contributors = vec![1, 3, 4, 5];
    }
    let p = &mut r.patients[0];
    assert_eq!(
        send(p, d),
        Err(ProtocolError::DeliveryOmitsSender { from: 2 })
    );
    assert_eq!(partial_sums(&sent(p)), 0);
    assert!(p.is_finished());
}

#[test]
fn hostile_key_substitution_with_a_ground_safety_code_collision() {
    // Codes shortened to 3 digits so a grind takes ~1000 tries. The relay gives patient 1 a
    // roster in which member 2's commitment is its own (key X), hoping patient 1's code equals
    // everyone else's. It must fix X's commitment in the frozen roster before the honest nonces
    // are revealed.
    const DIGITS: u32 = 3;
    let mut r = Round::welcomed("id=h,size=3,threshold=3", &VALUES[..3], 4);
    r.freeze();
    let honest = r.roster();
    let target = honest.safety_code_digits(&r.reveals, DIGITS);
    let candidate = |i: u64| {
        let kp = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(1_000_000 + i));
        let nonce = Nonce([(i % 251) as u8; 32]);
        let mut c = r.commitments.clone();
        c[1] = commit("h", &kp.public(), &nonce);
        let rv = Revealed {
            index: 2,
            public_key: kp.public(),
            nonce,
        };
        (r.roster_of(&c), rv)
    };
    let code_for = |roster: &Roster, rv: &Revealed, reveals: &[Revealed]| {
        let mut rs = reveals.to_vec();
        rs[1] = rv.clone();
        roster.safety_code_digits(&rs, DIGITS)
    };
    // (a) With the honest reveals in hand the grind succeeds quickly...
    let found = (0..20_000u64).find(|&i| {
        let (roster, rv) = candidate(i);
        code_for(&roster, &rv, &r.reveals) == target
    });
    assert!(found.is_some(), "a 3-digit code is ground with the reveals");
    // ...but the protocol makes the relay freeze the roster first. Grinding against guessed
    // nonces (it has not seen the real ones) is a single blind guess against the real codes.
    let guessed: Vec<Revealed> = r
        .reveals
        .iter()
        .map(|x| Revealed {
            nonce: Nonce([0xAA; 32]),
            ..x.clone()
        })
        .collect();
    let guessed_target = honest.safety_code_digits(&guessed, DIGITS);
    let blind = (0..20_000u64)
        .find(|&i| {
            let (roster, rv) = candidate(i);
            code_for(&roster, &rv, &guessed) == guessed_target
        })
        .expect("a collision under the guessed nonces");
    let (fake_roster, fake_rv) = candidate(blind);
    assert_ne!(
        code_for(&fake_roster, &fake_rv, &r.reveals),
        target,
        "against the real nonces the blind collision fails (the people comparing codes see it)"
    );
    // (b) Swapping in the key found with the reveals after the roster is frozen does not open
    // the frozen commitment: the patient refuses before it seals anything.
    let (_, late) = candidate(found.unwrap());
    let mut reveals = r.reveals.clone();
    reveals[1] = late;
    let p = &mut r.patients[0];
    let keys = RelayToPatient::Keys(Keys {
        v: PROTOCOL_VERSION,
        round: ROUND,
        reveals,
    });
    assert_eq!(
        send(p, keys),
        Err(ProtocolError::RevealMismatch { index: 2 })
    );
    assert!(
        !sent(p)
            .iter()
            .any(|m| matches!(m, PatientToRelay::Shares(_) | PatientToRelay::PartialSum(_)))
    );
}

#[test]
fn hostile_wrong_reveal_is_refused_by_every_patient() {
    let mut r = Round::welcomed(SHAMIR, &VALUES, 5);
    r.freeze();
    r.reveals[2].nonce.0[0] ^= 1;
    let keys = r.keys();
    for (i, p) in r.patients.iter_mut().enumerate() {
        let got = send(p, keys.clone());
        let want = ProtocolError::RevealMismatch { index: 3 };
        assert_eq!(got, Err(want.clone()), "patient {}", i + 1);
        assert_eq!(refusal(&events(p)), Some(want));
        assert!(
            !sent(p)
                .iter()
                .any(|m| matches!(m, PatientToRelay::Shares(_)))
        );
    }
}

#[test]
fn hostile_replayed_round_id() {
    let mut r = Round::welcomed("id=h,size=3,threshold=3", &VALUES[..3], 6);
    r.freeze();
    r.share();
    for i in 1..=3 {
        r.deliver(i, &[1, 2, 3]).unwrap();
    }
    // The user's device kept the rounds it took part in (sessionStorage in the browser).
    let seen = SeenRounds::from_json(&r.patients[0].seen_rounds().to_json()).unwrap();
    assert!(seen.answered(ROUND));
    // A reconnect: a fresh patient (new key) is welcomed to the same round id again.
    let mut rng = ChaCha20Rng::seed_from_u64(60);
    let mut again = Patient::new(0, "h", "150".parse().unwrap(), None, None, &mut rng).unwrap();
    again.remember_rounds(&seen);
    sent(&mut again);
    let err = ProtocolError::ReplayedRound { round: ROUND };
    assert_eq!(
        send(&mut again, welcome(&r.params, ROUND)),
        Err(err.clone())
    );
    assert_eq!(refusal(&events(&mut again)), Some(err.clone()));
    assert_eq!(partial_sums(&sent(&mut again)), 0);
    // Welcomed to a new round, then handed a roster of the old one: refused too.
    let mut rng = ChaCha20Rng::seed_from_u64(61);
    let mut p = Patient::new(0, "h", "150".parse().unwrap(), None, None, &mut rng).unwrap();
    p.remember_rounds(&seen);
    sent(&mut p);
    send(&mut p, welcome(&r.params, ROUND)).unwrap_err();
    assert!(p.is_finished());
}

#[test]
fn hostile_second_partial_sum_request_in_one_round_also_after_a_reconnect() {
    let mut r = Round::welcomed(SHAMIR, &VALUES, 7);
    r.freeze();
    r.share();
    r.deliver(1, &[1, 2, 3, 4, 5]).unwrap();
    assert!(r.partials[0].is_some());
    let first = r.partials[0].clone();
    let err = ProtocolError::SecondPartialSumRequest { round: ROUND };
    assert_eq!(r.deliver(1, &[1, 2, 3, 4]), Err(err.clone()));
    assert_eq!(r.partials[0], first);
    assert_eq!(refusal(&events(&mut r.patients[0])), Some(err));
    // After a reconnect the device's seen set travels with the user: the relay cannot even
    // roster the same round again, let alone ask for its partial sum.
    let seen = r.patients[0].seen_rounds().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(70);
    let mut p = Patient::new(0, "h", "150".parse().unwrap(), None, None, &mut rng).unwrap();
    p.remember_rounds(&seen);
    sent(&mut p);
    assert_eq!(
        send(&mut p, welcome(&r.params, ROUND)),
        Err(ProtocolError::ReplayedRound { round: ROUND })
    );
    assert_eq!(partial_sums(&sent(&mut p)), 0);
}

#[test]
fn hostile_roster_whose_threshold_breaks_the_collusion_rule() {
    // The relay claims a study with n = 4, t = 2 (2t = n: two disjoint pairs could be given two
    // contributor sets), and one with c = 1 and 2t = n + c.
    let mut weak = params("id=h,size=4,threshold=4");
    weak.threshold = 2;
    let mut colluding = params("id=h,size=5,threshold=3");
    colluding.colluders = 1;
    for (params, n) in [(weak, 4u32), (colluding, 5)] {
        let mut r = Round::welcomed("id=h,size=5,threshold=3", &VALUES[..n as usize], 8);
        r.params = params.clone();
        let roster = r.roster();
        let p = &mut r.patients[0];
        events(p);
        // The patient joined without a study list: it learns the parameters from the relay.
        let msg = RelayToPatient::Roster(RosterMsg {
            v: PROTOCOL_VERSION,
            roster,
        });
        let got = send(p, msg);
        // (The welcome carried other parameters, so a patient that pinned them refuses on
        // that already; this one refuses on the rule.)
        assert!(matches!(
            got,
            Err(ProtocolError::ParamsMismatch | ProtocolError::ThresholdBreaksCollusionRule { .. })
        ));
        // Pinned to the relay's own (bad) parameters from the welcome: the rule itself refuses.
        let mut rng = ChaCha20Rng::seed_from_u64(80);
        let mut q = Patient::new(0, "h", "150".parse().unwrap(), None, None, &mut rng).unwrap();
        let Some(PatientToRelay::Join(j)) = sent(&mut q).pop() else {
            panic!()
        };
        send(&mut q, welcome(&params, ROUND)).unwrap();
        let mut c = r.commitments.clone();
        c[0] = j.commitment;
        let roster = r.roster_of(&c);
        let got = send(
            &mut q,
            RelayToPatient::Roster(RosterMsg {
                v: PROTOCOL_VERSION,
                roster,
            }),
        );
        let want = ProtocolError::ThresholdBreaksCollusionRule {
            n,
            threshold: params.threshold,
            colluders: params.colluders,
        };
        assert_eq!(got, Err(want.clone()));
        assert_eq!(refusal(&events(&mut q)), Some(want));
        assert!(
            !sent(&mut q)
                .iter()
                .any(|m| matches!(m, PatientToRelay::Reveal(_)))
        );
    }
}

#[test]
fn hostile_lying_result() {
    let mut r = Round::welcomed(SHAMIR, &VALUES, 9);
    r.freeze();
    r.share();
    let all = [1, 2, 3, 4, 5];
    for i in 1..=5 {
        r.deliver(i, &all).unwrap();
    }
    let honest = r.result(&all);
    let mut lies: Vec<(RoundResult, ProtocolError)> = Vec::new();
    // Other statistics than the partial sums give.
    let mut l = honest.clone();
    l.statistics.as_mut().expect("one question").mean += 1.0;
    lies.push((l, ProtocolError::LyingResult));
    // Another questionnaire result than the partial sums give.
    let mut l = honest.clone();
    l.questionnaire.count += 1;
    lies.push((l, ProtocolError::LyingResult));
    // No one-question statistics at all.
    let mut l = honest.clone();
    l.statistics = None;
    lies.push((l, ProtocolError::LyingResult));
    // A forged partial sum (more than t: it is not on the polynomial through the others).
    let mut l = honest.clone();
    l.partials[4].sum[1] += Fe::ONE;
    lies.push((l, ProtocolError::InconsistentPartialSums));
    // Patient 1's own partial sum altered.
    let mut l = honest.clone();
    l.partials[0].sum[0] += Fe::ONE;
    lies.push((l, ProtocolError::OwnPartialSumAltered));
    // Another contributor set.
    let mut l = honest.clone();
    l.contributors = vec![1, 2, 3, 4];
    lies.push((l, ProtocolError::ContributorSetChanged));
    for (lie, want) in lies {
        let mut fresh = Round::welcomed(SHAMIR, &VALUES, 9);
        fresh.freeze();
        fresh.share();
        for i in 1..=5 {
            fresh.deliver(i, &all).unwrap();
        }
        let p = &mut fresh.patients[0];
        events(p);
        assert_eq!(send(p, RelayToPatient::Result(lie)), Err(want.clone()));
        let evs = events(p);
        assert_eq!(refusal(&evs), Some(want));
        assert!(!evs.iter().any(|e| matches!(
            e,
            PatientEvent::Completed(_) | PatientEvent::ResultChecked { .. }
        )));
    }
}

#[test]
fn hostile_duplicate_roster_members() {
    let mut r = Round::welcomed(SHAMIR, &VALUES, 10);
    // Member 3's commitment listed twice (the relay's own client posing as two patients, or
    // one patient counted twice to reach the minimum cohort).
    let mut c = r.commitments.clone();
    c[3] = c[2];
    let roster = r.roster_of(&c);
    let p = &mut r.patients[0];
    let got = send(
        p,
        RelayToPatient::Roster(RosterMsg {
            v: PROTOCOL_VERSION,
            roster,
        }),
    );
    assert_eq!(got, Err(ProtocolError::DuplicateRosterMember));
    assert!(
        !sent(p)
            .iter()
            .any(|m| matches!(m, PatientToRelay::Reveal(_)))
    );
    // Distinct commitments that reveal one key twice: refused at the reveals.
    let mut r = Round::welcomed(SHAMIR, &VALUES, 11);
    r.freeze();
    let dup = r.reveals[2].public_key;
    let nonce = Nonce([3; 32]);
    r.reveals[3] = Revealed {
        index: 4,
        public_key: dup,
        nonce,
    };
    r.commitments[3] = commit("h", &dup, &nonce);
    // (A fresh patient that sees this roster from the start.)
    let mut rng = ChaCha20Rng::seed_from_u64(110);
    let mut q = Patient::new(0, "h", "150".parse().unwrap(), None, None, &mut rng).unwrap();
    let Some(PatientToRelay::Join(j)) = sent(&mut q).pop() else {
        panic!()
    };
    send(&mut q, welcome(&r.params, ROUND)).unwrap();
    r.commitments[0] = j.commitment;
    r.reveals[0] = q.revealed(1);
    let roster = r.roster();
    send(
        &mut q,
        RelayToPatient::Roster(RosterMsg {
            v: PROTOCOL_VERSION,
            roster,
        }),
    )
    .unwrap();
    sent(&mut q);
    assert_eq!(
        send(&mut q, r.keys()),
        Err(ProtocolError::DuplicateRosterMember)
    );
    assert!(
        !sent(&mut q)
            .iter()
            .any(|m| matches!(m, PatientToRelay::Shares(_)))
    );
}
