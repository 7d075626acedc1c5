//! Validity proofs in a round: how a study's questionnaire is proven, how the proven vector is
//! dealt, and how the share-holders derive their query and seal what they send.
//!
//! The proof system is the FLP of [`crate::flp`]; this module is the protocol's use of it. See
//! docs/PROTOCOL.md, "Validity proofs", for the round with proofs, and docs/SECURITY.md for what
//! it guarantees and against whom.
//!
//! # The proven share
//!
//! A patient's **proven vector** is `input ‖ proof`: the statistics vector (length `L`, what is
//! aggregated), its witness (bit decompositions) and the FLP proof, `S` elements in all. Every
//! other keyed member receives a share of it and checks it; the dealer keeps no share of the
//! proven vector, so it never computes a verifier share of its own proof.
//!
//! * **Additive rounds.** For every other keyed member `j` the dealer draws a 32-byte seed and
//!   expands it (ChaCha20, as in [`crate::sharing::expand_seed`]) into `L + S` elements: a mask
//!   `Z_j` (the first `L`) and a share `Y_j` of the proven vector (the next `S`). The **leader**
//!   (the next keyed member after the dealer, cyclically; also the dealer's checker) receives in
//!   addition the correction `C = proven − Σ_j Y_j`, so the `Y`s (with `C`) add up to the proven
//!   vector. Member `j`'s share of the dealer's statistics for its partial sum is
//!   `Y_j[..L] + Z_j` (`+ C[..L]` at the leader), and the dealer's own is `−Σ_j Z_j`: an n-of-n
//!   additive sharing of the statistics with every share uniformly random, as without proofs.
//! * **Shamir rounds.** The proven vector is shared t-of-n as a whole; the dealer keeps its own
//!   point's statistics part for its partial sum. Each verifier checks its point; the checker
//!   interpolates the verifier shares at 0 and, with more than t of them, checks they lie on
//!   one polynomial of degree t − 1 (so the checked input is the one any t points give).
//!
//! Every payload also carries two 16-byte **check seeds** of the sender: slot 1 for the keyed
//! member one place before it (cyclically), slot 2 for the one two places before it; the
//! payload addressed to that member carries random bytes in that slot instead. A dealer's proof
//! is checked by the next keyed member after it, with its slot-1 seed, or, if that one did not
//! contribute, by the one after that, with its slot-2 seed ([`checker_of`]). The seed gives the
//! joint randomness and the query point of that one proof. It is drawn before any share is
//! seen and reaches only the dealer's other share-holders, in payloads the relay cannot open;
//! so neither the dealer nor the relay knows it while the dealer's shares can still change.
//!
//! # Verifier entries and verdict tags
//!
//! A verifier's share of a proof travels to the checker as a `verify` entry: folded to three
//! elements ([`Folded`]), tagged with `α · folded` (one element; α from the check seed) and
//! masked with a pad of the verifier → checker direction key ([`verify_pad`]). In additive
//! rounds the hospital adds the entries of one proof up ([`CheckSums`]) and the checker gets
//! one sum; the pads hide every entry and the sum from the hospital, and the tag catches a sum
//! it changed ([`decide_sum`]). A checker's verdict reaches every member as an 8-byte
//! [`verdict_tag`] under their pairwise key; the hospital forwards the verdicts in clear with the
//! sum of each member's tags ([`VerdictTags`]), which the member recomputes.

use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::{Zeroize, Zeroizing};

use crate::envelope::DirectionKey;
use crate::field::Fe;
use crate::flp::{self, Circuit, QueryPoint, QuestionShape, ShareRole, VerifierShare};
use crate::question::QuestionKind;
use crate::sharing::{SEED_LEN, Scheme, expand_seed};
use crate::study::StudyParams;

/// Length of a check seed: 128 bits, drawn by its owner and never seen by the dealer it
/// checks nor by the relay, so it is guessed at best (see [`ProofSetup::check_rand`]).
pub const CHECK_SEED_LEN: usize = 16;

/// Bytes of check seeds at the end of every share payload with proofs (slots 1 and 2).
pub const CHECK_SEEDS_LEN: usize = 2 * CHECK_SEED_LEN;

/// Length of one `verify` entry: the folded verifier share (3 elements) and its tag, each
/// masked with a pad only the verifier and the checker can compute (4 elements of 8 bytes).
pub const VERIFY_ENTRY_LEN: usize = ENTRY_ELEMENTS * 8;

/// Elements of a `verify` entry.
pub const ENTRY_ELEMENTS: usize = 4;

/// Length of a verdict tag: a checker's MAC, for one member, of its verdict on one proof.
pub const VERDICT_TAG_LEN: usize = 8;

/// The byte of a `verdicts` entry for a proof whose checker sent no verdict (it left, or
/// nobody could check it).
pub const NO_VERDICT: u8 = 0xFF;

/// Key-derivation label of the additive leader's correction.
pub const CORRECTION_LABEL: &[u8] = b"cohort/v2 correction";
/// Key-derivation label of the pads of `verify` entries (followed by the dealer's index, u32
/// little endian).
pub const VERIFY_PAD_LABEL: &[u8] = b"cohort/v2 verify pad";
/// Key-derivation label of verdict tags (followed by the dealer's index, u32 little endian,
/// and the verdict's byte).
pub const VERDICT_TAG_LABEL: &[u8] = b"cohort/v2 verdict tag";
/// Domain separation of the query randomness drawn from a check seed.
const CHECK_SEED_LABEL: &[u8] = b"cohort/v2 check seed";

/// A checker's verdict on one dealer's proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The proof was checked and holds: the dealer's vector is valid.
    Valid,
    /// The proof was checked and fails: the dealer's vector is invalid (or its proof is).
    InvalidProof,
    /// The proof could not be checked: verifier shares missing, unreadable or, in a Shamir
    /// round, not on one polynomial.
    NotVerified,
}

impl Verdict {
    /// The verdict's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::InvalidProof => 1,
            Verdict::NotVerified => 2,
        }
    }

    /// The verdict of a wire byte.
    pub fn from_code(b: u8) -> Option<Verdict> {
        match b {
            0 => Some(Verdict::Valid),
            1 => Some(Verdict::InvalidProof),
            2 => Some(Verdict::NotVerified),
            _ => None,
        }
    }

    /// The verdict as a machine-readable string (`valid`, `invalid_proof`, `not_verified`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::InvalidProof => "invalid_proof",
            Verdict::NotVerified => "not_verified",
        }
    }
}

/// One member left out of a round's result because of its proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// The member's roster index.
    pub index: u32,
    /// Why: [`Verdict::InvalidProof`] or [`Verdict::NotVerified`].
    pub reason: Verdict,
}

/// A checker's tag, for member `to`, of its verdict on `dealer`'s proof: the first 8 bytes
/// of HKDF-Expand under the direction key checker → `to` (info `cohort/v2 verdict tag ‖
/// dealer ‖ verdict ‖ binding`), as a little-endian integer. The hospital adds up (mod 2^64)
/// every tag addressed to one member; the member recomputes the sum from the verdicts it is
/// told, so a verdict changed by the relay changes an unpredictable term (see
/// docs/SECURITY.md, "Validity proofs").
pub fn verdict_tag(key: &DirectionKey, dealer: u32, verdict: Verdict) -> u64 {
    let mut info = [0u8; 5];
    info[..4].copy_from_slice(&dealer.to_le_bytes());
    info[4] = verdict.code();
    let mut out = [0u8; VERDICT_TAG_LEN];
    key.expand_into(VERDICT_TAG_LABEL, &info, &mut out);
    u64::from_le_bytes(out)
}

/// The pad of one `verify` entry: four elements from HKDF-Expand under the direction key
/// verifier → checker (info `cohort/v2 verify pad ‖ dealer ‖ binding`) expanded with
/// ChaCha20. Only the verifier and the checker can compute it.
pub fn verify_pad(key: &DirectionKey, dealer: u32) -> [Fe; ENTRY_ELEMENTS] {
    let mut seed = Zeroizing::new([0u8; 32]);
    key.expand_into(VERIFY_PAD_LABEL, &dealer.to_le_bytes(), seed.as_mut());
    let mut prg = ChaCha20Rng::from_seed(*seed);
    core::array::from_fn(|_| Fe::random(&mut prg))
}

/// Encodes a `verify` entry: `folded ‖ tag` plus `pad`, element-wise.
pub fn entry_bytes(folded: &Folded, tag: Fe, pad: &[Fe; ENTRY_ELEMENTS]) -> [u8; VERIFY_ENTRY_LEN] {
    let mut out = [0u8; VERIFY_ENTRY_LEN];
    let plain = [folded.0[0], folded.0[1], folded.0[2], tag];
    for ((chunk, x), p) in out.chunks_exact_mut(8).zip(plain).zip(pad) {
        chunk.copy_from_slice(&(x + *p).to_le_bytes());
    }
    out
}

/// Reads a `verify` entry (or a sum of them); `None` if its length is wrong or an element is
/// not canonical.
pub fn read_entry(bytes: &[u8]) -> Option<[Fe; ENTRY_ELEMENTS]> {
    if bytes.len() != VERIFY_ENTRY_LEN {
        return None;
    }
    let mut out = [Fe::ZERO; ENTRY_ELEMENTS];
    for (x, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *x = Fe::from_le_bytes(c.try_into().expect("chunk of 8"))?;
    }
    Some(out)
}

/// A verifier share folded to three elements: `(f_0(r), f_1(r), p(r) − λ·out)`. Linear in
/// the share, so shares of it add up (or interpolate) like the verifier shares themselves.
/// `Debug` is opaque.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Folded(pub [Fe; 3]);

impl core::fmt::Debug for Folded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Folded(..)")
    }
}

impl Folded {
    /// Folds a verifier share with the proof's `λ`.
    pub fn of(v: &VerifierShare, rand: &CheckRand) -> Folded {
        let [y0, y1, yp, out] = v.0;
        Folded([y0, y1, yp - rand.fold * out])
    }

    /// The linear tag `α · folded` under the proof's MAC key `α`.
    pub fn tag(&self, rand: &CheckRand) -> Fe {
        self.0
            .iter()
            .zip(&rand.mac)
            .fold(Fe::ZERO, |acc, (x, a)| acc + *x * *a)
    }

    /// Whether the combined (whole) folded verifier share accepts: `y_0 · y_1 = y_2`.
    pub fn accepts(&self) -> bool {
        self.0[0] * self.0[1] == self.0[2]
    }
}

/// Running sums of `verify` entries by dealer: how the hospital combines the verifier shares
/// of one proof in an additive round, so that each checker gets one entry (the sum and how
/// many were added) instead of one per verifier. Entries are masked and tagged (see
/// [`entry_bytes`]): the hospital learns nothing from them and cannot change a sum unnoticed.
#[derive(Clone)]
pub struct CheckSums {
    sums: Vec<[Fe; ENTRY_ELEMENTS]>,
    counts: Vec<u32>,
}

impl CheckSums {
    /// Empty sums for a roster of `n`.
    pub fn new(n: usize) -> CheckSums {
        CheckSums {
            sums: alloc::vec![[Fe::ZERO; ENTRY_ELEMENTS]; n],
            counts: alloc::vec![0; n],
        }
    }

    /// Adds every entry of one member's `verify` list (tagged with the dealer). Adds nothing
    /// and returns `false` if an entry is malformed or names a dealer outside the roster.
    pub fn add(&mut self, list: &crate::frame::ShareList) -> bool {
        let n = self.sums.len();
        let mut read = Vec::with_capacity(list.len());
        for (dealer, bytes) in list.iter() {
            match read_entry(bytes) {
                Some(e) if dealer >= 1 && dealer as usize <= n => read.push((dealer, e)),
                _ => return false,
            }
        }
        for (dealer, e) in read {
            let at = dealer as usize - 1;
            for (s, x) in self.sums[at].iter_mut().zip(e) {
                *s += x;
            }
            self.counts[at] += 1;
        }
        true
    }

    /// The sum for `dealer`'s proof, as one `checks` entry tagged with the number of entries
    /// added.
    pub fn entry(&self, dealer: u32) -> (u32, [u8; VERIFY_ENTRY_LEN]) {
        let at = dealer as usize - 1;
        let mut out = [0u8; VERIFY_ENTRY_LEN];
        for (chunk, x) in out.chunks_exact_mut(8).zip(self.sums[at]) {
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        (self.counts[at], out)
    }
}

/// Running sums (mod 2^64) of verdict tags by recipient: how the hospital forwards every
/// checker's verdicts to one member as one 8-byte tag (see [`verdict_tag`]).
#[derive(Clone)]
pub struct VerdictTags(Vec<u64>);

impl core::fmt::Debug for CheckSums {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let added: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        write!(f, "CheckSums({} proofs, {added} entries)", self.sums.len())
    }
}

impl core::fmt::Debug for VerdictTags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VerdictTags({} members)", self.0.len())
    }
}

impl VerdictTags {
    /// Zero sums for a roster of `n`.
    pub fn new(n: usize) -> VerdictTags {
        VerdictTags(alloc::vec![0; n])
    }

    /// Adds one checker's tags (tagged with the recipient). Adds nothing and returns `false`
    /// if a tag is malformed or names a member outside the roster.
    pub fn add(&mut self, list: &crate::frame::ShareList) -> bool {
        let n = self.0.len();
        if list.sealed_len() != VERDICT_TAG_LEN
            || list.iter().any(|(to, _)| to == 0 || to as usize > n)
        {
            return false;
        }
        for (to, bytes) in list.iter() {
            let t = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            let s = &mut self.0[to as usize - 1];
            *s = s.wrapping_add(t);
        }
        true
    }

    /// The sum of the tags addressed to `to`.
    pub fn sum(&self, to: u32) -> u64 {
        self.0[to as usize - 1]
    }
}

/// The proof system of one study: its FLP layout and circuit, and the lengths that follow.
#[derive(Clone, Debug)]
pub struct ProofSetup {
    layout: flp::Layout,
    circuit: Circuit,
}

/// The question shapes of a study, as far as the proof is concerned.
pub fn shapes(params: &StudyParams) -> Vec<QuestionShape> {
    params
        .question_list()
        .iter()
        .map(|q| match &q.kind {
            QuestionKind::Number(n) => QuestionShape::Number {
                optional: q.optional,
                range: n.range_scaled(),
                buckets: n.buckets,
            },
            QuestionKind::Choice(c) => QuestionShape::Choice {
                optional: q.optional,
                options: c.options.len() as u8,
            },
        })
        .collect()
}

impl ProofSetup {
    /// The proof system of a (valid) study.
    pub fn new(params: &StudyParams) -> Result<ProofSetup, flp::FlpError> {
        let layout = flp::Layout::new(&shapes(params))?;
        if layout.stats_len() != params.vector_len() {
            return Err(flp::FlpError::VectorLength);
        }
        let circuit = layout.circuit();
        Ok(ProofSetup { layout, circuit })
    }

    /// `L`: the statistics vector's length.
    pub fn stats_len(&self) -> usize {
        self.layout.stats_len()
    }

    /// The circuit's input length (statistics and witness).
    pub fn input_len(&self) -> usize {
        self.circuit.input_len()
    }

    /// `S`: the proven vector's length (input and proof).
    pub fn share_len(&self) -> usize {
        self.circuit.input_len() + self.circuit.proof_len()
    }

    /// The number of gadget calls M (the soundness error is [`flp::soundness_error`]`(M)`).
    pub fn gadget_calls(&self) -> usize {
        self.circuit.gadget_calls()
    }

    /// The validity circuit.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The FLP layout.
    pub fn layout(&self) -> &flp::Layout {
        &self.layout
    }

    /// The proven vector of a statistics vector: statistics, witness and proof (two fresh
    /// wire seeds from `rng`). Proves whatever it is given; an honest caller encodes valid
    /// answers.
    pub fn prove<R: Rng + ?Sized>(&self, stats: &[Fe], rng: &mut R) -> Vec<Fe> {
        let input = flp::witness(&self.layout, stats).expect("statistics of the study's length");
        self.prove_input(input, rng)
    }

    /// The proven vector of a whole circuit input (statistics and witness), valid or not.
    pub fn prove_input<R: Rng + ?Sized>(&self, mut input: Vec<Fe>, rng: &mut R) -> Vec<Fe> {
        let seeds = [Fe::random(rng), Fe::random(rng)];
        let proof =
            flp::prove(&self.circuit, &input, seeds).expect("input of the circuit's length");
        input.extend_from_slice(&proof);
        input
    }

    /// The query of one proof, from its checker's check seed: the joint randomness, a query
    /// point off the interpolation nodes, the folding factor `λ` and the entries' MAC key `α`,
    /// drawn from ChaCha20 keyed with SHA-256(`cohort/v2 check seed ‖ seed`).
    pub fn check_rand(&self, seed: &[u8; CHECK_SEED_LEN]) -> CheckRand {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(CHECK_SEED_LABEL);
        h.update(seed);
        let mut key: [u8; 32] = h.finalize().into();
        let mut prg = ChaCha20Rng::from_seed(key);
        key.zeroize();
        let joint: Vec<Fe> = (0..self.circuit.joint_rand_len())
            .map(|_| Fe::random(&mut prg))
            .collect();
        let point = loop {
            if let Ok(point) = QueryPoint::new(&self.circuit, Fe::random(&mut prg)) {
                break point;
            }
        };
        let fold = Fe::random(&mut prg);
        let mac = core::array::from_fn(|_| Fe::random(&mut prg));
        CheckRand {
            joint,
            point,
            fold,
            mac,
        }
    }

    /// One verifier share of one proof: the query on this member's share of the proven vector.
    pub fn verify_share(&self, share: &[Fe], role: ShareRole, rand: &CheckRand) -> VerifierShare {
        let (input, proof) = share.split_at(self.circuit.input_len());
        flp::query_at(&self.circuit, input, proof, role, &rand.point, &rand.joint)
            .expect("shares and randomness of the circuit's lengths")
    }

    /// Plaintext length of one share payload with proofs (without the check seed's 32 bytes
    /// it also carries): a seed (additive) or the proven share (Shamir).
    pub fn payload_len(&self, scheme: Scheme) -> usize {
        match scheme {
            Scheme::Additive { .. } => SEED_LEN,
            Scheme::Shamir { .. } => self.share_len() * 8,
        }
    }
}

/// The randomness of one proof's query. `Debug` is opaque.
pub struct CheckRand {
    joint: Vec<Fe>,
    point: QueryPoint,
    /// `λ`: folds the FLP's output check into the product check.
    fold: Fe,
    /// `α`: the MAC key of `verify` entries.
    mac: [Fe; 3],
}

impl core::fmt::Debug for CheckRand {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CheckRand(..)")
    }
}

/// One dealer's proven shares, ready to seal.
pub struct ProvenDeal {
    /// The dealer's own share of its statistics, for its partial sum.
    pub own: Vec<Fe>,
    /// `(recipient, payload)` for every other member given, in that order (seed or share bytes,
    /// without the check seed).
    pub payloads: Vec<(u32, Zeroizing<Vec<u8>>)>,
    /// Additive rounds: the leader's correction (`S` elements as bytes).
    pub correction: Option<(u32, Zeroizing<Vec<u8>>)>,
}

impl core::fmt::Debug for ProvenDeal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ProvenDeal({} payloads)", self.payloads.len())
    }
}

impl Drop for ProvenDeal {
    fn drop(&mut self) {
        self.own.zeroize();
    }
}

fn to_bytes(v: &[Fe]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn from_bytes(b: &[u8]) -> Option<Vec<Fe>> {
    if !b.len().is_multiple_of(8) {
        return None;
    }
    b.chunks_exact(8)
        .map(|c| Fe::from_le_bytes(c.try_into().expect("chunk of 8")))
        .collect()
}

/// Deals `proven` (statistics ‖ witness ‖ proof, of which the first `stats_len` are the
/// statistics) as member `me` to `others` (the other keyed members, ascending). `leader` is the
/// additive leader (the next keyed member after `me`, cyclically). See the module docs.
pub fn deal<R: Rng + ?Sized>(
    scheme: Scheme,
    proven: &[Fe],
    stats_len: usize,
    me: u32,
    others: &[u32],
    leader: u32,
    rng: &mut R,
) -> ProvenDeal {
    match scheme {
        Scheme::Additive { .. } => {
            let s = proven.len();
            let mut own = alloc::vec![Fe::ZERO; stats_len];
            let mut correction = proven.to_vec();
            let mut payloads = Vec::with_capacity(others.len());
            for &j in others {
                let mut seed = [0u8; SEED_LEN];
                rng.fill_bytes(&mut seed);
                let mut e = expand_seed(&seed, stats_len + s);
                for (o, z) in own.iter_mut().zip(&e[..stats_len]) {
                    *o -= *z;
                }
                for (c, y) in correction.iter_mut().zip(&e[stats_len..]) {
                    *c -= *y;
                }
                e.zeroize();
                payloads.push((j, Zeroizing::new(seed.to_vec())));
                seed.zeroize();
            }
            let bytes = to_bytes(&correction);
            correction.zeroize();
            ProvenDeal {
                own,
                payloads,
                correction: Some((leader, bytes)),
            }
        }
        Scheme::Shamir { .. } => {
            let mut shares = scheme.split(proven, rng);
            let own = shares[me as usize - 1][..stats_len].to_vec();
            let payloads = others
                .iter()
                .map(|&j| (j, to_bytes(&shares[j as usize - 1])))
                .collect();
            for sh in &mut shares {
                sh.zeroize();
            }
            ProvenDeal {
                own,
                payloads,
                correction: None,
            }
        }
    }
}

/// What a member holds of one dealer's proven vector: its share of the statistics (for its
/// partial sum) and its share of the whole proven vector (for its verifier share). Wiped on
/// drop; `Debug` is opaque.
pub struct Held {
    /// Share of the dealer's statistics.
    pub stats: Vec<Fe>,
    /// Share of the dealer's proven vector.
    pub proven: Vec<Fe>,
}

impl core::fmt::Debug for Held {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Held(..)")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stats.zeroize();
        self.proven.zeroize();
    }
}

/// Decodes one dealer's payload (without its check seed) and, at the additive leader, the
/// dealer's correction bytes. `None` if anything is malformed.
pub fn receive(
    scheme: Scheme,
    setup: &ProofSetup,
    payload: &[u8],
    correction: Option<&[u8]>,
) -> Option<Held> {
    let (l, s) = (setup.stats_len(), setup.share_len());
    match scheme {
        Scheme::Additive { .. } => {
            let seed: &[u8; SEED_LEN] = payload.try_into().ok()?;
            let mut e = expand_seed(seed, l + s);
            let mut proven = e[l..].to_vec();
            if let Some(c) = correction {
                let c = Zeroizing::new(from_bytes(c)?);
                if c.len() != s {
                    return None;
                }
                for (y, x) in proven.iter_mut().zip(c.iter()) {
                    *y += *x;
                }
            }
            let stats = proven[..l]
                .iter()
                .zip(&e[..l])
                .map(|(y, z)| *y + *z)
                .collect();
            e.zeroize();
            Some(Held { stats, proven })
        }
        Scheme::Shamir { .. } => {
            if correction.is_some() {
                return None;
            }
            let proven = from_bytes(payload)?;
            if proven.len() != s {
                return None;
            }
            Some(Held {
                stats: proven[..l].to_vec(),
                proven,
            })
        }
    }
}

/// The keyed member `steps` places after `index` in `keyed` (ascending), cyclically. One step:
/// `index`'s **leader** in additive rounds (it receives the correction) and its first checker.
pub fn after(keyed: &[u32], index: u32, steps: usize) -> Option<u32> {
    let at = keyed.iter().position(|&k| k == index)?;
    Some(keyed[(at + steps) % keyed.len()])
}

/// The keyed member `steps` places before `index` in `keyed` (ascending), cyclically: the
/// member from which `index`'s check seed of slot `steps` is hidden.
pub fn before(keyed: &[u32], index: u32, steps: usize) -> Option<u32> {
    let at = keyed.iter().position(|&k| k == index)?;
    let n = keyed.len();
    Some(keyed[(at + n - steps % n) % n])
}

/// Which check seed a checker uses: slot 1 (hidden from the member one place before it) or
/// slot 2 (hidden from the member two places before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The checker is the next keyed member after the dealer.
    First,
    /// The next keyed member did not contribute; the checker is the one after it.
    Second,
}

/// The checker of `dealer`'s proof, given the keyed members and the contributors (both
/// ascending): the next keyed member after it if that one contributed, else the one after that
/// if it contributed; `None` if neither did (the proof is then `not_verified`). Both candidates'
/// check seeds for `dealer` are hidden from `dealer` itself (see the module docs), and the
/// choice depends only on the contributor set, which every patient sees in its delivery.
pub fn checker_of(keyed: &[u32], contributors: &[u32], dealer: u32) -> Option<(u32, Slot)> {
    let first = after(keyed, dealer, 1)?;
    if first != dealer && contributors.binary_search(&first).is_ok() {
        return Some((first, Slot::First));
    }
    let second = after(keyed, dealer, 2)?;
    if second != dealer && contributors.binary_search(&second).is_ok() {
        return Some((second, Slot::Second));
    }
    None
}

/// How many contributors whose proofs held a round needs to go on to its partial sums:
/// additive rounds `min_cohort` (they also need every keyed member's partial sum, and no
/// exclusion at all: every share of the n-of-n sharing counts); Shamir rounds max(t,
/// `min_cohort`), since their t partial sums come from the contributors. At most n.
pub fn contributors_needed(scheme: Scheme, min_cohort: u32, n: u32) -> u32 {
    match scheme {
        Scheme::Additive { .. } => min_cohort,
        Scheme::Shamir { t, .. } => t.max(min_cohort),
    }
    .min(n)
}

/// Who verifies `dealer`'s proof: every member holding a share of it that must send its entry.
/// Additive rounds: every other keyed member (the proven vector is an n-of-n sharing among
/// them, so every share counts, a member whose own shares never arrived included). Shamir
/// rounds: the other contributors (the points the partial sums will come from; see
/// [`partial_sum_senders`]).
pub fn verifiers_of(scheme: Scheme, keyed: &[u32], contributors: &[u32], dealer: u32) -> Vec<u32> {
    let holders = match scheme {
        Scheme::Additive { .. } => keyed,
        Scheme::Shamir { .. } => contributors,
    };
    holders.iter().copied().filter(|&j| j != dealer).collect()
}

/// The members whose partial sums a round with proofs may use, ascending: those whose verifier
/// shares every proof was checked with ([`verifiers_of`]). Additive rounds: every keyed member
/// (each holds a share of every contributor's vector, and all are needed). Shamir rounds: the
/// contributors as delivered (accepted or excluded), so that any t of their points give the
/// input that was checked.
pub fn partial_sum_senders(scheme: Scheme, keyed: &[u32], contributors: &[u32]) -> Vec<u32> {
    match scheme {
        Scheme::Additive { .. } => keyed.to_vec(),
        Scheme::Shamir { .. } => contributors.to_vec(),
    }
}

/// Decides on one proof of an additive round from the sum of every verifier's entry, pads
/// removed (`combined`: the folded verifier share and its tag). A tag that is not
/// `α · folded` means an entry was missing, changed or added on the way:
/// [`Verdict::NotVerified`]. Otherwise [`Verdict::Valid`] iff `y_0 · y_1 = y_2`.
pub fn decide_sum(combined: &[Fe; ENTRY_ELEMENTS], rand: &CheckRand) -> Verdict {
    let folded = Folded([combined[0], combined[1], combined[2]]);
    if folded.tag(rand) != combined[3] {
        Verdict::NotVerified
    } else if folded.accepts() {
        Verdict::Valid
    } else {
        Verdict::InvalidProof
    }
}

/// Decides on one proof of a Shamir round (threshold `t`) from the folded verifier shares of
/// `points` (index, share; each unmasked and its tag checked). There must be one from every
/// member of `verifiers` (the contributors other than the dealer, fixed by the delivery every
/// patient saw), else the proof is [`Verdict::NotVerified`]. They must all lie on one
/// polynomial of degree t − 1 (so that any t of the contributors' points give the checked
/// input, whichever the relay aggregates), else [`Verdict::InvalidProof`]; then Lagrange at 0.
pub fn decide_points(t: u32, verifiers: &[u32], points: &[(u32, Folded)]) -> Verdict {
    let used: Vec<(u32, Folded)> = points
        .iter()
        .filter(|(i, _)| verifiers.binary_search(i).is_ok())
        .copied()
        .collect();
    let t = t as usize;
    if used.len() != verifiers.len() || used.is_empty() || used.len() < t {
        return Verdict::NotVerified;
    }
    let refs: Vec<(u32, &[Fe])> = used.iter().map(|(i, f)| (*i, f.0.as_slice())).collect();
    if !crate::protocol::aggregate::on_one_polynomial(&refs, t) {
        return Verdict::InvalidProof;
    }
    let xs: Vec<u32> = used[..t].iter().map(|(i, _)| *i).collect();
    let mut acc = [Fe::ZERO; 3];
    for ((_, f), w) in used[..t].iter().zip(crate::sharing::lagrange_at_zero(&xs)) {
        for (a, x) in acc.iter_mut().zip(f.0) {
            *a += x * w;
        }
    }
    if Folded(acc).accepts() {
        Verdict::Valid
    } else {
        Verdict::InvalidProof
    }
}

/// The contributor set of the partial sums from the verdicts (by dealer; none: no verdict
/// arrived), the exclusions, and the `verdicts` list every member gets: each contributor not
/// found valid, with its verdict's byte ([`NO_VERDICT`] if none arrived), ascending.
pub fn settle(
    contributors: &[u32],
    received: &[Option<Verdict>],
) -> (Vec<u32>, Vec<Exclusion>, crate::frame::ShareList) {
    let mut accepted = Vec::with_capacity(contributors.len());
    let mut excluded = Vec::new();
    let mut listed = crate::frame::ShareList::with_capacity(1, 0);
    for &c in contributors {
        match received[c as usize - 1] {
            Some(Verdict::Valid) => accepted.push(c),
            got => {
                listed.push(c, &[got.map_or(NO_VERDICT, Verdict::code)]);
                excluded.push(Exclusion {
                    index: c,
                    reason: got.unwrap_or(Verdict::NotVerified),
                });
            }
        }
    }
    (accepted, excluded, listed)
}

/// What a forging patient does (feature `forge` or `test-util`; attack tests only).
///
/// * **Vector forgeries** ([`Forgery::ALL`]): an invalid vector, the honest one changed in one
///   way ([`Forgery::apply`]), with the witness computed from it as an honest prover would and
///   a proof of that (the best a prover without the verifiers' randomness can do). Applied to
///   the first number question (or, for [`Forgery::TwoOptions`], the first choice question).
/// * **Dealing forgeries** ([`Forgery::DEALING`]): the honest vector, honestly proven, dealt
///   wrongly ([`Forgery::tamper`]): [`Forgery::InconsistentShares`] in Shamir rounds (one
///   recipient's share off the polynomial), [`Forgery::BadCorrection`] in additive rounds (the
///   leader's correction is not `proven − Σ Y`). Each acts in its scheme only and deals
///   honestly in the other (and in rounds without proofs, which have no proven vector).
#[cfg(any(feature = "forge", feature = "test-util"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// `x` far above the question's range (1000 × R), with `x²` and the last bucket to match.
    OutOfRange,
    /// `x²` one more than `x·x`.
    BadSquare,
    /// A second histogram bucket set.
    TwoBuckets,
    /// The count entry 50 instead of 1.
    CountNotOne,
    /// Two options of a choice question set.
    TwoOptions,
    /// Shamir rounds: the share dealt to one recipient ([`Forgery::perturbed_recipient`], never
    /// a checker of the dealer's proof) has its [`Forgery::dealing_entry`] one higher, so the
    /// shares no longer lie on one polynomial of degree t − 1: t points that include that
    /// recipient's give another vector than t points that do not.
    InconsistentShares,
    /// Additive rounds: the leader's correction has its [`Forgery::dealing_entry`] one higher,
    /// so the shares add up to the honest proven vector with that statistics entry moved.
    BadCorrection,
}

#[cfg(any(feature = "forge", feature = "test-util"))]
impl Forgery {
    /// Every vector forgery (each changes the vector; every scheme), for tests.
    pub const ALL: [Forgery; 5] = [
        Forgery::OutOfRange,
        Forgery::BadSquare,
        Forgery::TwoBuckets,
        Forgery::CountNotOne,
        Forgery::TwoOptions,
    ];

    /// Every dealing forgery (the vector stays honest; each acts in one scheme), for tests.
    pub const DEALING: [Forgery; 2] = [Forgery::InconsistentShares, Forgery::BadCorrection];

    /// The forgery named `name` (`out-of-range`, `bad-square`, `two-buckets`, `count`,
    /// `two-options`; dealing: `inconsistent-shares`, `bad-correction`).
    pub fn from_name(name: &str) -> Option<Forgery> {
        Some(match name {
            "out-of-range" => Forgery::OutOfRange,
            "bad-square" => Forgery::BadSquare,
            "two-buckets" => Forgery::TwoBuckets,
            "count" => Forgery::CountNotOne,
            "two-options" => Forgery::TwoOptions,
            "inconsistent-shares" => Forgery::InconsistentShares,
            "bad-correction" => Forgery::BadCorrection,
            _ => return None,
        })
    }

    /// Whether this forgery changes the dealing ([`Forgery::DEALING`]) rather than the vector.
    pub fn is_dealing(self) -> bool {
        matches!(self, Forgery::InconsistentShares | Forgery::BadCorrection)
    }

    /// The statistics entry a dealing forgery moves: the `x` entry of the first number question
    /// of `params`, or the count entry (0) if it has none.
    pub fn dealing_entry(params: &StudyParams) -> usize {
        use crate::layout::Term;
        let Some(q) = params
            .question_list()
            .iter()
            .position(|q| matches!(q.kind, QuestionKind::Number(_)))
        else {
            return 0;
        };
        params
            .layout()
            .ok()
            .and_then(|l| l.terms().iter().position(|t| *t == Term::X { question: q }))
            .unwrap_or(0)
    }

    /// The recipient whose share [`Forgery::InconsistentShares`] moves, for dealer `me` among
    /// the keyed members `keyed` (ascending): the keyed member three places after it,
    /// cyclically, which is never one of its two possible checkers ([`checker_of`]); in a round
    /// of three, the one two places after it (its checker only if the first did not
    /// contribute). `None` if `me` is not keyed or alone.
    pub fn perturbed_recipient(keyed: &[u32], me: u32) -> Option<u32> {
        [3, 2, 1]
            .into_iter()
            .filter_map(|steps| after(keyed, me, steps))
            .find(|&j| j != me)
    }

    /// Changes an honest deal of dealer `me` (from [`deal`]) as this dealing forgery does,
    /// moving statistics entry `entry` ([`Forgery::dealing_entry`]) up by one: in the payload
    /// of [`Forgery::perturbed_recipient`] (Shamir deals, [`Forgery::InconsistentShares`]) or
    /// in the correction (additive deals, [`Forgery::BadCorrection`]). `false`, with the deal
    /// unchanged, for a vector forgery or a deal of the other scheme.
    pub fn tamper(self, deal: &mut ProvenDeal, entry: usize, keyed: &[u32], me: u32) -> bool {
        let bytes: &mut [u8] = match (self, &mut deal.correction) {
            (Forgery::BadCorrection, Some((_, c))) => c,
            (Forgery::InconsistentShares, None) => {
                let Some(j) = Forgery::perturbed_recipient(keyed, me) else {
                    return false;
                };
                match deal.payloads.iter_mut().find(|(to, _)| *to == j) {
                    Some((_, p)) => p,
                    None => return false,
                }
            }
            _ => return false,
        };
        let Some(chunk) = bytes.get_mut(entry * 8..entry * 8 + 8) else {
            return false;
        };
        let Some(x) = Fe::from_le_bytes(chunk.try_into().expect("8 bytes")) else {
            return false;
        };
        chunk.copy_from_slice(&(x + Fe::ONE).to_le_bytes());
        true
    }

    /// Changes an honest statistics vector of `params` into the forged one, recomputing the
    /// pair products from the forged entries. `false` if the study has no question this
    /// forgery applies to. A dealing forgery leaves the vector honest (and returns `true`).
    pub fn apply(self, params: &StudyParams, stats: &mut [Fe]) -> bool {
        use crate::layout::Term;
        if self.is_dealing() {
            return true;
        }
        let Ok(layout) = params.layout() else {
            return false;
        };
        let terms = layout.terms();
        let find = |want: &dyn Fn(&Term) -> bool| terms.iter().position(want);
        let first_number = params
            .question_list()
            .iter()
            .position(|q| matches!(q.kind, QuestionKind::Number(_)));
        let first_choice = params
            .question_list()
            .iter()
            .position(|q| matches!(q.kind, QuestionKind::Choice(_)));
        match self {
            Forgery::CountNotOne => stats[0] = Fe::new(50),
            Forgery::TwoOptions => {
                let Some(q) = first_choice else { return false };
                let opts: Vec<usize> = (0..terms.len())
                    .filter(|&i| matches!(terms[i], Term::Option { question, .. } if question == q))
                    .collect();
                for &i in opts.iter().take(2) {
                    stats[i] = Fe::ONE;
                }
            }
            _ => {
                let Some(q) = first_number else { return false };
                let (Some(x), Some(x2)) = (
                    find(&|t| *t == Term::X { question: q }),
                    find(&|t| *t == Term::X2 { question: q }),
                ) else {
                    return false;
                };
                let buckets: Vec<usize> = (0..terms.len())
                    .filter(|&i| matches!(terms[i], Term::Bucket { question, .. } if question == q))
                    .collect();
                match self {
                    Forgery::OutOfRange => {
                        let r = params.question_list()[q]
                            .as_number()
                            .map_or(1, |n| n.range_scaled());
                        let big = Fe::new(r.saturating_mul(1000));
                        stats[x] = big;
                        stats[x2] = big * big;
                        for &b in &buckets {
                            stats[b] = Fe::ZERO;
                        }
                        if let Some(&last) = buckets.last() {
                            stats[last] = Fe::ONE;
                        }
                    }
                    Forgery::BadSquare => stats[x2] += Fe::ONE,
                    _ => {
                        // TwoBuckets: set the first bucket that is not already set.
                        if let Some(&b) = buckets.iter().find(|&&b| stats[b] == Fe::ZERO) {
                            stats[b] = Fe::ONE;
                        }
                    }
                }
            }
        }
        // Pair products follow from the (forged) entries, as a prover's best effort would.
        if let Ok(flp) = flp::Layout::new(&shapes(params)) {
            for &(f, g, out) in &flp.products {
                let f = f.map_or(Fe::ONE, |i| stats[i]);
                let g = g.map_or(Fe::ONE, |i| stats[i]);
                stats[out] = f * g;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ShareList;

    /// The hospital's running sums and tags, and a folded verifier share, print no element.
    #[test]
    fn debug_shows_no_entries_sums_or_tags() {
        let entry: Vec<u8> = [123_456_789u64, 987_654_321, 555_555_555, 777_777_777]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let mut list = ShareList::with_capacity(VERIFY_ENTRY_LEN, 1);
        list.push(1, &entry);
        let mut sums = CheckSums::new(2);
        assert!(sums.add(&list));
        let mut tags = ShareList::with_capacity(VERDICT_TAG_LEN, 1);
        tags.push(2, &424_242_424_242u64.to_le_bytes());
        let mut sum = VerdictTags::new(2);
        assert!(sum.add(&tags));
        assert_eq!(sum.sum(2), 424_242_424_242);
        let folded = Folded([Fe::new(123_456_789), Fe::ZERO, Fe::ZERO]);
        let shown = format!("{sums:?} {sum:?} {folded:?}");
        for needle in ["123456789", "987654321", "555555555", "424242424242"] {
            assert!(!shown.contains(needle), "{shown}");
        }
        assert_eq!(
            shown,
            "CheckSums(2 proofs, 1 entries) VerdictTags(2 members) Folded(..)"
        );
    }
}
