//! The JSON shapes of the HTTP API and the dashboard feed (see docs/API.md).
//!
//! Only public data appears here: study parameters, counters, safety codes and revealed
//! aggregates. Nothing carries a value, a share, a sealed payload, a partial sum or a key.

use cohort_core::encoding::Statistics;
use cohort_core::message::AbandonReason;
use cohort_core::protocol::StudyStatus;
use cohort_core::protocol::hospital::RoundOutcome;
use cohort_core::questionnaire::{
    ByOptionStats, Ordered, PairStats, QuestionStats, QuestionnaireResult,
};
use cohort_core::roster::SafetyCode;
use cohort_core::study::{Deadlines, StudyParams, StudySpec};
use cohort_core::summary::{ResultSummary, SingleNumber};
use serde::{Deserialize, Serialize};

/// A study's status: `StudyStatus` in docs/API.md. The core's [`StudyStatus`] (enrolment and
/// the running round) plus what only the relay knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyStatusView {
    /// Public parameters.
    pub params: StudyParams,
    /// Whether joining needs an invite code.
    pub invite_required: bool,
    /// Phase deadlines.
    pub deadlines: Deadlines,
    /// The core's status (`enrolling_round`, `enrolled`, `size`, `running`), flattened.
    #[serde(flatten)]
    pub status: StudyStatus,
    /// Rounds completed so far (including before restarts).
    pub completed_rounds: u64,
}

impl StudyStatusView {
    /// Builds the view from the core's status.
    pub fn new(spec: &StudySpec, status: StudyStatus, completed_rounds: u64) -> StudyStatusView {
        StudyStatusView {
            params: spec.params.clone(),
            invite_required: spec.invite.is_some(),
            deadlines: spec.deadlines.clone(),
            status,
            completed_rounds,
        }
    }

    /// The study id.
    pub fn id(&self) -> &str {
        &self.params.id
    }

    /// The unauthenticated subset shown to patients.
    pub fn public(&self) -> PublicStudyView {
        PublicStudyView {
            params: self.params.clone(),
            invite_required: self.invite_required,
            enrolling_round: self.status.enrolling_round,
            enrolled: self.status.enrolled,
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

/// A completed round: `ResultRow` in docs/API.md. The same object as the patients' result
/// line (core's [`ResultSummary`]: `study`, `round`, `count`, `questions`, `pairs`,
/// `by_option`, …, and a one-question study's `sum`, `mean`, `stddev`, `histogram`) plus what
/// the hospital adds: the threshold, the times (Unix ms) and the bucket edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The result as patients see it, flattened.
    #[serde(flatten)]
    pub result: ResultSummary,
    /// Threshold used.
    pub threshold: u32,
    /// A one-question study's bucket edges (buckets + 1 numbers, in the study's unit); empty
    /// for a questionnaire (each number question's edges follow from its `min`, `max` and
    /// `buckets`).
    pub bucket_edges: Vec<f64>,
    /// When the roster was frozen (Unix ms).
    pub started_at_ms: u64,
    /// When the result was computed (Unix ms).
    pub finished_at_ms: u64,
}

/// The `bucket_edges` of a study's result rows: a one-question study's edges, empty for a
/// questionnaire.
pub fn bucket_edges(params: &StudyParams) -> Vec<f64> {
    if params.is_single() {
        params.bucket_edges()
    } else {
        Vec::new()
    }
}

impl ResultRow {
    /// Builds the row for a completed round of a study with these parameters.
    pub fn from_outcome(params: &StudyParams, o: &RoundOutcome) -> ResultRow {
        ResultRow {
            result: o.summary(),
            threshold: o.threshold,
            bucket_edges: bucket_edges(params),
            started_at_ms: o.started_ms,
            finished_at_ms: o.finished_ms,
        }
    }

    /// The round's questionnaire result (everything it revealed).
    pub fn questionnaire(&self) -> QuestionnaireResult {
        self.result.questionnaire()
    }
}

/// A completed or abandoned round as stored: `RoundRow` in docs/API.md, a [`ResultRow`]'s
/// fields plus `status`, `reason` and `message`. Result fields are `null` for an abandoned
/// round, and `sum`, `mean`, `stddev` and `histogram` for a questionnaire's round too. (A
/// store row, not a core type: [`RoundRow::result`] turns a completed one into a
/// [`ResultRow`].)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// `"completed"` or `"abandoned"` (`"running"` in the store only).
    pub status: String,
    /// For an abandoned round, the reason's kind ([`AbandonReason::kind`]), e.g.
    /// `"relay_restarted"`.
    pub reason: Option<String>,
    /// For an abandoned round, the reason in words.
    pub message: Option<String>,
    /// Number of contributing patients.
    pub count: Option<u64>,
    /// A one-question study's sum of values.
    pub sum: Option<f64>,
    /// Its mean.
    pub mean: Option<f64>,
    /// Its population standard deviation.
    pub stddev: Option<f64>,
    /// Its patients per bucket.
    pub histogram: Option<Vec<u64>>,
    /// Per question, by id (the questionnaire result).
    pub questions: Option<Ordered<QuestionStats>>,
    /// Per pair of number questions.
    pub pairs: Option<Vec<PairStats>>,
    /// Per choice question, number question and option.
    pub by_option: Option<Vec<ByOptionStats>>,
    /// Bucket edges (one-question studies; empty for a questionnaire).
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

impl RoundRow {
    /// Fills `questions`, `pairs` and `by_option` of a completed row from its stored
    /// questionnaire result (the `result` column, JSON of [`QuestionnaireResult`]). A row
    /// stored before that column existed has none: a one-question round's result is then
    /// rebuilt from its statistics, a questionnaire round keeps only its count.
    pub fn set_stored_result(&mut self, stored: Option<&str>) -> Result<(), serde_json::Error> {
        if self.status != "completed" {
            return Ok(());
        }
        let q = match stored {
            Some(json) => serde_json::from_str::<QuestionnaireResult>(json)?,
            None => match self.statistics() {
                Some(s) => QuestionnaireResult::from_statistics(&s),
                None => QuestionnaireResult {
                    count: self.count.unwrap_or(0),
                    questions: Ordered(Vec::new()),
                    pairs: Vec::new(),
                    by_option: Vec::new(),
                },
            },
        };
        self.questions = Some(q.questions);
        self.pairs = Some(q.pairs);
        self.by_option = Some(q.by_option);
        Ok(())
    }

    /// A one-question round's statistics, if the row has them.
    fn statistics(&self) -> Option<Statistics> {
        match (
            self.count,
            self.sum,
            self.mean,
            self.stddev,
            &self.histogram,
        ) {
            (Some(count), Some(sum), Some(mean), Some(stddev), Some(histogram))
                if !histogram.is_empty() =>
            {
                Some(Statistics {
                    count,
                    sum,
                    mean,
                    stddev,
                    histogram: histogram.clone(),
                })
            }
            _ => None,
        }
    }

    /// The completed round's result; `None` for a round that is not completed (or a row
    /// missing a result column).
    pub fn result(self) -> Option<ResultRow> {
        if self.status != "completed" {
            return None;
        }
        let single = self.statistics().map(|s| SingleNumber::of(&s));
        Some(ResultRow {
            result: ResultSummary {
                study: self.study,
                round: self.round,
                count: self.count?,
                single,
                questions: self.questions?,
                pairs: self.pairs?,
                by_option: self.by_option?,
                roster_size: self.roster_size,
                contributors: self.contributors?,
                partial_sums: self.partial_sums?,
                safety_code: SafetyCode::from_stored(self.safety_code),
            },
            threshold: self.threshold,
            bucket_edges: self.bucket_edges?,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms?,
        })
    }
}

/// An abandoned round, as the dashboard feed reports it. Nothing was revealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Abandonment {
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// The reason's kind ([`AbandonReason::kind`]), e.g. `"too_few_partial_sums"`.
    pub reason: String,
    /// The reason in words.
    pub message: String,
    /// The round's safety code.
    pub safety_code: SafetyCode,
    /// When the roster was frozen (Unix ms).
    pub started_at_ms: u64,
    /// When it was abandoned (Unix ms).
    pub finished_at_ms: u64,
}

impl Abandonment {
    /// Builds the report of an abandoned round.
    pub fn new(
        study: String,
        round: u64,
        reason: &AbandonReason,
        safety_code: SafetyCode,
        started_at_ms: u64,
        finished_at_ms: u64,
    ) -> Abandonment {
        Abandonment {
            study,
            round,
            reason: reason.kind().to_owned(),
            message: reason.to_string(),
            safety_code,
            started_at_ms,
            finished_at_ms,
        }
    }
}

/// A round that just ended, tagged by `status` like a [`RoundRow`]: `{"status":"completed",
/// …ResultRow}` or `{"status":"abandoned","study","round","reason","message","safety_code",
/// "started_at_ms","finished_at_ms"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RoundEnd {
    /// The round completed with this result.
    Completed(ResultRow),
    /// The round was abandoned.
    Abandoned(Abandonment),
}

/// One frame of the dashboard feed (`/ws/dashboard`): always whole statuses, never events to
/// replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DashboardMsg {
    /// Every study's status; sent first after authentication (and again if the dashboard
    /// fell behind the feed).
    Snapshot {
        /// All studies.
        studies: Vec<StudyStatusView>,
    },
    /// One study changed (created, enrolment, round started or moved on, round ended): its
    /// whole current status.
    Status {
        /// Its status.
        study: Box<StudyStatusView>,
        /// The round that just ended, if this change is a round ending.
        ended: Option<Box<RoundEnd>>,
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
    use cohort_core::protocol::RoundStatus;

    fn outcome() -> RoundOutcome {
        let statistics = Statistics {
            count: 3,
            sum: 510.0,
            mean: 170.0,
            stddev: 4.5,
            histogram: vec![0, 1, 2],
        };
        RoundOutcome {
            study: "demo".into(),
            round: 2,
            questionnaire: QuestionnaireResult::from_statistics(&statistics),
            statistics: Some(statistics),
            roster_size: 4,
            threshold: 3,
            contributors: vec![1, 2, 4],
            partial_sums: 3,
            safety_code: SafetyCode::from_stored("1234 5678 9012".into()),
            started_ms: 10,
            finished_ms: 20,
        }
    }

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn result_row_json_keeps_its_fields() {
        let row = ResultRow::from_outcome(&StudyParams::demo(), &outcome());
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(
            keys(&v),
            [
                "bucket_edges",
                "by_option",
                "contributors",
                "count",
                "finished_at_ms",
                "histogram",
                "mean",
                "pairs",
                "partial_sums",
                "questions",
                "roster_size",
                "round",
                "safety_code",
                "started_at_ms",
                "stddev",
                "study",
                "sum",
                "threshold"
            ]
        );
        assert_eq!(v["questions"]["value"]["count"], 3);
        assert_eq!(v["started_at_ms"], 10);
        assert_eq!(v["safety_code"], "1234 5678 9012");
        let back: ResultRow = serde_json::from_value(v).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn a_completed_round_row_is_its_result_row() {
        let row = ResultRow::from_outcome(&StudyParams::demo(), &outcome());
        let mut v = serde_json::to_value(&row).unwrap();
        v["status"] = "completed".into();
        v["reason"] = serde_json::Value::Null;
        v["message"] = serde_json::Value::Null;
        let stored: RoundRow = serde_json::from_value(v).unwrap();
        assert_eq!(stored.clone().result(), Some(row));
        let abandoned = RoundRow {
            status: "abandoned".into(),
            ..stored
        };
        assert_eq!(abandoned.result(), None);
    }

    #[test]
    fn dashboard_frames_are_whole_statuses() {
        let spec = StudySpec {
            params: StudyParams::demo(),
            deadlines: Default::default(),
            invite: None,
        };
        let status = StudyStatus {
            enrolling_round: 3,
            enrolled: 1,
            size: 3,
            running: None,
        };
        let view = StudyStatusView::new(&spec, status, 1);
        let m = DashboardMsg::Status {
            study: Box::new(view.clone()),
            ended: Some(Box::new(RoundEnd::Abandoned(Abandonment::new(
                "demo".into(),
                2,
                &AbandonReason::Shutdown,
                SafetyCode::pending(),
                10,
                20,
            )))),
        };
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["type"], "status");
        assert_eq!(v["study"]["enrolling_round"], 3);
        assert_eq!(v["study"]["running"], serde_json::Value::Null);
        assert_eq!(v["study"]["completed_rounds"], 1);
        assert_eq!(v["ended"]["status"], "abandoned");
        assert_eq!(v["ended"]["reason"], "shutdown");
        assert_eq!(v["ended"]["round"], 2);
        let completed = DashboardMsg::Status {
            study: Box::new(view),
            ended: Some(Box::new(RoundEnd::Completed(ResultRow::from_outcome(
                &StudyParams::demo(),
                &outcome(),
            )))),
        };
        let v: serde_json::Value = serde_json::from_str(&completed.to_json()).unwrap();
        assert_eq!(v["ended"]["status"], "completed");
        assert_eq!(v["ended"]["count"], 3);
        assert_eq!(v["ended"]["bucket_edges"].as_array().unwrap().len(), 11);
        let back: DashboardMsg = serde_json::from_value(v).unwrap();
        assert_eq!(back, completed);
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
