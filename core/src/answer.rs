//! One patient's answers to a questionnaire, their checks and their vector.
//!
//! Answers are given per question id: a number (typed text such as `"172.5"`, or an exact
//! [`Decimal`]), an option label for a choice, or a skip for an optional question. An optional
//! question with no answer at all counts as skipped; a required one is an error. The command
//! line form is `--answer ID=VALUE` (repeatable) and `--skip ID`, read by
//! [`Answers::from_args`]; the JSON form (from the patient page) is one object
//! `{"height": "172.5", "weight": 80, "smoker": "yes", "alcohol": null}` where `null` skips.
//!
//! [`Layout::check`] resolves answers against a questionnaire and [`Layout::encode`] turns them
//! into the statistics vector described in [`crate::layout`]. Every error names the question,
//! never the answer; `Debug` of answers is opaque.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decimal::Decimal;
use crate::encoding::{EncodedValue, bucket_of};
use crate::error::{AnswerError, ValueError};
use crate::field::Fe;
use crate::layout::Layout;
use crate::question::{MAX_QUESTIONS, NumberQuestion, QuestionKind, SINGLE_QUESTION_ID};

/// The answer to one question.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// Text as the patient typed it: a decimal number for a number question, an option label
    /// for a choice.
    Text(String),
    /// An exact number (number questions only).
    Number(Decimal),
    /// Prefer not to say (optional questions only).
    Skip,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answer(..)")
    }
}

impl Answer {
    /// A number given as an `f64` (as a browser form or JSON holds it), read as the shortest
    /// decimal that round-trips (`172.5` is `"172.5"`), so that its digits are checked against
    /// the question's decimals exactly. Refuses NaN and infinities.
    pub fn from_f64(x: f64) -> Result<Answer, ValueError> {
        if !x.is_finite() {
            return Err(ValueError::Malformed);
        }
        // Display of f64 is the shortest round-tripping decimal, never in exponent form.
        Ok(Answer::Number(alloc::format!("{x}").parse()?))
    }
}

/// One patient's answers, by question id, in the order given. `Debug` is opaque.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Answers {
    entries: Vec<(String, Answer)>,
}

impl fmt::Debug for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answers(..)")
    }
}

impl Answers {
    /// No answers yet.
    pub fn new() -> Answers {
        Answers::default()
    }

    /// The answers of a one-question study (question id [`SINGLE_QUESTION_ID`]).
    pub fn single(value: Decimal) -> Answers {
        Answers {
            entries: vec![(String::from(SINGLE_QUESTION_ID), Answer::Number(value))],
        }
    }

    /// Adds the answer to question `id`; refuses a second answer to the same question.
    pub fn set(&mut self, id: &str, answer: Answer) -> Result<(), AnswerError> {
        if self.get(id).is_some() {
            return Err(AnswerError::Duplicate {
                question: id.to_string(),
            });
        }
        self.entries.push((id.to_string(), answer));
        Ok(())
    }

    /// Adds an answer in the command line form `ID=VALUE` (`height=172.5`, `smoker=used to`).
    /// Only the first `=` separates; the id is trimmed, the value is kept as typed (numbers are
    /// trimmed when parsed, labels must match exactly).
    pub fn set_arg(&mut self, arg: &str) -> Result<(), AnswerError> {
        let (id, value) = arg.split_once('=').ok_or(AnswerError::Malformed)?;
        let id = id.trim();
        if id.is_empty() {
            return Err(AnswerError::Malformed);
        }
        self.set(id, Answer::Text(value.to_string()))
    }

    /// Reads the command line form: every `--answer ID=VALUE` and every `--skip ID`.
    pub fn from_args<'a>(
        answers: impl IntoIterator<Item = &'a str>,
        skips: impl IntoIterator<Item = &'a str>,
    ) -> Result<Answers, AnswerError> {
        let mut out = Answers::new();
        for arg in answers {
            out.set_arg(arg)?;
        }
        for id in skips {
            let id = id.trim();
            if id.is_empty() {
                return Err(AnswerError::Malformed);
            }
            out.set(id, Answer::Skip)?;
        }
        Ok(out)
    }

    /// The answer to question `id`, if one was given.
    pub fn get(&self, id: &str) -> Option<&Answer> {
        self.entries.iter().find(|(k, _)| k == id).map(|(_, a)| a)
    }

    /// Every answer, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Answer)> {
        self.entries.iter().map(|(k, a)| (k.as_str(), a))
    }

    /// Number of answers (skips included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no answer was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Serialize for Answers {
    /// A JSON object: a number answer as its decimal string, a label as itself, a skip as
    /// `null`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (id, answer) in &self.entries {
            match answer {
                Answer::Text(t) => map.serialize_entry(id, t)?,
                Answer::Number(d) => map.serialize_entry(id, &d.to_string())?,
                Answer::Skip => map.serialize_entry(id, &Option::<&str>::None)?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Answers {
    /// A JSON object of id → string (number as typed, or label), number, or `null` (skip).
    /// A repeated id, or more than [`MAX_QUESTIONS`] answers, is refused.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Answers, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Answers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of answers by question id")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Answers, A::Error> {
                let mut out = Answers::new();
                while let Some(id) = map.next_key::<String>()? {
                    if out.len() == MAX_QUESTIONS {
                        return Err(serde::de::Error::custom("more answers than questions"));
                    }
                    let answer = map.next_value::<WireAnswer>()?.0;
                    out.set(&id, answer)
                        .map_err(|_| serde::de::Error::custom("a question is answered twice"))?;
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// One JSON answer value.
struct WireAnswer(Answer);

impl<'de> Deserialize<'de> for WireAnswer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WireAnswer, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WireAnswer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a string or null")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<WireAnswer, E> {
                Ok(WireAnswer(Answer::Text(s.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<WireAnswer, E> {
                Decimal::from_int(x)
                    .map(|d| WireAnswer(Answer::Number(d)))
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<WireAnswer, E> {
                let x = i64::try_from(x).map_err(|_| E::custom("number too large"))?;
                self.visit_i64(x)
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<WireAnswer, E> {
                Answer::from_f64(x)
                    .map(WireAnswer)
                    .map_err(|_| E::custom("not a decimal number"))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<WireAnswer, E> {
                Ok(WireAnswer(Answer::Skip))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<WireAnswer, E> {
                Ok(WireAnswer(Answer::Skip))
            }
        }
        d.deserialize_any(V)
    }
}

/// One question's answer, checked and resolved against its question. `Debug` is opaque.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// An optional question left unanswered.
    Skipped,
    /// A number question: the offset fixed-point value `x = value·10^d − min·10^d`, in
    /// `[0, range_scaled]`.
    Number(u64),
    /// A choice question: the position of the chosen option.
    Choice(usize),
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolved(..)")
    }
}

/// The offset fixed-point value of `value` for a number question, checked for decimals and
/// range.
pub fn number_offset(q: &NumberQuestion, value: &Decimal) -> Result<u64, ValueError> {
    let x = value.to_scaled(q.decimals)?;
    let lo = q
        .min
        .to_scaled(q.decimals)
        .map_err(|_| ValueError::TooLarge)?;
    let hi = q
        .max
        .to_scaled(q.decimals)
        .map_err(|_| ValueError::TooLarge)?;
    if x < lo || x > hi {
        return Err(ValueError::OutOfRange);
    }
    Ok((x - lo) as u64)
}

impl Layout {
    /// Checks answers against the questionnaire and resolves them, one per question in order.
    ///
    /// Errors, first found wins: an answer to an unknown question (in the order given), then per
    /// question in order: a required question unanswered ([`AnswerError::Missing`]) or skipped
    /// ([`AnswerError::SkippedRequired`]), a number for a choice ([`AnswerError::WrongKind`]), a
    /// malformed, out of range or too precise number ([`AnswerError::Value`]), a label that is
    /// not an option ([`AnswerError::UnknownOption`]).
    pub fn check(&self, answers: &Answers) -> Result<Vec<Resolved>, AnswerError> {
        for (id, _) in answers.iter() {
            if !self.questions().iter().any(|q| q.id == id) {
                return Err(AnswerError::UnknownQuestion {
                    question: id.to_string(),
                });
            }
        }
        let mut out = Vec::with_capacity(self.questions().len());
        for q in self.questions() {
            let named = || q.id.clone();
            let answer = match answers.get(&q.id) {
                None | Some(Answer::Skip) if q.optional => {
                    out.push(Resolved::Skipped);
                    continue;
                }
                None => return Err(AnswerError::Missing { question: named() }),
                Some(Answer::Skip) => {
                    return Err(AnswerError::SkippedRequired { question: named() });
                }
                Some(a) => a,
            };
            let resolved = match (&q.kind, answer) {
                (QuestionKind::Number(n), Answer::Number(d)) => number_offset(n, d),
                (QuestionKind::Number(n), Answer::Text(t)) => {
                    t.parse::<Decimal>().and_then(|d| number_offset(n, &d))
                }
                (QuestionKind::Choice(c), Answer::Text(t)) => {
                    let k = c
                        .options
                        .iter()
                        .position(|o| o == t)
                        .ok_or_else(|| AnswerError::UnknownOption { question: named() })?;
                    out.push(Resolved::Choice(k));
                    continue;
                }
                (QuestionKind::Choice(_), _) => {
                    return Err(AnswerError::WrongKind { question: named() });
                }
                (QuestionKind::Number(_), Answer::Skip) => unreachable!("handled above"),
            };
            let x = resolved.map_err(|source| AnswerError::Value {
                question: named(),
                source,
            })?;
            out.push(Resolved::Number(x));
        }
        Ok(out)
    }

    /// Checks answers ([`Layout::check`]) and encodes them as this questionnaire's statistics
    /// vector (the layout of [`crate::layout`]).
    pub fn encode(&self, answers: &Answers) -> Result<EncodedValue, AnswerError> {
        let resolved = self.check(answers)?;
        Ok(EncodedValue::from_vec(self.encode_resolved(&resolved)))
    }

    /// Encodes resolved answers (one per question, from [`Layout::check`]).
    ///
    /// # Panics
    ///
    /// If `resolved` does not have one entry per question of the matching kind.
    pub fn encode_resolved(&self, resolved: &[Resolved]) -> Vec<Fe> {
        assert_eq!(
            resolved.len(),
            self.questions().len(),
            "one answer per question"
        );
        let mut v = vec![Fe::ZERO; self.len()];
        v[0] = Fe::ONE;
        // Per question: indicator and value (x, 0 if skipped) for the cross terms below.
        let mut a = vec![0u64; resolved.len()];
        let mut x = vec![0u64; resolved.len()];
        let mut option = vec![None; resolved.len()];
        for (i, (q, slot)) in self.questions().iter().zip(self.slots()).enumerate() {
            match (resolved[i], &q.kind) {
                (Resolved::Skipped, _) => {
                    assert!(q.optional, "a required question cannot be skipped");
                    continue;
                }
                (Resolved::Number(xi), QuestionKind::Number(n)) => {
                    let (xi, range) = (xi, n.range_scaled());
                    assert!(xi <= range, "value within range");
                    let f = Fe::new(xi);
                    v[slot.first] = f;
                    v[slot.first + 1] = f * f;
                    v[slot.first + 2 + bucket_of(xi, range, n.buckets)] = Fe::ONE;
                    x[i] = xi;
                }
                (Resolved::Choice(k), QuestionKind::Choice(c)) => {
                    assert!(k < c.options.len(), "option within the question's options");
                    v[slot.first + k] = Fe::ONE;
                    option[i] = Some(k);
                }
                _ => panic!("answer of the wrong kind for question {i}"),
            }
            a[i] = 1;
            if let Some(at) = slot.answered {
                v[at] = Fe::ONE;
            }
        }
        for p in self.pairs() {
            let (ax, ay) = (Fe::new(a[p.x]), Fe::new(a[p.y]));
            let (fx, fy) = (Fe::new(x[p.x]), Fe::new(x[p.y]));
            let mut at = p.at;
            if p.full {
                for e in [ax * ay, fx * ay, fy * ax, fx * fx * ay, fy * fy * ax] {
                    v[at] = e;
                    at += 1;
                }
            }
            v[at] = fx * fy;
        }
        for s in self.by_option() {
            if let Some(k) = option[s.choice] {
                v[s.at + 2 * k] = Fe::new(a[s.number]);
                v[s.at + 2 * k + 1] = Fe::new(x[s.number]);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::Question;

    fn layout() -> Layout {
        let qs: Vec<Question> = serde_json::from_str(
            r#"[{"id":"height","kind":"number","text":"","unit":"cm","min":100,"max":230,"decimals":1,"buckets":13},
                {"id":"weight","kind":"number","text":"","min":30,"max":200,"decimals":0,"buckets":4,"optional":true},
                {"id":"smoker","kind":"choice","text":"","options":["no","yes","used to"]}]"#,
        )
        .unwrap();
        Layout::new(&qs, 5).unwrap()
    }

    fn raw(v: &EncodedValue) -> Vec<u64> {
        v.as_slice().iter().map(|f| f.value()).collect()
    }

    #[test]
    fn encodes_every_entry() {
        let l = layout();
        let ans = Answers::from_args(["height=172.5", "weight=80", "smoker=used to"], []).unwrap();
        let v = raw(&l.encode(&ans).unwrap());
        let (x, w) = (725u64, 50u64);
        let mut want = vec![1, x, x * x];
        let mut hist = vec![0; 13];
        hist[(x * 13 / 1300) as usize] = 1;
        want.extend(hist);
        want.extend([1, w, w * w, 0, 1, 0, 0]); // 50·4/170 = 1
        want.extend([0, 0, 1]);
        want.extend([1, x, w, x * x, w * w, x * w]);
        want.extend([0, 0, 0, 0, 1, x]); // smoker × height
        want.extend([0, 0, 0, 0, 1, w]); // smoker × weight
        assert_eq!(v, want);
        assert_eq!(v.len(), l.len());
    }

    #[test]
    fn skip_zeroes_the_question() {
        let l = layout();
        let skip = Answers::from_args(["height=100", "smoker=no"], ["weight"]).unwrap();
        let absent = Answers::from_args(["height=100", "smoker=no"], []).unwrap();
        let v = raw(&l.encode(&skip).unwrap());
        assert_eq!(v, raw(&l.encode(&absent).unwrap()));
        assert_eq!(v.len(), 44);
        assert_eq!(v[16..23], [0; 7]); // weight: a, x, x², 4 buckets
        assert_eq!(v[26..32], [0; 6]); // pair: a_w = 0, x_h = 0 at the minimum
        assert_eq!(v[32..], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn errors_name_the_question() {
        let l = layout();
        let err = |a: &[&str], s: &[&str]| {
            l.encode(&Answers::from_args(a.iter().copied(), s.iter().copied()).unwrap())
                .unwrap_err()
        };
        let id = |s: &str| s.to_string();
        assert_eq!(
            err(&["height=170", "smoker=no", "age=3"], &[]),
            AnswerError::UnknownQuestion {
                question: id("age")
            }
        );
        assert_eq!(
            err(&["smoker=no"], &[]),
            AnswerError::Missing {
                question: id("height")
            }
        );
        assert_eq!(
            err(&["smoker=no"], &["height"]),
            AnswerError::SkippedRequired {
                question: id("height")
            }
        );
        assert_eq!(
            err(&["height=230.1", "smoker=no"], &[]),
            AnswerError::Value {
                question: id("height"),
                source: ValueError::OutOfRange
            }
        );
        assert_eq!(
            err(&["height=170", "weight=80.5", "smoker=no"], &[]),
            AnswerError::Value {
                question: id("weight"),
                source: ValueError::TooManyDecimals { allowed: 0 }
            }
        );
        assert_eq!(
            err(&["height=tall", "smoker=no"], &[]),
            AnswerError::Value {
                question: id("height"),
                source: ValueError::Malformed
            }
        );
        assert_eq!(
            err(&["height=170", "smoker=sometimes"], &[]),
            AnswerError::UnknownOption {
                question: id("smoker")
            }
        );
        let mut a = Answers::from_args(["height=170"], []).unwrap();
        a.set("smoker", Answer::from_f64(1.0).unwrap()).unwrap();
        assert_eq!(
            l.encode(&a).unwrap_err(),
            AnswerError::WrongKind {
                question: id("smoker")
            }
        );
        assert_eq!(
            Answers::from_args(["height=1", "height=2"], []).unwrap_err(),
            AnswerError::Duplicate {
                question: id("height")
            }
        );
        assert_eq!(
            Answers::from_args(["height"], []).unwrap_err(),
            AnswerError::Malformed
        );
        assert_eq!(
            Answers::from_args(["=3"], []).unwrap_err(),
            AnswerError::Malformed
        );
    }

    #[test]
    fn json_and_f64_forms() {
        let l = layout();
        let a: Answers =
            serde_json::from_str(r#"{"height":172.5,"weight":null,"smoker":"yes"}"#).unwrap();
        let b = Answers::from_args(["height=172.5", "smoker=yes"], ["weight"]).unwrap();
        assert_eq!(raw(&l.encode(&a).unwrap()), raw(&l.encode(&b).unwrap()));
        let back: Answers = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(raw(&l.encode(&back).unwrap()), raw(&l.encode(&b).unwrap()));
        assert!(serde_json::from_str::<Answers>(r#"{"height":1,"height":2}"#).is_err());
        assert_eq!(Answer::from_f64(f64::NAN), Err(ValueError::Malformed));
        assert_eq!(
            Answer::from_f64(0.1 + 0.2),
            Err(ValueError::TooManyDecimals { allowed: 9 })
        );
        assert_eq!(format!("{a:?}"), "Answers(..)");
        assert_eq!(format!("{:?}", Answer::Skip), "Answer(..)");
    }
}
