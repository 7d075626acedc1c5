//! The result of a questionnaire round, decoded from the aggregate vector.
//!
//! The aggregate is the entry-wise sum of the patients' vectors ([`crate::layout`]); since
//! [`Layout::new`] checked that no entry can wrap the field, every entry is an exact integer.
//! All sums are taken in offset fixed point (`x = value·10^d − min·10^d`); every statistic is
//! computed from them with exact integer arithmetic (`u128`/`i128`) up to one final conversion
//! to `f64`: means and sums are shifted back by `min` before dividing by `10^d`, variances and
//! covariances are shift-invariant (`n·Σxy − Σx·Σy` is exact), and the scale `10^d` of each
//! question is applied last.
//!
//! JSON (issue 11):
//!
//! ```json
//! {"count":5,
//!  "questions":{"height":{"count":5,"sum":860.5,"mean":172.1,"stddev":4.2,"histogram":[0,…]},
//!               "smoker":{"count":5,"counts":{"no":2,"yes":2,"used to":1}}},
//!  "pairs":[{"x":"height","y":"weight","n":5,"mean_x":…,"mean_y":…,"r":…,"slope":…,"intercept":…}],
//!  "by_option":[{"choice":"smoker","number":"height","option":"yes","n":2,"mean":…}]}
//! ```
//!
//! Statistics that do not exist are `null`: a mean over nobody, a standard deviation over
//! nobody, `r` when either variance is zero (or fewer than two patients), the line when the
//! first question's variance is zero.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AggregateError;
use crate::field::Fe;
use crate::layout::Layout;
use crate::question::{NumberQuestion, QuestionKind};

/// Entries of a JSON object in a fixed order (the questionnaire's), with unique keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Ordered<V> {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ordered<V>, D::Error> {
        struct Visit<V>(core::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                let mut seen = alloc::collections::BTreeSet::new();
                while let Some(k) = map.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Visit(core::marker::PhantomData))
    }
}

/// The statistics of one number question over the patients who answered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberStats {
    /// Patients who answered.
    pub count: u64,
    /// Sum of their answers, in the question's unit.
    pub sum: f64,
    /// Mean answer, in the question's unit; `None` if nobody answered.
    pub mean: Option<f64>,
    /// Population standard deviation (divisor `count`, as the one-question
    /// [`crate::encoding::Statistics`]), in the question's unit; `None` if nobody answered.
    pub stddev: Option<f64>,
    /// Patients per bucket (equal-width buckets over `[min, max]`, the last one closed).
    pub histogram: Vec<u64>,
}

/// The counts of one choice question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceStats {
    /// Patients who answered.
    pub count: u64,
    /// Patients per option, in the question's option order.
    pub counts: Ordered<u64>,
}

/// The result of one question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuestionStats {
    /// A number question.
    Number(NumberStats),
    /// A choice question.
    Choice(ChoiceStats),
}

/// Correlation and least-squares line of two number questions, over the patients who answered
/// both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairStats {
    /// The first question (earlier in the questionnaire): the line's abscissa.
    pub x: String,
    /// The second question: the line's ordinate.
    pub y: String,
    /// Patients who answered both.
    pub n: u64,
    /// Mean of `x` over them; `None` if `n` is 0.
    pub mean_x: Option<f64>,
    /// Mean of `y` over them; `None` if `n` is 0.
    pub mean_y: Option<f64>,
    /// Pearson's correlation coefficient; `None` if either variance is 0 (so also if `n < 2`).
    pub r: Option<f64>,
    /// Slope of the least-squares line `y = slope·x + intercept`; `None` if the variance of
    /// `x` is 0.
    pub slope: Option<f64>,
    /// Intercept of that line, in `y`'s unit; `None` with the slope.
    pub intercept: Option<f64>,
}

/// A number question's mean among the patients who chose one option of a choice question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByOptionStats {
    /// The choice question's id.
    pub choice: String,
    /// The number question's id.
    pub number: String,
    /// The option's label.
    pub option: String,
    /// Patients who chose this option and answered the number question.
    pub n: u64,
    /// Their mean answer to the number question; `None` if `n` is 0.
    pub mean: Option<f64>,
}

/// Everything a questionnaire round reveals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionnaireResult {
    /// Contributing patients.
    pub count: u64,
    /// Per question, in questionnaire order, by id.
    pub questions: Ordered<QuestionStats>,
    /// Per pair of number questions, in questionnaire order.
    pub pairs: Vec<PairStats>,
    /// Per choice question, number question and option.
    pub by_option: Vec<ByOptionStats>,
}

impl QuestionnaireResult {
    /// The result of a one-question study (its one question
    /// [`crate::question::SINGLE_QUESTION_ID`]) whose single-number statistics are `s`: what
    /// [`Layout::decode`] gives for the aggregate that [`crate::encoding::decode`] decodes to `s`.
    pub fn from_statistics(s: &crate::encoding::Statistics) -> QuestionnaireResult {
        QuestionnaireResult {
            count: s.count,
            questions: Ordered(alloc::vec![(
                String::from(crate::question::SINGLE_QUESTION_ID),
                QuestionStats::Number(NumberStats {
                    count: s.count,
                    sum: s.sum,
                    mean: (s.count > 0).then_some(s.mean),
                    stddev: (s.count > 0).then_some(s.stddev),
                    histogram: s.histogram.clone(),
                }),
            )]),
            pairs: Vec::new(),
            by_option: Vec::new(),
        }
    }
}

/// `10^decimals` as `f64`.
fn scale(q: &NumberQuestion) -> f64 {
    libm::pow(10.0, f64::from(q.decimals))
}

/// The mean in the question's unit of `n` offset values summing to `s1`: `(s1 + n·min')/(n·10^d)`,
/// numerator exact.
fn mean_of(q: &NumberQuestion, n: u128, s1: u128) -> Option<f64> {
    (n > 0).then(|| {
        // Sum first, then mean: the same operations as the one-question decoding.
        let num = s1 as i128 + n as i128 * i128::from(q.min_scaled());
        num as f64 / scale(q) / n as f64
    })
}

impl Layout {
    /// Decodes the aggregate (the entry-wise sum of the patients' vectors) into the round's
    /// result, after checking that it is consistent: the right length, a count between 1 and the
    /// cohort size, per-question counts that agree with their histogram or options and never
    /// exceed the count, sums within what that many answers in range allow, and Cauchy–Schwarz
    /// for every variance and covariance. A corrupted or mismatched partial sum fails with
    /// [`AggregateError::Inconsistent`].
    pub fn decode(&self, aggregate: &[Fe]) -> Result<QuestionnaireResult, AggregateError> {
        if aggregate.len() != self.len() {
            return Err(AggregateError::WrongLength);
        }
        let bad = Err(AggregateError::Inconsistent);
        let e = |i: usize| u128::from(aggregate[i].value());
        let count = aggregate[0].value();
        let c = u128::from(count);
        if count == 0 || count > u64::from(self.size()) {
            return bad;
        }
        let qs = self.questions();
        // Per question: answered count; for numbers Σx and Σx².
        let mut answered = Vec::with_capacity(qs.len());
        let mut sums = Vec::with_capacity(qs.len());
        let mut questions = Vec::with_capacity(qs.len());
        for (q, slot) in qs.iter().zip(self.slots()) {
            let n = slot.answered.map_or(c, e);
            if n > c {
                return bad;
            }
            answered.push(n);
            match &q.kind {
                QuestionKind::Number(nq) => {
                    let (s1, s2) = (e(slot.first), e(slot.first + 1));
                    let at = slot.first + 2;
                    let histogram: Vec<u64> = aggregate[at..at + usize::from(nq.buckets)]
                        .iter()
                        .map(|f| f.value())
                        .collect();
                    let r = u128::from(nq.range_scaled());
                    let total: u128 = histogram.iter().map(|&h| u128::from(h)).sum();
                    if total != n || s1 > n * r || s2 > n * r * r || s1 * s1 > n * s2 {
                        return bad;
                    }
                    sums.push((s1, s2));
                    let s = scale(nq);
                    let sum = (s1 as i128 + n as i128 * i128::from(nq.min_scaled())) as f64 / s;
                    let stddev =
                        (n > 0).then(|| libm::sqrt((n * s2 - s1 * s1) as f64) / n as f64 / s);
                    questions.push((
                        q.id.clone(),
                        QuestionStats::Number(NumberStats {
                            count: n as u64,
                            sum,
                            mean: mean_of(nq, n, s1),
                            stddev,
                            histogram,
                        }),
                    ));
                }
                QuestionKind::Choice(cq) => {
                    let counts: Vec<(String, u64)> = cq
                        .options
                        .iter()
                        .enumerate()
                        .map(|(k, label)| (label.clone(), aggregate[slot.first + k].value()))
                        .collect();
                    let total: u128 = counts.iter().map(|(_, n)| u128::from(*n)).sum();
                    if total != n {
                        return bad;
                    }
                    sums.push((0, 0));
                    questions.push((
                        q.id.clone(),
                        QuestionStats::Choice(ChoiceStats {
                            count: n as u64,
                            counts: Ordered(counts),
                        }),
                    ));
                }
            }
        }
        let number = |i: usize| qs[i].as_number().ok_or(AggregateError::Inconsistent);
        let mut pairs = Vec::with_capacity(self.pairs().len());
        for p in self.pairs() {
            let (qx, qy) = (number(p.x)?, number(p.y)?);
            let (rx, ry) = (u128::from(qx.range_scaled()), u128::from(qy.range_scaled()));
            // n, Σx, Σy, Σx², Σy² over patients who answered both, and Σxy.
            let (n, sx, sy, sxx, syy) = if p.full {
                (e(p.at), e(p.at + 1), e(p.at + 2), e(p.at + 3), e(p.at + 4))
            } else {
                (c, sums[p.x].0, sums[p.y].0, sums[p.x].1, sums[p.y].1)
            };
            let sxy = e(if p.full { p.at + 5 } else { p.at });
            if n > answered[p.x].min(answered[p.y])
                || sx > sums[p.x].0
                || sy > sums[p.y].0
                || sxx > sums[p.x].1
                || syy > sums[p.y].1
                || sx > n * rx
                || sy > n * ry
                || sxy > n * rx * ry
                || sx * sx > n * sxx
                || sy * sy > n * syy
                || sxy * sxy > sxx * syy
            {
                return bad;
            }
            // Exact: n·Σx² − (Σx)², n·Σy² − (Σy)², n·Σxy − Σx·Σy (all below 2^123).
            let vx = n * sxx - sx * sx;
            let vy = n * syy - sy * sy;
            let cov = (n * sxy) as i128 - (sx * sy) as i128;
            let r = (vx > 0 && vy > 0).then(|| {
                let r = cov as f64 / libm::sqrt(vx as f64) / libm::sqrt(vy as f64);
                r.clamp(-1.0, 1.0)
            });
            let (mean_x, mean_y) = (mean_of(qx, n, sx), mean_of(qy, n, sy));
            // In offset units the slope is cov/vx; in real units it is scaled by 10^dx / 10^dy.
            let slope = (vx > 0).then(|| cov as f64 / vx as f64 * scale(qx) / scale(qy));
            let intercept = match (slope, mean_x, mean_y) {
                (Some(b), Some(mx), Some(my)) => Some(my - b * mx),
                _ => None,
            };
            pairs.push(PairStats {
                x: qs[p.x].id.clone(),
                y: qs[p.y].id.clone(),
                n: n as u64,
                mean_x,
                mean_y,
                r,
                slope: slope.filter(|_| intercept.is_some()),
                intercept,
            });
        }
        let mut by_option = Vec::new();
        for s in self.by_option() {
            let cq = qs[s.choice]
                .as_choice()
                .ok_or(AggregateError::Inconsistent)?;
            let nq = number(s.number)?;
            let r = u128::from(nq.range_scaled());
            let mut total = 0u128;
            for (k, label) in cq.options.iter().enumerate() {
                let (n, s1) = (e(s.at + 2 * k), e(s.at + 2 * k + 1));
                let chose = e(self.slots()[s.choice].first + k);
                total += n;
                if n > chose || s1 > n * r {
                    return bad;
                }
                by_option.push(ByOptionStats {
                    choice: qs[s.choice].id.clone(),
                    number: qs[s.number].id.clone(),
                    option: label.clone(),
                    n: n as u64,
                    mean: mean_of(nq, n, s1),
                });
            }
            if total > answered[s.number] {
                return bad;
            }
        }
        Ok(QuestionnaireResult {
            count,
            questions: Ordered(questions),
            pairs,
            by_option,
        })
    }
}
