//! In-memory simulated network: drives N patients and a hospital through whole rounds without
//! sockets, with a virtual clock and optional dropouts.

use alloc::string::ToString;
use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::decimal::Decimal;
use crate::error::ProtocolError;
use crate::message::{AbandonReason, PatientToRelay, RelayToPatient, RoundResult};
use crate::protocol::{Hospital, HospitalEvent, HospitalOutput, Patient, PatientEvent, PeerId};
use crate::study::StudySpec;

/// How a simulated patient behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Runs the whole round.
    Honest,
    /// Disconnects before sending shares.
    VanishBeforeShares,
    /// Sends shares, then disconnects.
    VanishAfterShares,
}

pub(crate) struct Outcome {
    pub results: Vec<Option<RoundResult>>,
    pub abandoned: Vec<Option<AbandonReason>>,
    pub events: Vec<HospitalEvent>,
}

/// Runs one round of `spec` with these values and behaviours; returns what each patient saw.
pub(crate) fn run_round(
    spec: &StudySpec,
    values: &[Decimal],
    behaviour: &[Behaviour],
    seed: u64,
) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut hospital = Hospital::new(spec.clone(), 1).expect("valid spec");
    let mut now = 0u64;
    let mut patients: Vec<Patient> = values
        .iter()
        .map(|v| {
            Patient::new(
                now,
                &spec.params.id,
                *v,
                Some(spec.params.clone()),
                None,
                &mut rng,
            )
            .expect("valid value")
        })
        .collect();
    let n = patients.len();
    let mut gone = alloc::vec![false; n];
    let mut results: Vec<Option<RoundResult>> = alloc::vec![None; n];
    let mut abandoned: Vec<Option<AbandonReason>> = alloc::vec![None; n];
    let mut events = Vec::new();
    loop {
        let mut progressed = false;
        // Patients → hospital.
        for i in 0..n {
            while let Some(msg) = patients[i].poll_output() {
                if gone[i] {
                    continue;
                }
                progressed = true;
                let is_shares = matches!(msg, PatientToRelay::Shares(_));
                if is_shares && behaviour[i] == Behaviour::VanishBeforeShares {
                    gone[i] = true;
                    hospital.handle_disconnect(now, PeerId(i as u64));
                    continue;
                }
                if let Err(e) = hospital.handle(now, PeerId(i as u64), msg) {
                    // Only a message that crossed an abandonment on the wire may be refused.
                    let stale = matches!(
                        e,
                        ProtocolError::WrongState { .. } | ProtocolError::WrongRound { .. }
                    );
                    assert!(
                        stale && (abandoned[i].is_some() || patients[i].is_finished()),
                        "{e}"
                    );
                }
                if is_shares && behaviour[i] == Behaviour::VanishAfterShares {
                    gone[i] = true;
                    hospital.handle_disconnect(now, PeerId(i as u64));
                }
            }
            while let Some(e) = patients[i].poll_event() {
                match e {
                    PatientEvent::Completed(r) => results[i] = Some(r),
                    PatientEvent::Abandoned { reason, .. } => abandoned[i] = Some(reason),
                    PatientEvent::Refused(err) => panic!("patient {i} refused: {err}"),
                    _ => {}
                }
            }
        }
        // Hospital → patients.
        while let Some(out) = hospital.poll_output() {
            progressed = true;
            match out {
                HospitalOutput::Send { to, msg } => {
                    let i = to.0 as usize;
                    if gone[i] {
                        continue; // a real driver drops frames for a closed connection
                    }
                    // Through the wire format, as a real driver would.
                    let msg = RelayToPatient::decode_wire(&msg.encode()).expect("round trip");
                    patients[i]
                        .handle(now, msg)
                        .expect("patient accepts hospital messages");
                }
                HospitalOutput::Event(e) => events.push(e),
                HospitalOutput::Attached { .. } | HospitalOutput::Detached { .. } => {}
            }
        }
        if !progressed {
            match hospital.poll_timeout() {
                Some(t) => {
                    now = now.max(t);
                    hospital.handle_timeout(now);
                }
                None => break,
            }
        }
    }
    Outcome {
        results,
        abandoned,
        events,
    }
}

fn random_values(n: usize, rng: &mut ChaCha20Rng) -> Vec<Decimal> {
    (0..n)
        .map(|_| Decimal::new((rng.next_u64() % 3001) as i64, 1).expect("small"))
        .collect()
}

fn truth(values: &[Decimal]) -> (f64, f64) {
    let xs: Vec<f64> = values.iter().map(|v| v.to_f64()).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, libm::sqrt(var))
}

fn spec(n: usize, t: usize) -> StudySpec {
    alloc::format!("id=sim,size={n},threshold={t},min=0,max=300,decimals=1,buckets=10,min_cohort=3")
        .parse()
        .expect("valid")
}

fn assert_exact(r: &RoundResult, included: &[Decimal]) {
    let (mean, sd) = truth(included);
    assert_eq!(r.statistics.count, included.len() as u64);
    assert!(
        (r.statistics.mean - mean).abs() < 1e-9,
        "mean {} vs {}",
        r.statistics.mean,
        mean
    );
    assert!((r.statistics.stddev - sd).abs() < 1e-6);
    let sum: i64 = included
        .iter()
        .map(|v| v.to_scaled(1).expect("1 decimal"))
        .sum();
    assert!((r.statistics.sum - sum as f64 / 10.0).abs() < 1e-6);
    assert_eq!(
        r.statistics.histogram.iter().sum::<u64>(),
        included.len() as u64
    );
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
        let out = run_round(
            &spec(n, t),
            &values,
            &alloc::vec![Behaviour::Honest; n],
            seed,
        );
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
        // Up to n − t vanish after sharing, some others before sharing.
        let mut behaviour = alloc::vec![Behaviour::Honest; n];
        let after = (rng.next_u64() % (n as u64 - t as u64 + 1)) as usize;
        let before = (rng.next_u64() % 3) as usize;
        for b in behaviour.iter_mut().skip(1).take(after) {
            *b = Behaviour::VanishAfterShares;
        }
        for b in behaviour
            .iter_mut()
            .skip(1 + after)
            .take(before.min(n - t - after))
        {
            *b = Behaviour::VanishBeforeShares;
        }
        let out = run_round(&spec(n, t), &values, &behaviour, seed);
        let included: Vec<Decimal> = values
            .iter()
            .zip(&behaviour)
            .filter(|(_, b)| **b != Behaviour::VanishBeforeShares)
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
    let mut behaviour = alloc::vec![Behaviour::Honest; n];
    behaviour[1] = Behaviour::VanishAfterShares;
    behaviour[2] = Behaviour::VanishAfterShares;
    behaviour[3] = Behaviour::VanishAfterShares;
    let out = run_round(&spec(n, 3), &values, &behaviour, 7);
    for i in [0, 4] {
        assert!(out.results[i].is_none());
        assert_eq!(
            out.abandoned[i],
            Some(AbandonReason::TooFewPartialSums { got: 2, needed: 3 })
        );
    }
    // Additive: any vanished patient abandons the round.
    let mut behaviour = alloc::vec![Behaviour::Honest; 3];
    behaviour[2] = Behaviour::VanishAfterShares;
    let out = run_round(&spec(3, 3), &values[..3], &behaviour, 8);
    assert!(matches!(
        out.abandoned[0],
        Some(AbandonReason::TooFewPartialSums { got: 2, needed: 3 })
    ));
    // Fewer contributors than the minimum cohort: abandoned before any share is delivered.
    let mut behaviour = alloc::vec![Behaviour::Honest; 5];
    behaviour[0] = Behaviour::VanishBeforeShares;
    behaviour[1] = Behaviour::VanishBeforeShares;
    behaviour[2] = Behaviour::VanishBeforeShares;
    let out = run_round(&spec(5, 3), &values, &behaviour, 9);
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
    let out = run_round(&spec(n, n), &values, &alloc::vec![Behaviour::Honest; n], 11);
    let transcript = alloc::format!("{:?}", out.events);
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
