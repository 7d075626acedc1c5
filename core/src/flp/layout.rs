//! The questionnaire vector layout, its validity circuit and the honest prover's witness.
//!
//! A study has 1..=32 questions. The statistics vector is, in order (see docs/PROTOCOL.md):
//!
//! 1. `[1]`, the count entry;
//! 2. per question: number `[a, x, x², h_0 … h_{B−1}]`, choice `[a, o_0 … o_{K−1}]`, where a
//!    required question omits `a` (it is the constant 1);
//! 3. per pair of number questions `i < j`: `[x_i·x_j]` if both are required, else
//!    `[a_i·a_j, x_i·a_j, x_j·a_i, x_i²·a_j, x_j²·a_i, x_i·x_j]`;
//! 4. per (choice c, number q), choices then numbers in question order, per option k:
//!    `[o_{c,k}·a_q, o_{c,k}·x_q]`.
//!
//! The witness follows: per number question in order, the bits of `x`, of
//! `d = x·B − R·Σ_k k·h_k` and of `R − 1 + h_{B−1} − d`, each `bitlen(R)` bits, least
//! significant first. With `x` an integer in `[0, 2^bitlen(R))`, `0 ≤ d ≤ R − 1 + h_{B−1}` says
//! exactly that `x ≤ R` and that `h` names the bucket `min(floor(x·B/R), B − 1)`.

use alloc::vec::Vec;
use core::ops::Range;

use super::FlpError;
use super::circuit::{Affine, Circuit, Constraint};
use crate::field::Fe;

/// Maximum number of questions in a study.
pub const MAX_QUESTIONS: usize = 32;
/// Largest encoded range R of a number question.
pub const MAX_RANGE: u64 = 1 << 40;

/// The shape of one question, as far as the vector layout is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionShape {
    /// A number question with encoded values in `[0, range]` and `buckets` histogram buckets.
    Number {
        /// Whether the patient may skip it (then the vector has an indicator entry `a`).
        optional: bool,
        /// R: the encoded range, `(max − min)·10^decimals`, 1..=2^40.
        range: u64,
        /// B: the number of histogram buckets, ≥ 1.
        buckets: u16,
    },
    /// A choice question with `options` options (2..=20).
    Choice {
        /// Whether the patient may skip it.
        optional: bool,
        /// K: the number of options.
        options: u8,
    },
}

/// Entry positions of one question in the statistics vector.
#[derive(Clone, Debug)]
enum Slots {
    Number {
        a: Option<usize>,
        x: usize,
        x2: usize,
        h: Range<usize>,
        range: u64,
        /// Witness bits: x, d, complement (each `bits` long).
        wx: usize,
        bits: usize,
    },
    Choice {
        a: Option<usize>,
        o: Range<usize>,
    },
}

/// A questionnaire's vector layout: where every entry of the statistics vector and of the
/// witness sits.
#[derive(Clone, Debug)]
pub struct Layout {
    questions: Vec<QuestionShape>,
    slots: Vec<Slots>,
    /// Pair products: `(first factor, second factor, entry)`; a factor `None` is the constant 1.
    pub(crate) products: Vec<(Option<usize>, Option<usize>, usize)>,
    stats_len: usize,
    witness_len: usize,
}

/// Number of bits needed for values in `[0, r]`.
fn bitlen(r: u64) -> usize {
    (64 - r.leading_zeros()) as usize
}

impl Layout {
    /// Lays out a questionnaire; refuses out-of-bounds shapes with [`FlpError::BadLayout`].
    pub fn new(questions: &[QuestionShape]) -> Result<Layout, FlpError> {
        if questions.is_empty() || questions.len() > MAX_QUESTIONS {
            return Err(FlpError::BadLayout);
        }
        let mut idx = 1; // the count entry
        let mut slots = Vec::with_capacity(questions.len());
        for q in questions {
            let a = |optional: bool, idx: &mut usize| {
                optional.then(|| {
                    *idx += 1;
                    *idx - 1
                })
            };
            match *q {
                QuestionShape::Number {
                    optional,
                    range,
                    buckets,
                } => {
                    if range == 0 || range > MAX_RANGE || buckets == 0 {
                        return Err(FlpError::BadLayout);
                    }
                    let a = a(optional, &mut idx);
                    let b = usize::from(buckets);
                    slots.push(Slots::Number {
                        a,
                        x: idx,
                        x2: idx + 1,
                        h: idx + 2..idx + 2 + b,
                        range,
                        wx: 0,
                        bits: bitlen(range),
                    });
                    idx += 2 + b;
                }
                QuestionShape::Choice { optional, options } => {
                    if !(2..=20).contains(&options) {
                        return Err(FlpError::BadLayout);
                    }
                    let a = a(optional, &mut idx);
                    let k = usize::from(options);
                    slots.push(Slots::Choice { a, o: idx..idx + k });
                    idx += k;
                }
            }
        }
        let numbers: Vec<(Option<usize>, usize, usize)> = slots
            .iter()
            .filter_map(|s| match s {
                Slots::Number { a, x, x2, .. } => Some((*a, *x, *x2)),
                Slots::Choice { .. } => None,
            })
            .collect();
        let mut products = Vec::new();
        let mut push = |f: Option<usize>, g: Option<usize>, idx: &mut usize| {
            products.push((f, g, *idx));
            *idx += 1;
        };
        for (i, &(ai, xi, x2i)) in numbers.iter().enumerate() {
            for &(aj, xj, x2j) in &numbers[i + 1..] {
                if ai.is_none() && aj.is_none() {
                    push(Some(xi), Some(xj), &mut idx);
                } else {
                    push(ai, aj, &mut idx);
                    push(Some(xi), aj, &mut idx);
                    push(Some(xj), ai, &mut idx);
                    push(Some(x2i), aj, &mut idx);
                    push(Some(x2j), ai, &mut idx);
                    push(Some(xi), Some(xj), &mut idx);
                }
            }
        }
        for s in &slots {
            if let Slots::Choice { o, .. } = s {
                for &(aq, xq, _) in &numbers {
                    for ok in o.clone() {
                        push(Some(ok), aq, &mut idx);
                        push(Some(ok), Some(xq), &mut idx);
                    }
                }
            }
        }
        let stats_len = idx;
        for s in &mut slots {
            if let Slots::Number { wx, bits, .. } = s {
                *wx = idx;
                idx += 3 * *bits;
            }
        }
        Ok(Layout {
            questions: questions.to_vec(),
            slots,
            products,
            stats_len,
            witness_len: idx - stats_len,
        })
    }

    /// The question shapes.
    pub fn questions(&self) -> &[QuestionShape] {
        &self.questions
    }

    /// Length of the statistics vector (what is aggregated).
    pub fn stats_len(&self) -> usize {
        self.stats_len
    }

    /// Number of witness entries after the statistics vector (shared and proven, not
    /// aggregated).
    pub fn witness_len(&self) -> usize {
        self.witness_len
    }

    /// The reference encoding of one patient's answers: per question `Some(x_enc)` (number,
    /// `0 ≤ x_enc ≤ R`) or `Some(option index)` (choice), `None` for a skipped optional
    /// question. Refuses a wrong count, a skipped required question or a value out of range.
    pub fn statistics(&self, answers: &[Option<u64>]) -> Result<Vec<Fe>, FlpError> {
        if answers.len() != self.slots.len() {
            return Err(FlpError::VectorLength);
        }
        let mut v = alloc::vec![Fe::ZERO; self.stats_len];
        v[0] = Fe::ONE;
        for (s, &ans) in self.slots.iter().zip(answers) {
            let (a, optional) = match s {
                Slots::Number { a, .. } | Slots::Choice { a, .. } => (*a, a.is_some()),
            };
            let Some(val) = ans else {
                if optional {
                    continue;
                }
                return Err(FlpError::BadLayout);
            };
            if let Some(a) = a {
                v[a] = Fe::ONE;
            }
            match s {
                Slots::Number {
                    x, x2, h, range, ..
                } => {
                    if val > *range {
                        return Err(FlpError::BadLayout);
                    }
                    let b = h.len() as u128;
                    let bucket =
                        ((u128::from(val) * b / u128::from(*range)) as usize).min(h.len() - 1);
                    v[*x] = Fe::new(val);
                    v[*x2] = Fe::new(val) * Fe::new(val);
                    v[h.start + bucket] = Fe::ONE;
                }
                Slots::Choice { o, .. } => {
                    if val >= o.len() as u64 {
                        return Err(FlpError::BadLayout);
                    }
                    v[o.start + val as usize] = Fe::ONE;
                }
            }
        }
        let one = Fe::ONE;
        for &(f, g, out) in &self.products {
            let f = f.map_or(one, |i| v[i]);
            let g = g.map_or(one, |i| v[i]);
            v[out] = f * g;
        }
        Ok(v)
    }

    /// The validity circuit over `stats_len() + witness_len()` entries.
    pub fn circuit(&self) -> Circuit {
        let one = Fe::ONE;
        let expr = |i: Option<usize>| i.map_or(Affine::constant(one), Affine::entry);
        let mut cs = Vec::new();
        // The count entry is 1.
        cs.push(Constraint::Affine(Affine::entry(0).plus_const(-one)));
        for s in &self.slots {
            match s {
                Slots::Number {
                    a,
                    x,
                    x2,
                    h,
                    range,
                    wx,
                    bits,
                } => {
                    if let Some(a) = *a {
                        cs.push(Constraint::Bit(a));
                        // Skipped ⇒ x = 0: x·(1 − a) = 0.
                        cs.push(Constraint::Mul {
                            a: Affine::entry(*x),
                            b: Affine::constant(one).plus(-one, a),
                            out: Affine::default(),
                        });
                    }
                    cs.push(Constraint::Product {
                        a: *x,
                        b: *x,
                        out: *x2,
                    });
                    cs.extend(h.clone().map(Constraint::Bit));
                    cs.push(Constraint::Sum {
                        range: h.clone(),
                        equals: expr(*a),
                    });
                    let r = Fe::new(*range);
                    let b = Fe::new(h.len() as u64);
                    // d = x·B − R·Σ k·h_k
                    let mut d = Affine::default().plus(b, *x);
                    for (k, hk) in h.clone().enumerate() {
                        d = d.plus(-(r * Fe::new(k as u64)), hk);
                    }
                    let comp = Affine::constant(r - one).plus(one, h.end - 1).minus(&d);
                    cs.push(Constraint::BitDecomposition {
                        bits: *wx..*wx + *bits,
                        of: Affine::entry(*x),
                    });
                    cs.push(Constraint::BitDecomposition {
                        bits: *wx + *bits..*wx + 2 * *bits,
                        of: d,
                    });
                    cs.push(Constraint::BitDecomposition {
                        bits: *wx + 2 * *bits..*wx + 3 * *bits,
                        of: comp,
                    });
                }
                Slots::Choice { a, o } => {
                    if let Some(a) = *a {
                        cs.push(Constraint::Bit(a));
                    }
                    cs.extend(o.clone().map(Constraint::Bit));
                    cs.push(Constraint::Sum {
                        range: o.clone(),
                        equals: expr(*a),
                    });
                }
            }
        }
        for &(f, g, out) in &self.products {
            cs.push(Constraint::Mul {
                a: expr(f),
                b: expr(g),
                out: Affine::entry(out),
            });
        }
        Circuit::new(self.stats_len + self.witness_len, cs)
            .expect("layout indices are within the input by construction")
    }
}

/// The honest prover's input: the statistics vector followed by its witness entries (bit
/// decompositions). On an invalid vector the witness is still computed the same way (bits of
/// the low `bitlen(R)` bits of each field value), which is a cheating prover's best simple
/// effort; the circuit then fails.
pub fn witness(layout: &Layout, stats: &[Fe]) -> Result<Vec<Fe>, FlpError> {
    if stats.len() != layout.stats_len {
        return Err(FlpError::VectorLength);
    }
    let mut v = Vec::with_capacity(layout.stats_len + layout.witness_len);
    v.extend_from_slice(stats);
    let push_bits = |v: &mut Vec<Fe>, value: Fe, bits: usize| {
        let value = value.value();
        v.extend((0..bits).map(|i| Fe::new((value >> i) & 1)));
    };
    for s in &layout.slots {
        if let Slots::Number {
            x, h, range, bits, ..
        } = s
        {
            let r = Fe::new(*range);
            let mut d = stats[*x] * Fe::new(h.len() as u64);
            for (k, hk) in h.clone().enumerate() {
                d -= r * Fe::new(k as u64) * stats[hk];
            }
            let comp = r - Fe::ONE + stats[h.end - 1] - d;
            push_bits(&mut v, stats[*x], *bits);
            push_bits(&mut v, d, *bits);
            push_bits(&mut v, comp, *bits);
        }
    }
    Ok(v)
}
