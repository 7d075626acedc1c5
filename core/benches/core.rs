//! Criterion benches for the per-patient and per-relay costs of a round, at n = 3, 100, 1000:
//! key agreement, split (deal), seal, open, partial sum and the hospital's reconstruction.
//! Also the FLP validity proof (prove, one query) at one and ten questions.
#![allow(missing_docs)]

use std::hint::black_box;

use cohort_core::encoding::encode;
use cohort_core::envelope::{Binding, KeyPair};
use cohort_core::field::Fe;
use cohort_core::sharing::{Scheme, lagrange_at_zero};
use cohort_core::study::StudyParams;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SIZES: [u32; 3] = [3, 100, 1000];

fn params(n: u32) -> StudyParams {
    StudyParams {
        size: n,
        threshold: n,
        min_cohort: 3.min(n),
        ..StudyParams::demo()
    }
}

fn bench_key_agreement(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let a = KeyPair::generate(&mut rng);
    let b = KeyPair::generate(&mut rng).public();
    c.bench_function("x25519_agree_one_peer", |bench| {
        bench.iter(|| black_box(a.agree(black_box(&b)).unwrap()))
    });
}

fn bench_deal(c: &mut Criterion) {
    let mut g = c.benchmark_group("deal");
    for n in SIZES {
        let p = params(n);
        let v = encode(&p, &"172.5".parse().unwrap()).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        g.bench_with_input(BenchmarkId::new("additive", n), &n, |bench, &n| {
            let s = Scheme::new(n, n).unwrap();
            bench.iter(|| black_box(s.deal(v.as_slice(), 1, &mut rng)))
        });
        if n > 3 {
            let t = n * 2 / 3;
            g.bench_with_input(BenchmarkId::new("shamir_2n_3", n), &n, |bench, &n| {
                let s = Scheme::new(n, t).unwrap();
                bench.iter(|| black_box(s.deal(v.as_slice(), 1, &mut rng)))
            });
        }
    }
    g.finish();
}

fn bench_seal_open(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let a = KeyPair::generate(&mut rng);
    let b = KeyPair::generate(&mut rng);
    let (ak, bk) = (a.public(), b.public());
    let pair = a.agree(&bk).unwrap();
    let binding = Binding {
        study: "demo",
        round: 1,
        from: 1,
        to: 2,
        from_key: &ak,
        to_key: &bk,
    };
    let key = pair.direction_key(&binding);
    let seed = [7u8; 32];
    let vector = [Fe::new(5); 13];
    c.bench_function("direction_key_hkdf", |bench| {
        bench.iter(|| black_box(pair.direction_key(black_box(&binding))))
    });
    c.bench_function("seal_seed_32B", |bench| {
        bench.iter(|| black_box(key.seal_bytes(black_box(&seed))))
    });
    c.bench_function("seal_vector_13", |bench| {
        bench.iter(|| black_box(key.seal(black_box(&vector))))
    });
    let sealed = key.seal_bytes(&seed);
    c.bench_function("open_seed_32B", |bench| {
        bench.iter(|| black_box(key.open_bytes(black_box(&sealed), 32).unwrap()))
    });
    let sealed_v = key.seal(&vector);
    c.bench_function("open_vector_13", |bench| {
        bench.iter(|| black_box(key.open(black_box(&sealed_v), 13).unwrap()))
    });
}

fn bench_partial_sum_and_reconstruct(c: &mut Criterion) {
    let mut g = c.benchmark_group("partial_sum");
    for n in SIZES {
        let s = Scheme::new(n, n).unwrap();
        let payload = [9u8; 32];
        g.bench_with_input(
            BenchmarkId::new("additive_expand_and_sum", n),
            &n,
            |bench, &n| {
                bench.iter(|| {
                    let mut sum = vec![Fe::ZERO; 13];
                    for _ in 1..n {
                        for (a, b) in sum.iter_mut().zip(s.receive(&payload, 13).unwrap()) {
                            *a += b;
                        }
                    }
                    black_box(sum)
                })
            },
        );
    }
    g.finish();
    let mut g = c.benchmark_group("reconstruct");
    for n in SIZES {
        let parts: Vec<Vec<Fe>> = (0..n).map(|i| vec![Fe::new(u64::from(i)); 13]).collect();
        let pairs: Vec<(u32, &[Fe])> = parts
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32 + 1, v.as_slice()))
            .collect();
        g.bench_with_input(BenchmarkId::new("additive", n), &n, |bench, &n| {
            let s = Scheme::new(n, n).unwrap();
            bench.iter(|| black_box(s.reconstruct(&pairs).unwrap()))
        });
        if n > 3 {
            let t = n * 2 / 3;
            g.bench_with_input(
                BenchmarkId::new("shamir_interpolate_2n_3", n),
                &n,
                |bench, &n| {
                    let s = Scheme::new(n, t).unwrap();
                    bench.iter(|| black_box(s.reconstruct(&pairs).unwrap()))
                },
            );
            let xs: Vec<u32> = (1..=t).collect();
            g.bench_with_input(
                BenchmarkId::new("lagrange_weights_2n_3", n),
                &xs,
                |bench, xs| bench.iter(|| black_box(lagrange_at_zero(xs))),
            );
        }
    }
    g.finish();
}

/// FLP (issue 12): proof generation and one share-holder's query, for a one-question study
/// (required number, R = 3000, B = 10: M = 47) and a ten-question study (optional numbers,
/// R = 3000, B = 10, all 45 pairs: M = 760).
fn bench_flp(c: &mut Criterion) {
    use cohort_core::flp::{
        Layout, QueryPoint, QuestionShape, ShareRole, prove, query, query_at, witness,
    };
    let mut g = c.benchmark_group("flp");
    let one = Layout::new(&[QuestionShape::Number {
        optional: false,
        range: 3000,
        buckets: 10,
    }])
    .unwrap();
    let ten = Layout::new(
        &[QuestionShape::Number {
            optional: true,
            range: 3000,
            buckets: 10,
        }; 10],
    )
    .unwrap();
    for (name, layout) in [("1_question", one), ("10_questions", ten)] {
        let answers: Vec<Option<u64>> = (0..layout.questions().len() as u64)
            .map(|i| Some(1000 + 97 * i))
            .collect();
        let circuit = layout.circuit();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        g.bench_function(BenchmarkId::new("prove", name), |bench| {
            bench.iter(|| {
                let input = witness(&layout, &layout.statistics(&answers).unwrap()).unwrap();
                let seeds = [Fe::random(&mut rng), Fe::random(&mut rng)];
                black_box(prove(&circuit, &input, seeds).unwrap())
            })
        });
        let input = witness(&layout, &layout.statistics(&answers).unwrap()).unwrap();
        let proof = prove(&circuit, &input, [Fe::ONE, Fe::new(2)]).unwrap();
        let jr: Vec<Fe> = (0..circuit.joint_rand_len())
            .map(|_| Fe::random(&mut rng))
            .collect();
        let r = Fe::new(1 << 50);
        g.bench_function(BenchmarkId::new("query", name), |bench| {
            bench.iter(|| {
                black_box(query(&circuit, &input, &proof, ShareRole::Shamir, r, &jr).unwrap())
            })
        });
        // Many proofs checked at one point: the Lagrange bases are prepared once.
        let point = QueryPoint::new(&circuit, r).unwrap();
        g.bench_function(BenchmarkId::new("query_at_prepared_point", name), |bench| {
            bench.iter(|| {
                black_box(
                    query_at(&circuit, &input, &proof, ShareRole::Shamir, &point, &jr).unwrap(),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_key_agreement,
    bench_deal,
    bench_seal_open,
    bench_partial_sum_and_reconstruct,
    bench_flp
);
criterion_main!(benches);
