//! Binary frame vectors (`tests/vectors/frames.json`, see `tests/vectors/README.md`): good frames
//! decode to exactly their listed fields and re-encode byte for byte; bad frames fail with exactly
//! the listed error. The file was written by an independent script from docs/PROTOCOL.md's wire
//! section, not by this crate.

use cohort_core::field::Fe;
use cohort_core::frame::ShareList;
use cohort_core::message::{
    Checks, Delivery, PartialSum, PatientToRelay, RelayToPatient, Shares, Verdict, Verdicts,
    Verify, Wire,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    good: Vec<Good>,
    bad: Vec<Bad>,
}

#[derive(Deserialize)]
struct Good {
    name: String,
    direction: String,
    hex: String,
    kind: String,
    round: u64,
    #[serde(default)]
    sealed_len: usize,
    #[serde(default)]
    entries: Vec<(u32, String)>,
    #[serde(default)]
    contributors: Vec<u32>,
    #[serde(default)]
    sum: Vec<String>,
    #[serde(default)]
    extra_len: usize,
    #[serde(default)]
    extra: Vec<(u32, String)>,
    #[serde(default)]
    dealer: u32,
    #[serde(default)]
    verdict: u8,
    /// `verdicts`: the tag sum, as a decimal string (JSON numbers lose bits above 2^53).
    #[serde(default)]
    tag: String,
}

#[derive(Deserialize)]
struct Bad {
    name: String,
    direction: String,
    hex: String,
    error: String,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "hex of odd length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn file() -> File {
    serde_json::from_str(include_str!("vectors/frames.json")).expect("frames.json parses")
}

#[test]
fn good_frames_decode_to_their_fields_and_reencode_exactly() {
    let f = file();
    assert!(f.good.len() >= 5);
    for g in &f.good {
        let bytes = unhex(&g.hex);
        let mut list = ShareList::with_capacity(g.sealed_len, g.entries.len());
        for (i, s) in &g.entries {
            assert!(list.push(*i, &unhex(s)), "{}", g.name);
        }
        let mut extra = ShareList::with_capacity(g.extra_len, g.extra.len());
        for (i, s) in &g.extra {
            assert!(extra.push(*i, &unhex(s)), "{}", g.name);
        }
        let up = |want: PatientToRelay| {
            assert_eq!(
                PatientToRelay::decode_binary(&bytes).as_ref(),
                Ok(&want),
                "{}",
                g.name
            );
            want.encode()
        };
        let down = |want: RelayToPatient| {
            assert_eq!(
                RelayToPatient::decode_binary(&bytes).as_ref(),
                Ok(&want),
                "{}",
                g.name
            );
            want.encode()
        };
        let wire = match (g.direction.as_str(), g.kind.as_str()) {
            ("patient_to_relay", "verify") => up(PatientToRelay::Verify(Verify {
                round: g.round,
                checks: list,
            })),
            ("patient_to_relay", "verdict") => up(PatientToRelay::Verdict(Verdict {
                round: g.round,
                dealer: g.dealer,
                verdict: cohort_core::proof::Verdict::from_code(g.verdict).expect("verdict"),
                tags: list,
            })),
            ("relay_to_patient", "checks") => down(RelayToPatient::Checks(Checks {
                round: g.round,
                dealer: g.dealer,
                checks: list,
            })),
            ("relay_to_patient", "verdicts") => down(RelayToPatient::Verdicts(Verdicts {
                round: g.round,
                tag: g.tag.parse().expect("a tag"),
                listed: list,
            })),
            ("patient_to_relay", "shares") => up(PatientToRelay::Shares(Shares {
                round: g.round,
                shares: list,
                extra,
            })),
            ("patient_to_relay", "partial_sum") => {
                let sum = g
                    .sum
                    .iter()
                    .map(|s| Fe::from_canonical(s.parse().expect("integer")).expect("below p"))
                    .collect();
                up(PatientToRelay::PartialSum(PartialSum {
                    round: g.round,
                    sum,
                }))
            }
            ("relay_to_patient", "delivery") => down(RelayToPatient::Delivery(Delivery {
                round: g.round,
                contributors: g.contributors.clone(),
                shares: list,
                extra,
            })),
            other => panic!("{}: unknown direction/kind {other:?}", g.name),
        };
        assert_eq!(wire, Wire::Binary(bytes), "{}: re-encoding differs", g.name);
    }
}

#[test]
fn bad_frames_fail_with_their_errors() {
    let f = file();
    assert!(f.bad.len() >= 20);
    let mut failures = Vec::new();
    for c in &f.bad {
        let bytes = unhex(&c.hex);
        let got = match c.direction.as_str() {
            "patient_to_relay" => PatientToRelay::decode_binary(&bytes).map(|_| ()),
            "relay_to_patient" => RelayToPatient::decode_binary(&bytes).map(|_| ()),
            other => panic!("unknown direction {other}"),
        };
        let got = match got {
            Ok(()) => "decoded".to_string(),
            Err(e) => format!("{e:?}"),
        };
        if got != c.error {
            failures.push(format!("{}: expected {}, got {got}", c.name, c.error));
        }
    }
    assert!(failures.is_empty(), "bad frames:\n{}", failures.join("\n"));
}
