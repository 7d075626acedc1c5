//! Validity proofs on secret-shared vectors: a fully linear proof (FLP) over GF(2^61 − 1).
//!
//! A patient proves that its whole input vector (statistics vector followed by witness entries
//! such as bit decompositions) satisfies a validity [`Circuit`], and the share-holders check
//! the proof on their **shares** without learning the vector. This is the "general
//! construction" of Boneh, Boyle, Corrigan-Gibbs, Gilboa and Ishai, *Zero-knowledge proofs on
//! secret-shared data via fully linear PCPs* (CRYPTO 2019, §4), in the shape of the VDAF
//! draft's FLP, specialised to one gadget, `G(x, y) = x·y`, over our own field (so the proof
//! is about the very shares that are aggregated).
//!
//! * [`circuit`]: constraints as data, lowered to `M` gadget calls and affine checks;
//! * [`layout`]: the questionnaire vector layout, its circuit and the honest witness;
//! * [`prove`](prove::prove): the proof, `[s_0, s_1, p(0..=2M)]` (2M + 3 elements);
//! * [`query`](query::query) / [`decide`]: a [`query::VerifierShare`] of 4
//!   elements per share-holder, combined by sum (additive) or Lagrange at 0 (Shamir);
//! * [`poly`]: interpolation over the consecutive points `0..=n` (barycentric, no FFT: the
//!   field has no large power-of-two roots of unity).
//!
//! # Randomness (all supplied by the caller)
//!
//! * `prove_rand`: two uniform field elements (the wire seeds), secret to the prover;
//! * `joint_rand`: one uniform element per residue ([`Circuit::joint_rand_len`]), the
//!   coefficients of the random linear combination of all constraint residues;
//! * `query_rand`: one uniform element `r ∉ {0, …, 2M}`.
//!
//! The proof does not depend on `joint_rand`, so both `joint_rand` and `query_rand` may be
//! drawn by the verifiers after the prover's shares are fixed. Both **must be unpredictable to
//! the prover until its input and proof shares are committed**; the bounds below are per
//! attempt, and a prover that can try 2^g candidate randomness values offline (e.g. a hash of
//! its own message) multiplies them by 2^g.
//!
//! # Soundness
//!
//! Let p = 2^61 − 1 and M the number of gadget calls. If the input is invalid, the combined
//! verifier share is accepted with probability at most
//!
//! ```text
//! ε(M) = 2M / (p − 2M − 1)  +  1/p
//! ```
//!
//! *Query term*: if the proof's `p ≠ f_0·f_1` as polynomials, both sides have degree ≤ 2M and
//! agree on at most 2M points, so a uniform `r` among the p − 2M − 1 allowed points catches it
//! except with probability 2M/(p − 2M − 1). *Circuit term*: if `p = f_0·f_1`, then the proof's
//! `p(k)` is the true gadget output `a_k·b_k` and the combined output is the true random linear
//! combination of the residues, which vanishes for a nonzero residue vector with probability
//! exactly 1/p over independent uniform coefficients. The verifier is linear, so the same
//! bound holds for additive and Shamir sharings. Soundness is against a cheating prover with
//! honest share-holders; completeness and zero knowledge assume honest share-holders too, as
//! in the paper. With Shamir sharing the proof is about the input that the t combined points
//! interpolate: the integration must make the aggregate use the same input (e.g. verify with
//! the same points, or check that all received verifier shares lie on one polynomial of
//! degree t − 1), since a prover could deal shares that are not on one such polynomial.
//!
//! | study | M | proof length | ε | log2 ε |
//! |---|---|---|---|---|
//! | one number question, required, R = 3000, B = 10 | 47 | 97 | 94/(p − 95) + 1/p | −54.4 |
//! | ten optional number questions, R = 3000, B = 10, all 45 pairs | 760 | 1523 | 1520/(p − 1521) + 1/p | −50.4 |
//! | 32 optional number questions, R = 10^6, B = 20, all 496 pairs | 5632 | 11267 | 11264/(p − 11265) + 1/p | −47.5 |
//!
//! ε ≤ 2^−40 holds for M ≤ 2^19 (≈ 5·10^5), far above any layout of ≤ 32 questions, so
//! **one proof and one query point suffice; no repetition is needed** (nor implemented). Per
//! study, a round with c cheating patients accepts some invalid vector with probability at most
//! c·ε. (Zero knowledge: `f_0(r)`, `f_1(r)` are uniform thanks to the seeds at 0 since
//! `r ∉ 1..=M`, `p(r)` is their product and `out` is 0, so the combined share reveals nothing
//! about a valid input; each single share is masked by the sharing.)
//!
//! # Sharing and constants
//!
//! The verifier is linear in (input, proof) *up to the circuit's constants* (e.g. the `−1` of
//! `v·(v − 1)`, the count entry's `= 1`). [`ShareRole`] says how a share-holder applies them:
//! in an additive sharing exactly one share-holder (the leader) adds each constant; in a Shamir
//! sharing every share-holder adds the full constant (a constant is its own Shamir share).

pub mod circuit;
pub mod layout;
pub mod poly;
pub mod prove;
pub mod query;

pub use circuit::{Affine, Circuit, Constraint};
pub use layout::{Layout, QuestionShape, witness};
pub use prove::prove;
pub use query::{QueryPoint, VERIFIER_LEN, VerifierShare, decide, query, query_at};

use crate::field::{Fe, MODULUS};

/// How a share-holder applies the circuit's constants to its share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareRole {
    /// Additive (n-of-n) share held by the leader (share-holder 0), which adds every
    /// constant once. Also the role for an unshared (whole) vector.
    AdditiveLeader,
    /// Additive share held by any other share-holder: constants are not added.
    AdditiveHelper,
    /// Shamir share (any point): every share-holder adds the full constant.
    Shamir,
}

impl ShareRole {
    /// The role of share-holder `index` (0-based) in an additive sharing.
    pub fn additive(index: usize) -> ShareRole {
        if index == 0 {
            ShareRole::AdditiveLeader
        } else {
            ShareRole::AdditiveHelper
        }
    }

    /// The weight of the constant terms on this share (1 or 0).
    pub(crate) fn constant_weight(self) -> Fe {
        match self {
            ShareRole::AdditiveLeader | ShareRole::Shamir => Fe::ONE,
            ShareRole::AdditiveHelper => Fe::ZERO,
        }
    }
}

/// Errors of the FLP and its layouts. No variant carries a share or value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlpError {
    /// A constraint refers to an entry beyond the input vector (or a bit decomposition is
    /// longer than 60 bits).
    #[error("constraint refers to an entry outside the input")]
    IndexOutOfRange,
    /// The input (or input share) has the wrong length for the circuit.
    #[error("input has the wrong length for the circuit")]
    InputLength,
    /// The proof (or proof share) has the wrong length for the circuit.
    #[error("proof has the wrong length for the circuit")]
    ProofLength,
    /// The joint randomness has the wrong length for the circuit.
    #[error("joint randomness has the wrong length for the circuit")]
    JointRandLength,
    /// The query point is one of the interpolation nodes `0..=2M`; draw another.
    #[error("query randomness is an interpolation node; draw again")]
    QueryRandNotAllowed,
    /// A [`QueryPoint`] prepared for a circuit with a different number of gadget calls.
    #[error("query point was prepared for another circuit")]
    QueryPointMismatch,
    /// No verifier shares to combine.
    #[error("no verifier shares to combine")]
    NoShares,
    /// A Shamir verifier share's evaluation point is 0 or repeated.
    #[error("Shamir verifier share points must be distinct and nonzero")]
    BadShareIndex,
    /// The layout is out of bounds (1..=32 questions, 2..=20 options, range 1..=2^40,
    /// buckets 1..=range).
    #[error("questionnaire layout out of bounds")]
    BadLayout,
    /// The statistics vector has the wrong length for the layout.
    #[error("statistics vector has the wrong length for the layout")]
    VectorLength,
}

/// The soundness error of one proof with `m` gadget calls and one query:
/// `2m / (p − 2m − 1) + 1/p` (see the module docs).
pub fn soundness_error(m: usize) -> f64 {
    let p = MODULUS as f64;
    let m = m as f64;
    2.0 * m / (p - 2.0 * m - 1.0) + 1.0 / p
}

#[cfg(test)]
mod tests;
