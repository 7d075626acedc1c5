//! The questions of a study: numbers and choices, their JSON form and their checks.
//!
//! A study asks 1 to [`MAX_QUESTIONS`] questions, in order. JSON, as in a study file:
//!
//! ```json
//! {"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13}
//! {"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"],"optional":true}
//! ```
//!
//! Unknown keys (and keys of the other kind) are refused. `min` and `max` may be JSON numbers or
//! strings; they are read as exact [`Decimal`]s.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decimal::Decimal;
use crate::error::{QuestionProblem, QuestionnaireError};
use crate::study::{MAX_BUCKETS, MAX_DECIMALS, MAX_TEXT, StudyParams};

/// Most questions in one study.
pub const MAX_QUESTIONS: usize = 32;
/// Longest question id, in bytes.
pub const MAX_QUESTION_ID: usize = 64;
/// Fewest options of a choice question.
pub const MIN_OPTIONS: usize = 2;
/// Most options of a choice question.
pub const MAX_OPTIONS: usize = 20;
/// Longest option label, in bytes.
pub const MAX_LABEL: usize = 64;
/// The id of the one question of a study given in the `--study` flag form.
pub const SINGLE_QUESTION_ID: &str = "value";

/// One question of a study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireQuestion", from = "WireQuestion")]
pub struct Question {
    /// Identifier, unique in the study: 1–64 characters of `a-z`, `0-9`, `-`, `_`.
    pub id: String,
    /// The question shown to patients.
    pub text: String,
    /// Whether a patient may skip it.
    pub optional: bool,
    /// What is asked.
    pub kind: QuestionKind,
}

/// What a question asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuestionKind {
    /// A number in a range.
    Number(NumberQuestion),
    /// One option out of a list.
    Choice(ChoiceQuestion),
}

/// A number question: a value in `[min, max]` with at most `decimals` fractional digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberQuestion {
    /// The unit, e.g. "cm" (may be empty).
    pub unit: String,
    /// Smallest allowed value.
    pub min: Decimal,
    /// Largest allowed value.
    pub max: Decimal,
    /// Fractional digits a value may have.
    pub decimals: u8,
    /// Number of equal-width histogram buckets over `[min, max]`.
    pub buckets: u16,
}

/// A choice question: exactly one of 2 to 20 labelled options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChoiceQuestion {
    /// The option labels, in order.
    pub options: Vec<String>,
}

impl NumberQuestion {
    /// `min` in fixed-point units (`min·10^decimals`); 0 if it does not fit (refused by
    /// [`validate_questions`]).
    pub fn min_scaled(&self) -> i64 {
        self.min.to_scaled(self.decimals).unwrap_or(0)
    }

    /// The range `max − min` in fixed-point units (positive once validated).
    pub fn range_scaled(&self) -> u64 {
        let hi = self.max.to_scaled(self.decimals).unwrap_or(0);
        hi.saturating_sub(self.min_scaled()).max(1) as u64
    }

    /// One-question study parameters with this question's range, for the single-number encoding
    /// and decoding of [`crate::encoding`] (`size` bounds the decoded count; threshold and
    /// minimum cohort are set to `size` and carry no meaning here).
    pub fn as_params(&self, size: u32) -> StudyParams {
        StudyParams {
            id: String::from(SINGLE_QUESTION_ID),
            question: String::new(),
            unit: self.unit.clone(),
            min: self.min,
            max: self.max,
            decimals: self.decimals,
            buckets: self.buckets,
            size,
            threshold: size,
            min_cohort: size,
            colluders: 0,
            questions: Vec::new(),
            suppress_small_cells: true,
        }
    }
}

impl Question {
    /// The one required number question equivalent to a one-question study (id
    /// [`SINGLE_QUESTION_ID`]).
    pub fn from_params(params: &StudyParams) -> Question {
        Question {
            id: String::from(SINGLE_QUESTION_ID),
            text: params.question.clone(),
            optional: false,
            kind: QuestionKind::Number(NumberQuestion {
                unit: params.unit.clone(),
                min: params.min,
                max: params.max,
                decimals: params.decimals,
                buckets: params.buckets,
            }),
        }
    }

    /// The number question, if it is one.
    pub fn as_number(&self) -> Option<&NumberQuestion> {
        match &self.kind {
            QuestionKind::Number(n) => Some(n),
            QuestionKind::Choice(_) => None,
        }
    }

    /// The choice question, if it is one.
    pub fn as_choice(&self) -> Option<&ChoiceQuestion> {
        match &self.kind {
            QuestionKind::Choice(c) => Some(c),
            QuestionKind::Number(_) => None,
        }
    }
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_QUESTION_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn text_ok(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

/// Checks every question on its own and that ids are unique. The vector-wide checks (length,
/// overflow for a cohort size) are [`crate::layout::Layout::new`]'s.
pub fn validate_questions(questions: &[Question]) -> Result<(), QuestionnaireError> {
    if questions.is_empty() || questions.len() > MAX_QUESTIONS {
        return Err(QuestionnaireError::QuestionCount {
            got: questions.len(),
            max: MAX_QUESTIONS,
        });
    }
    for (index, q) in questions.iter().enumerate() {
        let fail = |key: &'static str, problem: QuestionProblem| {
            let id = if id_ok(&q.id) {
                q.id.clone()
            } else {
                String::new()
            };
            Err(QuestionnaireError::Question {
                index,
                id,
                key,
                problem,
            })
        };
        if !id_ok(&q.id) {
            return fail(
                "id",
                QuestionProblem::BadId {
                    max: MAX_QUESTION_ID,
                },
            );
        }
        if questions[..index].iter().any(|p| p.id == q.id) {
            return fail("id", QuestionProblem::DuplicateId);
        }
        if !text_ok(&q.text, MAX_TEXT) {
            return fail("text", QuestionProblem::BadText { max: MAX_TEXT });
        }
        match &q.kind {
            QuestionKind::Number(n) => {
                if !text_ok(&n.unit, MAX_TEXT) {
                    return fail("unit", QuestionProblem::BadText { max: MAX_TEXT });
                }
                if n.decimals > MAX_DECIMALS {
                    return fail(
                        "decimals",
                        QuestionProblem::TooManyDecimals { max: MAX_DECIMALS },
                    );
                }
                let Ok(lo) = n.min.to_scaled(n.decimals) else {
                    return fail("min", QuestionProblem::BadRange);
                };
                let Ok(hi) = n.max.to_scaled(n.decimals) else {
                    return fail("max", QuestionProblem::BadRange);
                };
                if lo >= hi || hi.checked_sub(lo).is_none() {
                    return fail("max", QuestionProblem::BadRange);
                }
                if n.buckets == 0 || n.buckets > MAX_BUCKETS {
                    return fail("buckets", QuestionProblem::BadBuckets { max: MAX_BUCKETS });
                }
            }
            QuestionKind::Choice(c) => {
                if c.options.len() < MIN_OPTIONS || c.options.len() > MAX_OPTIONS {
                    return fail(
                        "options",
                        QuestionProblem::OptionCount {
                            min: MIN_OPTIONS,
                            max: MAX_OPTIONS,
                        },
                    );
                }
                for (option, label) in c.options.iter().enumerate() {
                    if label.is_empty() || !text_ok(label, MAX_LABEL) {
                        return fail(
                            "options",
                            QuestionProblem::BadLabel {
                                option,
                                max: MAX_LABEL,
                            },
                        );
                    }
                    if c.options[..option].contains(label) {
                        return fail("options", QuestionProblem::DuplicateLabel { option });
                    }
                }
            }
        }
    }
    Ok(())
}

/// The JSON form: one flat object per question, tagged by `kind`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum WireQuestion {
    Number {
        id: String,
        text: String,
        #[serde(default)]
        unit: String,
        #[serde(with = "json_decimal")]
        min: Decimal,
        #[serde(with = "json_decimal")]
        max: Decimal,
        decimals: u8,
        buckets: u16,
        #[serde(default, skip_serializing_if = "is_false")]
        optional: bool,
    },
    Choice {
        id: String,
        text: String,
        options: Vec<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        optional: bool,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl From<Question> for WireQuestion {
    fn from(q: Question) -> WireQuestion {
        match q.kind {
            QuestionKind::Number(n) => WireQuestion::Number {
                id: q.id,
                text: q.text,
                unit: n.unit,
                min: n.min,
                max: n.max,
                decimals: n.decimals,
                buckets: n.buckets,
                optional: q.optional,
            },
            QuestionKind::Choice(c) => WireQuestion::Choice {
                id: q.id,
                text: q.text,
                options: c.options,
                optional: q.optional,
            },
        }
    }
}

impl From<WireQuestion> for Question {
    fn from(w: WireQuestion) -> Question {
        match w {
            WireQuestion::Number {
                id,
                text,
                unit,
                min,
                max,
                decimals,
                buckets,
                optional,
            } => Question {
                id,
                text,
                optional,
                kind: QuestionKind::Number(NumberQuestion {
                    unit,
                    min,
                    max,
                    decimals,
                    buckets,
                }),
            },
            WireQuestion::Choice {
                id,
                text,
                options,
                optional,
            } => Question {
                id,
                text,
                optional,
                kind: QuestionKind::Choice(ChoiceQuestion { options }),
            },
        }
    }
}

/// A [`Decimal`] as a JSON number (or a string): integers stay integers, other values use the
/// shortest decimal that round-trips, which is what the person typed.
mod json_decimal {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        match d.to_scaled(0) {
            Ok(i) => s.serialize_i64(i),
            Err(_) => s.serialize_f64(d.to_f64()),
        }
    }

    struct V;

    impl serde::de::Visitor<'_> for V {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal number")
        }

        fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<Decimal, E> {
            Decimal::from_int(x).map_err(|_| E::custom("number too large"))
        }

        fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<Decimal, E> {
            let x = i64::try_from(x).map_err(|_| E::custom("number too large"))?;
            self.visit_i64(x)
        }

        fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Decimal, E> {
            if !x.is_finite() {
                return Err(E::custom("not a finite number"));
            }
            // Display of f64 is the shortest decimal that round-trips, never in exponent form.
            alloc::format!("{x}")
                .parse()
                .map_err(|_| E::custom("not a decimal number"))
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Decimal, E> {
            s.parse().map_err(|_| E::custom("not a decimal number"))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const HEIGHT: &str = r#"{"id":"height","kind":"number","text":"How tall are you?","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13}"#;
    const SMOKER: &str = r#"{"id":"smoker","kind":"choice","text":"Do you smoke?","options":["no","yes","used to"]}"#;

    fn parse(s: &str) -> Question {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn parses_the_issue_json() {
        let h = parse(HEIGHT);
        assert_eq!(h.id, "height");
        assert!(!h.optional);
        let n = h.as_number().unwrap();
        assert_eq!((n.min_scaled(), n.range_scaled()), (1000, 1300));
        assert_eq!(n.unit, "cm");
        let s = parse(SMOKER);
        assert_eq!(s.as_choice().unwrap().options, ["no", "yes", "used to"]);
        validate_questions(&[h.clone(), s.clone()]).unwrap();
        // Round trip, and the serialised form reads back the same.
        for q in [h, s] {
            let json = serde_json::to_string(&q).unwrap();
            assert_eq!(parse(&json), q);
        }
        let opt = parse(
            r#"{"id":"w","kind":"number","text":"","min":"-2.5","max":7.25,"decimals":2,"buckets":1,"optional":true}"#,
        );
        assert!(opt.optional);
        let n = opt.as_number().unwrap();
        assert_eq!((n.min_scaled(), n.range_scaled()), (-250, 975));
        assert_eq!(n.max.to_string(), "7.25");
        let json = serde_json::to_string(&opt).unwrap();
        assert!(json.contains(r#""min":-2.5"#) && json.contains(r#""optional":true"#));
    }

    #[test]
    fn refuses_unknown_and_foreign_keys() {
        for bad in [
            r#"{"id":"a","kind":"number","text":"","min":0,"max":1,"decimals":0,"buckets":1,"colour":1}"#,
            r#"{"id":"a","kind":"number","text":"","min":0,"max":1,"decimals":0,"buckets":1,"options":["x","y"]}"#,
            r#"{"id":"a","kind":"choice","text":"","options":["x","y"],"min":0}"#,
            r#"{"id":"a","kind":"date","text":""}"#,
            r#"{"id":"a","kind":"number","text":"","min":0,"decimals":0,"buckets":1}"#,
            r#"{"id":"a","kind":"number","text":"","min":"1e3","max":1,"decimals":0,"buckets":1}"#,
        ] {
            assert!(serde_json::from_str::<Question>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_the_question_and_key() {
        let h = parse(HEIGHT);
        let s = parse(SMOKER);
        let err = |qs: &[Question]| validate_questions(qs).unwrap_err();
        assert_eq!(
            err(&[]),
            QuestionnaireError::QuestionCount { got: 0, max: 32 }
        );
        assert_eq!(
            err(&vec![s.clone(); 33]),
            QuestionnaireError::QuestionCount { got: 33, max: 32 }
        );
        let q = |index: usize, id: &str, key: &'static str, problem| QuestionnaireError::Question {
            index,
            id: id.to_string(),
            key,
            problem,
        };
        assert_eq!(
            err(&[h.clone(), h.clone()]),
            q(1, "height", "id", QuestionProblem::DuplicateId)
        );
        let mut bad = h.clone();
        bad.id = "Height".into();
        assert_eq!(
            err(&[s.clone(), bad]),
            q(1, "", "id", QuestionProblem::BadId { max: 64 })
        );
        let mut bad = h.clone();
        let QuestionKind::Number(n) = &mut bad.kind else {
            unreachable!()
        };
        n.decimals = 0;
        n.min = "0.5".parse().unwrap();
        assert_eq!(
            err(&[bad]),
            q(0, "height", "min", QuestionProblem::BadRange)
        );
        let mut bad = h.clone();
        let QuestionKind::Number(n) = &mut bad.kind else {
            unreachable!()
        };
        n.buckets = MAX_BUCKETS + 1;
        assert_eq!(
            err(&[bad]),
            q(
                0,
                "height",
                "buckets",
                QuestionProblem::BadBuckets { max: MAX_BUCKETS }
            )
        );
        let mut bad = s.clone();
        let QuestionKind::Choice(c) = &mut bad.kind else {
            unreachable!()
        };
        c.options.push("no".into());
        assert_eq!(
            err(&[bad]),
            q(
                0,
                "smoker",
                "options",
                QuestionProblem::DuplicateLabel { option: 3 }
            )
        );
        let mut bad = s;
        bad.text = "a\nb".into();
        assert_eq!(
            err(&[bad]),
            q(
                0,
                "smoker",
                "text",
                QuestionProblem::BadText { max: MAX_TEXT }
            )
        );
    }

    #[test]
    fn from_params_is_the_single_question() {
        let q = Question::from_params(&StudyParams::demo());
        assert_eq!(q.id, SINGLE_QUESTION_ID);
        assert_eq!(q.as_number().unwrap().range_scaled(), 3000);
        validate_questions(&[q]).unwrap();
    }
}
