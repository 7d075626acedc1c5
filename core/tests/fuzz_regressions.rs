//! Inputs found by the fuzz targets in `core/fuzz` that once crashed, replayed through the
//! public API (the raw fuzzer inputs depend on the harness's layout; these do not).

use cohort_core::envelope::KeyPair;
use cohort_core::error::ProtocolError;
use cohort_core::message::{Join, Leave, PROTOCOL_VERSION, PatientToRelay, RelayToPatient};
use cohort_core::protocol::{Hospital, HospitalOutput, PeerId};
use cohort_core::study::StudySpec;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn join(key: &KeyPair) -> PatientToRelay {
    PatientToRelay::Join(Join {
        v: PROTOCOL_VERSION,
        study: "f".into(),
        commitment: cohort_core::commitment::commit(
            "f",
            &key.public(),
            &cohort_core::commitment::Nonce([0; 32]),
        ),
        invite: None,
    })
}

fn rosters_sent(h: &mut Hospital) -> Vec<u64> {
    let mut rounds = Vec::new();
    while let Some(out) = h.poll_output() {
        // One roster per recipient.
        if let HospitalOutput::Broadcast {
            to,
            msg: RelayToPatient::Roster(r),
        } = out
        {
            rounds.extend(to.iter().map(|_| r.roster.round));
        }
    }
    rounds
}

/// hospital_handle, crash-e4cfdd996cff623ede96c50b59b97a5fbb794304: a hospital whose first
/// round id is u64::MAX overflowed `next_round += 1` when the cohort filled ("attempt to add
/// with overflow" in `start_round`); minimised (-minimize_crash) to two joins on a 2-patient
/// study with first_round = u64::MAX. Round ids must not wrap (they would repeat), so the
/// hospital now refuses to start a round once they are exhausted.
#[test]
fn hospital_first_round_u64_max() {
    let spec: StudySpec = "id=f,size=2,min=0,max=1,decimals=0,buckets=1,shares_s=0,partials_s=0"
        .parse()
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (a, b) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
    let mut h = Hospital::new(spec.clone(), u64::MAX).unwrap();
    h.handle(0, PeerId(3), join(&a)).unwrap();
    assert!(matches!(
        h.handle(0, PeerId(1), join(&b)),
        Err(ProtocolError::WrongState { .. })
    ));
    assert_eq!(rosters_sent(&mut h), Vec::<u64>::new());
    assert!(
        PatientToRelay::decode("\u{11}").is_err(),
        "the fuzzer's third op"
    );
    h.handle(0, PeerId(5), PatientToRelay::Leave(Leave { v: 1 }))
        .unwrap();
    assert_eq!(h.status().running, None);

    // One below: the last round id is used once, then starting refuses.
    let mut h = Hospital::new(spec, u64::MAX - 1).unwrap();
    h.handle(0, PeerId(1), join(&a)).unwrap();
    h.handle(0, PeerId(2), join(&b)).unwrap();
    assert_eq!(rosters_sent(&mut h), vec![u64::MAX - 1, u64::MAX - 1]);
}

/// Same with an enrolment deadline: once round ids are exhausted the hospital must not keep
/// reporting a deadline in the past (its driver would call `handle_timeout` in a busy loop).
#[test]
fn hospital_out_of_round_ids_has_no_stale_deadline() {
    let spec: StudySpec = "id=f,size=3,min_cohort=2,min=0,max=1,decimals=0,buckets=1,enrol_s=1"
        .parse()
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (a, b) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
    let mut h = Hospital::new(spec, u64::MAX).unwrap();
    h.handle(0, PeerId(1), join(&a)).unwrap();
    h.handle(0, PeerId(2), join(&b)).unwrap();
    for _ in 0..4 {
        match h.poll_timeout() {
            Some(t) if t <= 5_000 => h.handle_timeout(5_000),
            _ => break,
        }
    }
    assert!(h.poll_timeout().is_none_or(|t| t > 5_000));
    assert_eq!(h.status().running, None);
}
