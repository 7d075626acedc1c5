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
/// | `completed` | `study`, `round`, `count`, `sum`, `mean`, `stddev`, `histogram`, `rosterSize`, `contributors` (indices), `partialSums`, `safetyCode` |
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
        PatientEvent::Completed(r) => {
            let mut v = json!({
                "kind": "completed",
                "checkedOnDevice": true,
                "study": r.study,
                "round": r.round,
                "count": r.questionnaire.count,
                "rosterSize": r.roster_size,
                "contributors": r.contributors,
                "partialSums": r.partial_sums,
                "safetyCode": r.safety_code.as_str(),
            });
            // A one-question study keeps its single-number fields (questionnaire views: issue 11).
            if let (Some(s), Some(o)) = (&r.statistics, v.as_object_mut()) {
                o.insert("sum".into(), json!(s.sum));
                o.insert("mean".into(), json!(s.mean));
                o.insert("stddev".into(), json!(s.stddev));
                o.insert("histogram".into(), json!(s.histogram));
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

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_core::error::{ErrorCode, ProtocolError, ValueError};
    use cohort_core::message::AbandonReason;

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
