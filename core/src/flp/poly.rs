//! Polynomials held by their values at the consecutive points `0, 1, …, n`.
//!
//! GF(2^61 − 1) has no large power-of-two roots of unity, so the FLP interpolates over ordinary
//! integer points. On consecutive integers the barycentric weights have a closed form,
//! `w_k = 1 / Π_{j≠k} (k − j) = (−1)^(n−k) / (k! · (n−k)!)`, and a polynomial of degree ≤ n
//! given by its values `y_0 … y_n` evaluates anywhere off the nodes as
//! `f(x) = ℓ(x) · Σ_k w_k · y_k / (x − k)` with `ℓ(x) = Π_j (x − j)`: O(n) per point after one
//! batch inversion.

use alloc::vec::Vec;

use crate::field::{Fe, batch_inverse};

/// Factorials `0!, 1!, …, n!` in the field.
fn factorials(n: usize) -> Vec<Fe> {
    let mut f = Vec::with_capacity(n + 1);
    let mut acc = Fe::ONE;
    f.push(acc);
    for i in 1..=n {
        acc *= Fe::new(i as u64);
        f.push(acc);
    }
    f
}

/// The barycentric weights of the nodes `0..=n`.
pub(crate) fn weights(n: usize) -> Vec<Fe> {
    let fact = factorials(n);
    let mut w: Vec<Fe> = (0..=n).map(|k| fact[k] * fact[n - k]).collect();
    batch_inverse(&mut w);
    for (k, wk) in w.iter_mut().enumerate() {
        if (n - k) % 2 == 1 {
            *wk = -*wk;
        }
    }
    w
}

/// The Lagrange basis of the nodes `0..=n` evaluated at `x`: `L_k(x)` for every k, so that
/// `f(x) = Σ_k L_k(x) · f(k)` for every polynomial of degree ≤ n. `None` if `x` is a node.
pub(crate) fn lagrange_basis_at(n: usize, x: Fe) -> Option<Vec<Fe>> {
    let mut diffs: Vec<Fe> = (0..=n).map(|k| x - Fe::new(k as u64)).collect();
    let ell = diffs.iter().fold(Fe::ONE, |a, &d| a * d);
    if ell == Fe::ZERO {
        return None;
    }
    batch_inverse(&mut diffs);
    let w = weights(n);
    Some(
        diffs
            .iter()
            .zip(&w)
            .map(|(&inv, &wk)| ell * wk * inv)
            .collect(),
    )
}

/// Dot product of two equally long slices.
pub(crate) fn dot(a: &[Fe], b: &[Fe]) -> Fe {
    a.iter().zip(b).fold(Fe::ZERO, |acc, (&x, &y)| acc + x * y)
}

/// Extends the values `f(0), …, f(n)` of a polynomial of degree ≤ n to `f(0), …, f(m)` for
/// `m ≥ n`. O(n·(m − n)) multiplications and one batch inversion.
pub(crate) fn extend(values: &[Fe], m: usize) -> Vec<Fe> {
    let n = values.len() - 1;
    let mut out = Vec::with_capacity(m + 1);
    out.extend_from_slice(values);
    if m <= n {
        out.truncate(m + 1);
        return out;
    }
    // For an integer point x > n: ℓ(x) = x! / (x − n − 1)! and 1/(x − k) with x − k in 1..=m.
    let fact = factorials(m);
    let mut inv_fact = fact.clone();
    batch_inverse(&mut inv_fact);
    let mut inv: Vec<Fe> = (0..=m).map(|i| Fe::new(i as u64)).collect();
    batch_inverse(&mut inv); // inv[0] stays 0 and is never used.
    let wy: Vec<Fe> = weights(n)
        .iter()
        .zip(values)
        .map(|(&w, &y)| w * y)
        .collect();
    for x in n + 1..=m {
        let ell = fact[x] * inv_fact[x - n - 1];
        // 1/(x − k) for k = 0..=n is inv[x], inv[x − 1], …, inv[x − n].
        let s = wy
            .iter()
            .zip(inv[x - n..=x].iter().rev())
            .fold(Fe::ZERO, |acc, (&a, &b)| acc + a * b);
        out.push(ell * s);
    }
    out
}

/// Values at `0..=n` of a polynomial given by coefficients (lowest first); for tests.
#[cfg(test)]
pub(crate) fn eval_coeffs(coeffs: &[Fe], x: Fe) -> Fe {
    coeffs.iter().rev().fold(Fe::ZERO, |acc, &c| acc * x + c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    #[cfg(not(target_arch = "wasm32"))]
    use proptest::prelude::*;

    #[test]
    fn weights_of_three_nodes() {
        // Nodes 0,1,2: w = 1/2, −1, 1/2.
        let w = weights(2);
        let half = Fe::new(2).inverse();
        assert_eq!(w, vec![half, -Fe::ONE, half]);
    }

    #[test]
    fn basis_refuses_nodes() {
        assert!(lagrange_basis_at(4, Fe::new(3)).is_none());
        assert!(lagrange_basis_at(4, Fe::ZERO).is_none());
        assert!(lagrange_basis_at(4, Fe::new(5)).is_some());
    }

    #[cfg(not(target_arch = "wasm32"))]
    proptest! {
        #[test]
        fn interpolation_matches_coefficients(coeffs in proptest::collection::vec(0u64..crate::field::MODULUS, 1..40), extra in 0usize..30, x in 0u64..crate::field::MODULUS) {
            let coeffs: Vec<Fe> = coeffs.into_iter().map(Fe::new).collect();
            let n = coeffs.len() - 1;
            let vals: Vec<Fe> = (0..=n).map(|k| eval_coeffs(&coeffs, Fe::new(k as u64))).collect();
            let ext = extend(&vals, n + extra);
            for (k, v) in ext.iter().enumerate() {
                prop_assert_eq!(*v, eval_coeffs(&coeffs, Fe::new(k as u64)));
            }
            let x = Fe::new(x);
            if let Some(basis) = lagrange_basis_at(n + extra, x) {
                prop_assert_eq!(dot(&basis, &ext), eval_coeffs(&coeffs, x));
            }
        }
    }
}
