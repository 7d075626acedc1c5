//! The prover: wire polynomials, gadget polynomial, proof.
//!
//! For the `M` gadget calls with inputs `(a_k, b_k)`, `k = 1..=M`, the prover draws two seeds
//! `s_0, s_1` (zero knowledge: they make the wire polynomials' values at the query point
//! uniformly random) and takes the wire polynomials `f_0, f_1` of degree ≤ M with
//! `f_0(0) = s_0`, `f_0(k) = a_k`, `f_1(0) = s_1`, `f_1(k) = b_k`. The gadget polynomial is
//! `p = f_0 · f_1`, of degree ≤ 2M. The proof is `[s_0, s_1, p(0), p(1), …, p(2M)]`: `p` in
//! evaluation form on the nodes `0..=2M` (the same information as its 2M + 1 coefficients, in
//! the basis that lets a verifier read `p(k) = a_k·b_k` off the proof and evaluate `p(r)` in
//! O(M)). Proving costs O(M²) field multiplications (extending `f_0`, `f_1` to `M+1..=2M`).

use alloc::vec::Vec;

use super::FlpError;
use super::circuit::Circuit;
use super::poly;
use crate::field::Fe;

/// Proves that `input` satisfies `circuit`. `prove_rand` are the two wire seeds, uniformly
/// random field elements drawn by the caller and never reused.
///
/// The proof is computed whatever the input; on an invalid input it is rejected by the
/// verifiers (with probability 1 − ε, see the [module docs](super)). An honest caller checks
/// [`Circuit::is_valid`] first.
pub fn prove(circuit: &Circuit, input: &[Fe], prove_rand: [Fe; 2]) -> Result<Vec<Fe>, FlpError> {
    if input.len() != circuit.input_len() {
        return Err(FlpError::InputLength);
    }
    let m = circuit.calls.len();
    let mut w0 = Vec::with_capacity(2 * m + 1);
    let mut w1 = Vec::with_capacity(2 * m + 1);
    w0.push(prove_rand[0]);
    w1.push(prove_rand[1]);
    for call in &circuit.calls {
        w0.push(call.a.eval(input, Fe::ONE));
        w1.push(call.b.eval(input, Fe::ONE));
    }
    let f0 = poly::extend(&w0, 2 * m);
    let f1 = poly::extend(&w1, 2 * m);
    let mut proof = Vec::with_capacity(circuit.proof_len());
    proof.push(prove_rand[0]);
    proof.push(prove_rand[1]);
    proof.extend(f0.iter().zip(&f1).map(|(&x, &y)| x * y));
    Ok(proof)
}
