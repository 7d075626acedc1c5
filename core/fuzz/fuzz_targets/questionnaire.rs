//! Questionnaires on arbitrary text: the questions' JSON, `Layout::new`, answers (JSON and the
//! `ID=VALUE` form), `Layout::encode` and `Layout::decode` of arbitrary aggregates.
//! Never panics; accepted answers encode to a vector of the layout's length that decodes alone
//! to a count of 1; an arbitrary aggregate decodes or is refused.
#![no_main]

use cohort_core::answer::Answers;
use cohort_core::field::Fe;
use cohort_core::layout::Layout;
use cohort_core::question::Question;
use cohort_core::questionnaire::{QuestionStats, QuestionnaireResult};
use libfuzzer_sys::fuzz_target;

fn check_one(layout: &Layout, answers: &Answers) {
    let Ok(v) = layout.encode(answers) else {
        return;
    };
    assert_eq!(v.as_slice().len(), layout.len());
    let r = layout
        .decode(v.as_slice())
        .expect("one patient's vector decodes");
    assert_eq!(r.count, 1);
    for (_, q) in &r.questions.0 {
        match q {
            QuestionStats::Number(n) => {
                assert!(n.count <= 1 && n.stddev.is_none_or(|s| s == 0.0));
            }
            QuestionStats::Choice(c) => assert!(c.count <= 1),
        }
    }
    let json = serde_json::to_string(&r).expect("serializes");
    let back: QuestionnaireResult = serde_json::from_str(&json).expect("result round trip");
    assert_eq!(back, r);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // "<questions JSON>;<answers JSON or ID=VALUE lines>;<aggregate: u64s separated by spaces>"
    let mut parts = text.splitn(3, ';');
    let (qs, answers, agg) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let Ok(questions) = serde_json::from_str::<Vec<Question>>(qs) else {
        return;
    };
    let size = 1 + (data.len() % 64) as u32;
    let Ok(layout) = Layout::new(&questions, size) else {
        return;
    };
    if let Ok(a) = serde_json::from_str::<Answers>(answers) {
        check_one(&layout, &a);
    }
    if let Ok(a) = Answers::from_args(answers.lines().filter(|l| l.contains('=')), []) {
        check_one(&layout, &a);
    }
    let mut v: Vec<Fe> = agg
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .map(Fe::new)
        .collect();
    let _ = layout.decode(&v);
    v.resize(layout.len(), Fe::ZERO);
    if let Ok(r) = layout.decode(&v) {
        assert!(r.count >= 1 && r.count <= u64::from(size));
        for p in &r.pairs {
            assert!(p.r.is_none_or(|r| (-1.0..=1.0).contains(&r)));
            assert!(p.slope.is_none_or(f64::is_finite));
        }
    }
});
