//! The prime field GF(p) with p = 2^61 − 1 (a Mersenne prime).
//!
//! Every share, partial sum and aggregate is a vector of elements of this field. The Mersenne
//! form makes reduction a shift, a mask and an add, with no data-dependent branches: all
//! arithmetic here runs in constant time in its operands (the only loop, in [`Fe::pow`], depends
//! on the public exponent only).

use rand_core::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// The field modulus, p = 2^61 − 1.
pub const MODULUS: u64 = (1 << 61) - 1;

/// An element of GF(2^61 − 1), always held in canonical form (`0 ≤ value < p`).
///
/// `Debug` is deliberately opaque: field elements are shares, sums of shares or encoded values,
/// and none of those may reach a log.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Fe(u64);

impl core::fmt::Debug for Fe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Fe(..)")
    }
}

/// Reduces a value below 2^62 + p to canonical form without branching.
#[inline(always)]
fn reduce_once(x: u64) -> u64 {
    // x < 2^64: fold the bits above 61 back in (2^61 ≡ 1 mod p), then one conditional subtract.
    let folded = (x & MODULUS) + (x >> 61);
    let (sub, borrow) = folded.overflowing_sub(MODULUS);
    // borrow == true means folded < p: keep folded.
    let mask = (borrow as u64).wrapping_neg();
    (folded & mask) | (sub & !mask)
}

impl Fe {
    /// The additive identity.
    pub const ZERO: Fe = Fe(0);
    /// The multiplicative identity.
    pub const ONE: Fe = Fe(1);

    /// Builds an element from an integer, reducing it modulo p.
    #[inline]
    pub fn new(x: u64) -> Fe {
        Fe(reduce_once(x))
    }

    /// Builds an element from an integer that must already be canonical; `None` if `x ≥ p`.
    #[inline]
    pub fn from_canonical(x: u64) -> Option<Fe> {
        (x < MODULUS).then_some(Fe(x))
    }

    /// The canonical integer representative, in `[0, p)`.
    #[inline]
    pub fn value(self) -> u64 {
        self.0
    }

    /// A uniformly random element, by rejection sampling 61-bit values (rejects with
    /// probability 2^-61, so the loop is constant-time in practice and leaks nothing secret).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Fe {
        loop {
            let x = rng.next_u64() >> 3;
            if x < MODULUS {
                return Fe(x);
            }
        }
    }

    /// Raises to a public exponent.
    pub fn pow(self, mut e: u64) -> Fe {
        let mut base = self;
        let mut acc = Fe::ONE;
        while e > 0 {
            if e & 1 == 1 {
                acc *= base;
            }
            base = base * base;
            e >>= 1;
        }
        acc
    }

    /// The multiplicative inverse (Fermat: x^(p−2)); the inverse of zero is zero.
    pub fn inverse(self) -> Fe {
        self.pow(MODULUS - 2)
    }

    /// Little-endian bytes of the canonical representative.
    pub fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// Parses little-endian bytes; `None` if not canonical.
    pub fn from_le_bytes(bytes: [u8; 8]) -> Option<Fe> {
        Fe::from_canonical(u64::from_le_bytes(bytes))
    }
}

impl core::ops::Add for Fe {
    type Output = Fe;
    #[inline(always)]
    fn add(self, rhs: Fe) -> Fe {
        // Both < 2^61, so the sum < 2^62 and cannot overflow.
        Fe(reduce_once(self.0 + rhs.0))
    }
}

impl core::ops::AddAssign for Fe {
    #[inline(always)]
    fn add_assign(&mut self, rhs: Fe) {
        *self = *self + rhs;
    }
}

impl core::ops::Sub for Fe {
    type Output = Fe;
    #[inline(always)]
    fn sub(self, rhs: Fe) -> Fe {
        // self + (p − rhs) < 2^62.
        Fe(reduce_once(self.0 + (MODULUS - rhs.0)))
    }
}

impl core::ops::SubAssign for Fe {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Fe) {
        *self = *self - rhs;
    }
}

impl core::ops::Neg for Fe {
    type Output = Fe;
    #[inline(always)]
    fn neg(self) -> Fe {
        Fe::ZERO - self
    }
}

impl core::ops::Mul for Fe {
    type Output = Fe;
    #[inline(always)]
    fn mul(self, rhs: Fe) -> Fe {
        let prod = (self.0 as u128) * (rhs.0 as u128); // < 2^122
        let lo = (prod as u64) & MODULUS; // bits 0..61
        let hi = (prod >> 61) as u64; // < 2^61
        Fe(reduce_once(lo + hi))
    }
}

impl core::ops::MulAssign for Fe {
    #[inline(always)]
    fn mul_assign(&mut self, rhs: Fe) {
        *self = *self * rhs;
    }
}

impl zeroize::DefaultIsZeroes for Fe {}

impl ConstantTimeEq for Fe {
    fn ct_eq(&self, other: &Fe) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl ConditionallySelectable for Fe {
    fn conditional_select(a: &Fe, b: &Fe, choice: subtle::Choice) -> Fe {
        Fe(u64::conditional_select(&a.0, &b.0, choice))
    }
}

impl Serialize for Fe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Fe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fe, D::Error> {
        let x = u64::deserialize(d)?;
        Fe::from_canonical(x).ok_or_else(|| serde::de::Error::custom("field element out of range"))
    }
}

/// Inverts every element of `xs` in place with one field inversion (Montgomery's trick).
/// Zero elements stay zero.
pub fn batch_inverse(xs: &mut [Fe]) {
    let mut prefix = alloc::vec::Vec::with_capacity(xs.len());
    let mut acc = Fe::ONE;
    for &x in xs.iter() {
        prefix.push(acc);
        if x != Fe::ZERO {
            acc *= x;
        }
    }
    let mut inv = acc.inverse();
    for (x, before) in xs.iter_mut().zip(prefix).rev() {
        if *x != Fe::ZERO {
            let xi = inv * before;
            inv *= *x;
            *x = xi;
        }
    }
}

/// Adds `b` into `a` component-wise. Panics if the lengths differ (callers check lengths).
pub fn add_assign_vec(a: &mut [Fe], b: &[Fe]) {
    assert_eq!(a.len(), b.len(), "vector length mismatch");
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    use proptest::prelude::*;

    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    fn naive_mul(a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) % MODULUS as u128) as u64
    }

    #[test]
    fn constants_and_edges() {
        assert_eq!(Fe::new(MODULUS), Fe::ZERO);
        assert_eq!(Fe::new(MODULUS + 5), Fe::new(5));
        assert_eq!(Fe::new(u64::MAX).value(), u64::MAX % MODULUS);
        assert_eq!(Fe::from_canonical(MODULUS), None);
        assert_eq!((Fe::ZERO - Fe::ONE).value(), MODULUS - 1);
        assert_eq!(Fe::new(MODULUS - 1) + Fe::ONE, Fe::ZERO);
        assert_eq!(Fe::new(MODULUS - 1) * Fe::new(MODULUS - 1), Fe::ONE);
        assert_eq!(Fe::ZERO.inverse(), Fe::ZERO);
        assert_eq!(format!("{:?}", Fe::new(42)), "Fe(..)");
    }

    #[test]
    fn batch_inverse_matches_single() {
        let mut xs: Vec<Fe> = [3u64, 0, 7, MODULUS - 1, 1 << 40]
            .iter()
            .map(|&x| Fe::new(x))
            .collect();
        let expected: Vec<Fe> = xs.iter().map(|x| x.inverse()).collect();
        batch_inverse(&mut xs);
        assert_eq!(xs, expected);
    }

    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    proptest! {
        #[test]
        fn arithmetic_matches_naive(a in 0..MODULUS, b in 0..MODULUS) {
            let (fa, fb) = (Fe::new(a), Fe::new(b));
            prop_assert_eq!((fa + fb).value(), ((a as u128 + b as u128) % MODULUS as u128) as u64);
            prop_assert_eq!((fa - fb).value(), ((a as u128 + MODULUS as u128 - b as u128) % MODULUS as u128) as u64);
            prop_assert_eq!((fa * fb).value(), naive_mul(a, b));
            prop_assert_eq!(-fa + fa, Fe::ZERO);
            if a != 0 {
                prop_assert_eq!(fa * fa.inverse(), Fe::ONE);
            }
        }

        #[test]
        fn reduction_of_any_u64(x in any::<u64>()) {
            prop_assert_eq!(Fe::new(x).value(), x % MODULUS);
        }
    }
}
