//! Validity circuits described as data.
//!
//! A [`Circuit`] is a list of [`Constraint`]s over an input vector of field elements (the
//! statistics vector followed by the prover's witness entries). Every constraint lowers to
//! affine checks (`e(v) = 0`, checked by the verifiers directly on their shares) and calls of the
//! one multiplication gadget `G(x, y) = x·y` (`a(v)·b(v) − c(v) = 0`, with affine `a`, `b`,
//! `c`). The circuit's output is a random linear combination, with the joint randomness, of
//! every residue; it is 0 for a valid input and 0 with probability 1/p for an invalid one.

use alloc::vec::Vec;
use core::ops::Range;

use super::FlpError;
use crate::field::Fe;

/// An affine expression `Σ c_i · v_i + constant` over the input vector.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Affine {
    /// `(index, coefficient)` pairs.
    pub terms: Vec<(usize, Fe)>,
    /// The constant term.
    pub constant: Fe,
}

impl core::fmt::Debug for Affine {
    // Coefficients are public circuit data, but keep Debug short and uniform with `Fe`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let idx: Vec<usize> = self.terms.iter().map(|t| t.0).collect();
        write!(f, "Affine(entries {idx:?})")
    }
}

impl Affine {
    /// The expression `v_i`.
    pub fn entry(i: usize) -> Affine {
        Affine {
            terms: alloc::vec![(i, Fe::ONE)],
            constant: Fe::ZERO,
        }
    }

    /// The constant expression `c`.
    pub fn constant(c: Fe) -> Affine {
        Affine {
            terms: Vec::new(),
            constant: c,
        }
    }

    /// Adds `coeff · v_i`.
    pub fn plus(mut self, coeff: Fe, i: usize) -> Affine {
        self.terms.push((i, coeff));
        self
    }

    /// Adds the constant `c`.
    pub fn plus_const(mut self, c: Fe) -> Affine {
        self.constant += c;
        self
    }

    /// `self − other`.
    pub fn minus(mut self, other: &Affine) -> Affine {
        self.terms.extend(other.terms.iter().map(|&(i, c)| (i, -c)));
        self.constant -= other.constant;
        self
    }

    /// Whether the expression has no entry terms (it is a constant).
    pub fn is_constant(&self) -> bool {
        self.terms.iter().all(|t| t.1 == Fe::ZERO)
    }

    /// Evaluates on `v`, adding the constant term times `constant_weight` (1 on a whole
    /// vector or a Shamir share; 1 or 0 on an additive share, see [`super::ShareRole`]).
    pub fn eval(&self, v: &[Fe], constant_weight: Fe) -> Fe {
        self.terms
            .iter()
            .fold(self.constant * constant_weight, |acc, &(i, c)| {
                acc + c * v[i]
            })
    }

    fn check(&self, len: usize) -> Result<(), FlpError> {
        match self.terms.iter().all(|t| t.0 < len) {
            true => Ok(()),
            false => Err(FlpError::IndexOutOfRange),
        }
    }
}

/// One constraint of a validity circuit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// `v_i ∈ {0, 1}` (one gadget call: `v_i · (v_i − 1) = 0`).
    Bit(usize),
    /// `v_out = v_a · v_b` (one gadget call; `a = b` for a square).
    Product {
        /// First factor.
        a: usize,
        /// Second factor.
        b: usize,
        /// The product entry.
        out: usize,
    },
    /// `Σ_{i ∈ range} v_i = equals` (affine).
    Sum {
        /// The summed entries.
        range: Range<usize>,
        /// What they must add up to (an entry, a constant, or any affine expression).
        equals: Affine,
    },
    /// `e(v) = 0` for a general affine expression (affine).
    Affine(Affine),
    /// `a(v) · b(v) = out(v)` for general affine expressions (one gadget call, or an affine
    /// check if `a` or `b` is constant).
    Mul {
        /// First factor.
        a: Affine,
        /// Second factor.
        b: Affine,
        /// The product.
        out: Affine,
    },
    /// `Σ_i 2^i · v_{bits.start + i} = of(v)` with every one of those entries a bit: proves
    /// `of(v) ∈ [0, 2^len)` as an integer (one gadget call per bit and one affine check).
    BitDecomposition {
        /// The bit entries, least significant first.
        bits: Range<usize>,
        /// The decomposed expression.
        of: Affine,
    },
}

/// A gadget call after lowering: `a(v) · b(v) − c(v)` must be 0.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub(crate) a: Affine,
    pub(crate) b: Affine,
    pub(crate) c: Affine,
}

/// A validity circuit: constraints over an input vector of fixed length, lowered to `M` calls
/// of the multiplication gadget and a list of affine checks.
#[derive(Clone, Debug)]
pub struct Circuit {
    input_len: usize,
    constraints: Vec<Constraint>,
    pub(crate) calls: Vec<Call>,
    pub(crate) zeros: Vec<Affine>,
}

impl Circuit {
    /// Builds and lowers a circuit; every index must be below `input_len`.
    pub fn new(input_len: usize, constraints: Vec<Constraint>) -> Result<Circuit, FlpError> {
        let mut calls = Vec::new();
        let mut zeros = Vec::new();
        let in_range = |i: usize| {
            if i < input_len {
                Ok(())
            } else {
                Err(FlpError::IndexOutOfRange)
            }
        };
        let mut mul = |a: Affine, b: Affine, c: Affine, zeros: &mut Vec<Affine>| {
            // A product with a constant factor is affine: no gadget call needed.
            if a.is_constant() {
                let mut e = b.clone();
                for t in &mut e.terms {
                    t.1 *= a.constant;
                }
                e.constant *= a.constant;
                zeros.push(e.minus(&c));
            } else if b.is_constant() {
                let mut e = a.clone();
                for t in &mut e.terms {
                    t.1 *= b.constant;
                }
                e.constant *= b.constant;
                zeros.push(e.minus(&c));
            } else {
                calls.push(Call { a, b, c });
            }
        };
        for con in &constraints {
            match con {
                Constraint::Bit(i) => {
                    in_range(*i)?;
                    let a = Affine::entry(*i);
                    let b = Affine::entry(*i).plus_const(-Fe::ONE);
                    mul(a, b, Affine::default(), &mut zeros);
                }
                Constraint::Product { a, b, out } => {
                    in_range(*a)?;
                    in_range(*b)?;
                    in_range(*out)?;
                    mul(
                        Affine::entry(*a),
                        Affine::entry(*b),
                        Affine::entry(*out),
                        &mut zeros,
                    );
                }
                Constraint::Sum { range, equals } => {
                    if range.end > input_len {
                        return Err(FlpError::IndexOutOfRange);
                    }
                    equals.check(input_len)?;
                    let mut e = Affine::default();
                    for i in range.clone() {
                        e = e.plus(Fe::ONE, i);
                    }
                    zeros.push(e.minus(equals));
                }
                Constraint::Affine(e) => {
                    e.check(input_len)?;
                    zeros.push(e.clone());
                }
                Constraint::Mul { a, b, out } => {
                    a.check(input_len)?;
                    b.check(input_len)?;
                    out.check(input_len)?;
                    mul(a.clone(), b.clone(), out.clone(), &mut zeros);
                }
                Constraint::BitDecomposition { bits, of } => {
                    if bits.end > input_len || bits.len() > 60 {
                        return Err(FlpError::IndexOutOfRange);
                    }
                    of.check(input_len)?;
                    let mut e = Affine::default();
                    for (k, i) in bits.clone().enumerate() {
                        let a = Affine::entry(i);
                        let b = Affine::entry(i).plus_const(-Fe::ONE);
                        mul(a, b, Affine::default(), &mut zeros);
                        e = e.plus(Fe::new(1 << k), i);
                    }
                    zeros.push(e.minus(of));
                }
            }
        }
        Ok(Circuit {
            input_len,
            constraints,
            calls,
            zeros,
        })
    }

    /// Length of the input vector (statistics and witness).
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// The constraints the circuit was built from.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// `M`: the number of calls of the multiplication gadget.
    pub fn gadget_calls(&self) -> usize {
        self.calls.len()
    }

    /// Number of affine checks.
    pub fn affine_checks(&self) -> usize {
        self.zeros.len()
    }

    /// Length of a proof: two wire seeds and the gadget polynomial's values at `0..=2M`.
    pub fn proof_len(&self) -> usize {
        2 * self.calls.len() + 3
    }

    /// Number of joint-randomness elements: one coefficient per residue (gadget calls, then
    /// affine checks).
    pub fn joint_rand_len(&self) -> usize {
        self.calls.len() + self.zeros.len()
    }

    /// Evaluates the circuit directly on a whole input (no proof): whether every constraint
    /// holds. For tests and for the honest prover's own check.
    pub fn is_valid(&self, input: &[Fe]) -> bool {
        input.len() == self.input_len
            && self.calls.iter().all(|c| {
                c.a.eval(input, Fe::ONE) * c.b.eval(input, Fe::ONE) == c.c.eval(input, Fe::ONE)
            })
            && self
                .zeros
                .iter()
                .all(|z| z.eval(input, Fe::ONE) == Fe::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn lowering_counts_and_checks() {
        let c = Circuit::new(
            6,
            vec![
                Constraint::Bit(0),
                Constraint::Product { a: 1, b: 1, out: 2 },
                Constraint::BitDecomposition {
                    bits: 3..6,
                    of: Affine::entry(1),
                },
                Constraint::Mul {
                    a: Affine::constant(Fe::new(2)),
                    b: Affine::entry(1),
                    out: Affine::entry(2),
                },
            ],
        )
        .unwrap();
        assert_eq!(c.gadget_calls(), 5);
        assert_eq!(c.affine_checks(), 2);
        let f = |xs: &[u64]| xs.iter().map(|&x| Fe::new(x)).collect::<Vec<_>>();
        // 2·v1 = v2 and v1² = v2 → v1 = 2, v2 = 4; bits of 2 = [0, 1, 0].
        assert!(c.is_valid(&f(&[1, 2, 4, 0, 1, 0])));
        assert!(!c.is_valid(&f(&[2, 2, 4, 0, 1, 0])));
        assert!(!c.is_valid(&f(&[1, 2, 4, 1, 1, 0])));
        assert_eq!(
            Circuit::new(2, vec![Constraint::Bit(2)]).err(),
            Some(FlpError::IndexOutOfRange)
        );
    }
}
