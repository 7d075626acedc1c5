//! Binary frames: the compact encoding of the three bulk messages (`shares`, `delivery`,
//! `partial_sum`), sent as WebSocket binary messages. Control messages stay JSON
//! ([`crate::message`]).
//!
//! Every field has a fixed size and every integer is little-endian. A frame starts with an
//! 8-byte header, then the kind's fixed fields, then its entries:
//!
//! ```text
//! header       "CO" | version u8 | kind u8 | reserved u32 = 0
//! shares      (kind 1)  header | round u64 | count u32 | sealed_len u32
//!                       | count × (to u32 | sealed [sealed_len])
//! delivery    (kind 2)  header | round u64 | contributors u32 | count u32 | sealed_len u32
//!                       | contributors × u32 | count × (from u32 | sealed [sealed_len])
//! partial_sum (kind 3)  header | round u64 | len u32 | len × element u64 (< 2^61 − 1)
//! result      (kind 4)  header | round u64 | json_len u32 | count u32 | len u32
//!                       | json [json_len] | count × (from u32 | len × element u64)
//! ```
//!
//! The `result` frame carries the round's result as JSON (at most [`MAX_RESULT_JSON`] bytes:
//! the statistics, contributor set and safety code) followed by every partial sum used, in
//! binary: the one message whose size grows with n × vector length for every recipient.
//!
//! Decoding checks the header, the kind, every count against [`MAX_ENTRIES`] and
//! `sealed_len` against [`MAX_SEALED_LEN`] before it computes the expected total length, and
//! refuses a frame whose length is not exactly that. The sealed shares of a frame stay in one
//! buffer ([`ShareList`]): no allocation per share.

use alloc::vec::Vec;

use crate::field::Fe;

/// The two bytes every binary frame starts with.
pub const MAGIC: [u8; 2] = *b"CO";

/// Length of the common header (magic, version, kind, reserved).
pub const HEADER_LEN: usize = 8;

/// Most entries (shares, contributors or elements) a frame may carry: the largest cohort.
pub const MAX_ENTRIES: u32 = crate::study::MAX_COHORT;

/// Largest sealed share a frame may carry: a Shamir share of the longest proven vector
/// ([`MAX_SHARE_ELEMENTS`] elements of 8 bytes), two 16-byte check seeds and the AEAD tag. (An
/// additive share is a 32- or 64-byte seed payload; a proof correction is one full vector.)
pub const MAX_SEALED_LEN: u32 = (MAX_SHARE_ELEMENTS * 8 + 32 + crate::envelope::TAG_LEN) as u32;

/// Most field elements one share may carry: the statistics vector, the witness and the proof.
pub const MAX_SHARE_ELEMENTS: usize = 32 * 1024;

/// Largest item of a proof frame (a `verify` or `checks` entry is 32 bytes, a verdict tag 8, a
/// `verdicts` entry 1).
pub const MAX_PROOF_ITEM: u32 = 64;

/// Largest JSON part of a `result` frame. A questionnaire's result costs at most about 320 bytes
/// of JSON per two vector entries (an option × number mean with 64-byte ids and label), and at
/// most 496 pairs of about 310 bytes: under 0.8 MB for the longest vector. With the partial
/// sums (at most `size × vector length` ≤ 2^18 elements) the frame stays below the 4 MiB
/// message limit.
pub const MAX_RESULT_JSON: u32 = 1024 * 1024;

/// Longest vector a frame may carry (a partial sum, or each partial sum of a result).
pub const MAX_VECTOR: u32 = crate::layout::MAX_VECTOR_LEN as u32;

/// Which bulk message a binary frame carries (its byte 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A patient's sealed shares, one per other roster member.
    Shares = 1,
    /// The shares delivered to one patient, with the contributor set.
    Delivery = 2,
    /// A patient's partial sum.
    PartialSum = 3,
    /// A round's result with every partial sum used.
    Result = 4,
    /// A patient's sealed verifier shares, each for the checker of one dealer's proof.
    Verify = 5,
    /// The verifier shares of one dealer's proof, delivered to its checker.
    Checks = 6,
    /// A checker's verdict on one dealer's proof, with one sealed copy per other member.
    Verdict = 7,
    /// The sealed verdicts addressed to one patient.
    Verdicts = 8,
}

/// Why a binary frame was refused. Never carries a byte of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than the header and fixed fields of its kind.
    #[error("binary frame is shorter than its fixed fields")]
    Short,
    /// Does not start with the magic bytes `CO`.
    #[error("binary frame does not start with the cohort magic")]
    BadMagic,
    /// The kind byte names no binary message, or one this side does not accept.
    #[error("binary frame of an unknown or unexpected kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The reserved header bytes are not zero.
    #[error("binary frame has non-zero reserved bytes")]
    Reserved,
    /// A count or a sealed length is over the frame limits.
    #[error("binary frame declares more entries or longer shares than allowed")]
    OverLimit,
    /// The length is not exactly what the fixed fields declare.
    #[error("binary frame of {len} bytes, its fields declare {declared}")]
    Length {
        /// The frame's length.
        len: usize,
        /// The length its counts declare.
        declared: usize,
    },
    /// A field element is not below the field's modulus.
    #[error("binary frame holds a field element out of range")]
    BadElement,
    /// The round in a `result` frame's header differs from the one in its JSON part.
    #[error("binary frame's round differs from its JSON part's")]
    RoundMismatch,
}

/// Sealed shares of one round, all of one length and each tagged with a roster index, in one
/// contiguous buffer of `count × (4 + sealed_len)` bytes, exactly as in a frame. `Debug` shows
/// the count and the length only.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareList {
    sealed_len: usize,
    bytes: Vec<u8>,
}

impl core::fmt::Debug for ShareList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ShareList({} × {} bytes)", self.len(), self.sealed_len)
    }
}

impl ShareList {
    /// An empty list of sealed shares of `sealed_len` bytes, with room for `count`.
    pub fn with_capacity(sealed_len: usize, count: usize) -> ShareList {
        ShareList {
            sealed_len,
            bytes: Vec::with_capacity(count * (4 + sealed_len)),
        }
    }

    /// Appends one sealed share tagged with `index`. Returns `false` (and appends nothing) if
    /// `sealed` is not `sealed_len` bytes long.
    pub fn push(&mut self, index: u32, sealed: &[u8]) -> bool {
        if sealed.len() != self.sealed_len {
            return false;
        }
        self.bytes.extend_from_slice(&index.to_le_bytes());
        self.bytes.extend_from_slice(sealed);
        true
    }

    /// Length of each sealed share in bytes.
    pub fn sealed_len(&self) -> usize {
        self.sealed_len
    }

    /// Number of shares.
    pub fn len(&self) -> usize {
        self.bytes.len() / (4 + self.sealed_len)
    }

    /// Whether the list holds no share.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `i`-th entry: its roster index and its sealed bytes. Panics if `i ≥ len()`.
    pub fn get(&self, i: usize) -> (u32, &[u8]) {
        let stride = 4 + self.sealed_len;
        entry(&self.bytes[i * stride..(i + 1) * stride])
    }

    /// The entries in order: roster index and sealed bytes.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u32, &[u8])> + '_ {
        self.bytes.chunks_exact(4 + self.sealed_len).map(entry)
    }

    /// The entries as they appear in a frame.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn entry(e: &[u8]) -> (u32, &[u8]) {
    let (i, s) = e.split_at(4);
    (u32::from_le_bytes([i[0], i[1], i[2], i[3]]), s)
}

/// A decoded bulk message, borrowed from nothing: the shares are copied once, into one
/// [`ShareList`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// `shares`: round and the sealed shares tagged with their recipients.
    Shares {
        /// Round id.
        round: u64,
        /// The sealed shares, tagged with the recipient's roster index.
        shares: ShareList,
        /// The optional trailing section: sealed proof corrections (empty without proofs).
        extra: ShareList,
    },
    /// `delivery`: round, contributor set and the sealed shares tagged with their senders.
    Delivery {
        /// Round id.
        round: u64,
        /// Contributor set as sent (the patient checks it).
        contributors: Vec<u32>,
        /// The sealed shares, tagged with the sender's roster index.
        shares: ShareList,
        /// The optional trailing section: sealed proof corrections (empty without proofs).
        extra: ShareList,
    },
    /// `verify`, `checks`, `verdict` or `verdicts` (the proof messages): one list of sealed
    /// items and two header words whose meaning depends on the kind.
    Proof {
        /// Which of the four kinds.
        kind: FrameKind,
        /// Round id.
        round: u64,
        /// The dealer whose proof is concerned (`checks`, `verdict`), else 0.
        dealer: u32,
        /// The verdict word (`verdict`), else 0.
        word: u32,
        /// The sealed items, each tagged with a roster index.
        items: ShareList,
    },
    /// `partial_sum`: round and the sum vector.
    PartialSum {
        /// Round id.
        round: u64,
        /// The partial sum.
        sum: Vec<Fe>,
    },
    /// `result`: round, the JSON part and the partial sums, each tagged with its sender.
    Result {
        /// Round id.
        round: u64,
        /// The result's JSON (checked to be at most [`MAX_RESULT_JSON`] bytes, not parsed).
        json: Vec<u8>,
        /// The partial sums used, tagged with the sender's roster index.
        partials: Vec<(u32, Vec<Fe>)>,
    },
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: FrameKind, round: u64, capacity: usize) -> Writer {
        let mut b = Vec::with_capacity(capacity);
        b.extend_from_slice(&MAGIC);
        b.push(crate::message::PROTOCOL_VERSION as u8);
        b.push(kind as u8);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&round.to_le_bytes());
        Writer(b)
    }

    fn u32(&mut self, v: usize) {
        let v = u32::try_from(v).expect("frame counts fit u32");
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

impl Writer {
    /// Appends the optional trailing section: nothing if `extra` is empty, else
    /// `count u32 | sealed_len u32 | count × (index u32 | sealed)`.
    fn extra(&mut self, extra: &ShareList) {
        if !extra.is_empty() {
            self.u32(extra.len());
            self.u32(extra.sealed_len());
            self.0.extend_from_slice(extra.as_bytes());
        }
    }
}

/// Encodes a `shares` frame (with its trailing proof-correction section if `extra` is not
/// empty).
pub fn encode_shares(round: u64, shares: &ShareList, extra: &ShareList) -> Vec<u8> {
    let cap = 32 + shares.as_bytes().len() + extra.as_bytes().len();
    let mut w = Writer::new(FrameKind::Shares, round, cap);
    w.u32(shares.len());
    w.u32(shares.sealed_len());
    w.0.extend_from_slice(shares.as_bytes());
    w.extra(extra);
    w.0
}

/// Encodes a `delivery` frame (with its trailing proof-correction section if `extra` is not
/// empty).
pub fn encode_delivery(
    round: u64,
    contributors: &[u32],
    shares: &ShareList,
    extra: &ShareList,
) -> Vec<u8> {
    let cap = 36 + contributors.len() * 4 + shares.as_bytes().len() + extra.as_bytes().len();
    let mut w = Writer::new(FrameKind::Delivery, round, cap);
    w.u32(contributors.len());
    w.u32(shares.len());
    w.u32(shares.sealed_len());
    for c in contributors {
        w.0.extend_from_slice(&c.to_le_bytes());
    }
    w.0.extend_from_slice(shares.as_bytes());
    w.extra(extra);
    w.0
}

/// Encodes one of the four proof frames (`verify`, `checks`, `verdict`, `verdicts`):
/// `header | round u64 | dealer u32 | word u32 | count u32 | item_len u32 | count × (index
/// u32 | item)`.
pub fn encode_proof(
    kind: FrameKind,
    round: u64,
    dealer: u32,
    word: u32,
    items: &ShareList,
) -> Vec<u8> {
    debug_assert!(matches!(
        kind,
        FrameKind::Verify | FrameKind::Checks | FrameKind::Verdict | FrameKind::Verdicts
    ));
    let mut w = Writer::new(kind, round, 32 + items.as_bytes().len());
    w.u32(dealer as usize);
    w.u32(word as usize);
    w.u32(items.len());
    w.u32(items.sealed_len());
    w.0.extend_from_slice(items.as_bytes());
    w.0
}

/// Encodes a `partial_sum` frame.
pub fn encode_partial_sum(round: u64, sum: &[Fe]) -> Vec<u8> {
    let mut w = Writer::new(FrameKind::PartialSum, round, 20 + sum.len() * 8);
    w.u32(sum.len());
    for e in sum {
        w.0.extend_from_slice(&e.value().to_le_bytes());
    }
    w.0
}

/// Encodes a `result` frame: the result's JSON and its partial sums (all of length `len`).
pub fn encode_result(round: u64, json: &[u8], len: usize, partials: &[(u32, &[Fe])]) -> Vec<u8> {
    let cap = 28 + json.len() + partials.len() * (4 + len * 8);
    let mut w = Writer::new(FrameKind::Result, round, cap);
    w.u32(json.len());
    w.u32(partials.len());
    w.u32(len);
    w.0.extend_from_slice(json);
    for (from, sum) in partials {
        debug_assert_eq!(sum.len(), len);
        w.0.extend_from_slice(&from.to_le_bytes());
        for e in *sum {
            w.0.extend_from_slice(&e.value().to_le_bytes());
        }
    }
    w.0
}

/// Reads the fixed fields of a frame in order.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, FrameError> {
        let s = self.b.get(self.at..self.at + 4).ok_or(FrameError::Short)?;
        self.at += 4;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Ok(lo | hi << 32)
    }

    fn count(&mut self) -> Result<usize, FrameError> {
        let c = self.u32()?;
        if c > MAX_ENTRIES {
            return Err(FrameError::OverLimit);
        }
        Ok(c as usize)
    }

    fn sealed_len(&mut self) -> Result<usize, FrameError> {
        let l = self.u32()?;
        if l > MAX_SEALED_LEN {
            return Err(FrameError::OverLimit);
        }
        Ok(l as usize)
    }

    /// Reads the optional trailing section: empty if the frame ends here, else exactly one
    /// section that ends the frame.
    fn extra(&mut self) -> Result<ShareList, FrameError> {
        if self.at == self.b.len() {
            return Ok(ShareList::with_capacity(0, 0));
        }
        let count = self.count()?;
        let sealed_len = self.sealed_len()?;
        self.expect_rest(count * (4 + sealed_len))?;
        Ok(ShareList {
            sealed_len,
            bytes: self.b[self.at..].to_vec(),
        })
    }

    /// Checks that at least `len` bytes follow.
    fn expect_at_least(&self, len: usize) -> Result<(), FrameError> {
        let declared = self.at + len;
        if self.b.len() < declared {
            return Err(FrameError::Length {
                len: self.b.len(),
                declared,
            });
        }
        Ok(())
    }

    /// Checks that exactly `rest` bytes follow.
    fn expect_rest(&self, rest: usize) -> Result<(), FrameError> {
        let declared = self.at + rest;
        if self.b.len() != declared {
            return Err(FrameError::Length {
                len: self.b.len(),
                declared,
            });
        }
        Ok(())
    }
}

/// Reads the version byte of a frame that starts with the magic, if it does.
pub fn version(frame: &[u8]) -> Option<u8> {
    match frame {
        [a, b, v, ..] if [*a, *b] == MAGIC => Some(*v),
        _ => None,
    }
}

/// Decodes one binary frame. The version byte is checked by the caller
/// ([`crate::message`]); everything else here.
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    if frame.len() < HEADER_LEN {
        return Err(if frame.len() >= 2 && frame[..2] != MAGIC {
            FrameError::BadMagic
        } else {
            FrameError::Short
        });
    }
    if frame[..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if frame[4..8] != [0; 4] {
        return Err(FrameError::Reserved);
    }
    let kind = frame[3];
    let mut r = Reader {
        b: frame,
        at: HEADER_LEN,
    };
    match kind {
        k if k == FrameKind::Shares as u8 => {
            let round = r.u64()?;
            let count = r.count()?;
            let sealed_len = r.sealed_len()?;
            let main = count * (4 + sealed_len);
            r.expect_at_least(main)?;
            let shares = ShareList {
                sealed_len,
                bytes: frame[r.at..r.at + main].to_vec(),
            };
            r.at += main;
            let extra = r.extra()?;
            Ok(Decoded::Shares {
                round,
                shares,
                extra,
            })
        }
        k if k == FrameKind::Delivery as u8 => {
            let round = r.u64()?;
            let nc = r.count()?;
            let count = r.count()?;
            let sealed_len = r.sealed_len()?;
            let main = count * (4 + sealed_len);
            r.expect_at_least(nc * 4 + main)?;
            let mut contributors = Vec::with_capacity(nc);
            for _ in 0..nc {
                contributors.push(r.u32()?);
            }
            let shares = ShareList {
                sealed_len,
                bytes: frame[r.at..r.at + main].to_vec(),
            };
            r.at += main;
            let extra = r.extra()?;
            Ok(Decoded::Delivery {
                round,
                contributors,
                shares,
                extra,
            })
        }
        k if k == FrameKind::PartialSum as u8 => {
            let round = r.u64()?;
            let len = r.count()?;
            r.expect_rest(len * 8)?;
            let mut sum = Vec::with_capacity(len);
            for _ in 0..len {
                sum.push(Fe::from_canonical(r.u64()?).ok_or(FrameError::BadElement)?);
            }
            Ok(Decoded::PartialSum { round, sum })
        }
        k if k == FrameKind::Result as u8 => {
            let round = r.u64()?;
            let json_len = r.u32()?;
            let count = r.count()?;
            let len = r.u32()?;
            if json_len > MAX_RESULT_JSON || len > MAX_VECTOR {
                return Err(FrameError::OverLimit);
            }
            let (json_len, len) = (json_len as usize, len as usize);
            r.expect_rest(json_len + count * (4 + len * 8))?;
            let json = frame[r.at..r.at + json_len].to_vec();
            r.at += json_len;
            let mut partials = Vec::with_capacity(count);
            for _ in 0..count {
                let from = r.u32()?;
                let mut sum = Vec::with_capacity(len);
                for _ in 0..len {
                    sum.push(Fe::from_canonical(r.u64()?).ok_or(FrameError::BadElement)?);
                }
                partials.push((from, sum));
            }
            Ok(Decoded::Result {
                round,
                json,
                partials,
            })
        }
        k @ 5..=8 => {
            let kind = match k {
                5 => FrameKind::Verify,
                6 => FrameKind::Checks,
                7 => FrameKind::Verdict,
                _ => FrameKind::Verdicts,
            };
            let round = r.u64()?;
            let dealer = r.u32()?;
            let word = r.u32()?;
            let count = r.count()?;
            let item_len = r.u32()?;
            if item_len > MAX_PROOF_ITEM {
                return Err(FrameError::OverLimit);
            }
            let item_len = item_len as usize;
            r.expect_rest(count * (4 + item_len))?;
            Ok(Decoded::Proof {
                kind,
                round,
                dealer,
                word,
                items: ShareList {
                    sealed_len: item_len,
                    bytes: frame[r.at..].to_vec(),
                },
            })
        }
        kind => Err(FrameError::UnknownKind { kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn list(sealed_len: usize, entries: &[(u32, u8)]) -> ShareList {
        let mut l = ShareList::with_capacity(sealed_len, entries.len());
        for &(i, b) in entries {
            assert!(l.push(i, &vec![b; sealed_len]));
        }
        l
    }

    #[test]
    fn round_trips_each_kind() {
        let shares = list(48, &[(2, 0xaa), (3, 0xbb)]);
        let f = encode_shares(7, &shares, &ShareList::with_capacity(0, 0));
        assert_eq!(f.len(), 24 + 2 * 52);
        assert_eq!(&f[..4], b"CO\x03\x01");
        assert_eq!(
            decode(&f),
            Ok(Decoded::Shares {
                round: 7,
                shares: shares.clone(),
                extra: ShareList::with_capacity(0, 0),
            })
        );
        let f = encode_delivery(7, &[1, 2, 3], &shares, &ShareList::with_capacity(0, 0));
        assert_eq!(
            decode(&f),
            Ok(Decoded::Delivery {
                round: 7,
                contributors: vec![1, 2, 3],
                shares,
                extra: ShareList::with_capacity(0, 0),
            })
        );
        let sum = vec![Fe::new(0), Fe::new(5), Fe::new(crate::field::MODULUS - 1)];
        let f = encode_partial_sum(u64::MAX, &sum);
        assert_eq!(
            decode(&f),
            Ok(Decoded::PartialSum {
                round: u64::MAX,
                sum
            })
        );
    }

    #[test]
    fn result_frames_round_trip_and_refuse_over_limits() {
        let a = vec![Fe::new(1), Fe::new(2)];
        let b = vec![Fe::new(3), Fe::new(crate::field::MODULUS - 1)];
        let f = encode_result(9, b"{\"x\":1}", 2, &[(1, &a), (3, &b)]);
        assert_eq!(&f[..4], b"CO\x03\x04");
        assert_eq!(f.len(), 28 + 7 + 2 * (4 + 16));
        assert_eq!(
            decode(&f),
            Ok(Decoded::Result {
                round: 9,
                json: b"{\"x\":1}".to_vec(),
                partials: vec![(1, a.clone()), (3, b.clone())],
            })
        );
        let mut bad = f.clone();
        bad[16..20].copy_from_slice(&(MAX_RESULT_JSON + 1).to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::OverLimit));
        let mut bad = f.clone();
        bad[24..28].copy_from_slice(&(MAX_VECTOR + 1).to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::OverLimit));
        let mut bad = f.clone();
        bad.pop();
        assert!(matches!(decode(&bad), Err(FrameError::Length { .. })));
        let mut bad = f.clone();
        let last = bad.len() - 8;
        bad[last..].copy_from_slice(&crate::field::MODULUS.to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::BadElement));
    }

    #[test]
    fn share_list_is_one_buffer_with_fixed_entries() {
        let mut l = list(3, &[(9, 1), (4, 2)]);
        assert!(!l.push(5, &[0; 4]), "wrong length refused");
        assert_eq!(l.len(), 2);
        assert_eq!(l.get(1), (4, &[2u8, 2, 2][..]));
        let all: Vec<(u32, &[u8])> = l.iter().collect();
        assert_eq!(all, vec![(9, &[1u8, 1, 1][..]), (4, &[2u8, 2, 2][..])]);
        assert_eq!(l.as_bytes(), &[9, 0, 0, 0, 1, 1, 1, 4, 0, 0, 0, 2, 2, 2]);
        assert_eq!(format!("{l:?}"), "ShareList(2 × 3 bytes)");
        assert!(ShareList::with_capacity(3, 0).is_empty());
    }

    #[test]
    fn refuses_malformed_frames() {
        let good = encode_shares(1, &list(20, &[(2, 1)]), &ShareList::with_capacity(0, 0));
        assert_eq!(decode(&good[..5]), Err(FrameError::Short));
        assert_eq!(decode(b"{\"type\""), Err(FrameError::BadMagic));
        let mut bad = good.clone();
        bad[3] = 9;
        assert_eq!(decode(&bad), Err(FrameError::UnknownKind { kind: 9 }));
        let mut bad = good.clone();
        bad[5] = 1;
        assert_eq!(decode(&bad), Err(FrameError::Reserved));
        // Bytes after the entries must be exactly one trailing section.
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(decode(&bad), Err(FrameError::Short));
        let with_extra = encode_shares(1, &list(20, &[(2, 1)]), &list(30, &[(2, 2)]));
        let mut bad = with_extra.clone();
        bad.push(0);
        assert_eq!(
            decode(&bad),
            Err(FrameError::Length {
                len: with_extra.len() + 1,
                declared: with_extra.len()
            })
        );
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(FrameError::Length { .. })
        ));
        // Counts over the limit are refused before any length arithmetic.
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::OverLimit));
        let mut bad = good.clone();
        bad[20..24].copy_from_slice(&(MAX_SEALED_LEN + 1).to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::OverLimit));
        let mut ps = encode_partial_sum(1, &[Fe::new(1)]);
        ps[20..28].copy_from_slice(&crate::field::MODULUS.to_le_bytes());
        assert_eq!(decode(&ps), Err(FrameError::BadElement));
        assert_eq!(version(&good), Some(3));
        assert_eq!(version(b"{}"), None);
    }
}
