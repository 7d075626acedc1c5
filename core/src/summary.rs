//! A round's result as users see it: the one definition of its JSON object.
//!
//! The native patient's stdout line and the page's `completed` event are built from
//! [`ResultSummary`]; the relay's `ResultRow` flattens [`RoundOutcome`] the same way (the
//! revealed [`Statistics`] appear as top-level fields in both). A change to what a round
//! reveals (e.g. per-question statistics) is made in [`Statistics`] and shows up everywhere.
//!
//! Only public data: the revealed aggregate and round metadata. Never a value, a share, a
//! partial sum or a key (the partial sums a [`RoundResult`] carries for the patients' own
//! check are left out).
//!

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::encoding::Statistics;
use crate::message::RoundResult;
use crate::protocol::hospital::RoundOutcome;
use crate::questionnaire::{ByOptionStats, Ordered, PairStats, QuestionStats};
use crate::roster::SafetyCode;

/// The single-number fields of a one-question study's result (its `count` is the summary's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SingleNumber {
    /// Sum of the values, in the study's unit.
    pub sum: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation (population).
    pub stddev: f64,
    /// Count per bucket.
    pub histogram: Vec<u64>,
}

/// A completed round's result as shown to users (issue 11's shape), e.g.
/// `{"study","round","count","questions":{…},"pairs":[…],"by_option":[…],"roster_size",
/// "contributors","partial_sums","safety_code"}`; a one-question study also keeps its
/// single-number fields `sum`, `mean`, `stddev` and `histogram` at the top level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultSummary {
    /// Study id.
    pub study: String,
    /// Round id.
    pub round: u64,
    /// Contributing patients.
    pub count: u64,
    /// A one-question study's single-number fields (flattened into the object).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub single: Option<SingleNumber>,
    /// Per question, in questionnaire order, by id.
    pub questions: Ordered<QuestionStats>,
    /// Per pair of number questions: n, means, Pearson's r and the least-squares line.
    pub pairs: Vec<PairStats>,
    /// Per choice question, number question and option: the count and mean.
    pub by_option: Vec<ByOptionStats>,
    /// Roster size.
    pub roster_size: u32,
    /// Roster indices whose values are in the statistics.
    pub contributors: Vec<u32>,
    /// Number of partial sums used.
    pub partial_sums: u32,
    /// Members left out because their validity proof failed or could not be checked (roster
    /// index and reason; omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<crate::proof::Exclusion>,
    /// The round's safety code.
    pub safety_code: SafetyCode,
}

impl SingleNumber {
    /// The single-number fields of a one-question study's statistics.
    pub fn of(s: &Statistics) -> SingleNumber {
        SingleNumber {
            sum: s.sum,
            mean: s.mean,
            stddev: s.stddev,
            histogram: s.histogram.clone(),
        }
    }
}

/// Builds the [`ResultSummary`] of `$r`: a [`RoundResult`] or a [`RoundOutcome`], which carry
/// the summary's fields under the same names (the one definition of how a round's result maps
/// to its summary).
macro_rules! summary_of {
    ($r:expr) => {{
        let r = $r;
        let q = &r.questionnaire;
        ResultSummary {
            study: r.study.clone(),
            round: r.round,
            count: q.count,
            single: r.statistics.as_ref().map(SingleNumber::of),
            questions: q.questions.clone(),
            pairs: q.pairs.clone(),
            by_option: q.by_option.clone(),
            roster_size: r.roster_size,
            contributors: r.contributors.clone(),
            partial_sums: r.partial_sums,
            excluded: r.excluded.clone(),
            safety_code: r.safety_code.clone(),
        }
    }};
}

impl RoundResult {
    /// The user-facing summary of this result (without the partial sums).
    pub fn summary(&self) -> ResultSummary {
        summary_of!(self)
    }
}

impl RoundOutcome {
    /// The user-facing summary of this completed round: the same object as the patients'
    /// [`RoundResult::summary`] (the relay's `ResultRow` adds its own fields to it).
    pub fn summary(&self) -> ResultSummary {
        summary_of!(self)
    }
}

impl ResultSummary {
    /// The questionnaire result this summary shows (`count`, `questions`, `pairs`,
    /// `by_option`).
    pub fn questionnaire(&self) -> crate::questionnaire::QuestionnaireResult {
        crate::questionnaire::QuestionnaireResult {
            count: self.count,
            questions: self.questions.clone(),
            pairs: self.pairs.clone(),
            by_option: self.by_option.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PROTOCOL_VERSION;

    fn result() -> RoundResult {
        let statistics = Statistics {
            count: 3,
            sum: 510.0,
            mean: 170.0,
            stddev: 4.5,
            histogram: alloc::vec![0, 1, 2],
        };
        RoundResult {
            v: PROTOCOL_VERSION,
            study: "height".into(),
            round: 3,
            questionnaire: crate::questionnaire::QuestionnaireResult::from_statistics(&statistics),
            statistics: Some(statistics),
            roster_size: 4,
            contributors: alloc::vec![1, 2, 4],
            partial_sums: 3,
            excluded: Vec::new(),
            safety_code: SafetyCode::pending(),
            partials: Vec::new(),
        }
    }

    #[test]
    fn summary_json_has_the_user_facing_fields_and_no_partials() {
        let s = result().summary();
        let v = serde_json::to_value(&s).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "by_option",
                "contributors",
                "count",
                "histogram",
                "mean",
                "pairs",
                "partial_sums",
                "questions",
                "roster_size",
                "round",
                "safety_code",
                "stddev",
                "study",
                "sum"
            ]
        );
        assert_eq!(v["count"], 3);
        assert_eq!(v["histogram"], serde_json::json!([0, 1, 2]));
        assert_eq!(v["questions"]["value"]["mean"], 170.0);
        let back: ResultSummary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_round_outcome_and_its_result_have_the_same_summary() {
        let r = result();
        let o = RoundOutcome {
            study: r.study.clone(),
            round: r.round,
            statistics: r.statistics.clone(),
            questionnaire: r.questionnaire.clone(),
            roster_size: r.roster_size,
            threshold: 2,
            contributors: r.contributors.clone(),
            partial_sums: r.partial_sums,
            excluded: r.excluded.clone(),
            safety_code: r.safety_code.clone(),
            started_ms: 1,
            finished_ms: 2,
        };
        assert_eq!(o.summary(), r.summary());
    }
}
