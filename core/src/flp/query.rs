//! The verifiers: query (one linear pass over a share of the input and of the proof) and
//! decide (on the combined verifier shares).
//!
//! Given the query point `r` (outside the nodes `0..=2M`) and the joint randomness
//! `ρ_1 … ρ_{M+Z}`, a verifier holding shares `[v]`, `[π]` computes, all linearly:
//!
//! * `[f_0(r)]`, `[f_1(r)]`: the wire polynomials through `(0, [s_j])` and `(k, [a_k(v)])` /
//!   `(k, [b_k(v)])`, evaluated at `r` with the Lagrange basis of `0..=M`;
//! * `[p(r)]`: the gadget polynomial from its values `[p(0..=2M)]` in the proof;
//! * `[out] = Σ_k ρ_k ([p(k)] − [c_k(v)]) + Σ_z ρ_{M+z} [e_z(v)]`: the circuit output, where
//!   the gadget outputs are read from the proof.
//!
//! The verifier share is `([f_0(r)], [f_1(r)], [p(r)], [out])`. The combined share
//! `(y_0, y_1, y_p, out)` is accepted iff `y_0 · y_1 = y_p` and `out = 0`.

use alloc::vec::Vec;

use super::circuit::Circuit;
use super::{FlpError, ShareRole, poly};
use crate::field::Fe;
use crate::sharing::lagrange_at_zero;

/// Number of field elements in a verifier share.
pub const VERIFIER_LEN: usize = 4;

/// One share-holder's verifier share for one proof (or the combination of all of them).
/// `Debug` is opaque.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifierShare(pub [Fe; VERIFIER_LEN]);

impl core::fmt::Debug for VerifierShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VerifierShare(..)")
    }
}

/// The Lagrange bases of a query point for one circuit: computed once and reused for every
/// proof checked at the same point (O(M) and two batch inversions).
#[derive(Clone)]
pub struct QueryPoint {
    gadget_calls: usize,
    basis_m: Vec<Fe>,
    basis_2m: Vec<Fe>,
}

impl core::fmt::Debug for QueryPoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("QueryPoint(..)")
    }
}

impl QueryPoint {
    /// Prepares `query_rand` for `circuit`. Fails with [`FlpError::QueryRandNotAllowed`] if it
    /// is one of the nodes `0..=2M` (probability (2M + 1)/p for a uniform draw): draw again.
    pub fn new(circuit: &Circuit, query_rand: Fe) -> Result<QueryPoint, FlpError> {
        let m = circuit.calls.len();
        Ok(QueryPoint {
            gadget_calls: m,
            basis_m: poly::lagrange_basis_at(m, query_rand).ok_or(FlpError::QueryRandNotAllowed)?,
            basis_2m: poly::lagrange_basis_at(2 * m, query_rand)
                .ok_or(FlpError::QueryRandNotAllowed)?,
        })
    }
}

/// Runs the query on one share of the input and one share of the proof.
///
/// `role` says how the circuit's constants are applied (see [`ShareRole`]); every share-holder
/// must use the same `query_rand` and `joint_rand`. Fails with
/// [`FlpError::QueryRandNotAllowed`] if `query_rand` is one of the nodes `0..=2M`. Same as
/// [`QueryPoint::new`] followed by [`query_at`].
pub fn query(
    circuit: &Circuit,
    input_share: &[Fe],
    proof_share: &[Fe],
    role: ShareRole,
    query_rand: Fe,
    joint_rand: &[Fe],
) -> Result<VerifierShare, FlpError> {
    let point = QueryPoint::new(circuit, query_rand)?;
    query_at(circuit, input_share, proof_share, role, &point, joint_rand)
}

/// [`query`] at a prepared [`QueryPoint`] (which must have been made for this circuit).
pub fn query_at(
    circuit: &Circuit,
    input_share: &[Fe],
    proof_share: &[Fe],
    role: ShareRole,
    point: &QueryPoint,
    joint_rand: &[Fe],
) -> Result<VerifierShare, FlpError> {
    if input_share.len() != circuit.input_len() {
        return Err(FlpError::InputLength);
    }
    if proof_share.len() != circuit.proof_len() {
        return Err(FlpError::ProofLength);
    }
    if joint_rand.len() != circuit.joint_rand_len() {
        return Err(FlpError::JointRandLength);
    }
    let m = circuit.calls.len();
    if point.gadget_calls != m {
        return Err(FlpError::QueryPointMismatch);
    }
    let kappa = role.constant_weight();
    let (basis_m, basis_2m) = (&point.basis_m, &point.basis_2m);
    let p = &proof_share[2..];

    let mut y0 = basis_m[0] * proof_share[0];
    let mut y1 = basis_m[0] * proof_share[1];
    let mut out = Fe::ZERO;
    for (k, call) in circuit.calls.iter().enumerate() {
        y0 += basis_m[k + 1] * call.a.eval(input_share, kappa);
        y1 += basis_m[k + 1] * call.b.eval(input_share, kappa);
        out += joint_rand[k] * (p[k + 1] - call.c.eval(input_share, kappa));
    }
    for (z, e) in circuit.zeros.iter().enumerate() {
        out += joint_rand[m + z] * e.eval(input_share, kappa);
    }
    let yp = poly::dot(basis_2m, p);
    Ok(VerifierShare([y0, y1, yp, out]))
}

impl VerifierShare {
    /// Combines the verifier shares of all n share-holders of an additive sharing (their sum).
    pub fn combine_additive(shares: &[VerifierShare]) -> Result<VerifierShare, FlpError> {
        if shares.is_empty() {
            return Err(FlpError::NoShares);
        }
        let mut acc = [Fe::ZERO; VERIFIER_LEN];
        for s in shares {
            for (a, x) in acc.iter_mut().zip(s.0) {
                *a += x;
            }
        }
        Ok(VerifierShare(acc))
    }

    /// Combines the verifier shares of `t` share-holders of a Shamir t-of-n sharing, given as
    /// `(evaluation point, share)` with distinct nonzero points (roster indices), by Lagrange
    /// interpolation at 0. The caller passes exactly t shares (more would still interpolate
    /// correctly, fewer give a meaningless value that [`decide`] rejects w.h.p.).
    pub fn combine_shamir(shares: &[(u32, VerifierShare)]) -> Result<VerifierShare, FlpError> {
        if shares.is_empty() {
            return Err(FlpError::NoShares);
        }
        let xs: Vec<u32> = shares.iter().map(|s| s.0).collect();
        for (i, &x) in xs.iter().enumerate() {
            if x == 0 || xs[..i].contains(&x) {
                return Err(FlpError::BadShareIndex);
            }
        }
        let mut acc = [Fe::ZERO; VERIFIER_LEN];
        for ((_, s), w) in shares.iter().zip(lagrange_at_zero(&xs)) {
            for (a, x) in acc.iter_mut().zip(s.0) {
                *a += x * w;
            }
        }
        Ok(VerifierShare(acc))
    }
}

/// Decides on the combined verifier share: accept iff `f_0(r)·f_1(r) = p(r)` and the circuit
/// output is 0.
pub fn decide(combined: &VerifierShare) -> bool {
    let [y0, y1, yp, out] = combined.0;
    y0 * y1 == yp && out == Fe::ZERO
}
