//! `--questions Q`: a questionnaire of Q required number questions (every pair of them gets
//! its correlation), the study file the relay runs it from, random answers in range, and the
//! exact result a round of those answers must reveal.

use cohort_core::answer::{Answer, Answers};
use cohort_core::decimal::Decimal;
use cohort_core::field::Fe;
use cohort_core::layout::Layout;
use cohort_core::questionnaire::QuestionnaireResult;
use cohort_core::study::StudySpec;
use rand_core::Rng;
use serde_json::{Value, json};

/// Smallest answer, as in the one-question bench study (`min=0`).
pub const MIN: i64 = 0;
/// Largest answer (`max=300`).
pub const MAX: i64 = 300;
/// Fractional digits of an answer (`decimals=1`).
pub const DECIMALS: u32 = 1;
/// Histogram buckets per question (`buckets=10`).
pub const BUCKETS: u16 = 10;

/// The id of question `k` (0-based): `q1`, `q2`, …
pub fn question_id(k: usize) -> String {
    format!("q{}", k + 1)
}

/// The study id of a `q`-question bench of `n` patients.
pub fn study_id(n: usize, q: usize) -> String {
    format!("bench{n}q{q}")
}

/// The study's JSON form (`cohort-relay --study-file`): `n` patients, additive (threshold
/// `n`), `q` required number questions in `[0, 300]` with one decimal and 10 buckets each,
/// deadlines as long as the one-question bench study's.
pub fn study_json(n: usize, q: usize) -> Value {
    let questions: Vec<Value> = (0..q)
        .map(|k| {
            json!({
                "id": question_id(k),
                "kind": "number",
                "text": format!("bench question {}", k + 1),
                "min": MIN,
                "max": MAX,
                "decimals": DECIMALS,
                "buckets": BUCKETS,
            })
        })
        .collect();
    json!({
        "id": study_id(n, q),
        "size": n,
        "threshold": n,
        "min_cohort": 3,
        "shares_s": 3600,
        "partials_s": 3600,
        "questions": questions,
    })
}

/// The study specification of [`study_json`], as the relay reads it.
pub fn spec(n: usize, q: usize) -> Result<StudySpec, String> {
    StudySpec::from_json(&study_json(n, q).to_string())
        .map_err(|e| format!("the bench's {q}-question study: {e}"))
}

/// One patient's answers: every question answered, uniformly at random in range (on the
/// question's 0.1 grid).
pub fn random_answers<R: Rng + ?Sized>(q: usize, rng: &mut R) -> Answers {
    let steps = ((MAX - MIN) * 10i64.pow(DECIMALS)) as u64 + 1;
    let mut a = Answers::new();
    for k in 0..q {
        let scaled = MIN * 10i64.pow(DECIMALS) + (rng.next_u64() % steps) as i64;
        let d = Decimal::new(scaled, DECIMALS as u8).expect("in range");
        a.set(&question_id(k), Answer::Number(d))
            .expect("a fresh question id");
    }
    a
}

/// The questionnaire result a round in which every one of `answers` is included must reveal:
/// the plaintext sum of the patients' encoded answers, decoded as the Hospital decodes the
/// protocol's aggregate.
pub fn expected(spec: &StudySpec, answers: &[Answers]) -> Result<QuestionnaireResult, String> {
    let layout: Layout = spec.params.layout().map_err(|e| format!("layout: {e}"))?;
    let mut sum = vec![Fe::ZERO; layout.len()];
    for a in answers {
        let resolved = layout.check(a).map_err(|e| format!("answers: {e}"))?;
        for (s, x) in sum.iter_mut().zip(layout.encode_resolved(&resolved)) {
            *s += x;
        }
    }
    layout
        .decode(&sum)
        .map_err(|e| format!("decoding the expected aggregate: {e:?}"))
}
