//! Attack tests: a patient running modified code contributes an invalid vector, with the best
//! proof it can make, beside honest patients (the real `Patient` and `Hospital` over the
//! simulated network). Every class of invalid vector is caught by the other patients' checks
//! and left out (Shamir rounds) or stops the round (additive rounds); the honest result is
//! exact. Without proofs (`proofs=off`) the same forgery poisons the result, which is what the
//! proofs are for.

#![cfg(feature = "test-util")]

use cohort_core::answer::Answers;
use cohort_core::decimal::Decimal;
use cohort_core::message::AbandonReason;
use cohort_core::proof::{Exclusion, Forgery, Verdict};
use cohort_core::protocol::HospitalEvent;
use cohort_core::questionnaire::QuestionStats;
use cohort_core::study::StudySpec;
use cohort_core::testing::{Behaviour, run_round_answers};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const H: Behaviour = Behaviour::Honest;

/// A study with two number questions (one optional) and a choice, `n` patients, threshold `t`.
fn survey(n: u32, t: u32, proofs: bool) -> StudySpec {
    StudySpec::from_json(&format!(
        r#"{{"id":"survey","size":{n},"threshold":{t},"min_cohort":3,"proofs":{proofs},
        "questions":[
          {{"id":"height","kind":"number","text":"Height?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13}},
          {{"id":"weight","kind":"number","text":"Weight?","unit":"kg","min":30,"max":200,"decimals":0,"buckets":10,"optional":true}},
          {{"id":"smoker","kind":"choice","text":"Smoke?","options":["no","yes","used to"]}}
        ]}}"#
    ))
    .expect("valid study")
}

fn answers(n: usize, seed: u64) -> Vec<Answers> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let h = Decimal::new(1000 + (rng.next_u64() % 1301) as i64, 1).expect("small");
            let mut args = vec![format!("height={h}")];
            let mut skips = vec![];
            if rng.next_u64() % 4 == 0 {
                skips.push("weight".to_string());
            } else {
                args.push(format!("weight={}", 30 + rng.next_u64() % 171));
            }
            let opt = ["no", "yes", "used to"][(rng.next_u64() % 3) as usize];
            args.push(format!("smoker={opt}"));
            Answers::from_args(
                args.iter().map(String::as_str),
                skips.iter().map(String::as_str),
            )
            .expect("well formed")
        })
        .collect()
}

/// The height statistics of the patients at `included` (0-based), computed directly.
fn heights(answers: &[Answers], included: &[usize]) -> (u64, f64) {
    let mut sum = 0.0;
    for &i in included {
        let d: Decimal = match answers[i].get("height").expect("answered") {
            cohort_core::answer::Answer::Number(d) => *d,
            cohort_core::answer::Answer::Text(t) => t.parse().expect("a number"),
            cohort_core::answer::Answer::Skip => panic!("height is required"),
        };
        sum += d.to_scaled(1).expect("1 decimal") as f64 / 10.0;
    }
    (included.len() as u64, sum)
}

/// A simulated network of `n` honest patients answering [`answers`]`(n, seed)` around a hospital
/// for `spec`, to be driven step by step.
fn network(
    spec: &StudySpec,
    n: usize,
    seed: u64,
) -> cohort_core::testing::Network<cohort_core::protocol::Patient> {
    network_forging(spec, n, seed, None)
}

/// [`network`] with patient `forger.0` (0-based) forging `forger.1`.
fn network_forging(
    spec: &StudySpec,
    n: usize,
    seed: u64,
    forger: Option<(usize, Forgery)>,
) -> cohort_core::testing::Network<cohort_core::protocol::Patient> {
    use cohort_core::protocol::{Hospital, Patient};
    let mut rng = ChaCha20Rng::seed_from_u64(seed + 1);
    let patients: Vec<Patient> = answers(n, seed)
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let p =
                Patient::with_answers(0, "survey", a, Some(spec.params.clone()), None, &mut rng)
                    .expect("valid answers");
            match forger {
                Some((f, forgery)) if f == i => p.forging(forgery),
                _ => p,
            }
        })
        .collect();
    let hospital = Hospital::new(spec.clone(), 1).expect("valid study");
    cohort_core::testing::Network::new(hospital, patients, vec![H; n])
}

/// Runs a Shamir round (n = 7, t = 4) with patient `forger` (0-based) forging `forgery` and
/// checks that every patient, the forger included, gets the honest patients' exact result with
/// exactly the forger excluded as `invalid_proof`, as does the hospital.
fn forger_left_out_exactly(forger: usize, forgery: Forgery, seed: u64) {
    let n = 7;
    let spec = survey(n as u32, 4, true);
    let ans = answers(n, seed);
    let mut behaviour = vec![H; n];
    behaviour[forger] = Behaviour::Forge(forgery);
    let out = run_round_answers(&spec, &ans, &behaviour, seed + 10);
    let honest: Vec<usize> = (0..n).filter(|&i| i != forger).collect();
    let (count, sum) = heights(&ans, &honest);
    let excluded = vec![Exclusion {
        index: forger as u32 + 1,
        reason: Verdict::InvalidProof,
    }];
    let case = format!("{forgery:?} by {forger}");
    for i in 0..n {
        let r = out.results[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{case}: patient {i}: {:?}", out.abandoned[i]));
        assert_eq!(r.excluded, excluded, "{case}");
        assert_eq!(r.contributors.len(), n - 1, "{case}");
        assert!(!r.contributors.contains(&(forger as u32 + 1)), "{case}");
        assert_eq!(r.questionnaire.count, count, "{case}");
        let Some(QuestionStats::Number(h)) = r.questionnaire.questions.get("height") else {
            panic!("height stats")
        };
        assert!((h.sum - sum).abs() < 1e-6, "{case}: exact sum");
    }
    assert!(out.events.iter().any(|e| matches!(
        e,
        HospitalEvent::Completed(o) if o.excluded == excluded
    )));
}

#[test]
fn every_forgery_is_left_out_of_a_shamir_round_and_the_result_is_exact() {
    for (k, forgery) in Forgery::ALL.into_iter().enumerate() {
        forger_left_out_exactly(3, forgery, 10 + k as u64);
    }
}

#[test]
fn a_forgery_stops_an_additive_round_and_nothing_is_revealed() {
    let n = 4;
    for (k, forgery) in Forgery::ALL.into_iter().enumerate() {
        let spec = survey(n as u32, n as u32, true);
        let ans = answers(n, 30 + k as u64);
        let mut behaviour = vec![H; n];
        behaviour[1] = Behaviour::Forge(forgery);
        let out = run_round_answers(&spec, &ans, &behaviour, 40 + k as u64);
        let want = AbandonReason::ProofsFailed {
            excluded: vec![Exclusion {
                index: 2,
                reason: Verdict::InvalidProof,
            }],
        };
        for i in 0..n {
            assert!(out.results[i].is_none(), "{forgery:?}");
            assert_eq!(out.abandoned[i].as_ref(), Some(&want), "{forgery:?}");
        }
        // No partial sum was sent, so nothing about anyone's vector left the patients.
        assert!(
            !out.frames
                .iter()
                .any(|f| { f.wire.as_binary().is_some_and(|b| b.len() > 3 && b[3] == 3) })
        );
    }
}

#[test]
fn without_proofs_the_same_forgery_poisons_the_result() {
    let n = 5;
    let spec = survey(n as u32, n as u32, false);
    let ans = answers(n, 50);
    let mut behaviour = vec![H; n];
    behaviour[2] = Behaviour::Forge(Forgery::CountNotOne);
    let out = run_round_answers(&spec, &ans, &behaviour, 51);
    // The count entry says 50 for one patient: the aggregate no longer decodes consistently
    // (or, if it did, would count 54 patients): either way the forger decides the outcome.
    let poisoned = out.results[0]
        .as_ref()
        .map(|r| r.questionnaire.count != n as u64)
        .unwrap_or(true);
    assert!(poisoned);
    let spec = survey(n as u32, n as u32, false);
    behaviour[2] = Behaviour::Forge(Forgery::BadSquare);
    let out = run_round_answers(&spec, &ans, &behaviour, 52);
    let r = out.results[0].as_ref().expect("a bad square decodes");
    let Some(QuestionStats::Number(h)) = r.questionnaire.questions.get("height") else {
        panic!("height stats")
    };
    let all: Vec<usize> = (0..n).collect();
    let (_, sum) = heights(&ans, &all);
    assert!((h.sum - sum).abs() < 1e-6, "the mean is untouched…");
    assert!(
        r.excluded.is_empty(),
        "…and nothing is checked without proofs"
    );
    // …but the standard deviation is not the honest one: the forged x² entered the result.
    let honest = run_round_answers(&spec, &ans, &[H; 5], 52);
    let Some(QuestionStats::Number(hh)) = honest.results[0]
        .as_ref()
        .expect("an honest round completes")
        .questionnaire
        .questions
        .get("height")
    else {
        panic!("height stats")
    };
    let (forged, true_sd) = (h.stddev.expect("stddev"), hh.stddev.expect("stddev"));
    assert!(
        (forged - true_sd).abs() > 1e-9,
        "the forged square moved the standard deviation: {forged} vs {true_sd}"
    );
}

#[test]
fn honest_random_questionnaires_are_never_excluded() {
    for seed in 0..6u64 {
        let n = 5 + (seed % 3) as usize;
        let t = if seed % 2 == 0 { n } else { n - 1 };
        let spec = survey(n as u32, t as u32, true);
        let ans = answers(n, 60 + seed);
        let out = run_round_answers(&spec, &ans, &vec![H; n], 70 + seed);
        for r in &out.results {
            let r = r.as_ref().expect("completed");
            assert!(r.excluded.is_empty(), "seed {seed}");
            assert_eq!(r.contributors.len(), n);
        }
    }
}

/// Malformed proof messages from a patient are refused with an error, never a panic, and the
/// round goes on: a `verify` before the delivery, a `verify` with the wrong item length or
/// addressed to a non-member, a second `verify`, a `verdict` from a member that checks nobody or
/// about the wrong dealer.
#[test]
fn malformed_proof_messages_are_refused_and_the_round_goes_on() {
    use cohort_core::error::ProtocolError;
    use cohort_core::frame::ShareList;
    use cohort_core::message::{PatientToRelay, Verdict as VerdictMsg, Verify};
    use cohort_core::protocol::{PeerId, RoundPhase};

    let n = 4;
    let mut net = network(&survey(n as u32, n as u32, true), n, 80);
    let list = |len: usize, to: &[u32]| {
        let mut l = ShareList::with_capacity(len, to.len());
        for &t in to {
            l.push(t, &vec![9; len]);
        }
        l
    };
    let verify = |round: u64, checks: ShareList| PatientToRelay::Verify(Verify { round, checks });
    // Step until the hospital waits for verifier shares, refusing a verify sent too early.
    let mut early_refused = false;
    for _ in 0..100 {
        let phase = net.hospital.status().running.map(|r| (r.round, r.phase));
        if let Some((round, RoundPhase::AwaitingShares)) = phase
            && !early_refused
        {
            let r = net
                .hospital
                .handle(0, PeerId(0), verify(round, list(32, &[2])));
            assert!(matches!(r, Err(ProtocolError::WrongState { .. })), "{r:?}");
            early_refused = true;
        }
        if let Some((_, RoundPhase::AwaitingVerify)) = phase {
            break;
        }
        net.patients_to_hospital();
        net.hospital_outputs();
        net.deliver();
    }
    assert!(early_refused);
    let round = net.hospital.status().running.expect("running").round;
    // Wrong item length, an entry about a non-member, and an entry that is not four field
    // elements (the hospital adds entries up: it refuses one it cannot read).
    let r = net
        .hospital
        .handle(0, PeerId(0), verify(round, list(31, &[2])));
    assert_eq!(r, Err(ProtocolError::BadShares));
    let r = net
        .hospital
        .handle(0, PeerId(0), verify(round, list(32, &[9])));
    assert_eq!(r, Err(ProtocolError::BadShares));
    let mut not_elements = ShareList::with_capacity(32, 1);
    not_elements.push(2, &[0xFF; 32]);
    let r = net
        .hospital
        .handle(0, PeerId(0), verify(round, not_elements));
    assert_eq!(r, Err(ProtocolError::BadShares));
    // A verdict before the checks, about anyone.
    let verdict = PatientToRelay::Verdict(VerdictMsg {
        round,
        dealer: 3,
        verdict: Verdict::Valid,
        tags: list(8, &[1, 3, 4]),
    });
    let r = net.hospital.handle(0, PeerId(1), verdict);
    assert!(matches!(r, Err(ProtocolError::WrongState { .. })), "{r:?}");
    // The honest round still completes, exactly, with no one excluded.
    net.run();
    let completed = net.hospital_events.iter().any(|e| {
        matches!(e, HospitalEvent::Completed(o) if o.excluded.is_empty() && o.contributors.len() == n)
    });
    assert!(completed);
}

/// A relay that changes the verdicts it forwards cannot make a patient accept a contributor set
/// its checkers did not give. The patients trust a verdict only through the checkers' verdict
/// tags, whose sum (mod 2^64) the relay forwards: hiding a forger's exclusion, excluding an
/// honest patient or changing the sum is refused (`ForgedVerdicts`). What the relay can do is
/// what it could always do, withhold: drop a verdict (its tag taken out of the sum, the proof
/// listed as having no verdict) — the dealer is then left out as `not_verified`, and doing so
/// at one patient only leaves that patient with another contributor set than the others, so no
/// result comes out.
/// The verdict tag for `to` that the checker of `dealer` sent up, from the recorded frames.
fn tag_sent(frames: &[cohort_core::testing::Frame], dealer: u32, to: u32) -> u64 {
    use cohort_core::message::PatientToRelay;
    frames
        .iter()
        .filter(|f| f.dir == cohort_core::testing::Dir::Up)
        .find_map(|f| match PatientToRelay::decode_wire(&f.wire) {
            Ok(PatientToRelay::Verdict(v)) if v.dealer == dealer => v
                .tags
                .iter()
                .find(|(t, _)| *t == to)
                .map(|(_, b)| u64::from_le_bytes(b.try_into().expect("8 bytes"))),
            _ => None,
        })
        .expect("the checker sent its verdict")
}

#[test]
fn a_relay_cannot_forge_or_withhold_verdicts_unnoticed() {
    use cohort_core::error::ProtocolError;
    use cohort_core::frame::ShareList;
    use cohort_core::message::RelayToPatient;
    use cohort_core::proof::NO_VERDICT;
    use cohort_core::protocol::PatientEvent;

    let n = 5;
    let forger = 4; // roster index 5: its proof fails, and the checkers say so
    for attack in [
        "hide_exclusion",
        "exclude_honest",
        "tamper_tag",
        "withhold",
        "odd_code",
    ] {
        let mut net = network_forging(
            &survey(n as u32, 3, true),
            n,
            90,
            Some((forger, Forgery::OutOfRange)),
        );
        let mut refusals: Vec<(usize, ProtocolError)> = Vec::new();
        let mut attacked = 0;
        net.run_with(|net| {
            let now = net.now_ms;
            for (i, inbox) in net.inbox.iter_mut().enumerate() {
                for msg in inbox.drain(..) {
                    let msg = match msg {
                        RelayToPatient::Verdicts(mut v) => {
                            let mut listed = ShareList::with_capacity(1, 4);
                            for (dealer, code) in v.listed.iter() {
                                if !(attack == "hide_exclusion" && dealer == forger as u32 + 1) {
                                    listed.push(dealer, code);
                                }
                            }
                            match attack {
                                "exclude_honest" => {
                                    let mut l = ShareList::with_capacity(1, 4);
                                    l.push(1, &[Verdict::InvalidProof.code()]);
                                    for (d, c) in listed.iter() {
                                        l.push(d, c);
                                    }
                                    listed = l;
                                }
                                "tamper_tag" => v.tag ^= 1,
                                // A byte that is no verdict, about the proof this patient
                                // checked itself (no tag of it in the sum to give it away).
                                "odd_code" => {
                                    let checkee = if i == 0 { n as u32 } else { i as u32 };
                                    let mut entries: Vec<(u32, u8)> = listed
                                        .iter()
                                        .filter(|(d, _)| *d != checkee)
                                        .map(|(d, c)| (d, c[0]))
                                        .collect();
                                    entries.push((checkee, 0x42));
                                    entries.sort_unstable();
                                    let mut l = ShareList::with_capacity(1, 4);
                                    for (d, c) in entries {
                                        l.push(d, &[c]);
                                    }
                                    listed = l;
                                }
                                // The relay knows each tag it added up: it can take one out
                                // again (patient 0 only), as if that verdict never came.
                                "withhold" if i == 0 => {
                                    let mut l = ShareList::with_capacity(1, 4);
                                    l.push(2, &[NO_VERDICT]);
                                    for (d, c) in listed.iter() {
                                        l.push(d, c);
                                    }
                                    listed = l;
                                    v.tag = v.tag.wrapping_sub(tag_sent(&net.frames, 2, 1));
                                }
                                _ => {}
                            }
                            v.listed = listed;
                            attacked += 1;
                            RelayToPatient::Verdicts(v)
                        }
                        m => m,
                    };
                    if let Err(e) = net.patients[i].handle(now, msg) {
                        refusals.push((i, e));
                    }
                }
            }
        });
        assert!(
            attacked > 0,
            "{attack}: the verdicts went through the attack"
        );
        let completed = |net: &cohort_core::testing::Network<cohort_core::protocol::Patient>,
                         i: usize| {
            net.events[i]
                .iter()
                .any(|e| matches!(e, PatientEvent::Completed(_)))
        };
        let honest: Vec<usize> = (0..n).filter(|&i| i != forger).collect();
        match attack {
            "withhold" => {
                assert!(!completed(&net, 0), "patient 0 accepted no result");
            }
            _ => {
                for &i in &honest {
                    assert!(
                        refusals
                            .iter()
                            .any(|(j, e)| *j == i && *e == ProtocolError::ForgedVerdicts),
                        "{attack}: patient {i} refused the verdicts: {refusals:?}"
                    );
                    assert!(!completed(&net, i), "{attack}: patient {i} took no result");
                }
            }
        }
        assert!(
            !net.hospital_events
                .iter()
                .any(|e| matches!(e, HospitalEvent::Completed(_))),
            "{attack}: no result"
        );
    }
}

/// A relay that changes the verifier entries it adds up or forwards (here: shifting one element
/// of every sum it sends a checker in an additive round, or of one entry per proof in a Shamir
/// round, which is how a relay colluding with a forger would try to move a
/// failing check onto a passing one) is caught by the entries' tags, which it cannot adjust
/// without the check seed's MAC key: every proof is then `not_verified` — the forger's is not
/// accepted, and no honest patient is blamed with `invalid_proof`.
#[test]
fn a_relay_that_changes_verifier_entries_gets_no_proof_accepted() {
    use cohort_core::field::Fe;
    use cohort_core::frame::ShareList;
    use cohort_core::message::RelayToPatient;
    use cohort_core::proof::read_entry;

    let n = 5;
    let forger = 2;
    // Additive (t = n): the relay changes the one sum each checker gets. Shamir (t = 3): it
    // changes the first of the entries each checker gets.
    for (t, shift) in [(n, 1u64), (n, 2), (n, 1 << 40), (3, 1), (3, 1 << 40)] {
        let mut net = network_forging(
            &survey(n as u32, t as u32, true),
            n,
            95,
            Some((forger, Forgery::BadSquare)),
        );
        let mut changed = 0;
        net.run_with(|net| {
            for inbox in net.inbox.iter_mut() {
                for msg in inbox.iter_mut() {
                    if let RelayToPatient::Checks(c) = msg {
                        let mut list = ShareList::with_capacity(c.checks.sealed_len(), 4);
                        for (k, (tag, bytes)) in c.checks.iter().enumerate() {
                            let mut e = read_entry(bytes).expect("an entry or a sum of them");
                            if k == 0 {
                                e[2] += Fe::new(shift);
                                changed += 1;
                            }
                            let out: Vec<u8> = e.iter().flat_map(|x| x.to_le_bytes()).collect();
                            list.push(tag, &out);
                        }
                        c.checks = list;
                    }
                }
            }
            net.deliver();
        });
        let case = format!("t = {t}, shift {shift}");
        assert_eq!(
            changed, n,
            "{case}: every proof's entries went through the attack"
        );
        let reason = net.hospital_events.iter().find_map(|e| match e {
            HospitalEvent::Abandoned { reason, .. } => Some(reason.clone()),
            _ => None,
        });
        let Some(AbandonReason::ProofsFailed { excluded }) = reason else {
            panic!("{case}: the round stops on its proofs: {reason:?}")
        };
        assert_eq!(excluded.len(), n, "{case}: no proof accepted");
        assert!(
            excluded.iter().all(|e| e.reason == Verdict::NotVerified),
            "{case}: nobody blamed: {excluded:?}"
        );
    }
}

/// The proven vector of patient `answers` for `spec`, dealt by roster index `me` among every
/// member (1..=n) with the real [`proof::deal`], changed by the dealing forgery `forgery` as a
/// forging `Patient` changes it, and received by every other member with [`proof::receive`].
/// Returns the setup, the honest proven vector, the forged deal's own share, and what each
/// recipient holds, by roster index.
///
/// [`proof::deal`]: cohort_core::proof::deal
/// [`proof::receive`]: cohort_core::proof::receive
#[allow(clippy::type_complexity)]
fn dealt_with(
    spec: &StudySpec,
    answers: &Answers,
    me: u32,
    forgery: Forgery,
    seed: u64,
) -> (
    cohort_core::proof::ProofSetup,
    Vec<cohort_core::field::Fe>,
    Vec<cohort_core::field::Fe>,
    Vec<(u32, cohort_core::proof::Held)>,
) {
    use cohort_core::proof::{self, ProofSetup};
    use cohort_core::sharing::Scheme;
    let params = &spec.params;
    let n = params.size;
    let scheme = Scheme::new(n, params.threshold).expect("a scheme");
    let setup = ProofSetup::new(params).expect("a proof system");
    let stats = params
        .layout()
        .expect("a layout")
        .encode(answers)
        .expect("valid answers");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let proven = setup.prove(stats.as_slice(), &mut rng);
    let keyed: Vec<u32> = (1..=n).collect();
    let others: Vec<u32> = keyed.iter().copied().filter(|&k| k != me).collect();
    let leader = proof::after(&keyed, me, 1).expect("keyed");
    let mut deal = proof::deal(
        scheme,
        &proven,
        setup.stats_len(),
        me,
        &others,
        leader,
        &mut rng,
    );
    let entry = Forgery::dealing_entry(params);
    assert!(forgery.tamper(&mut deal, entry, &keyed, me), "{forgery:?}");
    let held = deal
        .payloads
        .iter()
        .map(|(j, payload)| {
            let correction = deal
                .correction
                .as_ref()
                .filter(|(to, _)| to == j)
                .map(|(_, c)| c.as_slice());
            let h = proof::receive(scheme, &setup, payload, correction).expect("well formed");
            (*j, h)
        })
        .collect();
    let own = deal.own.clone();
    (setup, proven, own, held)
}

/// **Shamir rounds: shares not on one polynomial.** A forger with modified code deals its
/// honest, honestly proven vector, but moves the share of one recipient (not its checker) off
/// the polynomial (`Forgery::InconsistentShares`: that share's `x` entry one higher). Any t
/// points of the others give the checked vector; t points that include the moved one give
/// another — a vector nobody checked. Without the checker's rule that *every* verifier's
/// folded share lie on one polynomial of degree t − 1, a checker looking at t points that miss
/// the moved one would find the proof valid, and the relay (colluding with the forger) could
/// then pick t partial sums that include the moved recipient's: the aggregate would move by
/// the Lagrange coefficient of that point, with nothing proven about it. This test shows it on
/// the real dealt shares: two t-subsets reconstruct different vectors, the checker's rule says
/// `invalid_proof`, and a check of t points alone would have passed.
#[test]
fn shares_off_one_polynomial_would_let_a_relay_pick_an_unchecked_vector() {
    use cohort_core::flp::ShareRole;
    use cohort_core::proof::{Folded, decide_points};
    use cohort_core::sharing::Scheme;

    let (n, t) = (7u32, 4u32);
    let spec = survey(n, t, true);
    let ans = answers(n as usize, 110);
    let me = 4;
    let (setup, proven, _, held) = dealt_with(
        &spec,
        &ans[me as usize - 1],
        me,
        Forgery::InconsistentShares,
        111,
    );
    let keyed: Vec<u32> = (1..=n).collect();
    let moved = Forgery::perturbed_recipient(&keyed, me).expect("a recipient");
    assert_eq!(moved, 7, "three places after the dealer");
    let checker = cohort_core::proof::checker_of(&keyed, &keyed, me).expect("a checker");
    assert_ne!(moved, checker.0, "the moved share is not the checker's");
    let share = |j: u32| -> &[cohort_core::field::Fe] {
        &held.iter().find(|(k, _)| *k == j).expect("held").1.proven
    };
    let scheme = Scheme::new(n, t).expect("Shamir");
    let without: Vec<u32> = vec![1, 2, 3, 5];
    let with: Vec<u32> = vec![1, 2, 3, moved];
    let reconstruct = |set: &[u32]| {
        let pts: Vec<(u32, &[cohort_core::field::Fe])> =
            set.iter().map(|&j| (j, share(j))).collect();
        scheme.reconstruct(&pts).expect("t points")
    };
    let a = reconstruct(&without);
    let b = reconstruct(&with);
    assert_eq!(
        a, proven,
        "t points without the moved one: the proven vector"
    );
    assert_ne!(b, proven, "t points with it: another vector");
    let entry = Forgery::dealing_entry(&spec.params);
    let differs: Vec<usize> = (0..proven.len()).filter(|&i| a[i] != b[i]).collect();
    assert_eq!(differs, vec![entry], "only the x entry moved");

    // The checker's query, from a check seed the forger never sees.
    let rand = setup.check_rand(&[7u8; cohort_core::proof::CHECK_SEED_LEN]);
    let folded = |j: u32| {
        Folded::of(
            &setup.verify_share(share(j), ShareRole::Shamir, &rand),
            &rand,
        )
    };
    let verifiers: Vec<u32> = keyed.iter().copied().filter(|&j| j != me).collect();
    let points =
        |set: &[u32]| -> Vec<(u32, Folded)> { set.iter().map(|&j| (j, folded(j))).collect() };
    // The rule: every verifier's point on one polynomial. The forger is caught.
    assert_eq!(
        decide_points(t, &verifiers, &points(&verifiers)),
        Verdict::InvalidProof
    );
    // Without it, t points that miss the moved one pass…
    assert_eq!(
        decide_points(t, &without, &points(&without)),
        Verdict::Valid
    );
    // …while the vector of t points that include it is not the one that was checked.
    assert_eq!(
        decide_points(t, &with, &points(&with)),
        Verdict::InvalidProof
    );
}

/// **Shamir rounds: shares not on one polynomial**, against the real `Patient`s and `Hospital`:
/// a forger dealing inconsistent shares of its honest vector (see
/// [`shares_off_one_polynomial_would_let_a_relay_pick_an_unchecked_vector`]) is left out with
/// `invalid_proof` (its checker finds the verifier shares off one polynomial), wherever it
/// sits in the roster, and the result is exact over the honest patients, none of whom is
/// excluded. The same forgery in an additive round does nothing (there is no polynomial: the
/// forger deals honestly) and nobody is excluded.
#[test]
fn inconsistent_shamir_shares_are_left_out_and_the_result_is_exact() {
    for (k, forger) in [3usize, 0, 6].into_iter().enumerate() {
        forger_left_out_exactly(forger, Forgery::InconsistentShares, 120 + k as u64);
    }
    // In an additive round the forgery does not apply: an honest round.
    let n = 4;
    let spec = survey(n as u32, n as u32, true);
    let ans = answers(n, 125);
    let mut behaviour = vec![H; n];
    behaviour[1] = Behaviour::Forge(Forgery::InconsistentShares);
    let out = run_round_answers(&spec, &ans, &behaviour, 126);
    for r in &out.results {
        let r = r.as_ref().expect("completed");
        assert!(r.excluded.is_empty());
        assert_eq!(r.contributors.len(), n);
    }
}

/// **Additive rounds: a garbage correction.** A forger deals its honest, honestly proven vector
/// but sends its leader a correction that is not `proven − Σ Y` (`Forgery::BadCorrection`: the
/// `x` entry one higher), so that the shares add up to a vector with `x` moved and the
/// aggregate would move with it. The proof is checked on the shares *including* the
/// correction, so the checked vector is exactly the one that would enter the partial sums: it
/// is invalid (its `x` no longer matches its square and bits), the forger is excluded with
/// `invalid_proof`, the round is abandoned (`ProofsFailed`) and no partial sum is sent. Shown
/// on the real dealt shares (they add up to the moved vector, and the checker's combined
/// verifier share rejects it) and with the real `Patient`s and `Hospital`, for a forger whose
/// leader is the next member and one whose leader wraps around to roster index 1. No honest
/// patient is excluded. The same forgery in a Shamir round does nothing (no correction).
#[test]
fn a_bad_correction_stops_an_additive_round_and_nothing_is_revealed() {
    use cohort_core::field::Fe;
    use cohort_core::flp::ShareRole;
    use cohort_core::proof::{ENTRY_ELEMENTS, Folded, decide_sum};

    let n = 4usize;
    // The real dealt shares: they add up to the proven vector with x moved by one.
    let spec = survey(n as u32, n as u32, true);
    let ans = answers(n, 140);
    let me = 2;
    let (setup, proven, own, held) = dealt_with(
        &spec,
        &ans[me as usize - 1],
        me,
        Forgery::BadCorrection,
        141,
    );
    let l = setup.stats_len();
    let mut stats = own.clone();
    for (_, h) in &held {
        for (s, x) in stats.iter_mut().zip(&h.stats) {
            *s += *x;
        }
    }
    let entry = Forgery::dealing_entry(&spec.params);
    let mut moved = proven[..l].to_vec();
    moved[entry] += Fe::ONE;
    assert_eq!(stats, moved, "the shares add up to the moved statistics");
    let rand = setup.check_rand(&[9u8; cohort_core::proof::CHECK_SEED_LEN]);
    let mut sum = [Fe::ZERO; 3];
    for (j, h) in &held {
        let role = if *j == me + 1 {
            ShareRole::AdditiveLeader
        } else {
            ShareRole::AdditiveHelper
        };
        let f = Folded::of(&setup.verify_share(&h.proven, role, &rand), &rand);
        for (s, x) in sum.iter_mut().zip(f.0) {
            *s += x;
        }
    }
    let combined: [Fe; ENTRY_ELEMENTS] = [sum[0], sum[1], sum[2], Folded(sum).tag(&rand)];
    assert_eq!(decide_sum(&combined, &rand), Verdict::InvalidProof);

    // The real patients and hospital.
    for (k, forger) in [1usize, 3].into_iter().enumerate() {
        let ans = answers(n, 142 + k as u64);
        let mut behaviour = vec![H; n];
        behaviour[forger] = Behaviour::Forge(Forgery::BadCorrection);
        let out = run_round_answers(&spec, &ans, &behaviour, 144 + k as u64);
        let want = AbandonReason::ProofsFailed {
            excluded: vec![Exclusion {
                index: forger as u32 + 1,
                reason: Verdict::InvalidProof,
            }],
        };
        for i in 0..n {
            assert!(out.results[i].is_none(), "forger {forger}");
            assert_eq!(out.abandoned[i].as_ref(), Some(&want), "forger {forger}");
        }
        // No partial sum was sent, so nothing about anyone's vector left the patients.
        assert!(
            !out.frames
                .iter()
                .any(|f| { f.wire.as_binary().is_some_and(|b| b.len() > 3 && b[3] == 3) })
        );
    }
    // In a Shamir round the forgery does not apply (no correction): an honest round.
    let n = 5;
    let spec = survey(n as u32, 3, true);
    let ans = answers(n, 146);
    let mut behaviour = vec![H; n];
    behaviour[2] = Behaviour::Forge(Forgery::BadCorrection);
    let out = run_round_answers(&spec, &ans, &behaviour, 147);
    for r in &out.results {
        let r = r.as_ref().expect("completed");
        assert!(r.excluded.is_empty());
        assert_eq!(r.contributors.len(), n);
    }
}

/// A relay that hands a patient `checks`, `verdicts` or a `result` of another round (a replay,
/// or one meant for a later round) is refused with `WrongRound` and changes nothing: the same
/// patient then takes the real messages and completes the round exactly like the others.
#[test]
fn proof_messages_and_results_of_another_round_are_refused() {
    use cohort_core::error::ProtocolError;
    use cohort_core::message::RelayToPatient;
    use cohort_core::protocol::PatientEvent;

    let n = 5;
    let mut net = network(&survey(n as u32, 3, true), n, 97);
    let mut refused = Vec::new();
    net.run_with(|net| {
        let now = net.now_ms;
        for (i, inbox) in net.inbox.iter_mut().enumerate() {
            for msg in inbox.drain(..) {
                if i == 0 {
                    let mut other = msg.clone();
                    let kind = match &mut other {
                        RelayToPatient::Checks(c) => Some(("checks", &mut c.round)),
                        RelayToPatient::Verdicts(v) => Some(("verdicts", &mut v.round)),
                        RelayToPatient::Result(r) => Some(("result", &mut r.round)),
                        _ => None,
                    };
                    if let Some((kind, round)) = kind {
                        *round += 1;
                        let r = net.patients[0].handle(now, other);
                        assert!(
                            matches!(r, Err(ProtocolError::WrongRound { .. })),
                            "{kind}: {r:?}"
                        );
                        refused.push(kind);
                    }
                }
                net.patients[i].handle(now, msg).expect("the real message");
            }
        }
    });
    assert_eq!(refused, ["checks", "verdicts", "result"]);
    let results: Vec<_> = net
        .events
        .iter()
        .map(|evs| {
            evs.iter().find_map(|e| match e {
                PatientEvent::Completed(r) => Some(r.clone()),
                _ => None,
            })
        })
        .collect();
    assert!(
        results.iter().all(|r| r.is_some()),
        "every patient completed"
    );
    assert!(results.iter().all(|r| r == &results[0]), "one result");
}
