//! Questionnaires end to end, without the protocol: answers → vectors → their sum → the decoded
//! result, checked against statistics computed directly (in `f64`) from the plain answers.

use cohort_core::answer::{Answer, Answers};
use cohort_core::decimal::Decimal;
use cohort_core::encoding;
use cohort_core::error::{AggregateError, AnswerError, ValueError};
use cohort_core::field::{Fe, add_assign_vec};
use cohort_core::layout::Layout;
use cohort_core::question::{
    ChoiceQuestion, NumberQuestion, Question, QuestionKind, SINGLE_QUESTION_ID,
};
use cohort_core::questionnaire::{QuestionStats, QuestionnaireResult};
use cohort_core::study::{StudyParams, StudySpec};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn questions(json: &str) -> Vec<Question> {
    serde_json::from_str(json).expect("questions parse")
}

/// Sums the vectors of every answer set and decodes the aggregate.
fn round(layout: &Layout, patients: &[Answers]) -> QuestionnaireResult {
    let mut agg = vec![Fe::ZERO; layout.len()];
    for a in patients {
        add_assign_vec(
            &mut agg,
            layout.encode(a).expect("valid answers").as_slice(),
        );
    }
    layout.decode(&agg).expect("consistent aggregate")
}

fn args(answers: &[&str], skips: &[&str]) -> Answers {
    Answers::from_args(answers.iter().copied(), skips.iter().copied()).expect("well formed")
}

fn close(got: f64, want: f64, scale: f64) -> bool {
    (got - want).abs() <= 1e-9 * got.abs().max(want.abs()).max(scale)
}

#[track_caller]
fn assert_close(got: Option<f64>, want: Option<f64>, scale: f64, what: &str) {
    match (got, want) {
        (Some(g), Some(w)) => assert!(close(g, w, scale), "{what}: got {g}, want {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

fn number<'a>(r: &'a QuestionnaireResult, id: &str) -> &'a cohort_core::questionnaire::NumberStats {
    match r.questions.get(id) {
        Some(QuestionStats::Number(n)) => n,
        other => panic!("{id}: {other:?}"),
    }
}

fn choice<'a>(r: &'a QuestionnaireResult, id: &str) -> &'a cohort_core::questionnaire::ChoiceStats {
    match r.questions.get(id) {
        Some(QuestionStats::Choice(c)) => c,
        other => panic!("{id}: {other:?}"),
    }
}

const ISSUE_STUDY: &str = r#"[{"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},{"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]}]"#;

/// The study of issue 11 (height 100–230 cm, one decimal, 13 buckets; smoker no/yes/used to)
/// with five patients.
#[test]
fn issue_example_decodes() {
    let layout = Layout::new(&questions(ISSUE_STUDY), 5).unwrap();
    // 1 + (2 + 13) + 3 + smoker×height 3·2
    assert_eq!(layout.len(), 25);
    let patients = [
        args(&["height=160", "smoker=no"], &[]),
        args(&["height=172.5", "smoker=yes"], &[]),
        args(&["height=181.3", "smoker=used to"], &[]),
        args(&["height=165.2", "smoker=no"], &[]),
        args(&["height=190.0", "smoker=yes"], &[]),
    ];
    let r = round(&layout, &patients);
    assert_eq!(r.count, 5);
    let h = number(&r, "height");
    assert_eq!(h.count, 5);
    assert!(close(h.sum, 869.0, 1.0));
    assert_close(h.mean, Some(173.8), 1.0, "mean");
    let xs = [160.0, 172.5, 181.3, 165.2, 190.0];
    let var = xs
        .iter()
        .map(|x: &f64| (x - 173.8) * (x - 173.8))
        .sum::<f64>()
        / 5.0;
    assert_close(h.stddev, Some(var.sqrt()), 1.0, "stddev");
    assert_eq!(h.histogram, [0, 0, 0, 0, 0, 0, 2, 1, 1, 1, 0, 0, 0]);
    let s = choice(&r, "smoker");
    assert_eq!(s.count, 5);
    assert!(r.pairs.is_empty());
    let by: Vec<(&str, u64)> = r
        .by_option
        .iter()
        .map(|b| {
            assert_eq!((b.choice.as_str(), b.number.as_str()), ("smoker", "height"));
            (b.option.as_str(), b.n)
        })
        .collect();
    assert_eq!(by, [("no", 2), ("yes", 2), ("used to", 1)]);
    assert_close(r.by_option[0].mean, Some(162.6), 1.0, "no");
    assert_close(r.by_option[1].mean, Some(181.25), 1.0, "yes");
    assert_close(r.by_option[2].mean, Some(181.3), 1.0, "used to");
    // The JSON shape of issue 11, options and questions in study order.
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.starts_with(
            r#"{"count":5,"questions":{"height":{"count":5,"sum":869.0,"mean":173.8,"#
        ),
        "{json}"
    );
    assert!(
        json.contains(r#""smoker":{"count":5,"counts":{"no":2,"yes":2,"used to":1}}},"pairs":[],"by_option":[{"choice":"smoker","number":"height","option":"no","n":2,"mean":162.6}"#),
        "{json}"
    );
    let back: QuestionnaireResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

/// A patient's plain answer, for the reference computation.
#[derive(Clone, Copy)]
enum Plain {
    Skip,
    /// Offset fixed-point value and the real value.
    Number(u64, f64),
    Choice(usize),
}

fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn random_questions(rng: &mut ChaCha20Rng) -> Vec<Question> {
    let m = 1 + below(rng, 6) as usize;
    (0..m)
        .map(|i| {
            let optional = below(rng, 3) == 0;
            let kind = if below(rng, 3) == 0 {
                let k = 2 + below(rng, 4) as usize;
                QuestionKind::Choice(ChoiceQuestion {
                    options: (0..k).map(|o| format!("option {o}")).collect(),
                })
            } else {
                let decimals = below(rng, 3) as u8;
                // Small ranges now and then, so that equal values and zero variances occur.
                let range = if below(rng, 4) == 0 {
                    1 + below(rng, 3)
                } else {
                    1 + below(rng, 5000)
                } as i64;
                let lo = below(rng, 20001) as i64 - 10000;
                QuestionKind::Number(NumberQuestion {
                    unit: "u".into(),
                    min: Decimal::new(lo, decimals).unwrap(),
                    max: Decimal::new(lo + range, decimals).unwrap(),
                    decimals,
                    buckets: 1 + below(rng, 12) as u16,
                })
            };
            Question {
                id: format!("q{i}"),
                text: String::new(),
                optional,
                kind,
            }
        })
        .collect()
}

/// One random answer set, as `Answers` (in the various accepted forms) and as plain values.
fn random_answers(rng: &mut ChaCha20Rng, qs: &[Question]) -> (Answers, Vec<Plain>) {
    let mut answers = Answers::new();
    let mut plain = Vec::new();
    for q in qs {
        if q.optional && below(rng, 4) == 0 {
            // Skipped explicitly or by leaving the question out.
            if below(rng, 2) == 0 {
                answers.set(&q.id, Answer::Skip).unwrap();
            }
            plain.push(Plain::Skip);
            continue;
        }
        match &q.kind {
            QuestionKind::Number(n) => {
                let r = n.range_scaled();
                let x = match below(rng, 8) {
                    0 => 0,
                    1 => r,
                    _ => below(rng, r + 1),
                };
                let d = Decimal::new(n.min_scaled() + x as i64, n.decimals).unwrap();
                let answer = match below(rng, 3) {
                    0 => Answer::Number(d),
                    1 => Answer::from_f64(d.to_f64()).unwrap(),
                    _ => Answer::Text(d.to_string()),
                };
                answers.set(&q.id, answer).unwrap();
                plain.push(Plain::Number(x, d.to_f64()));
            }
            QuestionKind::Choice(c) => {
                let k = below(rng, c.options.len() as u64) as usize;
                answers
                    .set(&q.id, Answer::Text(c.options[k].clone()))
                    .unwrap();
                plain.push(Plain::Choice(k));
            }
        }
    }
    (answers, plain)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Checks a decoded result against statistics computed directly from the plain answers.
fn check_against_plain(qs: &[Question], plain: &[Vec<Plain>], r: &QuestionnaireResult) {
    assert_eq!(r.count, plain.len() as u64);
    let values = |i: usize| -> Vec<Option<f64>> {
        plain
            .iter()
            .map(|p| match p[i] {
                Plain::Number(_, v) => Some(v),
                _ => None,
            })
            .collect()
    };
    let magnitude = |q: &Question| {
        let n = q.as_number().unwrap();
        n.min.to_f64().abs().max(n.max.to_f64().abs()).max(1.0)
    };
    let width = |q: &Question| {
        let n = q.as_number().unwrap();
        n.max.to_f64() - n.min.to_f64()
    };
    for (i, q) in qs.iter().enumerate() {
        match &q.kind {
            QuestionKind::Number(nq) => {
                let s = number(r, &q.id);
                let vals: Vec<f64> = values(i).into_iter().flatten().collect();
                assert_eq!(s.count, vals.len() as u64, "{}", q.id);
                let scale = magnitude(q);
                assert!(
                    close(s.sum, vals.iter().sum(), scale * vals.len() as f64),
                    "{} sum",
                    q.id
                );
                let m = mean(&vals);
                assert_close(s.mean, m, scale, "mean");
                let sd = m.map(|m| {
                    (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64).sqrt()
                });
                assert_close(s.stddev, sd, width(q), "stddev");
                let mut hist = vec![0u64; usize::from(nq.buckets)];
                for p in plain {
                    if let Plain::Number(x, _) = p[i] {
                        let b = (x * u64::from(nq.buckets) / nq.range_scaled()) as usize;
                        hist[b.min(usize::from(nq.buckets) - 1)] += 1;
                    }
                }
                assert_eq!(s.histogram, hist, "{} histogram", q.id);
            }
            QuestionKind::Choice(c) => {
                let s = choice(r, &q.id);
                let mut counts = vec![0u64; c.options.len()];
                for p in plain {
                    if let Plain::Choice(k) = p[i] {
                        counts[k] += 1;
                    }
                }
                assert_eq!(s.count, counts.iter().sum::<u64>());
                let got: Vec<(String, u64)> = s.counts.0.clone();
                let want: Vec<(String, u64)> = c.options.iter().cloned().zip(counts).collect();
                assert_eq!(got, want);
            }
        }
    }
    // Pairs, in order.
    let numbers: Vec<usize> = (0..qs.len())
        .filter(|&i| qs[i].as_number().is_some())
        .collect();
    let mut pairs = r.pairs.iter();
    for (k, &i) in numbers.iter().enumerate() {
        for &j in &numbers[k + 1..] {
            let p = pairs.next().expect("a pair per pair of numbers");
            assert_eq!(
                (p.x.as_str(), p.y.as_str()),
                (qs[i].id.as_str(), qs[j].id.as_str())
            );
            let both: Vec<(f64, f64, u64, u64)> = plain
                .iter()
                .filter_map(|p| match (p[i], p[j]) {
                    (Plain::Number(ux, x), Plain::Number(uy, y)) => Some((x, y, ux, uy)),
                    _ => None,
                })
                .collect();
            assert_eq!(p.n, both.len() as u64);
            let xs: Vec<f64> = both.iter().map(|b| b.0).collect();
            let ys: Vec<f64> = both.iter().map(|b| b.1).collect();
            let (mx, my) = (mean(&xs), mean(&ys));
            assert_close(p.mean_x, mx, magnitude(&qs[i]), "mean_x");
            assert_close(p.mean_y, my, magnitude(&qs[j]), "mean_y");
            let x_varies = both.iter().any(|b| b.2 != both[0].2);
            let y_varies = both.iter().any(|b| b.3 != both[0].3);
            let (sxx, syy, sxy) = match (mx, my) {
                (Some(mx), Some(my)) => both.iter().fold((0.0, 0.0, 0.0), |(a, b, c), t| {
                    let (dx, dy) = (t.0 - mx, t.1 - my);
                    (a + dx * dx, b + dy * dy, c + dx * dy)
                }),
                _ => (0.0, 0.0, 0.0),
            };
            let r_want = (x_varies && y_varies).then(|| sxy / (sxx * syy).sqrt());
            assert_close(p.r, r_want, 1.0, "r");
            let slope = x_varies.then(|| sxy / sxx);
            let slope_scale = width(&qs[j]) / width(&qs[i]);
            assert_close(p.slope, slope, slope_scale, "slope");
            let intercept = slope.map(|b| my.unwrap() - b * mx.unwrap());
            let intercept_scale = slope.map_or(0.0, |b| {
                my.unwrap().abs() + (b * mx.unwrap()).abs() + width(&qs[j])
            });
            assert_close(p.intercept, intercept, intercept_scale, "intercept");
        }
    }
    assert!(pairs.next().is_none());
    // By option: every choice, every number, every option.
    let mut by = r.by_option.iter();
    for c in (0..qs.len()).filter(|&c| qs[c].as_choice().is_some()) {
        for &q in &numbers {
            for (k, label) in qs[c].as_choice().unwrap().options.iter().enumerate() {
                let b = by.next().expect("an entry per option");
                assert_eq!(
                    (b.choice.as_str(), b.number.as_str(), b.option.as_str()),
                    (qs[c].id.as_str(), qs[q].id.as_str(), label.as_str())
                );
                let vals: Vec<f64> = plain
                    .iter()
                    .filter_map(|p| match (p[c], p[q]) {
                        (Plain::Choice(o), Plain::Number(_, v)) if o == k => Some(v),
                        _ => None,
                    })
                    .collect();
                assert_eq!(b.n, vals.len() as u64);
                assert_close(b.mean, mean(&vals), magnitude(&qs[q]), "by-option mean");
            }
        }
    }
    assert!(by.next().is_none());
}

/// 400 random questionnaires (1–6 questions, numbers and choices, some optional) with random
/// cohorts: decoding the sum of the encoded answers gives the statistics of the plain answers.
#[test]
fn random_questionnaires_match_plain_statistics() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7175_6573_7431); // "quest1"
    for case in 0..400 {
        let qs = random_questions(&mut rng);
        let size = 2 + below(&mut rng, 40) as u32;
        let layout = Layout::new(&qs, size).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let n = 1 + below(&mut rng, u64::from(size)) as usize;
        let mut agg = vec![Fe::ZERO; layout.len()];
        let mut plain = Vec::new();
        for _ in 0..n {
            let (answers, p) = random_answers(&mut rng, &qs);
            add_assign_vec(&mut agg, layout.encode(&answers).unwrap().as_slice());
            plain.push(p);
        }
        let r = layout
            .decode(&agg)
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        check_against_plain(&qs, &plain, &r);
        let back: QuestionnaireResult =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r, "case {case}: JSON round trip");
    }
}

const TWO_NUMBERS: &str = r#"[{"id":"x","kind":"number","text":"","min":-10,"max":10,"decimals":1,"buckets":4},{"id":"y","kind":"number","text":"","min":0,"max":100,"decimals":2,"buckets":5,"optional":true}]"#;

fn pair_of(xs: &[&str], ys: &[&str]) -> QuestionnaireResult {
    let layout = Layout::new(&questions(TWO_NUMBERS), 10).unwrap();
    let patients: Vec<Answers> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| {
            if y.is_empty() {
                args(&[&format!("x={x}")], &["y"])
            } else {
                args(&[&format!("x={x}"), &format!("y={y}")], &[])
            }
        })
        .collect();
    round(&layout, &patients)
}

/// Known correlations and lines, with a negative minimum and different decimals per question.
#[test]
fn pair_with_known_line() {
    // y = 2x + 1 exactly: r = 1, slope 2, intercept 1.
    let r = pair_of(&["0", "1", "1.5", "3", "4.5"], &["1", "3", "4", "7", "10"]);
    let p = &r.pairs[0];
    assert_eq!((p.x.as_str(), p.y.as_str(), p.n), ("x", "y", 5));
    assert_close(p.r, Some(1.0), 1.0, "r");
    assert_close(p.slope, Some(2.0), 1.0, "slope");
    assert_close(p.intercept, Some(1.0), 1.0, "intercept");
    assert_close(p.mean_x, Some(2.0), 1.0, "mean_x");
    assert_close(p.mean_y, Some(5.0), 1.0, "mean_y");
    // x = 1..5, y = 2,4,5,4,5: Sxy = 6, Sxx = 10, Syy = 6: r = 6/√60, slope 0.6, intercept 2.2.
    let r = pair_of(&["1", "2", "3", "4", "5"], &["2", "4", "5", "4", "5"]);
    let p = &r.pairs[0];
    assert_close(p.r, Some(6.0 / 60f64.sqrt()), 1.0, "r");
    assert_close(p.slope, Some(0.6), 1.0, "slope");
    assert_close(p.intercept, Some(2.2), 1.0, "intercept");
    // Decreasing: y = 50 − 5x.
    let r = pair_of(&["-10", "0", "10"], &["100", "50", "0"]);
    assert_close(r.pairs[0].r, Some(-1.0), 1.0, "r");
    assert_close(r.pairs[0].slope, Some(-5.0), 1.0, "slope");
    assert_close(r.pairs[0].intercept, Some(50.0), 1.0, "intercept");
}

/// A skipped optional question counts for nobody: its own count, the pair and the line leave
/// the patient out; undefined statistics are null, never NaN.
#[test]
fn optional_skips_and_nulls() {
    // The third patient skips y: the line comes from the other four (y = 2x + 1).
    let r = pair_of(&["0", "1", "9.9", "3", "4.5"], &["1", "3", "", "7", "10"]);
    assert_eq!(r.count, 5);
    assert_eq!(number(&r, "x").count, 5);
    let y = number(&r, "y");
    assert_eq!((y.count, y.histogram.iter().sum::<u64>()), (4, 4));
    assert_close(y.mean, Some(5.25), 1.0, "mean y");
    let p = &r.pairs[0];
    assert_eq!(p.n, 4);
    assert_close(p.slope, Some(2.0), 1.0, "slope");
    assert_close(p.intercept, Some(1.0), 1.0, "intercept");
    assert_close(p.mean_x, Some(2.125), 1.0, "mean_x over both");
    // Nobody answers y: its mean and stddev, and the whole pair, are null.
    let r = pair_of(&["1", "2"], &["", ""]);
    let y = number(&r, "y");
    assert_eq!((y.count, y.sum, y.mean, y.stddev), (0, 0.0, None, None));
    let p = &r.pairs[0];
    assert_eq!(
        (p.n, p.mean_x, p.mean_y, p.r, p.slope, p.intercept),
        (0, None, None, None, None, None)
    );
    // One patient answers both: means exist, r and the line do not.
    let r = pair_of(&["1", "2"], &["5", ""]);
    let p = &r.pairs[0];
    assert_eq!(p.n, 1);
    assert_close(p.mean_x, Some(1.0), 1.0, "mean_x");
    assert_eq!((p.r, p.slope, p.intercept), (None, None, None));
    // x constant: no r, no line. y constant: r undefined, the line is flat.
    let r = pair_of(&["3", "3", "3"], &["1", "2", "3"]);
    assert_eq!((r.pairs[0].r, r.pairs[0].slope), (None, None));
    let r = pair_of(&["1", "2", "3"], &["7", "7", "7"]);
    assert_eq!(r.pairs[0].r, None);
    assert_close(r.pairs[0].slope, Some(0.0), 1.0, "flat slope");
    assert_close(r.pairs[0].intercept, Some(7.0), 1.0, "flat intercept");
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.contains(r#""r":null"#) && !json.contains("NaN"),
        "{json}"
    );
}

/// Means per option, with an optional choice and an optional number, and an option nobody
/// chose (null mean).
#[test]
fn by_option_means() {
    let qs = questions(
        r#"[{"id":"smoker","kind":"choice","text":"","options":["no","yes","used to"],"optional":true},
            {"id":"age","kind":"number","text":"","min":18,"max":99,"decimals":0,"buckets":9},
            {"id":"weight","kind":"number","text":"","min":30,"max":200,"decimals":1,"buckets":17,"optional":true}]"#,
    );
    let layout = Layout::new(&qs, 6).unwrap();
    let patients = [
        args(&["smoker=no", "age=30", "weight=70.5"], &[]),
        args(&["smoker=no", "age=40"], &["weight"]),
        args(&["smoker=yes", "age=50", "weight=90"], &[]),
        args(&["age=60", "weight=100"], &["smoker"]),
        args(&["smoker=no", "age=20", "weight=60.5"], &[]),
    ];
    let r = round(&layout, &patients);
    let s = choice(&r, "smoker");
    assert_eq!(s.count, 4);
    assert_eq!(s.counts.get("no"), Some(&3));
    assert_eq!(s.counts.get("used to"), Some(&0));
    let got: Vec<(&str, &str, u64, Option<f64>)> = r
        .by_option
        .iter()
        .map(|b| (b.number.as_str(), b.option.as_str(), b.n, b.mean))
        .collect();
    assert_eq!(
        got,
        [
            ("age", "no", 3, Some(30.0)),
            ("age", "yes", 1, Some(50.0)),
            ("age", "used to", 0, None),
            ("weight", "no", 2, Some(65.5)),
            ("weight", "yes", 1, Some(90.0)),
            ("weight", "used to", 0, None),
        ]
    );
    assert_eq!(r.pairs[0].n, 4);
}

/// Answer errors name the question; aggregate errors catch a wrong or corrupted sum.
#[test]
fn errors_name_the_question() {
    let layout = Layout::new(&questions(ISSUE_STUDY), 5).unwrap();
    let err = |a: &[&str], s: &[&str]| layout.encode(&args(a, s)).unwrap_err();
    let id = |s: &str| s.to_string();
    assert_eq!(
        err(&["height=170", "smoker=no", "weight=3"], &[]),
        AnswerError::UnknownQuestion {
            question: id("weight")
        }
    );
    assert_eq!(
        err(&["height=170"], &[]),
        AnswerError::Missing {
            question: id("smoker")
        }
    );
    assert_eq!(
        err(&["height=170"], &["smoker"]),
        AnswerError::SkippedRequired {
            question: id("smoker")
        }
    );
    assert_eq!(
        err(&["height=99.9", "smoker=no"], &[]),
        AnswerError::Value {
            question: id("height"),
            source: ValueError::OutOfRange
        }
    );
    assert_eq!(
        err(&["height=170.25", "smoker=no"], &[]),
        AnswerError::Value {
            question: id("height"),
            source: ValueError::TooManyDecimals { allowed: 1 }
        }
    );
    assert_eq!(
        err(&["height=170", "smoker=No"], &[]),
        AnswerError::UnknownOption {
            question: id("smoker")
        }
    );
    let e = err(&["height=170", "smoker=maybe"], &[]);
    assert_eq!(
        e.to_string(),
        r#"question "smoker": not one of its options"#
    );
    assert!(!format!("{e:?}").contains("maybe"), "no answer in errors");
    // Aggregates: wrong length, nobody, a histogram that disagrees with the count.
    let mut agg = layout
        .encode(&args(&["height=170", "smoker=no"], &[]))
        .unwrap()
        .as_slice()
        .to_vec();
    assert_eq!(layout.decode(&agg[1..]), Err(AggregateError::WrongLength));
    agg[3] = Fe::ONE; // a second bucket
    assert_eq!(layout.decode(&agg), Err(AggregateError::Inconsistent));
    assert_eq!(
        layout.decode(&vec![Fe::ZERO; layout.len()]),
        Err(AggregateError::Inconsistent)
    );
}

/// A one-question study from `StudyParams` encodes exactly today's single-number vector and
/// decodes to the same statistics, so the protocol can switch to `Layout` without changing
/// results.
#[test]
fn single_number_study_is_todays_encoding() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7175_6573_7432);
    for spec in [
        "id=height,size=10,min=0,max=300,decimals=1,buckets=10",
        "id=temp,size=5,min=-40.5,max=45.25,decimals=2,buckets=7",
        "id=count,size=50,min=3,max=9,decimals=0,buckets=1",
    ] {
        let p: StudyParams = spec.parse::<StudySpec>().unwrap().params;
        let layout = Layout::from_params(&p).unwrap();
        assert_eq!(layout.questions()[0].id, SINGLE_QUESTION_ID);
        assert_eq!(layout.len(), p.vector_len());
        let lo = p.min.to_scaled(p.decimals).unwrap();
        let r = p.range_scaled();
        let mut old = vec![Fe::ZERO; p.vector_len()];
        let mut new = vec![Fe::ZERO; layout.len()];
        for i in 0..p.size {
            let x = match i {
                0 => 0,
                1 => r,
                _ => below(&mut rng, r + 1),
            };
            let d = Decimal::new(lo + x as i64, p.decimals).unwrap();
            let a = encoding::encode(&p, &d).unwrap();
            let b = layout.encode(&Answers::single(d)).unwrap();
            assert_eq!(a.as_slice(), b.as_slice(), "{spec}: same vector");
            add_assign_vec(&mut old, a.as_slice());
            add_assign_vec(&mut new, b.as_slice());
        }
        let s = encoding::decode(&p, &old).unwrap();
        let q = layout.decode(&new).unwrap();
        let n = number(&q, SINGLE_QUESTION_ID);
        assert_eq!(q.count, s.count);
        assert_eq!(n.count, s.count);
        assert_eq!(n.sum, s.sum, "{spec}: bit-identical sum");
        assert_eq!(n.mean, Some(s.mean), "{spec}: bit-identical mean");
        assert_eq!(n.stddev, Some(s.stddev), "{spec}: bit-identical stddev");
        assert_eq!(n.histogram, s.histogram);
        // The CLI form `--answer value=X` is the same answer as `--value X`.
        let d = Decimal::new(lo + 1, p.decimals).unwrap();
        assert_eq!(
            layout
                .encode(&args(&[&format!("value={d}")], &[]))
                .unwrap()
                .as_slice(),
            encoding::encode(&p, &d).unwrap().as_slice()
        );
    }
}

/// Corrupted aggregates (one entry changed, or every entry random) are decoded or refused,
/// never a panic, and whatever decodes stays within bounds (count within the cohort, r in
/// [−1, 1], finite means and lines).
#[test]
fn corrupted_aggregates_never_panic() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7175_6573_7433);
    let mut accepted = 0;
    for _ in 0..300 {
        let qs = random_questions(&mut rng);
        let size = 2 + below(&mut rng, 40) as u32;
        let layout = Layout::new(&qs, size).unwrap();
        let mut agg = vec![Fe::ZERO; layout.len()];
        for _ in 0..1 + below(&mut rng, u64::from(size)) {
            let (answers, _) = random_answers(&mut rng, &qs);
            add_assign_vec(&mut agg, layout.encode(&answers).unwrap().as_slice());
        }
        let i = below(&mut rng, agg.len() as u64) as usize;
        agg[i] = match below(&mut rng, 4) {
            0 => agg[i] + Fe::ONE,
            1 => agg[i] - Fe::ONE,
            2 => Fe::random(&mut rng),
            _ => Fe::ZERO,
        };
        let random: Vec<Fe> = (0..agg.len())
            .map(|_| Fe::new(below(&mut rng, 4)))
            .collect();
        for v in [agg, random] {
            if let Ok(r) = layout.decode(&v) {
                accepted += 1;
                assert!(r.count >= 1 && r.count <= u64::from(size));
                for p in &r.pairs {
                    assert!(p.r.is_none_or(|r| (-1.0..=1.0).contains(&r)));
                    assert!(p.slope.is_none_or(f64::is_finite));
                    assert!(p.intercept.is_none_or(f64::is_finite));
                }
                for b in &r.by_option {
                    assert!(b.mean.is_none_or(f64::is_finite));
                }
            }
        }
    }
    // Changing an entry by zero (e.g. a histogram bucket already 0 set to 0) keeps it valid.
    assert!(accepted > 0);
}

// ---- Questionnaire studies through the whole protocol (simulated network) ----

use cohort_core::error::{ProtocolError, QuestionnaireError, StudyError};
use cohort_core::protocol::{HospitalEvent, Patient};
use cohort_core::testing::{Behaviour, assert_exact, run_round, run_round_answers, spec, values};

/// Number, optional number and optional choice, as a study file would give them.
const SURVEY: &str = r#"{"id":"survey","size":7,"threshold":5,"min_cohort":3,"shares_s":30,
  "questions":[
    {"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
    {"id":"weight","kind":"number","text":"Weight?","unit":"kg","min":30,"max":200,"decimals":0,"buckets":10,"optional":true},
    {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"],"optional":true}]}"#;

/// Runs a questionnaire round of `spec` with these answers, every patient honest, and checks that
/// the hospital's and every patient's result are one and the same and equal the statistics of
/// the plain answers. Returns that result.
fn protocol_round(
    spec: &StudySpec,
    answers: &[Answers],
    plain: &[Vec<Plain>],
    seed: u64,
) -> QuestionnaireResult {
    let n = answers.len();
    let out = run_round_answers(spec, answers, &vec![Behaviour::Honest; n], seed);
    let first = out.results[0].clone().expect("round completed");
    assert_eq!(first.statistics.is_some(), spec.params.is_single());
    for r in &out.results {
        assert_eq!(
            r.as_ref(),
            Some(&first),
            "every patient sees the same result"
        );
    }
    let hospital = out
        .events
        .iter()
        .find_map(|e| match e {
            HospitalEvent::Completed(o) => Some(o.clone()),
            _ => None,
        })
        .expect("the hospital completed the round");
    assert_eq!(hospital.questionnaire, first.questionnaire);
    assert_eq!(hospital.statistics, first.statistics);
    check_against_plain(&spec.params.question_list(), plain, &first.questionnaire);
    first.questionnaire
}

fn survey_answers() -> (Vec<Answers>, Vec<Vec<Plain>>) {
    let rows: [(&[&str], &[&str]); 7] = [
        (&["height=160", "weight=55", "smoker=no"], &[]),
        (&["height=172.5", "weight=80", "smoker=yes"], &[]),
        (&["height=181.3", "smoker=used to"], &["weight"]),
        (&["height=165.2", "weight=61"], &["smoker"]),
        (&["height=190.0", "weight=95", "smoker=yes"], &[]),
        (&["height=100", "weight=200"], &[]),
        (&["height=230"], &["weight", "smoker"]),
    ];
    let spec = StudySpec::from_json(SURVEY).unwrap();
    let qs = spec.params.question_list();
    let answers: Vec<Answers> = rows.iter().map(|(a, s)| args(a, s)).collect();
    let plain = answers
        .iter()
        .map(|a| {
            qs.iter()
                .map(|q| match (a.get(&q.id), &q.kind) {
                    (None | Some(Answer::Skip), _) => Plain::Skip,
                    (Some(Answer::Text(t)), QuestionKind::Number(n)) => {
                        let d: Decimal = t.parse().unwrap();
                        let x = (d.to_scaled(n.decimals).unwrap() - n.min_scaled()) as u64;
                        Plain::Number(x, d.to_f64())
                    }
                    (Some(Answer::Text(t)), QuestionKind::Choice(c)) => {
                        Plain::Choice(c.options.iter().position(|o| o == t).unwrap())
                    }
                    _ => unreachable!("answers are text"),
                })
                .collect()
        })
        .collect();
    (answers, plain)
}

/// The survey (number, optional number, optional choice, with skips) over the simulated
/// network, Shamir (t = 5 of 7) and additive (t = n = 7): hospital and every patient decode
/// the statistics of the plain answers.
#[test]
fn questionnaire_round_shamir_and_additive() {
    let (answers, plain) = survey_answers();
    for (threshold, seed) in [(5u32, 11u64), (7, 12)] {
        let mut spec = StudySpec::from_json(SURVEY).unwrap();
        spec.params.threshold = threshold;
        spec.validate().unwrap();
        let r = protocol_round(&spec, &answers, &plain, seed);
        assert_eq!(r.count, 7);
        assert_eq!(number(&r, "weight").count, 5);
        assert_eq!(choice(&r, "smoker").count, 4);
        assert_eq!(r.pairs.len(), 1);
        assert_eq!(r.pairs[0].n, 5);
        assert_eq!(r.by_option.len(), 6);
    }
}

/// Random questionnaires (numbers and choices, some optional, random skips) through whole
/// rounds, Shamir and additive.
#[test]
fn random_questionnaire_rounds_match_plain_statistics() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7175_6573_7432); // "quest2"
    for case in 0..12u64 {
        // As a study file or the wire gives them (Decimal::new keeps trailing zeros, parsing
        // drops them, and parameters are compared exactly).
        let qs: Vec<Question> =
            serde_json::from_str(&serde_json::to_string(&random_questions(&mut rng)).unwrap())
                .unwrap();
        let n = 3 + below(&mut rng, 6) as usize;
        let t = if case % 2 == 0 { n } else { n / 2 + 1 };
        let mut spec = spec(n, t, 3);
        spec.params.questions = qs.clone();
        spec.validate()
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        let (answers, plain): (Vec<Answers>, Vec<Vec<Plain>>) =
            (0..n).map(|_| random_answers(&mut rng, &qs)).unzip();
        protocol_round(&spec, &answers, &plain, 100 + case);
    }
}

/// A one-question study's round gives exactly today's statistics, and its questionnaire result
/// is the same numbers under the question `value`.
#[test]
fn one_question_round_is_todays_statistics() {
    for (n, t, seed) in [(5usize, 3usize, 21u64), (4, 4, 22)] {
        let spec = spec(n, t, 3);
        let vals = values(n, seed);
        let out = run_round(&spec, &vals, &vec![Behaviour::Honest; n], seed);
        let r = out.results[0].clone().expect("completed");
        assert_exact(&r, &vals);
        let s = r.statistics.as_ref().unwrap();
        assert_eq!(r.questionnaire, QuestionnaireResult::from_statistics(s));
        assert_eq!(r.questionnaire.questions.0[0].0, SINGLE_QUESTION_ID);
    }
    // The JSON form without `questions` is the flag form.
    let json = StudySpec::from_json(
        r#"{"id":"sim","size":5,"threshold":3,"min":0,"max":300,"decimals":1,"buckets":10,"min_cohort":3}"#,
    )
    .unwrap();
    assert_eq!(json, spec(5, 3, 3));
    assert_eq!(json.params.vector_len(), 13);
}

#[test]
fn study_json_form() {
    let s = StudySpec::from_json(SURVEY).unwrap();
    assert_eq!(s.params.id, "survey");
    assert_eq!(
        (s.params.size, s.params.threshold, s.params.min_cohort),
        (7, 5, 3)
    );
    assert_eq!(s.deadlines.shares_ms, 30_000);
    assert_eq!(s.params.question_ids(), ["height", "weight", "smoker"]);
    assert_eq!(s.params.vector_len(), s.params.layout().unwrap().len());
    // The questions survive the wire form of the parameters (welcome, roster).
    let back: StudyParams =
        serde_json::from_str(&serde_json::to_string(&s.params).unwrap()).unwrap();
    assert_eq!(back, s.params);
    // A one-question study's parameters serialize without `questions`, as before.
    assert!(
        !serde_json::to_string(&spec(3, 3, 3).params)
            .unwrap()
            .contains("questions")
    );

    let with = |extra: &str| SURVEY.replacen("\"size\":7,", &format!("\"size\":7,{extra}"), 1);
    assert_eq!(
        StudySpec::from_json(&with(r#""colour":"blue","#)),
        Err(StudyError::UnknownField {
            key: "colour".into()
        })
    );
    assert_eq!(
        StudySpec::from_json(&with(r#""size":8,"#)),
        Err(StudyError::DuplicateField { key: "size".into() })
    );
    assert_eq!(
        StudySpec::from_json(&with(r#""min":3,"#)),
        Err(StudyError::MixedForms { key: "min" })
    );
    assert!(matches!(
        StudySpec::from_json(&with(r#""threshold":"five","#)),
        Err(StudyError::BadField {
            key: "threshold",
            ..
        })
    ));
    assert!(matches!(
        StudySpec::from_json(r#"{"id":"a","size":"five"}"#),
        Err(StudyError::BadField { key: "size", .. })
    ));
    let e =
        StudySpec::from_json(&SURVEY.replace(r#""id":"weight""#, r#""id":"height""#)).unwrap_err();
    assert!(e.to_string().contains("\"height\""), "{e}");
    assert!(matches!(
        e,
        StudyError::Questionnaire(QuestionnaireError::Question {
            index: 1,
            key: "id",
            ..
        })
    ));
    let e = StudySpec::from_json(&SURVEY.replace(r#""buckets":10"#, r#""buckets":10,"colour":1"#))
        .unwrap_err();
    assert!(
        matches!(&e, StudyError::BadField { key: "questions", reason } if reason.contains("colour")),
        "{e}"
    );
    assert!(matches!(
        StudySpec::from_json("[1]"),
        Err(StudyError::NotAnObject { .. })
    ));
    assert!(matches!(
        StudySpec::from_json(r#"{"id":"a","questions":[]}"#),
        Err(StudyError::Questionnaire(
            QuestionnaireError::QuestionCount { got: 0, .. }
        ))
    ));
}

/// A study whose layout could overflow the field, or is too long, is refused at creation and
/// the error names the question (or the pair) responsible.
#[test]
fn overflowing_studies_are_refused_naming_the_question() {
    let big =
        r#"{"id":"big","kind":"number","text":"","min":0,"max":1000000,"decimals":3,"buckets":2}"#;
    let small =
        r#"{"id":"small","kind":"number","text":"","min":0,"max":10,"decimals":0,"buckets":2}"#;
    let study = |size: u32, qs: &str| {
        StudySpec::from_json(&format!(r#"{{"id":"s","size":{size},"questions":[{qs}]}}"#))
    };
    let e = study(10, &format!("{small},{big}")).unwrap_err();
    assert_eq!(
        e,
        StudyError::Questionnaire(QuestionnaireError::WouldOverflow {
            question: "big".into()
        })
    );
    assert!(e.to_string().contains("\"big\""), "{e}");
    // R = 10^9 fits two patients (2·R² < p), alone or with its products with another such range.
    let big2 = big.replace("\"big\"", "\"big2\"");
    study(2, &format!("{big},{big2}")).unwrap();
    // Too long: 5 numbers of 1000 buckets.
    let long: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"id":"q{i}","kind":"number","text":"","min":0,"max":10,"decimals":0,"buckets":1000}}"#))
        .collect();
    assert!(matches!(
        study(3, &long.join(",")),
        Err(StudyError::Questionnaire(
            QuestionnaireError::TooLong { .. }
        ))
    ));
}

/// Answers are checked against the study before joining when it is known, naming the question.
#[test]
fn patient_checks_answers_before_joining() {
    let spec = StudySpec::from_json(SURVEY).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let join = |a: Answers, rng: &mut ChaCha20Rng| {
        Patient::with_answers(0, "survey", a, Some(spec.params.clone()), None, rng).map(|_| ())
    };
    assert_eq!(
        join(args(&["weight=70"], &[]), &mut rng),
        Err(ProtocolError::Answer(AnswerError::Missing {
            question: "height".into()
        }))
    );
    assert_eq!(
        join(args(&["height=170", "weight=20"], &[]), &mut rng),
        Err(ProtocolError::Answer(AnswerError::Value {
            question: "weight".into(),
            source: ValueError::OutOfRange
        }))
    );
    assert_eq!(
        join(args(&["height=170", "smoker=maybe"], &[]), &mut rng),
        Err(ProtocolError::Answer(AnswerError::UnknownOption {
            question: "smoker".into()
        }))
    );
    join(args(&["height=170"], &["weight", "smoker"]), &mut rng).unwrap();
    // A one-question study keeps its value errors.
    assert_eq!(
        Patient::new(
            0,
            "sim",
            "300.1".parse().unwrap(),
            Some(spec_params()),
            None,
            &mut rng
        )
        .map(|_| ()),
        Err(ProtocolError::Value(ValueError::OutOfRange))
    );
}

fn spec_params() -> StudyParams {
    let mut p = spec(3, 3, 3).params;
    p.id = "sim".into();
    p
}
