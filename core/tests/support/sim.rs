//! A small in-memory network over the public API: N patients and a hospital, a virtual clock,
//! optional dropouts, every message through its wire encoding. Shared by the native vector
//! tests and the wasm tests, so both run exactly the same code paths.

use cohort_core::decimal::Decimal;
use cohort_core::message::{AbandonReason, PatientToRelay, RelayToPatient, RoundResult, Wire};
use cohort_core::protocol::{
    Hospital, HospitalEvent, HospitalOutput, Patient, PatientEvent, PeerId,
};
use cohort_core::study::StudySpec;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// How a simulated patient behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Runs the whole round.
    Honest,
    /// Disconnects instead of sending its shares.
    VanishBeforeShares,
    /// Sends its shares, then disconnects.
    VanishAfterShares,
}

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Patient to relay.
    Up,
    /// Relay to patient.
    Down,
}

/// One message on the simulated wire, in its encoded form.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) dir: Dir,
    pub(crate) peer: u64,
    pub(crate) now_ms: u64,
    pub(crate) wire: Wire,
}

/// What a round produced.
pub(crate) struct Outcome {
    /// The result each patient saw, if any.
    pub(crate) results: Vec<Option<RoundResult>>,
    /// The abandonment each patient saw, if any.
    pub(crate) abandoned: Vec<Option<AbandonReason>>,
    /// The safety code each patient showed, if it got a roster.
    pub(crate) safety_codes: Vec<Option<String>>,
    /// The hospital's events.
    pub(crate) events: Vec<HospitalEvent>,
    /// Every frame, in order.
    pub(crate) frames: Vec<Frame>,
}

/// Runs one round of `spec` with these values and behaviours. Patients draw their keys and
/// share randomness from one ChaCha20 generator seeded with `seed`, so a round is a pure
/// function of its arguments.
pub(crate) fn run_round(
    spec: &StudySpec,
    values: &[Decimal],
    behaviour: &[Behaviour],
    seed: u64,
) -> Outcome {
    assert_eq!(values.len(), behaviour.len());
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
                spec.invite.clone(),
                &mut rng,
            )
            .expect("valid value")
        })
        .collect();
    let n = patients.len();
    let mut gone = vec![false; n];
    let mut out = Outcome {
        results: vec![None; n],
        abandoned: vec![None; n],
        safety_codes: vec![None; n],
        events: Vec::new(),
        frames: Vec::new(),
    };
    loop {
        let mut progressed = false;
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
                let wire = msg.encode();
                let msg = PatientToRelay::decode_wire(&wire).expect("patient messages decode");
                out.frames.push(Frame {
                    dir: Dir::Up,
                    peer: i as u64,
                    now_ms: now,
                    wire,
                });
                if let Err(e) = hospital.handle(now, PeerId(i as u64), msg) {
                    // Only a message that crossed the end of the round on the wire may be refused.
                    assert!(
                        patients[i].is_finished(),
                        "hospital refused patient {i}: {e}"
                    );
                }
                if is_shares && behaviour[i] == Behaviour::VanishAfterShares {
                    gone[i] = true;
                    hospital.handle_disconnect(now, PeerId(i as u64));
                }
            }
            while let Some(e) = patients[i].poll_event() {
                match e {
                    PatientEvent::Completed(r) => out.results[i] = Some(r),
                    PatientEvent::Abandoned { reason, .. } => out.abandoned[i] = Some(reason),
                    PatientEvent::RosterFrozen { safety_code, .. } => {
                        out.safety_codes[i] = Some(safety_code.as_str().to_owned())
                    }
                    PatientEvent::Refused(err) => panic!("patient {i} refused: {err}"),
                    _ => {}
                }
            }
        }
        while let Some(o) = hospital.poll_output() {
            progressed = true;
            match o {
                HospitalOutput::Send { to, msg } => {
                    let i = to.0 as usize;
                    if gone[i] {
                        continue; // a real driver drops frames for a closed connection
                    }
                    let wire = msg.encode();
                    let msg = RelayToPatient::decode_wire(&wire).expect("relay messages decode");
                    out.frames.push(Frame {
                        dir: Dir::Down,
                        peer: to.0,
                        now_ms: now,
                        wire,
                    });
                    patients[i]
                        .handle(now, msg)
                        .expect("patient accepts hospital messages");
                }
                HospitalOutput::Event(e) => out.events.push(e),
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
    out
}

/// A study in flag form with `n` patients, threshold `t` and a minimum cohort of `min_cohort`.
pub(crate) fn spec(n: usize, t: usize, min_cohort: usize) -> StudySpec {
    format!(
        "id=sim,size={n},threshold={t},min=0,max=300,decimals=1,buckets=10,min_cohort={min_cohort}"
    )
    .parse()
    .expect("valid study")
}

/// Values `0.0..=300.0` with one decimal from a seeded generator.
pub(crate) fn values(n: usize, seed: u64) -> Vec<Decimal> {
    use rand_core::Rng;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| Decimal::new((rng.next_u64() % 3001) as i64, 1).expect("small"))
        .collect()
}

/// Checks a result against the values it should include, exactly where exact is possible.
pub(crate) fn assert_exact(r: &RoundResult, included: &[Decimal]) {
    let xs: Vec<f64> = included.iter().map(|v| v.to_f64()).collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    assert_eq!(r.statistics.count, included.len() as u64);
    assert!((r.statistics.mean - mean).abs() < 1e-9, "mean");
    assert!((r.statistics.stddev - sd).abs() < 1e-6, "stddev");
    let sum: i64 = included
        .iter()
        .map(|v| v.to_scaled(1).expect("1 decimal"))
        .sum();
    assert!((r.statistics.sum - sum as f64 / 10.0).abs() < 1e-6, "sum");
    let mut hist = vec![0u64; 10];
    for v in included {
        let x = v.to_scaled(1).expect("1 decimal") as usize;
        hist[(x * 10 / 3000).min(9)] += 1;
    }
    assert_eq!(r.statistics.histogram, hist);
}

/// Runs a round and checks it: every honest patient sees the same exact result, or (when
/// `expect_abandon` is given) every live patient sees that abandonment and nothing is revealed.
pub(crate) fn check_round(
    n: usize,
    t: usize,
    behaviour: &[Behaviour],
    seed: u64,
    expect_abandon: Option<AbandonReason>,
) -> Outcome {
    let spec = spec(n, t, 3.min(n));
    let vals = values(n, seed);
    let out = run_round(&spec, &vals, behaviour, seed);
    let honest: Vec<usize> = (0..n)
        .filter(|&i| behaviour[i] == Behaviour::Honest)
        .collect();
    let codes: Vec<&String> = out.safety_codes.iter().flatten().collect();
    assert_eq!(codes.len(), n, "every patient saw the roster");
    assert!(codes.iter().all(|c| *c == codes[0]), "one safety code");
    match expect_abandon {
        None => {
            let included: Vec<Decimal> = vals
                .iter()
                .zip(behaviour)
                .filter(|(_, b)| **b != Behaviour::VanishBeforeShares)
                .map(|(v, _)| *v)
                .collect();
            let first = out.results[honest[0]].clone().expect("round completed");
            assert_exact(&first, &included);
            assert_eq!(first.safety_code.as_str(), codes[0].as_str());
            for (r, b) in out.results.iter().zip(behaviour) {
                assert_eq!(r.is_some(), *b == Behaviour::Honest);
                if let Some(r) = r {
                    assert_eq!(r, &first, "every patient sees the same result");
                }
            }
            assert!(out.events.iter().any(
                |e| matches!(e, HospitalEvent::Completed(o) if o.statistics == first.statistics)
            ));
        }
        Some(reason) => {
            for &i in &honest {
                assert!(out.results[i].is_none());
                assert_eq!(out.abandoned[i].as_ref(), Some(&reason));
            }
            assert!(
                !out.events
                    .iter()
                    .any(|e| matches!(e, HospitalEvent::Completed(_)))
            );
            assert!(!out.frames.iter().any(|f| {
                f.wire
                    .as_text()
                    .is_some_and(|t| t.contains("\"type\":\"result\""))
            }));
        }
    }
    out
}
