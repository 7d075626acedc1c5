//! Shared by the fuzz targets: a deterministic pool of key pairs, commitments to them with
//! fixed nonces, encoded values, and wire round-trip checks.
#![allow(dead_code)]

use std::sync::OnceLock;

use cohort_core::commitment::{Commitment, Nonce, commit};
use cohort_core::decimal::Decimal;
use cohort_core::encoding::encode;
use cohort_core::envelope::{KeyPair, PublicKey};
use cohort_core::field::Fe;
use cohort_core::message::{PatientToRelay, RelayToPatient};
use cohort_core::rand_core::SeedableRng;
use cohort_core::study::StudyParams;
use rand_chacha::ChaCha20Rng;

/// Eight fixed key pairs (from a fixed seed), so inputs can name keys by index.
pub fn pool() -> &'static [KeyPair] {
    static POOL: OnceLock<Vec<KeyPair>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0xf022);
        (0..8).map(|_| KeyPair::generate(&mut rng)).collect()
    })
}

/// Low-order X25519 points.
pub const WEAK: [[u8; 32]; 3] = [
    [0; 32],
    {
        let mut k = [0; 32];
        k[0] = 1;
        k
    },
    {
        let mut k = [0xff; 32];
        k[0] = 0xec;
        k[31] = 0x7f;
        k
    },
];

/// A key chosen by the input: from the pool, a weak one, or raw bytes.
#[derive(arbitrary::Arbitrary, Debug, Clone, Copy)]
pub enum KeySel {
    Pool(u8),
    Weak(u8),
    Bytes([u8; 32]),
}

impl KeySel {
    pub fn key(self) -> PublicKey {
        match self {
            KeySel::Pool(i) => pool()[usize::from(i) % 8].public(),
            KeySel::Weak(i) => PublicKey(WEAK[usize::from(i) % WEAK.len()]),
            KeySel::Bytes(b) => PublicKey(b),
        }
    }
}

/// The fixed nonce `[b; 32]`: inputs name nonces by one byte, so a reveal can be made to match
/// its commitment (or not).
pub fn nonce(b: u8) -> Nonce {
    Nonce([b; 32])
}

/// The commitment to `key` with the fixed nonce `b` for `study`.
pub fn commitment(study: &str, key: &PublicKey, b: u8) -> Commitment {
    commit(study, key, &nonce(b))
}

/// The pool key pair whose public key is `key`, if any (to seal as that member).
pub fn pool_pair(key: &PublicKey) -> Option<&'static KeyPair> {
    pool().iter().find(|k| k.public() == *key)
}

/// The encoding of the `x`-th value of the study's range (zeros if it does not encode).
pub fn encoded(params: &StudyParams, x: u16) -> Vec<Fe> {
    let lo = params.min.to_scaled(params.decimals).unwrap_or(0);
    let off = (u64::from(x) % (params.range_scaled() + 1)) as i64;
    Decimal::new(lo + off, params.decimals)
        .ok()
        .and_then(|d| encode(params, &d).ok())
        .map_or_else(
            || vec![Fe::ZERO; params.vector_len()],
            |e| e.as_slice().to_vec(),
        )
}

/// With `COHORT_FUZZ_PROBE=1`, prints `probe: <what>` to stderr: run a target over its corpus
/// with `-runs=0` and count the lines to see which states the corpus reaches.
pub fn probe(what: &str) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("COHORT_FUZZ_PROBE").is_some()) {
        eprintln!("probe: {what}");
    }
}

/// Whatever either side sends must decode, on the other side, to exactly what was sent.
pub fn relay_round_trip(msg: &RelayToPatient) {
    let text = msg.encode();
    let back = RelayToPatient::decode_wire(&text)
        .unwrap_or_else(|e| panic!("relay message does not decode: {e:?}: {text:?}"));
    assert_eq!(&back, msg, "relay message changed on the wire");
}

/// See [`relay_round_trip`].
pub fn patient_round_trip(msg: &PatientToRelay) {
    let text = msg.encode();
    let back = PatientToRelay::decode_wire(&text)
        .unwrap_or_else(|e| panic!("patient message does not decode: {e:?}: {text:?}"));
    // An empty trailing section is not on the wire (a frame without it decodes to an empty
    // list of entry length 0), so an empty `extra` of another entry length is the same message:
    // a patient in a Shamir round with proofs sends one.
    if back != *msg {
        assert_eq!(back.encode(), text, "patient message changed on the wire");
        assert!(
            matches!((&back, msg), (PatientToRelay::Shares(a), PatientToRelay::Shares(b))
                if a.extra.is_empty() && b.extra.is_empty() && a.shares == b.shares),
            "patient message changed on the wire: {back:?} != {msg:?}"
        );
    }
}

/// Calls `handle_timeout(now)` while `poll_timeout() <= now`; a machine that needs more than a
/// few calls at the same instant would spin its driver.
pub fn settle(mut poll: impl FnMut() -> Option<u64>, mut fire: impl FnMut(u64), now: u64) {
    for _ in 0..16 {
        match poll() {
            Some(t) if t <= now => fire(now),
            _ => return,
        }
    }
    panic!(
        "handle_timeout({now}) makes no progress: poll_timeout() stays at {:?}",
        poll()
    );
}
