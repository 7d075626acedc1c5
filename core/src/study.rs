//! Study parameters: what is asked, in which unit and range, and how the cohort is formed.
//!
//! A study is checked once, when it is created, so that nothing later can overflow the field:
//! `size × (range in fixed point)² < p` is refused otherwise.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

use crate::decimal::Decimal;
use crate::error::StudyError;
use crate::field::MODULUS;
use crate::layout::{Layout, vector_len};
use crate::question::{Question, SINGLE_QUESTION_ID};

/// Largest cohort a study may ask for.
pub const MAX_COHORT: u32 = 10_000;
/// Largest number of histogram buckets.
pub const MAX_BUCKETS: u16 = 1_000;
/// Most fractional digits a study may ask for.
pub const MAX_DECIMALS: u8 = 6;
/// Largest `size × vector length`: bounds the share frames of a round.
pub const MAX_SIZE_TIMES_VECTOR: usize = 1 << 18;
/// Longest study id, question or unit, in bytes.
pub const MAX_TEXT: usize = 200;

/// The public parameters of a study. Every patient in a round checks that the roster carries
/// exactly the parameters it joined, and the safety code covers all of them.
///
/// With `questions` empty (the default, and absent from the JSON form) the study is the one
/// number question described by `question`, `unit`, `min`, `max`, `decimals` and `buckets`.
/// With `questions` set, those single-question fields are unused (and not checked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyParams {
    /// Identifier: 1–64 characters of `a-z`, `0-9`, `-`, `_`.
    pub id: String,
    /// The question shown to patients, e.g. "What is your height?".
    pub question: String,
    /// The unit of the value, e.g. "cm".
    pub unit: String,
    /// Smallest allowed value.
    pub min: Decimal,
    /// Largest allowed value.
    pub max: Decimal,
    /// Fractional digits a value may have.
    pub decimals: u8,
    /// Number of equal-width histogram buckets over `[min, max]`.
    pub buckets: u16,
    /// Cohort size: the roster is frozen as soon as this many patients have joined.
    pub size: u32,
    /// Shamir threshold t: any t partial sums reconstruct the aggregate, and any coalition of
    /// the relay with fewer than t patients learns nothing. A round with n < t patients uses
    /// t = n (plain additive sharing).
    pub threshold: u32,
    /// Small-cell suppression: patients refuse a roster or contributor set smaller than this.
    pub min_cohort: u32,
    /// The study's declared bound c on patients that may collude with the relay (default 0,
    /// at most t − 1). Patients refuse a roster unless 2t > n + c: then any two sets of t
    /// partial sums share an honest patient, so the relay can reconstruct over one contributor
    /// set only. Each colluder allowed for costs one tolerated dropout.
    #[serde(default)]
    pub colluders: u32,
    /// The questionnaire (1 to [`crate::question::MAX_QUESTIONS`] questions); empty for a
    /// one-question study given by the single-question fields. Omitted from JSON when empty, so
    /// one-question studies serialize (and hash into the safety code) as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<Question>,
    /// Whether every patient proves its vector valid and the others check it (validity proofs,
    /// see docs/PROTOCOL.md). On by default; omitted from JSON unless off (`"proofs":false`), so
    /// studies with proofs serialize (and hash into the safety code) as before.
    #[serde(default = "proofs_default", skip_serializing_if = "is_true")]
    pub proofs: bool,
    /// Small-cell suppression on display: where a choice option or a histogram bucket has
    /// fewer than `min_cohort` answers, pages show "< k" instead of the number. Default true;
    /// serialized only when false, so studies that keep the default serialize (and hash into
    /// the safety code) as before. It changes what pages show, never what is computed.
    #[serde(
        default = "suppress_small_cells_default",
        skip_serializing_if = "is_true"
    )]
    pub suppress_small_cells: bool,
}

/// The default of [`StudyParams::suppress_small_cells`]: on.
fn suppress_small_cells_default() -> bool {
    true
}

/// The default of [`StudyParams::proofs`]: on.
fn proofs_default() -> bool {
    true
}

/// Whether a flag is set (serde's `skip_serializing_if` for fields that default to true).
fn is_true(b: &bool) -> bool {
    *b
}

/// The collusion rule every patient checks on a roster of `n` with threshold `t`: 2t > n + c.
pub fn collusion_rule_holds(n: u32, t: u32, colluders: u32) -> bool {
    2 * u64::from(t) > u64::from(n) + u64::from(colluders)
}

impl StudyParams {
    /// A demo study: heights in cm, 0–300 with one decimal, 10 buckets, cohort of 3.
    pub fn demo() -> StudyParams {
        StudyParams {
            id: "demo".into(),
            question: "What is your height?".into(),
            unit: "cm".into(),
            min: Decimal::from_int(0).expect("small"),
            max: Decimal::from_int(300).expect("small"),
            decimals: 1,
            buckets: 10,
            size: 3,
            threshold: 3,
            min_cohort: 3,
            colluders: 0,
            questions: Vec::new(),
            proofs: true,
            suppress_small_cells: true,
        }
    }

    /// Whether this is a one-question study given by the single-question fields (`questions`
    /// empty): its result also carries the single-number [`crate::encoding::Statistics`].
    pub fn is_single(&self) -> bool {
        self.questions.is_empty()
    }

    /// The study's questions in order: `questions`, or the one question
    /// [`Question::from_params`] (id [`SINGLE_QUESTION_ID`]) for a one-question study.
    pub fn question_list(&self) -> Vec<Question> {
        if self.is_single() {
            alloc::vec![Question::from_params(self)]
        } else {
            self.questions.clone()
        }
    }

    /// The ids of the study's questions, in order.
    pub fn question_ids(&self) -> Vec<&str> {
        if self.is_single() {
            alloc::vec![SINGLE_QUESTION_ID]
        } else {
            self.questions.iter().map(|q| q.id.as_str()).collect()
        }
    }

    /// The vector layout of the study's questionnaire for its cohort size. Refuses (naming the
    /// question) what [`Layout::new`] refuses: bad questions, a vector longer than
    /// [`crate::layout::MAX_VECTOR_LEN`], an entry whose sum could overflow the field.
    pub fn layout(&self) -> Result<Layout, StudyError> {
        Ok(Layout::new(&self.question_list(), self.size)?)
    }

    /// Checks every parameter, including that no aggregate can wrap the field.
    pub fn validate(&self) -> Result<(), StudyError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(StudyError::BadId);
        }
        if self.is_single() {
            self.validate_single()?;
        }
        if self.size < 2 || self.size > MAX_COHORT {
            return Err(StudyError::BadSize { max: MAX_COHORT });
        }
        if self.threshold < 2 || self.threshold > self.size {
            return Err(StudyError::BadThreshold);
        }
        if self.colluders >= self.threshold
            || !collusion_rule_holds(self.size, self.threshold, self.colluders)
        {
            return Err(StudyError::BreaksCollusionRule);
        }
        if self.min_cohort < 2 || self.min_cohort > self.size {
            return Err(StudyError::BadMinCohort);
        }
        if !self.is_single() {
            self.layout()?;
        }
        if self.size as usize * self.vector_len() > MAX_SIZE_TIMES_VECTOR {
            return Err(StudyError::TooLarge);
        }
        if self.is_single() {
            let range = u128::from(self.range_scaled());
            if u128::from(self.size) * range * range >= u128::from(MODULUS) {
                return Err(StudyError::WouldOverflow);
            }
        }
        Ok(())
    }

    /// The checks of the single-question fields (one-question studies only).
    fn validate_single(&self) -> Result<(), StudyError> {
        if self.question.len() > MAX_TEXT
            || self.unit.len() > MAX_TEXT
            || self.question.chars().any(char::is_control)
            || self.unit.chars().any(char::is_control)
        {
            return Err(StudyError::BadText);
        }
        if self.decimals > MAX_DECIMALS {
            return Err(StudyError::TooManyDecimals { max: MAX_DECIMALS });
        }
        let lo = self
            .min
            .to_scaled(self.decimals)
            .map_err(|_| StudyError::BadRange)?;
        let hi = self
            .max
            .to_scaled(self.decimals)
            .map_err(|_| StudyError::BadRange)?;
        if lo >= hi {
            return Err(StudyError::BadRange);
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(StudyError::BadBuckets { max: MAX_BUCKETS });
        }
        Ok(())
    }

    /// The range `max − min` in fixed-point units (a positive integer once validated).
    pub fn range_scaled(&self) -> u64 {
        let lo = self.min.to_scaled(self.decimals).unwrap_or(0);
        let hi = self.max.to_scaled(self.decimals).unwrap_or(0);
        hi.saturating_sub(lo).max(1) as u64
    }

    /// Length of the statistics vector: the layout's ([`crate::layout`]); `[1, x, x², bucket…]`
    /// for a one-question study. Computed without building the layout.
    pub fn vector_len(&self) -> usize {
        if self.is_single() {
            3 + usize::from(self.buckets)
        } else {
            vector_len(&self.questions)
        }
    }

    /// The threshold used by a round whose roster has `n` members.
    pub fn round_threshold(&self, n: u32) -> u32 {
        self.threshold.min(n)
    }

    /// Lower edge of every bucket and the upper edge of the last, in the study's unit.
    pub fn bucket_edges(&self) -> Vec<f64> {
        let lo = self.min.to_f64();
        let width = (self.max.to_f64() - lo) / f64::from(self.buckets);
        (0..=self.buckets)
            .map(|b| lo + width * f64::from(b))
            .collect()
    }

    /// The bucket edges (as [`StudyParams::bucket_edges`]) of number question `id`; `None` if
    /// the study has no number question of that id.
    pub fn bucket_edges_of(&self, id: &str) -> Option<Vec<f64>> {
        self.question_list()
            .iter()
            .find(|q| q.id == id)
            .and_then(|q| q.as_number())
            .map(|n| n.as_params(self.size).bucket_edges())
    }
}

/// How long each phase of a round may take, in milliseconds. `None` waits forever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// From the first join: after this, a round starts with whoever joined if that is at least
    /// the minimum cohort (otherwise enrolment continues).
    pub enrol_ms: Option<u64>,
    /// From the roster: patients that have not sent their shares by then are left out.
    pub shares_ms: u64,
    /// From the delivery of shares: after this the round completes with the partial sums it has,
    /// or is abandoned if they are fewer than the threshold.
    pub partials_ms: u64,
}

impl Default for Deadlines {
    /// Defaults that suit people in browsers: no enrolment deadline, a minute per later phase.
    fn default() -> Deadlines {
        Deadlines {
            enrol_ms: None,
            shares_ms: 60_000,
            partials_ms: 60_000,
        }
    }
}

/// Everything the hospital needs to run a study: public parameters, deadlines and an optional
/// invite code. Parsed from the `--study` flag form
/// `id=height,size=3,threshold=3,min=0,max=300,decimals=1,buckets=10`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Public parameters.
    pub params: StudyParams,
    /// Phase deadlines.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// If set, only patients presenting this code may join.
    #[serde(default)]
    pub invite: Option<String>,
}

impl core::fmt::Debug for StudySpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StudySpec")
            .field("params", &self.params)
            .field("deadlines", &self.deadlines)
            .field("invite", &self.invite.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl StudySpec {
    /// Validates the parameters and the invite code.
    pub fn validate(&self) -> Result<(), StudyError> {
        self.params.validate()?;
        if let Some(code) = &self.invite
            && (code.is_empty() || code.len() > 128 || code.chars().any(char::is_control))
        {
            return Err(StudyError::BadInvite);
        }
        Ok(())
    }
}

impl FromStr for StudySpec {
    type Err = StudyError;

    /// Parses `key=value` pairs separated by commas. Keys: `id` (required), `question`, `unit`,
    /// `min`, `max`, `decimals`, `buckets`, `size`, `threshold` (default: size), `min_cohort`
    /// (default: min(3, size)), `colluders` (default 0), `enrol_s`, `shares_s`, `partials_s`, `invite`,
    /// `suppress_small_cells` (`true` or `false`, default true).
    fn from_str(s: &str) -> Result<StudySpec, StudyError> {
        let mut p = StudyParams::demo();
        p.id = String::new();
        let mut deadlines = Deadlines::default();
        let mut invite = None;
        let mut threshold = None;
        let mut min_cohort = None;
        for pair in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(StudyError::BadSpec)?;
            let (k, v) = (k.trim(), v.trim());
            let int = |v: &str| v.parse::<u64>().map_err(|_| StudyError::BadSpec);
            let secs = |v: &str| int(v).map(|s| s.saturating_mul(1000));
            match k {
                "id" => p.id = v.to_string(),
                "question" => p.question = v.to_string(),
                "unit" => p.unit = v.to_string(),
                "min" => p.min = v.parse().map_err(|_| StudyError::BadRange)?,
                "max" => p.max = v.parse().map_err(|_| StudyError::BadRange)?,
                "decimals" => p.decimals = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "buckets" => p.buckets = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "size" => p.size = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "threshold" => {
                    threshold = Some(int(v)?.try_into().map_err(|_| StudyError::BadSpec)?)
                }
                "min_cohort" => {
                    min_cohort = Some(int(v)?.try_into().map_err(|_| StudyError::BadSpec)?)
                }
                "colluders" => p.colluders = int(v)?.try_into().map_err(|_| StudyError::BadSpec)?,
                "enrol_s" => deadlines.enrol_ms = Some(secs(v)?),
                "shares_s" => deadlines.shares_ms = secs(v)?,
                "partials_s" => deadlines.partials_ms = secs(v)?,
                "invite" => invite = Some(v.to_string()),
                "proofs" => {
                    p.proofs = match v {
                        "on" => true,
                        "off" => false,
                        _ => return Err(StudyError::BadSpec),
                    }
                }
                "suppress_small_cells" => {
                    p.suppress_small_cells = v.parse().map_err(|_| StudyError::BadSpec)?
                }
                _ => return Err(StudyError::UnknownKey),
            }
        }
        p.threshold = threshold.unwrap_or(p.size);
        p.min_cohort = min_cohort.unwrap_or(p.size.min(3));
        let spec = StudySpec {
            params: p,
            deadlines,
            invite,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// The keys of a study's JSON form other than `questions`, with what they set.
const JSON_KEYS: &[&str] = &[
    "id",
    "size",
    "threshold",
    "min_cohort",
    "colluders",
    "enrol_s",
    "shares_s",
    "partials_s",
    "proofs",
    "invite",
    "suppress_small_cells",
    "questions",
    "question",
    "unit",
    "min",
    "max",
    "decimals",
    "buckets",
];

/// The single-question keys, refused next to `questions`.
const SINGLE_KEYS: &[&str] = &["question", "unit", "min", "max", "decimals", "buckets"];

/// A JSON object's entries in document order, duplicates kept (so they can be refused).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl StudySpec {
    /// Reads the JSON form of a study (`--study-file`, `POST /api/studies`):
    ///
    /// ```json
    /// {"id": "survey", "size": 5, "threshold": 5, "min_cohort": 3,
    ///  "questions": [{"id": "height", "kind": "number", "text": "How tall are you?",
    ///                 "unit": "cm", "min": 100, "max": 230, "decimals": 1, "buckets": 13},
    ///                {"id": "smoker", "kind": "choice", "text": "Do you smoke?",
    ///                 "options": ["no", "yes", "used to"], "optional": true}],
    ///  "shares_s": 60, "partials_s": 60, "enrol_s": 120, "invite": "code", "colluders": 0,
    ///  "suppress_small_cells": true}
    /// ```
    ///
    /// The keys and defaults are those of the `--study` flag form ([`FromStr`]) plus
    /// `questions` (the questions' JSON form, [`crate::question`]). Without `questions`, the
    /// single-question keys (`question`, `unit`, `min`, `max`, `decimals`, `buckets`) describe a
    /// one-question study as in the flag form; with it, they are refused. Unknown and repeated
    /// keys are refused naming the key, a value of the wrong type naming its key, and the
    /// whole study is then validated ([`StudySpec::validate`]: a bad question or an overflowing
    /// layout names the question).
    pub fn from_json(json: &str) -> Result<StudySpec, StudyError> {
        let entries: Entries = serde_json::from_str(json).map_err(|e| StudyError::NotAnObject {
            line: e.line(),
            column: e.column(),
        })?;
        let mut p = StudyParams::demo();
        p.id = String::new();
        let mut deadlines = Deadlines::default();
        let mut invite = None;
        let mut threshold = None;
        let mut min_cohort = None;
        let mut single_key = None;
        for (i, (k, v)) in entries.0.iter().enumerate() {
            let Some(&key) = JSON_KEYS.iter().find(|&&known| known == k) else {
                return Err(StudyError::UnknownField { key: k.clone() });
            };
            if entries.0[..i].iter().any(|(prev, _)| prev == k) {
                return Err(StudyError::DuplicateField { key: k.clone() });
            }
            if SINGLE_KEYS.contains(&key) {
                single_key = single_key.or(Some(key));
            }
            let bad = |reason: &str| StudyError::BadField {
                key,
                reason: reason.to_string(),
            };
            let text = || {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("must be a string"))
            };
            let int = || {
                v.as_u64()
                    .ok_or_else(|| bad("must be a non-negative integer"))
            };
            let small = |max: u64| {
                int().and_then(|x| {
                    if x > max {
                        Err(bad("is too large"))
                    } else {
                        Ok(x)
                    }
                })
            };
            let secs = || int().map(|s| s.saturating_mul(1000));
            let decimal = || -> Result<Decimal, StudyError> {
                let t = match v {
                    serde_json::Value::String(t) => t.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return Err(bad("must be a decimal number")),
                };
                t.parse().map_err(|_| bad("must be a decimal number"))
            };
            match key {
                "id" => p.id = text()?,
                "size" => p.size = small(u64::from(u32::MAX))? as u32,
                "threshold" => threshold = Some(small(u64::from(u32::MAX))? as u32),
                "min_cohort" => min_cohort = Some(small(u64::from(u32::MAX))? as u32),
                "colluders" => p.colluders = small(u64::from(u32::MAX))? as u32,
                "enrol_s" => deadlines.enrol_ms = Some(secs()?),
                "shares_s" => deadlines.shares_ms = secs()?,
                "partials_s" => deadlines.partials_ms = secs()?,
                "invite" => invite = Some(text()?),
                "proofs" => p.proofs = v.as_bool().ok_or_else(|| bad("must be true or false"))?,
                "suppress_small_cells" => {
                    p.suppress_small_cells =
                        v.as_bool().ok_or_else(|| bad("must be true or false"))?
                }
                "questions" => {
                    p.questions =
                        Vec::<Question>::deserialize(v).map_err(|e| bad(&alloc::format!("{e}")))?;
                    if p.questions.is_empty() {
                        return Err(StudyError::Questionnaire(
                            crate::error::QuestionnaireError::QuestionCount {
                                got: 0,
                                max: crate::question::MAX_QUESTIONS,
                            },
                        ));
                    }
                }
                "question" => p.question = text()?,
                "unit" => p.unit = text()?,
                "min" => p.min = decimal()?,
                "max" => p.max = decimal()?,
                "decimals" => p.decimals = small(u64::from(u8::MAX))? as u8,
                "buckets" => p.buckets = small(u64::from(u16::MAX))? as u16,
                _ => return Err(StudyError::UnknownField { key: k.clone() }),
            }
        }
        if let Some(key) = single_key.filter(|_| !p.questions.is_empty()) {
            return Err(StudyError::MixedForms { key });
        }
        p.threshold = threshold.unwrap_or(p.size);
        p.min_cohort = min_cohort.unwrap_or(p.size.min(3));
        if !p.questions.is_empty() {
            // Unused with `questions`; fixed so that two hospitals agree on the parameters.
            p.question = String::new();
            p.unit = String::new();
        }
        let spec = StudySpec {
            params: p,
            deadlines,
            invite,
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid() {
        StudyParams::demo().validate().unwrap();
    }

    #[test]
    fn parses_the_flag_form() {
        let spec: StudySpec =
            "id=height,size=5,threshold=3,min=0,max=300,decimals=1,buckets=10,shares_s=5,invite=abc"
                .parse()
                .unwrap();
        assert_eq!(spec.params.id, "height");
        assert_eq!(spec.params.size, 5);
        assert_eq!(spec.params.threshold, 3);
        assert_eq!(spec.params.min_cohort, 3);
        assert_eq!(spec.params.range_scaled(), 3000);
        assert_eq!(spec.deadlines.shares_ms, 5000);
        assert_eq!(spec.invite.as_deref(), Some("abc"));
        assert!(
            !format!("{spec:?}").contains("abc"),
            "invite code must not be in Debug"
        );
        let spec: StudySpec = "id=x,size=4".parse().unwrap();
        assert_eq!(spec.params.threshold, 4);
        let spec: StudySpec = "id=x,size=5,threshold=4,colluders=2".parse().unwrap();
        assert_eq!(spec.params.colluders, 2);
    }

    #[test]
    fn refuses_bad_studies() {
        let cases = [
            ("id=Bad", StudyError::BadId),
            ("id=a,size=1000,buckets=1000", StudyError::TooLarge),
            ("id=a,size=1", StudyError::BadSize { max: MAX_COHORT }),
            ("id=a,size=3,threshold=4", StudyError::BadThreshold),
            ("id=a,size=3,threshold=1", StudyError::BadThreshold),
            ("id=a,min=5,max=5", StudyError::BadRange),
            ("id=a,min=0.05,max=5,decimals=1", StudyError::BadRange),
            (
                "id=a,buckets=0",
                StudyError::BadBuckets { max: MAX_BUCKETS },
            ),
            ("id=a,colour=blue", StudyError::UnknownKey),
            ("id=a,size=4,threshold=2", StudyError::BreaksCollusionRule),
            (
                "id=a,size=5,threshold=3,colluders=1",
                StudyError::BreaksCollusionRule,
            ),
            (
                "id=a,size=3,threshold=3,colluders=3",
                StudyError::BreaksCollusionRule,
            ),
            ("id=a,size", StudyError::BadSpec),
            (
                "id=a,decimals=7",
                StudyError::TooManyDecimals { max: MAX_DECIMALS },
            ),
            // 10,000 × (10^9)² wraps a 61-bit field.
            (
                "id=a,size=10000,min=0,max=1000000,decimals=3",
                StudyError::WouldOverflow,
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.parse::<StudySpec>().err(), Some(want), "{spec}");
        }
    }

    #[test]
    fn overflow_bound_is_tight() {
        // size × range² must stay below p = 2^61 − 1 ≈ 2.3e18.
        let ok: StudySpec = "id=a,size=2,min=0,max=1000000000,decimals=0"
            .parse()
            .unwrap();
        assert_eq!(ok.params.range_scaled(), 1_000_000_000);
        assert_eq!(
            "id=a,size=3,min=0,max=1000000000,decimals=0"
                .parse::<StudySpec>()
                .err(),
            Some(StudyError::WouldOverflow)
        );
    }

    #[test]
    fn suppress_small_cells_is_serialized_only_when_off() {
        let demo = StudyParams::demo();
        assert!(demo.suppress_small_cells);
        let json = serde_json::to_string(&demo).unwrap();
        assert!(!json.contains("suppress_small_cells"), "{json}");
        let back: StudyParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, demo);
        let off: StudySpec = "id=a,suppress_small_cells=false".parse().unwrap();
        assert!(!off.params.suppress_small_cells);
        let json = serde_json::to_string(&off.params).unwrap();
        assert!(json.contains(r#""suppress_small_cells":false"#), "{json}");
        assert_eq!(
            serde_json::from_str::<StudyParams>(&json).unwrap(),
            off.params
        );
        let on: StudySpec = "id=a,suppress_small_cells=true".parse().unwrap();
        assert!(on.params.suppress_small_cells);
        assert_eq!(
            "id=a,suppress_small_cells=no".parse::<StudySpec>().err(),
            Some(StudyError::BadSpec)
        );
        let j = StudySpec::from_json(r#"{"id":"a","suppress_small_cells":false}"#).unwrap();
        assert!(!j.params.suppress_small_cells);
        let e = StudySpec::from_json(r#"{"id":"a","suppress_small_cells":"no"}"#).unwrap_err();
        assert_eq!(e.key(), Some("suppress_small_cells"));
    }

    #[test]
    fn errors_name_their_key() {
        let e = StudySpec::from_json(r#"{"id":"a","size":3,"threshold":9}"#).unwrap_err();
        assert_eq!(e.key(), Some("threshold"));
        let e = StudySpec::from_json(r#"{"id":"a","colour":1}"#).unwrap_err();
        assert_eq!(e.key(), Some("colour"));
        let e = StudySpec::from_json(r#"{"id":"a","id":"b"}"#).unwrap_err();
        assert_eq!(e.key(), Some("id"));
    }
}
