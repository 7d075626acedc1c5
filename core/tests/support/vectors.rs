//! Test vectors: generators for the good vectors (recomputed from fixed seeds and compared byte
//! for byte with the committed files) and checkers for every committed file, good and bad.
//!
//! The committed files live in `core/tests/vectors/`; see the README there. The native test
//! (`tests/vectors.rs`) reads them from disk and can rewrite the good ones; the wasm test
//! (`tests/wasm.rs`) uses the copies embedded here with `include_str!`.

use cohort_core::answer::Answers;
use cohort_core::b64;
use cohort_core::decimal::Decimal;
use cohort_core::encoding::{Statistics, check_value, decode, encode};
use cohort_core::envelope::{Binding, KeyPair, PublicKey};
use cohort_core::error::ProtocolError;
use cohort_core::field::{Fe, MODULUS, add_assign_vec, batch_inverse};
use cohort_core::layout::{Layout, Term};
use cohort_core::message::{AbandonReason, PatientToRelay, RelayToPatient, RoundResult};
use cohort_core::protocol::{Hospital, Patient};
use cohort_core::question::Question;
use cohort_core::questionnaire::QuestionnaireResult;
use cohort_core::roster::{Member, Roster};
use cohort_core::sharing::{Scheme, expand_seed, lagrange_at_zero};
use cohort_core::study::{StudyParams, StudySpec};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cohort_core::testing::{Behaviour, Dir, run_round};

/// The seed every generator starts from (each adds its own offset).
pub(crate) const SEED: u64 = 0x636f_686f_7274; // "cohort"

/// A good vector file: name, generator, committed text.
pub(crate) struct Good {
    pub(crate) name: &'static str,
    pub(crate) generate: fn() -> String,
    pub(crate) committed: &'static str,
    /// Checks the committed file's contents on their own (not just byte equality).
    pub(crate) check: fn(&str),
}

/// Every good vector file.
pub(crate) const GOOD: &[Good] = &[
    Good {
        name: "field.json",
        generate: gen_field,
        committed: include_str!("../vectors/field.json"),
        check: check_field,
    },
    Good {
        name: "decimal.json",
        generate: gen_decimal,
        committed: include_str!("../vectors/decimal.json"),
        check: check_decimal,
    },
    Good {
        name: "encoding.json",
        generate: gen_encoding,
        committed: include_str!("../vectors/encoding.json"),
        check: check_encoding,
    },
    Good {
        name: "sharing.json",
        generate: gen_sharing,
        committed: include_str!("../vectors/sharing.json"),
        check: check_sharing,
    },
    Good {
        name: "envelope.json",
        generate: gen_envelope,
        committed: include_str!("../vectors/envelope.json"),
        check: check_envelope,
    },
    Good {
        name: "roster.json",
        generate: gen_roster,
        committed: include_str!("../vectors/roster.json"),
        check: check_roster,
    },
    Good {
        name: "round.json",
        generate: gen_round,
        committed: include_str!("../vectors/round.json"),
        check: check_round_file,
    },
    Good {
        name: "flp.json",
        generate: super::flp_vectors::gen_flp,
        committed: include_str!("../vectors/flp.json"),
        check: super::flp_vectors::check_flp,
    },
    Good {
        name: "questionnaire.json",
        generate: gen_questionnaire,
        committed: include_str!("../vectors/questionnaire.json"),
        check: check_questionnaire,
    },
];

/// The hand-written bad vectors.
pub(crate) const BAD_MESSAGES: &str = include_str!("../vectors/bad_messages.json");
/// See [`BAD_MESSAGES`].
pub(crate) const BAD_VALUES: &str = include_str!("../vectors/bad_values.json");
/// See [`BAD_MESSAGES`].
pub(crate) const BAD_STUDIES: &str = include_str!("../vectors/bad_studies.json");

fn to_text<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("vectors serialize");
    s.push('\n');
    s
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> T {
    serde_json::from_str(text).expect("vector file parses")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn raw(v: &[Fe]) -> Vec<u64> {
    v.iter().map(|x| x.value()).collect()
}

fn fes(v: &[u64]) -> Vec<Fe> {
    v.iter()
        .map(|&x| Fe::from_canonical(x).expect("canonical"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// field.json

#[derive(Serialize, Deserialize)]
struct FieldVectors {
    description: String,
    seed: u64,
    modulus: u64,
    reductions: Vec<Reduction>,
    ops: Vec<FieldOp>,
    batch_inverse: BatchInverse,
}

#[derive(Serialize, Deserialize)]
struct Reduction {
    x: u64,
    reduced: u64,
}

#[derive(Serialize, Deserialize)]
struct FieldOp {
    a: u64,
    b: u64,
    add: u64,
    sub: u64,
    mul: u64,
    neg_a: u64,
    inv_a: u64,
    a_pow_b: u64,
}

#[derive(Serialize, Deserialize)]
struct BatchInverse {
    xs: Vec<u64>,
    inverses: Vec<u64>,
}

fn field_op(a: u64, b: u64) -> FieldOp {
    let (fa, fb) = (Fe::new(a), Fe::new(b));
    FieldOp {
        a,
        b,
        add: (fa + fb).value(),
        sub: (fa - fb).value(),
        mul: (fa * fb).value(),
        neg_a: (-fa).value(),
        inv_a: fa.inverse().value(),
        a_pow_b: fa.pow(b).value(),
    }
}

fn gen_field() -> String {
    let seed = SEED;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let edges = [
        0,
        1,
        2,
        3,
        MODULUS - 2,
        MODULUS - 1,
        1 << 32,
        (1 << 60) + 12345,
    ];
    let mut reductions: Vec<Reduction> = [
        0,
        1,
        MODULUS - 1,
        MODULUS,
        MODULUS + 1,
        2 * MODULUS,
        2 * MODULUS + 1,
        u64::MAX - 1,
        u64::MAX,
    ]
    .into_iter()
    .map(|x| Reduction {
        x,
        reduced: Fe::new(x).value(),
    })
    .collect();
    for _ in 0..8 {
        let x = rng.next_u64();
        reductions.push(Reduction {
            x,
            reduced: Fe::new(x).value(),
        });
    }
    let mut ops = Vec::new();
    for &a in &edges {
        for &b in &edges {
            ops.push(field_op(a, b));
        }
    }
    for _ in 0..16 {
        let a = Fe::random(&mut rng).value();
        let b = Fe::random(&mut rng).value();
        ops.push(field_op(a, b));
    }
    let xs: Vec<u64> = (0..8)
        .map(|i| {
            if i == 3 {
                0
            } else {
                Fe::random(&mut rng).value()
            }
        })
        .collect();
    let mut inv = fes(&xs);
    batch_inverse(&mut inv);
    to_text(&FieldVectors {
        description: "GF(2^61 - 1): reduction of u64, add/sub/mul/neg/inverse/pow, batch inverse \
                      (0 maps to 0). Random operands from ChaCha20Rng::seed_from_u64(seed), \
                      via Fe::random."
            .into(),
        seed,
        modulus: MODULUS,
        reductions,
        ops,
        batch_inverse: BatchInverse {
            xs,
            inverses: raw(&inv),
        },
    })
}

fn check_field(text: &str) {
    let v: FieldVectors = parse(text);
    assert_eq!(v.modulus, MODULUS);
    for r in &v.reductions {
        assert_eq!(Fe::new(r.x).value(), r.reduced, "reduce {}", r.x);
        assert_eq!(r.reduced, r.x % MODULUS);
    }
    for op in &v.ops {
        let (a, b) = (op.a as u128, op.b as u128);
        let p = MODULUS as u128;
        assert_eq!(op.add as u128, (a + b) % p);
        assert_eq!(op.sub as u128, (a + p - b % p) % p);
        assert_eq!(op.mul as u128, a * b % p);
        assert_eq!(op.neg_a as u128, (p - a % p) % p);
        if op.a % MODULUS != 0 {
            assert_eq!((Fe::new(op.a) * Fe::new(op.inv_a)).value(), 1);
        } else {
            assert_eq!(op.inv_a, 0);
        }
        let again = field_op(op.a, op.b);
        assert_eq!(
            (
                again.add,
                again.sub,
                again.mul,
                again.neg_a,
                again.inv_a,
                again.a_pow_b
            ),
            (op.add, op.sub, op.mul, op.neg_a, op.inv_a, op.a_pow_b)
        );
    }
    let mut inv = fes(&v.batch_inverse.xs);
    batch_inverse(&mut inv);
    assert_eq!(raw(&inv), v.batch_inverse.inverses);
}

// ---------------------------------------------------------------------------------------------
// decimal.json

#[derive(Serialize, Deserialize)]
struct DecimalVectors {
    description: String,
    cases: Vec<DecimalCase>,
}

#[derive(Serialize, Deserialize)]
struct DecimalCase {
    input: String,
    display: String,
    /// `to_scaled(decimals)` for decimals 0..=3: the integer or the error.
    scaled: Vec<Scaled>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Scaled {
    decimals: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<String>,
}

fn decimal_case(input: &str) -> DecimalCase {
    let d: Decimal = input.parse().expect("good decimal");
    DecimalCase {
        input: input.into(),
        display: d.to_string(),
        scaled: (0..=3)
            .map(|decimals| match d.to_scaled(decimals) {
                Ok(x) => Scaled {
                    decimals,
                    ok: Some(x),
                    err: None,
                },
                Err(e) => Scaled {
                    decimals,
                    ok: None,
                    err: Some(format!("{e:?}")),
                },
            })
            .collect(),
    }
}

const DECIMAL_INPUTS: &[&str] = &[
    "0",
    "-0",
    "172.5",
    "172.50",
    "+172.5",
    "  42 ",
    "-3",
    ".5",
    "-0.25",
    "0.001",
    "0.000000001",
    "1000000000000000",
    "-1000000000000000",
    "0.100000000",
    "300",
    "-40.5",
];

fn gen_decimal() -> String {
    to_text(&DecimalVectors {
        description: "Decimal parsing as people type numbers: the canonical Display form and \
                      to_scaled(decimals) for 0..=3 decimals (Ok integer or the ValueError)."
            .into(),
        cases: DECIMAL_INPUTS.iter().map(|s| decimal_case(s)).collect(),
    })
}

fn check_decimal(text: &str) {
    let v: DecimalVectors = parse(text);
    for c in &v.cases {
        let again = decimal_case(&c.input);
        assert_eq!(again.display, c.display, "{:?}", c.input);
        assert_eq!(again.scaled, c.scaled, "{:?}", c.input);
        // Display round-trips.
        let back: Decimal = c.display.parse().expect("display parses");
        assert_eq!(back.to_string(), c.display);
    }
}

// ---------------------------------------------------------------------------------------------
// encoding.json

#[derive(Serialize, Deserialize)]
struct EncodingVectors {
    description: String,
    seed: u64,
    studies: Vec<EncodingStudy>,
}

#[derive(Serialize, Deserialize)]
struct EncodingStudy {
    spec: String,
    params: StudyParams,
    values: Vec<EncodedCase>,
    aggregate: Vec<u64>,
    statistics: Statistics,
    bucket_edges: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct EncodedCase {
    value: String,
    offset: u64,
    vector: Vec<u64>,
}

fn encoding_study(spec: &str, values: &[String]) -> EncodingStudy {
    let s: StudySpec = spec.parse().expect("valid study");
    let p = &s.params;
    let mut agg = vec![Fe::ZERO; p.vector_len()];
    let mut cases = Vec::new();
    for value in values {
        let d: Decimal = value.parse().expect("decimal");
        let offset = check_value(p, &d).expect("in range");
        let enc = encode(p, &d).expect("encodes");
        add_assign_vec(&mut agg, enc.as_slice());
        cases.push(EncodedCase {
            value: value.clone(),
            offset,
            vector: raw(enc.as_slice()),
        });
    }
    EncodingStudy {
        spec: spec.into(),
        params: p.clone(),
        values: cases,
        aggregate: raw(&agg),
        statistics: decode(p, &agg).expect("consistent"),
        bucket_edges: p.bucket_edges(),
    }
}

fn gen_encoding() -> String {
    let seed = SEED + 1;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // Heights: 0..=300 cm, one decimal; both ends and random values.
    let mut heights: Vec<String> = vec!["0".into(), "300".into(), "172.5".into()];
    for _ in 0..7 {
        heights.push(
            Decimal::new((rng.next_u64() % 3001) as i64, 1)
                .unwrap()
                .to_string(),
        );
    }
    // Temperatures with a negative minimum and two decimals.
    let mut temps: Vec<String> = vec!["-40.5".into(), "45.25".into()];
    for _ in 0..3 {
        let x = (rng.next_u64() % 8576) as i64 - 4050;
        temps.push(Decimal::new(x, 2).unwrap().to_string());
    }
    to_text(&EncodingVectors {
        description: "Statistics vectors [1, x', x'^2, one-hot bucket] with x' = (x - min) * \
                      10^decimals, their sum, and the statistics decoded from it. Random values \
                      from ChaCha20Rng::seed_from_u64(seed)."
            .into(),
        seed,
        studies: vec![
            encoding_study(
                "id=height,size=10,min=0,max=300,decimals=1,buckets=10",
                &heights,
            ),
            encoding_study(
                "id=temp,size=5,min=-40.5,max=45.25,decimals=2,buckets=7,unit=C",
                &temps,
            ),
        ],
    })
}

fn check_encoding(text: &str) {
    let v: EncodingVectors = parse(text);
    for s in &v.studies {
        let spec: StudySpec = s.spec.parse().expect("valid");
        assert_eq!(spec.params, s.params);
        let mut agg = vec![Fe::ZERO; s.params.vector_len()];
        for c in &s.values {
            let enc = encode(&s.params, &c.value.parse().expect("decimal")).expect("encodes");
            assert_eq!(raw(enc.as_slice()), c.vector, "{}", c.value);
            assert_eq!(c.vector[1], c.offset);
            add_assign_vec(&mut agg, enc.as_slice());
        }
        assert_eq!(raw(&agg), s.aggregate);
        assert_eq!(decode(&s.params, &fes(&s.aggregate)).unwrap(), s.statistics);
        assert_eq!(s.statistics.count, s.values.len() as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// sharing.json

#[derive(Serialize, Deserialize)]
struct SharingVectors {
    description: String,
    secret: Vec<u64>,
    splits: Vec<SplitCase>,
    deals: Vec<DealCase>,
    lagrange: Vec<LagrangeCase>,
    expand_seed: ExpandSeedCase,
}

#[derive(Serialize, Deserialize)]
struct SplitCase {
    n: u32,
    t: u32,
    scheme: String,
    rng_seed: u64,
    /// Share of roster index i + 1.
    shares: Vec<Vec<u64>>,
    /// Index sets that reconstruct the secret.
    reconstruct_from: Vec<Vec<u32>>,
}

#[derive(Serialize, Deserialize)]
struct DealCase {
    n: u32,
    t: u32,
    me: u32,
    rng_seed: u64,
    own: Vec<u64>,
    payloads: Vec<Payload>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    to: u32,
    hex: String,
}

#[derive(Serialize, Deserialize)]
struct LagrangeCase {
    xs: Vec<u32>,
    weights: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct ExpandSeedCase {
    seed_hex: String,
    len: usize,
    vector: Vec<u64>,
}

fn scheme_name(s: Scheme) -> String {
    match s {
        Scheme::Additive { .. } => "additive".into(),
        Scheme::Shamir { .. } => "shamir".into(),
    }
}

fn reconstructs(s: Scheme, shares: &[Vec<Fe>], from: &[u32]) -> Vec<Fe> {
    let pairs: Vec<(u32, &[Fe])> = from
        .iter()
        .map(|&i| (i, shares[i as usize - 1].as_slice()))
        .collect();
    s.reconstruct(&pairs).expect("reconstructs")
}

fn subsets(n: u32, t: u32) -> Vec<Vec<u32>> {
    let all: Vec<u32> = (1..=n).collect();
    let mut out = vec![all.clone()];
    if t < n {
        out.push((1..=t).collect());
        out.push((n - t + 1..=n).collect());
        out.push(
            (1..=n)
                .rev()
                .step_by(2)
                .take(t as usize)
                .collect::<Vec<_>>(),
        );
    }
    out.retain(|s| s.len() >= t as usize);
    out
}

fn gen_sharing() -> String {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 2);
    let secret: Vec<Fe> = (0..5).map(|_| Fe::random(&mut rng)).collect();
    let mut splits = Vec::new();
    for (k, (n, t)) in [(2u32, 2u32), (3, 3), (3, 2), (5, 3), (10, 6)]
        .into_iter()
        .enumerate()
    {
        let rng_seed = SEED + 100 + k as u64;
        let s = Scheme::new(n, t).expect("scheme");
        let shares = s.split(&secret, &mut ChaCha20Rng::seed_from_u64(rng_seed));
        let from = subsets(n, t);
        for f in &from {
            assert_eq!(reconstructs(s, &shares, f), secret);
        }
        splits.push(SplitCase {
            n,
            t,
            scheme: scheme_name(s),
            rng_seed,
            shares: shares.iter().map(|v| raw(v)).collect(),
            reconstruct_from: from,
        });
    }
    let mut deals = Vec::new();
    for (k, (n, t, me)) in [(3u32, 3u32, 1u32), (4, 4, 3), (5, 3, 2)]
        .into_iter()
        .enumerate()
    {
        let rng_seed = SEED + 200 + k as u64;
        deals.push(deal_case(&secret, n, t, me, rng_seed));
    }
    let lagrange = [
        vec![1u32, 2],
        vec![1, 2, 3],
        vec![2, 5, 7],
        vec![10, 3, 1, 4],
    ]
    .into_iter()
    .map(|xs| {
        let weights = raw(&lagrange_at_zero(&xs));
        LagrangeCase { xs, weights }
    })
    .collect();
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    to_text(&SharingVectors {
        description: "Additive (t = n) and Shamir (t < n) splits of one secret vector with \
                      ChaCha20Rng::seed_from_u64(rng_seed), the index sets that reconstruct it, \
                      deals (the dealer's own share and the payloads that travel sealed: a \
                      32-byte seed per member for additive, the 8-byte little-endian vector for \
                      Shamir), Lagrange weights at 0, and one seed expansion."
            .into(),
        secret: raw(&secret),
        splits,
        deals,
        lagrange,
        expand_seed: ExpandSeedCase {
            seed_hex: hex(&seed),
            len: 6,
            vector: raw(&expand_seed(&seed, 6)),
        },
    })
}

fn deal_case(secret: &[Fe], n: u32, t: u32, me: u32, rng_seed: u64) -> DealCase {
    let s = Scheme::new(n, t).expect("scheme");
    let deal = s.deal(secret, me, &mut ChaCha20Rng::seed_from_u64(rng_seed));
    let case = DealCase {
        n,
        t,
        me,
        rng_seed,
        own: raw(&deal.own),
        payloads: deal
            .payloads
            .iter()
            .map(|(to, p)| Payload {
                to: *to,
                hex: hex(p),
            })
            .collect(),
    };
    check_deal(s, secret, &case);
    case
}

/// The dealer's own share plus what every other member receives reconstructs the secret.
fn check_deal(s: Scheme, secret: &[Fe], case: &DealCase) {
    let len = secret.len();
    let mut shares: Vec<Vec<Fe>> = vec![Vec::new(); case.n as usize];
    shares[case.me as usize - 1] = fes(&case.own);
    assert_eq!(case.payloads.len(), case.n as usize - 1);
    for p in &case.payloads {
        let bytes = unhex(&p.hex);
        assert_eq!(bytes.len(), s.payload_len(len));
        shares[p.to as usize - 1] = s.receive(&bytes, len).expect("payload decodes");
    }
    let all: Vec<u32> = (1..=case.n).collect();
    assert_eq!(reconstructs(s, &shares, &all), secret);
}

fn check_sharing(text: &str) {
    let v: SharingVectors = parse(text);
    let secret = fes(&v.secret);
    for c in &v.splits {
        let s = Scheme::new(c.n, c.t).expect("scheme");
        assert_eq!(scheme_name(s), c.scheme);
        let shares: Vec<Vec<Fe>> = c.shares.iter().map(|x| fes(x)).collect();
        assert_eq!(shares.len(), c.n as usize);
        for f in &c.reconstruct_from {
            assert_eq!(reconstructs(s, &shares, f), secret, "{} of {}", c.t, c.n);
        }
        if c.t < c.n {
            // t − 1 shares are too few.
            let few: Vec<(u32, &[Fe])> = (1..c.t)
                .map(|i| (i, shares[i as usize - 1].as_slice()))
                .collect();
            assert!(s.reconstruct(&few).is_err());
        }
    }
    for c in &v.deals {
        check_deal(Scheme::new(c.n, c.t).expect("scheme"), &secret, c);
    }
    for c in &v.lagrange {
        assert_eq!(raw(&lagrange_at_zero(&c.xs)), c.weights);
        // Weights sum to 1: they interpolate the constant polynomial 1.
        let sum = fes(&c.weights).into_iter().fold(Fe::ZERO, |a, w| a + w);
        assert_eq!(sum, Fe::ONE);
    }
    let seed: [u8; 32] = unhex(&v.expand_seed.seed_hex).try_into().expect("32 bytes");
    assert_eq!(
        raw(&expand_seed(&seed, v.expand_seed.len)),
        v.expand_seed.vector
    );
}

// ---------------------------------------------------------------------------------------------
// envelope.json

#[derive(Serialize, Deserialize)]
struct EnvelopeVectors {
    description: String,
    seed: u64,
    alice: String,
    bob: String,
    carol: String,
    binding: BindingCase,
    share: Vec<u64>,
    sealed_share: String,
    payload_hex: String,
    sealed_payload: String,
    weak_keys: Vec<String>,
    tampered: Vec<Tampered>,
}

#[derive(Serialize, Deserialize, Clone)]
struct BindingCase {
    study: String,
    round: u64,
    from: u32,
    to: u32,
}

#[derive(Serialize, Deserialize)]
struct Tampered {
    name: String,
    sealed: String,
    /// Who tries to open it: "bob" (the recipient) or "carol" (a third party).
    opener: String,
    binding: BindingCase,
    /// Share length in field elements, or the payload length in bytes when `bytes` is set.
    len: usize,
    #[serde(default)]
    bytes: bool,
    expected: String,
}

struct Parties {
    alice: KeyPair,
    bob: KeyPair,
    carol: KeyPair,
}

fn parties(seed: u64) -> Parties {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Parties {
        alice: KeyPair::generate(&mut rng),
        bob: KeyPair::generate(&mut rng),
        carol: KeyPair::generate(&mut rng),
    }
}

/// Member 1 is alice, member 2 is bob.
fn key_of(p: &Parties, index: u32) -> &KeyPair {
    match index {
        1 => &p.alice,
        2 => &p.bob,
        _ => &p.carol,
    }
}

fn seal_with(p: &Parties, b: &BindingCase, plain: &[u8]) -> Vec<u8> {
    let (from, to) = (key_of(p, b.from), key_of(p, b.to));
    let (fk, tk) = (from.public(), to.public());
    let binding = Binding {
        study: &b.study,
        round: b.round,
        from: b.from,
        to: b.to,
        from_key: &fk,
        to_key: &tk,
    };
    from.agree(&tk)
        .expect("strong key")
        .direction_key(&binding)
        .seal_bytes(plain)
}

/// Opens as `opener`, who agrees with the sender's key and derives the key for `b`.
fn open_with(
    p: &Parties,
    opener: &str,
    b: &BindingCase,
    sealed: &[u8],
    len: usize,
    bytes: bool,
) -> Result<Vec<u8>, String> {
    let me = match opener {
        "bob" => &p.bob,
        "carol" => &p.carol,
        other => panic!("unknown opener {other}"),
    };
    let (fk, tk) = (key_of(p, b.from).public(), key_of(p, b.to).public());
    let binding = Binding {
        study: &b.study,
        round: b.round,
        from: b.from,
        to: b.to,
        from_key: &fk,
        to_key: &tk,
    };
    // Whatever the binding says, the ciphertext came from alice: the opener agrees with her.
    let key = me
        .agree(&p.alice.public())
        .map_err(|e| format!("{e:?}"))?
        .direction_key(&binding);
    if bytes {
        key.open_bytes(sealed, len)
            .map(|z| z.to_vec())
            .map_err(|e| format!("{e:?}"))
    } else {
        key.open(sealed, len)
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .map_err(|e| format!("{e:?}"))
    }
}

fn le_bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Low-order X25519 points: the shared secret with any of them is all zeros.
const WEAK_KEYS_HEX: &[&str] = &[
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

fn gen_envelope() -> String {
    let seed = SEED + 3;
    let p = parties(seed);
    let binding = BindingCase {
        study: "height".into(),
        round: 7,
        from: 1,
        to: 2,
    };
    let share: Vec<u64> = vec![0, 1, 1725, 2_975_625, MODULUS - 1];
    let sealed = seal_with(&p, &binding, &le_bytes(&share));
    let payload: Vec<u8> = (0u8..32).collect();
    let sealed_payload = seal_with(&p, &binding, &payload);
    let mut tampered = Vec::new();
    let mut t =
        |name: &str, sealed: Vec<u8>, opener: &str, b: &BindingCase, len: usize, bytes: bool| {
            let got = open_with(&p, opener, b, &sealed, len, bytes).expect_err(name);
            tampered.push(Tampered {
                name: name.into(),
                sealed: b64::encode(&sealed),
                opener: opener.into(),
                binding: b.clone(),
                len,
                bytes,
                expected: got,
            });
        };
    let n = share.len();
    let flip = |i: usize, bit: u8| {
        let mut s = sealed.clone();
        s[i] ^= 1 << bit;
        s
    };
    t(
        "first ciphertext bit flipped",
        flip(0, 0),
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "middle ciphertext byte changed",
        flip(17, 7),
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "tag bit flipped",
        flip(sealed.len() - 1, 3),
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "tag zeroed",
        {
            let mut s = sealed.clone();
            let l = s.len();
            s[l - 16..].fill(0);
            s
        },
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "truncated by one byte",
        sealed[..sealed.len() - 1].to_vec(),
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "one byte appended",
        {
            let mut s = sealed.clone();
            s.push(0);
            s
        },
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "tag only",
        sealed[sealed.len() - 16..].to_vec(),
        "bob",
        &binding,
        n,
        false,
    );
    t(
        "expected length differs",
        sealed.clone(),
        "bob",
        &binding,
        n + 1,
        false,
    );
    let mut other = binding.clone();
    other.round = 8;
    t(
        "replayed into the next round",
        sealed.clone(),
        "bob",
        &other,
        n,
        false,
    );
    let mut other = binding.clone();
    other.study = "weight".into();
    t(
        "replayed into another study",
        sealed.clone(),
        "bob",
        &other,
        n,
        false,
    );
    let reversed = BindingCase {
        from: 2,
        to: 1,
        ..binding.clone()
    };
    t(
        "opened as the other direction",
        sealed.clone(),
        "bob",
        &reversed,
        n,
        false,
    );
    t(
        "opened by a third party",
        sealed.clone(),
        "carol",
        &binding,
        n,
        false,
    );
    let mut other = binding.clone();
    other.to = 3;
    t(
        "addressed to another recipient index",
        sealed.clone(),
        "bob",
        &other,
        n,
        false,
    );
    // Authentic, but the plaintext is not a canonical field element: refused all the same.
    let non_canonical = seal_with(&p, &binding, &u64::MAX.to_le_bytes());
    t(
        "authentic but non-canonical element",
        non_canonical,
        "bob",
        &binding,
        1,
        false,
    );
    let mut sp = sealed_payload.clone();
    sp[3] ^= 0x40;
    t("seed payload bit flipped", sp, "bob", &binding, 32, true);
    t(
        "seed payload with a share's length",
        sealed_payload.clone(),
        "bob",
        &binding,
        40,
        true,
    );
    // The good ones open.
    assert_eq!(
        open_with(&p, "bob", &binding, &sealed, n, false).unwrap(),
        le_bytes(&share)
    );
    assert_eq!(
        open_with(&p, "bob", &binding, &sealed_payload, 32, true).unwrap(),
        payload
    );
    for w in WEAK_KEYS_HEX {
        let key = PublicKey(unhex(w).try_into().unwrap());
        assert!(p.alice.agree(&key).is_err(), "{w} is weak");
    }
    to_text(&EnvelopeVectors {
        description: "X25519 + HKDF-SHA256 + ChaCha20-Poly1305 sealing. Key pairs alice, bob, \
                      carol = KeyPair::generate three times from ChaCha20Rng::seed_from_u64(seed) \
                      (public keys in base64url). alice (index 1) seals to bob (index 2) under \
                      `binding`: a share vector (8-byte little-endian elements) and a 32-byte \
                      payload (bytes 0..32, hex). Tampered ciphertexts must fail to open with \
                      the given SealError; weak keys are low-order points agree() refuses."
            .into(),
        seed,
        alice: b64::encode(&p.alice.public().0),
        bob: b64::encode(&p.bob.public().0),
        carol: b64::encode(&p.carol.public().0),
        binding,
        share,
        sealed_share: b64::encode(&sealed),
        payload_hex: hex(&payload),
        sealed_payload: b64::encode(&sealed_payload),
        weak_keys: WEAK_KEYS_HEX.iter().map(|s| s.to_string()).collect(),
        tampered,
    })
}

fn check_envelope(text: &str) {
    let v: EnvelopeVectors = parse(text);
    let p = parties(v.seed);
    assert_eq!(b64::encode(&p.alice.public().0), v.alice);
    assert_eq!(b64::encode(&p.bob.public().0), v.bob);
    assert_eq!(b64::encode(&p.carol.public().0), v.carol);
    let sealed = b64::decode(&v.sealed_share).expect("b64");
    assert_eq!(
        open_with(&p, "bob", &v.binding, &sealed, v.share.len(), false).expect("opens"),
        le_bytes(&v.share)
    );
    let sealed_payload = b64::decode(&v.sealed_payload).expect("b64");
    assert_eq!(
        open_with(&p, "bob", &v.binding, &sealed_payload, 32, true).expect("opens"),
        unhex(&v.payload_hex)
    );
    assert!(v.tampered.len() >= 10);
    for t in &v.tampered {
        let bytes = b64::decode(&t.sealed).expect("b64");
        let got = open_with(&p, &t.opener, &t.binding, &bytes, t.len, t.bytes);
        assert_eq!(got, Err(t.expected.clone()), "{}", t.name);
    }
    for w in &v.weak_keys {
        let key = PublicKey(unhex(w).try_into().expect("32 bytes"));
        assert_eq!(
            format!("{:?}", p.alice.agree(&key).expect_err("weak")),
            "WeakKey",
            "{w}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// roster.json

#[derive(Serialize, Deserialize)]
struct RosterVectors {
    description: String,
    seed: u64,
    rosters: Vec<RosterCase>,
}

#[derive(Serialize, Deserialize)]
struct RosterCase {
    roster: Roster,
    reveals: Vec<cohort_core::commitment::Revealed>,
    params_json: String,
    safety_code: String,
}

fn roster_case(spec: &str, round: u64, n: u32, rng: &mut ChaCha20Rng) -> RosterCase {
    use cohort_core::commitment::{Nonce, Revealed, commit};
    let s: StudySpec = spec.parse().expect("valid");
    let reveals: Vec<Revealed> = (1..=n)
        .map(|index| {
            let public_key = KeyPair::generate(rng).public();
            let mut nonce = Nonce([0; 32]);
            rand_core::Rng::fill_bytes(rng, &mut nonce.0);
            Revealed {
                index,
                public_key,
                nonce,
            }
        })
        .collect();
    let roster = Roster {
        threshold: s.params.round_threshold(n),
        members: reveals
            .iter()
            .map(|r| Member {
                index: r.index,
                commitment: commit(&s.params.id, &r.public_key, &r.nonce),
            })
            .collect(),
        study: s.params,
        round,
    };
    roster.check().expect("well formed");
    RosterCase {
        params_json: serde_json::to_string(&roster.study).expect("serializes"),
        safety_code: roster.safety_code(&reveals).as_str().into(),
        roster,
        reveals,
    }
}

fn gen_roster() -> String {
    let seed = SEED + 4;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    to_text(&RosterVectors {
        description: "Frozen rosters of commitments, the reveals, and their safety codes. \
                      Commitment = SHA-256(\"cohort/v2 key commitment\" || u64 BE len(study id) \
                      || study id || public key || nonce). Safety code = SHA-256 over \
                      \"cohort/v2 roster\", u64 BE length + study parameters as compact JSON \
                      (params_json), round (u64 BE), threshold, n, each (index, commitment) \
                      (u32 BE + 32 bytes), u64 BE number of reveals, each (index, public key, \
                      nonce) (u32 BE + 32 + 32 bytes); first 8 digest bytes as u64 BE mod 10^12, \
                      as 12 digits in groups of 4. Per member: KeyPair::generate then 32 nonce \
                      bytes, from ChaCha20Rng::seed_from_u64(seed)."
            .into(),
        seed,
        rosters: vec![
            roster_case(
                "id=demo,size=3,question=What is your height?,unit=cm",
                1,
                3,
                &mut rng,
            ),
            roster_case(
                "id=height,size=10,threshold=6,min=0,max=300,decimals=1,buckets=10",
                42,
                10,
                &mut rng,
            ),
            roster_case(
                "id=small,size=5,threshold=4,min=-10,max=10,buckets=4,min_cohort=2",
                7,
                3,
                &mut rng,
            ),
        ],
    })
}

fn check_roster(text: &str) {
    let v: RosterVectors = parse(text);
    for c in &v.rosters {
        c.roster.check().expect("well formed");
        assert_eq!(
            serde_json::to_string(&c.roster.study).unwrap(),
            c.params_json
        );
        assert_eq!(c.roster.safety_code(&c.reveals).as_str(), c.safety_code);
        for (m, r) in c.roster.members.iter().zip(&c.reveals) {
            assert!(r.opens(&c.roster.study.id, &m.commitment));
        }
        // Any substituted commitment or key changes the code.
        let mut changed = c.roster.clone();
        changed.members[0].commitment.0[0] ^= 1;
        assert_ne!(changed.safety_code(&c.reveals).as_str(), c.safety_code);
        let mut reveals = c.reveals.clone();
        reveals[0].public_key.0[0] ^= 1;
        assert_ne!(c.roster.safety_code(&reveals).as_str(), c.safety_code);
    }
}

// ---------------------------------------------------------------------------------------------
// round.json

#[derive(Serialize, Deserialize)]
struct RoundVectors {
    description: String,
    rounds: Vec<RoundCase>,
}

#[derive(Serialize, Deserialize)]
struct RoundCase {
    name: String,
    spec: String,
    seed: u64,
    values: Vec<String>,
    behaviour: Vec<String>,
    safety_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<RoundResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    abandoned: Option<AbandonReason>,
    transcript_sha256: String,
    frames: Vec<FrameCase>,
}

#[derive(Serialize, Deserialize)]
struct FrameCase {
    dir: String,
    peer: u64,
    now_ms: u64,
    #[serde(rename = "type")]
    kind: String,
    bytes: usize,
    sha256: String,
}

fn behaviour_name(b: Behaviour) -> &'static str {
    match b {
        Behaviour::Honest => "honest",
        Behaviour::VanishBeforeShares => "vanish_before_shares",
        Behaviour::VanishAfterShares => "vanish_after_shares",
        Behaviour::LateShares => "late_shares",
        Behaviour::Forge(_) => "forge",
    }
}

fn behaviour_of(s: &str) -> Behaviour {
    match s {
        "honest" => Behaviour::Honest,
        "vanish_before_shares" => Behaviour::VanishBeforeShares,
        "vanish_after_shares" => Behaviour::VanishAfterShares,
        "late_shares" => Behaviour::LateShares,
        other => panic!("unknown behaviour {other}"),
    }
}

fn round_case(name: &str, spec: &str, seed: u64, behaviour: &[Behaviour]) -> RoundCase {
    let s: StudySpec = spec.parse().expect("valid");
    let values = cohort_core::testing::values(behaviour.len(), seed);
    let out = run_round(&s, &values, behaviour, seed);
    let mut transcript = Sha256::new();
    let frames = out
        .frames
        .iter()
        .map(|f| {
            let (dir, kind) = match f.dir {
                Dir::Up => ("up", PatientToRelay::decode_wire(&f.wire).unwrap().kind()),
                Dir::Down => ("down", RelayToPatient::decode_wire(&f.wire).unwrap().kind()),
            };
            transcript.update((f.wire.as_bytes().len() as u64).to_be_bytes());
            transcript.update(f.wire.as_bytes());
            FrameCase {
                dir: dir.into(),
                peer: f.peer,
                now_ms: f.now_ms,
                kind: kind.into(),
                bytes: f.wire.as_bytes().len(),
                sha256: sha256_hex(f.wire.as_bytes()),
            }
        })
        .collect();
    let first = behaviour
        .iter()
        .position(|b| *b == Behaviour::Honest)
        .expect("an honest patient");
    RoundCase {
        name: name.into(),
        spec: spec.into(),
        seed,
        values: values.iter().map(|v| v.to_string()).collect(),
        behaviour: behaviour
            .iter()
            .map(|b| behaviour_name(*b).into())
            .collect(),
        safety_code: out.safety_codes[first].clone().expect("roster seen"),
        // The partial sums travel in binary after the result's JSON; the frames' hashes
        // cover them, the JSON form here has the rest.
        result: out.results[first].clone().map(|mut r| {
            r.partials.clear();
            r
        }),
        abandoned: out.abandoned[first].clone(),
        transcript_sha256: hex(&transcript.finalize()),
        frames,
    }
}

const ROUNDS: &[(&str, &str, u64, &[Behaviour])] = {
    use Behaviour::{Honest as H, VanishAfterShares as A, VanishBeforeShares as B};
    &[
        (
            "3 patients, additive",
            "id=height,size=3,min=0,max=300,decimals=1,buckets=10",
            SEED + 10,
            &[H, H, H],
        ),
        (
            "5 patients, Shamir 3-of-5, one vanishes after sharing",
            "id=height,size=5,threshold=3,min=0,max=300,decimals=1,buckets=10",
            SEED + 11,
            &[H, H, A, H, H],
        ),
        (
            "4 patients, additive, one vanishes before sharing: abandoned",
            "id=height,size=4,min=0,max=300,decimals=1,buckets=10",
            SEED + 12,
            &[H, B, H, H],
        ),
    ]
};

fn gen_round() -> String {
    to_text(&RoundVectors {
        description: "Whole rounds through the sans-IO machines with the in-memory network of \
                      tests/support/sim.rs: patients created in order with Patient::new from one \
                      ChaCha20Rng::seed_from_u64(seed), values from sim::values(n, seed). Each \
                      frame is the exact JSON text on the wire; its SHA-256 is given, and \
                      transcript_sha256 hashes every frame as u64 BE length + text, in order."
            .into(),
        rounds: ROUNDS
            .iter()
            .map(|(name, spec, seed, b)| round_case(name, spec, *seed, b))
            .collect(),
    })
}

fn check_round_file(text: &str) {
    let v: RoundVectors = parse(text);
    assert_eq!(v.rounds.len(), ROUNDS.len());
    for c in &v.rounds {
        let behaviour: Vec<Behaviour> = c.behaviour.iter().map(|b| behaviour_of(b)).collect();
        let again = round_case(&c.name, &c.spec, c.seed, &behaviour);
        assert_eq!(again.values, c.values);
        assert_eq!(again.safety_code, c.safety_code, "{}", c.name);
        assert_eq!(again.result, c.result, "{}", c.name);
        assert_eq!(again.abandoned, c.abandoned, "{}", c.name);
        assert_eq!(again.frames.len(), c.frames.len(), "{}", c.name);
        for (a, b) in again.frames.iter().zip(&c.frames) {
            assert_eq!(
                (&a.dir, a.peer, &a.kind, &a.sha256),
                (&b.dir, b.peer, &b.kind, &b.sha256),
                "{}",
                c.name
            );
        }
        assert_eq!(again.transcript_sha256, c.transcript_sha256);
        assert_eq!(c.result.is_some(), c.abandoned.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Bad vectors (hand-written).

#[derive(Deserialize)]
struct BadMessage {
    name: String,
    /// "patient_to_relay" or "relay_to_patient".
    direction: String,
    text: String,
    /// Decode with this size limit instead of the default.
    #[serde(default)]
    limit: Option<usize>,
    /// The DecodeError, as its Debug form.
    error: String,
}

/// Every malformed message fails to decode with exactly the expected error.
pub(crate) fn check_bad_messages(text: &str) {
    let cases: Vec<BadMessage> = parse(text);
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for c in &cases {
        let got = match (c.direction.as_str(), c.limit) {
            ("patient_to_relay", None) => PatientToRelay::decode(&c.text).map(|_| ()),
            ("patient_to_relay", Some(l)) => {
                PatientToRelay::decode_with_limit(&c.text, l).map(|_| ())
            }
            ("relay_to_patient", None) => RelayToPatient::decode(&c.text).map(|_| ()),
            ("relay_to_patient", Some(l)) => {
                RelayToPatient::decode_with_limit(&c.text, l).map(|_| ())
            }
            (other, _) => panic!("unknown direction {other}"),
        };
        let got = match got {
            Ok(()) => "decoded".to_string(),
            Err(e) => {
                // Errors never quote input.
                let shown = format!("{e} {e:?}");
                assert!(
                    !c.text.contains("SECRET") || !shown.contains("SECRET"),
                    "{}",
                    c.name
                );
                format!("{e:?}")
            }
        };
        if got != c.error {
            failures.push(format!("{}: expected {}, got {got}", c.name, c.error));
        }
    }
    assert!(
        failures.is_empty(),
        "bad messages:\n{}",
        failures.join("\n")
    );
}

#[derive(Deserialize)]
struct BadValue {
    name: String,
    /// A study in flag form; without it only parsing is checked.
    #[serde(default)]
    study: Option<String>,
    value: String,
    /// The ValueError, as its Debug form.
    error: String,
}

/// Every bad value is refused with exactly the expected error, by parsing, by `check_value`,
/// by `encode` and by `Patient::new`.
pub(crate) fn check_bad_values(text: &str) {
    let cases: Vec<BadValue> = parse(text);
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for c in &cases {
        let got = match (c.value.parse::<Decimal>(), &c.study) {
            (Err(e), _) => format!("{e:?}"),
            (Ok(_), None) => "parsed".into(),
            (Ok(d), Some(spec)) => {
                let spec: StudySpec = spec.parse().expect("valid study");
                let p = &spec.params;
                let a = check_value(p, &d).map(|_| ()).map_err(|e| format!("{e:?}"));
                let b = encode(p, &d).map(|_| ()).map_err(|e| format!("{e:?}"));
                let mut rng = ChaCha20Rng::seed_from_u64(1);
                let patient = Patient::new(0, &p.id, d, Some(p.clone()), None, &mut rng);
                let c3 = match patient {
                    Ok(_) => Ok(()),
                    Err(ProtocolError::Value(e)) => Err(format!("{e:?}")),
                    Err(other) => Err(format!("protocol {other:?}")),
                };
                assert_eq!(a, b, "{}: check_value and encode agree", c.name);
                assert_eq!(a, c3, "{}: check_value and Patient::new agree", c.name);
                match a {
                    Ok(()) => "accepted".into(),
                    Err(e) => e,
                }
            }
        };
        if got != c.error {
            failures.push(format!("{}: expected {}, got {got}", c.name, c.error));
        }
    }
    assert!(failures.is_empty(), "bad values:\n{}", failures.join("\n"));
}

#[derive(Deserialize)]
struct BadStudy {
    name: String,
    /// Flag form, parsed with `StudySpec::from_str`.
    #[serde(default)]
    spec: Option<String>,
    /// JSON form, deserialized then validated.
    #[serde(default)]
    json: Option<serde_json::Value>,
    /// "hospital": the spec is valid but `Hospital::new` refuses it.
    #[serde(default)]
    stage: Option<String>,
    /// The StudyError, as its Debug form.
    error: String,
}

/// Every bad study is refused with exactly the expected error.
pub(crate) fn check_bad_studies(text: &str) {
    let cases: Vec<BadStudy> = parse(text);
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for c in &cases {
        let parsed: Result<StudySpec, String> = match (&c.spec, &c.json) {
            (Some(s), None) => s.parse::<StudySpec>().map_err(|e| format!("{e:?}")),
            (None, Some(j)) => {
                let spec: StudySpec =
                    serde_json::from_value(j.clone()).expect("json study deserializes");
                spec.validate().map(|()| spec).map_err(|e| format!("{e:?}"))
            }
            _ => panic!("{}: give exactly one of spec and json", c.name),
        };
        let got = match (parsed, c.stage.as_deref()) {
            (Err(e), None) => e,
            (Ok(_), None) => "accepted".into(),
            (Ok(spec), Some("hospital")) => match Hospital::new(spec, 1) {
                Ok(_) => "accepted by the hospital".into(),
                Err(e) => format!("{e:?}"),
            },
            (Err(e), Some(_)) => format!("refused before the hospital: {e}"),
            (_, Some(other)) => panic!("unknown stage {other}"),
        };
        if got != c.error {
            failures.push(format!("{}: expected {}, got {got}", c.name, c.error));
        }
    }
    assert!(failures.is_empty(), "bad studies:\n{}", failures.join("\n"));
}

// questionnaire.json

#[derive(Serialize, Deserialize)]
struct QuestionnaireVectors {
    description: String,
    seed: u64,
    studies: Vec<QuestionnaireStudy>,
}

#[derive(Serialize, Deserialize)]
struct QuestionnaireStudy {
    size: u32,
    questions: Vec<Question>,
    /// What each entry of the vector holds.
    layout: Vec<String>,
    patients: Vec<QuestionnairePatient>,
    aggregate: Vec<u64>,
    result: QuestionnaireResult,
}

#[derive(Serialize, Deserialize)]
struct QuestionnairePatient {
    /// `--answer` arguments.
    answers: Vec<String>,
    /// `--skip` arguments.
    skips: Vec<String>,
    vector: Vec<u64>,
}

/// A readable name for one vector entry: `x(height)`, `o(smoker=yes)·a(weight)`, …
fn term_name(qs: &[Question], t: Term) -> String {
    let id = |i: usize| qs[i].id.as_str();
    let label = |q: usize, k: usize| {
        format!(
            "{}={}",
            id(q),
            qs[q].as_choice().expect("a choice").options[k]
        )
    };
    match t {
        Term::Count => "1".into(),
        Term::Answered { question } => format!("a({})", id(question)),
        Term::X { question } => format!("x({})", id(question)),
        Term::X2 { question } => format!("x({})^2", id(question)),
        Term::Bucket { question, bucket } => format!("h{bucket}({})", id(question)),
        Term::Option { question, option } => format!("o({})", label(question, option)),
        Term::PairAnswered { x, y } => format!("a({})·a({})", id(x), id(y)),
        Term::PairX { x, y } => format!("x({})·a({})", id(x), id(y)),
        Term::PairY { x, y } => format!("x({})·a({})", id(y), id(x)),
        Term::PairXX { x, y } => format!("x({})^2·a({})", id(x), id(y)),
        Term::PairYY { x, y } => format!("x({})^2·a({})", id(y), id(x)),
        Term::PairXY { x, y } => format!("x({})·x({})", id(x), id(y)),
        Term::OptionAnswered {
            choice,
            option,
            number,
        } => format!("o({})·a({})", label(choice, option), id(number)),
        Term::OptionX {
            choice,
            option,
            number,
        } => format!("o({})·x({})", label(choice, option), id(number)),
    }
}

fn questionnaire_study(
    questions: &str,
    size: u32,
    patients: &[(Vec<String>, Vec<String>)],
) -> QuestionnaireStudy {
    let qs: Vec<Question> = serde_json::from_str(questions).expect("questions");
    let layout = Layout::new(&qs, size).expect("valid questionnaire");
    let mut agg = vec![Fe::ZERO; layout.len()];
    let mut cases = Vec::new();
    for (answers, skips) in patients {
        let a = Answers::from_args(
            answers.iter().map(String::as_str),
            skips.iter().map(String::as_str),
        )
        .expect("well formed");
        let v = layout.encode(&a).expect("valid answers");
        add_assign_vec(&mut agg, v.as_slice());
        cases.push(QuestionnairePatient {
            answers: answers.clone(),
            skips: skips.clone(),
            vector: raw(v.as_slice()),
        });
    }
    QuestionnaireStudy {
        size,
        layout: layout.terms().iter().map(|&t| term_name(&qs, t)).collect(),
        questions: qs,
        patients: cases,
        aggregate: raw(&agg),
        result: layout.decode(&agg).expect("consistent"),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn gen_questionnaire() -> String {
    let seed = SEED + 5;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // The study of issue 11, five fixed patients.
    let issue = [
        (strings(&["height=160", "smoker=no"]), vec![]),
        (strings(&["height=172.5", "smoker=yes"]), vec![]),
        (strings(&["height=181.3", "smoker=used to"]), vec![]),
        (strings(&["height=165.2", "smoker=no"]), vec![]),
        (strings(&["height=190.0", "smoker=yes"]), vec![]),
    ];
    // Two numbers (one optional) and an optional choice; random answers, some skipped.
    let mut survey = Vec::new();
    for i in 0..6 {
        let mut answers = Vec::new();
        let mut skips = Vec::new();
        answers.push(format!(
            "height={}",
            Decimal::new(1000 + (rng.next_u64() % 1301) as i64, 1).unwrap()
        ));
        // Patient 1 always skips weight, so that the file shows a skipped number.
        if rng.next_u64() % 3 == 0 || i == 1 {
            skips.push("weight".to_string());
        } else {
            answers.push(format!("weight={}", 40 + rng.next_u64() % 81));
        }
        match rng.next_u64() % 4 {
            0 => skips.push("smoker".to_string()),
            k => answers.push(format!(
                "smoker={}",
                ["no", "yes", "used to"][k as usize - 1]
            )),
        }
        survey.push((answers, skips));
    }
    to_text(&QuestionnaireVectors {
        description: "Questionnaire vectors (core/src/layout.rs): per study the questions, what \
                      each vector entry holds, per patient the --answer/--skip arguments and the \
                      vector, the aggregate (entry-wise sum) and the decoded result. Random \
                      answers of the second study from ChaCha20Rng::seed_from_u64(seed)."
            .into(),
        seed,
        studies: vec![
            questionnaire_study(
                r#"[{"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
                    {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]}]"#,
                5,
                &issue,
            ),
            questionnaire_study(
                r#"[{"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":4},
                    {"id":"weight","kind":"number","text":"How much do you weigh?","unit":"kg","min":40,"max":120,"decimals":0,"buckets":4,"optional":true},
                    {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"],"optional":true}]"#,
                6,
                &survey,
            ),
        ],
    })
}

fn check_questionnaire(text: &str) {
    let v: QuestionnaireVectors = parse(text);
    for s in &v.studies {
        let layout = Layout::new(&s.questions, s.size).expect("valid questionnaire");
        let names: Vec<String> = layout
            .terms()
            .iter()
            .map(|&t| term_name(&s.questions, t))
            .collect();
        assert_eq!(names, s.layout);
        let mut agg = vec![Fe::ZERO; layout.len()];
        for p in &s.patients {
            let a = Answers::from_args(
                p.answers.iter().map(String::as_str),
                p.skips.iter().map(String::as_str),
            )
            .expect("well formed");
            let enc = layout.encode(&a).expect("valid answers");
            assert_eq!(raw(enc.as_slice()), p.vector);
            add_assign_vec(&mut agg, &fes(&p.vector));
        }
        assert_eq!(raw(&agg), s.aggregate);
        assert!(layout.decode(&agg).expect("consistent") == s.result);
    }
}
