//! Completeness and soundness of the FLP on the questionnaire circuit, with additive and Shamir
//! sharings of the input and the proof.

use alloc::vec;
use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::layout::QuestionShape::{Choice, Number};
use super::*;
use crate::sharing::Scheme;

fn rand_vec(n: usize, rng: &mut ChaCha20Rng) -> Vec<Fe> {
    (0..n).map(|_| Fe::random(rng)).collect()
}

/// Shares input and proof with `scheme`, queries every share-holder (Shamir: a random t of
/// them), combines and decides.
fn verify(
    circuit: &Circuit,
    input: &[Fe],
    proof: &[Fe],
    scheme: Scheme,
    rng: &mut ChaCha20Rng,
) -> bool {
    let xs = scheme.split(input, rng);
    let ps = scheme.split(proof, rng);
    let jr = rand_vec(circuit.joint_rand_len(), rng);
    let r = loop {
        let r = Fe::random(rng);
        if r.value() > 2 * circuit.gadget_calls() as u64 {
            break r;
        }
    };
    match scheme {
        Scheme::Additive { .. } => {
            let shares: Vec<VerifierShare> = xs
                .iter()
                .zip(&ps)
                .enumerate()
                .map(|(i, (x, p))| query(circuit, x, p, ShareRole::additive(i), r, &jr).unwrap())
                .collect();
            decide(&VerifierShare::combine_additive(&shares).unwrap())
        }
        Scheme::Shamir { n, t } => {
            let mut idx: Vec<u32> = (1..=n).collect();
            for i in (1..idx.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                idx.swap(i, j);
            }
            let shares: Vec<(u32, VerifierShare)> = idx[..t as usize]
                .iter()
                .map(|&j| {
                    let k = j as usize - 1;
                    (
                        j,
                        query(circuit, &xs[k], &ps[k], ShareRole::Shamir, r, &jr).unwrap(),
                    )
                })
                .collect();
            decide(&VerifierShare::combine_shamir(&shares).unwrap())
        }
    }
}

fn prove_rand(rng: &mut ChaCha20Rng) -> [Fe; 2] {
    [Fe::random(rng), Fe::random(rng)]
}

fn one_question() -> Layout {
    Layout::new(&[Number {
        optional: false,
        range: 3000,
        buckets: 10,
    }])
    .unwrap()
}

fn mixed() -> Layout {
    Layout::new(&[
        Number {
            optional: false,
            range: 3000,
            buckets: 10,
        },
        Number {
            optional: true,
            range: 1300,
            buckets: 13,
        },
        Choice {
            optional: false,
            options: 3,
        },
        Number {
            optional: true,
            range: 7,
            buckets: 3,
        },
        Choice {
            optional: true,
            options: 2,
        },
    ])
    .unwrap()
}

fn ten_questions() -> Layout {
    Layout::new(
        &[Number {
            optional: true,
            range: 3000,
            buckets: 10,
        }; 10],
    )
    .unwrap()
}

#[test]
fn layout_lengths_and_today_vector() {
    let l = one_question();
    assert_eq!(l.stats_len(), 13); // [1, x, x², h0..h9], today's vector
    assert_eq!(l.witness_len(), 36);
    let v = l.statistics(&[Some(1725)]).unwrap();
    assert_eq!(v[0], Fe::ONE);
    assert_eq!(v[1], Fe::new(1725));
    assert_eq!(v[2], Fe::new(1725 * 1725));
    assert_eq!(v[3 + 5], Fe::ONE);
    assert_eq!(l.circuit().gadget_calls(), 47);
    assert_eq!(ten_questions().circuit().gadget_calls(), 760);
    let m = mixed();
    // 1 + (12) + (1+2+13) + 3 + (1+2+3) + (1+2) = 41; pairs: (0,1) 6, (0,3) 6, (1,3) 6 = 18;
    // choice×number: 3·3·2 + 2·3·2 = 30.
    assert_eq!(m.stats_len(), 41 + 18 + 30);
    assert_eq!(m.witness_len(), 3 * (12 + 11 + 3));
    assert_eq!(Layout::new(&[]).err(), Some(FlpError::BadLayout));
    assert_eq!(
        Layout::new(&[Choice {
            optional: false,
            options: 21
        }])
        .err(),
        Some(FlpError::BadLayout)
    );
    assert_eq!(
        Layout::new(&[Number {
            optional: false,
            range: 0,
            buckets: 1
        }])
        .err(),
        Some(FlpError::BadLayout)
    );
}

#[test]
fn honest_proofs_accepted_additive_and_shamir() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for l in [one_question(), mixed()] {
        let c = l.circuit();
        for answers in [
            vec![Some(0u64), None, Some(2), None, None],
            vec![Some(3000), Some(1300), Some(0), Some(7), Some(1)],
            vec![Some(1725), Some(650), Some(1), Some(3), Some(0)],
        ] {
            let answers = &answers[..l.questions().len()];
            let input = witness(&l, &l.statistics(answers).unwrap()).unwrap();
            assert!(c.is_valid(&input));
            let proof = prove(&c, &input, prove_rand(&mut rng)).unwrap();
            for n in 2..=10 {
                assert!(verify(
                    &c,
                    &input,
                    &proof,
                    Scheme::new(n, n).unwrap(),
                    &mut rng
                ));
            }
            for (n, t) in [(3, 2), (5, 3), (10, 7)] {
                assert!(verify(
                    &c,
                    &input,
                    &proof,
                    Scheme::new(n, t).unwrap(),
                    &mut rng
                ));
            }
        }
    }
}

/// Every bucket boundary of a small range.
#[test]
fn every_value_of_a_small_range_is_accepted_and_nothing_beyond() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for (range, buckets) in [(7u64, 3u16), (10, 10), (5, 7), (1, 1)] {
        let l = Layout::new(&[Number {
            optional: false,
            range,
            buckets,
        }])
        .unwrap();
        let c = l.circuit();
        for x in 0..=range {
            let input = witness(&l, &l.statistics(&[Some(x)]).unwrap()).unwrap();
            assert!(c.is_valid(&input), "x = {x}");
            let proof = prove(&c, &input, prove_rand(&mut rng)).unwrap();
            assert!(verify(
                &c,
                &input,
                &proof,
                Scheme::new(3, 3).unwrap(),
                &mut rng
            ));
        }
        // Every (x, bucket) pair with x up to 2^bits and a wrong bucket is refused.
        for x in 0..(2 * range + 2) {
            for b in 0..usize::from(buckets) {
                let mut stats = l.statistics(&[Some(0)]).unwrap();
                stats[1] = Fe::new(x);
                stats[2] = Fe::new(x * x);
                for h in &mut stats[3..] {
                    *h = Fe::ZERO;
                }
                stats[3 + b] = Fe::ONE;
                let honest = x <= range
                    && b == ((x * u64::from(buckets) / range) as usize)
                        .min(usize::from(buckets) - 1);
                let input = witness(&l, &stats).unwrap();
                assert_eq!(c.is_valid(&input), honest, "x = {x}, bucket {b}");
            }
        }
    }
}

/// The invalid classes of issue 12, on a statistics vector of `mixed()` that is otherwise
/// consistent (pair products recomputed from the tampered factors).
fn invalid_vectors(l: &Layout) -> Vec<(&'static str, Vec<Fe>)> {
    let good = l
        .statistics(&[Some(1725), Some(650), Some(1), Some(3), Some(0)])
        .unwrap();
    // Entry positions in mixed(): count 0; q0 x 1, x² 2, h 3..13; q1 a 13, x 14, x² 15,
    // h 16..29; q2 o 29..32; q3 a 32, x 33, x² 34, h 35..38; q4 a 38, o 39..41.
    let fix = |mut v: Vec<Fe>| {
        for &(f, g, out) in &l.products {
            v[out] = f.map_or(Fe::ONE, |i| v[i]) * g.map_or(Fe::ONE, |i| v[i]);
        }
        v
    };
    let set = |pairs: &[(usize, Fe)], recompute: bool| {
        let mut v = good.clone();
        for &(i, x) in pairs {
            v[i] = x;
        }
        if recompute { fix(v) } else { v }
    };
    let f = Fe::new;
    let z = Fe::ZERO;
    let o = Fe::ONE;
    let products_at = l.products[0].2;
    vec![
        (
            "x above range",
            set(
                &[(1, f(3001)), (2, f(3001 * 3001)), (3 + 5, z), (12, o)],
                true,
            ),
        ),
        (
            "x negative",
            set(&[(1, -o), (2, o), (3 + 5, z), (3, o)], true),
        ),
        (
            "x not an integer",
            set(
                &[
                    (1, f(10).inverse()),
                    (2, f(100).inverse()),
                    (3 + 5, z),
                    (3, o),
                ],
                true,
            ),
        ),
        ("bad square", set(&[(2, f(1725 * 1725 + 1))], true)),
        ("two buckets", set(&[(3 + 6, o)], true)),
        (
            "bucket not matching x",
            set(&[(3 + 5, z), (3 + 6, o)], true),
        ),
        ("no bucket", set(&[(3 + 5, z)], true)),
        ("count 2", set(&[(0, f(2))], true)),
        ("count 0", set(&[(0, z)], true)),
        ("indicator 2", set(&[(13, f(2)), (16 + 2, o)], true)),
        (
            "skipped with nonzero x",
            set(&[(13, z), (14, f(5)), (15, f(25)), (16 + 2, z)], true),
        ),
        (
            "skipped with a bucket",
            set(&[(13, z), (14, z), (15, z)], true),
        ),
        (
            "answered with no bucket",
            set(&[(32, o), (35 + 1, z)], true),
        ),
        ("choice with two options", set(&[(29, o)], true)),
        ("choice with no option", set(&[(30, z)], true)),
        (
            "optional choice indicator 0 with option",
            set(&[(38, z)], true),
        ),
        ("choice option 2", set(&[(30, f(2)), (29, -o)], true)),
        (
            "wrong product",
            set(&[(products_at, good[products_at] + o)], false),
        ),
        (
            "wrong last product",
            set(&[(l.stats_len() - 1, good[l.stats_len() - 1] + o)], false),
        ),
    ]
}

/// The cheating prover's other simple move: keep the wire polynomials honest but replace the
/// gadget outputs `p(k)` of the failing calls by what the circuit wants (`c_k(v)`), keeping
/// `p(0)` and the other values (so `p ≠ f_0·f_1`).
fn patched_proof(c: &Circuit, input: &[Fe], rng: &mut ChaCha20Rng) -> Vec<Fe> {
    let mut proof = prove(c, input, prove_rand(rng)).unwrap();
    for (k, call) in c.calls.iter().enumerate() {
        proof[2 + k + 1] = call.c.eval(input, Fe::ONE);
    }
    proof
}

#[test]
fn every_invalid_class_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let l = mixed();
    let c = l.circuit();
    for (name, stats) in invalid_vectors(&l) {
        let input = witness(&l, &stats).unwrap();
        assert!(!c.is_valid(&input), "{name}: circuit accepts");
        let honest = prove(&c, &input, prove_rand(&mut rng)).unwrap();
        let patched = patched_proof(&c, &input, &mut rng);
        for scheme in [
            Scheme::new(2, 2).unwrap(),
            Scheme::new(7, 7).unwrap(),
            Scheme::new(5, 3).unwrap(),
        ] {
            assert!(
                !verify(&c, &input, &honest, scheme, &mut rng),
                "{name}: proof accepted"
            );
            assert!(
                !verify(&c, &input, &patched, scheme, &mut rng),
                "{name}: patched proof accepted"
            );
        }
    }
}

#[test]
fn one_question_classes_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let l = one_question();
    let c = l.circuit();
    let good = l.statistics(&[Some(3000)]).unwrap();
    let mut cases = Vec::new();
    let mut v = good.clone();
    v[1] = Fe::new(3001);
    v[2] = Fe::new(3001 * 3001);
    cases.push(v);
    let mut v = good.clone();
    v[2] += Fe::ONE;
    cases.push(v);
    let mut v = good.clone();
    v[3] = Fe::ONE;
    cases.push(v);
    let mut v = good.clone();
    v[0] = Fe::new(2);
    cases.push(v);
    for stats in cases {
        let input = witness(&l, &stats).unwrap();
        assert!(!c.is_valid(&input));
        let proof = prove(&c, &input, prove_rand(&mut rng)).unwrap();
        assert!(!verify(
            &c,
            &input,
            &proof,
            Scheme::new(3, 3).unwrap(),
            &mut rng
        ));
        let proof = patched_proof(&c, &input, &mut rng);
        assert!(!verify(
            &c,
            &input,
            &proof,
            Scheme::new(3, 3).unwrap(),
            &mut rng
        ));
    }
}

#[test]
fn a_valid_input_with_a_tampered_proof_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let l = mixed();
    let c = l.circuit();
    let input = witness(
        &l,
        &l.statistics(&[Some(1), Some(2), Some(0), None, None])
            .unwrap(),
    )
    .unwrap();
    let proof = prove(&c, &input, prove_rand(&mut rng)).unwrap();
    for i in 0..proof.len() {
        let mut bad = proof.clone();
        bad[i] += Fe::ONE;
        // Tampering the seed at 0 or p(0) changes p(r) or f_j(r) inconsistently.
        assert!(
            !verify(&c, &input, &bad, Scheme::new(2, 2).unwrap(), &mut rng),
            "entry {i}"
        );
    }
}

#[test]
fn query_errors_and_opaque_debug() {
    let l = one_question();
    let c = l.circuit();
    let input = witness(&l, &l.statistics(&[Some(5)]).unwrap()).unwrap();
    let proof = prove(&c, &input, [Fe::ONE, Fe::ONE]).unwrap();
    assert_eq!(proof.len(), c.proof_len());
    let jr = vec![Fe::ONE; c.joint_rand_len()];
    let m = c.gadget_calls() as u64;
    for r in [0, 1, m, 2 * m] {
        assert_eq!(
            query(
                &c,
                &input,
                &proof,
                ShareRole::AdditiveLeader,
                Fe::new(r),
                &jr
            )
            .err(),
            Some(FlpError::QueryRandNotAllowed)
        );
    }
    let ok = query(
        &c,
        &input,
        &proof,
        ShareRole::AdditiveLeader,
        Fe::new(2 * m + 1),
        &jr,
    )
    .unwrap();
    assert!(decide(&ok));
    assert_eq!(format!("{ok:?}"), "VerifierShare(..)");
    assert_eq!(
        query(
            &c,
            &input[1..],
            &proof,
            ShareRole::Shamir,
            Fe::new(1 << 40),
            &jr
        )
        .err(),
        Some(FlpError::InputLength)
    );
    assert_eq!(
        query(
            &c,
            &input,
            &proof[1..],
            ShareRole::Shamir,
            Fe::new(1 << 40),
            &jr
        )
        .err(),
        Some(FlpError::ProofLength)
    );
    assert_eq!(
        query(
            &c,
            &input,
            &proof,
            ShareRole::Shamir,
            Fe::new(1 << 40),
            &jr[1..]
        )
        .err(),
        Some(FlpError::JointRandLength)
    );
    assert_eq!(
        prove(&c, &input[1..], [Fe::ONE; 2]).err(),
        Some(FlpError::InputLength)
    );
    assert_eq!(
        VerifierShare::combine_additive(&[]).err(),
        Some(FlpError::NoShares)
    );
    assert_eq!(
        VerifierShare::combine_shamir(&[(1, ok), (1, ok)]).err(),
        Some(FlpError::BadShareIndex)
    );
    assert_eq!(witness(&l, &input).err(), Some(FlpError::VectorLength));
    let other = mixed().circuit();
    let point = QueryPoint::new(&other, Fe::new(1 << 40)).unwrap();
    assert_eq!(
        query_at(&c, &input, &proof, ShareRole::Shamir, &point, &jr).err(),
        Some(FlpError::QueryPointMismatch)
    );
    let point = QueryPoint::new(&c, Fe::new(1 << 40)).unwrap();
    assert_eq!(
        query_at(&c, &input, &proof, ShareRole::Shamir, &point, &jr),
        query(&c, &input, &proof, ShareRole::Shamir, Fe::new(1 << 40), &jr)
    );
}

#[test]
fn soundness_figures() {
    // The figures quoted in the module docs and docs/PROTOCOL.md.
    let log2 = |m: usize| libm::log2(soundness_error(m));
    let one = one_question().circuit().gadget_calls();
    let ten = ten_questions().circuit().gadget_calls();
    let big = Layout::new(
        &[Number {
            optional: true,
            range: 1_000_000,
            buckets: 20,
        }; 32],
    )
    .unwrap()
    .circuit()
    .gadget_calls();
    assert_eq!((one, ten, big), (47, 760, 5632));
    assert!((log2(one) + 54.4).abs() < 0.05, "{}", log2(one));
    assert!((log2(ten) + 50.4).abs() < 0.05, "{}", log2(ten));
    assert!((log2(big) + 47.5).abs() < 0.05, "{}", log2(big));
    assert!(
        soundness_error(1 << 19) < libm::pow(2.0, -40.0)
            && soundness_error(1 << 20) > libm::pow(2.0, -40.0)
    );
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn shape() -> impl Strategy<Value = QuestionShape> {
        prop_oneof![
            (any::<bool>(), 1u64..5000, 1u16..25).prop_map(|(optional, range, buckets)| Number {
                optional,
                range,
                buckets
            }),
            (any::<bool>(), 2u8..=20).prop_map(|(optional, options)| Choice { optional, options }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_valid_questionnaires_are_accepted(
            shapes in proptest::collection::vec(shape(), 1..5),
            picks in proptest::collection::vec((any::<bool>(), any::<u64>()), 5),
            n in 2u32..=10, t_frac in 0.0f64..=1.0, seed in any::<u64>(),
        ) {
            let l = Layout::new(&shapes).unwrap();
            let answers: Vec<Option<u64>> = shapes.iter().zip(&picks).map(|(s, &(skip, x))| match *s {
                Number { optional, range, .. } => (!(optional && skip)).then_some(x % (range + 1)),
                Choice { optional, options } => (!(optional && skip)).then_some(x % u64::from(options)),
            }).collect();
            let c = l.circuit();
            let input = witness(&l, &l.statistics(&answers).unwrap()).unwrap();
            prop_assert!(c.is_valid(&input));
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let proof = prove(&c, &input, prove_rand(&mut rng)).unwrap();
            let t = (2 + ((n - 2) as f64 * t_frac) as u32).min(n);
            prop_assert!(verify(&c, &input, &proof, Scheme::new(n, t).unwrap(), &mut rng));
        }

        #[test]
        fn a_random_change_of_one_entry_is_rejected(index in any::<prop::sample::Index>(), delta in 1u64..crate::field::MODULUS, seed in any::<u64>(), n in 2u32..=6) {
            let l = mixed();
            let c = l.circuit();
            let mut input = witness(&l, &l.statistics(&[Some(17), None, Some(2), Some(7), Some(1)]).unwrap()).unwrap();
            // Change one statistics entry; the witness is recomputed honestly.
            let i = index.index(l.stats_len());
            input[i] += Fe::new(delta);
            let input = witness(&l, &input[..l.stats_len()]).unwrap();
            prop_assert!(!c.is_valid(&input));
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let proof = prove(&c, &input, prove_rand(&mut rng)).unwrap();
            prop_assert!(!verify(&c, &input, &proof, Scheme::new(n, n).unwrap(), &mut rng));
            prop_assert!(!verify(&c, &input, &proof, Scheme::new(n + 1, n).unwrap(), &mut rng));
        }
    }
}

/// Circuit soundness, exhaustively on a small number question: for every x (in and out of
/// range, negative, non-integer), every bucket and **every** witness bit pattern, the input is
/// valid iff x ∈ [0, R] and the bucket is x's (and then only with the honest witness).
#[test]
fn no_witness_rescues_an_invalid_number() {
    let (range, buckets) = (7u64, 3u16);
    let l = Layout::new(&[Number {
        optional: false,
        range,
        buckets,
    }])
    .unwrap();
    let c = l.circuit();
    assert_eq!(l.witness_len(), 9);
    let mut xs: Vec<Fe> = (0..=16).map(Fe::new).collect();
    xs.extend([
        -Fe::ONE,
        Fe::new(3).inverse(),
        Fe::new(8) * Fe::new(3).inverse(),
    ]);
    for &x in &xs {
        for b in 0..usize::from(buckets) {
            let mut stats = l.statistics(&[Some(0)]).unwrap();
            stats[1] = x;
            stats[2] = x * x;
            for h in &mut stats[3..] {
                *h = Fe::ZERO;
            }
            stats[3 + b] = Fe::ONE;
            let honest_x = (x.value() <= range).then_some(x.value());
            let should = honest_x.is_some_and(|v| {
                b == ((v * u64::from(buckets) / range) as usize).min(usize::from(buckets) - 1)
            });
            let honest = witness(&l, &stats).unwrap();
            let mut accepted = 0;
            for pattern in 0u32..512 {
                let mut input = stats.clone();
                input.extend((0..9).map(|i| Fe::new(u64::from((pattern >> i) & 1))));
                if c.is_valid(&input) {
                    accepted += 1;
                    assert_eq!(input, honest);
                }
            }
            assert_eq!(
                accepted,
                usize::from(should),
                "x = {}, bucket {b}",
                x.value()
            );
        }
    }
}
