//! The JSON shapes of the HTTP API and the dashboard feed (see docs/API.md).
//!
//! Only public data appears here: study parameters, counters, safety codes and revealed
//! aggregates. Nothing carries a value, a share, a sealed payload, a partial sum or a key.

use cohort_core::encoding::Statistics;
use cohort_core::message::AbandonReason;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::protocol::{RoundStatus, StudyStatus as CoreStatus};
use cohort_core::study::{Deadlines, StudyParams, StudySpec};
use serde::{Deserialize, Serialize};

/// A study's status: `StudyStatus` in docs/API.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyStatusView {
    /// Public parameters.
    pub params: StudyParams,
    /// Whether joining needs an invite code.
    pub invite_required: bool,
    /// Phase deadlines.
    pub deadlines: Deadlines,
    /// The round being enrolled.
    pub enrolling_round: u64,
    /// Patients enrolled for it.
    pub enrolled: u32,
    /// The running round, if any (the core's own status type: same JSON fields).
    pub running: Option<RoundStatus>,
    /// Rounds completed so far (including before restarts).
    pub completed_rounds: u64,
}

impl StudyStatusView {
    /// Builds the view from the core's status.
    pub fn new(spec: &StudySpec, status: &CoreStatus, completed_rounds: u64) -> StudyStatusView {
        StudyStatusView {
            params: spec.params.clone(),
            invite_required: spec.invite.is_some(),
            deadlines: spec.deadlines.clone(),
            enrolling_round: status.enrolling_round,
            enrolled: status.enrolled,
            running: status.running.clone(),
            completed_rounds,
        }
    }

    /// The unauthenticated subset shown to patients.
    pub fn public(&self) -> PublicStudyView {
        PublicStudyView {
            params: self.params.clone(),
            invite_required: self.invite_required,
            enrolling_round: self.enrolling_round,
            enrolled: self.enrolled,
        }
    }
}

/// What `GET /api/public/studies` lists for each study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicStudyView {
    /// Public parameters.
    pub params: StudyParams,
    /// Whether joining needs an invite code.
    pub invite_required: bool,
    /// The round being enrolled.
    pub enrolling_round: u64,
    /// Patients enrolled for it.
    pub enrolled: u32,
}

/// A completed round: `ResultRow` in docs/API.md. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// Number of contributing patients.
    pub count: u64,
    /// Sum of their values, in the study's unit.
    pub sum: f64,
    /// Mean, in the study's unit.
    pub mean: f64,
    /// Population standard deviation, in the study's unit.
    pub stddev: f64,
    /// Patients per bucket.
    pub histogram: Vec<u64>,
    /// Bucket edges (buckets + 1 numbers), in the study's unit.
    pub bucket_edges: Vec<f64>,
    /// Roster size.
    pub roster_size: u32,
    /// Threshold used.
    pub threshold: u32,
    /// Roster indices whose values are included.
    pub contributors: Vec<u32>,
    /// Partial sums used.
    pub partial_sums: u32,
    /// The round's safety code.
    pub safety_code: String,
    /// When the roster was frozen.
    pub started_at_ms: u64,
    /// When the result was computed.
    pub finished_at_ms: u64,
}

/// The single-number statistics of a round: a one-question study's, or, for a questionnaire
/// (whose result is `o.questionnaire`, not yet stored or shown by the relay: issue 11), only
/// its contributor count with zero sums and no histogram.
pub fn one_question_statistics(o: &RoundOutcome) -> Statistics {
    o.statistics.clone().unwrap_or_else(|| Statistics {
        count: o.questionnaire.count,
        sum: 0.0,
        mean: 0.0,
        stddev: 0.0,
        histogram: Vec::new(),
    })
}

impl ResultRow {
    /// Builds the row for a completed round of a study with these parameters.
    pub fn from_outcome(params: &StudyParams, o: &RoundOutcome) -> ResultRow {
        let s = one_question_statistics(o);
        ResultRow {
            study: o.study.clone(),
            round: o.round,
            count: s.count,
            sum: s.sum,
            mean: s.mean,
            stddev: s.stddev,
            histogram: s.histogram,
            bucket_edges: params.bucket_edges(),
            roster_size: o.roster_size,
            threshold: o.threshold,
            contributors: o.contributors.clone(),
            partial_sums: o.partial_sums,
            safety_code: o.safety_code.to_string(),
            started_at_ms: o.started_ms,
            finished_at_ms: o.finished_ms,
        }
    }
}

/// A completed or abandoned round: `RoundRow` in docs/API.md. Result fields are `null` for
/// an abandoned round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// `"completed"` or `"abandoned"`.
    pub status: String,
    /// For an abandoned round, the reason's kind, e.g. `"relay_restarted"`.
    pub reason: Option<String>,
    /// For an abandoned round, the reason in words.
    pub message: Option<String>,
    /// Number of contributing patients.
    pub count: Option<u64>,
    /// Sum of their values.
    pub sum: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub stddev: Option<f64>,
    /// Patients per bucket.
    pub histogram: Option<Vec<u64>>,
    /// Bucket edges.
    pub bucket_edges: Option<Vec<f64>>,
    /// Roster size.
    pub roster_size: u32,
    /// Threshold used.
    pub threshold: u32,
    /// Roster indices whose values are included.
    pub contributors: Option<Vec<u32>>,
    /// Partial sums used.
    pub partial_sums: Option<u32>,
    /// The round's safety code.
    pub safety_code: String,
    /// When the roster was frozen.
    pub started_at_ms: u64,
    /// When the round completed or was abandoned (`null` only while it runs).
    pub finished_at_ms: Option<u64>,
}

/// The machine-readable kind of an abandonment, e.g. `"too_few_partial_sums"`
/// ([`AbandonReason::kind`], owned for the store and the feed).
pub fn reason_kind(reason: &AbandonReason) -> String {
    reason.kind().to_owned()
}

/// One frame of the dashboard feed (`/ws/dashboard`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DashboardMsg {
    /// Every study's status; sent first after authentication.
    Snapshot {
        /// All studies.
        studies: Vec<StudyStatusView>,
    },
    /// A study was created.
    StudyCreated {
        /// Its status.
        study: StudyStatusView,
    },
    /// Enrolment changed.
    Enrolment {
        /// Study id.
        study: String,
        /// Round being enrolled.
        round: u64,
        /// Patients enrolled.
        enrolled: u32,
        /// Cohort size.
        size: u32,
    },
    /// A roster was frozen.
    RoundStarted {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Roster size.
        roster_size: u32,
        /// Threshold.
        threshold: u32,
        /// The relay's safety code.
        safety_code: String,
    },
    /// Shares were delivered.
    SharesDelivered {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// Number of contributors.
        contributors: u32,
    },
    /// A round completed.
    Completed {
        /// The result.
        result: ResultRow,
    },
    /// A round was abandoned.
    Abandoned {
        /// Study id.
        study: String,
        /// Round id.
        round: u64,
        /// The reason's kind.
        reason: String,
        /// The reason in words.
        message: String,
    },
}

impl DashboardMsg {
    /// As JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("dashboard messages serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_kinds_are_snake_case() {
        assert_eq!(
            reason_kind(&AbandonReason::RelayRestarted),
            "relay_restarted"
        );
        assert_eq!(
            reason_kind(&AbandonReason::TooFewPartialSums { got: 1, needed: 2 }),
            "too_few_partial_sums"
        );
    }

    #[test]
    fn dashboard_frames_are_tagged() {
        let m = DashboardMsg::Abandoned {
            study: "demo".into(),
            round: 2,
            reason: "shutdown".into(),
            message: "bye".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["type"], "abandoned");
        assert_eq!(v["round"], 2);
    }

    #[test]
    fn running_round_json_keeps_its_fields() {
        let json = serde_json::json!({
            "round": 4,
            "phase": "awaiting partial sums",
            "roster_size": 5,
            "threshold": 3,
            "live": 4,
            "received": 2,
            "safety_code": "1234 5678 9012",
        });
        let r: RoundStatus = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            r.phase,
            cohort_core::protocol::RoundPhase::AwaitingPartialSums
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), json);
    }
}
