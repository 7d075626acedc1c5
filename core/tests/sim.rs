//! Whole rounds over the simulated network (`cohort_core::testing`): additive and Shamir at
//! several sizes, dropouts within and beyond tolerance, and no value in clear in what the
//! hospital reports. (Moved from the crate's former in-module `sim` tests.)

use cohort_core::decimal::Decimal;
use cohort_core::message::AbandonReason;
use cohort_core::protocol::HospitalEvent;
use cohort_core::testing::{Behaviour, assert_exact, run_round, spec};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn random_values(n: usize, rng: &mut ChaCha20Rng) -> Vec<Decimal> {
    (0..n)
        .map(|_| Decimal::new((rng.next_u64() % 3001) as i64, 1).expect("small"))
        .collect()
}

#[test]
fn full_rounds_additive_and_shamir() {
    for (n, t, seed) in [
        (3usize, 3usize, 1u64),
        (10, 10, 2),
        (10, 6, 3),
        (100, 100, 4),
        (100, 60, 5),
    ] {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let values = random_values(n, &mut rng);
        let out = run_round(&spec(n, t, 3), &values, &vec![Behaviour::Honest; n], seed);
        let first = out.results[0].clone().expect("completed");
        assert_exact(&first, &values);
        for r in &out.results {
            assert_eq!(
                r.as_ref(),
                Some(&first),
                "every patient sees the same result"
            );
        }
        assert!(
            out.events.iter().any(
                |e| matches!(e, HospitalEvent::Completed(o) if o.statistics == first.statistics)
            )
        );
    }
}

#[test]
fn dropouts_within_tolerance_complete_exactly() {
    for seed in 0..12u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(100 + seed);
        let n = 10;
        let t = 6;
        let values = random_values(n, &mut rng);
        // Up to n − t − 1 vanish after sharing, some others before sharing (with validity
        // proofs each proof needs t verifier shares besides its dealer's: one dropout fewer than
        // without).
        let mut behaviour = vec![Behaviour::Honest; n];
        let after = (rng.next_u64() % (n as u64 - t as u64)) as usize;
        let before = (rng.next_u64() % 3) as usize;
        for b in behaviour.iter_mut().skip(1).take(after) {
            *b = Behaviour::VanishAfterShares;
        }
        for b in behaviour
            .iter_mut()
            .skip(1 + after)
            .take(before.min(n - t - 1 - after))
        {
            *b = Behaviour::VanishBeforeShares;
        }
        let spec = spec(n, t, 3);
        let out = run_round(&spec, &values, &behaviour, seed);
        let included: Vec<Decimal> = values
            .iter()
            .zip(cohort_core::testing::included(&spec, &behaviour))
            .filter(|(_, inc)| *inc)
            .map(|(v, _)| *v)
            .collect();
        let r = out.results[0]
            .clone()
            .unwrap_or_else(|| panic!("seed {seed}: {:?}", out.abandoned[0]));
        assert_exact(&r, &included);
        for (i, b) in behaviour.iter().enumerate() {
            assert_eq!(out.results[i].is_some(), *b == Behaviour::Honest);
        }
    }
}

#[test]
fn too_many_dropouts_abandon_with_reason() {
    let n = 5;
    let values = random_values(n, &mut ChaCha20Rng::seed_from_u64(7));
    let mut behaviour = vec![Behaviour::Honest; n];
    behaviour[1] = Behaviour::VanishAfterShares;
    behaviour[2] = Behaviour::VanishAfterShares;
    behaviour[3] = Behaviour::VanishAfterShares;
    // Without proofs the three still count as contributors (their shares were delivered), and
    // the round lacks partial sums; with proofs (the default) a contributor must stay to check
    // the others, so only two contributors are left.
    let mut no_proofs = spec(n, 3, 3);
    no_proofs.params.proofs = false;
    let out = run_round(&no_proofs, &values, &behaviour, 7);
    for i in [0, 4] {
        assert!(out.results[i].is_none());
        assert_eq!(
            out.abandoned[i],
            Some(AbandonReason::TooFewPartialSums { got: 2, needed: 3 })
        );
    }
    let out = run_round(&spec(n, 3, 3), &values, &behaviour, 7);
    for i in [0, 4] {
        assert!(out.results[i].is_none());
        assert_eq!(
            out.abandoned[i],
            Some(AbandonReason::TooFewContributors { got: 2, needed: 3 })
        );
    }
    // Additive: any vanished patient abandons the round.
    let mut behaviour = vec![Behaviour::Honest; 3];
    behaviour[2] = Behaviour::VanishAfterShares;
    let out = run_round(&spec(3, 3, 3), &values[..3], &behaviour, 8);
    assert!(matches!(
        out.abandoned[0],
        Some(AbandonReason::TooFewPartialSums { got: 2, needed: 3 })
    ));
    // Fewer contributors than the minimum cohort: abandoned before any share is delivered.
    let mut behaviour = vec![Behaviour::Honest; 5];
    behaviour[0] = Behaviour::VanishBeforeShares;
    behaviour[1] = Behaviour::VanishBeforeShares;
    behaviour[2] = Behaviour::VanishBeforeShares;
    let out = run_round(&spec(5, 3, 3), &values, &behaviour, 9);
    assert_eq!(
        out.abandoned[4],
        Some(AbandonReason::TooFewContributors { got: 2, needed: 3 })
    );
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, HospitalEvent::SharesDelivered { .. }))
    );
}

#[test]
fn hospital_outputs_never_contain_values_in_clear() {
    // The hospital sees only sealed shares and partial sums; check its events (what the relay
    // stores and shows) for each patient's value, encoded value and x². The relay's own
    // end-to-end tests check every frame and log line.
    let n = 4;
    let values: Vec<Decimal> = ["123.4", "156.7", "189.1", "201.9"]
        .iter()
        .map(|s| s.parse().expect("ok"))
        .collect();
    let out = run_round(&spec(n, n, 3), &values, &vec![Behaviour::Honest; n], 11);
    let transcript = format!("{:?}", out.events);
    for v in &values {
        let x = v.to_scaled(1).expect("ok");
        for needle in [v.to_string(), x.to_string(), (x * x).to_string()] {
            assert!(
                !transcript.contains(&needle),
                "value {needle} in hospital events"
            );
        }
    }
}

/// A member whose shares never reach the relay but which stays connected (a slow device past
/// the shares deadline) is not a contributor: its value is left out, yet it holds shares of
/// everyone else's, checks their proofs and sends its partial sum. The round completes exactly
/// over the contributors, with or without validity proofs, additive or Shamir; in an additive
/// round its verifier shares and its partial sum are needed (it holds an n-of-n share of every
/// contributor's vector), in a Shamir round they are not used.
#[test]
fn a_live_member_whose_shares_never_arrive_is_left_out_and_the_round_completes() {
    use cohort_core::testing::{included, stays_connected};
    const H: Behaviour = Behaviour::Honest;
    const L: Behaviour = Behaviour::LateShares;
    let cases: [(usize, usize, Vec<Behaviour>); 5] = [
        (4, 4, vec![H, L, H, H]),
        (4, 4, vec![H, H, H, L]),
        (5, 5, vec![L, H, L, H, H]),
        (7, 4, vec![H, L, H, H, L, H, H]),
        (5, 3, vec![L, H, H, H, H]),
    ];
    for proofs in [true, false] {
        for (k, (n, t, behaviour)) in cases.iter().enumerate() {
            let off = if proofs { "" } else { ",proofs=off" };
            let spec: cohort_core::study::StudySpec = format!(
                "id=sim,size={n},threshold={t},min=0,max=300,decimals=1,buckets=10,min_cohort=2{off}"
            )
            .parse()
            .expect("valid study");
            let mut rng = ChaCha20Rng::seed_from_u64(300 + k as u64);
            let values = random_values(*n, &mut rng);
            let out = run_round(&spec, &values, behaviour, 400 + k as u64);
            let want: Vec<Decimal> = values
                .iter()
                .zip(included(&spec, behaviour))
                .filter(|(_, inc)| *inc)
                .map(|(v, _)| *v)
                .collect();
            for (i, b) in behaviour.iter().enumerate() {
                let r = out.results[i].as_ref();
                assert_eq!(
                    r.is_some(),
                    stays_connected(*b),
                    "proofs {proofs}, case {k}, patient {i}: {:?}",
                    out.abandoned[i]
                );
                if let Some(r) = r {
                    assert_exact(r, &want);
                    assert!(r.excluded.is_empty(), "nobody is blamed: {:?}", r.excluded);
                    assert_eq!(r.contributors.len(), want.len());
                }
            }
        }
    }
}
