//! The one computation of a round's result from partial sums, run by the hospital (for what it
//! stores and publishes) and by every patient (to check what it is told).

use alloc::vec::Vec;

use crate::encoding::{Statistics, decode};
use crate::field::{Fe, batch_inverse};
use crate::questionnaire::QuestionnaireResult;
use crate::roster::Roster;

/// Why a set of partial sums does not give a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateFailure {
    /// Fewer than t partial sums, an index outside the roster, a repeated index or a wrong
    /// length.
    Malformed,
    /// More than t partial sums that do not lie on one polynomial of degree t − 1.
    NotOnePolynomial,
    /// The aggregate does not decode, or its count is not the contributor set's size.
    Inconsistent,
}

/// A round's decoded result: the questionnaire's, and for a one-question study also the
/// single-number statistics (decoded from the same aggregate vector).
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The single-number statistics of a one-question study ([`crate::study::StudyParams::is_single`]).
    pub statistics: Option<Statistics>,
    /// The questionnaire's result.
    pub questionnaire: QuestionnaireResult,
}

/// Reconstructs and decodes the aggregate of `contributors` from `(index, partial sum)` pairs.
/// In a Shamir round with more than t partial sums, every one must lie on the polynomial
/// through the first t (barycentric evaluation, O((k − t)·t·len)); the decoded count must be
/// exactly the contributor set's size.
pub fn aggregate(
    roster: &Roster,
    contributors: &[u32],
    partials: &[(u32, &[Fe])],
) -> Result<Decoded, AggregateFailure> {
    let scheme = roster.scheme().map_err(|_| AggregateFailure::Malformed)?;
    let t = roster.threshold as usize;
    let len = roster.study.vector_len();
    let n = roster.n();
    let mut seen = alloc::vec![false; n as usize + 1];
    for &(i, s) in partials {
        if i == 0 || i > n || s.len() != len || core::mem::replace(&mut seen[i as usize], true) {
            return Err(AggregateFailure::Malformed);
        }
    }
    if partials.len() < t {
        return Err(AggregateFailure::Malformed);
    }
    let total = scheme
        .reconstruct(partials)
        .map_err(|_| AggregateFailure::Malformed)?;
    if partials.len() > t && !on_one_polynomial(partials, t) {
        return Err(AggregateFailure::NotOnePolynomial);
    }
    let count = contributors.len() as u64;
    let layout = roster
        .study
        .layout()
        .map_err(|_| AggregateFailure::Inconsistent)?;
    let questionnaire = layout
        .decode(&total)
        .ok()
        .filter(|q| q.count == count)
        .ok_or(AggregateFailure::Inconsistent)?;
    let statistics = if roster.study.is_single() {
        let s = decode(&roster.study, &total)
            .ok()
            .filter(|s| s.count == count)
            .ok_or(AggregateFailure::Inconsistent)?;
        Some(s)
    } else {
        None
    };
    Ok(Decoded {
        statistics,
        questionnaire,
    })
}

/// Whether every point of `points` (`(x, vector)`, distinct nonzero x, equal lengths) lies on
/// the polynomials of degree t − 1 through the first t (barycentric evaluation,
/// O((k − t)·t·len)). True with at most t points.
pub fn on_one_polynomial(points: &[(u32, &[Fe])], t: usize) -> bool {
    if points.len() <= t {
        return true;
    }
    let base: Vec<Fe> = points[..t]
        .iter()
        .map(|(i, _)| Fe::new(u64::from(*i)))
        .collect();
    // Barycentric weights w_m = 1 / Π_{k≠m} (x_m − x_k).
    let mut w: Vec<Fe> = base
        .iter()
        .enumerate()
        .map(|(m, &xm)| {
            base.iter()
                .enumerate()
                .filter(|&(k, _)| k != m)
                .fold(Fe::ONE, |a, (_, &xk)| a * (xm - xk))
        })
        .collect();
    batch_inverse(&mut w);
    for &(j, yj) in &points[t..] {
        let x = Fe::new(u64::from(j));
        let mut d: Vec<Fe> = base.iter().map(|&xm| x - xm).collect();
        let ell = d.iter().fold(Fe::ONE, |a, &b| a * b);
        batch_inverse(&mut d);
        let coef: Vec<Fe> = w.iter().zip(&d).map(|(&wm, &dm)| ell * wm * dm).collect();
        for (c, &y) in yj.iter().enumerate() {
            let p = points[..t]
                .iter()
                .zip(&coef)
                .fold(Fe::ZERO, |a, ((_, s), &cm)| a + s[c] * cm);
            if p != y {
                return false;
            }
        }
    }
    true
}
