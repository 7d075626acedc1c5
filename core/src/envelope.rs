//! Sealing shares end to end between two patients.
//!
//! Each patient makes a fresh X25519 key pair per round. For a sender i and recipient j, both
//! compute the X25519 shared secret; HKDF-SHA256 extracts it (salt `cohort/v1`) and expands it
//! with a context naming the study, round, sender index, recipient index and both public keys,
//! so i→j and j→i use different keys and a key is never valid in another study, round or
//! direction. The share is sealed with ChaCha20-Poly1305 under that key, with the same context
//! as associated data. Each key seals exactly one message (one share per direction per round),
//! so the nonce is fixed at zero.

use alloc::vec::Vec;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::SealError;
use crate::field::Fe;

/// Bytes added by sealing (the Poly1305 tag).
pub const TAG_LEN: usize = 16;

/// An X25519 public key as sent on the wire (base64url, no padding).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Public, but long: show a prefix only.
        write!(
            f,
            "PublicKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::b64::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = crate::b64::decode(&s).map_err(serde::de::Error::custom)?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("public key must be 32 bytes"))?;
        Ok(PublicKey(arr))
    }
}

/// A patient's per-round X25519 key pair. The secret half never leaves this type and is wiped
/// on drop; `Debug` shows only the public half.
pub struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a fresh key pair from a CSPRNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> KeyPair {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let public = PublicKey(DalekPublic::from(&secret).to_bytes());
        KeyPair { secret, public }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Agrees on the pair secret with `their` key: one X25519 and one HKDF-extract. Fails if
    /// their key is a low-order point (the shared secret would be predictable).
    pub fn agree(&self, their: &PublicKey) -> Result<PairSecret, SealError> {
        let shared = self.secret.diffie_hellman(&DalekPublic::from(their.0));
        if !shared.was_contributory() {
            return Err(SealError::WeakKey);
        }
        let (prk, _) = Hkdf::<Sha256>::extract(Some(b"cohort/v1"), shared.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&prk);
        Ok(PairSecret(out))
    }
}

/// The HKDF pseudo-random key for one pair of patients in one round. Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PairSecret([u8; 32]);

impl core::fmt::Debug for PairSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PairSecret(..)")
    }
}

/// What a sealed share is bound to. Opening under any other binding fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    /// Study id.
    pub study: &'a str,
    /// Round id.
    pub round: u64,
    /// Sender's roster index.
    pub from: u32,
    /// Recipient's roster index.
    pub to: u32,
    /// Sender's public key.
    pub from_key: &'a PublicKey,
    /// Recipient's public key.
    pub to_key: &'a PublicKey,
}

impl Binding<'_> {
    fn context(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(32 + self.study.len() + 80);
        c.extend_from_slice(b"cohort/v1 share");
        c.extend_from_slice(&(self.study.len() as u32).to_be_bytes());
        c.extend_from_slice(self.study.as_bytes());
        c.extend_from_slice(&self.round.to_be_bytes());
        c.extend_from_slice(&self.from.to_be_bytes());
        c.extend_from_slice(&self.to.to_be_bytes());
        c.extend_from_slice(&self.from_key.0);
        c.extend_from_slice(&self.to_key.0);
        c
    }
}

/// A sealing key for one direction. Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DirectionKey {
    key: [u8; 32],
    #[zeroize(skip)]
    context: Vec<u8>,
}

impl core::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DirectionKey(..)")
    }
}

impl PairSecret {
    /// Expands the key for one direction of this pair, bound to `binding`.
    pub fn direction_key(&self, binding: &Binding<'_>) -> DirectionKey {
        let hk = Hkdf::<Sha256>::from_prk(&self.0).expect("32-byte PRK is valid");
        let context = binding.context();
        let mut key = [0u8; 32];
        hk.expand(&context, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        DirectionKey { key, context }
    }
}

impl DirectionKey {
    /// A key for another purpose in the same direction and binding: HKDF-Expand-SHA256 with
    /// this key as PRK and `label ‖ context` as info, bound to `label ‖ context` as AAD. The
    /// proof messages use it (`cohort/v2 correction`, `cohort/v2 verify`, `cohort/v2 verdict`)
    /// so that no key seals two kinds of message.
    pub fn derive(&self, label: &[u8]) -> DirectionKey {
        let hk = Hkdf::<Sha256>::from_prk(&self.key).expect("32-byte PRK is valid");
        let mut context = Vec::with_capacity(label.len() + self.context.len());
        context.extend_from_slice(label);
        context.extend_from_slice(&self.context);
        let mut key = [0u8; 32];
        hk.expand(&context, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        DirectionKey { key, context }
    }

    /// Fills `out` (at most 32 bytes) with HKDF-Expand-SHA256 under this key, with info
    /// `label ‖ extra ‖ context`: a pseudorandom value only the two ends of this direction can
    /// compute (the pads of `verify` entries and the verdict tags of validity proofs).
    pub fn expand_into(&self, label: &[u8], extra: &[u8], out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::from_prk(&self.key).expect("32-byte PRK is valid");
        hk.expand_multi_info(&[label, extra, &self.context], out)
            .expect("at most 32 bytes is a valid HKDF-SHA256 length");
    }

    /// Seals bytes (a share's payload: a seed or an encoded vector).
    pub fn seal_bytes(&self, plain: &[u8]) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        cipher
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: plain,
                    aad: &self.context,
                },
            )
            .expect("ChaCha20-Poly1305 encryption of a short message cannot fail")
    }

    /// Opens sealed bytes that must hold exactly `plain_len` bytes. Fails on any modification,
    /// wrong key, wrong binding or wrong length. The result is wiped on drop.
    pub fn open_bytes(
        &self,
        sealed: &[u8],
        plain_len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() != plain_len + TAG_LEN {
            return Err(SealError::BadLength);
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        cipher
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: sealed,
                    aad: &self.context,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::OpenFailed)
    }

    /// Seals a share vector (8 little-endian bytes per element).
    pub fn seal(&self, share: &[Fe]) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(share.len() * 8));
        for x in share {
            plain.extend_from_slice(&x.to_le_bytes());
        }
        self.seal_bytes(&plain)
    }

    /// Opens a sealed share vector of `len` elements; a non-canonical element fails too.
    pub fn open(&self, sealed: &[u8], len: usize) -> Result<Vec<Fe>, SealError> {
        let plain = self.open_bytes(sealed, len * 8)?;
        plain
            .chunks_exact(8)
            .map(|c| Fe::from_le_bytes(c.try_into().expect("chunk of 8")))
            .collect::<Option<Vec<Fe>>>()
            .ok_or(SealError::OpenFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct Pair {
        a: KeyPair,
        b: KeyPair,
    }

    fn pair(seed: u64) -> Pair {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        Pair {
            a: KeyPair::generate(&mut rng),
            b: KeyPair::generate(&mut rng),
        }
    }

    fn binding<'a>(p: &'a Pair, study: &'a str, round: u64, a_to_b: bool) -> Binding<'a> {
        if a_to_b {
            Binding {
                study,
                round,
                from: 1,
                to: 2,
                from_key: &p.a.public,
                to_key: &p.b.public,
            }
        } else {
            Binding {
                study,
                round,
                from: 2,
                to: 1,
                from_key: &p.b.public,
                to_key: &p.a.public,
            }
        }
    }

    #[test]
    fn round_trip_and_bindings() {
        let p = pair(7);
        let share = [Fe::new(1), Fe::new(2), Fe::new(3)];
        let sa = p.a.agree(&p.b.public).unwrap();
        let sb = p.b.agree(&p.a.public).unwrap();
        let sealed = sa.direction_key(&binding(&p, "s", 1, true)).seal(&share);
        assert_eq!(sealed.len(), 3 * 8 + TAG_LEN);
        assert_eq!(
            sb.direction_key(&binding(&p, "s", 1, true))
                .open(&sealed, 3)
                .unwrap(),
            share
        );
        // Wrong direction, round, study, recipient key, length: all fail.
        assert_eq!(
            sb.direction_key(&binding(&p, "s", 1, false))
                .open(&sealed, 3),
            Err(SealError::OpenFailed)
        );
        assert_eq!(
            sb.direction_key(&binding(&p, "s", 2, true))
                .open(&sealed, 3),
            Err(SealError::OpenFailed)
        );
        assert_eq!(
            sb.direction_key(&binding(&p, "t", 1, true))
                .open(&sealed, 3),
            Err(SealError::OpenFailed)
        );
        assert_eq!(
            sb.direction_key(&binding(&p, "s", 1, true))
                .open(&sealed, 2),
            Err(SealError::BadLength)
        );
        let other = pair(8);
        let so = other.b.agree(&p.a.public).unwrap();
        assert_eq!(
            so.direction_key(&binding(&p, "s", 1, true))
                .open(&sealed, 3),
            Err(SealError::OpenFailed)
        );
    }

    #[test]
    fn refuses_low_order_keys() {
        let p = pair(9);
        assert_eq!(
            p.a.agree(&PublicKey([0u8; 32])).err(),
            Some(SealError::WeakKey)
        );
    }

    #[test]
    fn debug_shows_no_secrets() {
        let p = pair(10);
        let s = p.a.agree(&p.b.public).unwrap();
        let k = s.direction_key(&binding(&p, "s", 1, true));
        assert_eq!(format!("{s:?}"), "PairSecret(..)");
        assert_eq!(format!("{k:?}"), "DirectionKey(..)");
        assert!(format!("{:?}", p.a).starts_with("KeyPair { public: PublicKey("));
    }

    #[cfg(not(target_arch = "wasm32"))] // proptest does not build for wasm32
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_flipped_bit_fails(seed in any::<u64>(), vals in proptest::collection::vec(0u64..crate::field::MODULUS, 1..16), bit in any::<usize>()) {
            let p = pair(seed);
            let share: Vec<Fe> = vals.iter().map(|&v| Fe::new(v)).collect();
            let key = p.a.agree(&p.b.public).unwrap().direction_key(&binding(&p, "s", 3, true));
            let mut sealed = key.seal(&share);
            let back = p.b.agree(&p.a.public).unwrap().direction_key(&binding(&p, "s", 3, true));
            prop_assert_eq!(back.open(&sealed, share.len()).unwrap(), share.clone());
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(back.open(&sealed, share.len()), Err(SealError::OpenFailed));
        }
    }
}
