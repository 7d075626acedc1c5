//! Commit, then reveal: a patient joins with a commitment to its round key, and reveals the key
//! only once the roster of commitments is frozen.
//!
//! `commitment = SHA-256("cohort/v2 key commitment" ‖ len(study) ‖ study ‖ public key ‖ nonce)`
//! with a fresh 32-byte nonce per round. A relay that wants to substitute keys must fix them
//! (in the frozen roster) before any honest nonce is known; the safety code covers every nonce,
//! so the relay gets one guess at a matching code per round, not a search.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::envelope::PublicKey;

macro_rules! bytes32 {
    ($name:ident, $what:literal) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&crate::b64::encode(&self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
                let bytes = crate::b64::decode(&s).map_err(serde::de::Error::custom)?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| serde::de::Error::custom(concat!($what, " must be 32 bytes")))?;
                Ok($name(arr))
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(
                    f,
                    concat!(stringify!($name), "({:02x}{:02x}{:02x}{:02x}…)"),
                    self.0[0], self.0[1], self.0[2], self.0[3]
                )
            }
        }
    };
}

/// A commitment to a round key (base64url on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commitment(pub [u8; 32]);
bytes32!(Commitment, "commitment");

/// The fresh 32-byte nonce a commitment hides its key with (base64url on the wire). Public once
/// revealed; covered by the safety code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub [u8; 32]);
bytes32!(Nonce, "nonce");

/// The commitment to `key` with `nonce` for `study`.
pub fn commit(study: &str, key: &PublicKey, nonce: &Nonce) -> Commitment {
    let mut h = Sha256::new();
    h.update(b"cohort/v2 key commitment");
    h.update((study.len() as u64).to_be_bytes());
    h.update(study.as_bytes());
    h.update(key.0);
    h.update(nonce.0);
    Commitment(h.finalize().into())
}

/// One member's revealed key and nonce, as the relay forwards them to every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revealed {
    /// Roster index.
    pub index: u32,
    /// The member's X25519 public key for the round.
    pub public_key: PublicKey,
    /// The nonce of its commitment.
    pub nonce: Nonce,
}

impl Revealed {
    /// Whether this reveal opens `c` for `study`.
    pub fn opens(&self, study: &str, c: &Commitment) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(commit(study, &self.public_key, &self.nonce).0.ct_eq(&c.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commitment_binds_key_nonce_and_study() {
        let k = PublicKey([1; 32]);
        let n = Nonce([2; 32]);
        let c = commit("s", &k, &n);
        let r = Revealed {
            index: 1,
            public_key: k,
            nonce: n,
        };
        assert!(r.opens("s", &c));
        assert!(!r.opens("t", &c));
        let mut other = r.clone();
        other.public_key.0[0] ^= 1;
        assert!(!other.opens("s", &c));
        let mut other = r;
        other.nonce.0[31] ^= 1;
        assert!(!other.opens("s", &c));
    }
}
