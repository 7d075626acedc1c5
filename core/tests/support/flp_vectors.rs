//! `flp.json`: validity proofs (issue 12) on the questionnaire layout, recomputed from fixed
//! seeds: input (statistics + witness), proof, input and proof shares, joint and query
//! randomness, every verifier share, the combined share and the decision, for valid and
//! invalid vectors under additive and Shamir sharing.

use cohort_core::field::Fe;
use cohort_core::flp::{
    Layout, QuestionShape, ShareRole, VerifierShare, decide, prove, query, witness,
};
use cohort_core::sharing::Scheme;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use super::vectors::SEED;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Question {
    kind: String,
    optional: bool,
    /// R (number) or K (choice).
    size: u64,
    /// B (number only).
    buckets: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    questions: Vec<Question>,
    answers: Vec<Option<u64>>,
    /// `(entry, value)` written into the statistics vector before the witness is computed.
    tamper: Vec<(usize, u64)>,
    rng_seed: u64,
    gadget_calls: usize,
    input: Vec<u64>,
    prove_rand: [u64; 2],
    proof: Vec<u64>,
    scheme: String,
    n: u32,
    t: u32,
    input_shares: Vec<Vec<u64>>,
    proof_shares: Vec<Vec<u64>>,
    joint_rand: Vec<u64>,
    query_rand: u64,
    /// `(share-holder roster index, verifier share)`; additive: all n, Shamir: t of them.
    verifier_shares: Vec<(u32, [u64; 4])>,
    combined: [u64; 4],
    accept: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: String,
    cases: Vec<Case>,
}

fn raw(v: &[Fe]) -> Vec<u64> {
    v.iter().map(|x| x.value()).collect()
}

fn fe(v: &[u64]) -> Vec<Fe> {
    v.iter()
        .map(|&x| Fe::from_canonical(x).expect("canonical"))
        .collect()
}

fn shape(q: &Question) -> QuestionShape {
    match q.kind.as_str() {
        "number" => QuestionShape::Number {
            optional: q.optional,
            range: q.size,
            buckets: q.buckets,
        },
        _ => QuestionShape::Choice {
            optional: q.optional,
            options: q.size as u8,
        },
    }
}

fn number(optional: bool, range: u64, buckets: u16) -> Question {
    Question {
        kind: "number".into(),
        optional,
        size: range,
        buckets,
    }
}

fn choice(optional: bool, options: u64) -> Question {
    Question {
        kind: "choice".into(),
        optional,
        size: options,
        buckets: 0,
    }
}

fn input_of(layout: &Layout, answers: &[Option<u64>], tamper: &[(usize, u64)]) -> Vec<Fe> {
    let mut stats = layout.statistics(answers).expect("answers fit");
    for &(i, x) in tamper {
        stats[i] = Fe::new(x);
    }
    witness(layout, &stats).expect("witness")
}

fn role(scheme: Scheme, index: u32) -> ShareRole {
    match scheme {
        Scheme::Additive { .. } => ShareRole::additive(index as usize - 1),
        Scheme::Shamir { .. } => ShareRole::Shamir,
    }
}

fn combine(scheme: Scheme, shares: &[(u32, VerifierShare)]) -> VerifierShare {
    match scheme {
        Scheme::Additive { .. } => {
            let s: Vec<VerifierShare> = shares.iter().map(|s| s.1).collect();
            VerifierShare::combine_additive(&s).expect("combine")
        }
        Scheme::Shamir { .. } => VerifierShare::combine_shamir(shares).expect("combine"),
    }
}

#[allow(clippy::too_many_arguments)]
fn case(
    name: &str,
    questions: Vec<Question>,
    answers: Vec<Option<u64>>,
    tamper: Vec<(usize, u64)>,
    n: u32,
    t: u32,
    holders: &[u32],
    offset: u64,
) -> Case {
    let rng_seed = SEED + 900 + offset;
    let mut rng = ChaCha20Rng::seed_from_u64(rng_seed);
    let shapes: Vec<QuestionShape> = questions.iter().map(shape).collect();
    let layout = Layout::new(&shapes).expect("layout");
    let circuit = layout.circuit();
    let input = input_of(&layout, &answers, &tamper);
    let prove_rand = [Fe::random(&mut rng), Fe::random(&mut rng)];
    let proof = prove(&circuit, &input, prove_rand).expect("prove");
    let scheme = Scheme::new(n, t).expect("scheme");
    let input_shares = scheme.split(&input, &mut rng);
    let proof_shares = scheme.split(&proof, &mut rng);
    let joint_rand: Vec<Fe> = (0..circuit.joint_rand_len())
        .map(|_| Fe::random(&mut rng))
        .collect();
    let query_rand = loop {
        let r = Fe::random(&mut rng);
        if r.value() > 2 * circuit.gadget_calls() as u64 {
            break r;
        }
    };
    let vs: Vec<(u32, VerifierShare)> = holders
        .iter()
        .map(|&j| {
            let k = j as usize - 1;
            let s = query(
                &circuit,
                &input_shares[k],
                &proof_shares[k],
                role(scheme, j),
                query_rand,
                &joint_rand,
            )
            .expect("query");
            (j, s)
        })
        .collect();
    let combined = combine(scheme, &vs);
    Case {
        name: name.into(),
        questions,
        answers,
        tamper,
        rng_seed,
        gadget_calls: circuit.gadget_calls(),
        input: raw(&input),
        prove_rand: [prove_rand[0].value(), prove_rand[1].value()],
        proof: raw(&proof),
        scheme: if t == n { "additive" } else { "shamir" }.into(),
        n,
        t,
        input_shares: input_shares.iter().map(|v| raw(v)).collect(),
        proof_shares: proof_shares.iter().map(|v| raw(v)).collect(),
        joint_rand: raw(&joint_rand),
        query_rand: query_rand.value(),
        verifier_shares: vs
            .iter()
            .map(|(j, s)| (*j, s.0.map(|x| x.value())))
            .collect(),
        combined: combined.0.map(|x| x.value()),
        accept: decide(&combined),
    }
}

pub(crate) fn gen_flp() -> String {
    let one = || vec![number(false, 3000, 10)];
    let mixed = || vec![number(false, 20, 4), number(true, 7, 3), choice(true, 3)];
    let cases = vec![
        case(
            "one question, x' = 1725, additive 3",
            one(),
            vec![Some(1725)],
            vec![],
            3,
            3,
            &[1, 2, 3],
            0,
        ),
        case(
            "one question, x' = 3000, Shamir 2-of-3",
            one(),
            vec![Some(3000)],
            vec![],
            3,
            2,
            &[3, 1],
            1,
        ),
        case(
            "one question, bad square (x'² + 1), additive 2",
            one(),
            vec![Some(1725)],
            vec![(2, 1725 * 1725 + 1)],
            2,
            2,
            &[1, 2],
            2,
        ),
        case(
            "one question, x' = 3001 in the last bucket, Shamir 2-of-3",
            one(),
            vec![Some(3000)],
            vec![(1, 3001), (2, 3001 * 3001)],
            3,
            2,
            &[2, 3],
            3,
        ),
        case(
            "one question, count 2, additive 3",
            one(),
            vec![Some(10)],
            vec![(0, 2)],
            3,
            3,
            &[1, 2, 3],
            4,
        ),
        case(
            "mixed, all answered, additive 2",
            mixed(),
            vec![Some(13), Some(7), Some(2)],
            vec![],
            2,
            2,
            &[1, 2],
            5,
        ),
        case(
            "mixed, optionals skipped, Shamir 3-of-4",
            mixed(),
            vec![Some(0), None, None],
            vec![],
            4,
            3,
            &[4, 2, 1],
            6,
        ),
        case(
            "mixed, two options set, Shamir 3-of-4",
            mixed(),
            vec![Some(5), Some(2), Some(0)],
            vec![(15, 1)],
            4,
            3,
            &[1, 2, 3],
            7,
        ),
    ];
    let file = File {
        description: "FLP validity proofs (core/src/flp) over GF(2^61 - 1). Per case: the questionnaire shape (number: size = R; choice: size = K), answers (null = skipped), tamper = (entry, value) written into the statistics vector before the honest witness; everything else from ChaCha20Rng::seed_from_u64(rng_seed) in this order: prove_rand (2), proof, input shares, proof shares (Scheme::split), joint_rand, query_rand (first draw > 2M). verifier_shares: (roster index, [f0(r), f1(r), p(r), out]) from query() with role additive leader = index 1, helpers, or Shamir; combined = sum (additive) or Lagrange at 0 (Shamir); accept = decide(combined).".into(),
        cases,
    };
    let mut s = serde_json::to_string_pretty(&file).expect("json");
    s.push('\n');
    s
}

pub(crate) fn check_flp(text: &str) {
    let file: File = serde_json::from_str(text).expect("flp.json parses");
    let mut accepted = 0;
    for c in &file.cases {
        let shapes: Vec<QuestionShape> = c.questions.iter().map(shape).collect();
        let layout = Layout::new(&shapes).expect("layout");
        let circuit = layout.circuit();
        assert_eq!(circuit.gadget_calls(), c.gadget_calls, "{}", c.name);
        let input = input_of(&layout, &c.answers, &c.tamper);
        assert_eq!(raw(&input), c.input, "{}", c.name);
        let proof = prove(
            &circuit,
            &input,
            [Fe::new(c.prove_rand[0]), Fe::new(c.prove_rand[1])],
        )
        .expect("prove");
        assert_eq!(raw(&proof), c.proof, "{}", c.name);
        let scheme = Scheme::new(c.n, c.t).expect("scheme");
        let xs: Vec<Vec<Fe>> = c.input_shares.iter().map(|v| fe(v)).collect();
        let ps: Vec<Vec<Fe>> = c.proof_shares.iter().map(|v| fe(v)).collect();
        let pick = |v: &[Vec<Fe>]| -> Vec<Fe> {
            let pairs: Vec<(u32, &[Fe])> = c
                .verifier_shares
                .iter()
                .map(|(j, _)| (*j, v[*j as usize - 1].as_slice()))
                .collect();
            scheme.reconstruct(&pairs).expect("reconstruct")
        };
        assert_eq!(pick(&xs), input, "{}: input shares", c.name);
        assert_eq!(pick(&ps), proof, "{}: proof shares", c.name);
        let jr = fe(&c.joint_rand);
        let r = Fe::new(c.query_rand);
        let vs: Vec<(u32, VerifierShare)> = c
            .verifier_shares
            .iter()
            .map(|(j, expect)| {
                let k = *j as usize - 1;
                let s = query(&circuit, &xs[k], &ps[k], role(scheme, *j), r, &jr).expect("query");
                assert_eq!(
                    s.0.map(|x| x.value()),
                    *expect,
                    "{}: verifier share {j}",
                    c.name
                );
                (*j, s)
            })
            .collect();
        let combined = combine(scheme, &vs);
        assert_eq!(combined.0.map(|x| x.value()), c.combined, "{}", c.name);
        assert_eq!(decide(&combined), c.accept, "{}", c.name);
        assert_eq!(c.accept, circuit.is_valid(&input), "{}", c.name);
        accepted += usize::from(c.accept);
    }
    assert_eq!((accepted, file.cases.len()), (4, 8));
}
