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
//! Every payload also carries the sender's 32-byte **check seed** for its checkee (the keyed
//! member before it, cyclically), or random bytes in the payload addressed to the checkee
//! itself. The check seed gives the joint randomness and the query point of that one proof.
//! It is drawn before any share is seen and reaches only the checkee's other share-holders, in
//! payloads the relay cannot open; so neither the dealer nor the relay knows it while the
//! dealer's shares can still change.

use alloc::vec::Vec;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::{Zeroize, Zeroizing};

use crate::field::Fe;
use crate::flp::{self, Circuit, QueryPoint, QuestionShape, ShareRole, VerifierShare};
use crate::question::QuestionKind;
use crate::sharing::{SEED_LEN, Scheme, expand_seed};
use crate::study::StudyParams;

/// Length of a check seed.
pub const CHECK_SEED_LEN: usize = 32;

/// Plaintext length of a sealed verifier share: 4 field elements.
pub const VERIFY_PLAIN_LEN: usize = flp::VERIFIER_LEN * 8;

/// Plaintext length of a sealed verdict: dealer u32 ‖ verdict u8 ‖ reason u8.
pub const VERDICT_PLAIN_LEN: usize = 6;

/// Key-derivation label of the additive leader's correction.
pub const CORRECTION_LABEL: &[u8] = b"cohort/v2 correction";
/// Key-derivation label of a sealed verifier share.
pub const VERIFY_LABEL: &[u8] = b"cohort/v2 verify";
/// Key-derivation label of a sealed verdict.
pub const VERDICT_LABEL: &[u8] = b"cohort/v2 verdict";

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

/// The verdict message a checker seals for every other member: `dealer ‖ verdict ‖ 0`.
pub fn verdict_plain(dealer: u32, verdict: Verdict) -> [u8; VERDICT_PLAIN_LEN] {
    let d = dealer.to_le_bytes();
    [d[0], d[1], d[2], d[3], verdict.code(), 0]
}

/// Reads a verdict message; `None` if malformed.
pub fn read_verdict(plain: &[u8]) -> Option<(u32, Verdict)> {
    if plain.len() != VERDICT_PLAIN_LEN || plain[5] != 0 {
        return None;
    }
    let dealer = u32::from_le_bytes([plain[0], plain[1], plain[2], plain[3]]);
    Some((dealer, Verdict::from_code(plain[4])?))
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

    /// The query of one proof, from its checker's check seed: the joint randomness and a query
    /// point off the interpolation nodes, drawn from ChaCha20 keyed with the seed.
    pub fn check_rand(&self, seed: &[u8; CHECK_SEED_LEN]) -> CheckRand {
        let mut prg = ChaCha20Rng::from_seed(*seed);
        let joint: Vec<Fe> = (0..self.circuit.joint_rand_len())
            .map(|_| Fe::random(&mut prg))
            .collect();
        loop {
            if let Ok(point) = QueryPoint::new(&self.circuit, Fe::random(&mut prg)) {
                return CheckRand { joint, point };
            }
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

/// The keyed member after `index` in `keyed` (ascending), cyclically: `index`'s checker and,
/// in additive rounds, its leader.
pub fn checker_of(keyed: &[u32], index: u32) -> Option<u32> {
    let at = keyed.iter().position(|&k| k == index)?;
    Some(keyed[(at + 1) % keyed.len()])
}

/// The keyed member before `index` in `keyed` (ascending), cyclically: whose proof `index`
/// checks.
pub fn checkee_of(keyed: &[u32], index: u32) -> Option<u32> {
    let at = keyed.iter().position(|&k| k == index)?;
    Some(keyed[(at + keyed.len() - 1) % keyed.len()])
}

/// Combines the verifier shares of one dealer's proof and decides. `shares` (ascending by
/// index) must include one from every member of `verifiers` (the contributors other than the
/// dealer, fixed by the delivery every patient saw), else the proof is [`Verdict::NotVerified`].
/// Additive: their sum. Shamir: all the points on one polynomial of degree t − 1 (so that any
/// t of the contributors' points give the checked input, whichever the relay aggregates), then
/// Lagrange at 0.
pub fn decide(scheme: Scheme, verifiers: &[u32], shares: &[(u32, VerifierShare)]) -> Verdict {
    let used: Vec<(u32, VerifierShare)> = shares
        .iter()
        .filter(|(i, _)| verifiers.binary_search(i).is_ok())
        .copied()
        .collect();
    if used.len() != verifiers.len() || used.is_empty() {
        return Verdict::NotVerified;
    }
    let combined = match scheme {
        Scheme::Additive { .. } => {
            let only: Vec<VerifierShare> = used.iter().map(|(_, s)| *s).collect();
            VerifierShare::combine_additive(&only)
        }
        Scheme::Shamir { t, .. } => {
            let t = t as usize;
            if used.len() < t {
                return Verdict::NotVerified;
            }
            let points: Vec<(u32, Vec<Fe>)> =
                used.iter().map(|(i, s)| (*i, s.0.to_vec())).collect();
            let refs: Vec<(u32, &[Fe])> = points.iter().map(|(i, v)| (*i, v.as_slice())).collect();
            if !crate::protocol::aggregate::on_one_polynomial(&refs, t) {
                return Verdict::InvalidProof;
            }
            VerifierShare::combine_shamir(&used[..t])
        }
    };
    match combined {
        Ok(c) if flp::decide(&c) => Verdict::Valid,
        Ok(_) => Verdict::InvalidProof,
        Err(_) => Verdict::NotVerified,
    }
}

/// An invalid vector a forging patient contributes (feature `forge` or `test-util`): the honest
/// vector changed in one way, with the witness computed from it as an honest prover would and
/// a proof of that (the best a prover without the verifiers' randomness can do). Applied to
/// the first number question (or, for [`Forgery::TwoOptions`], the first choice question).
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
}

#[cfg(any(feature = "forge", feature = "test-util"))]
impl Forgery {
    /// Every forgery, for tests.
    pub const ALL: [Forgery; 5] = [
        Forgery::OutOfRange,
        Forgery::BadSquare,
        Forgery::TwoBuckets,
        Forgery::CountNotOne,
        Forgery::TwoOptions,
    ];

    /// The forgery named `name` (`out-of-range`, `bad-square`, `two-buckets`, `count`,
    /// `two-options`).
    pub fn from_name(name: &str) -> Option<Forgery> {
        Some(match name {
            "out-of-range" => Forgery::OutOfRange,
            "bad-square" => Forgery::BadSquare,
            "two-buckets" => Forgery::TwoBuckets,
            "count" => Forgery::CountNotOne,
            "two-options" => Forgery::TwoOptions,
            _ => return None,
        })
    }

    /// Changes an honest statistics vector of `params` into the forged one, recomputing the
    /// pair products from the forged entries. `false` if the study has no question this
    /// forgery applies to.
    pub fn apply(self, params: &StudyParams, stats: &mut [Fe]) -> bool {
        use crate::layout::Term;
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
