//! Core's tests that also run on wasm32 (`wasm-pack test --node core`, and in headless
//! Chromium with `WASM_BINDGEN_USE_BROWSER=1 wasm-pack test --headless --chrome core`), and
//! natively under `cargo test`: whole rounds, sealing, value checks and the committed test
//! vectors (embedded with `include_str!`), with the same code as the native tests.

mod support;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test;

use cohort_core::decimal::Decimal;
use cohort_core::encoding::{check_value, encode};
use cohort_core::envelope::{Binding, KeyPair, PublicKey};
use cohort_core::error::{SealError, ValueError};
use cohort_core::field::Fe;
use cohort_core::message::AbandonReason;
use cohort_core::study::StudyParams;
use cohort_core::testing::{Behaviour, check_round};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::vectors::{GOOD, check_bad_messages, check_bad_studies, check_bad_values};

use Behaviour::{Honest as H, VanishAfterShares as A, VanishBeforeShares as B};

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn round_3_additive() {
    check_round(3, 3, &[H, H, H], 31, None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn round_3_additive_dropout_is_abandoned() {
    let reason = AbandonReason::TooFewPartialSums { got: 2, needed: 3 };
    check_round(3, 3, &[H, H, A], 32, Some(reason));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn round_5_shamir_3_of_5_survives_a_dropout() {
    // With validity proofs each proof needs t verifier shares besides its dealer's, so a
    // Shamir round keeps going with n − t − 1 dropouts; the dropout is no contributor, and its
    // checkee (member 1) is checked by the member after it instead.
    check_round(5, 3, &[H, A, H, H, H], 33, None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn round_10_additive() {
    check_round(10, 10, &[H; 10], 34, None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn round_10_shamir_with_dropouts() {
    // 6-of-10: two vanish after sharing, one before. With validity proofs all three are left out
    // (a contributor must stay to check the others); their checkees are checked by the next
    // member but one: seven values remain, enough for t = 6.
    check_round(10, 6, &[H, A, H, H, B, H, A, H, H, H], 35, None);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn round_10_shamir_too_many_dropouts_is_abandoned() {
    // 6-of-10 with five gone after sharing: only five partial sums can arrive.
    let reason = AbandonReason::TooFewPartialSums { got: 5, needed: 6 };
    check_round(10, 6, &[H, A, A, H, A, H, A, H, A, H], 36, Some(reason));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn sealing_round_trip_and_refusals() {
    let mut rng = ChaCha20Rng::seed_from_u64(40);
    let (a, b, c) = (
        KeyPair::generate(&mut rng),
        KeyPair::generate(&mut rng),
        KeyPair::generate(&mut rng),
    );
    let (ka, kb) = (a.public(), b.public());
    let to_b = Binding {
        study: "s",
        round: 1,
        from: 1,
        to: 2,
        from_key: &ka,
        to_key: &kb,
    };
    let share: Vec<Fe> = (0..13).map(|i| Fe::new(i * 1_000_003)).collect();
    let sealed = a.agree(&kb).unwrap().direction_key(&to_b).seal(&share);
    let opener = b.agree(&ka).unwrap().direction_key(&to_b);
    assert_eq!(opener.open(&sealed, share.len()).unwrap(), share);
    for bit in [0, 7, 8 * sealed.len() / 2, 8 * sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(opener.open(&bad, share.len()), Err(SealError::OpenFailed));
    }
    assert_eq!(
        opener.open(&sealed, share.len() - 1),
        Err(SealError::BadLength)
    );
    let back = Binding {
        from: 2,
        to: 1,
        from_key: &kb,
        to_key: &ka,
        ..to_b
    };
    let wrong_way = b.agree(&ka).unwrap().direction_key(&back);
    assert_eq!(wrong_way.open(&sealed, 13), Err(SealError::OpenFailed));
    let eve = c.agree(&ka).unwrap().direction_key(&to_b);
    assert_eq!(eve.open(&sealed, 13), Err(SealError::OpenFailed));
    assert_eq!(a.agree(&PublicKey([0; 32])).err(), Some(SealError::WeakKey));
    let seed = [9u8; 32];
    let sealed = a.agree(&kb).unwrap().direction_key(&to_b).seal_bytes(&seed);
    assert_eq!(&opener.open_bytes(&sealed, 32).unwrap()[..], &seed);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn value_checks() {
    let p = StudyParams::demo();
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    assert_eq!(check_value(&p, &d("172.5")), Ok(1725));
    assert_eq!(check_value(&p, &d("300")), Ok(3000));
    assert_eq!(check_value(&p, &d("0")), Ok(0));
    assert_eq!(check_value(&p, &d("300.1")), Err(ValueError::OutOfRange));
    assert_eq!(check_value(&p, &d("-0.1")), Err(ValueError::OutOfRange));
    assert_eq!(
        check_value(&p, &d("170.25")),
        Err(ValueError::TooManyDecimals { allowed: 1 })
    );
    assert_eq!("1e3".parse::<Decimal>(), Err(ValueError::Malformed));
    let v = encode(&p, &d("172.5")).unwrap();
    assert_eq!(
        v.as_slice()[..3],
        [Fe::ONE, Fe::new(1725), Fe::new(1725 * 1725)]
    );
    assert_eq!(format!("{v:?}"), "EncodedValue(..)");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn good_vectors_recompute_exactly() {
    for g in GOOD {
        assert!(!g.committed.is_empty(), "{} is empty", g.name);
        (g.check)(g.committed);
        assert!((g.generate)() == g.committed, "{} differs", g.name);
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn bad_vectors_are_refused() {
    check_bad_messages(support::vectors::BAD_MESSAGES);
    check_bad_values(support::vectors::BAD_VALUES);
    check_bad_studies(support::vectors::BAD_STUDIES);
}
