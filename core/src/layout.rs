//! The statistics vector of a questionnaire: which entry holds what, computed once per study.
//!
//! For a cohort of patients answering questions `q_1 … q_m` (in order), a patient's vector is:
//!
//! 1. `[1]`, the count entry;
//! 2. per question, in order: a number `[a, x, x², h_0 … h_{B−1}]` (`a` = 1 if answered,
//!    `x` the offset fixed-point value as in [`crate::encoding`] or 0, `h` the one-hot bucket or
//!    all 0); a choice `[a, o_0 … o_{K−1}]` (one-hot option or all 0). A required question omits
//!    `a` (it is always 1), so a one-question required number study is exactly the vector of
//!    [`crate::encoding::encode`];
//! 3. per pair of number questions `i < j`: `[x_i·x_j]` if both are required, otherwise
//!    `[a_i·a_j, x_i·a_j, x_j·a_i, x_i²·a_j, x_j²·a_i, x_i·x_j]` (a missing `a` counts as 1);
//! 4. per (choice `c`, number `q`) pair, choices then numbers in question order, per option `k`:
//!    `[o_{c,k}·a_q, o_{c,k}·x_q]`.
//!
//! [`Layout::new`] refuses a questionnaire whose vector is longer than [`MAX_VECTOR_LEN`] or
//! whose aggregate over `size` patients could wrap the field (every entry's largest value ×
//! `size` must stay below p), naming the question or pair responsible.

use alloc::vec::Vec;

use crate::error::QuestionnaireError;
use crate::field::MODULUS;
use crate::question::{Question, QuestionKind, validate_questions};
use crate::study::{MAX_COHORT, StudyParams};

/// Longest statistics vector a questionnaire may need.
pub const MAX_VECTOR_LEN: usize = 4096;

/// What one entry of the vector holds, for one patient. Question indices are positions in the
/// questionnaire; in pair terms `x` is the first (earlier) number question and `y` the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    /// Always 1: sums to the contributor count.
    Count,
    /// `a`: 1 if the (optional) question was answered.
    Answered {
        /// The question.
        question: usize,
    },
    /// `x`: the offset fixed-point value of a number question, 0 if skipped.
    X {
        /// The question.
        question: usize,
    },
    /// `x²`.
    X2 {
        /// The question.
        question: usize,
    },
    /// `h_b`: 1 if the value falls in bucket `bucket`.
    Bucket {
        /// The question.
        question: usize,
        /// The bucket.
        bucket: u16,
    },
    /// `o_k`: 1 if option `option` was chosen.
    Option {
        /// The question.
        question: usize,
        /// The option.
        option: usize,
    },
    /// `a_x·a_y`.
    PairAnswered {
        /// First number question.
        x: usize,
        /// Second number question.
        y: usize,
    },
    /// `x·a_y`.
    PairX {
        /// First number question.
        x: usize,
        /// Second number question.
        y: usize,
    },
    /// `y·a_x`.
    PairY {
        /// First number question.
        x: usize,
        /// Second number question.
        y: usize,
    },
    /// `x²·a_y`.
    PairXX {
        /// First number question.
        x: usize,
        /// Second number question.
        y: usize,
    },
    /// `y²·a_x`.
    PairYY {
        /// First number question.
        x: usize,
        /// Second number question.
        y: usize,
    },
    /// `x·y`.
    PairXY {
        /// First number question.
        x: usize,
        /// Second number question.
        y: usize,
    },
    /// `o_{c,k}·a_q`.
    OptionAnswered {
        /// The choice question.
        choice: usize,
        /// The option.
        option: usize,
        /// The number question.
        number: usize,
    },
    /// `o_{c,k}·x_q`.
    OptionX {
        /// The choice question.
        choice: usize,
        /// The option.
        option: usize,
        /// The number question.
        number: usize,
    },
}

/// Where one question's entries start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuestionSlot {
    /// Offset of `a`, or `None` for a required question.
    pub answered: Option<usize>,
    /// Offset of `x` (number) or `o_0` (choice).
    pub first: usize,
}

/// Where one pair of number questions' entries start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairSlot {
    /// First number question.
    pub x: usize,
    /// Second number question.
    pub y: usize,
    /// Offset of the pair's first entry.
    pub at: usize,
    /// `true` for the six-entry form (one of them optional), `false` for `[x·y]` alone.
    pub full: bool,
}

/// Where one (choice, number) pair's entries start: `2·K` entries, per option `[o·a, o·x]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByOptionSlot {
    /// The choice question.
    pub choice: usize,
    /// The number question.
    pub number: usize,
    /// Offset of the first entry.
    pub at: usize,
}

/// The length of the vector of `questions` (counted as [`Layout::new`] lays it out, without
/// building it or checking the questions; the count may exceed [`MAX_VECTOR_LEN`]).
pub fn vector_len(questions: &[Question]) -> usize {
    let mut numbers = 0usize;
    let mut optional_numbers = 0usize;
    let mut len = 1usize;
    for q in questions {
        len += usize::from(q.optional);
        match &q.kind {
            QuestionKind::Number(n) => {
                len += 2 + usize::from(n.buckets);
                numbers += 1;
                optional_numbers += usize::from(q.optional);
            }
            QuestionKind::Choice(c) => len += c.options.len(),
        }
    }
    let required = numbers - optional_numbers;
    let pairs = numbers * numbers.saturating_sub(1) / 2;
    let required_pairs = required * required.saturating_sub(1) / 2;
    len += required_pairs + 6 * (pairs - required_pairs);
    let options: usize = questions
        .iter()
        .filter_map(|q| q.as_choice())
        .map(|c| c.options.len())
        .sum();
    len + 2 * options * numbers
}

/// The vector layout of a checked questionnaire for a cohort size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    questions: Vec<Question>,
    size: u32,
    terms: Vec<Term>,
    slots: Vec<QuestionSlot>,
    pairs: Vec<PairSlot>,
    by_option: Vec<ByOptionSlot>,
}

impl Layout {
    /// Checks the questions ([`validate_questions`]), lays out their vector, and refuses it if
    /// it is longer than [`MAX_VECTOR_LEN`] or if the sum of `size` vectors could wrap the field.
    pub fn new(questions: &[Question], size: u32) -> Result<Layout, QuestionnaireError> {
        validate_questions(questions)?;
        if size == 0 || size > MAX_COHORT {
            return Err(QuestionnaireError::BadSize { max: MAX_COHORT });
        }
        let mut terms = Vec::new();
        let mut slots = Vec::with_capacity(questions.len());
        terms.push(Term::Count);
        let mut entries = 1usize;
        for (question, q) in questions.iter().enumerate() {
            let width = usize::from(q.optional)
                + match &q.kind {
                    QuestionKind::Number(n) => 2 + usize::from(n.buckets),
                    QuestionKind::Choice(c) => c.options.len(),
                };
            entries += width;
            if entries > MAX_VECTOR_LEN {
                continue; // counted only: refused below without building a huge vector
            }
            let answered = q.optional.then(|| {
                terms.push(Term::Answered { question });
                terms.len() - 1
            });
            let first = terms.len();
            match &q.kind {
                QuestionKind::Number(n) => {
                    terms.push(Term::X { question });
                    terms.push(Term::X2 { question });
                    terms.extend((0..n.buckets).map(|bucket| Term::Bucket { question, bucket }));
                }
                QuestionKind::Choice(c) => {
                    terms.extend(
                        (0..c.options.len()).map(|option| Term::Option { question, option }),
                    );
                }
            }
            slots.push(QuestionSlot { answered, first });
        }
        let numbers: Vec<usize> = (0..questions.len())
            .filter(|&i| questions[i].as_number().is_some())
            .collect();
        let choices: Vec<usize> = (0..questions.len())
            .filter(|&i| questions[i].as_choice().is_some())
            .collect();
        let mut pairs = Vec::new();
        for (k, &x) in numbers.iter().enumerate() {
            for &y in &numbers[k + 1..] {
                let full = questions[x].optional || questions[y].optional;
                entries += if full { 6 } else { 1 };
                if entries > MAX_VECTOR_LEN {
                    continue;
                }
                pairs.push(PairSlot {
                    x,
                    y,
                    at: terms.len(),
                    full,
                });
                if full {
                    terms.extend([
                        Term::PairAnswered { x, y },
                        Term::PairX { x, y },
                        Term::PairY { x, y },
                        Term::PairXX { x, y },
                        Term::PairYY { x, y },
                    ]);
                }
                terms.push(Term::PairXY { x, y });
            }
        }
        let mut by_option = Vec::new();
        for &choice in &choices {
            let k = questions[choice].as_choice().map_or(0, |c| c.options.len());
            for &number in &numbers {
                entries += 2 * k;
                if entries > MAX_VECTOR_LEN {
                    continue;
                }
                by_option.push(ByOptionSlot {
                    choice,
                    number,
                    at: terms.len(),
                });
                for option in 0..k {
                    terms.push(Term::OptionAnswered {
                        choice,
                        option,
                        number,
                    });
                    terms.push(Term::OptionX {
                        choice,
                        option,
                        number,
                    });
                }
            }
        }
        if entries > MAX_VECTOR_LEN {
            // The vector length only grows with each question added, so the first prefix
            // that is too long names the question that passes the limit.
            let at = (1..=questions.len())
                .find(|&k| vector_len(&questions[..k]) > MAX_VECTOR_LEN)
                .unwrap_or(questions.len());
            return Err(QuestionnaireError::TooLong {
                question: questions[at.saturating_sub(1)].id.clone(),
                len: entries,
                max: MAX_VECTOR_LEN,
            });
        }
        let layout = Layout {
            questions: questions.to_vec(),
            size,
            terms,
            slots,
            pairs,
            by_option,
        };
        for &term in &layout.terms {
            let fits = layout
                .term_max(term)
                .checked_mul(u128::from(size))
                .is_some_and(|m| m < u128::from(MODULUS));
            if !fits {
                let id = |i: usize| layout.questions[i].id.clone();
                return Err(match term {
                    Term::PairAnswered { x, y }
                    | Term::PairX { x, y }
                    | Term::PairY { x, y }
                    | Term::PairXX { x, y }
                    | Term::PairYY { x, y }
                    | Term::PairXY { x, y } => QuestionnaireError::PairWouldOverflow {
                        first: id(x),
                        second: id(y),
                    },
                    Term::X { question } | Term::X2 { question } => {
                        QuestionnaireError::WouldOverflow {
                            question: id(question),
                        }
                    }
                    Term::OptionX { number, .. } => QuestionnaireError::WouldOverflow {
                        question: id(number),
                    },
                    // Indicator entries are at most 1, and size ≤ MAX_COHORT < p.
                    _ => QuestionnaireError::BadSize { max: MAX_COHORT },
                });
            }
        }
        debug_assert_eq!(vector_len(questions), layout.len());
        Ok(layout)
    }

    /// The layout of a one-question study given by its parameters: one required number
    /// question with id [`crate::question::SINGLE_QUESTION_ID`], whose vector is exactly that of
    /// [`crate::encoding::encode`].
    pub fn from_params(params: &StudyParams) -> Result<Layout, QuestionnaireError> {
        Layout::new(&[Question::from_params(params)], params.size)
    }

    /// The largest value one patient's entry can hold (indicators 1, `x` up to R, `x²` up to
    /// R², products up to the product of the bounds).
    pub fn term_max(&self, term: Term) -> u128 {
        let r = |i: usize| {
            u128::from(
                self.questions[i]
                    .as_number()
                    .map_or(1, |n| n.range_scaled()),
            )
        };
        match term {
            Term::X { question } => r(question),
            Term::X2 { question } => r(question) * r(question),
            Term::PairX { x, .. } => r(x),
            Term::PairY { y, .. } => r(y),
            Term::PairXX { x, .. } => r(x) * r(x),
            Term::PairYY { y, .. } => r(y) * r(y),
            Term::PairXY { x, y } => r(x) * r(y),
            Term::OptionX { number, .. } => r(number),
            _ => 1,
        }
    }

    /// The questions, in order.
    pub fn questions(&self) -> &[Question] {
        &self.questions
    }

    /// The cohort size the overflow check was made for.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Length of the vector.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Always `false`: a vector holds at least its count entry.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// What every entry holds, in vector order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Where each question's entries are, in question order.
    pub fn slots(&self) -> &[QuestionSlot] {
        &self.slots
    }

    /// The pairs of number questions, in vector order.
    pub fn pairs(&self) -> &[PairSlot] {
        &self.pairs
    }

    /// The (choice, number) pairs, in vector order.
    pub fn by_option(&self) -> &[ByOptionSlot] {
        &self.by_option
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::QuestionnaireError as E;
    use alloc::string::ToString;

    fn q(json: &str) -> Question {
        serde_json::from_str(json).unwrap()
    }

    fn num(id: &str, optional: bool, max: u64, decimals: u8, buckets: u16) -> Question {
        q(&alloc::format!(
            r#"{{"id":"{id}","kind":"number","text":"","min":0,"max":{max},"decimals":{decimals},"buckets":{buckets},"optional":{optional}}}"#
        ))
    }

    fn choice(id: &str, optional: bool, k: usize) -> Question {
        let opts: Vec<String> = (0..k).map(|i| alloc::format!("\"o{i}\"")).collect();
        q(&alloc::format!(
            r#"{{"id":"{id}","kind":"choice","text":"","options":[{}],"optional":{optional}}}"#,
            opts.join(",")
        ))
    }

    #[test]
    fn one_required_number_is_todays_vector() {
        let l = Layout::new(&[num("value", false, 300, 1, 10)], 3).unwrap();
        assert_eq!(l.len(), 13);
        assert_eq!(
            l.terms()[..3],
            [
                Term::Count,
                Term::X { question: 0 },
                Term::X2 { question: 0 }
            ]
        );
        assert_eq!(
            l.slots(),
            [QuestionSlot {
                answered: None,
                first: 1
            }]
        );
    }

    #[test]
    fn lays_out_questions_pairs_and_options() {
        // h (required number, 2 buckets), w (optional number, 1 bucket), s (required choice, 3),
        // g (required number, 1 bucket)
        let qs = [
            num("h", false, 10, 0, 2),
            num("w", true, 10, 0, 1),
            choice("s", false, 3),
            num("g", false, 10, 0, 1),
        ];
        let l = Layout::new(&qs, 5).unwrap();
        let slots = l.slots();
        assert_eq!(
            slots[0],
            QuestionSlot {
                answered: None,
                first: 1
            }
        ); // x x2 h0 h1: 1..5
        assert_eq!(
            slots[1],
            QuestionSlot {
                answered: Some(5),
                first: 6
            }
        ); // a x x2 h0: 5..9
        assert_eq!(
            slots[2],
            QuestionSlot {
                answered: None,
                first: 9
            }
        ); // o0 o1 o2: 9..12
        assert_eq!(
            slots[3],
            QuestionSlot {
                answered: None,
                first: 12
            }
        ); // x x2 h0: 12..15
        assert_eq!(
            l.pairs(),
            [
                PairSlot {
                    x: 0,
                    y: 1,
                    at: 15,
                    full: true
                },
                PairSlot {
                    x: 0,
                    y: 3,
                    at: 21,
                    full: false
                },
                PairSlot {
                    x: 1,
                    y: 3,
                    at: 22,
                    full: true
                },
            ]
        );
        assert_eq!(
            l.by_option(),
            [
                ByOptionSlot {
                    choice: 2,
                    number: 0,
                    at: 28
                },
                ByOptionSlot {
                    choice: 2,
                    number: 1,
                    at: 34
                },
                ByOptionSlot {
                    choice: 2,
                    number: 3,
                    at: 40
                },
            ]
        );
        assert_eq!(l.len(), 46);
        assert_eq!(l.terms()[21], Term::PairXY { x: 0, y: 3 });
        assert_eq!(
            l.terms()[45],
            Term::OptionX {
                choice: 2,
                option: 2,
                number: 3
            }
        );
    }

    #[test]
    fn refuses_overflow_naming_the_question() {
        // 10,000 × (10^9)² wraps; the first question is fine, the second is not.
        let qs = [
            num("ok", false, 100, 0, 1),
            num("big", true, 1_000_000, 3, 1),
        ];
        assert_eq!(
            Layout::new(&qs, 10_000),
            Err(E::WouldOverflow {
                question: "big".to_string()
            })
        );
        // size × R² < p is tight: R = 10^9, size 2 fits, size 3 does not.
        let one = [num("v", false, 1_000_000_000, 0, 1)];
        assert!(Layout::new(&one, 2).is_ok());
        assert_eq!(
            Layout::new(&one, 3),
            Err(E::WouldOverflow {
                question: "v".to_string()
            })
        );
        assert_eq!(Layout::new(&one, 0), Err(E::BadSize { max: MAX_COHORT }));
    }

    #[test]
    fn refuses_long_vectors() {
        let qs: Vec<Question> = (0..5)
            .map(|i| num(&alloc::format!("q{i}"), false, 1000, 0, 1000))
            .collect();
        assert_eq!(
            Layout::new(&qs, 3),
            Err(E::TooLong {
                question: "q4".into(),
                len: 1 + 5 * 1002 + 10,
                max: MAX_VECTOR_LEN
            })
        );
        // 32 optional numbers with 1 bucket: 1 + 32·4 + 496·6 = 3105 fits.
        let qs: Vec<Question> = (0..32)
            .map(|i| num(&alloc::format!("q{i}"), true, 10, 0, 1))
            .collect();
        assert_eq!(Layout::new(&qs, 3).unwrap().len(), 3105);
        let mut qs = qs;
        qs[31] = choice("c", true, 20);
        // 31 numbers (1 + 31·4 + 465·6) + choice (21) + 31·40 = 4176.
        assert_eq!(
            Layout::new(&qs, 3),
            Err(E::TooLong {
                question: "c".into(),
                len: 4176,
                max: MAX_VECTOR_LEN
            })
        );
    }
}
