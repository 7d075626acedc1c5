//! `StudySpec::from_str`, the JSON form of a study, and `Decimal` parsing on arbitrary text.
//! Never panics; an accepted study validates, survives JSON, and encodes and decodes a value.
#![no_main]

use cohort_core::decimal::Decimal;
use cohort_core::encoding::{check_value, decode, encode};
use cohort_core::protocol::Hospital;
use cohort_core::study::StudySpec;
use libfuzzer_sys::fuzz_target;

fn decimal(text: &str) -> Option<Decimal> {
    let d: Decimal = text.parse().ok()?;
    let shown = d.to_string();
    let back: Decimal = shown.parse().expect("Display output parses");
    assert_eq!(back, d, "Decimal display round trip");
    for decimals in 0..=12 {
        let _ = d.to_scaled(decimals);
    }
    let _ = d.to_f64();
    Some(d)
}

fn study(spec: &StudySpec, value: &str) {
    spec.validate().expect("a parsed study is valid");
    let json = serde_json::to_string(spec).expect("serializes");
    let back: StudySpec = serde_json::from_str(&json).expect("JSON study round trip");
    assert_eq!(&back, spec);
    let p = &spec.params;
    let _ = p.bucket_edges();
    let _ = Hospital::new(spec.clone(), 1);
    let Some(v) = decimal(value) else { return };
    let checked = check_value(p, &v);
    match encode(p, &v) {
        Ok(enc) => {
            assert_eq!(checked.ok(), Some(enc.as_slice()[1].value()));
            let s = decode(p, enc.as_slice()).expect("one encoded value decodes");
            assert_eq!(s.count, 1);
            assert_eq!(s.stddev, 0.0);
            assert_eq!(s.histogram.iter().sum::<u64>(), 1);
            let want = v.to_f64();
            assert!(
                (s.mean - want).abs() <= 1e-9 * want.abs().max(1.0),
                "mean {} of one value {want}",
                s.mean
            );
        }
        Err(e) => assert_eq!(checked.err(), Some(e)),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // "<spec>;<value>" or "<spec>"
    let (spec_text, value) = text.split_once(';').unwrap_or((&text, "0"));
    let _ = decimal(&text);
    if let Ok(spec) = spec_text.parse::<StudySpec>() {
        study(&spec, value);
    }
    if let Ok(spec) = serde_json::from_str::<StudySpec>(spec_text) {
        if spec.validate().is_ok() {
            study(&spec, value);
        }
    }
});
