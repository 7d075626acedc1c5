//! The statistics vector and its decoding.
//!
//! A value x in `[min, max]` with at most `decimals` fractional digits becomes the integer
//! `x' = (x − min)·10^decimals` in `[0, R]`, and then the vector
//! `[1, x', x'², e_b]` where `e_b` is the one-hot indicator of its histogram bucket. Summing the
//! vectors of a cohort gives `[count, Σx', Σx'², histogram]`, from which count, sum, mean,
//! standard deviation and histogram follow exactly.

use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::decimal::Decimal;
use crate::error::{AggregateError, ValueError};
use crate::field::Fe;
use crate::study::StudyParams;

/// A patient's value, checked against a study and ready to share. `Debug` is opaque.
#[derive(Clone)]
pub struct EncodedValue(Vec<Fe>);

impl core::fmt::Debug for EncodedValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EncodedValue(..)")
    }
}

impl EncodedValue {
    /// The statistics vector.
    pub fn as_slice(&self) -> &[Fe] {
        &self.0
    }

    /// Wraps a vector built by [`crate::layout::Layout::encode`].
    pub(crate) fn from_vec(v: Vec<Fe>) -> EncodedValue {
        EncodedValue(v)
    }
}

/// Checks a value against a study without encoding it: range and number of decimals.
pub fn check_value(params: &StudyParams, value: &Decimal) -> Result<u64, ValueError> {
    let x = value.to_scaled(params.decimals)?;
    let lo = params
        .min
        .to_scaled(params.decimals)
        .map_err(|_| ValueError::TooLarge)?;
    let hi = params
        .max
        .to_scaled(params.decimals)
        .map_err(|_| ValueError::TooLarge)?;
    if x < lo || x > hi {
        return Err(ValueError::OutOfRange);
    }
    Ok((x - lo) as u64)
}

/// The histogram bucket of an offset value `x'` in `[0, range]`.
pub(crate) fn bucket_of(x: u64, range: u64, buckets: u16) -> usize {
    let b = (u128::from(x) * u128::from(buckets) / u128::from(range)) as usize;
    b.min(usize::from(buckets) - 1)
}

/// Encodes a value as the study's statistics vector.
pub fn encode(params: &StudyParams, value: &Decimal) -> Result<EncodedValue, ValueError> {
    let x = check_value(params, value)?;
    let mut v = vec![Fe::ZERO; params.vector_len()];
    v[0] = Fe::ONE;
    v[1] = Fe::new(x);
    v[2] = Fe::new(x) * Fe::new(x);
    let b = bucket_of(x, params.range_scaled(), params.buckets);
    v[3 + b] = Fe::ONE;
    Ok(EncodedValue(v))
}

/// The statistics of a cohort, decoded from its aggregate vector. These are the only numbers
/// cohort ever reveals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistics {
    /// Number of contributing patients.
    pub count: u64,
    /// Sum of their values, in the study's unit.
    pub sum: f64,
    /// Mean value, in the study's unit.
    pub mean: f64,
    /// Population standard deviation (divisor `count`), in the study's unit.
    pub stddev: f64,
    /// Patients per bucket; bucket edges are [`StudyParams::bucket_edges`].
    pub histogram: Vec<u64>,
}

/// Decodes an aggregate `[count, Σx', Σx'², histogram]` and checks it is consistent (counts
/// agree, sums are within what `count` values in range allow, Cauchy–Schwarz holds), which
/// catches a corrupted or mismatched partial sum.
pub fn decode(params: &StudyParams, aggregate: &[Fe]) -> Result<Statistics, AggregateError> {
    if aggregate.len() != params.vector_len() {
        return Err(AggregateError::WrongLength);
    }
    let count = aggregate[0].value();
    let s1 = u128::from(aggregate[1].value());
    let s2 = u128::from(aggregate[2].value());
    let histogram: Vec<u64> = aggregate[3..].iter().map(|x| x.value()).collect();
    let range = u128::from(params.range_scaled());
    let hist_total: u128 = histogram.iter().map(|&h| u128::from(h)).sum();
    let c = u128::from(count);
    if count == 0 || count > u64::from(params.size) || hist_total != c {
        return Err(AggregateError::Inconsistent);
    }
    if s1 > c * range || s2 > c * range * range || s1 * s1 > c * s2 {
        return Err(AggregateError::Inconsistent);
    }
    let scale = libm::pow(10.0, f64::from(params.decimals));
    let lo = params
        .min
        .to_scaled(params.decimals)
        .map_err(|_| AggregateError::Inconsistent)?;
    // Σx = (Σx' + count·min') / 10^d, exactly in i128 before the one division.
    let sum_scaled = s1 as i128 + i128::from(count) * i128::from(lo);
    let sum = sum_scaled as f64 / scale;
    let mean = sum / count as f64;
    // Population variance of x' = (count·Σx'² − (Σx')²) / count², numerator exact.
    let var_num = c * s2 - s1 * s1;
    let stddev = libm::sqrt(var_num as f64) / count as f64 / scale;
    Ok(Statistics {
        count,
        sum,
        mean,
        stddev,
        histogram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::add_assign_vec;
    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    use alloc::string::ToString;
    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn encodes_the_vector() {
        let p = StudyParams::demo();
        let v = encode(&p, &d("172.5")).unwrap();
        let raw: Vec<u64> = v.as_slice().iter().map(|x| x.value()).collect();
        assert_eq!(raw[..3], [1, 1725, 1725 * 1725]);
        assert_eq!(raw[3 + 5], 1); // 172.5 of 0..300 in 10 buckets → bucket 5
        assert_eq!(raw[3..].iter().sum::<u64>(), 1);
        assert_eq!(encode(&p, &d("300")).unwrap().as_slice()[3 + 9], Fe::ONE);
        assert_eq!(encode(&p, &d("0")).unwrap().as_slice()[3], Fe::ONE);
        assert_eq!(format!("{v:?}"), "EncodedValue(..)");
    }

    #[test]
    fn refuses_bad_values() {
        let p = StudyParams::demo();
        assert_eq!(encode(&p, &d("300.1")).err(), Some(ValueError::OutOfRange));
        assert_eq!(encode(&p, &d("-0.1")).err(), Some(ValueError::OutOfRange));
        assert_eq!(
            encode(&p, &d("170.25")).err(),
            Some(ValueError::TooManyDecimals { allowed: 1 })
        );
    }

    #[test]
    fn decodes_known_statistics() {
        let p = StudyParams::demo();
        let mut agg = vec![Fe::ZERO; p.vector_len()];
        for x in ["160", "170", "180"] {
            add_assign_vec(&mut agg, encode(&p, &d(x)).unwrap().as_slice());
        }
        let s = decode(&p, &agg).unwrap();
        assert_eq!(s.count, 3);
        assert!((s.sum - 510.0).abs() < 1e-9);
        assert!((s.mean - 170.0).abs() < 1e-9);
        assert!((s.stddev - (200.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!((s.histogram[5], s.histogram[6]), (2, 1)); // [150, 180) and [180, 210)
    }

    #[test]
    fn refuses_inconsistent_aggregates() {
        let p = StudyParams::demo();
        let mut agg = encode(&p, &d("10")).unwrap().as_slice().to_vec();
        agg[1] = Fe::new(5000);
        assert_eq!(decode(&p, &agg), Err(AggregateError::Inconsistent));
        assert_eq!(decode(&p, &agg[1..]), Err(AggregateError::WrongLength));
        let zero = vec![Fe::ZERO; p.vector_len()];
        assert_eq!(decode(&p, &zero), Err(AggregateError::Inconsistent));
    }

    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    proptest! {
        #[test]
        fn decode_of_sum_is_true_statistics(values in proptest::collection::vec(0u32..=3000, 1..40), lo in -500i64..500) {
            let mut p = StudyParams::demo();
            p.min = Decimal::new(lo * 10, 1).unwrap();
            p.max = Decimal::new(lo * 10 + 3000, 1).unwrap();
            p.size = 40;
            let mut agg = vec![Fe::ZERO; p.vector_len()];
            let mut truth = Vec::new();
            for &v in &values {
                let x = Decimal::new(lo * 10 + i64::from(v), 1).unwrap();
                truth.push(x.to_f64());
                let enc = encode(&p, &x.to_string().parse().unwrap()).unwrap();
                add_assign_vec(&mut agg, enc.as_slice());
            }
            let s = decode(&p, &agg).unwrap();
            let n = truth.len() as f64;
            let mean = truth.iter().sum::<f64>() / n;
            let sd = (truth.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
            prop_assert_eq!(s.count, values.len() as u64);
            prop_assert!((s.mean - mean).abs() < 1e-6);
            prop_assert!((s.stddev - sd).abs() < 1e-6);
            prop_assert_eq!(s.histogram.iter().sum::<u64>(), values.len() as u64);
        }
    }
}
