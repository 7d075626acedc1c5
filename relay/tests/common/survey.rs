//! The questionnaire used by the process tests: a study file with two number questions (one
//! optional) and one choice, five patients' answers (one skips the optional question), and
//! what the result must be, computed here with plain f64 arithmetic.

use std::collections::BTreeMap;

/// The study file.
pub const SURVEY_JSON: &str = r#"{"id":"survey","size":5,"threshold":5,"min_cohort":3,
 "questions":[
  {"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
  {"id":"weight","kind":"number","text":"How much do you weigh?","unit":"kg","min":30,"max":200,"decimals":1,"buckets":17,"optional":true},
  {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]}]}"#;

/// One patient's answers: height, weight (None: skipped), smoker.
pub type Answer = (f64, Option<f64>, &'static str);

/// The five patients.
pub const ANSWERS: [Answer; 5] = [
    (172.5, Some(70.2), "no"),
    (181.0, Some(85.5), "yes"),
    (165.3, None, "used to"),
    (190.1, Some(95.0), "yes"),
    (158.7, Some(55.4), "no"),
];

/// The command line answers of one patient.
pub fn cli_args(a: &Answer) -> Vec<String> {
    let mut out = vec!["--answer".into(), format!("height={}", a.0)];
    match a.1 {
        Some(w) => out.extend(["--answer".into(), format!("weight={w}")]),
        None => out.extend(["--skip".into(), "weight".into()]),
    }
    out.extend(["--answer".into(), format!("smoker={}", a.2)]);
    out
}

/// Plain statistics of one number question.
pub struct NumberWant {
    pub count: u64,
    pub sum: f64,
    pub mean: f64,
    pub stddev: f64,
    pub histogram: Vec<u64>,
}

fn number(xs: &[f64], min: f64, max: f64, buckets: usize) -> NumberWant {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let mean = sum / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let mut histogram = vec![0u64; buckets];
    for x in xs {
        let b = (((x - min) / (max - min)) * buckets as f64).floor() as usize;
        histogram[b.min(buckets - 1)] += 1;
    }
    NumberWant {
        count: xs.len() as u64,
        sum,
        mean,
        stddev: var.sqrt(),
        histogram,
    }
}

/// The pair (height, weight) over the patients who answered both.
pub struct PairWant {
    pub n: u64,
    pub mean_x: f64,
    pub mean_y: f64,
    pub r: f64,
    pub slope: f64,
    pub intercept: f64,
}

/// Everything the round must reveal.
pub struct SurveyWant {
    pub height: NumberWant,
    pub weight: NumberWant,
    pub smoker: BTreeMap<&'static str, u64>,
    pub pair: PairWant,
    /// (choice, number, option) -> (n, mean), in the result's order.
    pub by_option: Vec<(&'static str, &'static str, &'static str, u64, Option<f64>)>,
}

/// The expected result of [`ANSWERS`].
pub fn want() -> SurveyWant {
    let heights: Vec<f64> = ANSWERS.iter().map(|a| a.0).collect();
    let weights: Vec<f64> = ANSWERS.iter().filter_map(|a| a.1).collect();
    let mut smoker = BTreeMap::new();
    for a in &ANSWERS {
        *smoker.entry(a.2).or_insert(0) += 1;
    }
    let both: Vec<(f64, f64)> = ANSWERS.iter().filter_map(|a| Some((a.0, a.1?))).collect();
    let n = both.len() as f64;
    let mx = both.iter().map(|p| p.0).sum::<f64>() / n;
    let my = both.iter().map(|p| p.1).sum::<f64>() / n;
    let cov = both.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / n;
    let vx = both.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>() / n;
    let vy = both.iter().map(|p| (p.1 - my).powi(2)).sum::<f64>() / n;
    let slope = cov / vx;
    let mut by_option = Vec::new();
    for (number, pick) in [
        (
            "height",
            (|a: &Answer| Some(a.0)) as fn(&Answer) -> Option<f64>,
        ),
        ("weight", |a: &Answer| a.1),
    ] {
        for option in ["no", "yes", "used to"] {
            let xs: Vec<f64> = ANSWERS
                .iter()
                .filter(|a| a.2 == option)
                .filter_map(pick)
                .collect();
            let mean = (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
            by_option.push(("smoker", number, option, xs.len() as u64, mean));
        }
    }
    SurveyWant {
        height: number(&heights, 100.0, 230.0, 13),
        weight: number(&weights, 30.0, 200.0, 17),
        smoker,
        pair: PairWant {
            n: both.len() as u64,
            mean_x: mx,
            mean_y: my,
            r: cov / (vx.sqrt() * vy.sqrt()),
            slope,
            intercept: my - slope * mx,
        },
        by_option,
    }
}

/// `got` equals `want` within 1e-9 relative.
pub fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * got.abs().max(want.abs()).max(1e-12);
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want}");
}

fn f(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Checks a result object (a CLI line or an API ResultRow) against [`want`].
pub fn assert_survey(got: &serde_json::Value) {
    let w = want();
    assert_eq!(got["study"], "survey", "{got}");
    assert_eq!(got["count"], 5, "{got}");
    let q = &got["questions"];
    for (id, n) in [("height", &w.height), ("weight", &w.weight)] {
        let s = &q[id];
        assert_eq!(s["count"].as_u64(), Some(n.count), "{id}: {s}");
        close(f(&s["sum"], id), n.sum, &format!("{id} sum"));
        close(f(&s["mean"], id), n.mean, &format!("{id} mean"));
        close(f(&s["stddev"], id), n.stddev, &format!("{id} stddev"));
        let h: Vec<u64> = serde_json::from_value(s["histogram"].clone()).unwrap();
        assert_eq!(h, n.histogram, "{id} histogram");
    }
    assert_eq!(q["smoker"]["count"], 5);
    let counts = q["smoker"]["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 3);
    for (label, n) in &w.smoker {
        assert_eq!(counts[*label].as_u64(), Some(*n), "smoker {label}");
    }
    let pairs = got["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{got}");
    let p = &pairs[0];
    assert_eq!((&p["x"], &p["y"]), (&"height".into(), &"weight".into()));
    assert_eq!(p["n"].as_u64(), Some(w.pair.n));
    close(f(&p["mean_x"], "mean_x"), w.pair.mean_x, "pair mean_x");
    close(f(&p["mean_y"], "mean_y"), w.pair.mean_y, "pair mean_y");
    close(f(&p["r"], "r"), w.pair.r, "pair r");
    close(f(&p["slope"], "slope"), w.pair.slope, "pair slope");
    close(
        f(&p["intercept"], "intercept"),
        w.pair.intercept,
        "pair intercept",
    );
    let by = got["by_option"].as_array().unwrap();
    assert_eq!(by.len(), w.by_option.len(), "{got}");
    for (g, (choice, number, option, n, mean)) in by.iter().zip(&w.by_option) {
        assert_eq!(g["choice"], *choice);
        assert_eq!(g["number"], *number);
        assert_eq!(g["option"], *option);
        assert_eq!(g["n"].as_u64(), Some(*n), "{g}");
        match mean {
            Some(m) => close(f(&g["mean"], "by_option mean"), *m, &format!("{g}")),
            None => assert!(g["mean"].is_null(), "{g}"),
        }
    }
}
