//! Secret sharing over vectors of field elements.
//!
//! * **Additive n-of-n** (threshold t = n): n − 1 uniformly random vectors and a remainder so
//!   that all n sum to the secret. O(n) per patient. Every share is needed to reconstruct.
//! * **Shamir t-of-n** (t < n): per component, a random polynomial of degree t − 1 whose constant
//!   term is the secret; share j is its value at x = j (j = 1..=n). Any t shares reconstruct by
//!   Lagrange interpolation at 0; any t − 1 are uniformly random. O(n·t) per patient.
//!
//! In transit, an additive share for another patient is a 32-byte seed, expanded with ChaCha20
//! into the share vector (as Prio3 does for its helper's share); only the dealer's own share is
//! the remainder. A Shamir share travels as the vector itself.
//!
//! Both schemes are linear, so the sum of shares is a share of the sum: that is what a partial
//! sum is.

use alloc::vec;
use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::{Zeroize, Zeroizing};

use crate::error::SharingError;
use crate::field::{Fe, batch_inverse};

/// Which scheme a round uses, decided by its roster size and threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// n-of-n additive sharing.
    Additive {
        /// Number of shares.
        n: u32,
    },
    /// t-of-n Shamir sharing.
    Shamir {
        /// Number of shares.
        n: u32,
        /// Shares needed to reconstruct.
        t: u32,
    },
}

impl Scheme {
    /// The scheme for `n` shares with threshold `t` (additive when t = n).
    pub fn new(n: u32, t: u32) -> Result<Scheme, SharingError> {
        if n < 2 || t < 2 || t > n {
            return Err(SharingError::BadParameters);
        }
        Ok(if t == n {
            Scheme::Additive { n }
        } else {
            Scheme::Shamir { n, t }
        })
    }

    /// Number of shares.
    pub fn n(self) -> u32 {
        match self {
            Scheme::Additive { n } | Scheme::Shamir { n, .. } => n,
        }
    }

    /// Shares needed to reconstruct.
    pub fn t(self) -> u32 {
        match self {
            Scheme::Additive { n } => n,
            Scheme::Shamir { t, .. } => t,
        }
    }

    /// Splits `secret` into n shares; share `i` (0-based) belongs to roster index `i + 1`.
    pub fn split<R: Rng + ?Sized>(self, secret: &[Fe], rng: &mut R) -> Vec<Vec<Fe>> {
        match self {
            Scheme::Additive { n } => split_additive(secret, n as usize, rng),
            Scheme::Shamir { n, t } => split_shamir(secret, n as usize, t as usize, rng),
        }
    }

    /// Reconstructs the secret (the aggregate) from `(roster index, share)` pairs. Additive
    /// needs all n distinct indices; Shamir uses the first t distinct ones.
    pub fn reconstruct(self, shares: &[(u32, &[Fe])]) -> Result<Vec<Fe>, SharingError> {
        let len = shares
            .first()
            .map(|(_, s)| s.len())
            .ok_or(SharingError::TooFewShares)?;
        let mut seen = vec![false; self.n() as usize + 1];
        let mut picked: Vec<(u32, &[Fe])> = Vec::with_capacity(self.t() as usize);
        for &(i, s) in shares {
            if i == 0 || i > self.n() {
                return Err(SharingError::BadIndex);
            }
            if s.len() != len {
                return Err(SharingError::LengthMismatch);
            }
            if core::mem::replace(&mut seen[i as usize], true) {
                return Err(SharingError::DuplicateIndex);
            }
            if picked.len() < self.t() as usize {
                picked.push((i, s));
            }
        }
        if picked.len() < self.t() as usize {
            return Err(SharingError::TooFewShares);
        }
        let mut out = vec![Fe::ZERO; len];
        match self {
            Scheme::Additive { .. } => {
                for (_, s) in picked {
                    for (o, x) in out.iter_mut().zip(s) {
                        *o += *x;
                    }
                }
            }
            Scheme::Shamir { .. } => {
                let xs: Vec<u32> = picked.iter().map(|(i, _)| *i).collect();
                let weights = lagrange_at_zero(&xs);
                for ((_, s), w) in picked.iter().zip(weights) {
                    for (o, x) in out.iter_mut().zip(s.iter()) {
                        *o += *x * w;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Length of the seed that stands for an additive share in transit.
pub const SEED_LEN: usize = 32;

/// Expands a seed into a uniformly random share vector of `len` elements.
pub fn expand_seed(seed: &[u8; SEED_LEN], len: usize) -> Vec<Fe> {
    let mut prg = ChaCha20Rng::from_seed(*seed);
    (0..len).map(|_| Fe::random(&mut prg)).collect()
}

/// One dealer's shares, ready to seal: its own share, kept, and a payload per other member.
pub struct Deal {
    /// The dealer's own share (never leaves the patient).
    pub own: Vec<Fe>,
    /// `(recipient index, payload bytes)` for every other member, in index order; wiped on drop.
    pub payloads: Vec<(u32, Zeroizing<Vec<u8>>)>,
}

impl core::fmt::Debug for Deal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Deal({} payloads)", self.payloads.len())
    }
}

impl Drop for Deal {
    fn drop(&mut self) {
        self.own.zeroize();
    }
}

impl Scheme {
    /// Plaintext length of one share in transit for a statistics vector of `vector_len`:
    /// a seed for additive sharing, the encoded vector for Shamir.
    pub fn payload_len(self, vector_len: usize) -> usize {
        match self {
            Scheme::Additive { .. } => SEED_LEN,
            Scheme::Shamir { .. } => vector_len * 8,
        }
    }

    /// Splits `secret` as roster member `me` (1-based) and encodes the other members' shares
    /// as payloads.
    pub fn deal<R: Rng + ?Sized>(self, secret: &[Fe], me: u32, rng: &mut R) -> Deal {
        match self {
            Scheme::Additive { n } => {
                let mut own = secret.to_vec();
                let mut payloads = Vec::with_capacity(n as usize - 1);
                for j in (1..=n).filter(|&j| j != me) {
                    let mut seed = [0u8; SEED_LEN];
                    rng.fill_bytes(&mut seed);
                    for (o, x) in own.iter_mut().zip(expand_seed(&seed, secret.len())) {
                        *o -= x;
                    }
                    payloads.push((j, Zeroizing::new(seed.to_vec())));
                    seed.zeroize();
                }
                Deal { own, payloads }
            }
            Scheme::Shamir { .. } => {
                let mut shares = self.split(secret, rng);
                let own = core::mem::take(&mut shares[me as usize - 1]);
                let payloads = shares
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| *i as u32 + 1 != me)
                    .map(|(i, s)| {
                        let bytes: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).collect();
                        s.zeroize();
                        (i as u32 + 1, Zeroizing::new(bytes))
                    })
                    .collect();
                Deal { own, payloads }
            }
        }
    }

    /// Decodes a received payload into the share vector; `None` if malformed.
    pub fn receive(self, payload: &[u8], vector_len: usize) -> Option<Vec<Fe>> {
        if payload.len() != self.payload_len(vector_len) {
            return None;
        }
        match self {
            Scheme::Additive { .. } => {
                let seed: &[u8; SEED_LEN] = payload.try_into().ok()?;
                Some(expand_seed(seed, vector_len))
            }
            Scheme::Shamir { .. } => payload
                .chunks_exact(8)
                .map(|c| Fe::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        }
    }
}

fn split_additive<R: Rng + ?Sized>(secret: &[Fe], n: usize, rng: &mut R) -> Vec<Vec<Fe>> {
    let mut shares = Vec::with_capacity(n);
    let mut last = secret.to_vec();
    for _ in 1..n {
        let share: Vec<Fe> = secret.iter().map(|_| Fe::random(rng)).collect();
        for (l, s) in last.iter_mut().zip(&share) {
            *l -= *s;
        }
        shares.push(share);
    }
    shares.push(last);
    shares
}

fn split_shamir<R: Rng + ?Sized>(secret: &[Fe], n: usize, t: usize, rng: &mut R) -> Vec<Vec<Fe>> {
    // coeffs[k][c]: coefficient of x^k of component c's polynomial; k = 0 is the secret.
    let mut coeffs: Vec<Vec<Fe>> = Vec::with_capacity(t);
    coeffs.push(secret.to_vec());
    for _ in 1..t {
        coeffs.push(secret.iter().map(|_| Fe::random(rng)).collect());
    }
    (1..=n as u64)
        .map(|j| {
            // Horner over k, vectorised over components.
            let x = Fe::new(j);
            let mut acc = coeffs[t - 1].clone();
            for k in (0..t - 1).rev() {
                for (a, c) in acc.iter_mut().zip(&coeffs[k]) {
                    *a = *a * x + *c;
                }
            }
            acc
        })
        .collect()
}

/// Lagrange weights for interpolation at 0 from the distinct nonzero points `xs`:
/// `λ_j = Π_{m≠j} x_m / (x_m − x_j)`. O(t²) multiplications and one inversion.
pub fn lagrange_at_zero(xs: &[u32]) -> Vec<Fe> {
    let pts: Vec<Fe> = xs.iter().map(|&x| Fe::new(u64::from(x))).collect();
    let prod_all = pts.iter().fold(Fe::ONE, |a, &x| a * x);
    // λ_j = (Π_m x_m / x_j) / Π_{m≠j}(x_m − x_j)
    let mut denoms: Vec<Fe> = pts
        .iter()
        .enumerate()
        .map(|(j, &xj)| {
            let d = pts
                .iter()
                .enumerate()
                .filter(|&(m, _)| m != j)
                .fold(Fe::ONE, |a, (_, &xm)| a * (xm - xj));
            d * xj
        })
        .collect();
    batch_inverse(&mut denoms);
    denoms.into_iter().map(|d| prod_all * d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn secret(len: usize, seed: u64) -> Vec<Fe> {
        (0..len as u64)
            .map(|i| Fe::new(seed.wrapping_mul(1_000_003).wrapping_add(i)))
            .collect()
    }

    #[test]
    fn scheme_choice() {
        assert_eq!(Scheme::new(3, 3), Ok(Scheme::Additive { n: 3 }));
        assert_eq!(Scheme::new(5, 3), Ok(Scheme::Shamir { n: 5, t: 3 }));
        assert_eq!(Scheme::new(3, 4), Err(SharingError::BadParameters));
        assert_eq!(Scheme::new(3, 1), Err(SharingError::BadParameters));
    }

    #[test]
    fn fewer_than_t_shares_fail_and_duplicates_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let s = Scheme::new(5, 3).unwrap();
        let shares = s.split(&secret(4, 9), &mut rng);
        let two: Vec<(u32, &[Fe])> = vec![(1, &shares[0]), (2, &shares[1])];
        assert_eq!(s.reconstruct(&two), Err(SharingError::TooFewShares));
        let dup: Vec<(u32, &[Fe])> = vec![(1, &shares[0]), (1, &shares[0]), (2, &shares[1])];
        assert_eq!(s.reconstruct(&dup), Err(SharingError::DuplicateIndex));
        let bad: Vec<(u32, &[Fe])> = vec![(0, &shares[0]), (2, &shares[1]), (3, &shares[2])];
        assert_eq!(s.reconstruct(&bad), Err(SharingError::BadIndex));
    }

    #[test]
    fn t_minus_one_shamir_shares_do_not_determine_the_secret() {
        // With t−1 shares fixed, every secret is consistent: changing the secret and
        // re-randomising gives shares that a (t−1)-coalition cannot tell apart. Check the
        // algebraic core of that: for any target secret there is a degree t−1 polynomial
        // through the t−1 observed points and (0, target).
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let s = Scheme::new(5, 3).unwrap();
        let shares = s.split(&[Fe::new(42)], &mut rng);
        for target in [0u64, 1, 41, 43, 1 << 50] {
            let xs = [1u32, 2];
            // Interpolate at 0 from the points (1, y1), (2, y2) and a third point chosen so the
            // constant term is `target`: shows the two shares alone fix nothing.
            let w = lagrange_at_zero(&[1, 2, 3]);
            let y3 = (Fe::new(target) - w[0] * shares[0][0] - w[1] * shares[1][0]) * w[2].inverse();
            let three: Vec<Vec<Fe>> = vec![shares[0].clone(), shares[1].clone(), vec![y3]];
            let pairs: Vec<(u32, &[Fe])> = xs
                .iter()
                .chain([3u32].iter())
                .zip(&three)
                .map(|(&i, v)| (i, v.as_slice()))
                .collect();
            assert_eq!(s.reconstruct(&pairs).unwrap(), vec![Fe::new(target)]);
        }
    }

    #[test]
    fn dealt_payloads_reconstruct() {
        for (n, t) in [(3u32, 3u32), (7, 7), (7, 4)] {
            let s = Scheme::new(n, t).unwrap();
            let sec = secret(5, u64::from(n * 10 + t));
            let mut rng = ChaCha20Rng::seed_from_u64(u64::from(n));
            let mut shares: Vec<Vec<Fe>> = vec![Vec::new(); n as usize];
            let me = 2;
            let deal = s.deal(&sec, me, &mut rng);
            assert_eq!(deal.payloads.len(), n as usize - 1);
            shares[me as usize - 1] = deal.own.clone();
            for (j, p) in &deal.payloads {
                assert_eq!(p.len(), s.payload_len(5));
                shares[*j as usize - 1] = s.receive(p, 5).unwrap();
            }
            let pairs: Vec<(u32, &[Fe])> = shares
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u32 + 1, v.as_slice()))
                .collect();
            assert_eq!(s.reconstruct(&pairs).unwrap(), sec);
            assert!(s.receive(&[0u8; 3], 5).is_none());
        }
    }

    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn reconstruct_of_split_is_identity(n in 2u32..=64, t_frac in 0.0f64..=1.0, len in 1usize..8, seed in any::<u64>(), pick_seed in any::<u64>()) {
            let t = (2 + ((n - 2) as f64 * t_frac) as u32).min(n);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let s = Scheme::new(n, t).unwrap();
            let sec = secret(len, seed);
            let shares = s.split(&sec, &mut rng);
            prop_assert_eq!(shares.len(), n as usize);
            // Any t of them, in a pseudo-random order.
            let mut idx: Vec<u32> = (1..=n).collect();
            let mut prng = ChaCha20Rng::seed_from_u64(pick_seed);
            for i in (1..idx.len()).rev() {
                let j = (prng.next_u64() % (i as u64 + 1)) as usize;
                idx.swap(i, j);
            }
            let chosen: Vec<(u32, &[Fe])> = idx.iter().take(t as usize).map(|&i| (i, shares[i as usize - 1].as_slice())).collect();
            prop_assert_eq!(s.reconstruct(&chosen).unwrap(), sec);
        }

        #[test]
        fn sum_of_shares_is_share_of_sum(n in 2u32..=16, t in 2u32..=16, seed in any::<u64>()) {
            let t = t.min(n);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let s = Scheme::new(n, t).unwrap();
            let a = secret(3, seed);
            let b = secret(3, seed ^ 0xdead);
            let sa = s.split(&a, &mut rng);
            let sb = s.split(&b, &mut rng);
            let sums: Vec<Vec<Fe>> = sa.iter().zip(&sb).map(|(x, y)| x.iter().zip(y).map(|(p, q)| *p + *q).collect()).collect();
            let pairs: Vec<(u32, &[Fe])> = sums.iter().enumerate().map(|(i, v)| (i as u32 + 1, v.as_slice())).collect();
            let total: Vec<Fe> = a.iter().zip(&b).map(|(p, q)| *p + *q).collect();
            prop_assert_eq!(s.reconstruct(&pairs).unwrap(), total);
        }
    }
}
