//! Patient events as plain JSON objects with camelCase fields, for the page.

use cohort_core::protocol::PatientEvent;
use serde_json::{Value, json};

/// The JSON object handed to JavaScript for one [`PatientEvent`]. Every object has a `kind`:
///
/// | kind | fields |
/// |---|---|
/// | `welcomed` | `study` (core `StudyParams` JSON), `round`, `enrolled` |
/// | `enrolment` | `enrolled`, `size` |
/// | `roster_frozen` | `round`, `n`, `threshold`, `you`, `safetyCode` |
/// | `shares_sent` | `round` |
/// | `partial_sum_sent` | `round`, `contributors` (how many) |
/// | `result_checked` | `round`, `contributors` (how many), `partialSums` |
/// | `completed` | `checkedOnDevice` (`true`) and core's `ResultSummary` with camelCase top-level keys: `study`, `round`, `count`, `questions` (per question id: `{count,sum,mean,stddev,histogram}` or `{count,counts}`), `pairs` (`{x,y,n,mean_x,mean_y,r,slope,intercept}`), `byOption` (`{choice,number,option,n,mean}`), `rosterSize`, `contributors` (indices), `partialSums`, `safetyCode`; a one-question study also has `sum`, `mean`, `stddev`, `histogram`. Nested objects keep core's snake_case (the relay's `ResultRow` has the same shape) |
/// | `abandoned` | `round`, `reason` (core `AbandonReason` JSON, with its own `kind`), `message` |
/// | `relay_error` | `code` (core `ErrorCode`, e.g. `"unknown_study"`), `message` |
/// | `refused` | `code`, `message`: this patient stopped (bad roster, timeout, …) and left |
///
/// A kind this layer does not know yet comes out as `{"kind": "unknown"}`.
pub fn event_json(ev: &PatientEvent) -> Value {
    match ev {
        PatientEvent::Welcomed {
            study,
            round,
            enrolled,
        } => json!({
            "kind": "welcomed",
            "study": study,
            "round": round,
            "enrolled": enrolled,
        }),
        PatientEvent::Enrolment { enrolled, size } => json!({
            "kind": "enrolment",
            "enrolled": enrolled,
            "size": size,
        }),
        PatientEvent::RosterFrozen {
            round,
            n,
            threshold,
            you,
            safety_code,
        } => json!({
            "kind": "roster_frozen",
            "round": round,
            "n": n,
            "threshold": threshold,
            "you": you,
            "safetyCode": safety_code.as_str(),
        }),
        PatientEvent::SharesSent { round } => json!({ "kind": "shares_sent", "round": round }),
        PatientEvent::ProofChecked {
            round,
            dealer,
            verdict,
        } => json!({
            "kind": "proof_checked",
            "round": round,
            "dealer": dealer,
            "verdict": verdict,
        }),
        PatientEvent::ProofsChecked { round, excluded } => json!({
            "kind": "proofs_checked",
            "round": round,
            "excluded": excluded,
        }),
        PatientEvent::PartialSumSent {
            round,
            contributors,
        } => json!({
            "kind": "partial_sum_sent",
            "round": round,
            "contributors": contributors,
        }),
        PatientEvent::ResultChecked {
            round,
            contributors,
            partial_sums,
        } => json!({
            "kind": "result_checked",
            "round": round,
            "contributors": contributors,
            "partialSums": partial_sums,
        }),
        // The core emits `Completed` only after it recomputed the result from the published
        // partial sums and checked it (`ResultChecked` comes first); the statistics are its own.
        // The fields are core's `ResultSummary` (the one definition of a result's JSON), with
        // camelCase names at this boundary.
        PatientEvent::Completed(r) => {
            let mut v = camel_case_keys(
                serde_json::to_value(r.summary()).expect("a result summary serializes"),
            );
            if let Value::Object(m) = &mut v {
                m.insert("kind".into(), "completed".into());
                m.insert("checkedOnDevice".into(), true.into());
            }
            v
        }
        PatientEvent::Abandoned { round, reason } => json!({
            "kind": "abandoned",
            "round": round,
            "reason": reason,
            "message": reason.to_string(),
        }),
        PatientEvent::RelayError { code, message } => json!({
            "kind": "relay_error",
            "code": code,
            "message": message,
        }),
        PatientEvent::Refused(e) => json!({
            "kind": "refused",
            "code": e.code(),
            "message": e.to_string(),
        }),
        _ => json!({ "kind": "unknown" }),
    }
}

/// Renames an object's own keys from snake_case to camelCase (`roster_size` → `rosterSize`);
/// nested values are left as they are.
fn camel_case_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut out = String::with_capacity(k.len());
                    let mut upper = false;
                    for c in k.chars() {
                        if c == '_' {
                            upper = true;
                        } else if upper {
                            out.extend(c.to_uppercase());
                            upper = false;
                        } else {
                            out.push(c);
                        }
                    }
                    (out, v)
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_core::error::{ErrorCode, ProtocolError, ValueError};
    use cohort_core::message::AbandonReason;

    #[test]
    fn completed_is_the_core_summary_in_camel_case() {
        use cohort_core::encoding::Statistics;
        use cohort_core::message::{PROTOCOL_VERSION, RoundResult};
        use cohort_core::roster::SafetyCode;
        let statistics = Statistics {
            count: 3,
            sum: 510.0,
            mean: 170.0,
            stddev: 4.5,
            histogram: vec![1, 2],
        };
        let questionnaire =
            cohort_core::questionnaire::QuestionnaireResult::from_statistics(&statistics);
        let questions = serde_json::to_value(&questionnaire.questions).unwrap();
        let r = RoundResult {
            v: PROTOCOL_VERSION,
            study: "height".into(),
            round: 2,
            statistics: Some(statistics),
            questionnaire,
            roster_size: 4,
            contributors: vec![1, 2, 3],
            partial_sums: 3,
            excluded: Vec::new(),
            safety_code: SafetyCode::from_stored("1234 5678 9012".into()),
            partials: Vec::new(),
        };
        let v = event_json(&PatientEvent::Completed(r));
        assert_eq!(
            v,
            json!({
                "kind": "completed",
                "checkedOnDevice": true,
                "study": "height",
                "round": 2,
                "count": 3,
                "sum": 510.0,
                "mean": 170.0,
                "stddev": 4.5,
                "histogram": [1, 2],
                "questions": questions,
                "pairs": [],
                "byOption": [],
                "rosterSize": 4,
                "contributors": [1, 2, 3],
                "partialSums": 3,
                "safetyCode": "1234 5678 9012",
            })
        );
    }

    #[test]
    fn kinds_and_camel_case() {
        let v = event_json(&PatientEvent::Enrolment {
            enrolled: 2,
            size: 3,
        });
        assert_eq!(v, json!({"kind": "enrolment", "enrolled": 2, "size": 3}));
        let v = event_json(&PatientEvent::Abandoned {
            round: 4,
            reason: AbandonReason::TooFewContributors { got: 2, needed: 3 },
        });
        assert_eq!(v["kind"], "abandoned");
        assert_eq!(v["reason"]["kind"], "too_few_contributors");
        assert_eq!(
            v["message"],
            "only 2 patients sent their shares in time; at least 3 are needed"
        );
        let v = event_json(&PatientEvent::RelayError {
            code: ErrorCode::UnknownStudy,
            message: "no such study".into(),
        });
        assert_eq!(v["code"], "unknown_study");
        let v = event_json(&PatientEvent::Refused(ProtocolError::Value(
            ValueError::OutOfRange,
        )));
        assert_eq!(v["kind"], "refused");
        assert_eq!(v["code"], "invalid");
        assert_eq!(
            v["message"],
            "value rejected: outside the study's allowed range"
        );
    }
}
